//! The pipeline's one currency: OTLP data by signal, as the `opentelemetry-proto` types.
//!
//! - [`OtlpPayload`]: one request of a function's own SDK, as the local receiver decoded it.
//! - [`Signals`]: what one step produced (the mapper for a batch, the receiver's payload once
//!   merged with Lambda's resource), one list per signal. [`Signals::into_items`] is the one
//!   place it is taken apart.
//! - [`Item`]: one resource's data of one signal, the unit the export buffer keeps.
//!
//! Records are counted in one unit everywhere ([`OtlpPayload::records`], [`Item::records`]):
//! spans, log records and metric **data points**, the units OTLP partial success reports.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

/// One of the three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// Every signal, in the order flushes export them.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The signal's name in OTLP paths (`/v1/traces`) and in Contrail's messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// A dense index, for per-signal arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Signal::Traces => 0,
            Signal::Metrics => 1,
            Signal::Logs => 2,
        }
    }
}

/// Data a function's own OpenTelemetry SDK sent to the local receiver, already decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum OtlpPayload {
    /// `POST /v1/traces`.
    Traces(ExportTraceServiceRequest),
    /// `POST /v1/metrics`.
    Metrics(ExportMetricsServiceRequest),
    /// `POST /v1/logs`.
    Logs(ExportLogsServiceRequest),
}

impl OtlpPayload {
    /// Spans, log records or metric data points.
    pub(crate) fn records(&self) -> u64 {
        match self {
            OtlpPayload::Traces(r) => r.resource_spans.iter().map(spans_in).sum(),
            OtlpPayload::Metrics(r) => r.resource_metrics.iter().map(data_points_in).sum(),
            OtlpPayload::Logs(r) => r.resource_logs.iter().map(log_records_in).sum(),
        }
    }
}

/// OTLP data ready for the export buffer, one list per signal.
///
/// The mapper and the local receiver append to it; delivery takes it whole.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Signals {
    /// Spans, by resource.
    pub spans: Vec<ResourceSpans>,
    /// Metrics, by resource.
    pub metrics: Vec<ResourceMetrics>,
    /// Log records, by resource.
    pub logs: Vec<ResourceLogs>,
}

impl Signals {
    /// Whether there is nothing in it.
    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.metrics.is_empty() && self.logs.is_empty()
    }

    /// Every resource's data as an [`Item`]: spans, then metrics, then logs.
    pub fn into_items(self) -> impl Iterator<Item = Item> {
        let Signals {
            spans,
            metrics,
            logs,
        } = self;
        spans
            .into_iter()
            .map(Item::Spans)
            .chain(metrics.into_iter().map(Item::Metrics))
            .chain(logs.into_iter().map(Item::Logs))
    }
}

/// One resource's worth of one signal: the unit the buffer stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A resource's spans.
    Spans(ResourceSpans),
    /// A resource's metrics.
    Metrics(ResourceMetrics),
    /// A resource's log records.
    Logs(ResourceLogs),
}

impl Item {
    /// The signal this item belongs to.
    pub fn signal(&self) -> Signal {
        match self {
            Item::Spans(_) => Signal::Traces,
            Item::Metrics(_) => Signal::Metrics,
            Item::Logs(_) => Signal::Logs,
        }
    }

    /// Spans, log records or metric data points.
    pub fn records(&self) -> u64 {
        match self {
            Item::Spans(r) => spans_in(r),
            Item::Metrics(r) => data_points_in(r),
            Item::Logs(r) => log_records_in(r),
        }
    }

    /// Bytes this item adds to an export request (the field's tag and length prefix included).
    pub(crate) fn wire_len(&self) -> usize {
        let len = match self {
            Item::Spans(r) => r.encoded_len(),
            Item::Metrics(r) => r.encoded_len(),
            Item::Logs(r) => r.encoded_len(),
        };
        1 + prost::length_delimiter_len(len) + len
    }

    /// Encode as field 1 of the signal's `Export*ServiceRequest`; `wire_len` is
    /// [`Item::wire_len`].
    pub(crate) fn encode_field(&self, wire_len: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(wire_len);
        self.encode_field_into(&mut buf);
        buf
    }

    /// Append this item as field 1 of the signal's `Export*ServiceRequest` to `buf`.
    pub(crate) fn encode_field_into(&self, buf: &mut Vec<u8>) {
        match self {
            Item::Spans(r) => prost::encoding::message::encode(1, r, buf),
            Item::Metrics(r) => prost::encoding::message::encode(1, r, buf),
            Item::Logs(r) => prost::encoding::message::encode(1, r, buf),
        }
    }
}

fn spans_in(resource: &ResourceSpans) -> u64 {
    resource
        .scope_spans
        .iter()
        .map(|s| s.spans.len() as u64)
        .sum()
}

fn log_records_in(resource: &ResourceLogs) -> u64 {
    resource
        .scope_logs
        .iter()
        .map(|s| s.log_records.len() as u64)
        .sum()
}

fn data_points_in(resource: &ResourceMetrics) -> u64 {
    resource
        .scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .map(data_points)
        .sum()
}

/// Data points in one metric.
pub(crate) fn data_points(metric: &Metric) -> u64 {
    let n = match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    n as u64
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response: what the local receiver
/// answers when it refuses a request, and what a backend's refusal is read as.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// The reason, for a person.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// Machine-readable details, such as a `google.rpc.RetryInfo`.
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`: a serialized message and the name of its type.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoAny {
    /// Names the type of `value` (`type.googleapis.com/google.rpc.RetryInfo`).
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    /// The serialized message.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}
