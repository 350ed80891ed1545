//! Telemetry API records → OpenTelemetry spans, metrics and logs.
//!
//! Pure: no I/O; every time comes from the records or is passed in. The lifecycle loop feeds
//! it the Extensions API `INVOKE` events ([`Mapper::on_invoke`]), the processing task the
//! decoded records ([`Mapper::on_records`]), and each flush reads the metrics
//! ([`Mapper::collect_metrics`]). The rules, and why, are in `docs/adr/0002-xray-context.md`.
//!
//! What is produced:
//!
//! | from | produces |
//! |---|---|
//! | `INVOKE` + `platform.start` + `runtimeDone` (+ `report`) | the invocation span (SERVER, named after the function) with child spans `aws.lambda.responseLatency`, `aws.lambda.responseDuration`, `aws.lambda.runtimeOverhead`; emitted at `runtimeDone` |
//! | `platform.report` | child span `aws.lambda.extensionOverhead`; `faas.invoke_duration`, `faas.invocations`/`faas.errors`/`faas.timeouts`, `faas.mem_usage`, `aws.lambda.billed_duration`, `aws.lambda.memory_size`, `aws.lambda.extension_overhead`; the invocation span itself when `runtimeDone` never came |
//! | `platform.init*` | span `aws.lambda.init` (new trace), `faas.init_duration`; the first invocation links to it |
//! | `platform.restore*` (SnapStart) | span `aws.lambda.restore`, `aws.lambda.restore_duration`; the environment's cold start |
//! | `function` / `extension` | log records with the invocation's trace and span ids |
//! | `platform.extension`, `telemetrySubscription`, `logsDropped`, unknown types | log records with `event.name` `aws.lambda.<type>` |

pub mod config;
pub mod logs;
mod metrics;
mod otlp;
pub mod resource;
pub mod xray;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyVal;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub use config::{MappingConfig, Temporality, XrayContext};
pub use resource::lambda_resource;
pub use xray::XrayHeader;

use crate::diag::stats::{DropReason, Stats};
use crate::intake::telemetry::event::{
    Event, InitReport, InitRuntimeDone, InitStart, LogLine, LogsDropped, PhaseSpan, Report,
    RestoreReport, RestoreRuntimeDone, RestoreStart, RuntimeDone, Start, TelemetryRecord,
    TraceContext,
};
use crate::pipeline::Signals;
use logs::parse_log;
use metrics::{MetricId, MetricStore};
use otlp::{any, json_to_any, kv_bool, kv_int, kv_str, kv_str_array, ms_to_ns, scope};
use xray::IdGenerator;

const MIB: f64 = 1024.0 * 1024.0;

