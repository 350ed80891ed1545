//! One OTLP/gRPC call: route, check, read its one message within the limits, decode, queue,
//! answer with a status in trailers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::super::config::{MAX_BODY_BYTES_VAR, MAX_PENDING_BYTES_VAR};
use super::super::payload::{self, Gunzip};
use super::GrpcOptions;
use super::wire::{
    ACCEPT_ENCODING, Assembler, CONTENT_TYPE as GRPC, Code, Framing, GRPC_ACCEPT_ENCODING,
    GRPC_ENCODING, Reply, Status, frame,
};
use crate::diag;
use crate::diag::Stats;
use crate::pipeline::{Held, IntakeBudget, IntakeSender, Signal};

/// How long a refused client should wait before it retries when the receivers hold as many
/// bytes as they may: they are mapped in milliseconds.
pub(super) const RETRY_AFTER_BUSY: Duration = Duration::from_millis(50);

/// What one call ended with, other than success.
#[derive(Debug)]
enum Refusal {
    /// Not gRPC at all: an HTTP status and a reason in plain text.
    Http(StatusCode, String),
    /// A gRPC status, in a Trailers-Only answer.
    Grpc(Status),
    /// The client went away (reset the stream, closed the connection): nobody to answer.
    Gone,
}

impl Refusal {
    fn grpc(code: Code, message: impl Into<String>) -> Self {
        Refusal::Grpc(Status::new(code, message))
    }
}

/// The OTLP/gRPC calls of every connection: the intake, the options, and the budget of the
/// bytes of messages being read, decoded and queued (shared with the OTLP/HTTP receiver).
#[derive(Clone, Debug)]
pub(crate) struct Calls {
    intake: IntakeSender,
    options: GrpcOptions,
    in_flight: Arc<IntakeBudget>,
}

impl Calls {
    /// Calls with a budget of their own, of `options.in_flight_bytes`.
    #[cfg(test)]
    pub(crate) fn new(intake: IntakeSender, options: GrpcOptions) -> Self {
        let budget = IntakeBudget::new(options.in_flight_bytes);
        Calls::sharing(intake, options, budget)
    }

    /// Calls that hold their messages in `budget`.
    pub(crate) fn sharing(
        intake: IntakeSender,
        options: GrpcOptions,
        budget: Arc<IntakeBudget>,
    ) -> Self {
        Calls {
            in_flight: budget,
            intake,
            options,
        }
    }

    pub(super) fn options(&self) -> &GrpcOptions {
        &self.options
    }

    pub(super) fn stats(&self) -> &Stats {
        self.intake.stats()
    }

    pub(super) fn stats_handle(&self) -> Arc<Stats> {
        self.intake.stats().clone()
    }

