//! Telemetry API records → OpenTelemetry spans, metrics and logs.
//!
//! No I/O: every time comes from the records or is passed in, and its only shared state is
//! the `evicted` drop counter. The worker feeds it the Extensions API `INVOKE` events
//! ([`Mapper::on_invoke`]) and the decoded records ([`Mapper::on_records`]), and each flush
//! reads the metrics ([`Mapper::collect_metrics`]). The rules, and why, are in
//! `docs/adr/0002-xray-context.md`.
//!
//! One `impl Mapper` per role, in sibling files over the state declared here:
//!
//! | file | role |
//! |---|---|
//! | `mod.rs` | the [`Mapper`], its state and its public calls; record dispatch; the OTLP envelopes |
//! | `invocation.rs` | per-request state, correlation of `INVOKE`/`start`/`runtimeDone`/`report`, trace context, retiring |
//! | `spans.rs` | the invocation span, child spans of Lambda's sub-phases, span status |
//! | `phases.rs` | init and SnapStart restore spans, which one is the cold start |
//! | `log_context.rs` | the trace context of log lines, held until it is known |
//! | `platform_logs.rs` | `platform.extension`, `telemetrySubscription`, `logsDropped`, unknown types as log records |
//! | `logs.rs` | one log line → a log record (text formats, JSON) |
//! | `instruments.rs` | the instruments: name, unit, description, kind, histogram boundaries |
//! | `metrics.rs` | their aggregation, read at each flush |
//! | `environment.rs` | when cost, utilization and Contrail's own init are recorded (calls into the pure modules below) |
//! | `cost.rs`, `prices.rs` | estimated cost (pure), its variables, Lambda's list prices (shared with `contrail-sim tune`) |
//! | `utilization.rs` | busy time ÷ lifetime of the environment, idle gaps, unused init (pure) |
//! | `cold_start.rs` | the children of the init span: Contrail, the runtime and the function's init, the wait for extensions (pure) |
//! | `usage.rs` | what the environment's processes used (`intake::environment`): span attributes, events, metrics |
//! | `otlp.rs` | OTLP value builders, severities, the one hash |
//! | `config.rs`, `resource.rs`, `xray.rs` | variables, the Lambda resource, the X-Ray header and ids |
//!
//! What is produced:
//!
//! | from | produces |
//! |---|---|
//! | `INVOKE` + `platform.start` + `runtimeDone` (+ `report`) | the invocation span (SERVER, named after the function) with child spans `aws.lambda.responseLatency`, `aws.lambda.responseDuration`, `aws.lambda.runtimeOverhead`; emitted at `runtimeDone` |
//! | `platform.report` | child span `aws.lambda.extensionOverhead`; `faas.invoke_duration`, `faas.invocations`/`faas.errors`/`faas.timeouts`, `faas.mem_usage`, `aws.lambda.billed_duration`, `aws.lambda.memory_size`, `aws.lambda.extension_overhead`; the invocation span itself when `runtimeDone` never came |
//! | `platform.init*` | span `aws.lambda.init` (new trace), `faas.init_duration`; the first invocation links to it |
//! | `platform.restore*` (SnapStart) | span `aws.lambda.restore`, `aws.lambda.restore_duration`; the environment's cold start |
//! | `platform.initStart`, `initRuntimeDone`, `initReport` + Contrail's own start and first `next` | children `aws.lambda.init.contrail`, `aws.lambda.init.runtime`, `aws.lambda.init.extensions` |
//! | `platform.report` (+ `initReport`, a restore) with list prices | `aws.lambda.invocation.cost`, `aws.lambda.init.cost`, `aws.lambda.restore.cost` |
//! | the phases' and invocations' times, at each flush and SHUTDOWN | `aws.lambda.environment.{utilization,busy_time,lifetime,invocations,idle_gap,unused_init}` |
//! | `function` / `extension` | log records with the invocation's trace and span ids |
//! | `platform.extension`, `telemetrySubscription`, `logsDropped`, unknown types | log records with `event.name` `aws.lambda.<type>` |

