//! The local OTLP/HTTP receiver: where a function's own OpenTelemetry SDK exports.
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
//! in [`Stats`](crate::stats::Stats).

mod config;
mod http;
mod resource;

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::pipeline::IntakeSender;

pub use config::{
    DEFAULT_ENDPOINT, DEFAULT_MAX_BODY_BYTES, ENDPOINT_VAR, MAX_BODY_BYTES_VAR, ReceiverConfig,
};
pub use resource::merge_resource;

/// Serve OTLP/HTTP on `listener` until the process ends.
pub async fn serve(listener: TcpListener, intake: IntakeSender, config: ReceiverConfig) {
    serve_with_shutdown(listener, intake, config, std::future::pending()).await;
}

/// Serve OTLP/HTTP on `listener` until `shutdown` completes.
///
/// On shutdown the receiver stops accepting connections, lets every open connection finish the
/// request it is reading (so data already on the way is queued, not lost), closes idle
/// keep-alive connections, and returns when all of them are done. Bound the wait with a deadline
/// at the call site if the caller cannot wait for a client that stalls mid-request.
pub async fn serve_with_shutdown<F>(
    listener: TcpListener,
    intake: IntakeSender,
    config: ReceiverConfig,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let handler = http::Handler::new(intake, config.max_body_bytes);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small requests and answers on loopback: send each at once.
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(serve_connection(stream, handler, stop));
                }
                // Out of file descriptors or a connection reset before accept: the listener
                // stays usable. Pause briefly so a persistent error does not spin a core.
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

async fn serve_connection(
    stream: tokio::net::TcpStream,
    handler: http::Handler,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler.handle(request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        // A connection error (the client went away mid-request) only ends this connection.
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