    /// Bytes of unfinished messages held right now (for tests).
    #[cfg(test)]
    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.in_flight.used()
    }

    /// Answer one call. Every refusal is counted and the first one said on stderr.
    pub(super) async fn handle(self, request: Request<Incoming>) -> Response<Reply> {
        match self.call(request).await {
            Ok(response) => response,
            Err(refusal) => self.refuse(refusal),
        }
    }

    async fn call(&self, request: Request<Incoming>) -> Result<Response<Reply>, Refusal> {
        check_content_type(request.headers())?;
        let signal = signal_for(request.uri().path()).ok_or_else(|| {
            Refusal::grpc(
                Code::Unimplemented,
                format!(
                    "unknown method {}: Contrail serves opentelemetry.proto.collector.{{trace,metrics,logs}}.v1 Export",
                    request.uri().path()
                ),
            )
        })?;
        if request.method() != Method::POST {
            return Err(Refusal::grpc(
                Code::Unimplemented,
                "gRPC calls are POST requests",
            ));
        }
        let gzip = gzip_of(request.headers())?;
        let limit = self.options.message_timeout;
        let (compressed, message, mut held) =
            tokio::time::timeout(limit, self.read(request.into_body()))
                .await
                .map_err(|_| {
                    Refusal::grpc(
                        Code::DeadlineExceeded,
                        format!(
                            "the request message did not arrive within {} ms",
                            limit.as_millis()
                        ),
                    )
                })??;
        let message = match (compressed, gzip) {
            (false, _) => message,
            (true, true) => {
                payload::gunzip_held(message, self.options.max_message_bytes, &mut held).map_err(
                    |e| match e {
                        Gunzip::TooLarge => self.too_large("inflates to more than"),
                        Gunzip::Busy => self.busy(),
                        Gunzip::Invalid(e) => Refusal::grpc(
                            Code::InvalidArgument,
                            format!("invalid gzip message: {e}"),
                        ),
                    },
                )?
            }
            (true, false) => {
                return Err(Refusal::grpc(
                    Code::InvalidArgument,
                    "the message is flagged compressed but the call has no grpc-encoding",
                ));
            }
        };
        let decoded = payload::decode_protobuf(signal, &message).map_err(|e| {
            Refusal::grpc(
                Code::InvalidArgument,
                format!("the message is not a valid OTLP {signal:?} export request: {e}"),
            )
        })?;
        let rejected = payload::queue(&self.intake, decoded, held);
        let mut trailers = HeaderMap::new();
        Status::new(Code::Ok, "").write_to(&mut trailers);
        let reply = Reply::new(frame(&payload::response(signal, rejected)), Some(trailers));
        Ok(grpc_response(reply))
    }

    /// Read the call's one message; what it holds stays reserved until the returned
    /// reservation is dropped.
    async fn read(&self, mut body: Incoming) -> Result<(bool, Bytes, Held), Refusal> {
        let mut assembler = Assembler::new(self.options.max_message_bytes);
        let mut held = self.in_flight.hold();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Refusal::Gone)?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers from the client carry nothing for us
            };
            let started = assembler.push(&chunk).map_err(|e| self.malformed(e))?;
            if let Some(prefix) = started
                && !held.grow(prefix.len)
            {
                return Err(self.busy());
            }
        }
        let (compressed, message) = assembler.finish().map_err(|e| self.malformed(e))?;
        Ok((compressed, message, held))
    }

    /// The receivers hold as many bytes as they may: `RESOURCE_EXHAUSTED` with `RetryInfo`,
    /// which OTLP's exporters retry after the delay it gives.
    fn busy(&self) -> Refusal {
        Refusal::Grpc(Status {
            code: Code::ResourceExhausted,
            message: format!(
                "Contrail holds {} bytes of other requests, as many as it may ({MAX_PENDING_BYTES_VAR} = {}); retry shortly",
                self.in_flight.used(),
                self.in_flight.max()
            ),
            retry_after: Some(RETRY_AFTER_BUSY),
        })
    }

    fn malformed(&self, framing: Framing) -> Refusal {
        match framing {
            Framing::TooLarge { len } => self.too_large(&format!("is {len} bytes, more than")),
            Framing::NoMessage => Refusal::grpc(
                Code::Unimplemented,
                "the call carried no request message: Export is unary, one message per call",
            ),
            Framing::SecondMessage => Refusal::grpc(
                Code::Unimplemented,
                "the call carried more than one request message: Export is unary, one message per call",
            ),
            Framing::Truncated { have, want } => Refusal::grpc(
                Code::InvalidArgument,
                format!("the stream ended inside the message ({have} of {want} bytes)"),
            ),
            Framing::BadFlag(flag) => Refusal::grpc(
                Code::InvalidArgument,
                format!("the message's compressed flag is {flag}, not 0 or 1"),
            ),
        }
    }

    /// A message over the cap. `INVALID_ARGUMENT`, not gRPC's usual `RESOURCE_EXHAUSTED`:
    /// the same message can never succeed, and the Python exporter retries
    /// `RESOURCE_EXHAUSTED` for up to its whole timeout (ADR 0011).
    fn too_large(&self, what: &str) -> Refusal {
        Refusal::grpc(
            Code::InvalidArgument,
            format!(
                "the message {what} {} bytes ({MAX_BODY_BYTES_VAR}); export smaller batches",
                self.options.max_message_bytes
            ),
        )
    }

    fn refuse(&self, refusal: Refusal) -> Response<Reply> {
        let (what, response) = match refusal {
            Refusal::Gone => return grpc_response(Reply::empty()),
            Refusal::Http(status, reason) => {
                let mut response =
                    Response::new(Reply::new(Bytes::from(format!("{reason}\n")), None));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                (format!("HTTP {}: {reason}", status.as_u16()), response)
            }
            Refusal::Grpc(status) => {
                let mut response = grpc_response(Reply::empty());
                status.write_to(response.headers_mut());
                (
                    format!("{}: {}", status.code.name(), status.message),
                    response,
                )
            }
        };
        count_refused(self.stats(), format_args!("refused a call ({what})"));
        response
    }
}

/// Count a refusal of the gRPC receiver (a call or a connection); say the first one on stderr.
pub(super) fn count_refused(stats: &Stats, what: std::fmt::Arguments<'_>) {
    static REFUSED: diag::Once = diag::Once::new();
    Stats::add(&stats.grpc_refused, 1);
    REFUSED.warn(format_args!("receiver (OTLP/gRPC): {what}"));
}

/// `:status 200`, `content-type: application/grpc`, the encodings read, and `body`.
fn grpc_response(body: Reply) -> Response<Reply> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRPC));
    headers.insert(
        GRPC_ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPT_ENCODING),
    );
    response
}

fn signal_for(path: &str) -> Option<Signal> {
    match path {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Signal::Traces),
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => Some(Signal::Metrics),
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Signal::Logs),
        _ => None,
    }
}

/// `application/grpc` or `application/grpc+proto`; another gRPC codec is `UNIMPLEMENTED`,
/// anything else is not gRPC (415, as the gRPC specification asks).
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let text = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = text.split(';').next().unwrap_or_default().trim();
    let Some(codec) = media
        .get(..GRPC.len())
        .filter(|p| p.eq_ignore_ascii_case(GRPC))
        .map(|_| &media[GRPC.len()..])
    else {
        return Err(Refusal::Http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {text:?} is not gRPC: this port serves OTLP/gRPC ({GRPC}); OTLP/HTTP goes to the OTLP/HTTP receiver"
            ),
        ));
    };
    if codec.is_empty() || codec.eq_ignore_ascii_case("+proto") {
        Ok(())
    } else {
        Err(Refusal::grpc(
            Code::Unimplemented,
            format!("unsupported gRPC codec {media:?}: use protobuf ({GRPC} or {GRPC}+proto)"),
        ))
    }
}

/// Whether the call's messages may be gzip; any other encoding is `UNIMPLEMENTED`, and the
/// answer's `grpc-accept-encoding` lists what is read (`doc/compression.md`).
fn gzip_of(headers: &HeaderMap) -> Result<bool, Refusal> {
    payload::is_gzip(headers.get(GRPC_ENCODING)).map_err(|text| {
        Refusal::grpc(
            Code::Unimplemented,
            format!("unsupported grpc-encoding {text:?}: use gzip or identity"),
        )
    })
}
