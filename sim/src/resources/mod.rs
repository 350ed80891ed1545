//! Lambda's resource model, enforced on the environment's processes: a CPU share proportional
//! to memory (a CFS quota of memory / 1,769 MB of one CPU per period, for the runtime and every
//! extension together), memory as a hard limit of the whole environment (the kernel's OOM
//! killer ends it: `Runtime.OutOfMemory`), and freezing with the cgroup freezer. Where cgroups
//! cannot be used (not root, no hierarchy), the run says so once, freezes with SIGSTOP, and
//! its report is labelled unthrottled.
//!
//! | part | file |
//! |---|---|
//! | the options ([`ResourceModel`]) and the run's [`Plan`] | this file |
//! | the CPU share, INIT and after, as numbers (pure) | `model` |
//! | where the controllers are: mountinfo, `/proc/self/cgroup` (pure) | `detect` |
//! | one environment's groups: limits, leaves, freeze, OOM and CPU counters, removal | `cgroup` |
//!
//! The evidence behind the numbers and what stays uncertain: ADR 0010.

mod cgroup;
mod detect;
mod model;

use std::sync::{Arc, Once};
use std::time::Duration;

use crate::config::InitType;
use crate::error::SimError;
use crate::report::{ResourceReport, ThrottleReport};

pub(crate) use cgroup::{EnvGroup, Throttling, leaf_name};
pub use detect::CgroupVersion;
use detect::Layout;
use model::CpuPlan;

/// Whether the emulator uses cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupUse {
    /// When it can (root, hierarchies mounted); otherwise it says so once, runs unthrottled
    /// and labels the report.
    #[default]
    Auto,
    /// Fail the run when a part of the model that is asked for cannot be enforced.
    Require,
    /// Never: no CPU share, no memory limit, SIGSTOP freezing.
    Off,
}

/// How much CPU the INIT phase gets (uncertain on Lambda, see ADR 0010).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitCpu {
    /// On-demand INIT unthrottled, provisioned concurrency and SnapStart INIT throttled.
    #[default]
    Auto,
    /// INIT gets the same share as invocations.
    Throttled,
    /// INIT gets at least two vCPUs (or the memory share, if larger).
    Unthrottled,
}

/// How the environment is frozen between invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FreezeWith {
    /// The cgroup freezer of the hierarchy the other controllers are in, else the other one,
    /// else SIGSTOP.
    #[default]
    Auto,
    /// The cgroup v1 `freezer` controller.
    CgroupV1,
    /// cgroup v2 `cgroup.freeze`.
    CgroupV2,
    /// SIGSTOP and SIGCONT of every child's process group.
    Signal,
}

/// The resource model of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceModel {
    /// Whether cgroups are used.
    pub cgroups: CgroupUse,
    /// Give the environment Lambda's CPU share (else it runs unthrottled).
    pub cpu: bool,
    /// The CFS period (Lambda's observed: 20 ms).
    pub cpu_period: Duration,
    /// Quota a period may carry over into the next (none observed on Lambda).
    pub cpu_burst: Duration,
    /// The CPU of the INIT phase.
    pub init_cpu: InitCpu,
    /// Make the memory size a hard limit of the whole environment.
    pub memory_limit: bool,
    /// How to freeze.
    pub freezer: FreezeWith,
    /// Lambda Managed Instances: the capacity provider's memory per vCPU (2-8 GiB).
    pub managed_gib_per_vcpu: f64,
}

impl Default for ResourceModel {
    fn default() -> Self {
        ResourceModel {
            cgroups: CgroupUse::Auto,
            cpu: true,
            cpu_period: Duration::from_millis(20),
            cpu_burst: Duration::ZERO,
            init_cpu: InitCpu::Auto,
            memory_limit: true,
            freezer: FreezeWith::Auto,
            managed_gib_per_vcpu: 2.0,
        }
    }
}

impl ResourceModel {
    /// No cgroups at all: the emulator as it ran before the resource model, for runs that
    /// measure something else.
    pub fn off() -> ResourceModel {
        ResourceModel {
            cgroups: CgroupUse::Off,
            ..ResourceModel::default()
        }
    }

