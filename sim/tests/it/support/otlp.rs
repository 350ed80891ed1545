//! Code shared by the sink tests: request builders and a plain HTTP client.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};

/// Bound on every wait in these tests; only there so that a failure does not hang.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

pub fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

pub fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            string_kv("service.name", service),
            string_kv("faas.name", service),
        ],
        ..Default::default()
    }
}

pub fn trace_id(n: u8) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[15] = n;
    id
}

pub fn span_id(n: u8) -> Vec<u8> {
    let mut id = vec![0xcd; 8];
    id[7] = n;
    id
}

/// A span of `trace` with id `id`, parent `parent` (0 = root), from `start_ms` to `end_ms`
/// after an arbitrary epoch.
pub fn span(trace: u8, id: u8, parent: u8, name: &str, start_ms: u64, end_ms: u64) -> Span {
    let base = 1_700_000_000_000_000_000u64;
    Span {
        trace_id: trace_id(trace),
        span_id: span_id(id),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            span_id(parent)
        },
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: base + start_ms * 1_000_000,
        end_time_unix_nano: base + end_ms * 1_000_000,
        attributes: vec![string_kv("faas.trigger", "http"), int_kv("attempt", 1)],
        ..Default::default()
    }
}

pub fn error_status(message: &str) -> Option<Status> {
    Some(Status {
        code: status::StatusCode::Error as i32,
        message: message.to_owned(),
    })
}

pub fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A log record at `at_ms` after the same epoch as [`span`]; `trace`/`id` 0 means none.
pub fn log(trace: u8, id: u8, at_ms: u64, severity: &str, body: &str) -> LogRecord {
    let base = 1_700_000_000_000_000_000u64;
    LogRecord {
        time_unix_nano: base + at_ms * 1_000_000,
        observed_time_unix_nano: base + at_ms * 1_000_000,
        severity_text: severity.to_owned(),
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.to_owned())),
        }),
        trace_id: if trace == 0 {
            Vec::new()
        } else {
            trace_id(trace)
        },
        span_id: if id == 0 { Vec::new() } else { span_id(id) },
        ..Default::default()
    }
}

pub fn logs(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn int_point(value: i64, at_ms: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: 1_700_000_000_000_000_000 + at_ms * 1_000_000,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

pub fn delta_sum(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

pub fn delta_histogram(name: &str, unit: &str, values: &[f64], at_ms: u64) -> Metric {
    let sum: f64 = values.iter().sum();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Metric {
        name: name.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 1_700_000_000_000_000_000 + at_ms * 1_000_000,
                count: values.len() as u64,
                sum: Some(sum),
                min: Some(min),
                max: Some(max),
                bucket_counts: vec![values.len() as u64],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    }
}

pub fn metrics(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(service)),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A client without connection reuse, so every request opens a new connection.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// POSTs `body` to `url` with optional Content-Type and Content-Encoding.
pub async fn post(
    url: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, hyper_util::client::legacy::Error> {
    send("POST", url, content_type, content_encoding, body).await
}

pub async fn send(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, hyper_util::client::legacy::Error> {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some(ce) = content_encoding {
        request = request.header("content-encoding", ce);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = client().request(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}
