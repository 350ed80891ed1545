//! One execution environment: its child processes in its cgroups, the freeze between
//! invocations (the cgroup freezer, else SIGSTOP and SIGCONT of every process group), the watch
//! on each child's exit (and whether the kernel's OOM killer ended it), the background sampling
//! of memory and CPU, and what goes into the run report when it ends.

use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::invoke::InvokeContext;
use super::plan::{Plan, Vars, child_vars};
use super::{lock, ms_between};
use crate::config::{InitType, RunConfig};
use crate::error::SimError;
use crate::events::FunctionInfo;
use crate::ids;
use crate::process::{self, Measurements};
use crate::report::{ExtensionReport, RunReport, RuntimeReport};
use crate::resources::{self, CpuClock, EnvGroup};
use crate::state::{EnvInfo, EnvState, Phase, RUNTIME_LEAF};
use crate::telemetry::{Counters, Event, Hub, Losses};

/// How often the background sampler reads /proc while the environment is not frozen.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How long a cgroup freeze may take before the environment is stopped with signals instead.
const FREEZE_WAIT: Duration = Duration::from_secs(1);

/// One execution environment, from init to shutdown.
pub(super) struct Environment {
    pub(super) config: Arc<RunConfig>,
    pub(super) plan: Arc<Plan>,
    /// 0 for the first environment; a reset starts the next one.
    pub(super) index: u32,
    /// What the API handlers see and change.
    pub(super) shared: Arc<EnvState>,
    /// True while frozen: telemetry delivery and sampling pause.
    frozen: watch::Sender<bool>,
    /// The process groups (each child leads its own), shared with the sampler.
    process_groups: Arc<Mutex<Vec<u32>>>,
    measurements: Arc<Mutex<Measurements>>,
    sampler: Option<JoinHandle<()>>,
    /// One task per child, waiting for it to exit.
    pub(super) exit_watchers: Vec<JoinHandle<()>>,
    pub(super) extension_vars: Vars,
    pub(super) runtime_vars: Vars,
    /// How long init took (also when it failed).
    pub(super) init_ms: Option<f64>,
    /// What the run enforces of Lambda's resources.
    pub(super) resources: Arc<resources::Plan>,
    /// The environment's cgroups, when the resource model runs on them.
    pub(super) cgroup: Option<Arc<EnvGroup>>,
    /// The environment was stopped with SIGSTOP (no cgroup freezer, or it failed).
    stopped_by_signal: bool,
}

