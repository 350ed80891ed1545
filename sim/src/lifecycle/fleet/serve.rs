//! One environment's task in a fleet: its init, the invocations the dispatcher gives it, its
//! freezes between them and its shutdown; and the copy of the extensions it runs.

use std::path::Path;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::super::environment::Environment;
use super::super::plan::{Plan, file_name};
use super::super::{invoke, ms_between};
use super::{Answer, Job, Note, Request};
use crate::error::SimError;
use crate::fleet::report::EnvironmentReport;
use crate::report::{InvocationReport, RunReport, Summary};

/// A task aborted when this is dropped: an environment's API server.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A copy of `plan` whose extensions are in `dir/extensions` of their own (as each Lambda
/// environment extracts its layers): hard links where the file system allows, else copies.
/// A link has no writer: a copy being written while another environment forks would make
/// that child hold it open for writing until its `exec`, and this environment's `exec` of
/// the copy fail with "Text file busy".
pub(super) fn copy_extensions(plan: &Plan, dir: &Path) -> Result<Plan, SimError> {
    let extensions = dir.join("extensions");
    std::fs::create_dir_all(&extensions).map_err(|e| {
        SimError::InvalidConfig(format!("cannot create {}: {e}", extensions.display()))
    })?;
    let mut copy = plan.clone();
    copy.extensions = Vec::new();
    for path in &plan.extensions {
        let to = extensions.join(file_name(path));
        let linked = std::fs::hard_link(path, &to);
        linked
            .or_else(|_| std::fs::copy(path, &to).map(drop))
            .map_err(|e| {
                SimError::InvalidConfig(format!(
                    "cannot copy extension {} to {}: {e}",
                    path.display(),
                    to.display()
                ))
            })?;
        copy.extensions.push(to);
    }
    Ok(copy)
}

/// One environment's life: init, its invocations, its shutdown.
pub(super) async fn serve_environment(
    mut environment: Environment,
    server: AbortOnDrop,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    notes: mpsc::UnboundedSender<Note>,
    first: Option<Request>,
) {
    let index = environment.index as usize;
    let created = Instant::now();
    let provisioned = first.is_none();
    let mut piece = RunReport {
        resources: environment.resources.report(),
        ..RunReport::default()
    };
    let mut measured = EnvironmentReport {
        index: environment.index,
        initialization_type: environment.config.init_type.as_str().to_owned(),
        instance_id: environment.shared.info.instance_id.clone(),
        shutdown_reason: "spindown".into(),
        ..EnvironmentReport::default()
    };
    let init = environment.init().await;
    measured.init_ms = environment.init_ms;
    let mut gaps = Vec::new();
    match init {
        Err(e) => {
            measured.shutdown_reason = "failure".into();
            measured.error = Some(e.to_string());
            let _ = notes.send(Note::Reset(index));
            if let Some(request) = first {
                let _ = request.reply.send(Answer::NotStarted {
                    environment: Some(environment.index),
                    error: e
                        .init_error_type()
                        .map_or_else(|| e.to_string(), str::to_owned),
                });
            }
        }
        Ok(()) => {
            let mut cold_init = if provisioned {
                None
            } else {
                environment.init_ms
            };
            let mut pending = first;
            if pending.is_none() {
                let _ = notes.send(Note::Idle(index));
            }
            let mut last_end: Option<Instant> = None;
            loop {
                let request = match pending.take() {
                    Some(r) => r,
                    None => match jobs.recv().await {
                        Some(Job::Invoke(r)) => r,
                        Some(Job::Shutdown) | None => break,
                    },
                };
                let started = Instant::now();
                if let Some(end) = last_end {
                    gaps.push(ms_between(end, started));
                }
                let cold = cold_init.is_some();
                let invocation: InvocationReport = environment.invoke(cold_init.take(), None).await;
                let ended = Instant::now();
                last_end = Some(ended);
                measured.busy_ms += ms_between(started, ended);
                measured.invocations += 1;
                let reset = invoke::reset_reason(&invocation);
                // The dispatcher hears that the environment is free before the invoker gets
                // its answer, so a request sent right after the answer can use it.
                let _ = notes.send(match reset {
                    Some(_) => Note::Reset(index),
                    None => Note::Idle(index),
                });
                let _ = request.reply.send(Answer::Ran {
                    environment: environment.index,
                    cold,
                    status: invocation.status.clone(),
                    error_type: invocation.error_type.clone(),
                    post_runtime_ms: invocation.post_runtime_ms,
                });
                piece.invocations.push(invocation);
                if let Some(reason) = reset {
                    measured.shutdown_reason = reason.into();
                    break;
                }
                environment.freeze().await;
            }
        }
    }
    measured.lifetime_ms = ms_between(created, Instant::now());
    measured.utilization = if measured.lifetime_ms > 0.0 {
        measured.busy_ms / measured.lifetime_ms
    } else {
        0.0
    };
    measured.idle_gaps = Summary::of(&gaps);
    measured.never_invoked = measured.invocations == 0 && measured.error.is_none();
    let reason = measured.shutdown_reason.clone();
    environment.shutdown(&reason).await;
    environment.collect(&mut piece);
    drop(server);
    let _ = notes.send(Note::Gone(index, Box::new((piece, measured))));
}
