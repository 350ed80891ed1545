//! One invocation: its events, the runtime's answer, the extensions' return to next, and its
//! measurements.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::environment::Environment;
use super::init::failure;
use super::{lock, ms_between};
use crate::config::{InitType, RunConfig};
use crate::events;
use crate::ids;
use crate::process::Measurements;
use crate::report::InvocationReport;
use crate::state::{Dispatch, Env};
use crate::telemetry::Event;

/// What an invocation needs, shareable with concurrent invocation tasks.
pub(super) struct InvokeCtx {
    pub(super) cfg: Arc<RunConfig>,
    pub(super) env: Arc<Env>,
    pub(super) meas: Arc<Mutex<Measurements>>,
    pub(super) pids: Arc<Mutex<Vec<u32>>>,
    pub(super) index: u32,
}

impl Environment<'_> {
    pub(super) async fn invoke(
        &mut self,
        cold_init: Option<f64>,
        cold_restore: Option<f64>,
    ) -> InvocationReport {
        self.thaw();
        invoke_one(self.ctx(), cold_init, cold_restore, false).await
    }

    pub(super) async fn invoke_concurrently(
        &mut self,
        n: u32,
        cold_init: Option<f64>,
    ) -> Vec<InvocationReport> {
        self.thaw();
        let ctx = self.ctx();
        let mut set = tokio::task::JoinSet::new();
        let mut started = 0u32;
        let mut out = Vec::new();
        let mut cold = cold_init;
        let limit = self.cfg.concurrency.max(1);
        while started < n || !set.is_empty() {
            while started < n && (set.len() as u32) < limit {
                set.spawn(invoke_one(ctx.clone(), cold.take(), None, true));
                started += 1;
            }
            if let Some(Ok(r)) = set.join_next().await {
                out.push(r);
            }
        }
        out
    }
}

