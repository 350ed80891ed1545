//! The Telemetry API event model: one type per record type (schema versions 2022-07-01 to
//! 2025-01-29), and [`Event::Unknown`] for any other. `super::decode` turns a POST body into
//! these.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de;
use serde_json::{Map, Value};

use super::time::parse_rfc3339;

/// One decoded Telemetry API record.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRecord {
    /// The envelope's `time`.
    pub time_unix_nano: u64,
    pub event: Event,
}

/// Every record type of the Telemetry API (schema versions 2022-07-01 to 2025-01-29).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
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
    /// The envelope `type` this event came from.
    pub fn kind(&self) -> &str {
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
pub enum LogLine {
    Text(String),
    Json(Map<String, Value>),
}

/// `tracing` of platform records: the X-Ray header Lambda used for this phase.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceContext {
    /// A span id Lambda assigned to this phase (16 hex digits).
    #[serde(default)]
    pub span_id: Option<String>,
    /// `X-Amzn-Trace-Id`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `Root=1-…;Parent=…;Sampled=…`
    #[serde(default)]
    pub value: Option<String>,
}

/// An item of `spans[]`: a sub-phase Lambda measured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseSpan {
    pub name: String,
    #[serde(rename = "start", deserialize_with = "de_rfc3339")]
    pub start_unix_nano: u64,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitStart {
    pub initialization_type: String,
    pub phase: String,
    #[serde(default)]
    pub runtime_version: Option<String>,
    #[serde(default)]
    pub runtime_version_arn: Option<String>,
    #[serde(default)]
    pub function_name: Option<String>,
    #[serde(default)]
    pub function_arn: Option<String>,
    #[serde(default)]
    pub function_version: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub instance_max_memory: Option<u64>,
    #[serde(default)]
    pub tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitRuntimeDone {
    pub initialization_type: String,
    #[serde(default)]
    pub phase: Option<String>,
    pub status: String,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub spans: Vec<PhaseSpan>,
    #[serde(default)]
    pub tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReport {
    pub initialization_type: String,
    pub phase: String,
    pub metrics: DurationMetrics,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub spans: Vec<PhaseSpan>,
    #[serde(default)]
    pub tracing: Option<TraceContext>,
}

/// `metrics` of `platform.initReport` and `platform.restoreReport`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationMetrics {
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    pub request_id: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub tracing: Option<TraceContext>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDone {
    pub request_id: String,
    pub status: String,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub metrics: Option<RuntimeDoneMetrics>,
    #[serde(default)]
    pub spans: Vec<PhaseSpan>,
    #[serde(default)]
    pub tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDoneMetrics {
    pub duration_ms: f64,
    #[serde(default)]
    pub produced_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub request_id: String,
    pub status: String,
    #[serde(default)]
    pub error_type: Option<String>,
    pub metrics: ReportMetrics,
    #[serde(default)]
    pub spans: Vec<PhaseSpan>,
    #[serde(default)]
    pub tracing: Option<TraceContext>,
}

/// `platform.report` metrics. On Lambda Managed Instances only `durationMs` is present.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportMetrics {
    pub duration_ms: f64,
    #[serde(default)]
    pub billed_duration_ms: Option<f64>,
    #[serde(default, rename = "memorySizeMB")]
    pub memory_size_mb: Option<u64>,
    #[serde(default, rename = "maxMemoryUsedMB")]
    pub max_memory_used_mb: Option<u64>,
    #[serde(default)]
    pub init_duration_ms: Option<f64>,
    #[serde(default)]
    pub restore_duration_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStart {
    #[serde(default)]
    pub runtime_version: Option<String>,
    #[serde(default)]
    pub runtime_version_arn: Option<String>,
    #[serde(default)]
    pub function_name: Option<String>,
    #[serde(default)]
    pub function_version: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub instance_max_memory: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRuntimeDone {
    pub status: String,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub spans: Vec<PhaseSpan>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub status: String,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub metrics: Option<DurationMetrics>,
    #[serde(default)]
    pub spans: Vec<PhaseSpan>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionState {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub error_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySubscription {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsDropped {
    pub reason: String,
    pub dropped_records: u64,
    pub dropped_bytes: u64,
}

fn de_rfc3339<'de, D: de::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = Cow::<'de, str>::deserialize(d)?;
    parse_rfc3339(&s).ok_or_else(|| de::Error::custom("not an RFC 3339 date-time"))
}
