//! What a run measured, as a serializable report (`--report-json`) and as text.
//!
//! Durations are milliseconds, memory kilobytes (peak RSS from `/proc`, `VmHWM`), CPU time
//! milliseconds of user and system time of the process and its reaped children: counted by
//! the child's cgroup (microseconds, every thread) when the resource model runs on cgroups,
//! else read from `/proc/PID/stat` (10 ms ticks).

use std::fmt::Write as _;

use serde::Serialize;

use crate::resources::{CgroupVersion, Throttling};

/// One extension process of one environment.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ExtensionReport {
    /// Its file name, the name it registered with.
    pub name: String,
    /// The executable.
    pub path: String,
    /// Which execution environment (0 = the first; a reset starts a new one).
    pub environment: u32,
    /// The events it registered for.
    pub events: Vec<String>,
    /// The schema version of its Telemetry API subscription, if it subscribed.
    pub telemetry_schema: Option<String>,
    /// From its start to its registration.
    pub spawn_to_register_ms: Option<f64>,
    /// From its start to its first `event/next`: its share of init.
    pub spawn_to_first_next_ms: Option<f64>,
    /// Largest resident memory.
    pub peak_rss_kb: Option<u64>,
    /// CPU time used.
    pub cpu_ms: Option<f64>,
    /// CPU time its cgroup counted before `exec` had loaded it: the end of the forked copy
    /// of the emulator and the `exec` itself (counted by cgroups only).
    pub cpu_at_exec_ms: Option<f64>,
    /// CPU time from its `exec` to its first `event/next` (counted by cgroups only; what
    /// `cpu_at_exec_ms` counts is left out).
    pub cpu_to_first_next_ms: Option<f64>,
    /// How the process ended (`exit code 0`, `killed by SIGKILL`), if it did.
    pub exit: Option<String>,
    /// Exited while Lambda still needed it (before SHUTDOWN).
    pub crashed: bool,
    /// What it reported with `init/error` or `exit/error`.
    pub error_type: Option<String>,
}

/// The runtime process of the first environment.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RuntimeReport {
    /// The runtime command.
    pub command: Vec<String>,
    /// From the runtime's start to its first `invocation/next`.
    pub init_ms: Option<f64>,
    /// Largest resident memory.
    pub peak_rss_kb: Option<u64>,
    /// CPU time used.
    pub cpu_ms: Option<f64>,
    /// How the process ended, if it did.
    pub exit: Option<String>,
}

/// One invocation, as its `platform.report` tells it and more.
#[derive(Debug, Clone, Serialize, Default)]
pub struct InvocationReport {
    /// The request id.
    pub request_id: String,
    /// The X-Ray header of the INVOKE event (`Root=1-…;Parent=…;Sampled=1`).
    pub trace_header: String,
    /// The `tracing.spanId` of the invocation's platform events.
    pub span_id: String,
    /// Which execution environment ran it.
    pub environment: u32,
    /// `success`, `error`, `timeout` or `failure`.
    pub status: String,
    /// The error type of an `error` or `failure`.
    pub error_type: Option<String>,
    /// The whole invoke phase, as `platform.report` `durationMs`.
    pub duration_ms: f64,
    /// From the event to the runtime's response (`platform.runtimeDone` `durationMs`).
    pub runtime_duration_ms: f64,
    /// From the runtime's response to the last extension's `next` (PostRuntimeExtensionsDuration).
    pub post_runtime_ms: f64,
    /// `billedDurationMs`: the duration rounded up, plus the init duration on demand.
    pub billed_duration_ms: u64,
    /// `maxMemoryUsedMB`: the largest resident memory of the whole environment so far.
    pub max_memory_used_mb: u64,
    /// The cold start's init duration, on the first invocation of an environment.
    pub init_duration_ms: Option<f64>,
    /// The SnapStart restore duration, on the first invocation after the restore.
    pub restore_duration_ms: Option<f64>,
    /// The CPU time each process of the environment had used when the invocation ended
    /// (cumulative since its start: the difference of two invocations is what the later one
    /// cost).
    pub cpu: Vec<ProcessCpu>,
}

