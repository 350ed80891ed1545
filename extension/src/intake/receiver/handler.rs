//! One OTLP/HTTP request: route, check, read, decode, queue, answer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prost::Message;

use super::config::{BODY_TIMEOUT, MAX_BODY_BYTES_VAR, MAX_PENDING_BYTES_VAR};
use super::payload::{self, Gunzip, QUEUE_FULL_MESSAGE};
use crate::diag;
use crate::diag::Stats;
use crate::pipeline::otlp::RpcStatus;
use crate::pipeline::{Held, IntakeBudget, IntakeSender, OtlpPayload, Signal};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// A refused request: its status and the reason sent back.
struct Refusal {
    status: StatusCode,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// `google.rpc.Code.INVALID_ARGUMENT`.
const INVALID_ARGUMENT: i32 = 3;
/// `google.rpc.Code.UNAVAILABLE`: the `Status` of a 503 (OTLP/HTTP does not read the code).
const UNAVAILABLE: i32 = 14;
/// `Retry-After` of a 503, in seconds (the header's unit): the bytes held are given back as
/// soon as the worker has mapped them, in milliseconds, so the shortest wait HTTP can say.
const RETRY_AFTER_SECS: u64 = 1;

/// The whole answer to a connection over the cap, sent before reading anything: a 503 with
/// `Retry-After` and a protobuf `Status`, then close.
pub(super) fn too_many_connections(max: usize) -> Vec<u8> {
    let status = RpcStatus {
        code: UNAVAILABLE,
        message: format!(
            "Contrail's receiver has {max} connections open, as many as it keeps; retry shortly"
        ),
        details: Vec::new(),
    }
    .encode_to_vec();
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {RETRY_AFTER_SECS}\r\ncontent-type: {PROTOBUF}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.len()
    )
    .into_bytes();
    answer.extend_from_slice(&status);
    answer
}

#[derive(Clone, Debug)]
pub(super) struct Handler {
    intake: IntakeSender,
    max_body_bytes: usize,
    budget: Arc<IntakeBudget>,
}

impl Handler {
    pub(super) fn new(
        intake: IntakeSender,
        max_body_bytes: usize,
        budget: Arc<IntakeBudget>,
    ) -> Self {
        Handler {
            intake,
            max_body_bytes,
            budget,
        }
    }

    fn stats(&self) -> &Stats {
        self.intake.stats()
    }

    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(signal) = signal_for(request.uri().path()) else {
            return self.refuse_plain(
                StatusCode::NOT_FOUND,
                "not found: OTLP/HTTP paths are /v1/traces, /v1/metrics and /v1/logs",
            );
        };
        if request.method() != Method::POST {
            let mut response = self.refuse_plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: OTLP/HTTP exports use POST",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let encoding = match encoding_of(request.headers()) {
            Ok(encoding) => encoding,
            Err(refusal) => return self.refuse_plain(refusal.status, &refusal.reason),
        };
        match self.accept(signal, encoding, request).await {
            Ok(response) => response,
            Err(refusal) => self.refuse(encoding, refusal),
        }
    }

    async fn accept(
        &self,
        signal: Signal,
        encoding: Encoding,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        let gzip = gzip_of(request.headers())?;
        let declared = content_length(request.headers());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return Err(self.too_large());
        }
        // The declared length is taken before anything is read: a request that cannot have
        // it is refused with its body unread.
        let mut held = self.budget.hold();
        let declared = declared.map(|n| n as usize);
        if let Some(length) = declared
            && !held.grow(length)
        {
            return Err(self.busy());
        }
        let body = tokio::time::timeout(
            BODY_TIMEOUT,
            self.read_body(request.into_body(), declared, &mut held),
        )
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s of the headers",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })??;
        let body = if gzip {
            payload::gunzip_held(body, self.max_body_bytes, &mut held).map_err(|e| match e {
                Gunzip::TooLarge => self.too_large(),
                Gunzip::Busy => self.busy(),
                Gunzip::Invalid(e) => {
                    Refusal::new(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"))
                }
            })?
        } else {
            body
        };
        let decoded = decode(signal, encoding, &body)?;
        let rejected = payload::queue(&self.intake, decoded, held);
        Ok(success(signal, encoding, rejected))
    }

    /// Read the body within the cap, holding its bytes in the budget as they arrive (all of
    /// them at once when they were declared).
    async fn read_body(
        &self,
        mut body: Incoming,
        declared: Option<usize>,
        held: &mut Held,
    ) -> Result<Bytes, Refusal> {
        let mut out = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers carry nothing for us
            };
            let len = out.len() + chunk.len();
            if len > self.max_body_bytes {
                return Err(self.too_large());
            }
            if len > held.bytes() && !held.grow(len - held.bytes()) {
                return Err(self.busy());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// The receivers hold as many bytes as they may: OTLP's "overloaded, retry later".
    fn busy(&self) -> Refusal {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Contrail holds {} bytes of other requests, as many as it may ({MAX_PENDING_BYTES_VAR} = {}); retry shortly",
                self.budget.used(),
                self.budget.max()
            ),
        )
    }

    fn too_large(&self) -> Refusal {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than {} bytes ({MAX_BODY_BYTES_VAR}); export smaller batches",
                self.max_body_bytes
            ),
        )
    }

    fn refuse(&self, encoding: Encoding, refusal: Refusal) -> Response<Full<Bytes>> {
        self.count_refusal(refusal.status, &refusal.reason);
        let busy = refusal.status == StatusCode::SERVICE_UNAVAILABLE;
        let status = RpcStatus {
            code: if busy { UNAVAILABLE } else { INVALID_ARGUMENT },
            message: refusal.reason,
            details: Vec::new(),
        };
        let body = match encoding {
            Encoding::Protobuf => Bytes::from(status.encode_to_vec()),
            Encoding::Json => Bytes::from(
                serde_json::json!({"code": status.code, "message": status.message}).to_string(),
            ),
        };
        let mut response = respond(refusal.status, content_type(encoding), body);
        if busy {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }

    /// Count a refused request or connection; say why once, for the first one only (the rest
    /// are counted).
    pub(super) fn count_refusal(&self, status: StatusCode, reason: &str) {
        static REFUSED: diag::Once = diag::Once::new();
        Stats::add(&self.stats().receiver_rejected_requests, 1);
        REFUSED.warn(format_args!(
            "receiver: refused a request ({}): {reason}",
            status.as_u16()
        ));
    }

    fn refuse_plain(&self, status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
        self.count_refusal(status, reason);
        respond(
            status,
            "text/plain; charset=utf-8",
            Bytes::from(format!("{reason}\n")),
        )
    }
}

