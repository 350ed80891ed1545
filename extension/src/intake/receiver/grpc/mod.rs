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
//! | the receivers already hold [`GrpcOptions::in_flight_bytes`] of messages being read, decoded or queued (`CONTRAIL_RECEIVER_MAX_PENDING_BYTES`, shared with OTLP/HTTP) | `RESOURCE_EXHAUSTED` with `RetryInfo` (50 ms) |
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
//! | a connection beyond [`GrpcOptions::max_connections`] | close at once (the client's call fails `UNAVAILABLE`, which OTLP retries) |
//!
//! And a connection without a call in progress for [`GrpcOptions::idle_timeout`] (a kept-alive
//! one, or one that sends its preface or a call's headers a byte at a time) is sent a GOAWAY
//! and closed: gRPC clients reconnect for their next call.
//!
//! Every refusal is counted in `contrail.receiver.refused{transport=grpc}`; the first one is
//! said on stderr. Memory stays bounded whatever a client does: at most
//! [`MAX_CONCURRENT_STREAMS`] streams per connection (HTTP/2 refuses the rest), at most
//! [`WINDOW`] bytes buffered unread per connection (flow control), at most
//! [`GrpcOptions::in_flight_bytes`] of messages across all calls, until the worker has mapped
//! them (ADR 0015), every message complete within its timeout, and at most
//! [`GrpcOptions::max_connections`] connections. The receiver feeds the intake queue through the same producer
//! as the OTLP/HTTP receiver, which leaves half of it to the Telemetry API.

mod call;
mod greeting;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use self::call::Calls;
use self::call::count_refused;
use self::greeting::{Greeting, PREFACE, TLS_ALERT, classify, http1_refusal};
use super::ReceiverConfig;
use super::config::{BODY_TIMEOUT, MAX_CONNECTIONS_VAR};
use crate::diag;
use crate::intake::server::{Connections, answer_and_close};
use crate::pipeline::{IntakeBudget, IntakeSender};

/// Streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`); gRPC
/// clients queue calls beyond it, and HTTP/2 refuses streams a client opens regardless.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 32;
/// The HTTP/2 flow-control windows, per stream and per connection: what a client may send
/// before the receiver has read it.
pub(crate) const WINDOW: u32 = 1024 * 1024;
/// Request headers accepted per call (`SETTINGS_MAX_HEADER_LIST_SIZE`).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// How long a connection told to go away may take to finish: a client that never reads the
/// GOAWAY does not hold it longer.
const GOAWAY_TIME: Duration = Duration::from_secs(1);

/// The receiver's bounds and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrpcOptions {
    /// The largest message, compressed or inflated (`CONTRAIL_RECEIVER_MAX_BODY_BYTES`).
    pub(crate) max_message_bytes: usize,
    /// The bytes the messages of all calls may hold together while they are read, decoded
    /// and queued (`CONTRAIL_RECEIVER_MAX_PENDING_BYTES`), when the calls have a budget of
    /// their own ([`Calls::new`]); the process shares one with OTLP/HTTP.
    pub(crate) in_flight_bytes: usize,
    /// How long a call may take to deliver its message once its headers have arrived.
    pub(crate) message_timeout: Duration,
    /// How long a new connection may take to send its first bytes.
    pub(crate) greeting_timeout: Duration,
    /// How long a connection may stay without a call in progress.
    pub(crate) idle_timeout: Duration,
    /// Connections open at once (`CONTRAIL_RECEIVER_MAX_CONNECTIONS`).
    pub(crate) max_connections: usize,
    /// The OTLP/HTTP receiver's port, named to a client that speaks HTTP/1.1 here.
    pub(crate) http_port: Option<u16>,
}

impl GrpcOptions {
    /// The options of the receiver configured by `config`.
    pub(crate) fn of(config: &ReceiverConfig) -> Self {
        GrpcOptions {
            max_message_bytes: config.max_body_bytes,
            in_flight_bytes: config.max_pending_bytes,
            message_timeout: BODY_TIMEOUT,
            greeting_timeout: config.idle_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
            http_port: config.endpoint.map(|e| e.port()),
        }
    }
}

/// Serve OTLP/gRPC on `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    intake: IntakeSender,
    options: GrpcOptions,
    budget: Arc<IntakeBudget>,
) {
    let calls = Calls::sharing(intake, options, budget);
    serve_calls(listener, calls, std::future::pending()).await;
}

