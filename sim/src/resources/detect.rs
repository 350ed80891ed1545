//! Where this machine's cgroup controllers are: the hierarchies of `/proc/self/mountinfo`
//! (cgroup v1, one per controller or group of controllers, and the unified v2 hierarchy), the
//! sim's own place in each (`/proc/self/cgroup`), and which hierarchy each job uses. Pure
//! functions over the files' text; [`super::cgroup`] reads them and creates the groups.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::FreezeWith;

/// A cgroup hierarchy's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CgroupVersion {
    /// A v1 hierarchy: one or more controllers each, `cpu.cfs_quota_us`, `freezer.state`…
    #[serde(rename = "v1")]
    V1,
    /// The unified hierarchy: `cpu.max`, `memory.max`, `cgroup.freeze`…
    #[serde(rename = "v2")]
    V2,
}

impl CgroupVersion {
    /// `cgroup v1` or `cgroup v2`.
    pub fn describe(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        }
    }
}

/// A mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    pub version: CgroupVersion,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The cgroup at the mount point (`/` unless a container bind-mounts a sub-tree).
    pub root: String,
    /// v1: the controllers bound to it (`cpu`, `cpuacct`, …). v2: empty (see
    /// `cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// Undoes the octal escapes of mountinfo paths (`\040` for a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        if bytes[i] == b'\\'
            && let Some(v) = octal
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup hierarchies of a `/proc/self/mountinfo`.
pub(crate) fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let version = match *fstype {
            "cgroup" => CgroupVersion::V1,
            "cgroup2" => CgroupVersion::V2,
            _ => continue,
        };
        let controllers = match version {
            CgroupVersion::V2 => Vec::new(),
            CgroupVersion::V1 => post
                .get(2)
                .map(|opts| {
                    opts.split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        found.push(Hierarchy {
            version,
            mount: PathBuf::from(unescape(mount)),
            root: unescape(root),
            controllers,
        });
    }
    found
}

/// The sim's own cgroup in `h`, from `/proc/self/cgroup` (`ID:controllers:path` lines).
pub(crate) fn own_dir(h: &Hierarchy, proc_self_cgroup: &str) -> Option<PathBuf> {
    let path = proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match h.version {
            CgroupVersion::V2 => list.is_empty(),
            CgroupVersion::V1 => {
                !list.is_empty()
                    && h.controllers
                        .iter()
                        .all(|c| list.split(',').any(|l| l == c))
            }
        };
        matches.then(|| path.to_owned())
    })?;
    let relative = match path.strip_prefix(h.root.trim_end_matches('/')) {
        Some(rest) => rest.to_owned(),
        None => path,
    };
    Some(h.mount.join(relative.trim_start_matches('/')))
}

/// What one tree of groups is used for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Roles {
    pub cpu: bool,
    pub cpu_usage: bool,
    pub memory: bool,
    pub freezer: bool,
}

impl Roles {
    fn any(&self) -> bool {
        self.cpu || self.cpu_usage || self.memory || self.freezer
    }
}

/// One hierarchy the environment's groups are made in, with the sim's own group in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    pub version: CgroupVersion,
    /// The sim's own cgroup: environments' groups are made inside it.
    pub parent: PathBuf,
    pub roles: Roles,
}

/// Which tree does what, and what could not be found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub trees: Vec<Tree>,
    /// One line per job no hierarchy can do (`memory: no memory controller`).
    pub missing: Vec<String>,
}

impl Layout {
    /// The tree that does `role`, if any.
    pub(crate) fn tree(&self, role: impl Fn(&Roles) -> bool) -> Option<&Tree> {
        self.trees.iter().find(|t| role(&t.roles))
    }
}

/// A controller's place: its v1 hierarchy, else the v2 one if it offers the controller.
fn place<'a>(
    v1: &'a [(Hierarchy, PathBuf)],
    v2: Option<&'a (Hierarchy, PathBuf)>,
    v2_controllers: &[String],
    name: &str,
) -> Option<(CgroupVersion, &'a Path)> {
    if let Some((_, dir)) = v1
        .iter()
        .find(|(h, _)| h.controllers.iter().any(|c| c == name))
    {
        return Some((CgroupVersion::V1, dir));
    }
    let (_, dir) = v2?;
    v2_controllers
        .iter()
        .any(|c| c == name)
        .then_some((CgroupVersion::V2, dir.as_path()))
}

