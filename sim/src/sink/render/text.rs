//! Text helpers shared by the trace and metric views: columns, times, values, resources.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

pub(super) fn fit(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width {
        format!("{name}{}", " ".repeat(width - count))
    } else {
        let cut: String = name.chars().take(width.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

pub(super) fn status_text(code: Option<i32>) -> &'static str {
    match code.and_then(|c| StatusCode::try_from(c).ok()) {
        Some(StatusCode::Ok) => "ok",
        Some(StatusCode::Error) => "ERROR",
        Some(StatusCode::Unset) | None => "-",
    }
}

pub(super) fn status_message(message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {}", one_line(m)),
        _ => String::new(),
    }
}

pub(super) fn millis(nanos: u64) -> String {
    format!("{:.3} ms", nanos as f64 / 1e6)
}

pub(super) fn signed_millis(nanos: i128) -> String {
    let sign = if nanos < 0 { '-' } else { '+' };
    format!("{sign}{:.3} ms", nanos.unsigned_abs() as f64 / 1e6)
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in nanoseconds.
pub(super) fn clock(unix_nano: u64) -> String {
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

pub(super) fn log_time(record: &LogRecord) -> u64 {
    if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    }
}

pub(super) fn severity(record: &LogRecord) -> String {
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

pub(super) fn one_line(text: &str) -> String {
    text.trim_end().replace('\r', "\\r").replace('\n', "\\n")
}

pub(super) fn body_text(body: Option<&AnyValue>) -> String {
    match body.and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => one_line(s),
        Some(other) => value_text(other),
        None => "(no body)".to_owned(),
    }
}

pub(super) fn any_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(v) => value_text(v),
        None => "null".to_owned(),
    }
}

pub(super) fn value_text(value: &Value) -> String {
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

pub(super) fn attributes_text(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, any_text(kv.value.as_ref())))
        .collect();
    pairs.sort();
    pairs.join(" ")
}

pub(super) fn resource_attr(resource: Option<&Resource>, key: &str) -> Option<String> {
    resource?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| any_text(kv.value.as_ref()))
}

/// `service.name=… faas.name=…` of a resource (the parts that are present).
pub(super) fn resource_label(resource: Option<&Resource>) -> String {
    ["service.name", "faas.name"]
        .iter()
        .filter_map(|key| resource_attr(resource, key).map(|v| format!("{key}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn service_suffix(resource: Option<&Resource>) -> String {
    match resource_attr(resource, "service.name") {
        Some(service) => format!("  ({service})"),
        None => String::new(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
