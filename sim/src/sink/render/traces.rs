//! The trace waterfall: spans as a tree with timeline bars, and the trace's log lines.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::text::{
    body_text, fit, hex, log_time, millis, resource_label, severity, signed_millis, status_message,
    status_text,
};
use crate::sink::received::{LogEntry, SpanEntry};

/// Width of the timeline bar, in columns.
pub(super) const BAR_WIDTH: usize = 40;
/// Longest name column (indentation included); longer names are cut.
const MAX_NAME_WIDTH: usize = 56;

#[derive(Default)]
pub(super) struct TraceGroup<'a> {
    pub(super) spans: Vec<SpanEntry<'a>>,
    pub(super) logs: Vec<LogEntry<'a>>,
}

impl TraceGroup<'_> {
    pub(super) fn earliest(&self) -> u64 {
        let span_start = self.spans.iter().map(|e| e.span.start_time_unix_nano).min();
        let log_start = self.logs.iter().map(|e| log_time(e.record)).min();
        match (span_start, log_start) {
            (Some(s), _) => s,
            (None, Some(l)) => l,
            (None, None) => 0,
        }
    }
}

enum Row<'a> {
    Span {
        depth: usize,
        entry: SpanEntry<'a>,
        copies: usize,
    },
    Label(&'static str),
}

