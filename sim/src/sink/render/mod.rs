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
