//! The INIT phase and the SnapStart RESTORE phase, and what makes them fail.
//!
//! Init, as Lambda runs it: `platform.initStart`; every extension starts and must register
//! before the runtime starts; the runtime starts and calls `invocation/next` (or, for
//! SnapStart, `restore/next`): `platform.initRuntimeDone`; init ends when every extension is
//! in `event/next` too: `platform.initReport`, and the environment is frozen. Each step has the
//! init deadline (10 s on demand, longer for provisioned concurrency and SnapStart). A
//! [`Failure`] or the deadline ends init with the matching `status` in both records.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::environment::Environment;
use super::ms_between;
use super::plan::file_name;
use crate::config::InitType;
use crate::error::SimError;
use crate::events;
use crate::process::{self, Role, SpawnSpec};
use crate::state::{ExtensionSlot, Phase, RUNTIME_LEAF, State, extension_leaf};

/// What stops init or an invocation early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// An extension called `init/error` or `exit/error`. After that no call of it succeeds: it
    /// will never be back in `next`, so waiting for it would only end at the deadline.
    ExtensionError { name: String, error_type: String },
    /// An extension exited while Lambda still needed it.
    ExtensionCrash { name: String, exit: String },
    /// The runtime called `init/error`.
    RuntimeError { error_type: String },
    /// The runtime process exited.
    RuntimeExit { exit: String },
    /// The kernel killed the runtime for exceeding the environment's memory limit.
    OutOfMemory,
}

/// The `errorType` of an environment that ran out of memory.
pub(super) const OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";

impl Failure {
    /// The runtime running out of memory, else the first failure of an extension (in start
    /// order), else the runtime's exit.
    pub(super) fn of(state: &State) -> Option<Failure> {
        if state.runtime.out_of_memory {
            return Some(Failure::OutOfMemory);
        }
        for e in &state.extensions {
            if let Some(error_type) = &e.error_type {
                return Some(Failure::ExtensionError {
                    name: e.name.clone(),
                    error_type: error_type.clone(),
                });
            }
            if e.crashed {
                return Some(Failure::ExtensionCrash {
                    name: e.name.clone(),
                    exit: e.exited.clone().unwrap_or_else(|| "exited".to_owned()),
                });
            }
        }
        state
            .runtime
            .exited
            .as_ref()
            .map(|exit| Failure::RuntimeExit { exit: exit.clone() })
    }

    /// The `errorType` Lambda reports for it.
    pub(super) fn error_type(&self) -> &str {
        match self {
            Failure::ExtensionError { error_type, .. } | Failure::RuntimeError { error_type } => {
                error_type
            }
            Failure::ExtensionCrash { .. } => "Extension.Crash",
            Failure::RuntimeExit { .. } => "Runtime.ExitError",
            Failure::OutOfMemory => OUT_OF_MEMORY,
        }
    }

    /// The `status` of the phase it ends: `error` for a reported error or running out of
    /// memory (as Lambda reports it), `failure` for an exit.
    fn status(&self) -> &'static str {
        match self {
            Failure::ExtensionError { .. }
            | Failure::RuntimeError { .. }
            | Failure::OutOfMemory => "error",
            Failure::ExtensionCrash { .. } | Failure::RuntimeExit { .. } => "failure",
        }
    }

    /// The `status` of an invocation it ends: `failure`, but `error` for running out of
    /// memory (what Lambda reports with `Runtime.OutOfMemory`).
    pub(super) fn invoke_status(&self) -> &'static str {
        match self {
            Failure::OutOfMemory => "error",
            _ => "failure",
        }
    }

    /// The error a failed init ends the run with.
    fn into_init_error(self) -> SimError {
        match self {
            Failure::ExtensionError { name, error_type } => {
                SimError::ExtensionInitError { name, error_type }
            }
            Failure::ExtensionCrash { name, exit } => {
                SimError::ExtensionCrashedDuringInit { name, status: exit }
            }
            Failure::RuntimeError { error_type } => SimError::RuntimeInitError { error_type },
            Failure::RuntimeExit { exit } => SimError::RuntimeExitedDuringInit { status: exit },
            Failure::OutOfMemory => SimError::RuntimeInitError {
                error_type: OUT_OF_MEMORY.to_owned(),
            },
        }
    }
}

impl Environment {
    /// Init may last until then: the init timeout, or for provisioned concurrency and SnapStart
    /// (whose init happens ahead of any request) at least 900 s.
    fn init_deadline(&self, start: Instant) -> Instant {
        match self.config.init_type {
            InitType::ProvisionedConcurrency | InitType::SnapStart => {
                start + self.config.init_timeout.max(Duration::from_secs(900))
            }
            InitType::OnDemand | InitType::LambdaManagedInstances => {
                start + self.config.init_timeout
            }
        }
    }