impl Environment {
    pub(super) fn new(
        config: Arc<RunConfig>,
        plan: Arc<Plan>,
        resources: Arc<resources::Plan>,
        addr: std::net::SocketAddr,
        index: u32,
        counters: Arc<Counters>,
    ) -> Result<Environment, SimError> {
        let cgroup = resources.environment()?;
        let (frozen, frozen_rx) = watch::channel(false);
        let hub = Arc::new(Hub::new(
            frozen_rx.clone(),
            config.telemetry_queue_limit,
            counters,
            Losses {
                dropped: config.drop_telemetry.clone(),
                omitted: config.omit_telemetry.clone(),
            },
        ));
        let instance_id = ids::instance_id();
        let info = EnvInfo {
            function_name: config.function_name.clone(),
            function_version: config.function_version.clone(),
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                config.region, config.account_id, config.function_name
            ),
            handler: config.handler.clone(),
            account_id: config.account_id.clone(),
            init_type: config.init_type,
            memory_mb: config.memory_mb,
            instance_id: instance_id.clone(),
            required_schema: config.required_schema,
            credentials: config.credentials.clone(),
            credentials_token: ids::instance_id(),
        };
        let (extension_vars, runtime_vars) =
            child_vars(&config, &plan, addr, &instance_id, &info.credentials_token);
        let process_groups: Arc<Mutex<Vec<u32>>> = Arc::default();
        let measurements: Arc<Mutex<Measurements>> = Arc::default();
        let sampler = spawn_sampler(process_groups.clone(), measurements.clone(), frozen_rx);
        let clock = CpuClock::new(cgroup.clone());
        Ok(Environment {
            config,
            plan,
            index,
            shared: Arc::new(EnvState::new(info, hub, clock)),
            frozen,
            process_groups,
            measurements,
            sampler: Some(sampler),
            exit_watchers: Vec::new(),
            extension_vars,
            runtime_vars,
            init_ms: None,
            resources,
            cgroup,
            stopped_by_signal: false,
        })
    }

    /// The `cgroup.procs` files a child of leaf `leaf` joins before it runs.
    pub(super) fn join_files(&self, leaf: &str) -> Result<Vec<std::fs::File>, SimError> {
        match &self.cgroup {
            Some(group) => group
                .join_files(leaf)
                .map_err(|e| SimError::Cgroups(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    /// Gives the environment the CPU share of everything after INIT.
    pub(super) fn leave_init(&self) -> Result<(), SimError> {
        match &self.cgroup {
            Some(group) => self.resources.after_init(group),
            None => Ok(()),
        }
    }

    /// What `platform.initStart` and `platform.restoreStart` say about the function.
    pub(super) fn function_info(&self) -> FunctionInfo<'_> {
        let info = &self.shared.info;
        FunctionInfo {
            function_name: &info.function_name,
            function_arn: &info.function_arn,
            function_version: &info.function_version,
            instance_id: &info.instance_id,
            memory_mb: info.memory_mb,
            runtime_version: self.config.runtime_version.as_deref(),
        }
    }

    /// Publishes a platform event now.
    pub(super) fn publish(&self, kind: &str, record: Value) {
        self.shared
            .hub
            .publish(Event::platform(OffsetDateTime::now_utc(), kind, record));
    }

    /// Adds a child's process group to those frozen, thawed, sampled and killed.
    pub(super) fn add_process_group(&self, pid: u32) {
        lock(&self.process_groups).push(pid);
    }

    /// Reads memory and CPU of every child now.
    pub(super) fn sample_now(&self) {
        let groups = self.process_groups();
        lock(&self.measurements).sample(&groups);
    }

    pub(super) fn process_groups(&self) -> Vec<u32> {
        lock(&self.process_groups).clone()
    }

    /// Stops every child process until [`Environment::thaw`]: with the cgroup freezer, else
    /// (or if it does not finish in time) SIGSTOP of each process group.
    pub(super) async fn freeze(&mut self) {
        if !self.config.freeze || self.config.init_type == InitType::LambdaManagedInstances {
            return;
        }
        self.sample_now();
        let _ = self.frozen.send(true);
        if let Some(group) = self.cgroup.clone().filter(|g| g.freezer().is_some()) {
            match freeze_group(&group).await {
                Ok(()) => return,
                Err(e) => {
                    eprintln!(
                        "contrail-sim: the cgroup freezer failed ({e}): stopping with SIGSTOP"
                    );
                    let _ = group.set_frozen(false);
                }
            }
        }
        self.stopped_by_signal = true;
        for group in self.process_groups() {
            process::signal_group(group, Signal::SIGSTOP);
        }
    }

    /// Lets every child run again, if they were frozen.
    pub(super) fn thaw(&mut self) {
        if !*self.frozen.borrow() {
            return;
        }
        if self.stopped_by_signal {
            for group in self.process_groups() {
                process::signal_group(group, Signal::SIGCONT);
            }
            self.stopped_by_signal = false;
        } else if let Some(group) = &self.cgroup {
            if let Err(e) = group.set_frozen(false) {
                eprintln!("contrail-sim: cannot thaw the environment's cgroup: {e}");
            }
        }
        let _ = self.frozen.send(false);
    }

    /// Records how `child` ends: extension `Some(index)` or the runtime (`None`). An extension
    /// that exits before SHUTDOWN without having reported an error has crashed.
    pub(super) fn watch_exit(
        &mut self,
        mut child: tokio::process::Child,
        extension: Option<usize>,
    ) {
        let shared = self.shared.clone();
        let cgroup = self.cgroup.clone();
        self.exit_watchers.push(tokio::spawn(async move {
            let status = child.wait().await;
            let description = match &status {
                Ok(s) => process::describe_exit(*s),
                Err(e) => format!("wait failed: {e}"),
            };
            // The kernel's OOM killer sends SIGKILL and counts the kill in the memory group.
            let killed = status
                .as_ref()
                .is_ok_and(|s| ExitStatusExt::signal(s) == Some(Signal::SIGKILL as i32));
            let oom_kills = cgroup.as_ref().and_then(|g| g.oom_kills()).unwrap_or(0);
            shared.update(|state| {
                let out_of_memory = killed && oom_kills > state.oom_kills_seen;
                state.oom_kills_seen = state.oom_kills_seen.max(oom_kills);
                let shutting_down = state.phase == Phase::Shutdown;
                match extension {
                    Some(i) => {
                        if let Some(e) = state.extensions.get_mut(i) {
                            e.exited = Some(description);
                            e.crashed = !shutting_down && e.error_type.is_none();
                            e.waiter = None;
                        }
                    }
                    None => {
                        if !shutting_down {
                            state.runtime.out_of_memory = out_of_memory;
                            state.runtime.exited = Some(description);
                        } else {
                            state.runtime.exited.get_or_insert(description);
                        }
                    }
                }
            });
        }));
    }

    /// What an invocation needs, also from a task of its own.
    pub(super) fn invoke_context(&self) -> Arc<InvokeContext> {
        Arc::new(InvokeContext {
            config: self.config.clone(),
            shared: self.shared.clone(),
            measurements: self.measurements.clone(),
            process_groups: self.process_groups.clone(),
            cgroup: self.cgroup.clone(),
            index: self.index,
        })
    }

    /// Stops the background sampler (at shutdown).
    pub(super) fn stop_sampler(&mut self) {
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
    }

    /// Adds this environment's extensions (and, for the first environment, the runtime), its
    /// throttling and its OOM kills to the report, and removes its cgroups.
    pub(super) fn collect(&self, report: &mut RunReport) {
        let measurements = lock(&self.measurements).clone();
        let state = self.shared.lock();
        let clock = &self.shared.cpu;
        if let Some(group) = &self.cgroup {
            if let (Some(t), Some(total)) = (group.throttling(), &mut report.resources.throttling) {
                total.add(t);
            }
            report.resources.oom_kills += group.oom_kills().unwrap_or(0);
        }
        for (i, e) in state.extensions.iter().enumerate() {
            let stats = e.pid.and_then(|p| measurements.per_pid.get(&p));
            report.extensions.push(ExtensionReport {
                name: e.name.clone(),
                path: self
                    .plan
                    .extensions
                    .get(i)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                environment: self.index,
                events: e.events.clone(),
                telemetry_schema: e.subscribed.map(|s| s.as_str().to_owned()),
                spawn_to_register_ms: e.registered_at.map(|t| ms_between(e.spawned_at, t)),
                spawn_to_first_next_ms: e.first_next_at.map(|t| ms_between(e.spawned_at, t)),
                peak_rss_kb: stats.map(|s| s.peak_rss_kb),
                cpu_ms: clock
                    .precise_ms(&e.leaf())
                    .or(stats.map(|s| s.cpu_ms as f64)),
                cpu_at_exec_ms: e.cpu_at_exec_ms,
                cpu_to_first_next_ms: e.cpu_to_first_next_ms,
                exit: e.exited.clone(),
                crashed: e.crashed,
                error_type: e.error_type.clone(),
            });
        }
        if self.index == 0 {
            let runtime = &state.runtime;
            let stats = runtime.pid.and_then(|p| measurements.per_pid.get(&p));
            let ready = match (runtime.first_next_at, runtime.restore_next_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            report.runtime = RuntimeReport {
                command: self.config.runtime_command.clone(),
                init_ms: match (runtime.spawned_at, ready) {
                    (Some(s), Some(r)) => Some(ms_between(s, r)),
                    _ => None,
                },
                peak_rss_kb: stats.map(|s| s.peak_rss_kb),
                cpu_ms: clock
                    .precise_ms(RUNTIME_LEAF)
                    .or(stats.map(|s| s.cpu_ms as f64)),
                exit: runtime.exited.clone(),
            };
        }
        drop(state);
        if let Some(group) = &self.cgroup {
            group.remove();
        }
    }
}

impl Drop for Environment {
    /// An environment dropped before its shutdown finished (an error, an interrupted run)
    /// leaves nothing behind: its cgroups are removed and what still ran in them killed.
    fn drop(&mut self) {
        if let Some(group) = &self.cgroup {
            group.remove();
        }
    }
}

/// Freezes `group` and waits until the kernel says every process is frozen.
async fn freeze_group(group: &EnvGroup) -> std::io::Result<()> {
    group.set_frozen(true)?;
    let until = tokio::time::Instant::now() + FREEZE_WAIT;
    loop {
        if group.is_frozen()? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("not frozen after {} ms", FREEZE_WAIT.as_millis()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Samples memory and CPU of every process group every [`SAMPLE_EVERY`] while the environment
/// is not frozen (a frozen environment must not be touched, and nothing changes in it).
fn spawn_sampler(
    process_groups: Arc<Mutex<Vec<u32>>>,
    measurements: Arc<Mutex<Measurements>>,
    frozen: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if !*frozen.borrow() {
                let groups = lock(&process_groups).clone();
                // Reading /proc blocks: off the runtime's threads, without holding the lock.
                if let Ok(reading) =
                    tokio::task::spawn_blocking(move || Measurements::read(&groups, true)).await
                {
                    lock(&measurements).merge(reading);
                }
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    })
}
