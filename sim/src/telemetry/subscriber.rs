//! One Telemetry API subscriber: its queue, batching by the subscription's `buffering`, the
//! pause while the environment is frozen, retries with backoff, and `platform.logsDropped`
//! when it falls behind.
//!
//! Every event is rendered for the subscriber's schema as it is queued. A batch leaves when it
//! reaches `maxItems` or `maxBytes`, when its oldest record is `timeoutMs` old, or when records
//! were dropped (the `platform.logsDropped` record goes first). The queue holds at most the
//! environment's limit: beyond it the oldest function or extension record goes (platform
//! records only when there is nothing else), as Lambda drops logs of a subscriber that does
//! not keep up. A record of a type the run loses (`RunConfig::drop_telemetry`) is dropped and
//! reported the same way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::transport::{self, HttpClient};
use super::{Counters, Destination, Event, Stream, Subscription, render_for_schema, wants};

/// The reason the platform gives in `platform.logsDropped`.
const LOGS_DROPPED_REASON: &str =
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.";

/// The first wait before a retry; it doubles with each failure, up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(1_000);

/// What the hub sends a subscriber.
pub(super) enum Msg {
    /// A record to deliver.
    Event(Arc<Event>),
    /// Deliver everything queued now, without waiting for the buffering timeout; answer when
    /// the queue is empty.
    Flush(oneshot::Sender<()>),
}

/// One record in the queue, rendered for the subscriber's schema.
struct Queued {
    at: Instant,
    bytes: Vec<u8>,
    /// A `function` or `extension` record: these are dropped first.
    is_log: bool,
}

/// What was dropped since the last `platform.logsDropped`.
#[derive(Debug, Default, Clone, Copy)]
struct Dropped {
    records: u64,
    bytes: u64,
}

/// What every subscriber of an environment shares.
#[derive(Clone)]
pub(super) struct Shared {
    /// True while the environment is frozen: nothing is delivered.
    pub(super) frozen: watch::Receiver<bool>,
    /// True once the environment ends.
    pub(super) stop: watch::Receiver<bool>,
    pub(super) counters: Arc<Counters>,
    /// Records a subscriber may hold before the oldest are dropped.
    pub(super) queue_limit: usize,
    pub(super) client: HttpClient,
    /// Record types lost on the way, and reported in `platform.logsDropped`.
    pub(super) dropped: Arc<[String]>,
}

/// One subscriber's delivery task (see the module doc).
pub(super) struct Subscriber {
    subscription: Subscription,
    events: mpsc::UnboundedReceiver<Msg>,
    shared: Shared,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    dropped: Dropped,
    /// Flushes asked for and not answered yet.
    flushes: Vec<oneshot::Sender<()>>,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The wait before retry number `attempt` (from 0).
fn backoff(attempt: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(10)))
        .min(RETRY_MAX)
}

impl Subscriber {
    /// A subscriber that delivers `events` as `subscription` asks.
    pub(super) fn new(
        subscription: Subscription,
        events: mpsc::UnboundedReceiver<Msg>,
        shared: Shared,
    ) -> Subscriber {
        Subscriber {
            subscription,
            events,
            shared,
            queue: VecDeque::new(),
            queued_bytes: 0,
            dropped: Dropped::default(),
            flushes: Vec::new(),
        }
    }

