//! One subscriber's queue: batching, the freeze, retries and `platform.logsDropped`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::transport::{post, send_tcp};
use super::{Counters, Destination, Event, Stream, Subscription, render_for_schema, wants};

pub(super) struct Queued {
    bytes: Vec<u8>,
    is_log: bool,
}

pub(super) struct Delivery {
    pub(super) name: String,
    pub(super) sub: Subscription,
    pub(super) rx: mpsc::UnboundedReceiver<Arc<Event>>,
    pub(super) frozen: watch::Receiver<bool>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) counters: Arc<Counters>,
    pub(super) queue_limit: usize,
    pub(super) client: Client<HttpConnector, Full<Bytes>>,
    pub(super) queue: VecDeque<(Instant, Queued)>,
    pub(super) queued_bytes: usize,
    /// Records and bytes dropped since the last `platform.logsDropped`.
    pub(super) pending_drop: (u64, u64),
}

/// A reason the platform gives in `platform.logsDropped`.
pub(super) const LOGS_DROPPED_REASON: &str =
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.";

const RETRY_BASE: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(1_000);

impl Delivery {
    fn enqueue(&mut self, event: &Event) {
        let value = render_for_schema(event, self.sub.schema);
        let bytes = match serde_json::to_vec(&value) {
            Ok(b) => b,
            Err(_) => return,
        };
        self.queued_bytes += bytes.len();
        let is_log = event.stream() != Stream::Platform;
        self.queue
            .push_back((Instant::now(), Queued { bytes, is_log }));
        while self.queue.len() > self.queue_limit {
            let idx = self.queue.iter().position(|(_, q)| q.is_log).unwrap_or(0);
            if let Some((_, dropped)) = self.queue.remove(idx) {
                self.queued_bytes -= dropped.bytes.len();
                self.pending_drop.0 += 1;
                self.pending_drop.1 += dropped.bytes.len() as u64;
                self.counters
                    .records_dropped
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_dropped
                    .fetch_add(dropped.bytes.len() as u64, Ordering::Relaxed);
            }
        }
    }

    fn drain_channel(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.enqueue(&e);
        }
    }

    fn batch_ready(&self, now: Instant) -> bool {
        let Some((first, _)) = self.queue.front() else {
            return false;
        };
        self.queue.len() >= self.sub.buffering.max_items
            || self.queued_bytes >= self.sub.buffering.max_bytes
            || now >= *first + Duration::from_millis(self.sub.buffering.timeout_ms)
            || self.pending_drop.0 > 0
    }

    fn take_batch(&mut self) -> Vec<Vec<u8>> {
        let mut batch = Vec::new();
        let mut size = 0usize;
        if self.pending_drop.0 > 0 && wants(&self.sub.types, Stream::Platform) {
            let e = Event::platform(
                OffsetDateTime::now_utc(),
                "platform.logsDropped",
                json!({
                    "reason": LOGS_DROPPED_REASON,
                    "droppedRecords": self.pending_drop.0,
                    "droppedBytes": self.pending_drop.1,
                }),
            );
            if let Ok(b) = serde_json::to_vec(&render_for_schema(&e, self.sub.schema)) {
                size += b.len();
                batch.push(b);
            }
        }
        self.pending_drop = (0, 0);
        while let Some((_, q)) = self.queue.front() {
            if !batch.is_empty()
                && (batch.len() >= self.sub.buffering.max_items
                    || size + q.bytes.len() > self.sub.buffering.max_bytes)
            {
                break;
            }
            size += q.bytes.len();
            if let Some((_, q)) = self.queue.pop_front() {
                self.queued_bytes -= q.bytes.len();
                batch.push(q.bytes);
            }
        }
        batch
    }

    pub(super) async fn run(mut self) {
        let mut tcp: Option<tokio::net::TcpStream> = None;
        loop {
            if *self.stop.borrow() {
                break;
            }
            self.drain_channel();
            let now = Instant::now();
            if !self.batch_ready(now) {
                let wake = self
                    .queue
                    .front()
                    .map(|(t, _)| *t + Duration::from_millis(self.sub.buffering.timeout_ms));
                tokio::select! {
                    e = self.rx.recv() => match e {
                        Some(e) => self.enqueue(&e),
                        None => {
                            if self.queue.is_empty() { break; }
                            if let Some(w) = wake { tokio::time::sleep_until(w).await; }
                        }
                    },
                    _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            }
            if !self.wait_thawed().await {
                break;
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            let mut body = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
            let mut attempt = 0u32;
            loop {
                let destination = self.sub.destination.clone();
                let ok = match &destination {
                    Destination::Http {
                        host, addr, path, ..
                    } => {
                        if body.is_empty() {
                            body.push(b'[');
                            for (i, b) in batch.iter().enumerate() {
                                if i > 0 {
                                    body.push(b',');
                                }
                                body.extend_from_slice(b);
                            }
                            body.push(b']');
                        }
                        let client = self.client.clone();
                        let fut = post(client, *addr, host, path, body.clone());
                        self.while_receiving(fut).await
                    }
                    Destination::Tcp { addr } => {
                        if body.is_empty() {
                            for b in &batch {
                                body.extend_from_slice(b);
                                body.push(b'\n');
                            }
                        }
                        let fut = send_tcp(&mut tcp, *addr, &body);
                        let r = tokio::select! {
                            r = fut => Some(r),
                            _ = self.stop.changed() => None,
                        };
                        r.unwrap_or_default()
                    }
                };
                if ok {
                    self.counters
                        .records_delivered
                        .fetch_add(n, Ordering::Relaxed);
                    self.counters
                        .batches_delivered
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if *self.stop.borrow() {
                    self.counters
                        .records_undelivered
                        .fetch_add(n, Ordering::Relaxed);
                    break;
                }
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = RETRY_BASE
                    .saturating_mul(2u32.saturating_pow(attempt.min(10)))
                    .min(RETRY_MAX);
                attempt += 1;
                let sleep = tokio::time::sleep(backoff);
                self.while_receiving(async {
                    sleep.await;
                    true
                })
                .await;
                if !self.wait_thawed().await {
                    self.counters
                        .records_undelivered
                        .fetch_add(n, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.drain_channel();
        let left = self.queue.len() as u64;
        if left > 0 {
            self.counters
                .records_undelivered
                .fetch_add(left, Ordering::Relaxed);
        }
        let _ = &self.name;
    }

    /// Runs `fut` while still taking in (and bounding) new events.
    async fn while_receiving<F: std::future::Future<Output = bool>>(&mut self, fut: F) -> bool {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                e = self.rx.recv() => match e {
                    Some(e) => self.enqueue(&e),
                    None => return fut.await,
                },
                _ = self.stop.changed() => {
                    if *self.stop.borrow() { return false; }
                }
            }
        }
    }

    /// Waits until the environment is thawed; false if stopped meanwhile.
    async fn wait_thawed(&mut self) -> bool {
        loop {
            if *self.stop.borrow() {
                return false;
            }
            if !*self.frozen.borrow() {
                return true;
            }
            tokio::select! {
                r = self.frozen.changed() => if r.is_err() { return false; },
                e = self.rx.recv() => if let Some(e) = e { self.enqueue(&e) } else {
                    // No more events will come; keep waiting for the thaw or the stop.
                    tokio::select! {
                        r = self.frozen.changed() => if r.is_err() { return false; },
                        _ = self.stop.changed() => {}
                    }
                },
                _ = self.stop.changed() => {}
            }
        }
    }
}
