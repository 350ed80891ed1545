//! One OTLP/HTTP request: route, check, read, decode, queue, answer.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use prost::Message;

use super::config::MAX_BODY_BYTES_VAR;
use super::payload::{self, Gunzip, QUEUE_FULL_MESSAGE};
use crate::diag;
use crate::diag::Stats;
use crate::pipeline::otlp::RpcStatus;
use crate::pipeline::{IntakeSender, OtlpPayload, Signal};

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

#[derive(Clone, Debug)]
pub(super) struct Handler {
    intake: IntakeSender,
    max_body_bytes: usize,
}

impl Handler {
    pub(super) fn new(intake: IntakeSender, max_body_bytes: usize) -> Self {
        Handler {
            intake,
            max_body_bytes,
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
                .insert(ALLOW, http::HeaderValue::from_static("POST"));
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
        if let Some(length) = content_length(request.headers())
            && length > self.max_body_bytes as u64
        {
            return Err(self.too_large());
        }
        let body = Limited::new(request.into_body(), self.max_body_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    self.too_large()
                } else {
                    Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("could not read the body: {e}"),
                    )
                }
            })?
            .to_bytes();
        let body = if gzip {
            payload::gunzip(&body, self.max_body_bytes).map_err(|e| match e {
                Gunzip::TooLarge => self.too_large(),
                Gunzip::Invalid(e) => {
                    Refusal::new(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"))
                }
            })?
        } else {
            body
        };
        let decoded = decode(signal, encoding, &body)?;
        let rejected = payload::queue(&self.intake, decoded);
        Ok(success(signal, encoding, rejected))
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
        let status = RpcStatus {
            code: INVALID_ARGUMENT,
            message: refusal.reason,
            details: Vec::new(),
        };
        let body = match encoding {
            Encoding::Protobuf => Bytes::from(status.encode_to_vec()),
            Encoding::Json => Bytes::from(
                serde_json::json!({"code": status.code, "message": status.message}).to_string(),
            ),
        };
        respond(refusal.status, content_type(encoding), body)
    }

    /// Count a refused request; say why once, for the first one only (the rest are counted).
    fn count_refusal(&self, status: StatusCode, reason: &str) {
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
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
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
    let encoding = if json {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    let body = if gzip {
        match payload::gunzip(&body, max) {
            Ok(inflated) => {
                assert!(inflated.len() <= max, "inflated past the cap");
                inflated
            }
            Err(Gunzip::TooLarge) => return Err((StatusCode::PAYLOAD_TOO_LARGE, String::new())),
            Err(Gunzip::Invalid(e)) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
        }
    } else {
        body
    };
    decode(signal, encoding, &body).map_err(|r| (r.status, r.reason))
}
