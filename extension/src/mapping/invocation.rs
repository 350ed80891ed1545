//! Invocation correlation: the per-request state assembled from `INVOKE`, `platform.start`,
//! `runtimeDone` and `report` in whatever order they come, the trace context each invocation
//! gets (docs/adr/0002-xray-context.md), and retiring what is complete or evicted.

use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::diag::DropReason;
use crate::intake::telemetry::event::{Report, RuntimeDone, Start, TraceContext};
use crate::mapping::config::XrayContext;
use crate::mapping::metrics::MetricId;
use crate::mapping::xray::{self, XrayHeader};
use crate::mapping::{InvokeInfo, Mapper, SpanCtx};

use super::log_context::set_log_ctx;
use super::phases::PhaseKind;
use super::spans::{child_span, effective_status};

const MIB: f64 = 1024.0 * 1024.0;

/// Per-invocation state, keyed by request id, completed as records arrive.
#[derive(Debug)]
pub(super) struct Invocation {
    pub(super) seq: u64,
    /// The first invocation this environment has seen.
    pub(super) first: bool,
    pub(super) invoke: Option<InvokeInfo>,
    pub(super) invoke_ns: Option<u64>,
    pub(super) header: Option<XrayHeader>,
    pub(super) lambda_span_id: Option<[u8; 8]>,
    pub(super) start_ns: Option<u64>,
    pub(super) version: Option<String>,
    pub(super) tenant_id: Option<String>,
    pub(super) ctx: Option<SpanCtx>,
    pub(super) xray_link: Option<SpanCtx>,
    pub(super) runtime_done: Option<(u64, RuntimeDone)>,
    pub(super) span_emitted: bool,
    /// Status already counted in faas.invocations / errors / timeouts.
    pub(super) counted: bool,
    pub(super) held: Vec<LogRecord>,
    /// What the environment's processes used (`intake::environment`).
    pub(super) usage: Option<Box<crate::intake::environment::Usage>>,
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
            usage: None,
        }
    }
}

impl Mapper {
    pub(super) fn invocation(&mut self, id: &str) -> &mut Invocation {
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

    pub(super) fn on_start(&mut self, start: Start, t: u64) {
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

    pub(super) fn on_runtime_done(&mut self, done: RuntimeDone, t: u64) {
        let id = done.request_id.clone();
        if self.recent_ctx(&id).is_some() {
            // Already retired (evicted): nothing left to build.
            return;
        }
        if let Some(bytes) = done.produced_bytes {
            self.metrics
                .record(MetricId::ProducedBytes, bytes as f64, t);
        }
        let expected = self.invokes_expected;
        let inv = self.invocation(&id);
        adopt_tracing(inv, done.tracing.as_ref());
        inv.runtime_done = Some((t, done));
        if expected && inv.invoke.is_none() {
            // The INVOKE event comes on the Extensions API's connection, this on the Telemetry
            // API's: when Contrail's thread is busy, this one can be mapped first. The span
            // waits for it ([`Mapper::on_invoke`]), or for the report at the latest.
            return;
        }
        self.resolve_now(&id, t);
        self.emit_invocation_span(&id, None, t, false);
    }

    pub(super) fn on_report(&mut self, report: Report, t: u64) {
        let id = report.request_id.clone();
        let start_ns = self.pending.get(&id).and_then(|inv| inv.start_ns);
        let ctx = match self.recent_ctx(&id) {
            Some(ctx) => ctx,
            None => {
                let inv = self.invocation(&id);
                adopt_tracing(inv, report.tracing.as_ref());
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
            // Managed Instances report the response spans here instead.
            if span.name == "extensionOverhead" {
                self.metrics
                    .record(MetricId::ExtensionOverhead, span.duration_ms / 1000.0, t);
            }
            self.staged_spans.push(child_span(&ctx, span));
        }
        let m = &report.metrics;
        // Lambda's own init and restore reports may be lost or late: these say the same.
        if !self.init.as_ref().is_some_and(|p| p.snapshot) {
            self.record_phase_duration(PhaseKind::Init, m.init_duration_ms, t);
        }
        self.record_phase_duration(PhaseKind::Restore, m.restore_duration_ms, t);
        if let Some(ms) = m.duration_ms {
            self.metrics
                .record(MetricId::InvokeDuration, ms / 1000.0, t);
        }
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
        self.account_invocation(start_ns, m, t);
        let status = effective_status(report.status.as_deref(), report.error_type.as_deref());
        self.count_status(status, t);
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
    pub(super) fn try_resolve(&mut self, id: &str) {
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
    pub(super) fn resolve_now(&mut self, id: &str, t: u64) -> SpanCtx {
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

    /// Take an invocation out of the pending set: emit what it still owes (best effort) and
    /// remember its context for late records. `evicted` counts the loss when its span had to
    /// be cut short.
    pub(super) fn retire(&mut self, id: &str, end_ns: u64, evicted: bool) {
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
                    let status = effective_status(d.status.as_deref(), d.error_type.as_deref());
                    self.count_status(status, *t);
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

    pub(super) fn recent_ctx(&self, id: &str) -> Option<SpanCtx> {
        self.recent
            .iter()
            .rev()
            .find(|(r, _)| r == id)
            .map(|(_, ctx)| *ctx)
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
