//! The local OTLP/gRPC receiver: where a function's SDK exports when its protocol is `grpc`,
//! the default of the Python distro's `opentelemetry-instrument` and of the .NET exporter.
//!
//! It listens on `127.0.0.1:4317` by default, the SDKs' default gRPC endpoint, and serves the
//! three unary `Export` methods (`opentelemetry.proto.collector.{trace,metrics,logs}.v1`) over
//! HTTP/2 cleartext with prior knowledge, with `identity` and `gzip` message encoding. Each
//! message goes the same way as an OTLP/HTTP body (`payload.rs`): decoded, offered to the
//! intake queue without waiting, answered at once. ADR 0011 records why it is built on
//! hyper's HTTP/2 server rather than tonic, and the choice of each status.
//!
//! Answers, a status in trailers (Trailers-Only for a refusal):
//!
//! | case | answer |
//! |---|---|
//! | decoded and queued | `OK`, empty `Export*ServiceResponse` |
//! | decoded, intake queue full | `OK` with `partial_success` naming the rejected records (counted as `intake_full` drops), as the OTLP/HTTP receiver does |
//! | message over `CONTRAIL_RECEIVER_MAX_BODY_BYTES`, declared or inflated | `INVALID_ARGUMENT` (never retried) |
//! | message does not decode, bad gzip, truncated, a bad compressed flag | `INVALID_ARGUMENT` |
//! | the unfinished messages of all calls already hold [`GrpcOptions::in_flight_bytes`] | `RESOURCE_EXHAUSTED` with `RetryInfo` (50 ms) |
//! | the message did not arrive within [`GrpcOptions::message_timeout`] | `DEADLINE_EXCEEDED` |
//! | no message or more than one, another method or service, not POST, an encoding other than `identity`/`gzip`, a codec other than protobuf | `UNIMPLEMENTED` |
//! | a content type other than `application/grpc` | HTTP 415, plain text |
//!
//! And per connection, before any HTTP/2:
//!
//! | the client sends | answer |
//! |---|---|
//! | HTTP/1.x (an OTLP/HTTP exporter pointed here) | `HTTP/1.1 505` with a reason naming the OTLP/HTTP port, then close |
//! | a TLS ClientHello (`https://` endpoint) | a TLS `handshake_failure` alert, then close |
//! | nothing within [`GrpcOptions::greeting_timeout`] | close |
//!
//! Every refusal is counted in `contrail.receiver.refused{transport=grpc}`; the first one is
//! said on stderr. Memory stays bounded whatever a client does: at most
//! [`MAX_CONCURRENT_STREAMS`] streams per connection (HTTP/2 refuses the rest), at most
//! [`WINDOW`] bytes buffered unread per connection (flow control), at most
//! [`GrpcOptions::in_flight_bytes`] of unfinished messages across all calls, and every message
//! complete within its timeout. The receiver feeds the intake queue through the same producer
//! as the OTLP/HTTP receiver, which leaves half of it to the Telemetry API.

mod call;
mod greeting;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) use self::call::Calls;
use self::call::count_refused;
use self::greeting::{Greeting, PREFACE, TLS_ALERT, classify, http1_refusal};
use super::ReceiverConfig;
use crate::diag;
use crate::pipeline::IntakeSender;

/// Streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`); gRPC
/// clients queue calls beyond it, and HTTP/2 refuses streams a client opens regardless.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 32;
/// The HTTP/2 flow-control windows, per stream and per connection: what a client may send
/// before the receiver has read it.
pub(crate) const WINDOW: u32 = 1024 * 1024;
/// Request headers accepted per call (`SETTINGS_MAX_HEADER_LIST_SIZE`).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// After refusing a connection, how much of what the client sent is read and discarded, and
/// for how long, so that closing does not reset the connection before the answer is read.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The receiver's bounds and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrpcOptions {
    /// The largest message, compressed or inflated (`CONTRAIL_RECEIVER_MAX_BODY_BYTES`).
    pub(crate) max_message_bytes: usize,
    /// The bytes the unfinished messages of all calls may hold together: twice the largest
    /// message, so one message of any allowed size always fits beside another.
    pub(crate) in_flight_bytes: usize,
    /// How long a call may take to deliver its message once its headers have arrived.
    pub(crate) message_timeout: Duration,
    /// How long a new connection may take to send its first bytes.
    pub(crate) greeting_timeout: Duration,
    /// The OTLP/HTTP receiver's port, named to a client that speaks HTTP/1.1 here.
    pub(crate) http_port: Option<u16>,
}

impl GrpcOptions {
    /// The options of the receiver configured by `config`.
    pub(crate) fn of(config: &ReceiverConfig) -> Self {
        GrpcOptions {
            max_message_bytes: config.max_body_bytes,
            in_flight_bytes: config.max_body_bytes.saturating_mul(2),
            // The SDKs' default export timeout: a client that has not sent its message by
            // then has given up.
            message_timeout: Duration::from_secs(10),
            greeting_timeout: Duration::from_secs(10),
            http_port: config.endpoint.map(|e| e.port()),
        }
    }
}

/// Serve OTLP/gRPC on `listener` until the process ends.
pub(crate) async fn serve(listener: TcpListener, intake: IntakeSender, options: GrpcOptions) {
    serve_with_shutdown(listener, intake, options, std::future::pending()).await;
}