mod cold_start;
pub(crate) mod config;
pub(crate) mod cost;
mod environment;
mod instruments;
mod invocation;
mod log_context;
pub(crate) mod logs;
mod metrics;
mod otlp;
mod phases;
mod platform_logs;
mod prices;
pub(crate) mod resource;
mod spans;
mod usage;
mod utilization;
pub(crate) mod xray;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

pub(crate) use cold_start::OwnInit;
pub use config::MappingConfig;
pub use resource::lambda_resource;
pub(crate) use xray::XrayHeader;

use crate::diag::Stats;
use crate::intake::telemetry::event::{Event, TelemetryRecord};
use crate::pipeline::Signals;
use invocation::Invocation;
use metrics::MetricStore;
use otlp::{kv_str, scope};
use phases::{Phase, PhaseDurations, PhaseKind};
use utilization::Utilization;
use xray::IdGenerator;

/// What the Extensions API `INVOKE` event says about an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeInfo {
    /// The request id, which the Telemetry API records of the invocation carry too.
    pub request_id: String,
    /// Unix epoch milliseconds by which the invocation must end.
    pub deadline_ms: u64,
    /// The ARN the function was invoked by (with a version or alias when given).
    pub invoked_function_arn: String,
    /// `tracing.value`: the X-Ray header.
    pub xray_header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpanCtx {
    trace_id: [u8; 16],
    span_id: [u8; 8],
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
    /// The init and restore durations were recorded, from their own report or from
    /// `platform.report` (whichever came first).
    durations: PhaseDurations,
    initialization_type: Option<String>,
    /// Lines logged before any init or invocation context is known.
    held_init_logs: Vec<LogRecord>,
    /// The latest record time seen: the end of spans cut short by eviction.
    last_ns: u64,
    staged_spans: Vec<Span>,
    staged_logs: Vec<LogRecord>,
    extension_source: KeyValue,
    utilization: Utilization,
    /// Contrail's own start-up, once the lifecycle has told it; `true` once its span is out.
    own_init: Option<(OwnInit, bool)>,
    /// The restore's cost was recorded.
    restore_costed: bool,
    /// What the processes used by init's end, for the init span.
    init_usage: Option<crate::intake::environment::InitUsage>,
    /// Every invocation has an `INVOKE` event (not on Managed Instances): an invocation span
    /// waits for it.
    invokes_expected: bool,
}

impl Mapper {
    pub(crate) fn new(config: MappingConfig, resource: Resource, stats: Arc<Stats>) -> Self {
        Self::with_ids(config, resource, stats, IdGenerator::from_entropy())
    }

