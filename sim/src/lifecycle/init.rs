//! Init and SnapStart restore, and what makes them fail.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::environment::Environment;
use super::plan::file_name;
use super::{lock, ms_between};
use crate::config::InitType;
use crate::error::SimError;
use crate::events;
use crate::process::{self, Role, SpawnSpec};
use crate::state::{ExtSlot, Phase, State};

/// What stops init or an invocation early.
pub(super) fn failure(st: &State) -> Option<(String, &'static str, String)> {
    for e in &st.exts {
        // After init/error or exit/error no call of the extension succeeds: it will never be
        // back in next, so waiting for it would only end at the deadline.
        if let Some(et) = &e.error_type {
            return Some((et.clone(), "error", e.name.clone()));
        }
        if e.crashed {
            return Some((
                "Extension.Crash".into(),
                "failure",
                format!("{} ({})", e.name, e.exited.as_deref().unwrap_or("exited")),
            ));
        }
    }
    if let Some(status) = &st.rt.exited {
        return Some(("Runtime.ExitError".into(), "failure", status.clone()));
    }
    None
}

impl Environment<'_> {
    pub(super) fn init_deadline(&self, start: Instant) -> Instant {
        match self.cfg.init_type {
            InitType::ProvisionedConcurrency | InitType::SnapStart => {
                start + self.cfg.init_timeout.max(Duration::from_secs(900))
            }
            _ => start + self.cfg.init_timeout,
        }
    }

    pub(super) async fn init(&mut self) -> Result<(), SimError> {
        let init_type = self.cfg.init_type;
        let start = Instant::now();
        let deadline = self.init_deadline(start);
        self.publish(
            "platform.initStart",
            events::init_start(init_type, &self.function_info()),
        );
        // 1. Every extension starts; all must register before the runtime starts.
        for (i, path) in self.plan.extensions.iter().enumerate() {
            let name = file_name(path);
            let spawned = Instant::now();
            self.env
                .update(|st| st.exts.push(ExtSlot::new(name.clone(), spawned)));
            let spec = SpawnSpec {
                program: &path.to_string_lossy(),
                args: &[],
                env: &self.ext_env,
                cwd: path.parent().unwrap_or(Path::new("/")),
                role: Role::Extension,
                label: name.clone(),
                echo: self.cfg.echo_output,
                log_format: self.cfg.log_format,
            };
            let child =
                process::spawn(spec, self.env.hub.clone()).map_err(|source| SimError::Spawn {
                    what: format!("extension {}", path.display()),
                    source,
                })?;
            let pid = child.id();
            if let Some(pid) = pid {
                lock(&self.pids).push(pid);
            }
            self.ext_pids.push(pid);
            self.env.update(|st| st.exts[i].pid = pid);
            self.watch_exit(child, Some(i));
        }
        let registered = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(f) = failure(st) {
                    return Some(Err(f));
                }
                if let Some(e) = st.exts.iter().find(|e| e.error_type.is_some()) {
                    return Some(Err((
                        e.error_type.clone().unwrap_or_default(),
                        "error",
                        e.name.clone(),
                    )));
                }
                st.exts.iter().all(|e| e.id.is_some()).then_some(Ok(()))
            })
            .await;
        match registered {
            Some(Ok(())) => {}
            Some(Err(f)) => return Err(self.init_failed(start, None, f)),
            None => {
                let waiting = self.waiting_names(|e| e.id.is_none(), "to register");
                return Err(self.init_timed_out(start, waiting));
            }
        }
        // 2. The runtime starts.
        self.env.update(|st| st.registration_open = false);
        let spawned = Instant::now();
        self.env.update(|st| st.rt.spawned_at = Some(spawned));
        let spec = SpawnSpec {
            program: &self.plan.program,
            args: &self.plan.args,
            env: &self.rt_env,
            cwd: &self.plan.task_root,
            role: Role::Function,
            label: "function".to_owned(),
            echo: self.cfg.echo_output,
            log_format: self.cfg.log_format,
        };
        let child = process::spawn(spec, self.env.hub.clone()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                SimError::RuntimeNotExecutable(self.plan.program.clone())
            } else {
                SimError::Spawn {
                    what: format!("runtime {}", self.plan.program),
                    source,
                }
            }
        })?;
        self.rt_pid = child.id();
        if let Some(pid) = self.rt_pid {
            lock(&self.pids).push(pid);
        }
        self.env.update(|st| st.rt.pid = self.rt_pid);
        self.watch_exit(child, None);
        let snap = init_type == InitType::SnapStart;
        let runtime_ready = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(et) = &st.rt.init_error {
                    return Some(Err((et.clone(), "error", "runtime".to_owned())));
                }
                if let Some(f) = failure(st) {
                    return Some(Err(f));
                }
                (st.rt.parked() > 0 || (snap && st.rt.in_restore_next())).then_some(Ok(()))
            })
            .await;
        match runtime_ready {
            Some(Ok(())) => {
                let rt_start_wall = OffsetDateTime::now_utc()
                    - time::Duration::seconds_f64(spawned.elapsed().as_secs_f64());
                let rt_ms = ms_between(spawned, Instant::now());
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(
                        init_type,
                        "success",
                        None,
                        vec![events::span("runtimeInit", rt_start_wall, rt_ms)],
                    ),
                );
            }
            Some(Err(f)) => {
                let st = f.1;
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(init_type, st, Some(&f.0), vec![]),
                );
                return Err(self.init_failed(start, Some(()), f));
            }
            None => {
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(init_type, "timeout", None, vec![]),
                );
                return Err(self.init_timed_out(start, "the runtime to call next".into()));
            }
        }
        // 3. Init ends when every extension is in next too.
        let all_next = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(f) = failure(st) {
                    return Some(Err(f));
                }
                st.exts.iter().all(|e| e.in_next()).then_some(Ok(()))
            })
            .await;
        match all_next {
            Some(Ok(())) => {}
            Some(Err(f)) => return Err(self.init_failed(start, Some(()), f)),
            None => {
                let waiting = self.waiting_names(|e| !e.in_next(), "to call next");
                return Err(self.init_timed_out(start, waiting));
            }
        }
        let init_ms = ms_between(start, Instant::now());
        self.init_ms = Some(init_ms);
        self.publish(
            "platform.initReport",
            events::init_report(init_type, "success", None, init_ms),
        );
        self.env.update(|st| st.phase = Phase::Running);
        self.env.hub.close_backlog();
        self.freeze();
        Ok(())
    }

    pub(super) fn waiting_names(&self, pred: impl Fn(&ExtSlot) -> bool, what: &str) -> String {
        let st = self.env.lock();
        let names: Vec<String> = st
            .exts
            .iter()
            .filter(|e| pred(e))
            .map(|e| e.name.clone())
            .collect();
        format!("extension(s) {} {what}", names.join(", "))
    }

    pub(super) fn init_failed(
        &mut self,
        start: Instant,
        runtime_done_sent: Option<()>,
        f: (String, &'static str, String),
    ) -> SimError {
        let (error_type, status, who) = f;
        let init_type = self.cfg.init_type;
        if runtime_done_sent.is_none() {
            self.publish(
                "platform.initRuntimeDone",
                events::init_runtime_done(init_type, status, Some(&error_type), vec![]),
            );
        }
        let ms = ms_between(start, Instant::now());
        self.init_ms = Some(ms);
        self.publish(
            "platform.initReport",
            events::init_report(init_type, status, Some(&error_type), ms),
        );
        if error_type == "Extension.Crash" {
            let name = who.split(' ').next().unwrap_or("").to_owned();
            let status = who
                .split_once(" (")
                .map(|(_, s)| s.trim_end_matches(')').to_owned())
                .unwrap_or_default();
            return SimError::ExtensionCrashedDuringInit { name, status };
        }
        if error_type == "Runtime.ExitError" {
            return SimError::RuntimeExitedDuringInit { status: who };
        }
        if who == "runtime" {
            return SimError::RuntimeInitError { error_type };
        }
        SimError::ExtensionInitError {
            name: who,
            error_type,
        }
    }

    pub(super) fn init_timed_out(&mut self, start: Instant, waiting_for: String) -> SimError {
        let ms = ms_between(start, Instant::now());
        self.init_ms = Some(ms);
        self.publish(
            "platform.initReport",
            events::init_report(self.cfg.init_type, "timeout", None, ms),
        );
        SimError::InitTimeout {
            limit_ms: self.init_deadline(start).duration_since(start).as_millis(),
            waiting_for,
        }
    }

    /// SnapStart: the snapshot is taken (the environment frozen), then restored.
    pub(super) async fn restore(&mut self) -> Result<f64, SimError> {
        let was = self.cfg.freeze;
        if was {
            self.freeze();
        }
        self.thaw();
        let start = Instant::now();
        let deadline = start + self.cfg.init_timeout;
        self.publish(
            "platform.restoreStart",
            events::restore_start(&self.function_info()),
        );
        self.env.update(|st| {
            if let Some(w) = st.rt.restore_waiter.take() {
                let _ = w.send(());
            }
        });
        let r = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(et) = &st.rt.restore_error {
                    return Some(Err(et.clone()));
                }
                if let Some((et, _, _)) = failure(st) {
                    return Some(Err(et));
                }
                (st.rt.parked() > 0).then_some(Ok(()))
            })
            .await;
        let ms = ms_between(start, Instant::now());
        let (status, et) = match &r {
            Some(Ok(())) => ("success", None),
            Some(Err(et)) => ("error", Some(et.clone())),
            None => ("timeout", None),
        };
        self.publish(
            "platform.restoreRuntimeDone",
            events::restore_runtime_done(status, et.as_deref()),
        );
        self.publish(
            "platform.restoreReport",
            events::restore_report(status, et.as_deref(), ms),
        );
        match r {
            Some(Ok(())) => Ok(ms),
            Some(Err(error_type)) => Err(SimError::RestoreError { error_type }),
            None => Err(SimError::RestoreError {
                error_type: "timeout".into(),
            }),
        }
    }
}
