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
        let mut attrs = vec![
            kv_str("aws.lambda.extension.name", ext.name.clone()),
            kv_str("aws.lambda.extension.state", ext.state.clone()),
            kv_str_array("aws.lambda.extension.events", &ext.events),
        ];
        if let Some(e) = &ext.error_type {
            attrs.push(kv_str("error.type", e.clone()));
        }
        let body = format!("extension {} {}", ext.name, ext.state);
        self.platform_log("platform.extension", t, severity, body, attrs);
    }

    pub(super) fn on_subscription(&mut self, sub: TelemetrySubscription, t: u64) {
        let attrs = vec![
            kv_str("aws.lambda.extension.name", sub.name.clone()),
            kv_str("aws.lambda.subscription.state", sub.state.clone()),
            kv_str_array("aws.lambda.subscription.types", &sub.types),
        ];
        let body = format!("telemetry subscription {} {}", sub.name, sub.state);
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
        self.metrics.record(
            MetricId::LogsDroppedRecords,
            dropped.dropped_records as f64,
            t,
        );
        self.metrics
            .record(MetricId::LogsDroppedBytes, dropped.dropped_bytes as f64, t);
        let attrs = vec![
            kv_int(
                "aws.lambda.logs_dropped.records",
                i64::try_from(dropped.dropped_records).unwrap_or(i64::MAX),
            ),
            kv_int(
                "aws.lambda.logs_dropped.bytes",
                i64::try_from(dropped.dropped_bytes).unwrap_or(i64::MAX),
            ),
        ];
        self.platform_log(
            "platform.logsDropped",
            t,
            SeverityNumber::Warn,
            dropped.reason,
            attrs,
        );
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