/// Decides which hierarchy does what. `v2_controllers` is the `cgroup.controllers` of the
/// sim's own v2 group (what its children can be given).
pub(crate) fn layout(
    found: &[Hierarchy],
    proc_self_cgroup: &str,
    v2_controllers: &[String],
    freezer: FreezeWith,
) -> Layout {
    let with_dirs = |version| {
        found
            .iter()
            .filter(move |h| h.version == version)
            .filter_map(|h| own_dir(h, proc_self_cgroup).map(|d| (h.clone(), d)))
    };
    let v1: Vec<(Hierarchy, PathBuf)> = with_dirs(CgroupVersion::V1).collect();
    let v2: Option<(Hierarchy, PathBuf)> = with_dirs(CgroupVersion::V2).next();
    let mut layout = Layout::default();
    let mut assign = |place: Option<(CgroupVersion, &Path)>, set: fn(&mut Roles)| {
        let Some((version, dir)) = place else {
            return false;
        };
        match layout.trees.iter_mut().find(|t| t.parent == dir) {
            Some(t) => set(&mut t.roles),
            None => {
                let mut roles = Roles::default();
                set(&mut roles);
                layout.trees.push(Tree {
                    version,
                    parent: dir.to_path_buf(),
                    roles,
                });
            }
        }
        true
    };
    let cpu = place(&v1, v2.as_ref(), v2_controllers, "cpu");
    let has_cpu = assign(cpu, |r| r.cpu = true);
    let memory = place(&v1, v2.as_ref(), v2_controllers, "memory");
    let has_memory = assign(memory, |r| r.memory = true);
    // CPU time per child: v1 `cpuacct.usage`, or v2 `cpu.stat`, which every v2 group has.
    let usage = match cpu {
        Some((CgroupVersion::V2, dir)) => Some((CgroupVersion::V2, dir)),
        _ => place(&v1, None, &[], "cpuacct")
            .or_else(|| v2.as_ref().map(|(_, d)| (CgroupVersion::V2, d.as_path()))),
    };
    assign(usage, |r| r.cpu_usage = true);
    let v1_freezer = place(&v1, None, &[], "freezer");
    // v2 freezing is part of every non-root group (`cgroup.freeze`), no controller needed.
    let v2_freezer = v2.as_ref().map(|(_, d)| (CgroupVersion::V2, d.as_path()));
    let freezer_place = match freezer {
        FreezeWith::Signal => None,
        FreezeWith::CgroupV1 => v1_freezer,
        FreezeWith::CgroupV2 => v2_freezer,
        FreezeWith::Auto => match (cpu.or(memory), v1_freezer, v2_freezer) {
            (Some((CgroupVersion::V2, _)), _, Some(v2)) => Some(v2),
            (_, Some(v1), _) => Some(v1),
            (_, None, v2) => v2,
        },
    };
    let has_freezer = assign(freezer_place, |r| r.freezer = true);
    if !has_cpu {
        layout.missing.push("CPU: no cpu controller".to_owned());
    }
    if !has_memory {
        layout
            .missing
            .push("memory: no memory controller".to_owned());
    }
    if !has_freezer && freezer != FreezeWith::Signal {
        let which = match freezer {
            FreezeWith::CgroupV1 => "no cgroup v1 freezer",
            FreezeWith::CgroupV2 => "no cgroup v2 hierarchy",
            _ => "no cgroup freezer",
        };
        layout.missing.push(format!("freeze: {which}"));
    }
    layout.trees.retain(|t| t.roles.any());
    layout
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine kind: v1 controllers each on their own, and an empty unified hierarchy.
    const HYBRID: &str = "\
24 29 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:23 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
27 26 0:24 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
28 26 0:25 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
29 26 0:26 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
30 26 0:27 / /sys/fs/cgroup/freezer rw,relatime shared:13 - cgroup cgroup rw,freezer
31 26 0:28 / /sys/fs/cgroup/systemd rw,relatime shared:14 - cgroup cgroup rw,name=systemd
32 26 0:29 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
6:freezer:/
4:memory:/process_api/76b4
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn mountinfo_lists_v1_hierarchies_with_their_controllers_and_the_unified_one() {
        let found = hierarchies(HYBRID);
        assert_eq!(found.len(), 6);
        assert_eq!(found[0].controllers, ["cpu"]);
        assert_eq!(found[0].mount, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(found[4].controllers, Vec::<String>::new(), "name=systemd");
        assert_eq!(found[5].version, CgroupVersion::V2);
        assert_eq!(found[5].mount, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn own_groups_are_found_per_hierarchy() {
        let found = hierarchies(HYBRID);
        assert_eq!(
            own_dir(&found[2], HYBRID_SELF).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/76b4")
        );
        assert_eq!(
            own_dir(&found[0], HYBRID_SELF).unwrap(),
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            own_dir(&found[5], HYBRID_SELF).unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn hybrid_machines_use_v1_controllers_and_either_freezer() {
        let found = hierarchies(HYBRID);
        let auto = layout(&found, HYBRID_SELF, &[], FreezeWith::Auto);
        assert!(auto.missing.is_empty(), "{:?}", auto.missing);
        let cpu = auto.tree(|r| r.cpu).unwrap();
        assert_eq!(cpu.version, CgroupVersion::V1);
        assert_eq!(cpu.parent, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(
            auto.tree(|r| r.cpu_usage).unwrap().parent,
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(
            auto.tree(|r| r.memory).unwrap().parent,
            Path::new("/sys/fs/cgroup/memory/process_api/76b4")
        );
        assert_eq!(
            auto.tree(|r| r.freezer).unwrap().parent,
            Path::new("/sys/fs/cgroup/freezer")
        );
        let v2 = layout(&found, HYBRID_SELF, &[], FreezeWith::CgroupV2);
        let freezer = v2.tree(|r| r.freezer).unwrap();
        assert_eq!(freezer.version, CgroupVersion::V2);
        assert_eq!(freezer.parent, Path::new("/sys/fs/cgroup/unified"));
        let signal = layout(&found, HYBRID_SELF, &[], FreezeWith::Signal);
        assert!(signal.tree(|r| r.freezer).is_none());
        assert!(signal.missing.is_empty());
    }

    #[test]
    fn pure_v2_machines_use_the_unified_hierarchy_for_everything_it_offers() {
        let mountinfo =
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n";
        let own = "0::/user.slice/user-0.slice/session-1.scope\n";
        let found = hierarchies(mountinfo);
        let offered: Vec<String> = ["cpuset", "cpu", "io", "memory", "pids"]
            .map(String::from)
            .to_vec();
        let l = layout(&found, own, &offered, FreezeWith::Auto);
        assert!(l.missing.is_empty(), "{:?}", l.missing);
        assert_eq!(l.trees.len(), 1);
        let t = &l.trees[0];
        assert_eq!(t.version, CgroupVersion::V2);
        assert_eq!(
            t.parent,
            Path::new("/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope")
        );
        assert!(t.roles.cpu && t.roles.memory && t.roles.freezer && t.roles.cpu_usage);
        // A group that was not given the memory controller: the limit is missing, and said so.
        let l = layout(&found, own, &["cpu".to_owned()], FreezeWith::Auto);
        assert_eq!(l.missing, ["memory: no memory controller"]);
    }

    #[test]
    fn no_cgroups_at_all_is_a_list_of_what_is_missing() {
        let l = layout(&[], "", &[], FreezeWith::Auto);
        assert!(l.trees.is_empty());
        assert_eq!(l.missing.len(), 3, "{:?}", l.missing);
    }

    #[test]
    fn a_container_root_is_taken_off_the_own_path() {
        let mountinfo =
            "40 30 0:31 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let found = hierarchies(mountinfo);
        let own = "5:memory:/docker/abc/inner\n";
        assert_eq!(
            own_dir(&found[0], own).unwrap(),
            Path::new("/sys/fs/cgroup/memory/inner")
        );
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }
}
