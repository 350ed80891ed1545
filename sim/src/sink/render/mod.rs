//! Rendering what the sink received as text for a terminal.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, NumberDataPoint};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use super::received::{LogEntry, MetricEntry, Received, SpanEntry};

/// Width of the timeline bar, in columns.
pub const BAR_WIDTH: usize = 40;
/// Longest name column (indentation included); longer names are cut.
const MAX_NAME_WIDTH: usize = 56;

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

#[derive(Default)]
struct TraceGroup<'a> {
    spans: Vec<SpanEntry<'a>>,
    logs: Vec<LogEntry<'a>>,
}

impl TraceGroup<'_> {
    fn earliest(&self) -> u64 {
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

fn render_trace(trace_id: &[u8], group: &TraceGroup<'_>, out: &mut String) {
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
                        status_text(span.status.as_ref().map(|st| st.code)),
                        status_message(span.status.as_ref().map(|st| st.message.as_str())),
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

fn fit(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width {
        format!("{name}{}", " ".repeat(width - count))
    } else {
        let cut: String = name.chars().take(width.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

fn status_text(code: Option<i32>) -> &'static str {
    match code.and_then(|c| StatusCode::try_from(c).ok()) {
        Some(StatusCode::Ok) => "ok",
        Some(StatusCode::Error) => "ERROR",
        Some(StatusCode::Unset) | None => "-",
    }
}

fn status_message(message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {}", one_line(m)),
        _ => String::new(),
    }
}

fn millis(nanos: u64) -> String {
    format!("{:.3} ms", nanos as f64 / 1e6)
}

fn signed_millis(nanos: i128) -> String {
    let sign = if nanos < 0 { '-' } else { '+' };
    format!("{sign}{:.3} ms", nanos.unsigned_abs() as f64 / 1e6)
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in nanoseconds.
fn clock(unix_nano: u64) -> String {
    let secs = unix_nano / 1_000_000_000;
    let ms = (unix_nano % 1_000_000_000) / 1_000_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{ms:03}Z",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

fn log_time(record: &LogRecord) -> u64 {
    if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    }
}

fn severity(record: &LogRecord) -> String {
    if !record.severity_text.is_empty() {
        return record.severity_text.clone();
    }
    match record.severity_number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "-",
    }
    .to_owned()
}

fn one_line(text: &str) -> String {
    text.trim_end().replace('\r', "\\r").replace('\n', "\\n")
}

fn body_text(body: Option<&AnyValue>) -> String {
    match body.and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => one_line(s),
        Some(other) => value_text(other),
        None => "(no body)".to_owned(),
    }
}

fn any_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(v) => value_text(v),
        None => "null".to_owned(),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => one_line(s),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BytesValue(b) => format!("0x{}", hex(b)),
        Value::StringValueStrindex(i) => format!("(string table entry {i})"),
        Value::ArrayValue(a) => format!(
            "[{}]",
            a.values
                .iter()
                .map(|v| any_text(Some(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::KvlistValue(kv) => format!("{{{}}}", attributes_text(&kv.values)),
    }
}

fn attributes_text(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, any_text(kv.value.as_ref())))
        .collect();
    pairs.sort();
    pairs.join(" ")
}

fn resource_attr(resource: Option<&Resource>, key: &str) -> Option<String> {
    resource?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| any_text(kv.value.as_ref()))
}

/// `service.name=… faas.name=…` of a resource (the parts that are present).
fn resource_label(resource: Option<&Resource>) -> String {
    ["service.name", "faas.name"]
        .iter()
        .filter_map(|key| resource_attr(resource, key).map(|v| format!("{key}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn service_suffix(resource: Option<&Resource>) -> String {
    match resource_attr(resource, "service.name") {
        Some(service) => format!("  ({service})"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ---- metrics ----

/// One line of the metrics summary: a metric's points with one attribute set.
#[derive(Default)]
struct Series {
    points: usize,
    /// Delta sums and histograms add up; cumulative ones and gauges keep the latest.
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    last: Option<(u64, f64)>,
}

impl Series {
    fn number(&mut self, time: u64, value: f64, add: bool) {
        self.points += 1;
        if add {
            self.sum += value;
        }
        if self.last.is_none_or(|(t, _)| time >= t) {
            self.last = Some((time, value));
        }
    }

    fn distribution(
        &mut self,
        time: u64,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        add: bool,
    ) {
        self.points += 1;
        let newest = self.last.is_none_or(|(t, _)| time >= t);
        if add {
            self.count += count;
            self.sum += sum.unwrap_or(0.0);
            self.min = merge(self.min, min, f64::min);
            self.max = merge(self.max, max, f64::max);
        } else if newest {
            self.count = count;
            self.sum = sum.unwrap_or(0.0);
            self.min = min;
            self.max = max;
        }
        if newest {
            self.last = Some((time, sum.unwrap_or(0.0)));
        }
    }
}

fn merge(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Gauge,
    DeltaSum,
    CumulativeSum,
    DeltaHistogram,
    CumulativeHistogram,
    Summary,
    Empty,
}

struct MetricGroup {
    title: String,
    shape: Shape,
    series: Vec<(String, Series)>,
}

fn number_value(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn is_delta(temporality: i32) -> bool {
    temporality == AggregationTemporality::Delta as i32
}

fn render_metrics(entries: &[MetricEntry<'_>], out: &mut String) {
    if entries.is_empty() {
        return;
    }
    let services: HashSet<Option<String>> = entries
        .iter()
        .map(|e| resource_attr(e.resource, "service.name"))
        .collect();
    let show_service = services.len() > 1;

    let mut groups: Vec<MetricGroup> = Vec::new();
    for entry in entries {
        let m = entry.metric;
        let (shape, kind) = match &m.data {
            Some(Data::Gauge(_)) => (Shape::Gauge, "gauge".to_owned()),
            Some(Data::Sum(s)) => {
                let temporality = if is_delta(s.aggregation_temporality) {
                    "delta"
                } else {
                    "cumulative"
                };
                let monotonic = if s.is_monotonic { ", monotonic" } else { "" };
                let shape = if is_delta(s.aggregation_temporality) {
                    Shape::DeltaSum
                } else {
                    Shape::CumulativeSum
                };
                (shape, format!("sum, {temporality}{monotonic}"))
            }
            Some(Data::Histogram(h)) => histogram_kind("histogram", h.aggregation_temporality),
            Some(Data::ExponentialHistogram(h)) => {
                histogram_kind("exponential histogram", h.aggregation_temporality)
            }
            Some(Data::Summary(_)) => (Shape::Summary, "summary".to_owned()),
            None => (Shape::Empty, "no data".to_owned()),
        };
        let unit = if m.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", m.unit)
        };
        let title = format!("{}{unit}  {kind}", m.name);
        let index = match groups.iter().position(|g| g.title == title) {
            Some(i) => i,
            None => {
                groups.push(MetricGroup {
                    title,
                    shape,
                    series: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        let service = if show_service {
            resource_attr(entry.resource, "service.name")
                .map(|s| format!("service.name={s} "))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let series = |group: &mut MetricGroup, attributes: &[KeyValue]| -> usize {
            let key = format!("{service}{}", attributes_text(attributes));
            match group.series.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    group.series.push((key, Series::default()));
                    group.series.len() - 1
                }
            }
        };
        match &m.data {
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i]
                        .1
                        .number(p.time_unix_nano, number_value(p), false);
                }
            }
            Some(Data::Sum(s)) => {
                let add = is_delta(s.aggregation_temporality);
                for p in &s.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i]
                        .1
                        .number(p.time_unix_nano, number_value(p), add);
                }
            }
            Some(Data::Histogram(h)) => {
                let add = is_delta(h.aggregation_temporality);
                for p in &h.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i].1.distribution(
                        p.time_unix_nano,
                        p.count,
                        p.sum,
                        p.min,
                        p.max,
                        add,
                    );
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                let add = is_delta(h.aggregation_temporality);
                for p in &h.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i].1.distribution(
                        p.time_unix_nano,
                        p.count,
                        p.sum,
                        p.min,
                        p.max,
                        add,
                    );
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i].1.distribution(
                        p.time_unix_nano,
                        p.count,
                        Some(p.sum),
                        None,
                        None,
                        false,
                    );
                }
            }
            None => {}
        }
    }

    let _ = writeln!(out, "\n== metrics ({})", groups.len());
    for group in &groups {
        let _ = writeln!(out, "  {}", group.title);
        let width = group
            .series
            .iter()
            .map(|(k, _)| k.chars().count().max("(no attributes)".len()))
            .max()
            .unwrap_or(0);
        for (key, s) in &group.series {
            let key = if key.is_empty() {
                "(no attributes)"
            } else {
                key
            };
            let value = match group.shape {
                Shape::Gauge | Shape::CumulativeSum => {
                    format!("last={}", num(s.last.map_or(0.0, |(_, v)| v)))
                }
                Shape::DeltaSum => format!("sum={}", num(s.sum)),
                Shape::DeltaHistogram | Shape::CumulativeHistogram => format!(
                    "count={} sum={} min={} max={}",
                    s.count,
                    num(s.sum),
                    s.min.map_or("-".to_owned(), num),
                    s.max.map_or("-".to_owned(), num),
                ),
                Shape::Summary => format!("count={} sum={}", s.count, num(s.sum)),
                Shape::Empty => String::new(),
            };
            let _ = writeln!(
                out,
                "      {}  {value}  ({} points)",
                fit(key, width),
                s.points
            );
        }
    }
}

fn histogram_kind(name: &str, temporality: i32) -> (Shape, String) {
    if is_delta(temporality) {
        (Shape::DeltaHistogram, format!("{name}, delta"))
    } else {
        (Shape::CumulativeHistogram, format!("{name}, cumulative"))
    }
}

fn num(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() < 0.001 || value.abs() >= 1e15 {
        format!("{value:e}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
