//! The local OTLP/HTTP receiver: where a function's own OpenTelemetry SDK exports. Its OTLP/gRPC
//! sibling on port 4317 is [`grpc`]; both hand their requests' bytes to `payload.rs`.
//!
//! It listens on `127.0.0.1:4318` by default, the SDKs' default endpoint, so a function needs
//! no configuration. Each request is decoded (protobuf or JSON, optionally gzip), offered to the
//! intake queue without waiting, and answered at once with an empty `Export*ServiceResponse` in
//! the request's encoding: an export costs the function the time of one loopback round trip.
//!
//! Answers:
//!
//! | case | status |
//! |---|---|
//! | decoded and queued | 200, empty response |
//! | decoded, intake queue full | 200 with `partial_success` naming the rejected records (counted as `intake_full` drops) |
//! | body does not decode, bad gzip | 400 with a `google.rpc.Status` reason |
//! | body over the cap | 413 |
//! | the receivers already hold `CONTRAIL_RECEIVER_MAX_PENDING_BYTES` of requests (read, decoded, queued) | 503 with `Retry-After: 1` |
//! | the body did not arrive within 10 s of the headers | 408 |
//! | a connection beyond `CONTRAIL_RECEIVER_MAX_CONNECTIONS` | 503 with `Retry-After: 1`, then close |
//! | no complete request headers within `CONTRAIL_RECEIVER_IDLE_TIMEOUT_MS` (a silent connection, a kept-alive one, headers sent a byte at a time) | close |
//! | content type other than protobuf/JSON, or an encoding other than gzip | 415 |
//! | another path | 404 |
//! | a method other than POST | 405 |
//!
//! A full queue is answered with success on purpose: a 503 makes the SDK retry with backoff,
//! and an SDK that exports synchronously (a simple span processor, a `force_flush` at the end of
//! the handler) makes the function wait for those retries, while the queue is full because
//! Contrail is behind and would most likely refuse the retry too. `partial_success` is OTLP's way
//! to tell the sender that records were rejected without asking it to retry; the loss is counted
//! in [`Stats`](crate::diag::Stats).
//!
//! Memory is bounded in bytes, not only in requests (ADR 0015): every request takes its bytes
//! from one [`IntakeBudget`] shared with the gRPC receiver before it reads them, and holds
//! them until the worker has mapped what it carried. A 503 is OTLP's answer for a server that
//! is overloaded: the SDK retries after `Retry-After`. It is sent only when that many bytes are
//! really in memory, which a healthy function's SDK never comes near.

pub(crate) mod config;
pub(crate) mod grpc;
mod handler;
mod payload;
mod resource;

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::intake::server::{self, Limits};
use crate::pipeline::{IntakeBudget, IntakeSender};

pub(crate) use config::{ENDPOINT_VAR, GRPC_ENDPOINT_VAR, ReceiverConfig};
#[cfg(feature = "fuzzing")]
pub(crate) use handler::decode_body;
pub use resource::merge_resource;

/// Serve OTLP/HTTP on `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    intake: IntakeSender,
    config: ReceiverConfig,
    budget: Arc<IntakeBudget>,
) {
    serve_with_shutdown(listener, intake, config, budget, std::future::pending()).await;
}

/// Serve OTLP/HTTP on `listener` until `shutdown` completes.
///
/// On shutdown the receiver stops accepting connections, lets every open connection finish the
/// request it is reading (so data already on the way is queued, not lost), closes idle
/// keep-alive connections, and returns when all of them are done. Bound the wait with a deadline
/// at the call site if the caller cannot wait for a client that stalls mid-request.
pub(crate) async fn serve_with_shutdown<F>(
    listener: TcpListener,
    intake: IntakeSender,
    config: ReceiverConfig,
    budget: Arc<IntakeBudget>,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let handler = handler::Handler::new(intake, config.max_body_bytes, budget);
    let refusing = handler.clone();
    let handle = move |request| {
        let handler = handler.clone();
        async move { handler.handle(request).await }
    };
    let limits = Limits {
        max_connections: config.max_connections,
        idle_timeout: config.idle_timeout,
    };
    let max = config.max_connections;
    let refuse = move |stream: TcpStream, answer: bool| {
        refusing.count_refusal(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{max} connections are open, as many as the receiver keeps ({})",
                config::MAX_CONNECTIONS_VAR
            ),
        );
        async move {
            if answer {
                server::answer_and_close(stream, &handler::too_many_connections(max)).await;
            }
        }
    };
    server::serve_limited(listener, handle, limits, refuse, shutdown).await;
}

#[cfg(test)]
mod tests;
