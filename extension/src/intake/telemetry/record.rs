//! Each Telemetry API record type from its JSON object, field by field.
//!
//! A field is taken out of the object as it is read (its strings move, nothing is copied) and
//! read leniently, as real producers write it: a number written as a string, a string where
//! the schema says number and the reverse, a time in any shape `super::time` knows. A field
//! that is missing, or of a shape that cannot be meant (an object where a number belongs, a
//! time that is not one), is given up alone and counted in [`FieldDrops`]; the record is kept.
//! Only a record that cannot be one is refused (`None`, counted as malformed): a record that
//! is not an object, or a `platform.start`, `runtimeDone` or `report` without the request id
//! that names its invocation.

use serde_json::{Map, Value};

use super::event::{
    Event, ExtensionState, InitReport, InitRuntimeDone, InitStart, LogLine, LogsDropped, PhaseSpan,
    Report, ReportMetrics, RestoreReport, RestoreRuntimeDone, RestoreStart, RuntimeDone, Start,
    TelemetrySubscription, TraceContext,
};
use super::time::parse_time_value;

/// Fields of decoded records that were given up, by why (the records themselves were kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldDrops {
    /// A time that is neither a date-time nor an epoch number.
    pub invalid_time: u64,
    /// A value of a shape the field cannot take: an object where a number belongs, a negative
    /// duration, a count with a fraction.
    pub invalid_value: u64,
    /// A field the schema requires, absent.
    pub missing: u64,
}

impl FieldDrops {
    /// Every field given up.
    pub fn total(&self) -> u64 {
        self.invalid_time + self.invalid_value + self.missing
    }

    pub(crate) fn add(&mut self, other: FieldDrops) {
        self.invalid_time += other.invalid_time;
        self.invalid_value += other.invalid_value;
        self.missing += other.missing;
    }

    fn count(&mut self, issue: Issue) {
        match issue {
            Issue::InvalidTime => self.invalid_time += 1,
            Issue::InvalidValue => self.invalid_value += 1,
        }
    }
}

/// Why a present value was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Issue {
    InvalidTime,
    InvalidValue,
}

/// One value read as a field's type.
type Read<T> = fn(Value) -> Result<T, Issue>;

/// The event of a record of type `kind`, or `None` when it cannot be one.
pub(crate) fn decode_event(kind: &str, record: Value, drops: &mut FieldDrops) -> Option<Event> {
    let log = |record| match record {
        Value::String(s) => LogLine::Text(s),
        Value::Object(map) => LogLine::Json(map),
        // Not a shape Lambda sends; kept as its JSON text rather than lost.
        other => LogLine::Text(other.to_string()),
    };
    Some(match kind {
        "function" => Event::Function(log(record)),
        "extension" => Event::ExtensionLog(log(record)),
        "platform.initStart" => Event::InitStart(Box::new(fields(record, drops)?.init_start())),
        "platform.initRuntimeDone" => {
            Event::InitRuntimeDone(Box::new(fields(record, drops)?.init_runtime_done()))
        }
        "platform.initReport" => Event::InitReport(Box::new(fields(record, drops)?.init_report())),
        "platform.start" => Event::Start(Box::new(fields(record, drops)?.start()?)),
        "platform.runtimeDone" => {
            Event::RuntimeDone(Box::new(fields(record, drops)?.runtime_done()?))
        }
        "platform.report" => Event::Report(Box::new(fields(record, drops)?.report()?)),
        "platform.restoreStart" => {
            Event::RestoreStart(Box::new(fields(record, drops)?.restore_start()))
        }
        "platform.restoreRuntimeDone" => {
            Event::RestoreRuntimeDone(Box::new(fields(record, drops)?.restore_runtime_done()))
        }
        "platform.restoreReport" => {
            Event::RestoreReport(Box::new(fields(record, drops)?.restore_report()))
        }
        "platform.extension" => Event::Extension(Box::new(fields(record, drops)?.extension())),
        "platform.telemetrySubscription" => {
            Event::TelemetrySubscription(Box::new(fields(record, drops)?.subscription()))
        }
        "platform.logsDropped" => {
            Event::LogsDropped(Box::new(fields(record, drops)?.logs_dropped()))
        }
        other => Event::Unknown {
            kind: other.to_owned(),
            record,
        },
    })
}