    /// Why these settings cannot be used, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        model::check_period(self.cpu_period, self.cpu_burst)?;
        if !(2.0..=8.0).contains(&self.managed_gib_per_vcpu) {
            return Err(format!(
                "memory per vCPU {} GiB is outside Lambda Managed Instances' 2-8 GiB",
                self.managed_gib_per_vcpu
            ));
        }
        Ok(())
    }
}

/// Says once per process that the model is not (fully) enforced.
static WARNED: Once = Once::new();
/// Removes the groups of dead sims once per process.
static SWEPT: Once = Once::new();

/// What one run enforces, decided before its first environment starts.
pub(crate) struct Plan {
    layout: Option<Layout>,
    cpu: Option<CpuPlan>,
    memory_bytes: Option<u64>,
    report: ResourceReport,
}

/// This machine's layout, or why there is none.
fn detect_layout(freezer: FreezeWith) -> Result<Layout, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let found = detect::hierarchies(&mountinfo);
    if found.is_empty() {
        return Err("no cgroup hierarchy is mounted".to_owned());
    }
    let v2_controllers: Vec<String> = found
        .iter()
        .find(|h| h.version == CgroupVersion::V2)
        .and_then(|h| detect::own_dir(h, &own))
        .and_then(|dir| std::fs::read_to_string(dir.join("cgroup.controllers")).ok())
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(detect::layout(&found, &own, &v2_controllers, freezer))
}

/// Keeps only the jobs the model asks for.
fn wanted(mut layout: Layout, model: &ResourceModel) -> Layout {
    for tree in &mut layout.trees {
        tree.roles.cpu &= model.cpu;
        tree.roles.memory &= model.memory_limit;
        tree.roles.freezer &= model.freezer != FreezeWith::Signal;
    }
    layout.missing.retain(|m| {
        (model.cpu || !m.starts_with("CPU"))
            && (model.memory_limit || !m.starts_with("memory"))
            && (model.freezer != FreezeWith::Signal || !m.starts_with("freeze"))
    });
    layout.trees.retain(|t| {
        let r = t.roles;
        r.cpu || r.memory || r.freezer || r.cpu_usage
    });
    layout
}

/// Makes and removes one group, to find out before the run whether groups can be made.
fn probe(layout: &Layout) -> Result<(), String> {
    let group = EnvGroup::create(layout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!("{e}: the resource model needs root")
        } else {
            e.to_string()
        }
    })?;
    group.remove();
    Ok(())
}

impl Plan {
    /// Decides what a run of `memory_mb`, started as `init_type`, enforces; `freezes` is
    /// false when the environment is never frozen (`--no-freeze`, Managed Instances).
    pub(crate) fn new(
        model: &ResourceModel,
        memory_mb: u32,
        init_type: InitType,
        freezes: bool,
    ) -> Result<Plan, SimError> {
        model.check().map_err(SimError::InvalidConfig)?;
        let model = &ResourceModel {
            freezer: if freezes {
                model.freezer
            } else {
                FreezeWith::Signal
            },
            ..model.clone()
        };
        let cpu_plan = model::cpu_plan(model, memory_mb, init_type);
        let (layout, unavailable) = match model.cgroups {
            CgroupUse::Off => (None, Some("cgroups are off (--cgroups off)".to_owned())),
            CgroupUse::Auto | CgroupUse::Require => {
                match detect_layout(model.freezer).and_then(|l| {
                    let l = wanted(l, model);
                    SWEPT.call_once(|| cgroup::sweep_stale(&l));
                    probe(&l).map(|()| l)
                }) {
                    Ok(l) => (Some(l), None),
                    Err(why) => (None, Some(why)),
                }
            }
        };
        let mut not_enforced: Vec<String> = layout
            .as_ref()
            .map(|l| l.missing.clone())
            .unwrap_or_default();
        if let Some(why) = &unavailable {
            not_enforced.insert(0, format!("no cgroups: {why}"));
        }
        if model.cgroups == CgroupUse::Require && !not_enforced.is_empty() {
            return Err(SimError::Cgroups(not_enforced.join("; ")));
        }
        let has = |role: fn(&detect::Roles) -> bool| {
            layout
                .as_ref()
                .and_then(|l| l.tree(role))
                .map(|t| t.version)
        };
        let cpu_version = has(|r| r.cpu);
        let memory_version = has(|r| r.memory);
        let freezer_version = has(|r| r.freezer);
        let usage_version = has(|r| r.cpu_usage);
        let cpu = cpu_version.map(|_| cpu_plan);
        let memory_bytes = memory_version.map(|_| u64::from(memory_mb) << 20);
        let mut report = describe(
            cpu.as_ref(),
            cpu_version,
            memory_bytes.map(|_| memory_mb),
            memory_version,
            freezer_version,
            usage_version,
            not_enforced,
        );
        if !freezes {
            report.freezer = "none (never frozen)".to_owned();
            report.summary = report.summary.replace("freeze: SIGSTOP", "never frozen");
        }
        let partial = !report.cpu_enforced && model.cpu || !report.not_enforced.is_empty();
        if partial && model.cgroups != CgroupUse::Off {
            WARNED.call_once(|| {
                eprintln!(
                    "contrail-sim: {}; durations measured here are not Lambda's",
                    report.summary
                );
            });
        }
        Ok(Plan {
            layout,
            cpu,
            memory_bytes,
            report,
        })
    }

