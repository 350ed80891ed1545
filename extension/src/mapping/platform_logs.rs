//! Platform records that become log records: `platform.extension`,
//! `platform.telemetrySubscription`, `platform.logsDropped` (also metrics) and record types
//! Contrail does not know, each with `event.name` `aws.lambda.<type>`.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyVal;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

use crate::intake::telemetry::event::{ExtensionState, LogsDropped, TelemetrySubscription};
use crate::mapping::Mapper;
use crate::mapping::metrics::MetricId;
use crate::mapping::otlp::{any, json_to_any, kv_int, kv_str, kv_str_array, severity_text};

impl Mapper {
    pub(super) fn on_extension(&mut self, ext: ExtensionState, t: u64) {
        let severity = if ext.error_type.is_some() {
            SeverityNumber::Error
        } else {
            SeverityNumber::Info
        };
        let mut attrs = Vec::with_capacity(4);
        push_opt(&mut attrs, "aws.lambda.extension.name", &ext.name);
        push_opt(&mut attrs, "aws.lambda.extension.state", &ext.state);
        attrs.push(kv_str_array("aws.lambda.extension.events", &ext.events));
        if let Some(e) = &ext.error_type {
            attrs.push(kv_str("error.type", e.clone()));
        }
        let body = format!(
            "extension {} {}",
            or_unknown(&ext.name),
            or_unknown(&ext.state)
        );
        self.platform_log("platform.extension", t, severity, body, attrs);
    }

    pub(super) fn on_subscription(&mut self, sub: TelemetrySubscription, t: u64) {
        let mut attrs = Vec::with_capacity(3);
        push_opt(&mut attrs, "aws.lambda.extension.name", &sub.name);
        push_opt(&mut attrs, "aws.lambda.subscription.state", &sub.state);
        attrs.push(kv_str_array("aws.lambda.subscription.types", &sub.types));
        let body = format!(
            "telemetry subscription {} {}",
            or_unknown(&sub.name),
            or_unknown(&sub.state)
        );
        self.platform_log(
            "platform.telemetrySubscription",
            t,
            SeverityNumber::Info,
            body,
            attrs,
        );
    }

    /// A record type this version does not know: kept whole as the body.
    pub(super) fn on_unknown(&mut self, kind: String, record: serde_json::Value, t: u64) {
        let mut log = LogRecord {
            time_unix_nano: t,
            observed_time_unix_nano: t,
            event_name: format!("aws.lambda.{kind}"),
            body: Some(json_to_any(record)),
            ..Default::default()
        };
        log.attributes
            .push(kv_str("event.name", log.event_name.clone()));
        log.attributes.push(kv_str("aws.lambda.record.type", kind));
        self.staged_logs.push(log);
    }

    pub(super) fn on_logs_dropped(&mut self, dropped: LogsDropped, t: u64) {
        let mut attrs = Vec::with_capacity(2);
        for (metric, key, n) in [
            (
                MetricId::LogsDroppedRecords,
                "aws.lambda.logs_dropped.records",
                dropped.dropped_records,
            ),
            (
                MetricId::LogsDroppedBytes,
                "aws.lambda.logs_dropped.bytes",
                dropped.dropped_bytes,
            ),
        ] {
            if let Some(n) = n {
                self.metrics.record(metric, n as f64, t);
                attrs.push(kv_int(key, i64::try_from(n).unwrap_or(i64::MAX)));
            }
        }
        let body = dropped
            .reason
            .unwrap_or_else(|| "Lambda dropped telemetry records".to_owned());
        self.platform_log("platform.logsDropped", t, SeverityNumber::Warn, body, attrs);
    }

    fn platform_log(
        &mut self,
        kind: &str,
        t: u64,
        severity: SeverityNumber,
        body: String,
        mut attrs: Vec<KeyValue>,
    ) {
        let event_name = format!("aws.lambda.{kind}");
        attrs.insert(0, kv_str("event.name", event_name.clone()));
        self.staged_logs.push(LogRecord {
            time_unix_nano: t,
            observed_time_unix_nano: t,
            severity_number: severity as i32,
            severity_text: severity_text(severity).to_owned(),
            body: any(AnyVal::StringValue(body)),
            attributes: attrs,
            event_name,
            ..Default::default()
        });
    }
}

fn push_opt(attrs: &mut Vec<KeyValue>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        attrs.push(kv_str(key, v.clone()));
    }
}

/// A name or state the record did not give.
fn or_unknown(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(unknown)")
}
