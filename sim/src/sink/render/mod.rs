//! Rendering what the sink received as text for a terminal.

mod metrics;
mod text;
mod traces;

use std::collections::HashMap;
use std::fmt::Write as _;

use super::received::Received;
use metrics::render_metrics;
use text::{body_text, clock, log_time, service_suffix, severity};
use traces::{TraceGroup, render_trace};

/// Renders everything received: a header with counts; per trace (ordered by start) a waterfall
/// of its spans, roots first and children indented under their parent, with the trace's log
/// lines underneath in time order; spans whose parent never arrived as orphans of their trace;
/// log records without a trace id in their own section; then a summary of every metric.
pub fn render(received: &Received) -> String {
    let mut out = String::new();
    render_header(received, &mut out);

    let spans = received.spans();
    let logs = received.log_records();

    // Traces are the trace ids of spans and of log records, ordered by their earliest time.
    let mut traces: HashMap<&[u8], TraceGroup<'_>> = HashMap::new();
    for entry in &spans {
        traces
            .entry(entry.span.trace_id.as_slice())
            .or_default()
            .spans
            .push(*entry);
    }
    let mut untraced = Vec::new();
    for entry in &logs {
        if entry.record.trace_id.is_empty() {
            untraced.push(*entry);
        } else {
            traces
                .entry(entry.record.trace_id.as_slice())
                .or_default()
                .logs
                .push(*entry);
        }
    }
    let mut ordered: Vec<(&[u8], TraceGroup<'_>)> = traces.into_iter().collect();
    ordered.sort_by_key(|(id, group)| (group.earliest(), *id));
    for (trace_id, group) in &ordered {
        render_trace(trace_id, group, &mut out);
    }

    if !untraced.is_empty() {
        let _ = writeln!(out, "\n== logs without a trace id ({})", untraced.len());
        untraced.sort_by_key(|e| log_time(e.record));
        for entry in &untraced {
            let _ = writeln!(
                out,
                "  {}  {:<5}  {}{}",
                clock(log_time(entry.record)),
                severity(entry.record),
                body_text(entry.record.body.as_ref()),
                service_suffix(entry.resource),
            );
        }
    }

    render_metrics(&received.metric_entries(), &mut out);
    out
}

fn render_header(received: &Received, out: &mut String) {
    let c = &received.counters;
    let _ = writeln!(
        out,
        "OTLP sink: {} requests accepted (traces {}, metrics {}, logs {}), {} bytes; {} bad, {} answered with a scripted error",
        c.requests,
        received.traces.len(),
        received.metrics.len(),
        received.logs.len(),
        c.bytes,
        c.bad_requests,
        c.rejected,
    );
    if c.over_cap > 0 {
        let _ = writeln!(
            out,
            "  {} accepted requests are not shown: the memory cap was reached",
            c.over_cap
        );
    }
    if c.jsonl_errors > 0 {
        let _ = writeln!(
            out,
            "  {} requests could not be written to the JSON lines file (last: {})",
            c.jsonl_errors,
            c.last_jsonl_error.as_deref().unwrap_or("unknown")
        );
    }
    let duplicates = received.duplicate_spans().len();
    if duplicates > 0 {
        let _ = writeln!(out, "  {duplicates} spans arrived more than once");
    }
}

/// What each execution environment sent (by the `faas.instance` of the resource), and the
/// totals: the sink's view of a fleet.
pub fn render_environments(received: &Received) -> String {
    #[derive(Default)]
    struct Tally {
        spans: usize,
        logs: usize,
        points: usize,
    }
    let instance = |resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>| {
        resource
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "faas.instance"))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| "(no faas.instance)".to_owned())
    };
    let mut by: std::collections::BTreeMap<String, Tally> = std::collections::BTreeMap::new();
    for e in received.spans() {
        by.entry(instance(e.resource)).or_default().spans += 1;
    }
    for e in received.log_records() {
        by.entry(instance(e.resource)).or_default().logs += 1;
    }
    for e in received.metric_entries() {
        by.entry(instance(e.resource)).or_default().points += super::decode::data_points(e.metric);
    }
    let mut out = String::new();
    render_header(received, &mut out);
    let _ = writeln!(
        out,
        "== per environment (faas.instance): {} environment(s)",
        by.len()
    );
    let _ = writeln!(
        out,
        "  {:<34}  {:>7}  {:>9}  {:>13}",
        "faas.instance", "spans", "log lines", "metric points"
    );
    let mut total = Tally::default();
    for (name, t) in &by {
        let _ = writeln!(
            out,
            "  {:<34}  {:>7}  {:>9}  {:>13}",
            name, t.spans, t.logs, t.points
        );
        total.spans += t.spans;
        total.logs += t.logs;
        total.points += t.points;
    }
    let _ = writeln!(
        out,
        "  {:<34}  {:>7}  {:>9}  {:>13}",
        "total", total.spans, total.logs, total.points
    );
    out
}
