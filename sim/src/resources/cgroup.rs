//! One environment's cgroups: a group per hierarchy in use (made inside the sim's own group),
//! with a leaf per child process inside it. The limits are set on the environment's group,
//! so the runtime and every extension share them as on Lambda; the leaves only count each
//! child's CPU time. v1 and v2 files are both written here; which hierarchy does what comes
//! from [`super::detect::layout`].
//!
//! Groups are removed when the environment ends, and on drop (an error path): the children
//! still in them are thawed and killed first. Groups left by a sim that was killed are
//! removed by the next run ([`sweep_stale`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::detect::{CgroupVersion, Layout, Roles};
use super::model::CpuProfile;

/// Every group this sim makes is named `contrail-sim-<pid>-<n>`.
const PREFIX: &str = "contrail-sim-";

/// How long removal waits for killed children to leave their groups.
const REMOVE_WAIT: Duration = Duration::from_secs(2);

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// CFS bandwidth counters of the environment's group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Throttling {
    /// Periods in which the group ran.
    pub periods: u64,
    /// Periods that ended with the group throttled.
    pub throttled_periods: u64,
    /// Time the group spent throttled.
    pub throttled: Duration,
}

/// The environment's group in one hierarchy.
#[derive(Debug)]
struct Group {
    version: CgroupVersion,
    roles: Roles,
    dir: PathBuf,
}

/// An environment's groups, removed on drop.
#[derive(Debug)]
pub(crate) struct EnvGroup {
    groups: Vec<Group>,
    removed: AtomicBool,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", path.display()),
        )
    })
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// The value of `key` in a flat-keyed file (`key value` lines: `cpu.stat`, `memory.events`,
/// `memory.oom_control`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A child's leaf name, from its role and label: `runtime`, `ext-contrail`.
pub(crate) fn leaf_name(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect()
}

impl EnvGroup {
    /// Makes the environment's group in every tree of `layout`. v2 parents are given the
    /// controllers their children need (`cgroup.subtree_control`).
    pub(crate) fn create(layout: &Layout) -> io::Result<EnvGroup> {
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        Self::create_named(layout, &name)
    }

    pub(crate) fn create_named(layout: &Layout, name: &str) -> io::Result<EnvGroup> {
        let mut made = EnvGroup {
            groups: Vec::new(),
            removed: AtomicBool::new(false),
        };
        for tree in &layout.trees {
            if tree.version == CgroupVersion::V2 {
                let mut wanted = Vec::new();
                if tree.roles.cpu {
                    wanted.push("+cpu");
                }
                if tree.roles.memory {
                    wanted.push("+memory");
                }
                if !wanted.is_empty() {
                    let control = tree.parent.join("cgroup.subtree_control");
                    write(&control, &wanted.join(" ")).map_err(|e| {
                        context(
                            e,
                            "cannot enable the cpu and memory controllers in",
                            &control,
                        )
                    })?;
                }
            }
            let dir = tree.parent.join(name);
            std::fs::create_dir(&dir).map_err(|e| context(e, "cannot create", &dir))?;
            made.groups.push(Group {
                version: tree.version,
                roles: tree.roles,
                dir,
            });
        }
        Ok(made)
    }

    fn with(&self, role: impl Fn(&Roles) -> bool) -> Option<&Group> {
        self.groups.iter().find(|g| role(&g.roles))
    }