fn signal_for(path: &str) -> Option<Signal> {
    match path {
        "/v1/traces" => Some(Signal::Traces),
        "/v1/metrics" => Some(Signal::Metrics),
        "/v1/logs" => Some(Signal::Logs),
        _ => None,
    }
}

fn encoding_of(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let unsupported = |what: &str| {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {what}: use {PROTOBUF} or {JSON}"),
        )
    };
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(unsupported("(none given)"));
    };
    let text = value.to_str().map_err(|_| unsupported("(not text)"))?;
    let media_type = text.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(PROTOBUF)
        || media_type.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(Encoding::Protobuf)
    } else if media_type.eq_ignore_ascii_case(JSON) {
        Ok(Encoding::Json)
    } else {
        Err(unsupported(&format!("{text:?}")))
    }
}

fn gzip_of(headers: &HeaderMap) -> Result<bool, Refusal> {
    payload::is_gzip(headers.get(CONTENT_ENCODING)).map_err(|text| {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content encoding {text:?}: use gzip or none"),
        )
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn decode(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<OtlpPayload, Refusal> {
    let invalid = |e: &dyn std::fmt::Display| {
        let what = match encoding {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "JSON",
        };
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a valid OTLP {what} {signal:?} export request: {e}"),
        )
    };
    Ok(match (signal, encoding) {
        (_, Encoding::Protobuf) => {
            payload::decode_protobuf(signal, body).map_err(|e| invalid(&e))?
        }
        (Signal::Traces, Encoding::Json) => {
            OtlpPayload::Traces(serde_json::from_slice(body).map_err(|e| invalid(&e))?)
        }
        (Signal::Metrics, Encoding::Json) => {
            OtlpPayload::Metrics(serde_json::from_slice(body).map_err(|e| invalid(&e))?)
        }
        (Signal::Logs, Encoding::Json) => {
            OtlpPayload::Logs(serde_json::from_slice(body).map_err(|e| invalid(&e))?)
        }
    })
}

/// The success answer: an empty `Export*ServiceResponse`, or one whose `partial_success`
/// reports `rejected` records.
fn success(signal: Signal, encoding: Encoding, rejected: Option<u64>) -> Response<Full<Bytes>> {
    let body = match (encoding, rejected) {
        (Encoding::Json, None) => Bytes::from_static(b"{}"),
        (Encoding::Json, Some(n)) => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            Bytes::from(
                serde_json::json!({
                    "partialSuccess": {field: n.to_string(), "errorMessage": QUEUE_FULL_MESSAGE}
                })
                .to_string(),
            )
        }
        (Encoding::Protobuf, rejected) => Bytes::from(payload::response(signal, rejected)),
    };
    respond(StatusCode::OK, content_type(encoding), body)
}

fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Protobuf => PROTOBUF,
        Encoding::Json => JSON,
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The body decoding of [`Handler::accept`] without the request around it, for the fuzz target
/// `receiver_body` (`crate::fuzzing`): the inflated body within `max` bytes, then its decoded
/// payload; `Err` carries the status and the reason the request would be refused with.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_body(
    signal: Signal,
    json: bool,
    gzip: bool,
    body: Bytes,
    max: usize,
) -> Result<OtlpPayload, (StatusCode, String)> {
    use crate::pipeline::IntakeBudget;

    let encoding = if json {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    let body = if gzip {
        match payload::gunzip_held(body, max, &mut IntakeBudget::new(max).hold()) {
            Ok(inflated) => {
                assert!(inflated.len() <= max, "inflated past the cap");
                inflated
            }
            Err(Gunzip::TooLarge | Gunzip::Busy) => {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, String::new()));
            }
            Err(Gunzip::Invalid(e)) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
        }
    } else {
        body
    };
    decode(signal, encoding, &body).map_err(|r| (r.status, r.reason))
}