    /// What the run enforces, for its report.
    pub(crate) fn report(&self) -> ResourceReport {
        self.report.clone()
    }

    /// The groups of a new environment, with the INIT share and the memory limit set.
    pub(crate) fn environment(&self) -> Result<Option<Arc<EnvGroup>>, SimError> {
        let Some(layout) = &self.layout else {
            return Ok(None);
        };
        let failed = |e: std::io::Error| SimError::Cgroups(e.to_string());
        let group = EnvGroup::create(layout).map_err(failed)?;
        if let Some(cpu) = &self.cpu {
            group.set_cpu(&cpu.init).map_err(failed)?;
        }
        if let Some(bytes) = self.memory_bytes {
            group.set_memory(bytes).map_err(failed)?;
        }
        Ok(Some(Arc::new(group)))
    }

    /// Gives `group` the share of everything after INIT.
    pub(crate) fn after_init(&self, group: &EnvGroup) -> Result<(), SimError> {
        match &self.cpu {
            Some(cpu) if cpu.init != cpu.invoke => group
                .set_cpu(&cpu.invoke)
                .map_err(|e| SimError::Cgroups(e.to_string())),
            _ => Ok(()),
        }
    }
}

/// The report of what is enforced.
fn describe(
    cpu: Option<&CpuPlan>,
    cpu_version: Option<CgroupVersion>,
    memory_limit_mb: Option<u32>,
    memory_version: Option<CgroupVersion>,
    freezer_version: Option<CgroupVersion>,
    usage_version: Option<CgroupVersion>,
    not_enforced: Vec<String>,
) -> ResourceReport {
    let freezer = freezer_version
        .map_or("SIGSTOP", CgroupVersion::describe)
        .to_owned();
    let cpu_accounting = match usage_version {
        Some(CgroupVersion::V1) => "cgroup v1 cpuacct",
        Some(CgroupVersion::V2) => "cgroup v2 cpu.stat",
        None => "/proc (10 ms ticks)",
    }
    .to_owned();
    let enforced = cpu.filter(|_| cpu_version.is_some());
    let mut parts = Vec::new();
    match (enforced, cpu_version) {
        (Some(c), Some(v)) => {
            parts.push(format!(
                "CPU {} ({})",
                model::describe(&c.invoke),
                v.describe()
            ));
            let boost = if c.init_unthrottled {
                "unthrottled"
            } else {
                "throttled"
            };
            parts.push(format!("INIT {boost}, {}", model::describe(&c.init)));
            let host = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            if c.init.vcpus.max(c.invoke.vcpus) > host {
                parts.push(format!(
                    "this machine has only {host} CPUs: a larger share is capped"
                ));
            }
        }
        _ => parts.push("no CPU share".to_owned()),
    }
    match (memory_limit_mb, memory_version) {
        (Some(mb), Some(v)) => parts.push(format!("memory limit {mb} MB ({})", v.describe())),
        _ => parts.push("no memory limit".to_owned()),
    }
    parts.push(format!("freeze: {freezer}"));
    let mut summary = parts.join(", ");
    if enforced.is_none() {
        summary = format!("UNTHROTTLED ({}): {summary}", not_enforced.join("; "));
    } else if !not_enforced.is_empty() {
        summary = format!("{summary}; not enforced: {}", not_enforced.join("; "));
    }
    ResourceReport {
        summary,
        cpu_enforced: enforced.is_some(),
        cpu_cgroup: cpu_version.filter(|_| enforced.is_some()),
        cpu_period_ms: enforced.map(|c| c.invoke.period.as_secs_f64() * 1000.0),
        init_vcpus: enforced.map(|c| c.init.vcpus),
        invoke_vcpus: enforced.map(|c| c.invoke.vcpus),
        memory_limit_mb: memory_limit_mb.filter(|_| memory_version.is_some()),
        freezer,
        cpu_accounting,
        not_enforced,
        throttling: enforced.map(|_| ThrottleReport::default()),
        oom_kills: 0,
    }
}