    /// Sets the CPU quota of the whole environment.
    pub(crate) fn set_cpu(&self, profile: &CpuProfile) -> io::Result<()> {
        let Some(g) = self.with(|r| r.cpu) else {
            return Ok(());
        };
        let (quota, period, burst) = (
            profile.quota().as_micros(),
            profile.period.as_micros(),
            profile.burst.as_micros(),
        );
        match g.version {
            CgroupVersion::V1 => {
                // The quota first goes unlimited, so that no intermediate pair is refused.
                write(&g.dir.join("cpu.cfs_quota_us"), "-1")?;
                write(&g.dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&g.dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                let burst_file = g.dir.join("cpu.cfs_burst_us");
                if burst > 0 || burst_file.exists() {
                    write(&burst_file, &burst.to_string())?;
                }
            }
            CgroupVersion::V2 => {
                write(&g.dir.join("cpu.max"), &format!("{quota} {period}"))?;
                let burst_file = g.dir.join("cpu.max.burst");
                if burst > 0 || burst_file.exists() {
                    write(&burst_file, &burst.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Limits the memory of the whole environment to `bytes`, swap included.
    pub(crate) fn set_memory(&self, bytes: u64) -> io::Result<()> {
        let Some(g) = self.with(|r| r.memory) else {
            return Ok(());
        };
        let value = bytes.to_string();
        match g.version {
            CgroupVersion::V1 => {
                write(&g.dir.join("memory.limit_in_bytes"), &value)?;
                // Present only with swap accounting; must not be below the limit above.
                let memsw = g.dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &value)?;
                }
            }
            CgroupVersion::V2 => {
                write(&g.dir.join("memory.max"), &value)?;
                let swap = g.dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            }
        }
        Ok(())
    }

    /// Files a child writes `0` to (in its `pre_exec`) to join its leaf in every hierarchy.
    pub(crate) fn join_files(&self, leaf: &str) -> io::Result<Vec<File>> {
        let mut files = Vec::new();
        for g in &self.groups {
            let dir = g.dir.join(leaf);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(context(e, "cannot create", &dir)),
            }
            let procs = dir.join("cgroup.procs");
            let f = OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(|e| context(e, "cannot open", &procs))?;
            files.push(f);
        }
        Ok(files)
    }

    /// The cgroup version that freezes this environment, if one does.
    pub(crate) fn freezer(&self) -> Option<CgroupVersion> {
        self.with(|r| r.freezer).map(|g| g.version)
    }

    /// Asks the kernel to freeze (`true`) or thaw every process of the environment.
    pub(crate) fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let Some(g) = self.with(|r| r.freezer) else {
            return Ok(());
        };
        match g.version {
            CgroupVersion::V1 => write(
                &g.dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            CgroupVersion::V2 => {
                write(&g.dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            }
        }
    }

    /// True once every process is frozen (v1 `FROZEN`, not `FREEZING`; v2 `frozen 1`).
    pub(crate) fn is_frozen(&self) -> io::Result<bool> {
        let Some(g) = self.with(|r| r.freezer) else {
            return Ok(false);
        };
        Ok(match g.version {
            CgroupVersion::V1 => read(&g.dir.join("freezer.state"))?.trim() == "FROZEN",
            CgroupVersion::V2 => keyed(&read(&g.dir.join("cgroup.events"))?, "frozen") == Some(1),
        })
    }

    /// How many processes the kernel's OOM killer has killed in the environment. v1 counts a
    /// kill in the group of the process killed (a leaf), v2 in every group above it too.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let g = self.with(|r| r.memory)?;
        match g.version {
            CgroupVersion::V1 => {
                let count = |dir: &Path| {
                    read(&dir.join("memory.oom_control"))
                        .ok()
                        .and_then(|t| keyed(&t, "oom_kill"))
                };
                let own = count(&g.dir)?;
                Some(
                    own + subgroups(&g.dir)
                        .iter()
                        .filter_map(|d| count(d))
                        .sum::<u64>(),
                )
            }
            CgroupVersion::V2 => keyed(&read(&g.dir.join("memory.events")).ok()?, "oom_kill"),
        }
    }

    /// The most memory the environment has used (what the limit is enforced against).
    pub(crate) fn memory_peak(&self) -> Option<u64> {
        let g = self.with(|r| r.memory)?;
        let file = match g.version {
            CgroupVersion::V1 => "memory.max_usage_in_bytes",
            CgroupVersion::V2 => "memory.peak",
        };
        read(&g.dir.join(file)).ok()?.trim().parse().ok()
    }

    /// The environment's CFS bandwidth counters.
    pub(crate) fn throttling(&self) -> Option<Throttling> {
        let g = self.with(|r| r.cpu)?;
        let stat = read(&g.dir.join("cpu.stat")).ok()?;
        let throttled = match g.version {
            CgroupVersion::V1 => Duration::from_nanos(keyed(&stat, "throttled_time")?),
            CgroupVersion::V2 => Duration::from_micros(keyed(&stat, "throttled_usec")?),
        };
        Some(Throttling {
            periods: keyed(&stat, "nr_periods")?,
            throttled_periods: keyed(&stat, "nr_throttled")?,
            throttled,
        })
    }

    /// The CPU time a child's leaf has used (every thread, and reaped descendants).
    pub(crate) fn cpu_time(&self, leaf: &str) -> Option<Duration> {
        let g = self.with(|r| r.cpu_usage)?;
        let dir = g.dir.join(leaf);
        match g.version {
            CgroupVersion::V1 => read(&dir.join("cpuacct.usage"))
                .ok()?
                .trim()
                .parse()
                .ok()
                .map(Duration::from_nanos),
            CgroupVersion::V2 => {
                keyed(&read(&dir.join("cpu.stat")).ok()?, "usage_usec").map(Duration::from_micros)
            }
        }
    }

    /// Thaws, kills what is left in the groups, and removes them. Safe to call twice.
    pub(crate) fn remove(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        for g in &self.groups {
            remove_group(g.version, &g.dir, g.roles.freezer);
        }
    }
}

impl Drop for EnvGroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Process ids in `dir` and every group below it.
fn pids_below(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = read(&dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for sub in subgroups(dir) {
        pids_below(&sub, pids);
    }
}

fn subgroups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Thaws the group (a frozen process cannot die), kills every process in it, waits for them
/// to leave, and removes it with its leaves.
fn remove_group(version: CgroupVersion, dir: &Path, freezer: bool) {
    if !dir.exists() {
        return;
    }
    if freezer {
        let _ = match version {
            CgroupVersion::V1 => write(&dir.join("freezer.state"), "THAWED"),
            CgroupVersion::V2 => write(&dir.join("cgroup.freeze"), "0"),
        };
    }
    let until = Instant::now() + REMOVE_WAIT;
    loop {
        let mut pids = Vec::new();
        pids_below(dir, &mut pids);
        if pids.is_empty() || Instant::now() >= until {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for sub in subgroups(dir) {
        let _ = std::fs::remove_dir(sub);
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes groups of sims that no longer run (`contrail-sim-<pid>-<n>` whose process is
/// gone): what a killed sim could not clean up.
pub(crate) fn sweep_stale(layout: &Layout) {
    for tree in &layout.trees {
        let Ok(entries) = std::fs::read_dir(&tree.parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                remove_group(tree.version, &entry.path(), tree.roles.freezer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::detect::Tree;

    /// A layout of one fake hierarchy in a temporary folder, doing everything.
    fn fake(version: CgroupVersion) -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        let layout = Layout {
            trees: vec![Tree {
                version,
                parent: dir.path().to_path_buf(),
                roles: Roles {
                    cpu: true,
                    cpu_usage: true,
                    memory: true,
                    freezer: true,
                },
            }],
            missing: vec![],
        };
        (dir, layout)
    }

    /// Creates the files a real cgroup has from the start (writes never create files).
    fn files(dir: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(dir.join(n), "").unwrap();
        }
    }

    fn content(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    fn profile(vcpus: f64, burst_ms: u64) -> CpuProfile {
        CpuProfile {
            vcpus,
            period: Duration::from_millis(20),
            burst: Duration::from_millis(burst_ms),
        }
    }

    #[test]
    fn v2_limits_are_cpu_max_and_memory_max() {
        let (tmp, layout) = fake(CgroupVersion::V2);
        let g = EnvGroup::create_named(&layout, "contrail-sim-1-0").unwrap();
        let env = tmp.path().join("contrail-sim-1-0");
        files(&env, &["cpu.max", "memory.max", "cgroup.freeze"]);
        assert_eq!(
            content(tmp.path(), "cgroup.subtree_control"),
            "+cpu +memory"
        );
        g.set_cpu(&profile(128.0 / 1769.0, 0)).unwrap();
        assert_eq!(content(&env, "cpu.max"), "1447 20000");
        assert!(!env.join("cpu.max.burst").exists(), "no burst: not written");
        files(&env, &["cpu.max.burst"]);
        g.set_cpu(&profile(0.5, 5)).unwrap();
        assert_eq!(content(&env, "cpu.max"), "10000 20000");
        assert_eq!(content(&env, "cpu.max.burst"), "5000");
        std::fs::write(env.join("memory.swap.max"), "max").unwrap();
        g.set_memory(128 << 20).unwrap();
        assert_eq!(content(&env, "memory.max"), "134217728");
        assert_eq!(content(&env, "memory.swap.max"), "0");

        g.set_frozen(true).unwrap();
        assert_eq!(content(&env, "cgroup.freeze"), "1");
        std::fs::write(env.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!g.is_frozen().unwrap());
        std::fs::write(env.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert!(g.is_frozen().unwrap());
        g.set_frozen(false).unwrap();
        assert_eq!(content(&env, "cgroup.freeze"), "0");

        std::fs::write(
            env.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(g.oom_kills(), Some(1));
        std::fs::write(env.join("memory.peak"), "134217728\n").unwrap();
        assert_eq!(g.memory_peak(), Some(128 << 20));
        std::fs::write(
            env.join("cpu.stat"),
            "usage_usec 900\nnr_periods 40\nnr_throttled 31\nthrottled_usec 560000\n",
        )
        .unwrap();
        assert_eq!(
            g.throttling(),
            Some(Throttling {
                periods: 40,
                throttled_periods: 31,
                throttled: Duration::from_millis(560),
            })
        );
        std::fs::create_dir(env.join("ext-contrail")).unwrap();
        files(&env.join("ext-contrail"), &["cgroup.procs"]);
        assert_eq!(g.join_files("ext-contrail").unwrap().len(), 1);
        std::fs::write(env.join("ext-contrail/cpu.stat"), "usage_usec 1234\n").unwrap();
        assert_eq!(
            g.cpu_time("ext-contrail"),
            Some(Duration::from_micros(1234))
        );
        // Removal of real groups is tested on the machine's cgroups (tests/it/resources.rs).
        g.remove();
        g.remove();
    }

    #[test]
    fn v1_limits_are_cfs_quota_and_limit_in_bytes() {
        let (tmp, layout) = fake(CgroupVersion::V1);
        let g = EnvGroup::create_named(&layout, "contrail-sim-1-1").unwrap();
        let env = tmp.path().join("contrail-sim-1-1");
        files(
            &env,
            &[
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "memory.limit_in_bytes",
                "freezer.state",
            ],
        );
        assert_eq!(
            content(tmp.path(), "cgroup.subtree_control"),
            "",
            "v1 has none"
        );
        g.set_cpu(&profile(128.0 / 1769.0, 0)).unwrap();
        assert_eq!(content(&env, "cpu.cfs_period_us"), "20000");
        assert_eq!(content(&env, "cpu.cfs_quota_us"), "1447");
        std::fs::write(env.join("memory.memsw.limit_in_bytes"), "-1").unwrap();
        g.set_memory(256 << 20).unwrap();
        assert_eq!(content(&env, "memory.limit_in_bytes"), "268435456");
        assert_eq!(content(&env, "memory.memsw.limit_in_bytes"), "268435456");
        g.set_frozen(true).unwrap();
        assert!(g.is_frozen().unwrap(), "freezer.state reads back FROZEN");
        std::fs::write(env.join("freezer.state"), "FREEZING\n").unwrap();
        assert!(!g.is_frozen().unwrap());
        std::fs::write(
            env.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(g.oom_kills(), Some(2));
        std::fs::write(
            env.join("cpu.stat"),
            "nr_periods 10\nnr_throttled 9\nthrottled_time 170000000\n",
        )
        .unwrap();
        assert_eq!(
            g.throttling().unwrap().throttled,
            Duration::from_millis(170)
        );
        std::fs::create_dir(env.join("runtime")).unwrap();
        std::fs::write(env.join("runtime/cpuacct.usage"), "2500000\n").unwrap();
        assert_eq!(g.cpu_time("runtime"), Some(Duration::from_micros(2500)));
    }

    #[test]
    fn stale_groups_of_dead_sims_are_swept_and_live_ones_kept() {
        let (tmp, layout) = fake(CgroupVersion::V1);
        // No process has pid 4194304 (above the kernel's pid_max limit).
        let dead = tmp.path().join("contrail-sim-4194304-0");
        let live = tmp
            .path()
            .join(format!("contrail-sim-{}-99", std::process::id()));
        let other = tmp.path().join("someone-else");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir(dead.join("runtime")).unwrap();
        sweep_stale(&layout);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }

    #[test]
    fn leaf_names_keep_only_safe_characters() {
        assert_eq!(leaf_name("ext-my ext/1"), "ext-my_ext_1");
    }
}