/// One invocation, from `platform.start` to `platform.report`.
async fn invoke_one(
    ctx: Arc<InvokeCtx>,
    cold_init: Option<f64>,
    cold_restore: Option<f64>,
    concurrent: bool,
) -> InvocationReport {
    let cfg = &ctx.cfg;
    let env = &ctx.env;
    let start_wall = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let request_id = ids::request_id();
    let header = ids::trace_header(start_wall);
    let span_id = ids::span_id();
    let deadline = t0 + cfg.timeout;
    let deadline_ms =
        ids::epoch_millis(start_wall) + i64::try_from(cfg.timeout.as_millis()).unwrap_or(i64::MAX);
    let tracing = events::tracing(&span_id, &header);
    let publish = |kind: &str, record: Value| {
        env.hub
            .publish(Event::platform(OffsetDateTime::now_utc(), kind, record));
    };
    publish(
        "platform.start",
        events::start(&request_id, &cfg.function_version, &tracing),
    );
    if cold_init.is_some() || cold_restore.is_some() {
        for (kind, record) in &cfg.inject_telemetry {
            publish(kind, record.clone());
        }
    }
    let invoke_exts: Vec<usize> = {
        let st = env.lock();
        st.exts
            .iter()
            .enumerate()
            .filter(|(_, e)| e.wants("INVOKE") && e.exited.is_none())
            .map(|(i, _)| i)
            .collect()
    };
    for &i in &invoke_exts {
        env.deliver_to_extension(
            i,
            json!({
                "eventType": "INVOKE",
                "deadlineMs": deadline_ms,
                "requestId": request_id,
                "invokedFunctionArn": env.info.function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": header},
            }),
        );
    }
    env.dispatch_to_runtime(Dispatch {
        request_id: request_id.clone(),
        deadline_ms,
        trace_header: header.clone(),
        body: bytes::Bytes::from(cfg.payload.clone()),
        client_context: cfg.client_context.clone(),
        cognito_identity: cfg.cognito_identity.clone(),
    });
    enum Done {
        Answered(crate::state::Outcome),
        Failed(String),
    }
    let first = env
        .wait_until(Some(deadline), |st| {
            if let Some(o) = st
                .invocations
                .get(&request_id)
                .and_then(|s| s.outcome.clone())
            {
                return Some(Done::Answered(o));
            }
            failure(st).map(|f| Done::Failed(f.0))
        })
        .await;
    let mut status = "success".to_owned();
    let mut error_type = None;
    let runtime_ms: f64;
    let end: Instant;
    let mut post_runtime_ms = 0.0;
    let mut overhead_span = None;
    match first {
        Some(Done::Answered(o)) => {
            runtime_ms = ms_between(t0, o.finished);
            if let Some(et) = &o.error_type {
                status = "error".into();
                error_type = Some(et.clone());
            }
            let spans = vec![
                events::span("responseLatency", start_wall, ms_between(t0, o.started)),
                events::span(
                    "responseDuration",
                    o.started_wall,
                    ms_between(o.started, o.finished),
                ),
            ];
            publish(
                "platform.runtimeDone",
                events::runtime_done(&events::RuntimeDone {
                    request_id: &request_id,
                    status: &status,
                    error_type: error_type.as_deref(),
                    duration_ms: runtime_ms,
                    produced_bytes: Some(o.bytes),
                    spans,
                    tracing: &tracing,
                }),
            );
            // The invoke ends when every extension (and, one at a time, the runtime) is back in next.
            let back = env
                .wait_until(Some(deadline), |st| {
                    if let Some(f) = failure(st) {
                        return Some(Err(f.0));
                    }
                    let exts_back = invoke_exts.iter().all(|&i| {
                        let e = &st.exts[i];
                        e.in_next() && e.pending.is_empty()
                    });
                    let rt_back = concurrent || st.rt.parked() > 0;
                    (exts_back && rt_back).then_some(Ok(()))
                })
                .await;
            let response_wall = o.started_wall
                + time::Duration::seconds_f64(o.finished.duration_since(o.started).as_secs_f64());
            match back {
                Some(Ok(())) => {
                    let st = env.lock();
                    let last_ext = invoke_exts
                        .iter()
                        .filter_map(|&i| st.exts[i].last_next_at)
                        .max();
                    end = match last_ext {
                        Some(t) if t > o.finished => t,
                        _ => o.finished,
                    };
                    post_runtime_ms = match last_ext {
                        Some(t) => ms_between(o.finished, t),
                        None => 0.0,
                    };
                }
                Some(Err(et)) => {
                    status = "failure".into();
                    error_type = Some(et);
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
                overhead_span = Some(events::span(
                    "extensionOverhead",
                    response_wall,
                    post_runtime_ms,
                ));
            }
        }
        Some(Done::Failed(et)) => {
            status = "failure".into();
            error_type = Some(et);
            end = Instant::now();
            runtime_ms = ms_between(t0, end);
            publish(
                "platform.runtimeDone",
                events::runtime_done(&events::RuntimeDone {
                    request_id: &request_id,
                    status: &status,
                    error_type: error_type.as_deref(),
                    duration_ms: runtime_ms,
                    produced_bytes: None,
                    spans: vec![],
                    tracing: &tracing,
                }),
            );
        }
        None => {
            status = "timeout".into();
            end = Instant::now();
            runtime_ms = ms_between(t0, end);
            publish(
                "platform.runtimeDone",
                events::runtime_done(&events::RuntimeDone {
                    request_id: &request_id,
                    status: &status,
                    error_type: None,
                    duration_ms: runtime_ms,
                    produced_bytes: None,
                    spans: vec![],
                    tracing: &tracing,
                }),
            );
        }
    }
    let duration_ms = ms_between(t0, end);
    let init_billed = match cfg.init_type {
        InitType::OnDemand => cold_init.map_or(0, |i| i.ceil() as u64),
        _ => 0,
    };
    let billed = (duration_ms.ceil() as u64).max(1) + init_billed;
    let max_mem_mb = {
        let p = lock(&ctx.pids).clone();
        let mut m = lock(&ctx.meas);
        m.sample(&p);
        m.peak_env_rss_kb.div_ceil(1024)
    };
    publish(
        "platform.report",
        events::report(&events::Report {
            request_id: &request_id,
            status: &status,
            error_type: error_type.as_deref(),
            duration_ms,
            billed_duration_ms: billed,
            memory_mb: cfg.memory_mb,
            max_memory_used_mb: max_mem_mb,
            init_duration_ms: cold_init,
            restore_duration_ms: cold_restore,
            spans: overhead_span.into_iter().collect(),
            tracing: &tracing,
            duration_only: cfg.init_type == InitType::LambdaManagedInstances,
        }),
    );
    InvocationReport {
        request_id,
        trace_header: header,
        span_id,
        environment: ctx.index,
        status,
        error_type,
        duration_ms: events::round3(duration_ms),
        runtime_duration_ms: events::round3(runtime_ms),
        post_runtime_ms: events::round3(post_runtime_ms),
        billed_duration_ms: billed,
        max_memory_used_mb: max_mem_mb,
        init_duration_ms: cold_init,
        restore_duration_ms: cold_restore,
    }
}
