//! The HTTP destination of the Telemetry API subscription.
//!
//! Lambda POSTs a JSON array of records; a 4xx or 5xx makes it send the same batch again, so
//! every POST is answered `200` as soon as its body is decoded, whatever it held: malformed
//! records, a body over the cap, or an intake queue that is full are counted in [`Stats`] and
//! the batch is acknowledged. The listener never exports, never waits on the processing task,
//! and never logs per record (Contrail's own output comes back to it as `extension` records).
//!
//! | case | status | counted as |
//! |---|---|---|
//! | POST, any path | 200 | `telemetry_records` (all received), `unknown_records`, malformed → dropped `malformed`, queue full → dropped `intake_full` |
//! | POST body over `max_body_bytes` | 200 | one dropped `malformed` (its records cannot be counted) |
//! | other method | 405 | nothing |

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::event::decode_batch;
use crate::pipeline::{Intake, IntakeSender};
use crate::stats::{DropReason, Stats};

/// Lambda sends at most about twice the subscription's `buffering.maxBytes` (at most 1 MiB) in
/// one POST; this leaves room above that.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Serve the Telemetry API destination on `listener` until the process ends.
pub async fn serve(listener: TcpListener, intake: IntakeSender, max_body_bytes: usize) {
    serve_with_shutdown(listener, intake, max_body_bytes, std::future::pending()).await;
}

/// Serve until `shutdown` completes; then stop accepting, let each open connection finish the
/// request it is reading (so a batch already on the way is queued), close idle connections,
/// and return when all are done. Bound the wait at the call site if needed.
pub async fn serve_with_shutdown<F>(
    listener: TcpListener,
    intake: IntakeSender,
    max_body_bytes: usize,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let handler = Arc::new(Handler {
        intake,
        max_body_bytes,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, Arc::clone(&handler), stop_rx.clone()));
                }
                // A transient accept error (descriptors exhausted, reset before accept): the
                // listener stays usable; pause so a persistent one does not spin a core.
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

async fn serve_connection(
    stream: TcpStream,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

struct Handler {
    intake: IntakeSender,
    max_body_bytes: usize,
}

impl Handler {
    async fn handle(&self, request: Request<Incoming>) -> Response<Empty<Bytes>> {
        if request.method() != Method::POST {
            return respond(StatusCode::METHOD_NOT_ALLOWED);
        }
        let stats: &Stats = self.intake.stats();
        let body = match Limited::new(request.into_body(), self.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                // Too large, or the connection broke mid-body: nothing of it can be used, and
                // a retry of the same batch would fail the same way.
                Stats::add(&stats.telemetry_records, 1);
                stats.dropped(DropReason::Malformed, 1);
                return respond(StatusCode::OK);
            }
        };
        accept_body(&body, &self.intake);
        respond(StatusCode::OK)
    }
}

/// Decode one POST body, count it, and offer its records to the intake queue.
pub fn accept_body(body: &[u8], intake: &IntakeSender) {
    let batch = decode_batch(body);
    let stats = intake.stats();
    Stats::add(
        &stats.telemetry_records,
        batch.records.len() as u64 + batch.malformed,
    );
    Stats::add(&stats.unknown_records, batch.unknown);
    if batch.malformed > 0 {
        stats.dropped(DropReason::Malformed, batch.malformed);
    }
    if !batch.records.is_empty() {
        // A full queue counts the records as `intake_full` drops inside `offer`.
        let _ = intake.offer(Intake::Telemetry(batch.records));
    }
}

fn respond(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}
