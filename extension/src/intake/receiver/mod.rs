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

pub(crate) mod config;
pub(crate) mod grpc;
mod handler;
mod payload;
mod resource;

use std::future::Future;

use tokio::net::TcpListener;

use crate::pipeline::IntakeSender;

pub(crate) use config::{ENDPOINT_VAR, GRPC_ENDPOINT_VAR, ReceiverConfig};
#[cfg(feature = "fuzzing")]
pub(crate) use handler::decode_body;
pub use resource::merge_resource;

/// Serve OTLP/HTTP on `listener` until the process ends.
pub(crate) async fn serve(listener: TcpListener, intake: IntakeSender, config: ReceiverConfig) {
    serve_with_shutdown(listener, intake, config, std::future::pending()).await;
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
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let handler = handler::Handler::new(intake, config.max_body_bytes);
    let handle = move |request| {
        let handler = handler.clone();
        async move { handler.handle(request).await }
    };
    crate::intake::server::serve(listener, handle, shutdown).await;
}

#[cfg(test)]
mod tests;