/// One process's CPU time so far.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ProcessCpu {
    /// `runtime`, or the extension's name.
    pub process: String,
    /// CPU time since it started.
    pub cpu_ms: f64,
}

/// What the CFS bandwidth control did to the environments of a run.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct ThrottleReport {
    /// Periods in which the environments ran.
    pub periods: u64,
    /// Periods that ended with them throttled.
    pub throttled_periods: u64,
    /// Time they spent throttled.
    pub throttled_ms: f64,
}

impl ThrottleReport {
    pub(crate) fn add(&mut self, t: Throttling) {
        self.periods += t.periods;
        self.throttled_periods += t.throttled_periods;
        self.throttled_ms += t.throttled.as_secs_f64() * 1000.0;
    }
}

/// What the emulator enforced of Lambda's resource model (ADR 0010).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ResourceReport {
    /// One line: the CPU share, the memory limit and the freezer, or `UNTHROTTLED` and why.
    pub summary: String,
    /// The CPU share was enforced: the durations are those of the memory size.
    pub cpu_enforced: bool,
    /// The hierarchy of the CPU quota.
    pub cpu_cgroup: Option<CgroupVersion>,
    /// The CFS period.
    pub cpu_period_ms: Option<f64>,
    /// vCPUs' worth of CPU during INIT.
    pub init_vcpus: Option<f64>,
    /// vCPUs' worth of CPU for everything after INIT.
    pub invoke_vcpus: Option<f64>,
    /// The memory size, enforced as the environment's limit.
    pub memory_limit_mb: Option<u32>,
    /// `cgroup v1`, `cgroup v2` or `SIGSTOP`.
    pub freezer: String,
    /// `cgroup v1 cpuacct`, `cgroup v2 cpu.stat` or `/proc (10 ms ticks)`.
    pub cpu_accounting: String,
    /// The parts of the model that were not enforced, and why.
    pub not_enforced: Vec<String>,
    /// What the CPU quota did, over every environment.
    pub throttling: Option<ThrottleReport>,
    /// Processes the kernel killed for exceeding the memory limit.
    pub oom_kills: u64,
}

/// What the Telemetry API delivered to its subscribers over a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Records in batches a subscriber took.
    pub records_delivered: u64,
    /// Batches a subscriber took.
    pub batches_delivered: u64,
    /// Failed deliveries that were tried again.
    pub retries: u64,
    /// Records dropped because a subscriber fell behind (reported in `platform.logsDropped`).
    pub records_dropped: u64,
    /// Their size.
    pub bytes_dropped: u64,
    /// Records still queued when the environment ended (the subscriber was gone).
    pub records_undelivered: u64,
}

/// The machine measurements are made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: String,
    /// The CPU model (`/proc/cpuinfo`).
    pub model: String,
    /// The kernel release.
    pub kernel: String,
}

impl Machine {
    /// This machine (`unknown` where a figure cannot be read).
    pub fn this() -> Machine {
        let unknown = || "unknown".to_owned();
        Machine {
            cpus: std::thread::available_parallelism()
                .map_or_else(|_| unknown(), |n| n.to_string()),
            model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_else(unknown),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| unknown(), |s| s.trim().to_owned()),
        }
    }
}

