//! The INVOKE phase: one invocation's events and measurements.
//!
//! As Lambda runs it: `platform.start`; the INVOKE event to every extension that registered
//! for it, and the request to the runtime's `invocation/next`; the runtime's answer (or a
//! failure, or the deadline) ends the runtime's part: `platform.runtimeDone`; the invocation
//! ends when every extension (and the runtime) is back in `next`, and the time the extensions
//! took after the answer is the post-runtime duration (`extensionOverhead`);
//! `platform.report` closes it.
//!
//! On Lambda Managed Instances, as AWS's emulator for them runs it, several run at once, no
//! `platform.runtimeDone` is sent, and `platform.report` carries only `durationMs` (from the
//! request to the response) and the `responseLatency` and `responseDuration` spans.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::environment::Environment;
use super::init::{Failure, OUT_OF_MEMORY};
use super::{lock, ms_between};
use crate::config::{InitType, RunConfig};
use crate::events;
use crate::ids;
use crate::process::Measurements;
use crate::report::{InvocationReport, ProcessCpu};
use crate::resources::EnvGroup;
use crate::state::{Dispatch, EnvState, Outcome, RUNTIME_LEAF};
use crate::telemetry::Event;

/// What an invocation needs, shareable with concurrent invocation tasks.
pub(super) struct InvokeContext {
    pub(super) config: Arc<RunConfig>,
    pub(super) shared: Arc<EnvState>,
    pub(super) measurements: Arc<Mutex<Measurements>>,
    pub(super) process_groups: Arc<Mutex<Vec<u32>>>,
    pub(super) cgroup: Option<Arc<EnvGroup>>,
    pub(super) index: u32,
}

impl InvokeContext {
    fn publish(&self, kind: &str, record: Value) {
        self.shared
            .hub
            .publish(Event::platform(OffsetDateTime::now_utc(), kind, record));
    }

    /// `maxMemoryUsedMB`: the peak of the summed RSS of every child, or the memory group's
    /// peak (what the limit is enforced against) if larger. The group is charged only for
    /// pages first touched inside it, so a program whose file pages were already cached counts
    /// less there than in its RSS; a child about to be killed for memory counts more.
    fn max_memory_used_mb(&self) -> u64 {
        let groups = lock(&self.process_groups).clone();
        let mut measurements = lock(&self.measurements);
        measurements.sample(&groups);
        let rss = measurements.peak_env_rss_kb.div_ceil(1024);
        let group = self
            .cgroup
            .as_ref()
            .and_then(|g| g.memory_peak())
            .map_or(0, |bytes| bytes.div_ceil(1 << 20));
        rss.max(group)
    }

    /// The CPU time of every child so far.
    fn cpu(&self) -> Vec<ProcessCpu> {
        let state = self.shared.lock();
        let clock = &self.shared.cpu;
        let mut cpu: Vec<ProcessCpu> = clock
            .ms(RUNTIME_LEAF, state.runtime.pid)
            .map(|cpu_ms| ProcessCpu {
                process: "runtime".to_owned(),
                cpu_ms,
            })
            .into_iter()
            .collect();
        for e in &state.extensions {
            if let Some(cpu_ms) = clock.ms(&e.leaf(), e.pid) {
                cpu.push(ProcessCpu {
                    process: e.name.clone(),
                    cpu_ms,
                });
            }
        }
        cpu
    }
}

impl Environment {
    /// One invocation in a thawed environment (frozen again by the caller).
    pub(super) async fn invoke(
        &mut self,
        cold_init: Option<f64>,
        cold_restore: Option<f64>,
    ) -> InvocationReport {
        self.thaw();
        invoke_one(self.invoke_context(), cold_init, cold_restore, false).await
    }

    /// Lambda Managed Instances: `count` invocations, at most the configured concurrency at
    /// once, in an environment that is never frozen.
    pub(super) async fn invoke_concurrently(
        &mut self,
        count: u32,
        cold_init: Option<f64>,
    ) -> Vec<InvocationReport> {
        self.thaw();
        let context = self.invoke_context();
        let mut running = tokio::task::JoinSet::new();
        let mut started = 0u32;
        let mut reports = Vec::new();
        let mut cold = cold_init;
        let limit = self.config.concurrency.max(1);
        while started < count || !running.is_empty() {
            while started < count && (running.len() as u32) < limit {
                running.spawn(invoke_one(context.clone(), cold.take(), None, true));
                started += 1;
            }
            if let Some(Ok(report)) = running.join_next().await {
                reports.push(report);
            }
        }
        reports
    }
}

