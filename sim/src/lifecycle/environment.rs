//! One execution environment: its child processes, the freeze between invocations (SIGSTOP and
//! SIGCONT of every process group), the watch on each child's exit, the background sampling of
//! memory and CPU, and what goes into the run report when it ends.

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
use crate::events::FunctionInfo;
use crate::ids;
use crate::process::{self, Measurements};
use crate::report::{ExtensionReport, RunReport, RuntimeReport};
use crate::state::{EnvInfo, EnvState, Phase};
use crate::telemetry::{Counters, Event, Hub};

/// How often the background sampler reads /proc while the environment is not frozen.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One execution environment, from init to shutdown.
pub(super) struct Environment<'a> {
    pub(super) config: Arc<RunConfig>,
    pub(super) plan: &'a Plan,
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
}

impl<'a> Environment<'a> {
    pub(super) fn new(
        config: Arc<RunConfig>,
        plan: &'a Plan,
        addr: std::net::SocketAddr,
        index: u32,
        counters: Arc<Counters>,
    ) -> Environment<'a> {
        let (frozen, frozen_rx) = watch::channel(false);
        let hub = Arc::new(Hub::new(
            frozen_rx.clone(),
            config.telemetry_queue_limit,
            counters,
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
            child_vars(&config, plan, addr, &instance_id, &info.credentials_token);
        let process_groups: Arc<Mutex<Vec<u32>>> = Arc::default();
        let measurements: Arc<Mutex<Measurements>> = Arc::default();
        let sampler = spawn_sampler(process_groups.clone(), measurements.clone(), frozen_rx);
        Environment {
            config,
            plan,
            index,
            shared: Arc::new(EnvState::new(info, hub)),
            frozen,
            process_groups,
            measurements,
            sampler: Some(sampler),
            exit_watchers: Vec::new(),
            extension_vars,
            runtime_vars,
            init_ms: None,
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

    /// Stops every child process (SIGSTOP of each process group) until [`Environment::thaw`].
    pub(super) fn freeze(&self) {
        if !self.config.freeze || self.config.init_type == InitType::LambdaManagedInstances {
            return;
        }
        self.sample_now();
        let _ = self.frozen.send(true);
        for group in self.process_groups() {
            process::signal_group(group, Signal::SIGSTOP);
        }
    }

    /// Lets every child run again (SIGCONT), if they were frozen.
    pub(super) fn thaw(&self) {
        if !*self.frozen.borrow() {
            return;
        }
        for group in self.process_groups() {
            process::signal_group(group, Signal::SIGCONT);
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
        self.exit_watchers.push(tokio::spawn(async move {
            let status = child.wait().await;
            let description = match status {
                Ok(s) => process::describe_exit(s),
                Err(e) => format!("wait failed: {e}"),
            };
            shared.update(|state| {
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
            index: self.index,
        })
    }

    /// Stops the background sampler (at shutdown).
    pub(super) fn stop_sampler(&mut self) {
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
    }

    /// Adds this environment's extensions (and, for the first environment, the runtime) to
    /// the report.
    pub(super) fn collect(&self, report: &mut RunReport) {
        let measurements = lock(&self.measurements).clone();
        let state = self.shared.lock();
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
                cpu_ms: stats.map(|s| s.cpu_ms),
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
                cpu_ms: stats.map(|s| s.cpu_ms),
                exit: runtime.exited.clone(),
            };
        }
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
                    tokio::task::spawn_blocking(move || Measurements::read(&groups)).await
                {
                    lock(&measurements).merge(reading);
                }
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    })
}
