//! Which processes are the function's (the rule is in the module documentation of
//! `intake::environment`).

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{
    EXTENSIONS_DIR, MAX_PROCESSES, PROC, Sampler, open_proc, procfs, read_file, read_text,
};
use crate::diag;

static NO_RUNTIME: diag::Once = diag::Once::new();

impl Sampler {
    /// The last process id handed out in this PID namespace (`/proc/loadavg`): when it moved,
    /// a process or thread was started since the last look.
    pub(super) fn last_pid(&mut self) -> Option<u32> {
        if self.loadavg.is_none() {
            self.loadavg = File::open(Path::new(PROC).join("loadavg")).ok();
        }
        let text = read_text(self.loadavg.as_ref()?, &mut self.buf)?;
        procfs::parse_loadavg_last_pid(text)
    }

    /// Find the function's processes (see the module documentation) and open their files.
    pub(super) fn discover(&mut self) {
        self.scanned = true;
        self.rescan = false;
        let mut known = std::mem::take(&mut self.procs);
        let parent = self
            .parent
            .unwrap_or_else(std::os::unix::process::parent_id);
        let mut roots = Vec::new();
        self.children_of(parent, &mut roots);
        roots.retain(|pid| *pid != self.self_pid && self.is_runtime(*pid));
        if roots.is_empty() {
            NO_RUNTIME.warn(format_args!(
                "the runtime's process was not found among Contrail's siblings; per-invocation CPU, memory and connections are not reported"
            ));
            return;
        }
        // The runtime and everything it started, breadth first, bounded.
        let mut queue = roots;
        let mut i = 0;
        while let Some(pid) = queue.get(i).copied() {
            i += 1;
            if self.procs.len() >= MAX_PROCESSES {
                break;
            }
            if queue.get(..i - 1).is_some_and(|seen| seen.contains(&pid)) {
                continue;
            }
            // A process still followed keeps its open files.
            let p = match known.iter().position(|p| p.pid == pid) {
                Some(at) => Some(known.swap_remove(at)),
                None => open_proc(pid),
            };
            if let Some(p) = p {
                self.procs.push(p);
                self.children_of(pid, &mut queue);
            }
        }
        self.open_tables();
    }

    /// Open the namespace's network tables, once.
    pub(super) fn open_tables(&mut self) {
        if self.net_dev.is_none() {
            let proc = Path::new(PROC);
            self.net_dev = File::open(proc.join("self/net/dev")).ok();
            self.tcp = ["self/net/tcp", "self/net/tcp6"]
                .iter()
                .filter_map(|f| File::open(proc.join(f)).ok())
                .collect();
        }
    }

    fn children_of(&mut self, pid: u32, out: &mut Vec<u32>) {
        let Ok(tasks) = std::fs::read_dir(format!("{PROC}/{pid}/task")) else {
            return;
        };
        for task in tasks.flatten() {
            let Some(text) = read_file(&task.path().join("children")) else {
                continue;
            };
            let bad = procfs::parse_children(&String::from_utf8_lossy(&text), out);
            if bad > 0 {
                self.note_unreadable(bad.into());
            }
        }
    }

    fn is_runtime(&self, pid: u32) -> bool {
        if let Ok(exe) = std::fs::read_link(format!("{PROC}/{pid}/exe"))
            && exe.as_os_str().as_bytes().starts_with(EXTENSIONS_DIR)
        {
            return false;
        }
        if let Some(cmdline) = read_file(&PathBuf::from(format!("{PROC}/{pid}/cmdline")))
            && cmdline
                .split(|b| *b == 0)
                .take(2)
                .any(|arg| arg.starts_with(EXTENSIONS_DIR))
        {
            return false;
        }
        let Some(environ) = read_file(&PathBuf::from(format!("{PROC}/{pid}/environ"))) else {
            return false;
        };
        procfs::environ_value(&environ, "_HANDLER").is_some()
            && match &self.api {
                Some(api) => {
                    procfs::environ_value(&environ, crate::config::RUNTIME_API_VAR)
                        == Some(api.as_slice())
                }
                None => true,
            }
    }
}