/// How the runtime's part of an invocation ended.
enum RuntimeEnd {
    /// The runtime posted a response or an error.
    Answered(Outcome),
    /// An extension or the runtime failed first.
    Failed(Failure),
    /// The deadline passed first.
    TimedOut,
}

impl RuntimeEnd {
    /// The `status` and `errorType` of `platform.runtimeDone`.
    fn status(&self) -> (&'static str, Option<&str>) {
        match self {
            RuntimeEnd::Answered(o) => match &o.error_type {
                Some(error_type) => ("error", Some(error_type)),
                None => ("success", None),
            },
            RuntimeEnd::Failed(f) => (f.invoke_status(), Some(f.error_type())),
            RuntimeEnd::TimedOut => ("timeout", None),
        }
    }
}

/// The reason of the reset an invocation ends with, if it resets the environment: a timeout,
/// a crash, or running out of memory.
pub(super) fn reset_reason(invocation: &InvocationReport) -> Option<&'static str> {
    match invocation.status.as_str() {
        "timeout" => Some("timeout"),
        "failure" => Some("failure"),
        _ if invocation.error_type.as_deref() == Some(OUT_OF_MEMORY) => Some("failure"),
        _ => None,
    }
}

/// One invocation, from `platform.start` to `platform.report`.
async fn invoke_one(
    context: Arc<InvokeContext>,
    cold_init: Option<f64>,
    cold_restore: Option<f64>,
    concurrent: bool,
) -> InvocationReport {
    let config = &context.config;
    let shared = &context.shared;
    let start_wall = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let request_id = ids::request_id();
    let header = ids::trace_header(start_wall);
    let span_id = ids::span_id();
    let deadline = t0 + config.timeout;
    let deadline_ms = ids::epoch_millis(start_wall)
        + i64::try_from(config.timeout.as_millis()).unwrap_or(i64::MAX);
    let tracing = events::tracing(&span_id, &header);
    context.publish(
        "platform.start",
        events::start(&request_id, &config.function_version, &tracing),
    );
    if cold_init.is_some() || cold_restore.is_some() {
        for (kind, record) in &config.inject_telemetry {
            context.publish(kind, record.clone());
        }
    }
    let invoke_extensions: Vec<usize> = {
        let state = shared.lock();
        state
            .extensions
            .iter()
            .enumerate()
            .filter(|(_, e)| e.wants("INVOKE") && e.exited.is_none())
            .map(|(i, _)| i)
            .collect()
    };
    for &i in &invoke_extensions {
        shared.deliver_to_extension(
            i,
            json!({
                "eventType": "INVOKE",
                "deadlineMs": deadline_ms,
                "requestId": request_id,
                "invokedFunctionArn": shared.info.function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": header},
            }),
        );
    }
    shared.dispatch_to_runtime(Dispatch {
        request_id: request_id.clone(),
        deadline_ms,
        trace_header: header.clone(),
        body: bytes::Bytes::from(config.payload.clone()),
        client_context: config.client_context.clone(),
        cognito_identity: config.cognito_identity.clone(),
    });

    // The runtime's part ends with its answer, a failure, or the deadline.
    let runtime_end = shared
        .wait_until(Some(deadline), |state| {
            if let Some(o) = state
                .invocations
                .get(&request_id)
                .and_then(|s| s.outcome.clone())
            {
                return Some(RuntimeEnd::Answered(o));
            }
            Failure::of(state).map(RuntimeEnd::Failed)
        })
        .await
        .unwrap_or(RuntimeEnd::TimedOut);
    let runtime_finished = match &runtime_end {
        RuntimeEnd::Answered(o) => o.finished,
        RuntimeEnd::Failed(_) | RuntimeEnd::TimedOut => Instant::now(),
    };
    let runtime_ms = ms_between(t0, runtime_finished);
    let (runtime_status, runtime_error) = runtime_end.status();
    let (produced_bytes, response_spans) = match &runtime_end {
        RuntimeEnd::Answered(o) => (
            Some(o.bytes),
            vec![
                events::span("responseLatency", start_wall, ms_between(t0, o.started)),
                events::span(
                    "responseDuration",
                    o.started_wall,
                    ms_between(o.started, o.finished),
                ),
            ],
        ),
        RuntimeEnd::Failed(_) | RuntimeEnd::TimedOut => (None, vec![]),
    };
    let managed = config.init_type == InitType::LambdaManagedInstances;
    if !managed {
        context.publish(
            "platform.runtimeDone",
            events::runtime_done(
                &events::InvocationOutcome {
                    request_id: &request_id,
                    status: runtime_status,
                    error_type: runtime_error,
                    spans: response_spans.clone(),
                    tracing: &tracing,
                },
                runtime_ms,
                produced_bytes,
            ),
        );
    }

    let mut status = runtime_status.to_owned();
    let mut error_type = runtime_error.map(str::to_owned);
    let mut end = runtime_finished;
    let mut post_runtime_ms = 0.0;
    let mut overhead_span = None;
    if let RuntimeEnd::Answered(o) = &runtime_end {
        // The invoke ends when every extension (and, one at a time, the runtime) is back in next.
        let back = shared
            .wait_until(Some(deadline), |state| {
                if let Some(f) = Failure::of(state) {
                    return Some(Err(f));
                }
                let extensions_back = invoke_extensions.iter().all(|&i| {
                    let e = &state.extensions[i];
                    e.in_next() && e.pending.is_empty()
                });
                let runtime_back = concurrent || state.runtime.parked() > 0;
                (extensions_back && runtime_back).then_some(Ok(()))
            })
            .await;
        match back {
            Some(Ok(())) => {
                let state = shared.lock();
                let last_extension = invoke_extensions
                    .iter()
                    .filter_map(|&i| state.extensions[i].last_next_at)
                    .max();
                if let Some(t) = last_extension {
                    end = end.max(t);
                    post_runtime_ms = ms_between(o.finished, t);
                }
            }
            Some(Err(failed)) => {
                status = failed.invoke_status().into();
                error_type = Some(failed.error_type().to_owned());
                end = Instant::now();
                post_runtime_ms = ms_between(o.finished, end);
            }
            None => {
                status = "timeout".into();
                error_type = None;
                end = Instant::now();
                post_runtime_ms = ms_between(o.finished, end);
            }
        }
        if post_runtime_ms > 0.0 {
            let response_wall = o.started_wall
                + time::Duration::seconds_f64(o.finished.duration_since(o.started).as_secs_f64());
            overhead_span = Some(events::span(
                "extensionOverhead",
                response_wall,
                post_runtime_ms,
            ));
        }
    }

    let duration_ms = ms_between(t0, end);
    let init_billed = match config.init_type {
        InitType::OnDemand => cold_init.map_or(0, |i| i.ceil() as u64),
        InitType::ProvisionedConcurrency
        | InitType::SnapStart
        | InitType::LambdaManagedInstances => 0,
    };
    let billed = (duration_ms.ceil() as u64).max(1) + init_billed;
    let max_memory_used_mb = context.max_memory_used_mb();
    // Managed Instances report the response spans instead of extensionOverhead.
    let report_spans = if managed {
        response_spans
    } else {
        overhead_span.into_iter().collect()
    };
    context.publish(
        "platform.report",
        events::report(
            &events::InvocationOutcome {
                request_id: &request_id,
                status: &status,
                error_type: error_type.as_deref(),
                spans: report_spans,
                tracing: &tracing,
            },
            &events::ReportMetrics {
                duration_ms,
                billed_duration_ms: billed,
                memory_mb: config.memory_mb,
                max_memory_used_mb,
                init_duration_ms: cold_init,
                restore_duration_ms: cold_restore,
                duration_only: managed,
            },
        ),
    );
    InvocationReport {
        cpu: context.cpu(),
        request_id,
        trace_header: header,
        span_id,
        environment: context.index,
        status,
        error_type,
        duration_ms: events::round3(duration_ms),
        runtime_duration_ms: events::round3(runtime_ms),
        post_runtime_ms: events::round3(post_runtime_ms),
        billed_duration_ms: billed,
        max_memory_used_mb,
        init_duration_ms: cold_init,
        restore_duration_ms: cold_restore,
    }
}