/// A platform record's object (a platform record is one), to read field by field.
fn fields(record: Value, drops: &mut FieldDrops) -> Option<Fields<'_>> {
    match record {
        Value::Object(map) => Some(Fields { map, drops }),
        _ => None,
    }
}

/// A record's object, read one field at a time.
struct Fields<'a> {
    map: Map<String, Value>,
    drops: &'a mut FieldDrops,
}

impl Fields<'_> {
    /// The value of `key`, taken out; `null` is no value.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn optional<T>(&mut self, key: &str, read: Read<T>) -> Option<T> {
        let value = self.take(key)?;
        read(value).map_err(|issue| self.drops.count(issue)).ok()
    }

    /// As [`Fields::optional`], and a missing value is counted.
    fn required<T>(&mut self, key: &str, read: Read<T>) -> Option<T> {
        if self.map.get(key).is_none_or(Value::is_null) {
            self.drops.missing += 1;
        }
        self.optional(key, read)
    }

    /// The request id that names the record's invocation: without it there is no record.
    fn request_id(&mut self) -> Option<String> {
        self.take("requestId")
            .and_then(|v| text(v).ok())
            .filter(|id| !id.is_empty())
    }

    /// A nested object (`metrics`), read with the same counts.
    fn object(&mut self, key: &str, required: bool) -> Option<Fields<'_>> {
        let map = if required {
            self.required(key, object)
        } else {
            self.optional(key, object)
        }?;
        Some(Fields {
            map,
            drops: &mut *self.drops,
        })
    }

    /// A list of strings; an item that is not one is given up alone.
    fn strings(&mut self, key: &str) -> Vec<String> {
        match self.take(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|item| text(item).map_err(|i| self.drops.count(i)).ok())
                .collect(),
            Some(single @ Value::String(_)) => text(single).into_iter().collect(),
            Some(_) => {
                self.drops.count(Issue::InvalidValue);
                Vec::new()
            }
        }
    }

    /// `spans[]`: an item with a bad or missing name, start or duration is given up alone.
    fn spans(&mut self) -> Vec<PhaseSpan> {
        let items = match self.take("spans") {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.drops.count(Issue::InvalidValue);
                return Vec::new();
            }
        };
        let mut spans = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(map) = item else {
                self.drops.count(Issue::InvalidValue);
                continue;
            };
            let mut f = Fields {
                map,
                drops: &mut *self.drops,
            };
            let name = f.required("name", text);
            let start = f.required("start", time);
            let duration = f.required("durationMs", duration);
            if let (Some(name), Some(start_unix_nano), Some(duration_ms)) = (name, start, duration)
            {
                spans.push(PhaseSpan {
                    name,
                    start_unix_nano,
                    duration_ms,
                });
            }
        }
        spans
    }

    fn tracing(&mut self) -> Option<TraceContext> {
        let mut f = self.object("tracing", false)?;
        Some(TraceContext {
            span_id: f.optional("spanId", text),
            kind: f.optional("type", text),
            value: f.optional("value", text),
        })
    }

    /// `metrics.durationMs` of the init and restore reports.
    fn metrics_duration(&mut self, required: bool) -> Option<f64> {
        self.object("metrics", required)?
            .required("durationMs", duration)
    }

    fn init_start(mut self) -> InitStart {
        InitStart {
            initialization_type: self.required("initializationType", text),
            phase: self.required("phase", text),
            runtime_version: self.optional("runtimeVersion", text),
            runtime_version_arn: self.optional("runtimeVersionArn", text),
            function_name: self.optional("functionName", text),
            function_arn: self.optional("functionArn", text),
            function_version: self.optional("functionVersion", text),
            instance_id: self.optional("instanceId", text),
            instance_max_memory: self.optional("instanceMaxMemory", count),
            tracing: self.tracing(),
        }
    }

    fn init_runtime_done(mut self) -> InitRuntimeDone {
        InitRuntimeDone {
            initialization_type: self.required("initializationType", text),
            phase: self.optional("phase", text),
            status: self.required("status", text),
            error_type: self.optional("errorType", text),
            spans: self.spans(),
            tracing: self.tracing(),
        }
    }

    fn init_report(mut self) -> InitReport {
        InitReport {
            initialization_type: self.required("initializationType", text),
            phase: self.required("phase", text),
            duration_ms: self.metrics_duration(true),
            status: self.optional("status", text),
            error_type: self.optional("errorType", text),
            spans: self.spans(),
            tracing: self.tracing(),
        }
    }

    fn start(mut self) -> Option<Start> {
        Some(Start {
            request_id: self.request_id()?,
            version: self.optional("version", text),
            tracing: self.tracing(),
            tenant_id: self.optional("tenantId", text),
        })
    }

    fn runtime_done(mut self) -> Option<RuntimeDone> {
        let request_id = self.request_id()?;
        let (duration_ms, produced_bytes) = match self.object("metrics", false) {
            Some(mut m) => (
                m.required("durationMs", duration),
                m.optional("producedBytes", count),
            ),
            None => (None, None),
        };
        Some(RuntimeDone {
            request_id,
            status: self.required("status", text),
            error_type: self.optional("errorType", text),
            duration_ms,
            produced_bytes,
            spans: self.spans(),
            tracing: self.tracing(),
        })
    }

    fn report(mut self) -> Option<Report> {
        let request_id = self.request_id()?;
        let metrics = match self.object("metrics", true) {
            Some(mut m) => ReportMetrics {
                duration_ms: m.required("durationMs", duration),
                billed_duration_ms: m.optional("billedDurationMs", duration),
                memory_size_mb: m.optional("memorySizeMB", count),
                max_memory_used_mb: m.optional("maxMemoryUsedMB", count),
                init_duration_ms: m.optional("initDurationMs", duration),
                restore_duration_ms: m.optional("restoreDurationMs", duration),
                billed_restore_duration_ms: m.optional("billedRestoreDurationMs", duration),
            },
            None => ReportMetrics::default(),
        };
        Some(Report {
            request_id,
            status: self.required("status", text),
            error_type: self.optional("errorType", text),
            metrics,
            spans: self.spans(),
            tracing: self.tracing(),
        })
    }

    fn restore_start(mut self) -> RestoreStart {
        RestoreStart {
            runtime_version: self.optional("runtimeVersion", text),
            runtime_version_arn: self.optional("runtimeVersionArn", text),
            function_name: self.optional("functionName", text),
            function_version: self.optional("functionVersion", text),
            instance_id: self.optional("instanceId", text),
            instance_max_memory: self.optional("instanceMaxMemory", count),
        }
    }

    fn restore_runtime_done(mut self) -> RestoreRuntimeDone {
        RestoreRuntimeDone {
            status: self.required("status", text),
            error_type: self.optional("errorType", text),
            spans: self.spans(),
        }
    }

    fn restore_report(mut self) -> RestoreReport {
        RestoreReport {
            status: self.required("status", text),
            error_type: self.optional("errorType", text),
            duration_ms: self.metrics_duration(false),
            spans: self.spans(),
        }
    }

    fn extension(mut self) -> ExtensionState {
        ExtensionState {
            name: self.required("name", text),
            state: self.required("state", text),
            events: self.strings("events"),
            error_type: self.optional("errorType", text),
        }
    }

    fn subscription(mut self) -> TelemetrySubscription {
        TelemetrySubscription {
            name: self.required("name", text),
            state: self.required("state", text),
            types: self.strings("types"),
        }
    }

    fn logs_dropped(mut self) -> LogsDropped {
        LogsDropped {
            reason: self.required("reason", text),
            dropped_records: self.required("droppedRecords", count),
            dropped_bytes: self.required("droppedBytes", count),
        }
    }
}

