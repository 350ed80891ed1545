//! Decoding OTLP/HTTP request bodies: content type, content encoding, protobuf or JSON.

use std::io::Read;

use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use serde::de::DeserializeOwned;

use super::{MAX_BODY_BYTES, Signal};

/// The wire format named by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// Parses a `Content-Type` header value (parameters such as `charset` are ignored).
    pub(super) fn from_content_type(value: &str) -> Result<Format, DecodeError> {
        let media = value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(DecodeError::UnsupportedContentType(value.to_owned())),
        }
    }

    /// The `Content-Type` to answer with.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The compression named by `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// Parses an optional `Content-Encoding` header value.
    pub(super) fn from_header(value: Option<&str>) -> Result<Encoding, DecodeError> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Encoding::Identity),
            Some(v) if v.is_empty() || v == "identity" || v == "none" => Ok(Encoding::Identity),
            Some(v) if v == "gzip" || v == "x-gzip" => Ok(Encoding::Gzip),
            Some(v) => Err(DecodeError::UnsupportedEncoding(v)),
        }
    }
}

/// Why a request body could not be used.
#[derive(Debug, thiserror::Error)]
pub(super) enum DecodeError {
    #[error("unsupported Content-Type {0:?}: expected application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    #[error("unsupported Content-Encoding {0:?}: expected gzip or none")]
    UnsupportedEncoding(String),
    #[error("body is not valid gzip: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body is not a valid protobuf {message}: {source}")]
    Protobuf {
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("body is not a valid OTLP JSON {message}: {source}")]
    Json {
        message: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// A decoded export request of one of the three signals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Body {
    pub(crate) fn signal(&self) -> Signal {
        match self {
            Body::Traces(_) => Signal::Traces,
            Body::Metrics(_) => Signal::Metrics,
            Body::Logs(_) => Signal::Logs,
        }
    }

    /// Size of the request encoded as protobuf.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Body::Traces(r) => r.encoded_len(),
            Body::Metrics(r) => r.encoded_len(),
            Body::Logs(r) => r.encoded_len(),
        }
    }

    /// Spans, metric data points or log records in the request.
    pub(crate) fn item_count(&self) -> usize {
        match self {
            Body::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Body::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(data_points)
                .sum(),
            Body::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
        }
    }

    /// The request in OTLP JSON encoding (hex trace and span ids, 64-bit integers as strings).
    pub(crate) fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Body::Traces(r) => serde_json::to_value(r),
            Body::Metrics(r) => serde_json::to_value(r),
            Body::Logs(r) => serde_json::to_value(r),
        }
    }
}

/// Undoes the content encoding, refusing to produce more than [`MAX_BODY_BYTES`].
/// The data points of a metric, whatever its kind.
pub(super) fn data_points(metric: &opentelemetry_proto::tonic::metrics::v1::Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

pub(super) fn decompress(encoding: Encoding, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    match encoding {
        Encoding::Identity => {
            if bytes.len() > MAX_BODY_BYTES {
                return Err(DecodeError::TooLarge {
                    limit: MAX_BODY_BYTES,
                });
            }
            Ok(bytes.to_vec())
        }
        Encoding::Gzip => {
            let mut out = Vec::new();
            let limit = MAX_BODY_BYTES as u64 + 1;
            GzDecoder::new(bytes)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(DecodeError::Gzip)?;
            if out.len() > MAX_BODY_BYTES {
                return Err(DecodeError::TooLarge {
                    limit: MAX_BODY_BYTES,
                });
            }
            Ok(out)
        }
    }
}

/// Decodes a whole OTLP/HTTP request body of `signal`.
pub(super) fn decode_request(
    signal: Signal,
    format: Format,
    encoding: Encoding,
    bytes: &[u8],
) -> Result<Body, DecodeError> {
    let raw = decompress(encoding, bytes)?;
    match signal {
        Signal::Traces => decode(format, &raw, "ExportTraceServiceRequest").map(Body::Traces),
        Signal::Metrics => decode(format, &raw, "ExportMetricsServiceRequest").map(Body::Metrics),
        Signal::Logs => decode(format, &raw, "ExportLogsServiceRequest").map(Body::Logs),
    }
}

/// Decodes one export request message, named `message` in errors.
fn decode<M: Message + Default + DeserializeOwned>(
    format: Format,
    raw: &[u8],
    message: &'static str,
) -> Result<M, DecodeError> {
    match format {
        Format::Protobuf => {
            M::decode(raw).map_err(|source| DecodeError::Protobuf { message, source })
        }
        Format::Json => {
            serde_json::from_slice(raw).map_err(|source| DecodeError::Json { message, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type("application/x-protobuf").ok(),
            Some(Format::Protobuf)
        );
        assert_eq!(
            Format::from_content_type("Application/JSON; charset=utf-8").ok(),
            Some(Format::Json)
        );
        assert!(matches!(
            Format::from_content_type("text/plain"),
            Err(DecodeError::UnsupportedContentType(_))
        ));
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_header(None).ok(), Some(Encoding::Identity));
        assert_eq!(
            Encoding::from_header(Some("GZIP")).ok(),
            Some(Encoding::Gzip)
        );
        let err = Encoding::from_header(Some("zstd")).err();
        assert!(matches!(err, Some(DecodeError::UnsupportedEncoding(ref v)) if v == "zstd"));
    }

    #[test]
    fn bad_gzip_is_a_body_error() {
        let err = decode_request(Signal::Logs, Format::Protobuf, Encoding::Gzip, b"not gzip");
        assert!(matches!(err, Err(DecodeError::Gzip(_))));
    }

    #[test]
    fn empty_protobuf_is_an_empty_request() {
        let body = decode_request(Signal::Traces, Format::Protobuf, Encoding::Identity, b"");
        assert!(matches!(body, Ok(Body::Traces(ref r)) if r.resource_spans.is_empty()));
    }
}
