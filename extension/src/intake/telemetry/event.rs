//! The Telemetry API event model: one type per record type (schema versions 2022-07-01 to
//! 2025-01-29), and [`Event::Unknown`] for any other. `super::record` reads each record into
//! these, field by field.
//!
//! The types follow AWS's telemetry schema reference, but only what identifies a record is
//! required: the request id of `platform.start`, `runtimeDone` and `report`. Every other field
//! is an `Option` (or a list, empty when missing), because real records omit fields the schema
//! requires (`status` in older reports) and write others in shapes it does not (numbers as
//! strings, colons before milliseconds): such a field is lost alone, counted, and the record
//! kept.

use serde_json::{Map, Value};

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
    // Boxed: a batch is mostly lines, and these are 100–280 bytes each where a line is 32.
    InitStart(Box<InitStart>),
    InitRuntimeDone(Box<InitRuntimeDone>),
    InitReport(Box<InitReport>),
    Start(Box<Start>),
    RuntimeDone(Box<RuntimeDone>),
    Report(Box<Report>),
    RestoreStart(Box<RestoreStart>),
    RestoreRuntimeDone(Box<RestoreRuntimeDone>),
    RestoreReport(Box<RestoreReport>),
    /// `platform.extension`
    Extension(Box<ExtensionState>),
    TelemetrySubscription(Box<TelemetrySubscription>),
    LogsDropped(Box<LogsDropped>),
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
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TraceContext {
    /// A span id Lambda assigned to this phase (16 hex digits).
    pub(crate) span_id: Option<String>,
    /// `X-Amzn-Trace-Id`.
    pub(crate) kind: Option<String>,
    /// `Root=1-…;Parent=…;Sampled=…`
    pub(crate) value: Option<String>,
}

/// An item of `spans[]`: a sub-phase Lambda measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PhaseSpan {
    pub(crate) name: String,
    pub(crate) start_unix_nano: u64,
    pub(crate) duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct InitStart {
    pub(crate) initialization_type: Option<String>,
    pub(crate) phase: Option<String>,
    pub(crate) runtime_version: Option<String>,
    pub(crate) runtime_version_arn: Option<String>,
    pub(crate) function_name: Option<String>,
    pub(crate) function_arn: Option<String>,
    pub(crate) function_version: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) instance_max_memory: Option<u64>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct InitRuntimeDone {
    pub(crate) initialization_type: Option<String>,
    pub(crate) phase: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct InitReport {
    pub(crate) initialization_type: Option<String>,
    pub(crate) phase: Option<String>,
    /// `metrics.durationMs`.
    pub(crate) duration_ms: Option<f64>,
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Start {
    pub(crate) request_id: String,
    pub(crate) version: Option<String>,
    pub(crate) tracing: Option<TraceContext>,
    pub(crate) tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RuntimeDone {
    pub(crate) request_id: String,
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    /// `metrics.durationMs`: from `platform.start` to the runtime's answer.
    pub(crate) duration_ms: Option<f64>,
    /// `metrics.producedBytes`.
    pub(crate) produced_bytes: Option<u64>,
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Report {
    pub(crate) request_id: String,
    /// Absent in older schema versions (and in AWS's own documented example).
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) metrics: ReportMetrics,
    pub(crate) spans: Vec<PhaseSpan>,
    pub(crate) tracing: Option<TraceContext>,
}

/// `platform.report` metrics. On Lambda Managed Instances only `durationMs` is present.
/// `durationMs` covers the whole invoke phase, the extensions' time after the runtime's
/// answer included.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ReportMetrics {
    pub(crate) duration_ms: Option<f64>,
    pub(crate) billed_duration_ms: Option<f64>,
    pub(crate) memory_size_mb: Option<u64>,
    pub(crate) max_memory_used_mb: Option<u64>,
    pub(crate) init_duration_ms: Option<f64>,
    pub(crate) restore_duration_ms: Option<f64>,
    /// SnapStart: the runtime hooks' time that is billed (`billedRestoreDurationMs`).
    pub(crate) billed_restore_duration_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RestoreStart {
    pub(crate) runtime_version: Option<String>,
    pub(crate) runtime_version_arn: Option<String>,
    pub(crate) function_name: Option<String>,
    pub(crate) function_version: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) instance_max_memory: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RestoreRuntimeDone {
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) spans: Vec<PhaseSpan>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RestoreReport {
    pub(crate) status: Option<String>,
    pub(crate) error_type: Option<String>,
    /// `metrics.durationMs`.
    pub(crate) duration_ms: Option<f64>,
    pub(crate) spans: Vec<PhaseSpan>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ExtensionState {
    pub(crate) name: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) events: Vec<String>,
    pub(crate) error_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TelemetrySubscription {
    pub(crate) name: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct LogsDropped {
    pub(crate) reason: Option<String>,
    pub(crate) dropped_records: Option<u64>,
    pub(crate) dropped_bytes: Option<u64>,
}