pub(super) fn render_trace(trace_id: &[u8], group: &TraceGroup<'_>, out: &mut String) {
    // One row per distinct span id; copies are counted.
    let mut unique: Vec<(SpanEntry<'_>, usize)> = Vec::new();
    let mut index_of: HashMap<&[u8], usize> = HashMap::new();
    for entry in &group.spans {
        match index_of.get(entry.span.span_id.as_slice()) {
            Some(&i) => unique[i].1 += 1,
            None => {
                index_of.insert(entry.span.span_id.as_slice(), unique.len());
                unique.push((*entry, 1));
            }
        }
    }
    unique.sort_by(|a, b| {
        (a.0.span.start_time_unix_nano, &a.0.span.name)
            .cmp(&(b.0.span.start_time_unix_nano, &b.0.span.name))
    });
    let index_of: HashMap<&[u8], usize> = unique
        .iter()
        .enumerate()
        .map(|(i, (e, _))| (e.span.span_id.as_slice(), i))
        .collect();
    let mut children: HashMap<&[u8], Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    let mut orphans = Vec::new();
    for (i, (entry, _)) in unique.iter().enumerate() {
        let parent = entry.span.parent_span_id.as_slice();
        if parent.is_empty() {
            roots.push(i);
        } else if index_of.contains_key(parent) && parent != entry.span.span_id.as_slice() {
            children.entry(parent).or_default().push(i);
        } else {
            orphans.push(i);
        }
    }

    let mut rows = Vec::new();
    let mut visited = vec![false; unique.len()];
    for &i in &roots {
        push_subtree(i, 0, &unique, &children, &mut visited, &mut rows);
    }
    // Spans whose parent never arrived, then any caught in a parent cycle: never dropped.
    let mut lost: Vec<usize> = orphans.clone();
    lost.extend((0..unique.len()).filter(|&i| !visited[i] && !orphans.contains(&i)));
    let mut labelled = false;
    for i in lost {
        if visited[i] {
            continue;
        }
        if !labelled {
            rows.push(Row::Label("orphans (parent span not received):"));
            labelled = true;
        }
        push_subtree(i, 1, &unique, &children, &mut visited, &mut rows);
    }

    let start = unique
        .iter()
        .map(|(e, _)| e.span.start_time_unix_nano)
        .min();
    let end = unique
        .iter()
        .map(|(e, _)| e.span.end_time_unix_nano.max(e.span.start_time_unix_nano))
        .max();

    // Header: trace id, the services in it, span count and overall duration.
    let mut services: Vec<String> = Vec::new();
    for (entry, _) in &unique {
        let label = resource_label(entry.resource);
        if !label.is_empty() && !services.contains(&label) {
            services.push(label);
        }
    }
    for entry in &group.logs {
        let label = resource_label(entry.resource);
        if !label.is_empty() && !services.contains(&label) {
            services.push(label);
        }
    }
    let _ = write!(out, "\n== trace {}", hex(trace_id));
    if !services.is_empty() {
        let _ = write!(out, "  {}", services.join(" | "));
    }
    match (start, end) {
        (Some(s), Some(e)) => {
            let _ = writeln!(out, "  ({} spans, {})", unique.len(), millis(e - s));
        }
        _ => {
            let _ = writeln!(out, "  (no spans received)");
        }
    }

    if let (Some(start), Some(end)) = (start, end) {
        let width = rows
            .iter()
            .map(|r| match r {
                Row::Span {
                    depth,
                    entry,
                    copies,
                } => 2 * depth + entry.span.name.chars().count() + copies_note(*copies).len(),
                Row::Label(_) => 0,
            })
            .max()
            .unwrap_or(0)
            .clamp(4, MAX_NAME_WIDTH);
        for row in &rows {
            match row {
                Row::Label(text) => {
                    let _ = writeln!(out, "  {text}");
                }
                Row::Span {
                    depth,
                    entry,
                    copies,
                } => {
                    let span = entry.span;
                    let name = format!(
                        "{}{}{}",
                        "  ".repeat(*depth),
                        span.name,
                        copies_note(*copies)
                    );
                    let s = span.start_time_unix_nano;
                    let e = span.end_time_unix_nano.max(s);
                    let line = format!(
                        "  {}  {:>12}  {}  {}{}",
                        fit(&name, width),
                        millis(e - s),
                        bar(start, end, s, e),
                        status_text(span.status.as_ref().map(|status| status.code)),
                        status_message(span.status.as_ref().map(|status| status.message.as_str())),
                    );
                    let _ = writeln!(out, "{}", line.trim_end());
                }
            }
        }
    }

    if !group.logs.is_empty() {
        let names: HashMap<&[u8], &str> = unique
            .iter()
            .map(|(e, _)| (e.span.span_id.as_slice(), e.span.name.as_str()))
            .collect();
        let origin = start.unwrap_or_else(|| group.earliest());
        let mut logs = group.logs.clone();
        logs.sort_by_key(|e| log_time(e.record));
        let _ = writeln!(out, "  logs:");
        for entry in &logs {
            let r = entry.record;
            let offset = i128::from(log_time(r)) - i128::from(origin);
            let span = if r.span_id.is_empty() {
                String::new()
            } else {
                match names.get(r.span_id.as_slice()) {
                    Some(name) => format!("  [{name}]"),
                    None => format!("  [span {}]", hex(&r.span_id)),
                }
            };
            let _ = writeln!(
                out,
                "    {:>14}  {:<5}  {}{}",
                signed_millis(offset),
                severity(r),
                body_text(r.body.as_ref()),
                span,
            );
        }
    }
}

fn push_subtree<'a>(
    i: usize,
    depth: usize,
    unique: &[(SpanEntry<'a>, usize)],
    children: &HashMap<&[u8], Vec<usize>>,
    visited: &mut [bool],
    rows: &mut Vec<Row<'a>>,
) {
    if visited[i] {
        return;
    }
    visited[i] = true;
    let (entry, copies) = unique[i];
    rows.push(Row::Span {
        depth,
        entry,
        copies,
    });
    if let Some(kids) = children.get(entry.span.span_id.as_slice()) {
        for &k in kids {
            push_subtree(k, depth + 1, unique, children, visited, rows);
        }
    }
}

fn copies_note(copies: usize) -> String {
    if copies > 1 {
        format!(" (received {copies}x)")
    } else {
        String::new()
    }
}

/// `|   =====      |`: where a span lies within its trace.
fn bar(trace_start: u64, trace_end: u64, start: u64, end: u64) -> String {
    let total = u128::from(trace_end.saturating_sub(trace_start)).max(1);
    let width = BAR_WIDTH as u128;
    let offset = (u128::from(start.saturating_sub(trace_start)) * width / total).min(width - 1);
    let length = (u128::from(end.saturating_sub(start)) * width).div_ceil(total);
    let length = length.clamp(1, width - offset);
    // Both values are at most BAR_WIDTH.
    let offset = usize::try_from(offset).unwrap_or(0);
    let length = usize::try_from(length).unwrap_or(1);
    format!(
        "|{}{}{}|",
        " ".repeat(offset),
        "=".repeat(length),
        " ".repeat(BAR_WIDTH - offset - length)
    )
}
