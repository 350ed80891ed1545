//! Request bodies and response bodies: OTLP/HTTP encoding of buffered entries, gzip, partial
//! success and error messages. (What a status means is [`crate::export::retry`]'s.)

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use http::HeaderMap;
use hyper::body::{Frame, SizeHint};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::export::config::{Compression, Protocol};
use crate::pipeline::otlp::{RpcStatus, Signal};

/// Longest backend message kept for a log line.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// Why a request body could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Writing `http/json` failed.
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
    /// Compressing failed.
    #[error("gzip failed: {0}")]
    Gzip(#[from] std::io::Error),
    /// The buffered protobuf did not decode (for `http/json`).
    #[error("buffered data did not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// A request body sent as a sequence of chunks, never joined into one buffer: the buffer's
/// entries go to the socket as they are (vectored writes), and a retry shares them.
#[derive(Debug, Clone, Default)]
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    len: u64,
}

impl Chunks {
    pub(crate) fn new(chunks: impl IntoIterator<Item = Bytes>) -> Chunks {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Chunks { chunks, len }
    }

    /// Bytes in the body.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// The whole body in one buffer.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out
    }
}

impl From<Bytes> for Chunks {
    fn from(bytes: Bytes) -> Chunks {
        Chunks::new([bytes])
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.len -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Make an export request body from `entries`, each field 1 of a protobuf-encoded
/// `Export*ServiceRequest` of `signal` (what the buffer keeps): sent as they are, or joined and
/// compressed, or decoded and written as JSON.
pub fn encode_entries(
    signal: Signal,
    entries: Vec<Bytes>,
    protocol: Protocol,
    compression: Compression,
) -> Result<Chunks, EncodeError> {
    let entries = Chunks::new(entries);
    match (protocol, compression) {
        (Protocol::HttpProtobuf, Compression::None) => Ok(entries),
        (Protocol::HttpProtobuf, Compression::Gzip) => {
            let capacity = entries.len() as usize / 4;
            let mut encoder = GzEncoder::new(Vec::with_capacity(capacity), GzLevel::fast());
            for chunk in &entries.chunks {
                encoder.write_all(chunk)?;
            }
            Ok(Chunks::from(Bytes::from(encoder.finish()?)))
        }
        (Protocol::HttpJson, _) => {
            let protobuf = entries.to_vec();
            let json = match signal {
                Signal::Traces => {
                    serde_json::to_vec(&ExportTraceServiceRequest::decode(protobuf.as_slice())?)?
                }
                Signal::Metrics => {
                    serde_json::to_vec(&ExportMetricsServiceRequest::decode(protobuf.as_slice())?)?
                }
                Signal::Logs => {
                    serde_json::to_vec(&ExportLogsServiceRequest::decode(protobuf.as_slice())?)?
                }
            };
            drop(protobuf);
            compress(json, compression).map(Chunks::from)
        }
    }
}

fn compress(raw: Vec<u8>, compression: Compression) -> Result<Bytes, EncodeError> {
    match compression {
        Compression::None => Ok(Bytes::from(raw)),
        Compression::Gzip => {
            let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4), GzLevel::fast());
            encoder.write_all(&raw)?;
            Ok(Bytes::from(encoder.finish()?))
        }
    }
}

/// What a successful response says was refused (OTLP partial success).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    pub(crate) rejected: u64,
    pub(crate) message: String,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().contains("json"))
        .unwrap_or(false)
}

fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().contains("protobuf"))
        .unwrap_or(false)
}

/// Read the partial success of a 2xx response body. An empty or unreadable body means full
/// success (the body is optional in practice).
pub(crate) fn partial_success(signal: Signal, headers: &HeaderMap, body: &[u8]) -> PartialSuccess {
    if body.is_empty() {
        return PartialSuccess::default();
    }
    let json = is_json(headers);
    let (rejected, message) = match signal {
        Signal::Traces => {
            let r: Option<ExportTraceServiceResponse> = if json {
                serde_json::from_slice(body).ok()
            } else {
                ExportTraceServiceResponse::decode(body).ok()
            };
            r.and_then(|r| r.partial_success)
                .map(|p| (p.rejected_spans, p.error_message))
                .unwrap_or_default()
        }
        Signal::Metrics => {
            let r: Option<ExportMetricsServiceResponse> = if json {
                serde_json::from_slice(body).ok()
            } else {
                ExportMetricsServiceResponse::decode(body).ok()
            };
            r.and_then(|r| r.partial_success)
                .map(|p| (p.rejected_data_points, p.error_message))
                .unwrap_or_default()
        }
        Signal::Logs => {
            let r: Option<ExportLogsServiceResponse> = if json {
                serde_json::from_slice(body).ok()
            } else {
                ExportLogsServiceResponse::decode(body).ok()
            };
            r.and_then(|r| r.partial_success)
                .map(|p| (p.rejected_log_records, p.error_message))
                .unwrap_or_default()
        }
    };
    PartialSuccess {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message: truncate(&message),
    }
}

/// The backend's explanation of an error response: the `message` of a `google.rpc.Status`
/// (protobuf or JSON) when there is one, else the body as text, truncated.
pub(crate) fn error_message(headers: &HeaderMap, body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    if is_protobuf(headers)
        && let Ok(status) = RpcStatus::decode(body)
        && !status.message.is_empty()
    {
        return truncate(&status.message);
    }
    if is_json(headers)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = value.get("message").and_then(|m| m.as_str())
    {
        return truncate(message);
    }
    truncate(&String::from_utf8_lossy(body))
}

/// Shorten to [`MAX_MESSAGE_CHARS`] characters, on one line.
pub(crate) fn truncate(s: &str) -> String {
    let one_line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX_MESSAGE_CHARS {
        return one_line;
    }
    let mut out: String = one_line.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_status_json_or_text() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/x-protobuf".parse().unwrap(),
        );
        let body = RpcStatus {
            code: 3,
            message: "bad span".into(),
            details: Vec::new(),
        }
        .encode_to_vec();
        assert_eq!(error_message(&h, &body), "bad span");
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert_eq!(
            error_message(&h, br#"{"code":3,"message":"bad json"}"#),
            "bad json"
        );
        h.insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let long = "x".repeat(1000);
        assert_eq!(
            error_message(&h, long.as_bytes()).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }
}
