//! The hub: fans every event out to the subscribers that chose its stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};

use super::subscriber::Delivery;
use super::{Counters, Event, Subscription, wants};

struct SubscriberEntry {
    types: Vec<String>,
    tx: mpsc::UnboundedSender<Arc<Event>>,
}

struct HubInner {
    /// Every event since the environment started, replayed to subscribers that subscribe
    /// during init (as Lambda delivers `platform.initStart` to them). Cleared when init ends.
    backlog: Option<Vec<Arc<Event>>>,
    subscribers: Vec<SubscriberEntry>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Fans every event out to the subscribers that chose its stream.
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    pub counters: Arc<Counters>,
    frozen: watch::Receiver<bool>,
    stop_tx: watch::Sender<bool>,
    queue_limit: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Hub {
    /// A hub whose deliveries pause while `frozen` is true.
    pub(crate) fn new(
        frozen: watch::Receiver<bool>,
        queue_limit: usize,
        counters: Arc<Counters>,
    ) -> Hub {
        let (stop_tx, _) = watch::channel(false);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build_http();
        Hub {
            inner: Mutex::new(HubInner {
                backlog: Some(Vec::new()),
                subscribers: Vec::new(),
                tasks: Vec::new(),
            }),
            counters,
            frozen,
            stop_tx,
            queue_limit: queue_limit.max(1),
            client,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Publishes one event to every interested subscriber.
    pub(crate) fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut inner = self.lock();
        if let Some(backlog) = inner.backlog.as_mut() {
            backlog.push(event.clone());
        }
        let stream = event.stream();
        inner.subscribers.retain(|s| {
            if wants(&s.types, stream) {
                s.tx.send(event.clone()).is_ok()
            } else {
                true
            }
        });
    }

    /// Ends the init window: later subscribers receive only later events.
    pub(crate) fn close_backlog(&self) {
        self.lock().backlog = None;
    }

    /// Starts delivery for a subscriber (its backlog of init events first).
    pub(crate) fn subscribe(&self, name: &str, sub: Subscription) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        if let Some(backlog) = inner.backlog.as_ref() {
            for e in backlog {
                if wants(&sub.types, e.stream()) {
                    let _ = tx.send(e.clone());
                }
            }
        }
        inner.subscribers.push(SubscriberEntry {
            types: sub.types.clone(),
            tx,
        });
        let task = Delivery {
            name: name.to_owned(),
            sub,
            rx,
            frozen: self.frozen.clone(),
            stop: self.stop_tx.subscribe(),
            counters: self.counters.clone(),
            queue_limit: self.queue_limit,
            client: self.client.clone(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            pending_drop: (0, 0),
        };
        inner.tasks.push(tokio::spawn(task.run()));
    }

    /// Stops every delivery task: what is still queued is counted as undelivered.
    pub(crate) async fn stop(&self) {
        let tasks = {
            let mut inner = self.lock();
            inner.subscribers.clear();
            std::mem::take(&mut inner.tasks)
        };
        let _ = self.stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }
}
