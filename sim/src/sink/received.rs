//! What the sink received: decoded requests, counters, the log of export attempts.

use std::collections::HashMap;
use std::net::SocketAddr;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::Signal;
use super::decode::Body;

/// Attempts kept in [`Received::attempts`]; later ones are only counted.
pub(super) const MAX_ATTEMPTS_KEPT: usize = 100_000;

/// Everything the sink received, as cloned by [`super::SinkHandle::snapshot`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    /// Accepted trace export requests, in arrival order.
    pub traces: Vec<ExportTraceServiceRequest>,
    /// Accepted metrics export requests, in arrival order.
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Accepted logs export requests, in arrival order.
    pub logs: Vec<ExportLogsServiceRequest>,
    /// Every request the sink answered, whatever the outcome, in the order they were answered.
    /// (A request cut off by [`super::Behaviour::Refuse`] was never answered and is not here.)
    pub attempts: Vec<Attempt>,
    /// Counts over the sink's lifetime.
    pub counters: Counters,
}

/// Counts over the sink's lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests accepted (answered 200).
    pub requests: u64,
    /// Requests answered 400, 404, 405, 413 or 415.
    pub bad_requests: u64,
    /// Requests answered with a scripted error status ([`super::Behaviour::Status`]).
    pub rejected: u64,
    /// Wire bytes (as sent, before decompression) of accepted requests.
    pub bytes: u64,
    /// Encoded size of the requests kept in memory.
    pub stored_bytes: u64,
    /// Accepted requests not kept in memory because the memory cap was reached.
    pub over_cap: u64,
    /// Requests held right now by [`super::Behaviour::Hang`].
    pub hanging: u64,
    /// Requests waiting right now for their answer under [`super::Behaviour::Delay`].
    pub delayed: u64,
    /// Attempts not kept in [`Received::attempts`] because it was full.
    pub attempts_not_kept: u64,
    /// Failed writes to the JSON lines file.
    pub jsonl_errors: u64,
    /// The last of them.
    pub last_jsonl_error: Option<String>,
    /// Failed attempts to listen again after [`super::Behaviour::Refuse`].
    pub listen_errors: u64,
    /// The last of them.
    pub last_listen_error: Option<String>,
}

/// One request as the sink answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When the answer was decided, in nanoseconds since the Unix epoch.
    pub unix_nano: u64,
    /// The signal of the path, if it was one of the OTLP paths.
    pub signal: Option<Signal>,
    /// The status answered.
    pub status: u16,
    /// Spans, data points or log records in the request, if it could be decoded.
    pub items: Option<usize>,
    /// The client's address: its port names the connection, and so the process, that sent
    /// the request, also when the body says nothing of its sender (an export with no data).
    pub peer: Option<SocketAddr>,
    /// The `faas.instance` resource attribute of the request's first resource that has one,
    /// if the request could be decoded: the execution environment that sent it.
    pub instance: Option<String>,
}

impl Attempt {
    pub(crate) fn is_success(&self) -> bool {
        self.status == 200
    }
}

/// The `faas.instance` of the first resource of `body` that has one (a string).
pub(super) fn instance_of(body: &Body) -> Option<String> {
    let resources: Vec<&Resource> = match body {
        Body::Traces(r) => r
            .resource_spans
            .iter()
            .filter_map(|x| x.resource.as_ref())
            .collect(),
        Body::Metrics(r) => r
            .resource_metrics
            .iter()
            .filter_map(|x| x.resource.as_ref())
            .collect(),
        Body::Logs(r) => r
            .resource_logs
            .iter()
            .filter_map(|x| x.resource.as_ref())
            .collect(),
    };
    resources
        .into_iter()
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "faas.instance")
        .find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// A span with the resource and scope it arrived with.
#[derive(Debug, Clone, Copy)]
pub struct SpanEntry<'a> {
    /// The resource of its `ResourceSpans`.
    pub resource: Option<&'a Resource>,
    /// The scope of its `ScopeSpans`.
    pub scope: Option<&'a InstrumentationScope>,
    /// The span.
    pub span: &'a Span,
}