    /// As `Mapper::new`, with ids drawn from a fixed seed (reproducible tests).
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
            durations: PhaseDurations::default(),
            initialization_type: None,
            held_init_logs: Vec::new(),
            last_ns: 0,
            staged_spans: Vec::new(),
            staged_logs: Vec::new(),
            extension_source: kv_str("aws.lambda.log.source", "extension"),
            utilization: Utilization::default(),
            own_init: None,
            restore_costed: false,
            init_usage: None,
            invokes_expected: false,
        }
    }

    /// Every invocation will have its `INVOKE` event (Contrail registered for them): its span
    /// is made once that event has come, whichever came first, so that it carries the ARN,
    /// the X-Ray header and the readings the event starts.
    pub(crate) fn expect_invokes(&mut self) {
        self.invokes_expected = true;
    }

    /// The invocation's `platform.runtimeDone` was mapped: the runtime is done with it.
    pub(crate) fn runtime_done_seen(&self, request_id: &str) -> bool {
        self.pending
            .get(request_id)
            .is_some_and(|inv| inv.runtime_done.is_some())
    }

    /// The resource all data is emitted with.
    pub(crate) fn resource(&self) -> &Resource {
        &self.resource
    }

    #[cfg(test)]
    /// Invocations still being assembled.
    pub(crate) fn pending_invocations(&self) -> usize {
        self.pending.len()
    }

    /// An Extensions API `INVOKE` event. It may come before or after the invocation's
    /// `platform.start`, and even after its `platform.runtimeDone` (the two come on different
    /// connections). Anything it completes is emitted with the next call that has an output.
    pub fn on_invoke(&mut self, invoke: InvokeInfo, now_unix_nano: u64) {
        self.last_ns = self.last_ns.max(now_unix_nano);
        let id = invoke.request_id.clone();
        if self.recent_ctx(&id).is_some() {
            // Retired already (reported, or evicted): nothing is left to fill in.
            return;
        }
        let header = invoke.xray_header.as_deref().map(XrayHeader::parse);
        let inv = self.invocation(&id);
        if inv.header.is_none() {
            inv.header = header;
        }
        inv.invoke_ns = Some(now_unix_nano);
        inv.invoke = Some(invoke);
        // Its runtimeDone came first: the span it waited with is made now.
        match inv.runtime_done.as_ref().map(|(t, _)| *t) {
            Some(t) if !inv.span_emitted => {
                self.resolve_now(&id, t);
                self.emit_invocation_span(&id, None, t, false);
            }
            _ => self.try_resolve(&id),
        }
    }

    /// One decoded Telemetry API batch.
    pub fn on_records(&mut self, records: Vec<TelemetryRecord>, out: &mut Signals) {
        // Room for the batch's log lines at once, not by doubling: `drain` hands the staged
        // records on below, so what is reserved here does not outlive the batch.
        let lines = records
            .iter()
            .filter(|r| matches!(r.event, Event::Function(_) | Event::ExtensionLog(_)))
            .count();
        self.staged_logs.reserve(lines);
        for record in records {
            let t = record.time_unix_nano;
            self.last_ns = self.last_ns.max(t);
            match record.event {
                Event::Function(line) => self.on_log(line, t, false),
                Event::ExtensionLog(line) => self.on_log(line, t, true),
                Event::Start(start) => self.on_start(*start, t),
                Event::RuntimeDone(done) => self.on_runtime_done(*done, t),
                Event::Report(report) => self.on_report(*report, t),
                Event::InitStart(start) => self.on_init_start(*start, t),
                Event::InitRuntimeDone(done) => self.on_init_runtime_done(*done, t),
                Event::InitReport(report) => self.on_init_report(*report, t),
                Event::RestoreStart(start) => self.on_restore_start(*start, t),
                Event::RestoreRuntimeDone(done) => self.on_restore_runtime_done(*done, t),
                Event::RestoreReport(report) => self.on_restore_report(*report, t),
                Event::Extension(ext) => self.on_extension(*ext, t),
                Event::TelemetrySubscription(sub) => self.on_subscription(*sub, t),
                Event::LogsDropped(dropped) => self.on_logs_dropped(*dropped, t),
                Event::Unknown { kind, record } => self.on_unknown(kind, record, t),
            }
        }
        self.drain(out);
    }

    /// Metric data for a flush: what accumulated since the last call (delta) or the totals
    /// (cumulative). Also releases log records held for a trace context that has not come.
    pub(crate) fn collect_metrics(&mut self, now_unix_nano: u64, out: &mut Signals) {
        self.release_held();
        self.drain(out);
        self.record_utilization(now_unix_nano, false);
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
    pub(crate) fn finish(&mut self, now_unix_nano: u64, out: &mut Signals) {
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
        self.on_shutdown_costs(end);
        self.record_utilization(now_unix_nano, true);
        self.release_held();
        self.collect_metrics(now_unix_nano, out);
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
        } else {
            // Lines held for a trace context leave room reserved by `on_records` unused.
            self.staged_logs = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests;