/// Serve OTLP/gRPC on `listener` with `calls` until `shutdown` completes; then stop accepting,
/// send every connection a GOAWAY, let the calls in progress finish, and return when all
/// connections have closed. Bound the wait at the call site.
pub(crate) async fn serve_calls<F>(listener: TcpListener, calls: Calls, shutdown: F)
where
    F: Future<Output = ()>,
{
    let connections = Connections::new(calls.options().max_connections);
    let connect = move |stream, stop| {
        let slot = connections.open();
        if slot.is_none() {
            count_refused(
                calls.stats(),
                format_args!(
                    "closed a connection: {} are open, as many as the receiver keeps ({MAX_CONNECTIONS_VAR})",
                    connections.max()
                ),
            );
        }
        let calls = calls.clone();
        async move {
            if let Some(_slot) = slot {
                connection(stream, calls, stop).await;
            }
        }
    };
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
            answer_and_close(stream, &TLS_ALERT).await;
        }
        Greeting::Other => {
            count_refused(
                calls.stats(),
                format_args!(
                    "refused a connection that is not HTTP/2 (an OTLP/HTTP exporter pointed at the gRPC port?)"
                ),
            );
            answer_and_close(stream, &http1_refusal(calls.options().http_port)).await;
        }
    }
}

async fn serve_http2(stream: TcpStream, calls: Calls, mut stop: watch::Receiver<bool>) {
    let stats = calls.stats_handle();
    let idle_timeout = calls.options().idle_timeout;
    let activity = Arc::new(Mutex::new(Activity {
        calls: 0,
        since: Instant::now(),
    }));
    let watched = activity.clone();
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
        let call = InCall::start(&watched);
        async move {
            let answer = calls.handle(request).await;
            drop(call);
            Ok::<_, Infallible>(answer)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut idle_check = Instant::now() + idle_timeout;
    let stopped = loop {
        tokio::select! {
            ended = connection.as_mut() => break Some(ended),
            _ = stop.wait_for(|stopped| *stopped) => break None,
            () = tokio::time::sleep_until(idle_check) => {
                match idle_until(&activity, idle_timeout) {
                    // Idle for the whole time: tell the client to go away.
                    None => {
                        diag::debug!("receiver (OTLP/gRPC): closing a connection idle for {} ms", idle_timeout.as_millis());
                        break None;
                    }
                    Some(next) => idle_check = next,
                }
            }
        }
    };
    let ended = match stopped {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(GOAWAY_TIME, connection).await {
                Ok(ended) => ended,
                Err(_) => return,
            }
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

/// The calls in progress on one connection, and since when it has had none.
#[derive(Debug)]
struct Activity {
    calls: usize,
    since: Instant,
}

/// One call in progress, counted in its connection's [`Activity`] until dropped.
struct InCall(Arc<Mutex<Activity>>);

impl InCall {
    fn start(activity: &Arc<Mutex<Activity>>) -> Self {
        if let Ok(mut a) = activity.lock() {
            a.calls += 1;
        }
        InCall(activity.clone())
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        if let Ok(mut a) = self.0.lock() {
            a.calls -= 1;
            a.since = Instant::now();
        }
    }
}

/// `None` if the connection has had no call for `idle_timeout`; else when to look again (a
/// connection with calls in progress is looked at once per `idle_timeout`, not more).
fn idle_until(activity: &Mutex<Activity>, idle_timeout: Duration) -> Option<Instant> {
    let now = Instant::now();
    let Ok(a) = activity.lock() else {
        return Some(now + idle_timeout);
    };
    if a.calls > 0 {
        Some(now + idle_timeout)
    } else if now >= a.since + idle_timeout {
        None
    } else {
        Some(a.since + idle_timeout)
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
    use crate::pipeline::IntakeBudget;

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
        match payload::gunzip_held(message, max, &mut IntakeBudget::new(max).hold()) {
            Ok(inflated) => {
                assert!(inflated.len() <= max, "inflated past the cap");
                inflated
            }
            Err(Gunzip::TooLarge | Gunzip::Busy) => return Err("inflates past the cap".to_owned()),
            Err(Gunzip::Invalid(e)) => return Err(format!("invalid gzip message: {e}")),
        }
    } else {
        message
    };
    payload::decode_protobuf(signal, &message).map_err(|e| e.to_string())
}