/// A log record with the resource and scope it arrived with.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    /// The resource of its `ResourceLogs`.
    pub resource: Option<&'a Resource>,
    /// The scope of its `ScopeLogs`.
    pub scope: Option<&'a InstrumentationScope>,
    /// The log record.
    pub record: &'a LogRecord,
}

/// A metric with the resource and scope it arrived with.
#[derive(Debug, Clone, Copy)]
pub struct MetricEntry<'a> {
    /// The resource of its `ResourceMetrics`.
    pub resource: Option<&'a Resource>,
    /// The scope of its `ScopeMetrics`.
    pub scope: Option<&'a InstrumentationScope>,
    /// The metric.
    pub metric: &'a Metric,
}

/// What identifies a span.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanKey {
    /// The trace id.
    pub trace_id: Vec<u8>,
    /// The span id.
    pub span_id: Vec<u8>,
}

/// A span received more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateSpan {
    /// Which span.
    pub key: SpanKey,
    /// Its name (of the first copy).
    pub name: String,
    /// How often it arrived.
    pub count: usize,
}

/// What identifies a log record: its trace context, its times and its body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogKey {
    /// The trace id (empty without trace context).
    pub trace_id: Vec<u8>,
    /// The span id (empty without trace context).
    pub span_id: Vec<u8>,
    /// When it happened.
    pub time_unix_nano: u64,
    /// When it was observed.
    pub observed_time_unix_nano: u64,
    /// The body's debug representation.
    pub body: String,
}

/// A log record received more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateLog {
    /// Which log record.
    pub key: LogKey,
    /// How often it arrived.
    pub count: usize,
}

