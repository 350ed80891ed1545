//! Request bodies and response interpretation: OTLP/HTTP encoding, gzip, partial success,
//! error messages and `Retry-After`.

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
use crate::pipeline::otlp::{Item, RpcStatus, Signal};

/// Longest backend message kept for a log line.
pub const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("gzip failed: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("buffered data did not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Encode `items` (all of `signal`) as one export request body.
pub fn encode<'a>(
    signal: Signal,
    items: impl Iterator<Item = &'a Item>,
    protocol: Protocol,
    compression: Compression,
) -> Result<Bytes, EncodeError> {
    let raw = match protocol {
        Protocol::HttpProtobuf => {
            // An Export*ServiceRequest is field 1 repeated: encode each item as that field,
            // without cloning the items into a request message.
            let mut buf = Vec::new();
            for item in items {
                item.encode_field_into(&mut buf);
            }
            buf
        }
        Protocol::HttpJson => match signal {
            Signal::Traces => serde_json::to_vec(&ExportTraceServiceRequest {
                resource_spans: items
                    .filter_map(|i| match i {
                        Item::Spans(r) => Some(r.clone()),
                        _ => None,
                    })
                    .collect(),
            })?,
            Signal::Metrics => serde_json::to_vec(&ExportMetricsServiceRequest {
                resource_metrics: items
                    .filter_map(|i| match i {
                        Item::Metrics(r) => Some(r.clone()),
                        _ => None,
                    })
                    .collect(),
            })?,
            Signal::Logs => serde_json::to_vec(&ExportLogsServiceRequest {
                resource_logs: items
                    .filter_map(|i| match i {
                        Item::Logs(r) => Some(r.clone()),
                        _ => None,
                    })
                    .collect(),
            })?,
        },
    };
    compress(raw, compression)
}

/// A request body sent as a sequence of chunks, never joined into one buffer: the buffer's
/// entries go to the socket as they are (vectored writes), and a retry shares them.
#[derive(Debug, Clone, Default)]
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    len: u64,
}

impl Chunks {
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Chunks {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Chunks { chunks, len }
    }

    /// Bytes in the body.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
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
pub struct PartialSuccess {
    pub rejected: u64,
    pub message: String,
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
pub fn partial_success(signal: Signal, headers: &HeaderMap, body: &[u8]) -> PartialSuccess {
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
pub fn error_message(headers: &HeaderMap, body: &[u8]) -> String {
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
pub fn truncate(s: &str) -> String {
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

/// `Retry-After`: delay-seconds or an HTTP date, relative to `now`. A date in the past is zero.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => parse_http_date(value)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    // A backend or proxy asking for hours (or for ever) would stop a signal for good and, added
    // to an `Instant`, could overflow it; data waits at most this long before the next attempt.
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The longest `Retry-After` Contrail honours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires senders to
/// use.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_parses() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").is_none());
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        h.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            http::header::RETRY_AFTER,
            "18446744073709551615".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

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