/// Nearest-rank statistics of a set of values.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Summary {
    /// The smallest.
    pub min: f64,
    /// The 50th percentile.
    pub median: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Summary {
    /// Nearest-rank statistics; `None` for no values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let r = (q * v.len() as f64).ceil() as usize;
            v[r.clamp(1, v.len()) - 1]
        };
        Some(Summary {
            min: v[0],
            median: rank(0.5),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    /// The function's name.
    pub function_name: String,
    /// `on-demand`, `provisioned-concurrency`, `snap-start` or `lambda-managed-instances`.
    pub initialization_type: String,
    /// The memory size.
    pub memory_size_mb: u32,
    /// Execution environments started (more than one after a reset).
    pub environments: u32,
    /// The whole init phase of the first environment (`platform.initReport` `durationMs`).
    pub init_ms: Option<f64>,
    /// The SnapStart restore of the first environment (`platform.restoreReport` `durationMs`).
    pub restore_ms: Option<f64>,
    /// Every extension of every environment.
    pub extensions: Vec<ExtensionReport>,
    /// The runtime of the first environment.
    pub runtime: RuntimeReport,
    /// Every invocation, in the order they ended.
    pub invocations: Vec<InvocationReport>,
    /// The post-runtime durations of all invocations.
    pub post_runtime: Option<Summary>,
    /// What the Telemetry API delivered.
    pub telemetry: DeliveryStats,
    /// What was enforced of Lambda's resource model: read it before comparing durations.
    pub resources: ResourceReport,
}

fn cpu(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
}

fn kb(v: Option<u64>) -> String {
    v.map_or_else(
        || "-".to_owned(),
        |v| format!("{:.1} MB", v as f64 / 1024.0),
    )
}

impl RunReport {
    /// The measurements for a person.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== contrail-sim: {} ({}, {} MB, {} invocation(s), {} environment(s))",
            self.function_name,
            self.initialization_type,
            self.memory_size_mb,
            self.invocations.len(),
            self.environments
        );
        let _ = writeln!(s, "resources: {}", self.resources.summary);
        if let Some(t) = &self.resources.throttling {
            let _ = writeln!(
                s,
                "           throttled in {} of {} periods, {:.1} ms in all; {} OOM kill(s)",
                t.throttled_periods, t.periods, t.throttled_ms, self.resources.oom_kills
            );
        }
        let _ = writeln!(s, "init phase: {}", ms(self.init_ms));
        if self.restore_ms.is_some() {
            let _ = writeln!(s, "restore:    {}", ms(self.restore_ms));
        }
        for e in &self.extensions {
            let _ = writeln!(
                s,
                "extension {:<20} spawn->register {:>10}  spawn->first next {:>10}  peak RSS {:>9}  CPU {:>7}  {}{}",
                e.name,
                ms(e.spawn_to_register_ms),
                ms(e.spawn_to_first_next_ms),
                kb(e.peak_rss_kb),
                cpu(e.cpu_ms),
                e.exit.as_deref().unwrap_or("running"),
                if e.crashed { " (crashed)" } else { "" }
            );
        }
        let _ = writeln!(
            s,
            "runtime   {:<20} init {:>10}  peak RSS {:>9}  CPU {:>7}",
            self.runtime
                .command
                .first()
                .map(String::as_str)
                .unwrap_or(""),
            ms(self.runtime.init_ms),
            kb(self.runtime.peak_rss_kb),
            cpu(self.runtime.cpu_ms)
        );
        for i in &self.invocations {
            let _ = writeln!(
                s,
                "invoke {} {:<8} duration {:>9.1} ms  runtime {:>9.1} ms  post-runtime {:>8.1} ms  billed {:>5} ms  max mem {} MB{}",
                i.request_id,
                i.status,
                i.duration_ms,
                i.runtime_duration_ms,
                i.post_runtime_ms,
                i.billed_duration_ms,
                i.max_memory_used_mb,
                i.error_type
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
        if let Some(p) = &self.post_runtime {
            let _ = writeln!(
                s,
                "post-runtime: min {:.1} ms  median {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                p.min, p.median, p.p99, p.max
            );
        }
        let t = &self.telemetry;
        let _ = writeln!(
            s,
            "telemetry: {} records in {} batches, {} retries, {} dropped, {} undelivered",
            t.records_delivered,
            t.batches_delivered,
            t.retries,
            t.records_dropped,
            t.records_undelivered
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_summary() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.min, s.median, s.p99, s.max), (1.0, 50.0, 99.0, 100.0));
        assert_eq!(Summary::of(&[]), None);
        let one = Summary::of(&[3.0]).unwrap();
        assert_eq!(
            (one.min, one.median, one.p99, one.max),
            (3.0, 3.0, 3.0, 3.0)
        );
    }
}
