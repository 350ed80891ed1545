//! The records of platform events (schema 2022-12-13, with the 2025-01-29 additions), by the
//! phase that publishes them: INIT `initStart`, `initRuntimeDone`, `initReport`; RESTORE
//! `restoreStart`, `restoreRuntimeDone`, `restoreReport`; INVOKE `start`, `runtimeDone`,
//! `report`; and `extension` and `telemetrySubscription` from the APIs. Older schema versions
//! get a reduced copy (`telemetry::render_for_schema`).

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::config::InitType;
use crate::ids::rfc3339_millis;

/// The `tracing` object of `platform.start`, `runtimeDone` and `report`.
pub(crate) fn tracing(span_id: &str, header: &str) -> Value {
    json!({"spanId": span_id, "type": "X-Amzn-Trace-Id", "value": header})
}

/// One item of a record's `spans`.
pub(crate) fn span(name: &str, start: OffsetDateTime, duration_ms: f64) -> Value {
    json!({"name": name, "start": rfc3339_millis(start), "durationMs": round3(duration_ms)})
}

/// Milliseconds rounded to microseconds, as the platform reports them.
pub(crate) fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// What `platform.initStart` and `platform.restoreStart` say about the function.
pub(crate) struct FunctionInfo<'a> {
    pub function_name: &'a str,
    pub function_arn: &'a str,
    pub function_version: &'a str,
    pub instance_id: &'a str,
    pub memory_mb: u32,
    pub runtime_version: Option<&'a str>,
}

fn function_fields(obj: &mut Map<String, Value>, f: &FunctionInfo<'_>) {
    if let Some(v) = f.runtime_version {
        obj.insert("runtimeVersion".into(), json!(v));
    }
    obj.insert("functionName".into(), json!(f.function_name));
    obj.insert("functionArn".into(), json!(f.function_arn));
    obj.insert("functionVersion".into(), json!(f.function_version));
    obj.insert("instanceId".into(), json!(f.instance_id));
    obj.insert("instanceMaxMemory".into(), json!(f.memory_mb));
}

pub(crate) fn init_start(init_type: InitType, f: &FunctionInfo<'_>) -> Value {
    let mut obj = Map::new();
    obj.insert("initializationType".into(), json!(init_type.as_str()));
    obj.insert("phase".into(), json!("init"));
    function_fields(&mut obj, f);
    Value::Object(obj)
}

fn with_error(mut v: Value, error_type: Option<&str>) -> Value {
    if let Some(error_type) = error_type {
        v["errorType"] = json!(error_type);
    }
    v
}

pub(crate) fn init_runtime_done(
    init_type: InitType,
    status: &str,
    error_type: Option<&str>,
    spans: Vec<Value>,
) -> Value {
    let mut v =
        json!({"initializationType": init_type.as_str(), "phase": "init", "status": status});
    if !spans.is_empty() {
        v["spans"] = Value::Array(spans);
    }
    with_error(v, error_type)
}

pub(crate) fn init_report(
    init_type: InitType,
    status: &str,
    error_type: Option<&str>,
    duration_ms: f64,
) -> Value {
    let v = json!({
        "initializationType": init_type.as_str(),
        "phase": "init",
        "status": status,
        "metrics": {"durationMs": round3(duration_ms)},
    });
    with_error(v, error_type)
}

pub(crate) fn restore_start(f: &FunctionInfo<'_>) -> Value {
    let mut obj = Map::new();
    function_fields(&mut obj, f);
    Value::Object(obj)
}

pub(crate) fn restore_runtime_done(status: &str, error_type: Option<&str>) -> Value {
    with_error(json!({"status": status}), error_type)
}

pub(crate) fn restore_report(status: &str, error_type: Option<&str>, duration_ms: f64) -> Value {
    with_error(
        json!({"status": status, "metrics": {"durationMs": round3(duration_ms)}}),
        error_type,
    )
}

pub(crate) fn start(request_id: &str, version: &str, tracing: &Value) -> Value {
    json!({"requestId": request_id, "version": version, "tracing": tracing})
}

/// What `platform.runtimeDone` and `platform.report` say about their invocation.
pub(crate) struct InvocationOutcome<'a> {
    pub request_id: &'a str,
    pub status: &'a str,
    pub error_type: Option<&'a str>,
    pub spans: Vec<Value>,
    pub tracing: &'a Value,
}

impl InvocationOutcome<'_> {
    fn record(&self, metrics: Value) -> Value {
        let mut v = json!({
            "requestId": self.request_id,
            "status": self.status,
            "metrics": metrics,
            "tracing": self.tracing,
        });
        if !self.spans.is_empty() {
            v["spans"] = Value::Array(self.spans.clone());
        }
        with_error(v, self.error_type)
    }
}

/// `platform.runtimeDone`: the runtime's part took `duration_ms` and produced a response of
/// `produced_bytes` (if it answered).
pub(crate) fn runtime_done(
    outcome: &InvocationOutcome<'_>,
    duration_ms: f64,
    produced_bytes: Option<usize>,
) -> Value {
    let mut metrics = json!({"durationMs": round3(duration_ms)});
    if let Some(b) = produced_bytes {
        metrics["producedBytes"] = json!(b);
    }
    outcome.record(metrics)
}

/// The `metrics` of `platform.report`.
pub(crate) struct ReportMetrics {
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    pub memory_mb: u32,
    pub max_memory_used_mb: u64,
    pub init_duration_ms: Option<f64>,
    pub restore_duration_ms: Option<f64>,
    /// Lambda Managed Instances: the metrics carry only `durationMs`.
    pub duration_only: bool,
}

/// `platform.report`.
pub(crate) fn report(outcome: &InvocationOutcome<'_>, r: &ReportMetrics) -> Value {
    let metrics = if r.duration_only {
        json!({"durationMs": round3(r.duration_ms)})
    } else {
        let mut m = json!({
            "durationMs": round3(r.duration_ms),
            "billedDurationMs": r.billed_duration_ms,
            "memorySizeMB": r.memory_mb,
            "maxMemoryUsedMB": r.max_memory_used_mb,
        });
        if let Some(i) = r.init_duration_ms {
            m["initDurationMs"] = json!(round3(i));
        }
        if let Some(i) = r.restore_duration_ms {
            m["restoreDurationMs"] = json!(round3(i));
        }
        m
    };
    outcome.record(metrics)
}

pub(crate) fn extension(name: &str, state: &str, events: &[String]) -> Value {
    json!({"name": name, "state": state, "events": events})
}

pub(crate) fn telemetry_subscription(name: &str, state: &str, types: &[String]) -> Value {
    json!({"name": name, "state": state, "types": types})
}