/// What the Extensions API `INVOKE` event says about an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeInfo {
    pub request_id: String,
    pub deadline_ms: u64,
    pub invoked_function_arn: String,
    /// `tracing.value`: the X-Ray header.
    pub xray_header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpanCtx {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

/// Per-invocation state, keyed by request id, completed as records arrive.
#[derive(Debug)]
struct Invocation {
    seq: u64,
    /// The first invocation this environment has seen.
    first: bool,
    invoke: Option<InvokeInfo>,
    invoke_ns: Option<u64>,
    header: Option<XrayHeader>,
    lambda_span_id: Option<[u8; 8]>,
    start_ns: Option<u64>,
    version: Option<String>,
    tenant_id: Option<String>,
    ctx: Option<SpanCtx>,
    xray_link: Option<SpanCtx>,
    runtime_done: Option<(u64, RuntimeDone)>,
    span_emitted: bool,
    /// Status already counted in faas.invocations / errors / timeouts.
    counted: bool,
    held: Vec<LogRecord>,
}

impl Invocation {
    fn new(seq: u64, first: bool) -> Invocation {
        Invocation {
            seq,
            first,
            invoke: None,
            invoke_ns: None,
            header: None,
            lambda_span_id: None,
            start_ns: None,
            version: None,
            tenant_id: None,
            ctx: None,
            xray_link: None,
            runtime_done: None,
            span_emitted: false,
            counted: false,
            held: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhaseKind {
    Init,
    Restore,
}

/// An init or a SnapStart restore phase.
#[derive(Debug)]
struct Phase {
    ctx: SpanCtx,
    start_ns: Option<u64>,
    initialization_type: Option<String>,
    phase: Option<String>,
    /// An init that describes the creation of a SnapStart snapshot, not this environment.
    snapshot: bool,
    runtime_done: Option<PhaseEnd>,
    emitted: bool,
}

#[derive(Debug, Clone)]
struct PhaseEnd {
    time_ns: u64,
    status: Option<String>,
    error_type: Option<String>,
    spans: Vec<PhaseSpan>,
}

/// Turns Telemetry API records into OTLP data. See the module documentation.
pub struct Mapper {
    config: MappingConfig,
    resource: Resource,
    stats: Arc<Stats>,
    ids: IdGenerator,
    function_name: String,
    metrics: MetricStore,
    pending: HashMap<String, Invocation>,
    seq: u64,
    /// Invocations whose state was retired (reported or evicted), for late records.
    recent: VecDeque<(String, SpanCtx)>,
    /// The request id of the invocation running now (between `platform.start` and its report).
    current: Option<String>,
    invocations_seen: u64,
    init: Option<Phase>,
    restore: Option<Phase>,
    initialization_type: Option<String>,
    /// Lines logged before any init or invocation context is known.
    held_init_logs: Vec<LogRecord>,
    /// The latest record time seen: the end of spans cut short by eviction.
    last_ns: u64,
    staged_spans: Vec<Span>,
    staged_logs: Vec<LogRecord>,
    extension_source: KeyValue,
}

impl Mapper {
    pub fn new(config: MappingConfig, resource: Resource, stats: Arc<Stats>) -> Self {
        Self::with_ids(config, resource, stats, IdGenerator::from_entropy())
    }

    /// As [`Mapper::new`], with ids drawn from a fixed seed (reproducible tests).
    pub fn with_seed(
        config: MappingConfig,
        resource: Resource,
        stats: Arc<Stats>,
        seed: u64,
    ) -> Self {
        Self::with_ids(config, resource, stats, IdGenerator::new(seed))
    }

    fn with_ids(
        config: MappingConfig,
        resource: Resource,
        stats: Arc<Stats>,
        ids: IdGenerator,
    ) -> Self {
        let function_name = resource::resource_str(&resource, "faas.name")
            .or_else(|| resource::resource_str(&resource, "service.name"))
            .unwrap_or("unknown_service")
            .to_owned();
        Mapper {
            metrics: MetricStore::new(config.temporality),
            config,
            resource,
            stats,
            ids,
            function_name,
            pending: HashMap::new(),
            seq: 0,
            recent: VecDeque::new(),
            current: None,
            invocations_seen: 0,
            init: None,
            restore: None,
            initialization_type: None,
            held_init_logs: Vec::new(),
            last_ns: 0,
            staged_spans: Vec::new(),
            staged_logs: Vec::new(),
            extension_source: kv_str("aws.lambda.log.source", "extension"),
        }
    }

    /// The resource all data is emitted with.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Invocations still being assembled.
    pub fn pending_invocations(&self) -> usize {
        self.pending.len()
    }

    /// An Extensions API `INVOKE` event. It may come before or after the invocation's
    /// `platform.start`. Anything it completes is emitted with the next call that has an output.
    pub fn on_invoke(&mut self, invoke: InvokeInfo, now_unix_nano: u64) {
        self.last_ns = self.last_ns.max(now_unix_nano);
        let header = invoke.xray_header.as_deref().map(XrayHeader::parse);
        let id = invoke.request_id.clone();
        let inv = self.invocation(&id);
        if inv.header.is_none() {
            inv.header = header;
        }
        inv.invoke_ns = Some(now_unix_nano);
        inv.invoke = Some(invoke);
        self.try_resolve(&id);
    }

    /// One decoded Telemetry API batch.
    pub fn on_records(&mut self, records: Vec<TelemetryRecord>, out: &mut Signals) {
        for record in records {
            let t = record.time_unix_nano;
            self.last_ns = self.last_ns.max(t);
            match record.event {
                Event::Function(line) => self.on_log(line, t, false),
                Event::ExtensionLog(line) => self.on_log(line, t, true),
                Event::Start(start) => self.on_start(start, t),
                Event::RuntimeDone(done) => self.on_runtime_done(done, t),
                Event::Report(report) => self.on_report(report, t),
                Event::InitStart(start) => self.on_init_start(start, t),
                Event::InitRuntimeDone(done) => self.on_init_runtime_done(done, t),
                Event::InitReport(report) => self.on_init_report(report, t),
                Event::RestoreStart(start) => self.on_restore_start(start, t),
                Event::RestoreRuntimeDone(done) => self.on_restore_runtime_done(done, t),
                Event::RestoreReport(report) => self.on_restore_report(report, t),
                Event::Extension(ext) => {
                    let severity = if ext.error_type.is_some() { 17 } else { 9 };
                    let mut attrs = vec![
                        kv_str("aws.lambda.extension.name", ext.name.clone()),
                        kv_str("aws.lambda.extension.state", ext.state.clone()),
                        kv_str_array("aws.lambda.extension.events", &ext.events),
                    ];
                    if let Some(e) = &ext.error_type {
                        attrs.push(kv_str("error.type", e.clone()));
                    }
                    let body = format!("extension {} {}", ext.name, ext.state);
                    self.platform_log("platform.extension", t, severity, body, attrs);
                }
                Event::TelemetrySubscription(sub) => {
                    let attrs = vec![
                        kv_str("aws.lambda.extension.name", sub.name.clone()),
                        kv_str("aws.lambda.subscription.state", sub.state.clone()),
                        kv_str_array("aws.lambda.subscription.types", &sub.types),
                    ];
                    let body = format!("telemetry subscription {} {}", sub.name, sub.state);
                    self.platform_log("platform.telemetrySubscription", t, 9, body, attrs);
                }
                Event::LogsDropped(dropped) => self.on_logs_dropped(dropped, t),
                Event::Unknown { kind, record } => {
                    let mut log = LogRecord {
                        time_unix_nano: t,
                        observed_time_unix_nano: t,
                        event_name: format!("aws.lambda.{kind}"),
                        body: Some(json_to_any(record)),
                        ..Default::default()
                    };
                    log.attributes
                        .push(kv_str("event.name", log.event_name.clone()));
                    log.attributes.push(kv_str("aws.lambda.record.type", kind));
                    self.staged_logs.push(log);
                }
            }
        }
        self.drain(out);
    }

    /// Metric data for a flush: what accumulated since the last call (delta) or the totals
    /// (cumulative). Also releases log records held for a trace context that has not come.
    pub fn collect_metrics(&mut self, now_unix_nano: u64, out: &mut Signals) {
        self.release_held();
        self.drain(out);
        let metrics = self.metrics.collect(now_unix_nano);
        if !metrics.is_empty() {
            out.metrics.push(ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }

    /// At shutdown: emit every incomplete invocation and phase best-effort (status unset,
    /// `aws.lambda.incomplete=true`), every held log record, and the metrics.
    pub fn finish(&mut self, now_unix_nano: u64, out: &mut Signals) {
        let end = now_unix_nano.max(self.last_ns);
        for kind in [PhaseKind::Init, PhaseKind::Restore] {
            self.emit_phase(kind, None, end);
        }
        let mut ids: Vec<(u64, String)> = self
            .pending
            .iter()
            .map(|(id, inv)| (inv.seq, id.clone()))
            .collect();
        ids.sort_unstable();
        for (_, id) in ids {
            self.retire(&id, end, false);
        }
        self.release_held();
        self.collect_metrics(now_unix_nano, out);
    }

    // ----- invocations -------------------------------------------------------------------

    fn invocation(&mut self, id: &str) -> &mut Invocation {
        if !self.pending.contains_key(id) {
            if self.pending.len() >= self.config.max_pending_invocations.max(1) {
                if let Some(oldest) = self
                    .pending
                    .iter()
                    .min_by_key(|(_, inv)| inv.seq)
                    .map(|(id, _)| id.clone())
                {
                    let end = self.last_ns;
                    self.retire(&oldest, end, true);
                }
            }
            self.seq += 1;
            self.invocations_seen += 1;
        }
        let (seq, first) = (self.seq, self.invocations_seen == 1);
        self.pending
            .entry(id.to_owned())
            .or_insert_with(|| Invocation::new(seq, first))
    }

    fn on_start(&mut self, start: Start, t: u64) {
        let id = start.request_id;
        let inv = self.invocation(&id);
        inv.start_ns = Some(t);
        adopt_tracing(inv, start.tracing.as_ref());
        inv.version = start.version;
        inv.tenant_id = start.tenant_id;
        self.current = Some(id.clone());
        self.try_resolve(&id);
        // Lines logged before any context was known belong to init, which is over.
        self.release_init_logs();
    }

    fn on_runtime_done(&mut self, done: RuntimeDone, t: u64) {
        let id = done.request_id.clone();
        if self.recent_ctx(&id).is_some() {
            // Already retired (evicted): nothing left to build.
            return;
        }
        if let Some(bytes) = done.metrics.as_ref().and_then(|m| m.produced_bytes) {
            self.metrics
                .record(MetricId::ProducedBytes, bytes as f64, t);
        }
        let inv = self.invocation(&id);
        adopt_tracing(inv, done.tracing.as_ref());
        inv.runtime_done = Some((t, done));
        self.resolve_now(&id, t);
        self.emit_invocation_span(&id, None, t, false);
    }

    fn on_report(&mut self, report: Report, t: u64) {
        let id = report.request_id.clone();
        let ctx = match self.recent_ctx(&id) {
            Some(ctx) => ctx,
            None => {
                let inv = self.invocation(&id);
                adopt_tracing(inv, report.tracing.as_ref());
                if inv.start_ns.is_none() && inv.invoke_ns.is_none() {
                    inv.start_ns = Some(t.saturating_sub(ms_to_ns(report.metrics.duration_ms)));
                }
                let ctx = self.resolve_now(&id, t);
                self.emit_invocation_span(&id, Some(&report), t, false);
                if let Some(inv) = self.pending.get_mut(&id) {
                    inv.counted = true;
                }
                self.retire(&id, t, false);
                ctx
            }
        };
        if self.current.as_deref() == Some(id.as_str()) {
            self.current = None;
        }
        for span in &report.spans {
            self.metrics
                .record(MetricId::ExtensionOverhead, span.duration_ms / 1000.0, t);
            self.staged_spans.push(child_span(&ctx, span));
        }
        let m = &report.metrics;
        self.metrics
            .record(MetricId::InvokeDuration, m.duration_ms / 1000.0, t);
        if let Some(billed) = m.billed_duration_ms {
            self.metrics
                .record(MetricId::BilledDuration, billed / 1000.0, t);
        }
        if let Some(used) = m.max_memory_used_mb {
            self.metrics
                .record(MetricId::MemUsage, used as f64 * MIB, t);
        }
        if let Some(size) = m.memory_size_mb {
            self.metrics
                .record(MetricId::MemorySize, size as f64 * MIB, t);
        }
        self.count_status(&report.status, t);
    }

    fn count_status(&mut self, status: &str, t: u64) {
        let id = match status {
            "success" => MetricId::Invocations,
            "timeout" => MetricId::Timeouts,
            _ => MetricId::Errors,
        };
        self.metrics.record(id, 1.0, t);
    }

    /// Fix the trace context now if what defines it has arrived: `platform.start` (which
    /// carries Lambda's span id) and the X-Ray header (from it or the `INVOKE` event).
    fn try_resolve(&mut self, id: &str) {
        let ready = self.pending.get(id).is_some_and(|inv| {
            inv.ctx.is_none()
                && inv.start_ns.is_some()
                && (inv.header.is_some() || inv.invoke.is_some())
        });
        if ready {
            let t = self.last_ns;
            self.resolve_now(id, t);
        }
    }

    /// The invocation's trace context, fixed now if it was not yet; held log records are
    /// released with it.
    fn resolve_now(&mut self, id: &str, t: u64) -> SpanCtx {
        let mode = self.config.xray_context;
        let Some(inv) = self.pending.get_mut(id) else {
            return SpanCtx {
                trace_id: self.ids.trace_id((t / 1_000_000_000) as u32),
                span_id: self.ids.span_id(),
            };
        };
        if let Some(ctx) = inv.ctx {
            return ctx;
        }
        let secs = (inv.start_ns.or(inv.invoke_ns).unwrap_or(t) / 1_000_000_000) as u32;
        let header = inv.header.unwrap_or_default();
        let ctx = match (mode, header.trace_id) {
            (XrayContext::Parent, Some(trace_id)) => SpanCtx {
                trace_id,
                span_id: header.parent_id.unwrap_or_else(|| self.ids.span_id()),
            },
            _ => SpanCtx {
                trace_id: self.ids.trace_id(secs),
                span_id: match mode {
                    // Lambda's span id is unique within the new trace; under the caller's
                    // trace it could collide with the X-Ray segment ids.
                    XrayContext::Parent => self.ids.span_id(),
                    XrayContext::Link | XrayContext::Ignore => {
                        inv.lambda_span_id.unwrap_or_else(|| self.ids.span_id())
                    }
                },
            },
        };
        if mode == XrayContext::Link {
            if let (Some(trace_id), Some(span_id)) = (header.trace_id, header.parent_id) {
                inv.xray_link = Some(SpanCtx { trace_id, span_id });
            }
        }
        inv.ctx = Some(ctx);
        for mut log in inv.held.drain(..) {
            set_log_ctx(&mut log, &ctx);
            self.staged_logs.push(log);
        }
        ctx
    }

    /// Emit the invocation span (once), from `runtimeDone`, or from `report` when given, or
    /// cut short at `end_ns` when neither came (`incomplete`).
    fn emit_invocation_span(
        &mut self,
        id: &str,
        report: Option<&Report>,
        end_ns: u64,
        incomplete: bool,
    ) {
        let cold_link = self.cold_link();
        let prewarmed = self.prewarmed();
        let Some(inv) = self.pending.get_mut(id) else {
            return;
        };
        if inv.span_emitted {
            return;
        }
        let Some(ctx) = inv.ctx else {
            return;
        };
        inv.span_emitted = true;
        let coldstart = inv.first && !prewarmed;
        let runtime_done = inv.runtime_done.as_ref();
        let start = inv
            .start_ns
            .or(inv.invoke_ns)
            .or_else(|| {
                runtime_done.map(|(t, d)| {
                    t.saturating_sub(d.metrics.as_ref().map_or(0, |m| ms_to_ns(m.duration_ms)))
                })
            })
            .unwrap_or(end_ns);
        let end = match (runtime_done, report) {
            (Some((t, d)), _) => match (&d.metrics, inv.start_ns) {
                (Some(m), Some(s)) => s.saturating_add(ms_to_ns(m.duration_ms)),
                _ => *t,
            },
            (None, Some(r)) => start.saturating_add(ms_to_ns(r.metrics.duration_ms)),
            (None, None) => end_ns.max(start),
        };
        let mut attributes = Vec::with_capacity(10);
        attributes.push(kv_str("faas.invocation_id", id));
        attributes.push(kv_bool("faas.coldstart", coldstart));
        if let Some(invoke) = &inv.invoke {
            let arn = invoke.invoked_function_arn.as_str();
            if !arn.is_empty() {
                attributes.push(kv_str("aws.lambda.invoked_arn", arn));
                let parts: Vec<&str> = arn.split(':').collect();
                if let Some(account) = parts.get(4).filter(|a| !a.is_empty()) {
                    attributes.push(kv_str("cloud.account.id", *account));
                }
                if parts.len() >= 7 {
                    let base = parts.get(..7).map(|p| p.join(":")).unwrap_or_default();
                    let version = inv
                        .version
                        .as_deref()
                        .or_else(|| resource::resource_str(&self.resource, "faas.version"));
                    let resource_id = match version {
                        Some(v) if v != "$LATEST" && !v.is_empty() => format!("{base}:{v}"),
                        _ => base,
                    };
                    attributes.push(kv_str("cloud.resource_id", resource_id));
                }
            }
        }
        if let Some(tenant) = &inv.tenant_id {
            attributes.push(kv_str("aws.lambda.tenant_id", tenant.clone()));
        }
        let (status, error_type) = match (runtime_done, report) {
            (Some((_, d)), _) => (Some(d.status.as_str()), d.error_type.as_deref()),
            (None, Some(r)) => (Some(r.status.as_str()), r.error_type.as_deref()),
            (None, None) => (None, None),
        };
        let status = span_status(status, error_type, &mut attributes);
        if incomplete {
            attributes.push(kv_bool("aws.lambda.incomplete", true));
        }
        let mut links = Vec::new();
        if coldstart {
            if let Some(cold) = cold_link {
                links.push(link(&cold, vec![kv_bool("aws.lambda.coldstart", true)]));
            }
        }
        if let Some(xray) = inv.xray_link {
            links.push(link(&xray, vec![kv_str("aws.lambda.link", "xray")]));
        }
        let mut children = Vec::new();
        if let Some((_, d)) = runtime_done {
            for span in &d.spans {
                children.push(child_span(&ctx, span));
            }
        }
        let span = Span {
            trace_id: ctx.trace_id.to_vec(),
            span_id: ctx.span_id.to_vec(),
            name: self.function_name.clone(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end.max(start),
            attributes,
            links,
            status,
            ..Default::default()
        };
        if coldstart {
            self.metrics.record(MetricId::Coldstarts, 1.0, start);
        }
        self.staged_spans.push(span);
        self.staged_spans.extend(children);
    }

    /// Take an invocation out of the pending set: emit what it still owes (best effort) and
    /// remember its context for late records. `evicted` counts the loss when its span had to
    /// be cut short.
    fn retire(&mut self, id: &str, end_ns: u64, evicted: bool) {
        if !self.pending.contains_key(id) {
            return;
        }
        let ctx = self.resolve_now(id, end_ns);
        let incomplete = self
            .pending
            .get(id)
            .is_some_and(|inv| !inv.span_emitted && inv.runtime_done.is_none());
        self.emit_invocation_span(id, None, end_ns, incomplete);
        if incomplete && evicted {
            self.stats.dropped(DropReason::Evicted, 1);
        }
        if let Some(inv) = self.pending.remove(id) {
            if !inv.counted {
                if let Some((t, d)) = &inv.runtime_done {
                    let status = d.status.clone();
                    self.count_status(&status, *t);
                }
            }
        }
        if self.current.as_deref() == Some(id) && evicted {
            self.current = None;
        }
        self.recent.push_back((id.to_owned(), ctx));
        while self.recent.len() > self.config.max_pending_invocations.max(1) {
            self.recent.pop_front();
        }
    }

    fn recent_ctx(&self, id: &str) -> Option<SpanCtx> {
        self.recent
            .iter()
            .rev()
            .find(|(r, _)| r == id)
            .map(|(_, ctx)| *ctx)
    }

    // ----- init and restore ----------------------------------------------------------------

    /// Initialization ran ahead of any request (provisioned concurrency, Managed Instances):
    /// the first invocation is not a cold start. A SnapStart restore always is.
    fn prewarmed(&self) -> bool {
        self.restore.is_none()
            && matches!(
                self.initialization_type.as_deref(),
                Some("provisioned-concurrency" | "lambda-managed-instances")
            )
    }

    /// The span the first invocation links to as its cold start.
    fn cold_link(&self) -> Option<SpanCtx> {
        if let Some(restore) = &self.restore {
            return Some(restore.ctx);
        }
        self.init.as_ref().filter(|p| !p.snapshot).map(|p| p.ctx)
    }

    fn phase_mut(&mut self, kind: PhaseKind, t: u64) -> &mut Phase {
        let ctx = SpanCtx {
            trace_id: self.ids.trace_id((t / 1_000_000_000) as u32),
            span_id: self.ids.span_id(),
        };
        let slot = match kind {
            PhaseKind::Init => &mut self.init,
            PhaseKind::Restore => &mut self.restore,
        };
        slot.get_or_insert_with(|| Phase {
            ctx,
            start_ns: None,
            initialization_type: None,
            phase: None,
            snapshot: false,
            runtime_done: None,
            emitted: false,
        })
    }

    fn on_init_start(&mut self, start: InitStart, t: u64) {
        // A second init (the first failed and Lambda re-ran it): the earlier one is done.
        if self.init.as_ref().is_some_and(|p| p.start_ns.is_some()) {
            self.emit_phase(PhaseKind::Init, None, t);
            self.init = None;
        }
        if let Some(instance) = start.instance_id.as_deref() {
            resource::set_resource_attribute(&mut self.resource, "faas.instance", instance);
        }
        if resource::resource_str(&self.resource, "faas.name").is_none() {
            if let Some(name) = &start.function_name {
                self.function_name = name.clone();
            }
        }
        let snapshot = start.initialization_type == "snap-start";
        if !snapshot {
            self.initialization_type = Some(start.initialization_type.clone());
        }
        let phase = self.phase_mut(PhaseKind::Init, t);
        phase.start_ns = Some(t);
        phase.snapshot = snapshot;
        phase.phase = Some(start.phase);
        phase.initialization_type = Some(start.initialization_type);
        self.release_init_logs();
    }

    fn on_init_runtime_done(&mut self, done: InitRuntimeDone, t: u64) {
        let phase = self.phase_mut(PhaseKind::Init, t);
        phase.snapshot |= done.initialization_type == "snap-start";
        phase
            .initialization_type
            .get_or_insert(done.initialization_type);
        if let Some(p) = done.phase {
            phase.phase.get_or_insert(p);
        }
        phase.runtime_done = Some(PhaseEnd {
            time_ns: t,
            status: Some(done.status),
            error_type: done.error_type,
            spans: done.spans,
        });
    }

    fn on_init_report(&mut self, report: InitReport, t: u64) {
        let phase = self.phase_mut(PhaseKind::Init, t);
        phase.snapshot |= report.initialization_type == "snap-start";
        phase
            .initialization_type
            .get_or_insert(report.initialization_type);
        phase.phase.get_or_insert(report.phase);
        let snapshot = phase.snapshot;
        if !snapshot {
            self.metrics.record(
                MetricId::InitDuration,
                report.metrics.duration_ms / 1000.0,
                t,
            );
        }
        let end = PhaseEnd {
            time_ns: t,
            status: report.status,
            error_type: report.error_type,
            spans: report.spans,
        };
        self.emit_phase(PhaseKind::Init, Some((end, report.metrics.duration_ms)), t);
    }

    fn on_restore_start(&mut self, start: RestoreStart, t: u64) {
        self.ids.mix(t);
        if let Some(instance) = start.instance_id.as_deref() {
            self.ids.mix(fnv1a(instance.as_bytes()));
            resource::set_resource_attribute(&mut self.resource, "faas.instance", instance);
        }
        let phase = self.phase_mut(PhaseKind::Restore, t);
        phase.start_ns = Some(t);
        phase.initialization_type = Some("snap-start".to_owned());
        self.release_init_logs();
    }

    fn on_restore_runtime_done(&mut self, done: RestoreRuntimeDone, t: u64) {
        let phase = self.phase_mut(PhaseKind::Restore, t);
        phase.runtime_done = Some(PhaseEnd {
            time_ns: t,
            status: Some(done.status),
            error_type: done.error_type,
            spans: done.spans,
        });
    }

    fn on_restore_report(&mut self, report: RestoreReport, t: u64) {
        self.phase_mut(PhaseKind::Restore, t);
        let duration = report.metrics.as_ref().map(|m| m.duration_ms);
        if let Some(ms) = duration {
            self.metrics
                .record(MetricId::RestoreDuration, ms / 1000.0, t);
        }
        let end = PhaseEnd {
            time_ns: t,
            status: Some(report.status),
            error_type: report.error_type,
            spans: report.spans,
        };
        let duration = duration.unwrap_or(f64::NAN);
        self.emit_phase(PhaseKind::Restore, Some((end, duration)), t);
    }

    /// Emit the init or restore span (once). `report` is the `*Report` end and its
    /// `durationMs`; without it the span is cut short at `end_ns` and marked incomplete.
    fn emit_phase(&mut self, kind: PhaseKind, report: Option<(PhaseEnd, f64)>, end_ns: u64) {
        let prewarmed = self.prewarmed();
        let slot = match kind {
            PhaseKind::Init => &mut self.init,
            PhaseKind::Restore => &mut self.restore,
        };
        let Some(phase) = slot.as_mut() else {
            return;
        };
        if phase.emitted {
            return;
        }
        phase.emitted = true;
        let incomplete = report.is_none();
        let (end_info, duration_ms) = match report {
            Some((end, d)) => (Some(end), Some(d).filter(|d| d.is_finite())),
            None => (phase.runtime_done.clone(), None),
        };
        let start = phase
            .start_ns
            .or_else(|| duration_ms.map(|d| end_ns.saturating_sub(ms_to_ns(d))))
            .unwrap_or(end_ns);
        let end = match duration_ms {
            Some(d) => start.saturating_add(ms_to_ns(d)),
            None => end_info.as_ref().map_or(end_ns, |e| e.time_ns).max(start),
        };
        let mut attributes = Vec::with_capacity(6);
        attributes.push(kv_bool(
            "faas.coldstart",
            kind == PhaseKind::Restore || (!phase.snapshot && !prewarmed),
        ));
        if let Some(t) = &phase.initialization_type {
            attributes.push(kv_str("aws.lambda.initialization_type", t.clone()));
        }
        if let Some(p) = &phase.phase {
            attributes.push(kv_str("aws.lambda.phase", p.clone()));
        }
        if phase.snapshot {
            attributes.push(kv_bool("aws.lambda.snapstart.snapshot", true));
        }
        // The report's status wins; the runtime's is the fallback.
        let runtime_end = phase.runtime_done.as_ref();
        let status_text = end_info
            .as_ref()
            .and_then(|e| e.status.clone())
            .or_else(|| runtime_end.and_then(|e| e.status.clone()));
        let error_type = end_info
            .as_ref()
            .and_then(|e| e.error_type.clone())
            .or_else(|| runtime_end.and_then(|e| e.error_type.clone()));
        let status = span_status(
            status_text.as_deref(),
            error_type.as_deref(),
            &mut attributes,
        );
        if incomplete {
            attributes.push(kv_bool("aws.lambda.incomplete", true));
        }
        let ctx = phase.ctx;
        let mut children: Vec<Span> = Vec::new();
        let report_spans = if incomplete { None } else { end_info.as_ref() };
        for e in [runtime_end, report_spans].into_iter().flatten() {
            for s in &e.spans {
                let duplicate = children.iter().any(|c| {
                    c.start_time_unix_nano == s.start_unix_nano
                        && c.name.strip_prefix("aws.lambda.") == Some(s.name.as_str())
                });
                if !duplicate {
                    children.push(child_span(&ctx, s));
                }
            }
        }
        let name = match kind {
            PhaseKind::Init => "aws.lambda.init",
            PhaseKind::Restore => "aws.lambda.restore",
        };
        self.staged_spans.push(Span {
            trace_id: ctx.trace_id.to_vec(),
            span_id: ctx.span_id.to_vec(),
            name: name.to_owned(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status,
            ..Default::default()
        });
        self.staged_spans.extend(children);
    }

    // ----- logs --------------------------------------------------------------------------

    fn on_log(&mut self, line: LogLine, t: u64, extension: bool) {
        let parsed = parse_log(line, t);
        let mut record = parsed.record;
        if extension {
            record.attributes.push(self.extension_source.clone());
        }
        let id = parsed.request_id.or_else(|| self.current.clone());
        let Some(id) = id else {
            // No invocation yet: a line of init (or of a restore).
            let ctx = self.restore.as_ref().or(self.init.as_ref()).map(|p| p.ctx);
            match ctx {
                Some(ctx) => {
                    set_log_ctx(&mut record, &ctx);
                    self.staged_logs.push(record);
                }
                None if self.invocations_seen == 0
                    && self.held_init_logs.len() < self.config.max_held_logs =>
                {
                    self.held_init_logs.push(record);
                }
                None => self.staged_logs.push(record),
            }
            return;
        };
        record
            .attributes
            .push(kv_str("faas.invocation_id", id.clone()));
        let max_held = self.config.max_held_logs;
        if let Some(inv) = self.pending.get_mut(&id) {
            match inv.ctx {
                Some(ctx) => set_log_ctx(&mut record, &ctx),
                None if inv.held.len() < max_held => {
                    inv.held.push(record);
                    return;
                }
                // Too many held: emitted without trace context rather than lost.
                None => {}
            }
        } else if let Some(ctx) = self.recent_ctx(&id) {
            set_log_ctx(&mut record, &ctx);
        }
        self.staged_logs.push(record);
    }

    fn release_init_logs(&mut self) {
        if self.held_init_logs.is_empty() {
            return;
        }
        let ctx = self.restore.as_ref().or(self.init.as_ref()).map(|p| p.ctx);
        for mut log in std::mem::take(&mut self.held_init_logs) {
            if let Some(ctx) = &ctx {
                set_log_ctx(&mut log, ctx);
            }
            self.staged_logs.push(log);
        }
    }

    /// Release every held log record: invocations whose context has not come get it fixed now.
    fn release_held(&mut self) {
        let waiting: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, inv)| !inv.held.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            let t = self.last_ns;
            self.resolve_now(&id, t);
        }
        self.release_init_logs();
    }

    fn on_logs_dropped(&mut self, dropped: LogsDropped, t: u64) {
        self.metrics.record(
            MetricId::LogsDroppedRecords,
            dropped.dropped_records as f64,
            t,
        );
        self.metrics
            .record(MetricId::LogsDroppedBytes, dropped.dropped_bytes as f64, t);
        let attrs = vec![
            kv_int(
                "aws.lambda.logs_dropped.records",
                i64::try_from(dropped.dropped_records).unwrap_or(i64::MAX),
            ),
            kv_int(
                "aws.lambda.logs_dropped.bytes",
                i64::try_from(dropped.dropped_bytes).unwrap_or(i64::MAX),
            ),
        ];
        self.platform_log("platform.logsDropped", t, 13, dropped.reason, attrs);
    }

    fn platform_log(
        &mut self,
        kind: &str,
        t: u64,
        severity: i32,
        body: String,
        mut attrs: Vec<KeyValue>,
    ) {
        let event_name = format!("aws.lambda.{kind}");
        attrs.insert(0, kv_str("event.name", event_name.clone()));
        self.staged_logs.push(LogRecord {
            time_unix_nano: t,
            observed_time_unix_nano: t,
            severity_number: severity,
            severity_text: severity_text(severity).to_owned(),
            body: any(AnyVal::StringValue(body)),
            attributes: attrs,
            event_name,
            ..Default::default()
        });
    }

    /// Move staged spans and logs to `out`: one `ResourceSpans` and one `ResourceLogs`.
    fn drain(&mut self, out: &mut Signals) {
        if !self.staged_spans.is_empty() {
            out.spans.push(ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: std::mem::take(&mut self.staged_spans),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        if !self.staged_logs.is_empty() {
            out.logs.push(ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: std::mem::take(&mut self.staged_logs),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
}

fn adopt_tracing(inv: &mut Invocation, tracing: Option<&TraceContext>) {
    let Some(tracing) = tracing else {
        return;
    };
    if inv.header.is_none() {
        inv.header = tracing.value.as_deref().map(XrayHeader::parse);
    }
    if inv.lambda_span_id.is_none() {
        inv.lambda_span_id = tracing
            .span_id
            .as_deref()
            .and_then(xray::parse_hex::<8>)
            .filter(|id| *id != [0; 8]);
    }
}

fn set_log_ctx(log: &mut LogRecord, ctx: &SpanCtx) {
    log.trace_id = ctx.trace_id.to_vec();
    log.span_id = ctx.span_id.to_vec();
}

fn link(ctx: &SpanCtx, attributes: Vec<KeyValue>) -> Link {
    Link {
        trace_id: ctx.trace_id.to_vec(),
        span_id: ctx.span_id.to_vec(),
        attributes,
        ..Default::default()
    }
}

/// A sub-phase Lambda measured, as a child span named `aws.lambda.<name>`.
fn child_span(parent: &SpanCtx, phase: &PhaseSpan) -> Span {
    let mut span_id = [0u8; 8];
    // Deterministic per (parent, name, start): a repeated record yields the same span.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parent
        .span_id
        .iter()
        .chain(phase.name.as_bytes())
        .chain(&phase.start_unix_nano.to_be_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    span_id.copy_from_slice(&h.max(1).to_be_bytes());
    Span {
        trace_id: parent.trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.span_id.to_vec(),
        name: format!("aws.lambda.{}", phase.name),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: phase.start_unix_nano,
        end_time_unix_nano: phase
            .start_unix_nano
            .saturating_add(ms_to_ns(phase.duration_ms)),
        ..Default::default()
    }
}

/// Span status from Lambda's `status`/`errorType`: `success` (or unknown) leaves it unset;
/// anything else is an error, with `error.type` = `errorType`, else the status.
fn span_status(
    status: Option<&str>,
    error_type: Option<&str>,
    attrs: &mut Vec<KeyValue>,
) -> Option<Status> {
    match status {
        None | Some("success") => None,
        Some(status) => {
            let kind = error_type.filter(|e| !e.is_empty()).unwrap_or(status);
            attrs.push(kv_str("error.type", kind));
            attrs.push(kv_str("aws.lambda.status", status));
            Some(Status {
                message: kind.to_owned(),
                code: StatusCode::Error as i32,
            })
        }
    }
}

fn severity_text(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
}

/// FNV-1a: a stable 64-bit hash of a short string.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