    /// Takes in one message from the hub.
    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Event(e) => self.enqueue(&e),
            Msg::Flush(done) => {
                self.flushes.push(done);
                self.answer_flushes();
            }
        }
    }

    /// Answers the flushes asked for once nothing is left to deliver.
    fn answer_flushes(&mut self) {
        if self.queue.is_empty() && self.dropped.records == 0 {
            for done in self.flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    fn enqueue(&mut self, event: &Event) {
        let value = render_for_schema(event, self.subscription.schema);
        let bytes = match serde_json::to_vec(&value) {
            Ok(b) => b,
            Err(_) => return,
        };
        if self.shared.dropped.contains(&event.kind) {
            self.count_dropped(bytes.len());
            return;
        }
        self.queued_bytes += bytes.len();
        self.queue.push_back(Queued {
            at: Instant::now(),
            bytes,
            is_log: event.stream() != Stream::Platform,
        });
        while self.queue.len() > self.shared.queue_limit {
            let oldest_log = self.queue.iter().position(|q| q.is_log).unwrap_or(0);
            if let Some(dropped) = self.queue.remove(oldest_log) {
                self.queued_bytes -= dropped.bytes.len();
                self.count_dropped(dropped.bytes.len());
            }
        }
    }

    /// A record of `size` bytes was dropped: it goes into the next `platform.logsDropped`.
    fn count_dropped(&mut self, size: usize) {
        self.dropped.records += 1;
        self.dropped.bytes += size as u64;
        add(&self.shared.counters.records_dropped, 1);
        add(&self.shared.counters.bytes_dropped, size as u64);
    }

    fn drain_channel(&mut self) {
        while let Ok(msg) = self.events.try_recv() {
            self.take(msg);
        }
    }

    fn buffering_timeout(&self) -> Duration {
        Duration::from_millis(self.subscription.buffering.timeout_ms)
    }

    fn batch_ready(&self, now: Instant) -> bool {
        // A drop is reported at once, also when nothing was queued after the record lost:
        // otherwise its `platform.logsDropped` waits for the next record, which may never come.
        if self.dropped.records > 0 {
            return true;
        }
        let Some(first) = self.queue.front() else {
            return false;
        };
        let buffering = &self.subscription.buffering;
        self.queue.len() >= buffering.max_items
            || self.queued_bytes >= buffering.max_bytes
            || now >= first.at + self.buffering_timeout()
            || !self.flushes.is_empty()
    }

    /// The next batch: `platform.logsDropped` first if records were dropped (and the
    /// subscriber takes platform records), then queued records up to `maxItems`/`maxBytes`.
    fn take_batch(&mut self) -> Vec<Vec<u8>> {
        let mut batch = Vec::new();
        let mut size = 0usize;
        if self.dropped.records > 0 && wants(&self.subscription.types, Stream::Platform) {
            let e = Event::platform(
                OffsetDateTime::now_utc(),
                "platform.logsDropped",
                json!({
                    "reason": LOGS_DROPPED_REASON,
                    "droppedRecords": self.dropped.records,
                    "droppedBytes": self.dropped.bytes,
                }),
            );
            if let Ok(b) = serde_json::to_vec(&render_for_schema(&e, self.subscription.schema)) {
                size += b.len();
                batch.push(b);
            }
        }
        self.dropped = Dropped::default();
        let buffering = self.subscription.buffering;
        while let Some(q) = self.queue.front() {
            if !batch.is_empty()
                && (batch.len() >= buffering.max_items
                    || size + q.bytes.len() > buffering.max_bytes)
            {
                break;
            }
            size += q.bytes.len();
            if let Some(q) = self.queue.pop_front() {
                self.queued_bytes -= q.bytes.len();
                batch.push(q.bytes);
            }
        }
        batch
    }

    /// Delivers until stopped; what is still queued then counts as undelivered.
    pub(super) async fn run(mut self) {
        let mut tcp: Option<TcpStream> = None;
        loop {
            if *self.shared.stop.borrow() {
                break;
            }
            self.drain_channel();
            if !self.batch_ready(Instant::now()) {
                let wake = self.queue.front().map(|q| q.at + self.buffering_timeout());
                tokio::select! {
                    msg = self.events.recv() => match msg {
                        Some(msg) => self.take(msg),
                        None => {
                            if self.queue.is_empty() { break; }
                            if let Some(w) = wake { tokio::time::sleep_until(w).await; }
                        }
                    },
                    _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
                    _ = self.shared.stop.changed() => {}
                }
                continue;
            }
            if !self.wait_thawed().await {
                break;
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                // A drop this subscriber does not take platform records to hear of.
                self.answer_flushes();
                continue;
            }
            self.deliver(&batch, &mut tcp).await;
            self.answer_flushes();
        }
        self.drain_channel();
        add(
            &self.shared.counters.records_undelivered,
            self.queue.len() as u64,
        );
    }

    /// Sends one batch, retrying with backoff until it is taken or the subscriber stops.
    async fn deliver(&mut self, batch: &[Vec<u8>], tcp: &mut Option<TcpStream>) {
        let records = batch.len() as u64;
        let destination = self.subscription.destination.clone();
        let body = transport::frame(&destination, batch);
        let mut attempt = 0u32;
        loop {
            let delivered = match &destination {
                Destination::Http { host, addr, path } => {
                    let post = transport::post(
                        self.shared.client.clone(),
                        *addr,
                        host,
                        path,
                        body.clone(),
                    );
                    self.while_receiving(post).await
                }
                Destination::Tcp { addr } => {
                    tokio::select! {
                        sent = transport::send_tcp(tcp, *addr, &body) => sent,
                        _ = self.shared.stop.changed() => false,
                    }
                }
            };
            if delivered {
                add(&self.shared.counters.records_delivered, records);
                add(&self.shared.counters.batches_delivered, 1);
                return;
            }
            if *self.shared.stop.borrow() {
                add(&self.shared.counters.records_undelivered, records);
                return;
            }
            add(&self.shared.counters.retries, 1);
            let sleep = tokio::time::sleep(backoff(attempt));
            attempt += 1;
            self.while_receiving(async {
                sleep.await;
                true
            })
            .await;
            if !self.wait_thawed().await {
                add(&self.shared.counters.records_undelivered, records);
                return;
            }
        }
    }

    /// Runs `fut` while still taking in (and bounding) new events.
    async fn while_receiving<F: std::future::Future<Output = bool>>(&mut self, fut: F) -> bool {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                msg = self.events.recv() => match msg {
                    Some(msg) => self.take(msg),
                    None => return fut.await,
                },
                _ = self.shared.stop.changed() => {
                    if *self.shared.stop.borrow() { return false; }
                }
            }
        }
    }

    /// Waits until the environment is thawed; false if stopped meanwhile.
    async fn wait_thawed(&mut self) -> bool {
        loop {
            if *self.shared.stop.borrow() {
                return false;
            }
            if !*self.shared.frozen.borrow() {
                return true;
            }
            tokio::select! {
                r = self.shared.frozen.changed() => if r.is_err() { return false; },
                msg = self.events.recv() => if let Some(msg) = msg { self.take(msg) } else {
                    // No more events will come; keep waiting for the thaw or the stop.
                    tokio::select! {
                        r = self.shared.frozen.changed() => if r.is_err() { return false; },
                        _ = self.shared.stop.changed() => {}
                    }
                },
                _ = self.shared.stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::subscription::parse_subscription;

    fn subscriber(dropped: &[&str]) -> Subscriber {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": "2022-12-13",
            "types": ["platform", "function"],
            "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
            "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:8123/t"}
        }))
        .unwrap();
        let subscription = parse_subscription(&body, false).unwrap();
        // No hub, never frozen or stopped: the tests call the steps, not `run`.
        let (_, events) = mpsc::unbounded_channel();
        let (_, frozen) = watch::channel(false);
        let (_, stop) = watch::channel(false);
        let dropped: Vec<String> = dropped.iter().map(|s| (*s).to_owned()).collect();
        let shared = Shared {
            frozen,
            stop,
            counters: Arc::default(),
            queue_limit: 100,
            client: transport::http_client(),
            dropped: Arc::from(dropped),
        };
        Subscriber::new(subscription, events, shared)
    }

    fn event(kind: &str) -> Msg {
        Msg::Event(Arc::new(Event::platform(
            OffsetDateTime::now_utc(),
            kind,
            json!({"requestId": "r"}),
        )))
    }

    #[tokio::test]
    async fn a_drop_is_reported_at_once_when_nothing_follows_it() {
        let mut s = subscriber(&["platform.runtimeDone"]);
        s.take(event("platform.runtimeDone"));
        assert!(s.queue.is_empty());
        // Ready now, not at the next record's buffering timeout, which would never come.
        assert!(s.batch_ready(Instant::now()));
        let batch = s.take_batch();
        assert_eq!(batch.len(), 1);
        let record: serde_json::Value = serde_json::from_slice(&batch[0]).unwrap();
        assert_eq!(record["type"], "platform.logsDropped");
        assert_eq!(record["record"]["droppedRecords"], 1);
        assert!(!s.batch_ready(Instant::now()));

        // A flush asked for meanwhile is answered once the report is out.
        let mut s = subscriber(&["platform.runtimeDone"]);
        s.take(event("platform.runtimeDone"));
        let (done, mut answered) = oneshot::channel();
        s.take(Msg::Flush(done));
        assert!(answered.try_recv().is_err(), "the drop is not reported yet");
        assert!(s.batch_ready(Instant::now()));
        assert_eq!(s.take_batch().len(), 1);
        s.answer_flushes();
        assert!(answered.try_recv().is_ok());
    }
}
