//! The spans Contrail builds: the invocation span (SERVER, named after the function) with its
//! attributes, links and status, and the child spans of the sub-phases Lambda measured.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use crate::intake::telemetry::event::{PhaseSpan, Report, RuntimeDone};
use crate::mapping::metrics::MetricId;
use crate::mapping::otlp::{fnv1a, kv_bool, kv_str, ms_to_ns};
use crate::mapping::{Mapper, SpanCtx, resource};

impl Mapper {
    /// Emit the invocation span (once), from `runtimeDone`, or from `report` when given, or
    /// cut short at `end_ns` when neither came (`incomplete`).
    pub(super) fn emit_invocation_span(
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
        let (start, end) = span_bounds(
            inv.start_ns,
            inv.invoke_ns,
            runtime_done.map(|(t, d)| (*t, d)),
            report.map(|r| (end_ns, r)),
            end_ns,
        );
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
            (Some((_, d)), _) => (
                Some(effective_status(
                    d.status.as_deref(),
                    d.error_type.as_deref(),
                )),
                d.error_type.as_deref(),
            ),
            (None, Some(r)) => (
                Some(effective_status(
                    r.status.as_deref(),
                    r.error_type.as_deref(),
                )),
                r.error_type.as_deref(),
            ),
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
        let mut events = Vec::new();
        if let Some(usage) = &inv.usage {
            super::usage::usage_attributes(usage, &mut attributes, &mut events);
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
            end_time_unix_nano: end,
            attributes,
            events,
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
}

/// Where an invocation span starts and ends, from the best evidence at hand, each record on
/// its own clock (the README's "which record wins"; `runtime_done` and `report` with their
/// times).
///
/// Start: `platform.start`; else runtimeDone's time less its `durationMs`; else the earliest
/// start of runtimeDone's spans; else the report's time less its `durationMs`; else when the
/// `INVOKE` event was seen (Contrail's clock: the last resort); else `cut_ns`.
/// End: the start plus runtimeDone's `durationMs`; else runtimeDone's time; else the start plus
/// the report's `durationMs`; else the report's time; else `cut_ns`, when the invocation was
/// given up. Never before the start.
fn span_bounds(
    start_ns: Option<u64>,
    invoke_ns: Option<u64>,
    runtime_done: Option<(u64, &RuntimeDone)>,
    report: Option<(u64, &Report)>,
    cut_ns: u64,
) -> (u64, u64) {
    let done_ms = runtime_done.and_then(|(_, d)| d.duration_ms).map(ms_to_ns);
    let report_ms = report
        .and_then(|(_, r)| r.metrics.duration_ms)
        .map(ms_to_ns);
    let start = start_ns
        .or_else(|| Some(runtime_done?.0.saturating_sub(done_ms?)))
        .or_else(|| {
            runtime_done?
                .1
                .spans
                .iter()
                .map(|s| s.start_unix_nano)
                .min()
        })
        .or_else(|| Some(report?.0.saturating_sub(report_ms?)))
        .or(invoke_ns)
        .unwrap_or(cut_ns);
    let end = match (runtime_done, report) {
        (Some((t, _)), _) => done_ms.map_or(t, |d| start.saturating_add(d)),
        (None, Some((t, _))) => report_ms.map_or(t, |d| start.saturating_add(d)),
        (None, None) => cut_ns,
    };
    (start, end.max(start))
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
pub(super) fn child_span(parent: &SpanCtx, phase: &PhaseSpan) -> Span {
    // Deterministic per (parent, name, start): a repeated record yields the same span.
    let h = fnv1a(
        parent
            .span_id
            .iter()
            .chain(phase.name.as_bytes())
            .chain(&phase.start_unix_nano.to_be_bytes()),
    );
    let span_id = h.max(1).to_be_bytes();
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

/// The status a record stands for: its `status`; without one (older schema versions), `error`
/// when it names an `errorType`, else `success`.
pub(super) fn effective_status<'a>(status: Option<&'a str>, error_type: Option<&str>) -> &'a str {
    status.unwrap_or(if error_type.is_some_and(|e| !e.is_empty()) {
        "error"
    } else {
        "success"
    })
}

/// Span status from Lambda's `status`/`errorType`: `success` (or unknown) leaves it unset;
/// anything else is an error, with `error.type` = `errorType`, else the status.
pub(super) fn span_status(
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