/// A string; a number or a boolean as it is written.
fn text(value: Value) -> Result<String, Issue> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Issue::InvalidValue),
    }
}

/// A finite number, also written as a string.
fn number(value: Value) -> Result<f64, Issue> {
    let n = match &value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite()).ok_or(Issue::InvalidValue)
}

/// Milliseconds: a number that is not negative.
fn duration(value: Value) -> Result<f64, Issue> {
    number(value).and_then(|ms| {
        if ms >= 0.0 {
            Ok(ms)
        } else {
            Err(Issue::InvalidValue)
        }
    })
}

/// A whole number that is not negative (`84`, `84.0`, `"84"`).
fn count(value: Value) -> Result<u64, Issue> {
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    let n = number(value)?;
    if n >= 0.0 && n.fract() == 0.0 && n < u64::MAX as f64 {
        Ok(n as u64)
    } else {
        Err(Issue::InvalidValue)
    }
}

fn time(value: Value) -> Result<u64, Issue> {
    parse_time_value(&value).ok_or(Issue::InvalidTime)
}

fn object(value: Value) -> Result<Map<String, Value>, Issue> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Issue::InvalidValue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(kind: &str, record: Value) -> (Option<Event>, FieldDrops) {
        let mut drops = FieldDrops::default();
        let event = decode_event(kind, record, &mut drops);
        (event, drops)
    }

    #[test]
    fn lenient_values() {
        assert_eq!(text(json!(12)), Ok("12".to_owned()));
        assert_eq!(text(json!(true)), Ok("true".to_owned()));
        assert_eq!(text(json!({})), Err(Issue::InvalidValue));
        assert_eq!(number(json!("124.5")), Ok(124.5));
        assert_eq!(number(json!(" 7 ")), Ok(7.0));
        assert_eq!(number(json!("NaN")), Err(Issue::InvalidValue));
        assert_eq!(number(json!([1])), Err(Issue::InvalidValue));
        assert_eq!(duration(json!(-1.0)), Err(Issue::InvalidValue));
        assert_eq!(count(json!(84)), Ok(84));
        assert_eq!(count(json!(84.0)), Ok(84));
        assert_eq!(count(json!("256")), Ok(256));
        assert_eq!(count(json!(84.5)), Err(Issue::InvalidValue));
        assert_eq!(count(json!(-3)), Err(Issue::InvalidValue));
        assert_eq!(time(json!("soon")), Err(Issue::InvalidTime));
    }

    #[test]
    fn each_bad_or_missing_field_is_counted_by_why() {
        let (event, drops) = read(
            "platform.runtimeDone",
            json!({"requestId": "r", "errorType": {"nested": 1}, "metrics": {"producedBytes": -1},
                   "spans": [{"name": "a", "start": "never", "durationMs": 1.0}, 7,
                             {"name": "b", "start": "2022-10-12T00:00:15.300Z", "durationMs": 2.0}],
                   "tracing": "Root=1-5759e988-bd862e3fe1be46a994272793"}),
        );
        let Some(Event::RuntimeDone(d)) = event else {
            panic!("{event:?}")
        };
        assert_eq!(d.status, None);
        assert_eq!(d.error_type, None);
        assert_eq!(d.duration_ms, None);
        assert_eq!(d.produced_bytes, None);
        assert_eq!(d.spans.len(), 1);
        assert_eq!(d.spans[0].name, "b");
        assert_eq!(d.tracing, None);
        assert_eq!(
            drops,
            FieldDrops {
                // spans[0].start
                invalid_time: 1,
                // errorType, producedBytes, spans[1], tracing
                invalid_value: 4,
                // status, metrics.durationMs
                missing: 2,
            }
        );
    }

    #[test]
    fn null_is_no_value_and_optional_fields_are_not_counted() {
        let (event, drops) = read(
            "platform.start",
            json!({"requestId": "r", "version": null, "tracing": null}),
        );
        assert!(matches!(event, Some(Event::Start(_))));
        assert_eq!(drops, FieldDrops::default());
    }

    #[test]
    fn only_what_cannot_be_a_record_is_refused() {
        for (kind, record) in [
            ("platform.start", json!({"version": "$LATEST"})),
            (
                "platform.runtimeDone",
                json!({"requestId": "", "status": "success"}),
            ),
            ("platform.report", json!({"requestId": {"id": 1}})),
            ("platform.initStart", json!("not an object")),
            ("platform.logsDropped", json!([1, 2])),
        ] {
            assert_eq!(read(kind, record.clone()).0, None, "{kind} {record}");
        }
        // A request id written as a number is still one.
        let (event, _) = read(
            "platform.report",
            json!({"requestId": 6_001_234, "metrics": {"durationMs": 1.0}}),
        );
        assert!(matches!(event, Some(Event::Report(r)) if r.request_id == "6001234"));
        // A record of a known type missing every field is still the record it says it is.
        let (event, drops) = read("platform.extension", json!({}));
        assert!(matches!(event, Some(Event::Extension(_))));
        assert_eq!(drops.missing, 2);
    }
}