impl Received {
    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<SpanEntry<'_>> {
        let mut out = Vec::new();
        for request in &self.traces {
            for rs in &request.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(SpanEntry {
                            resource: rs.resource.as_ref(),
                            scope: ss.scope.as_ref(),
                            span,
                        });
                    }
                }
            }
        }
        out
    }

    /// Every log record received, in arrival order.
    pub fn log_records(&self) -> Vec<LogEntry<'_>> {
        let mut out = Vec::new();
        for request in &self.logs {
            for rl in &request.resource_logs {
                for sl in &rl.scope_logs {
                    for record in &sl.log_records {
                        out.push(LogEntry {
                            resource: rl.resource.as_ref(),
                            scope: sl.scope.as_ref(),
                            record,
                        });
                    }
                }
            }
        }
        out
    }

    /// Every metric received, in arrival order (one entry per metric per request).
    pub(crate) fn metric_entries(&self) -> Vec<MetricEntry<'_>> {
        let mut out = Vec::new();
        for request in &self.metrics {
            for rm in &request.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        out.push(MetricEntry {
                            resource: rm.resource.as_ref(),
                            scope: sm.scope.as_ref(),
                            metric,
                        });
                    }
                }
            }
        }
        out
    }

    /// How many spans were received.
    pub fn span_count(&self) -> usize {
        self.spans().len()
    }

    /// How many log records were received.
    pub fn log_record_count(&self) -> usize {
        self.log_records().len()
    }

    /// Spans with a given name.
    pub fn spans_named(&self, name: &str) -> Vec<SpanEntry<'_>> {
        self.spans()
            .into_iter()
            .filter(|e| e.span.name == name)
            .collect()
    }

    /// Metrics with a given name.
    pub fn metrics_named(&self, name: &str) -> Vec<MetricEntry<'_>> {
        self.metric_entries()
            .into_iter()
            .filter(|e| e.metric.name == name)
            .collect()
    }

    /// Attempts answered with anything but 200.
    pub fn failed_attempts(&self) -> Vec<&Attempt> {
        self.attempts.iter().filter(|a| !a.is_success()).collect()
    }

    /// Spans (same trace id and span id) received more than once, ordered by key.
    pub fn duplicate_spans(&self) -> Vec<DuplicateSpan> {
        let mut seen: HashMap<SpanKey, (String, usize)> = HashMap::new();
        for entry in self.spans() {
            let key = SpanKey {
                trace_id: entry.span.trace_id.clone(),
                span_id: entry.span.span_id.clone(),
            };
            seen.entry(key)
                .or_insert_with(|| (entry.span.name.clone(), 0))
                .1 += 1;
        }
        let mut out: Vec<DuplicateSpan> = seen
            .into_iter()
            .filter(|(_, (_, count))| *count > 1)
            .map(|(key, (name, count))| DuplicateSpan { key, name, count })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Log records (same trace id, span id, times and body) received more than once.
    pub fn duplicate_logs(&self) -> Vec<DuplicateLog> {
        let mut seen: HashMap<LogKey, usize> = HashMap::new();
        for entry in self.log_records() {
            let r = entry.record;
            let key = LogKey {
                trace_id: r.trace_id.clone(),
                span_id: r.span_id.clone(),
                time_unix_nano: r.time_unix_nano,
                observed_time_unix_nano: r.observed_time_unix_nano,
                body: format!("{:?}", r.body),
            };
            *seen.entry(key).or_insert(0) += 1;
        }
        let mut out: Vec<DuplicateLog> = seen
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(key, count)| DuplicateLog { key, count })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// A one-line account of what is held, for error messages.
    pub fn summary(&self) -> String {
        format!(
            "{} spans, {} log records, {} metrics in {} accepted requests; {} bad, {} rejected, {} held",
            self.span_count(),
            self.log_record_count(),
            self.metric_entries().len(),
            self.counters.requests,
            self.counters.bad_requests,
            self.counters.rejected,
            self.counters.hanging,
        )
    }

    /// Keeps an accepted request, unless that would exceed `max_stored_bytes`.
    pub(crate) fn store(&mut self, body: Body, wire_bytes: usize, max_stored_bytes: usize) {
        self.counters.requests += 1;
        self.counters.bytes += wire_bytes as u64;
        let size = body.encoded_len() as u64;
        if self.counters.stored_bytes + size > max_stored_bytes as u64 {
            self.counters.over_cap += 1;
            return;
        }
        self.counters.stored_bytes += size;
        match body {
            Body::Traces(r) => self.traces.push(r),
            Body::Metrics(r) => self.metrics.push(r),
            Body::Logs(r) => self.logs.push(r),
        }
    }

    pub(crate) fn record_attempt(&mut self, attempt: Attempt) {
        if self.attempts.len() < MAX_ATTEMPTS_KEPT {
            self.attempts.push(attempt);
        } else {
            self.counters.attempts_not_kept += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::ResourceLogs;

    use super::*;

    fn resource(attributes: &[(&str, any_value::Value)]) -> Option<Resource> {
        Some(Resource {
            attributes: attributes
                .iter()
                .map(|(k, v)| KeyValue {
                    key: (*k).to_owned(),
                    value: Some(AnyValue {
                        value: Some(v.clone()),
                    }),
                    ..KeyValue::default()
                })
                .collect(),
            ..Resource::default()
        })
    }

    #[test]
    fn the_instance_is_the_first_resource_s_faas_instance_string() {
        let logs = |resources: Vec<Option<Resource>>| {
            Body::Logs(ExportLogsServiceRequest {
                resource_logs: resources
                    .into_iter()
                    .map(|resource| ResourceLogs {
                        resource,
                        ..ResourceLogs::default()
                    })
                    .collect(),
            })
        };
        let text = |s: &str| any_value::Value::StringValue(s.to_owned());
        assert_eq!(
            instance_of(&logs(vec![
                None,
                resource(&[("faas.instance", any_value::Value::IntValue(7))]),
                resource(&[("service.name", text("f")), ("faas.instance", text("a1"))]),
                resource(&[("faas.instance", text("b2"))]),
            ])),
            Some("a1".to_owned())
        );
        // An export without data (a probe) names no sender.
        assert_eq!(instance_of(&logs(Vec::new())), None);
        assert_eq!(
            instance_of(&Body::Traces(ExportTraceServiceRequest::default())),
            None
        );
    }
}