    /// Runs the init phase; on success the environment is frozen, ready for its first
    /// invocation.
    pub(super) async fn init(&mut self) -> Result<(), SimError> {
        let init_type = self.config.init_type;
        let start = Instant::now();
        let deadline = self.init_deadline(start);
        self.publish(
            "platform.initStart",
            events::init_start(init_type, &self.function_info()),
        );
        // 1. Every extension starts; all must register before the runtime starts.
        self.start_extensions()?;
        let registered = |e: &ExtensionSlot| e.id.is_some();
        match self.wait_for_extensions(deadline, registered).await {
            Some(Ok(())) => {}
            Some(Err(f)) => return Err(self.init_failed(start, f, false)),
            None => {
                let waiting = self.waiting_for(|e| !registered(e), "to register");
                return Err(self.init_timed_out(start, waiting));
            }
        }
        // 2. The runtime starts.
        self.shared.update(|state| state.registration_open = false);
        let spawned = Instant::now();
        self.start_runtime(spawned)?;
        let snap_start = init_type == InitType::SnapStart;
        let runtime_ready = self
            .shared
            .wait_until(Some(deadline), |state| {
                if let Some(error_type) = &state.runtime.init_error {
                    return Some(Err(Failure::RuntimeError {
                        error_type: error_type.clone(),
                    }));
                }
                if let Some(f) = Failure::of(state) {
                    return Some(Err(f));
                }
                let ready =
                    state.runtime.parked() > 0 || (snap_start && state.runtime.in_restore_next());
                ready.then_some(Ok(()))
            })
            .await;
        match runtime_ready {
            Some(Ok(())) => {
                let runtime_start = OffsetDateTime::now_utc()
                    - time::Duration::seconds_f64(spawned.elapsed().as_secs_f64());
                let runtime_ms = ms_between(spawned, Instant::now());
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(
                        init_type,
                        "success",
                        None,
                        vec![events::span("runtimeInit", runtime_start, runtime_ms)],
                    ),
                );
            }
            Some(Err(f)) => return Err(self.init_failed(start, f, false)),
            None => {
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(init_type, "timeout", None, vec![]),
                );
                return Err(self.init_timed_out(start, "the runtime to call next".into()));
            }
        }
        // 3. Init ends when every extension is in next too.
        match self
            .wait_for_extensions(deadline, ExtensionSlot::in_next)
            .await
        {
            Some(Ok(())) => {}
            Some(Err(f)) => return Err(self.init_failed(start, f, true)),
            None => {
                let waiting = self.waiting_for(|e| !e.in_next(), "to call next");
                return Err(self.init_timed_out(start, waiting));
            }
        }
        let init_ms = ms_between(start, Instant::now());
        self.init_ms = Some(init_ms);
        self.publish(
            "platform.initReport",
            events::init_report(init_type, "success", None, init_ms),
        );
        self.shared.update(|state| state.phase = Phase::Running);
        self.shared.hub.close_backlog();
        self.leave_init()?;
        self.freeze().await;
        Ok(())
    }

    /// Spawns every extension, in order, each in its own process group.
    fn start_extensions(&mut self) -> Result<(), SimError> {
        let plan = self.plan.clone();
        for (i, path) in plan.extensions.iter().enumerate() {
            let name = file_name(path);
            let spawned = Instant::now();
            self.shared.update(|state| {
                state
                    .extensions
                    .push(ExtensionSlot::new(name.clone(), spawned));
            });
            let leaf = extension_leaf(&name);
            let spec = SpawnSpec {
                program: &path.to_string_lossy(),
                args: &[],
                env: &self.extension_vars,
                cwd: path.parent().unwrap_or(Path::new("/")),
                role: Role::Extension,
                join: self.join_files(&leaf)?,
                label: name,
                echo: self.config.echo_output,
                log_format: self.config.log_format,
            };
            let child = process::spawn(spec, self.shared.hub.clone()).map_err(|source| {
                SimError::Spawn {
                    what: format!("extension {}", path.display()),
                    source,
                }
            })?;
            // `spawn` returns once `exec` has replaced the forked copy of the emulator, whose
            // teardown is charged to the child's cgroup; the extension's own CPU starts here.
            let at_exec = self.shared.cpu.precise_ms(&leaf);
            let pid = child.id();
            if let Some(pid) = pid {
                self.add_process_group(pid);
            }
            self.shared.update(|state| {
                state.extensions[i].pid = pid;
                state.extensions[i].cpu_at_exec_ms = at_exec;
            });
            self.watch_exit(child, Some(i));
        }
        Ok(())
    }

    /// Spawns the runtime in its own process group.
    fn start_runtime(&mut self, spawned: Instant) -> Result<(), SimError> {
        self.shared
            .update(|state| state.runtime.spawned_at = Some(spawned));
        let spec = SpawnSpec {
            program: &self.plan.program,
            args: &self.plan.args,
            env: &self.runtime_vars,
            cwd: &self.plan.task_root,
            role: Role::Function,
            label: "function".to_owned(),
            echo: self.config.echo_output,
            log_format: self.config.log_format,
            join: self.join_files(RUNTIME_LEAF)?,
        };
        let child = process::spawn(spec, self.shared.hub.clone()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                SimError::RuntimeNotExecutable(self.plan.program.clone())
            } else {
                SimError::Spawn {
                    what: format!("runtime {}", self.plan.program),
                    source,
                }
            }
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            self.add_process_group(pid);
        }
        self.shared.update(|state| state.runtime.pid = pid);
        self.watch_exit(child, None);
        Ok(())
    }

    /// Waits until every extension is `done`, or one fails (`Err`), or `deadline` (`None`).
    async fn wait_for_extensions(
        &self,
        deadline: Instant,
        done: impl Fn(&ExtensionSlot) -> bool,
    ) -> Option<Result<(), Failure>> {
        self.shared
            .wait_until(Some(deadline), |state| match Failure::of(state) {
                Some(f) => Some(Err(f)),
                None => state.extensions.iter().all(&done).then_some(Ok(())),
            })
            .await
    }

    /// `extension(s) a, b {what}`: the extensions init still waits for.
    fn waiting_for(&self, waiting: impl Fn(&ExtensionSlot) -> bool, what: &str) -> String {
        let state = self.shared.lock();
        let names: Vec<String> = state
            .extensions
            .iter()
            .filter(|e| waiting(e))
            .map(|e| e.name.clone())
            .collect();
        format!("extension(s) {} {what}", names.join(", "))
    }

    /// Ends init with `failure`: `platform.initRuntimeDone` (unless the runtime's success was
    /// published already) and `platform.initReport` carry its status and error type.
    fn init_failed(
        &mut self,
        start: Instant,
        failure: Failure,
        runtime_done_published: bool,
    ) -> SimError {
        let init_type = self.config.init_type;
        let (status, error_type) = (failure.status(), failure.error_type());
        if !runtime_done_published {
            self.publish(
                "platform.initRuntimeDone",
                events::init_runtime_done(init_type, status, Some(error_type), vec![]),
            );
        }
        let ms = ms_between(start, Instant::now());
        self.init_ms = Some(ms);
        self.publish(
            "platform.initReport",
            events::init_report(init_type, status, Some(error_type), ms),
        );
        failure.into_init_error()
    }

    /// Ends init at its deadline: `platform.initReport` with status `timeout`.
    fn init_timed_out(&mut self, start: Instant, waiting_for: String) -> SimError {
        let ms = ms_between(start, Instant::now());
        self.init_ms = Some(ms);
        self.publish(
            "platform.initReport",
            events::init_report(self.config.init_type, "timeout", None, ms),
        );
        SimError::InitTimeout {
            limit_ms: self.init_deadline(start).duration_since(start).as_millis(),
            waiting_for,
        }
    }

    /// SnapStart: the snapshot is taken (the environment frozen), then restored: the runtime's
    /// `restore/next` returns, and the restore ends when it calls `invocation/next`. Returns
    /// the restore duration.
    pub(super) async fn restore(&mut self) -> Result<f64, SimError> {
        if self.config.freeze {
            self.freeze().await;
        }
        self.thaw();
        let start = Instant::now();
        let deadline = start + self.config.init_timeout;
        self.publish(
            "platform.restoreStart",
            events::restore_start(&self.function_info()),
        );
        self.shared.update(|state| {
            if let Some(w) = state.runtime.restore_waiter.take() {
                let _ = w.send(());
            }
        });
        let restored = self
            .shared
            .wait_until(Some(deadline), |state| {
                if let Some(error_type) = &state.runtime.restore_error {
                    return Some(Err(error_type.clone()));
                }
                if let Some(f) = Failure::of(state) {
                    return Some(Err(f.error_type().to_owned()));
                }
                (state.runtime.parked() > 0).then_some(Ok(()))
            })
            .await;
        let ms = ms_between(start, Instant::now());
        let (status, error_type) = match &restored {
            Some(Ok(())) => ("success", None),
            Some(Err(error_type)) => ("error", Some(error_type.as_str())),
            None => ("timeout", None),
        };
        self.publish(
            "platform.restoreRuntimeDone",
            events::restore_runtime_done(status, error_type),
        );
        self.publish(
            "platform.restoreReport",
            events::restore_report(status, error_type, ms),
        );
        match restored {
            Some(Ok(())) => Ok(ms),
            Some(Err(error_type)) => Err(SimError::RestoreError { error_type }),
            None => Err(SimError::RestoreError {
                error_type: "timeout".into(),
            }),
        }
    }
}
