//! The Telemetry API event model: one type per record type (schema versions 2022-07-01 to
//! 2025-01-29), and [`Event::Unknown`] for any other. `super::decode` turns a POST body into
//! these.
//!
//! The types follow AWS's telemetry schema reference field for field: a field that is not an
//! `Option` or a `Vec` is required, and a record without it does not decode (it is counted as
//! malformed). A missing `Option` field is `None`; a missing list is empty.

use serde::Deserialize;
use serde::de;
use serde_json::{Map, Value};

use super::time::{epoch_nanos, epoch_nanos_f64, parse_time_str};

/// One decoded Telemetry API record.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRecord {
    /// The envelope's `time`.
    pub(crate) time_unix_nano: u64,
    pub(crate) event: Event,
}

/// Every record type of the Telemetry API (schema versions 2022-07-01 to 2025-01-29).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    InitStart(InitStart),
    InitRuntimeDone(InitRuntimeDone),
    InitReport(InitReport),
    Start(Start),
    RuntimeDone(RuntimeDone),
    Report(Report),
    RestoreStart(RestoreStart),
    RestoreRuntimeDone(RestoreRuntimeDone),
    RestoreReport(RestoreReport),
    /// `platform.extension`
    Extension(ExtensionState),
    TelemetrySubscription(TelemetrySubscription),
    LogsDropped(LogsDropped),
    /// A line the function wrote (`function`).
    Function(LogLine),
    /// A line an extension wrote (`extension`).
    ExtensionLog(LogLine),
    /// A type this version does not know. Kept whole so it can still be exported.
    Unknown {
        kind: String,
        record: Value,
    },
}

impl Event {
    #[cfg(test)]
    /// The envelope `type` this event came from.
    pub(crate) fn kind(&self) -> &str {
        match self {
            Event::InitStart(_) => "platform.initStart",
            Event::InitRuntimeDone(_) => "platform.initRuntimeDone",
            Event::InitReport(_) => "platform.initReport",
            Event::Start(_) => "platform.start",
            Event::RuntimeDone(_) => "platform.runtimeDone",
            Event::Report(_) => "platform.report",
            Event::RestoreStart(_) => "platform.restoreStart",
            Event::RestoreRuntimeDone(_) => "platform.restoreRuntimeDone",
            Event::RestoreReport(_) => "platform.restoreReport",
            Event::Extension(_) => "platform.extension",
            Event::TelemetrySubscription(_) => "platform.telemetrySubscription",
            Event::LogsDropped(_) => "platform.logsDropped",
            Event::Function(_) => "function",
            Event::ExtensionLog(_) => "extension",
            Event::Unknown { kind, .. } => kind,
        }
    }
}

/// A `function` or `extension` record: a text line, or an object in the JSON log format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LogLine {
    Text(String),
    Json(Map<String, Value>),
}

/// `tracing` of platform records: the X-Ray header Lambda used for this phase.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TraceContext {
    /// A span id Lambda assigned to this phase (16 hex digits).
    pub(crate) span_id: Option<String>,
    /// `X-Amzn-Trace-Id`.
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<String>,
    /// `Root=1-…;Parent=…;Sampled=…`
    pub(crate) value: Option<String>,
}

/// An item of `spans[]`: a sub-phase Lambda measured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PhaseSpan {
    pub(crate) name: String,
    #[serde(rename = "start", deserialize_with = "de_time")]
    pub(crate) start_unix_nano: u64,
    pub(crate) duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitStart {
    pub(crate) initialization_type: String,
    pub(crate) phase: String,
    pub(crate) runtime_version: Option<String>,
    pub(crate) runtime_version_arn: Option<String>,
    pub(crate) function_name: Option<String>,
    pub(crate) function_arn: Option<String>,
    pub(crate) function_version: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) instance_max_memory: Option<u64>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitRuntimeDone {
    pub(crate) initialization_type: String,
    pub(crate) phase: Option<String>,
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    #[serde(default)]
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitReport {
    pub(crate) initialization_type: String,
    pub(crate) phase: String,
    pub(crate) metrics: DurationMetrics,
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    #[serde(default)]
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

/// `metrics` of `platform.initReport` and `platform.restoreReport`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DurationMetrics {
    pub(crate) duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Start {
    pub(crate) request_id: String,
    pub(crate) version: Option<String>,
    pub(crate) tracing: Option<TraceContext>,
    pub(crate) tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuntimeDone {
    pub(crate) request_id: String,
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    pub(crate) metrics: Option<RuntimeDoneMetrics>,
    #[serde(default)]
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuntimeDoneMetrics {
    pub(crate) duration_ms: f64,
    pub(crate) produced_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub(crate) request_id: String,
    /// Absent in older schema versions (and in AWS's own documented example).
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) metrics: ReportMetrics,
    #[serde(default)]
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

/// `platform.report` metrics. On Lambda Managed Instances only `durationMs` is present.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReportMetrics {
    pub(crate) duration_ms: f64,
    pub(crate) billed_duration_ms: Option<f64>,
    #[serde(rename = "memorySizeMB")]
    pub(crate) memory_size_mb: Option<u64>,
    #[serde(rename = "maxMemoryUsedMB")]
    pub(crate) max_memory_used_mb: Option<u64>,
    pub(crate) init_duration_ms: Option<f64>,
    pub(crate) restore_duration_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestoreStart {
    pub(crate) runtime_version: Option<String>,
    pub(crate) runtime_version_arn: Option<String>,
    pub(crate) function_name: Option<String>,
    pub(crate) function_version: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) instance_max_memory: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestoreRuntimeDone {
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    #[serde(default)]
    pub(crate) spans: Vec<PhaseSpan>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestoreReport {
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    pub(crate) metrics: Option<DurationMetrics>,
    #[serde(default)]
    pub(crate) spans: Vec<PhaseSpan>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExtensionState {
    pub(crate) name: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) events: Vec<String>,
    pub(crate) error_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TelemetrySubscription {
    pub(crate) name: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogsDropped {
    pub(crate) reason: String,
    pub(crate) dropped_records: u64,
    pub(crate) dropped_bytes: u64,
}

/// A time field: a date-time string or an epoch number (see `super::time`).
fn de_time<'de, D: de::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(TimeVisitor)
}

/// Reads a time field as [`de_time`] describes, or fails with a custom error.
pub(crate) struct TimeVisitor;

impl<'de> de::Visitor<'de> for TimeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a date-time or an epoch number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_time_str(v).ok_or_else(|| E::custom("not a date-time"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        epoch_nanos(v).ok_or_else(|| E::custom("not an epoch time"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v)
            .ok()
            .and_then(epoch_nanos)
            .ok_or_else(|| E::custom("not an epoch time"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        epoch_nanos_f64(v).ok_or_else(|| E::custom("not an epoch time"))
    }
}