/// Serve OTLP/gRPC on `listener` until `shutdown` completes; then stop accepting, send every
/// connection a GOAWAY, let the calls in progress finish, and return when all connections
/// have closed. Bound the wait at the call site.
pub(crate) async fn serve_with_shutdown<F>(
    listener: TcpListener,
    intake: IntakeSender,
    options: GrpcOptions,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    serve_calls(listener, Calls::new(intake, options), shutdown).await;
}

/// [`serve_with_shutdown`] with the calls made beforehand.
pub(crate) async fn serve_calls<F>(listener: TcpListener, calls: Calls, shutdown: F)
where
    F: Future<Output = ()>,
{
    let connect = move |stream, stop| connection(stream, calls.clone(), stop);
    crate::intake::server::accept(listener, connect, shutdown).await;
}

/// One connection: look at its first bytes, then serve HTTP/2 or refuse it.
async fn connection(stream: TcpStream, calls: Calls, mut stop: watch::Receiver<bool>) {
    let timeout = calls.options().greeting_timeout;
    let mut first = [0u8; PREFACE.len()];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(timeout, stream.peek(&mut first)) => peeked,
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    let n = match peeked {
        // Closed without a word, or already broken: nothing to answer.
        Ok(Ok(0) | Err(_)) => return,
        Ok(Ok(n)) => n,
        Err(_) => {
            count_refused(
                calls.stats(),
                format_args!(
                    "closed a connection that sent nothing within {} s",
                    timeout.as_secs()
                ),
            );
            return;
        }
    };
    match classify(&first[..n]) {
        Greeting::Http2 => serve_http2(stream, calls, stop).await,
        Greeting::Tls => {
            count_refused(
                calls.stats(),
                format_args!(
                    "refused a TLS connection: the receiver is plaintext on loopback; export to an http:// endpoint (insecure)"
                ),
            );
            refuse(stream, &TLS_ALERT).await;
        }
        Greeting::Other => {
            count_refused(
                calls.stats(),
                format_args!(
                    "refused a connection that is not HTTP/2 (an OTLP/HTTP exporter pointed at the gRPC port?)"
                ),
            );
            refuse(stream, &http1_refusal(calls.options().http_port)).await;
        }
    }
}

async fn serve_http2(stream: TcpStream, calls: Calls, mut stop: watch::Receiver<bool>) {
    let stats = calls.stats_handle();
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        // No keep-alive pings: they would wake Contrail while the function is idle.
        .keep_alive_interval(None)
        .auto_date_header(false);
    let service = service_fn(move |request| {
        let calls = calls.clone();
        async move { Ok::<_, Infallible>(calls.handle(request).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let stopped = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = stop.wait_for(|stopped| *stopped) => None,
    };
    let ended = match stopped {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // A client gone only ends its connection; a protocol error HTTP/2 answered with GOAWAY
    // (a malformed frame, a flood of resets) is a refusal.
    if let Err(err) = ended {
        match protocol_error(&err) {
            Some(reason) => count_refused(
                &stats,
                format_args!("closed a connection after an HTTP/2 protocol error ({reason})"),
            ),
            None => diag::debug!("receiver (OTLP/gRPC): a connection ended: {err}"),
        }
    }
}

/// The reason of the GOAWAY HTTP/2 sent when it found the client breaking the protocol.
fn protocol_error(err: &hyper::Error) -> Option<h2::Reason> {
    let h2 = std::error::Error::source(err)?.downcast_ref::<h2::Error>()?;
    if h2.is_go_away() && h2.is_library() {
        h2.reason()
    } else {
        None
    }
}

/// Send `answer`, close the sending side, and read what the client still sends for a moment:
/// closing with unread data would reset the connection and could destroy the answer.
async fn refuse(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The message of a call whose DATA frames are `chunks`, read as [`Calls`] reads it: framed,
/// inflated within `max` bytes when flagged compressed, decoded. For the fuzz target
/// `receiver_body` (`crate::fuzzing`); `Err` says why the call would be refused.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_message<'a>(
    signal: crate::pipeline::Signal,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max: usize,
) -> Result<crate::pipeline::OtlpPayload, String> {
    use super::payload::{self, Gunzip};

    let mut assembler = wire::Assembler::new(max);
    for chunk in chunks {
        if let Some(prefix) = assembler.push(chunk).map_err(|e| format!("{e:?}"))? {
            assert!(
                prefix.len <= max,
                "a declared length past the cap was taken"
            );
        }
    }
    let (compressed, message) = assembler.finish().map_err(|e| format!("{e:?}"))?;
    assert!(message.len() <= max, "a message past the cap was assembled");
    let message = if compressed {
        match payload::gunzip(&message, max) {
            Ok(inflated) => {
                assert!(inflated.len() <= max, "inflated past the cap");
                inflated
            }
            Err(Gunzip::TooLarge) => return Err("inflates past the cap".to_owned()),
            Err(Gunzip::Invalid(e)) => return Err(format!("invalid gzip message: {e}")),
        }
    } else {
        message
    };
    payload::decode_protobuf(signal, &message).map_err(|e| e.to_string())
}
