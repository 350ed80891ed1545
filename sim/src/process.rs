//! Child processes: spawning in their own process group (and in the environment's cgroups),
//! capturing their output as telemetry, freezing without cgroups (SIGSTOP/SIGCONT of the
//! group), and measuring peak RSS and CPU time from /proc.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::config::LogFormat;
use crate::telemetry::{Event, Hub};

/// Which telemetry stream a child's output goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Function,
    Extension,
}

/// What to start.
pub(crate) struct SpawnSpec<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub role: Role,
    /// The label of echoed lines (`function`, or the extension's name).
    pub label: String,
    pub echo: bool,
    pub log_format: LogFormat,
    /// `cgroup.procs` files of the groups the child joins before it runs its program.
    pub join: Vec<File>,
}

/// Makes the child join the groups of `files` between fork and exec, so that it is limited
/// from its first instruction and everything it starts is too.
///
/// `pre_exec` is the one `unsafe` of the emulator (ADR 0010). The alternatives cost more:
/// moving the child after `spawn` lets it run, and fork, unlimited for a moment; a wrapper that
/// joins and then execs adds its own start-up to the child's CPU time.
#[allow(unsafe_code)]
fn join_before_exec(cmd: &mut Command, files: Vec<File>) {
    // SAFETY: the closure runs in the forked child, where only async-signal-safe calls are
    // allowed. It only calls write(2) on descriptors opened before the fork, with a static
    // one-byte buffer ("0" moves the writing process into the group), and allocates nothing:
    // `write_all` on a `File` is the system call and a const or OS error.
    unsafe {
        cmd.pre_exec(move || {
            for mut f in files.iter() {
                f.write_all(b"0")?;
            }
            Ok(())
        });
    }
}

/// Starts a child in a new process group with its stdout and stderr captured.
pub(crate) fn spawn(spec: SpawnSpec<'_>, hub: Arc<Hub>) -> std::io::Result<Child> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if !spec.join.is_empty() {
        join_before_exec(&mut cmd, spec.join);
    }
    // "Text file busy": the executable was just written, and a process forked meanwhile (by
    // this emulator or another) still holds it open for writing until its own `exec`.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => break other?,
        }
    };
    if let Some(out) = child.stdout.take() {
        tokio::spawn(capture(
            BufReader::new(out),
            spec.role,
            spec.label.clone(),
            spec.echo,
            spec.log_format,
            hub.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(capture(
            BufReader::new(err),
            spec.role,
            spec.label,
            spec.echo,
            spec.log_format,
            hub,
        ));
    }
    Ok(child)
}

async fn capture<R: tokio::io::AsyncRead + Unpin>(
    reader: BufReader<R>,
    role: Role,
    label: String,
    echo: bool,
    format: LogFormat,
    hub: Arc<Hub>,
) {
    let mut lines = reader.split(b'\n');
    let kind = match role {
        Role::Function => "function",
        Role::Extension => "extension",
    };
    while let Ok(Some(line)) = lines.next_segment().await {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\r');
        if echo {
            eprintln!("[{label}] {text}");
        }
        hub.publish(Event {
            time: OffsetDateTime::now_utc(),
            kind: kind.to_owned(),
            record: log_record(text, format),
        });
    }
}

/// The record Lambda delivers for one line of output: the line itself in text format; in JSON
/// format, the object when the line is a JSON object (as runtimes write it), else the line.
pub(crate) fn log_record(line: &str, format: LogFormat) -> Value {
    if format == LogFormat::Json
        && line.trim_start().starts_with('{')
        && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(line)
    {
        return v;
    }
    Value::String(line.to_owned())
}

/// Describes an exit status the way a person reads it.
pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        }
    } else {
        "unknown exit status".to_owned()
    }
}

/// Sends `sig` to a process group, ignoring groups that no longer exist.
pub(crate) fn signal_group(pgid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(p), sig);
    }
}

/// Latest measurement of one process (the group leader).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcStats {
    pub peak_rss_kb: u64,
    pub rss_kb: u64,
    /// In 10 ms steps.
    pub cpu_ms: u64,
}

/// Linux reports /proc times in USER_HZ, which the kernel ABI fixes at 100 per second.
const TICKS_PER_SEC: u64 = 100;

fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// `(pgrp, utime+stime+cutime+cstime in ticks)` from `/proc/PID/stat`.
fn stat_fields(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); pgrp is field 5, utime..cstime are fields 14..17.
    let pgrp = f.get(2)?.parse().ok()?;
    let mut ticks = 0u64;
    for i in 11..=14 {
        ticks += f.get(i)?.parse::<u64>().ok()?;
    }
    Some((pgrp, ticks))
}

/// Reads one process's peak and current RSS and its CPU time (with reaped children).
pub(crate) fn read_stats(pid: u32) -> Option<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (_, ticks) = stat_fields(pid)?;
    Some(ProcStats {
        peak_rss_kb: status_kb(&status, "VmHWM")?,
        rss_kb: status_kb(&status, "VmRSS").unwrap_or(0),
        cpu_ms: ticks * 1000 / TICKS_PER_SEC,
    })
}

