//! The HTTP destination of the Telemetry API subscription.
//!
//! Lambda POSTs a JSON array of records; a 4xx or 5xx makes it send the same batch again, so
//! every POST is answered `200` as soon as its body is decoded, whatever it held: malformed
//! records, a body over the cap, or an intake queue that is full are counted in [`Stats`] and
//! the batch is acknowledged. The listener never exports, never waits on the worker,
//! and never logs per record (Contrail's own output comes back to it as `extension` records).
//! It counts deliveries ([`Deliveries`]) so that the lifecycle can tell, at `SHUTDOWN`, when
//! the stream has gone quiet.
//!
//! | case | status | counted as |
//! |---|---|---|
//! | POST, any path | 200 | `telemetry_records` (all received), `unknown_records`, malformed → dropped `malformed`, queue full → dropped `intake_full`, fields given up → `fields_dropped` by reason |
//! | POST body over `max_body_bytes` | 200 | one dropped `malformed` (its records cannot be counted) |
//! | other method | 405 | nothing |

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::decode::decode_batch;
use super::event::Event;
use crate::diag::{DropReason, FieldReason, Stats};
use crate::pipeline::{Intake, IntakeSender};

/// Lambda sends at most about twice the subscription's `buffering.maxBytes` (at most 1 MiB) in
/// one POST; this leaves room above that.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Counts the Telemetry API's deliveries: once when a POST arrives and once when its records
/// are queued. The lifecycle watches the count at `SHUTDOWN` to tell when the stream is quiet.
/// It also publishes the request id of the last `platform.runtimeDone` it received, as soon
/// as its batch is queued (before the worker maps it): the lifecycle stops a flush that
/// overlaps the function's work when the runtime is done.
#[derive(Debug, Clone)]
pub(crate) struct Deliveries(Arc<watch::Sender<u64>>, Arc<watch::Sender<String>>);

impl Deliveries {
    /// A counter, and the receiver that sees it move.
    pub(crate) fn new() -> (Deliveries, watch::Receiver<u64>) {
        let (tx, rx) = watch::channel(0);
        let (done, _) = watch::channel(String::new());
        (Deliveries(Arc::new(tx), Arc::new(done)), rx)
    }

    /// The request id of the last `platform.runtimeDone` received.
    pub(crate) fn runtime_done(&self) -> watch::Receiver<String> {
        self.1.subscribe()
    }

    fn touch(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Serve the Telemetry API destination on `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    intake: IntakeSender,
    deliveries: Deliveries,
    max_body_bytes: usize,
) {
    serve_with_shutdown(
        listener,
        intake,
        deliveries,
        max_body_bytes,
        std::future::pending(),
    )
    .await;
}

/// Serve until `shutdown` completes; then stop accepting, let each open connection finish the
/// request it is reading (so a batch already on the way is queued), close idle connections,
/// and return when all are done. Bound the wait at the call site if needed.
pub(crate) async fn serve_with_shutdown<F>(
    listener: TcpListener,
    intake: IntakeSender,
    deliveries: Deliveries,
    max_body_bytes: usize,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let handler = Arc::new(Handler {
        intake,
        deliveries,
        max_body_bytes,
    });
    let handle = move |request| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(request).await }
    };
    crate::intake::server::serve(listener, handle, shutdown).await;
}

struct Handler {
    intake: IntakeSender,
    deliveries: Deliveries,
    max_body_bytes: usize,
}

impl Handler {
    async fn handle(&self, request: Request<Incoming>) -> Response<Empty<Bytes>> {
        if request.method() != Method::POST {
            return respond(StatusCode::METHOD_NOT_ALLOWED);
        }
        self.deliveries.touch();
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
        if let Some(id) = accept_body(&body, &self.intake) {
            self.deliveries.1.send_replace(id);
        }
        self.deliveries.touch();
        respond(StatusCode::OK)
    }
}

/// Decode one POST body, count it, and offer its records to the intake queue. Returns the
/// request id of the last `platform.runtimeDone` among them.
pub(crate) fn accept_body(body: &[u8], intake: &IntakeSender) -> Option<String> {
    let received = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let batch = decode_batch(body, received);
    let stats = intake.stats();
    let fields = batch.fields_dropped;
    for (reason, n) in [
        (FieldReason::InvalidTime, fields.invalid_time),
        (FieldReason::InvalidValue, fields.invalid_value),
        (FieldReason::Missing, fields.missing),
    ] {
        if n > 0 {
            stats.fields_dropped(reason, n);
        }
    }
    Stats::add(
        &stats.telemetry_records,
        batch.records.len() as u64 + batch.malformed,
    );
    Stats::add(&stats.unknown_records, batch.unknown);
    if batch.malformed > 0 {
        stats.dropped(DropReason::Malformed, batch.malformed);
    }
    let runtime_done = batch.records.iter().rev().find_map(|r| match &r.event {
        Event::RuntimeDone(rd) => Some(rd.request_id.clone()),
        _ => None,
    });
    if !batch.records.is_empty() {
        // A full queue counts the records as `intake_full` drops inside `offer`.
        let _ = intake.offer(Intake::Telemetry(batch.records));
    }
    runtime_done
}

fn respond(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}