/// Reads the CPU time of one child: from its cgroup leaf (every thread, microseconds), else
/// from `/proc/PID/stat` (10 ms ticks).
#[derive(Clone, Default)]
pub(crate) struct CpuClock {
    group: Option<Arc<EnvGroup>>,
}

impl CpuClock {
    pub(crate) fn new(group: Option<Arc<EnvGroup>>) -> CpuClock {
        CpuClock { group }
    }

    /// The leaf's CPU time in ms, if cgroups count it.
    pub(crate) fn precise_ms(&self, leaf: &str) -> Option<f64> {
        let t = self.group.as_ref()?.cpu_time(leaf)?;
        Some(t.as_secs_f64() * 1000.0)
    }

    /// The child's CPU time in ms: precise if cgroups count it, else from /proc.
    pub(crate) fn ms(&self, leaf: &str, pid: Option<u32>) -> Option<f64> {
        self.precise_ms(leaf).or_else(|| {
            pid.and_then(crate::process::read_stats)
                .map(|s| s.cpu_ms as f64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_outside_the_kernel_and_lambda_ranges_are_refused() {
        assert!(ResourceModel::default().check().is_ok());
        let bad_period = ResourceModel {
            cpu_period: Duration::from_secs(2),
            ..ResourceModel::default()
        };
        assert!(bad_period.check().unwrap_err().contains("period"));
        let bad_ratio = ResourceModel {
            managed_gib_per_vcpu: 1.0,
            ..ResourceModel::default()
        };
        assert!(bad_ratio.check().unwrap_err().contains("per vCPU"));
    }

    #[test]
    fn cgroups_off_runs_unthrottled_and_says_why() {
        let plan = Plan::new(&ResourceModel::off(), 128, InitType::OnDemand, true).unwrap();
        let r = plan.report();
        assert!(!r.cpu_enforced);
        assert!(r.summary.starts_with("UNTHROTTLED"), "{}", r.summary);
        assert!(r.summary.contains("--cgroups off"), "{}", r.summary);
        assert_eq!(r.freezer, "SIGSTOP");
        assert!(plan.environment().unwrap().is_none());
    }

    #[test]
    fn unwanted_jobs_are_not_missing() {
        let layout = Layout {
            trees: vec![],
            missing: vec![
                "CPU: no cpu controller".into(),
                "memory: no memory controller".into(),
                "freeze: no cgroup freezer".into(),
            ],
        };
        let model = ResourceModel {
            cpu: false,
            memory_limit: false,
            freezer: FreezeWith::Signal,
            ..ResourceModel::default()
        };
        assert!(wanted(layout, &model).missing.is_empty());
    }
}