/// The resident memory (kB) of every process group on this machine, from one walk of
/// `/proc` (each process's `stat`: its group and its resident pages).
fn rss_by_group() -> HashMap<u32, u64> {
    let page_kb = page_kb();
    let mut by_group = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return by_group;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields start after the command name's last ')': pgrp is field 5, rss field 24.
        let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(Ok(pgrp)), Some(Ok(pages))) = (
            f.get(2).map(|v| v.parse::<u32>()),
            f.get(21).map(|v| v.parse::<u64>()),
        ) {
            *by_group.entry(pgrp).or_insert(0) += pages * page_kb;
        }
    }
    by_group
}

/// The page size in kB (4 where it cannot be read).
fn page_kb() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|b| u64::try_from(b).ok())
        .map_or(4, |b| (b / 1024).max(1))
}

/// A walk of `/proc` shared by every environment's background sampler: with many
/// environments, one walk per [`SHARED_WALK_AGE`] instead of one per environment.
static SHARED_WALK: std::sync::Mutex<Option<(std::time::Instant, HashMap<u32, u64>)>> =
    std::sync::Mutex::new(None);

/// How old a shared walk may be for a background sample (half the sampling period).
const SHARED_WALK_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// Sum of the resident memory of every process in these process groups (kB), from a walk of
/// `/proc` made now, or for a background sample (`shared`) one at most [`SHARED_WALK_AGE`] old.
pub(crate) fn groups_rss_kb(pgids: &[u32], shared: bool) -> u64 {
    let sum = |by_group: &HashMap<u32, u64>| pgids.iter().filter_map(|g| by_group.get(g)).sum();
    let walk = || match SHARED_WALK.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let now = std::time::Instant::now();
    if shared {
        if let Some((at, by_group)) = walk().as_ref() {
            if now.duration_since(*at) < SHARED_WALK_AGE {
                return sum(by_group);
            }
        }
    }
    // The walk itself is made without the lock: others read the last one meanwhile.
    let by_group = rss_by_group();
    let total = sum(&by_group);
    *walk() = Some((now, by_group));
    total
}

/// Measurements of every child of an environment, kept up to date by sampling.
#[derive(Debug, Default, Clone)]
pub(crate) struct Measurements {
    /// By process group leader.
    pub per_pid: HashMap<u32, ProcStats>,
    /// The largest sum of the resident memory of every process in the groups.
    pub peak_env_rss_kb: u64,
}

impl Measurements {
    /// One reading of `pids` (each a group leader).
    /// Reads `pids` (each a group leader) and their groups now; `shared`: the groups from a
    /// walk of `/proc` shared with other environments' background samples.
    pub(crate) fn read(pids: &[u32], shared: bool) -> Measurements {
        Measurements {
            per_pid: pids
                .iter()
                .filter_map(|&pid| read_stats(pid).map(|s| (pid, s)))
                .collect(),
            peak_env_rss_kb: groups_rss_kb(pids, shared),
        }
    }

    /// Takes in a newer reading: peaks and CPU time only grow, the current RSS is the newer one.
    pub(crate) fn merge(&mut self, newer: Measurements) {
        for (pid, s) in newer.per_pid {
            let e = self.per_pid.entry(pid).or_default();
            e.peak_rss_kb = e.peak_rss_kb.max(s.peak_rss_kb);
            e.rss_kb = s.rss_kb;
            e.cpu_ms = e.cpu_ms.max(s.cpu_ms);
        }
        self.peak_env_rss_kb = self.peak_env_rss_kb.max(newer.peak_env_rss_kb);
    }

    /// Takes one sample of `pids` (each a group leader).
    pub(crate) fn sample(&mut self, pids: &[u32]) {
        self.merge(Measurements::read(pids, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_resident_memory_counts_this_process() {
        let own = nix::unistd::getpgrp().as_raw() as u32;
        let rss = read_stats(std::process::id()).unwrap().rss_kb;
        let fresh = groups_rss_kb(&[own], false);
        assert!(fresh >= rss / 2, "{fresh} kB against {rss} kB");
        // A shared reading is a walk at most 50 ms old (this one, or another test's).
        let shared = groups_rss_kb(&[own], true);
        assert!(shared >= rss / 2, "{shared} kB against {rss} kB");
        assert_eq!(groups_rss_kb(&[], false), 0);
    }

    #[test]
    fn reads_own_stats() {
        let s = read_stats(std::process::id()).unwrap();
        assert!(s.peak_rss_kb > 0);
        assert!(s.peak_rss_kb >= s.rss_kb);
    }

    #[test]
    fn json_lines_become_objects_only_in_json_format() {
        let line = r#"{"level":"INFO","message":"hi"}"#;
        assert!(log_record(line, LogFormat::Json).is_object());
        assert!(log_record(line, LogFormat::Text).is_string());
        assert_eq!(
            log_record("plain", LogFormat::Json),
            Value::String("plain".into())
        );
    }
}
