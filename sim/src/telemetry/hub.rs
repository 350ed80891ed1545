//! The hub: every event the environment produces (platform events, and each line the
//! function and the extensions print) goes to the subscribers that chose its stream. During
//! init it also keeps them, so that an extension subscribing then still receives
//! `platform.initStart` and what followed, as Lambda delivers them. At shutdown it can flush
//! every subscriber: deliver what is queued without waiting for the buffering timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::subscriber::{Msg, Shared, Subscriber};
use super::transport;
use super::{Counters, Event, Subscription, wants};

/// Record types the stream loses (see `RunConfig::drop_telemetry` and `omit_telemetry`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Losses {
    /// Lost on the way to each subscriber, and reported to it in `platform.logsDropped`.
    pub(crate) dropped: Vec<String>,
    /// Never sent at all.
    pub(crate) omitted: Vec<String>,
}

/// Where the hub sends a subscriber's events.
struct SubscriberEntry {
    types: Vec<String>,
    events: mpsc::UnboundedSender<Msg>,
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
    stop: watch::Sender<bool>,
    /// What each subscriber is given.
    shared: Shared,
    /// Record types never published.
    omitted: Vec<String>,
}

impl Hub {
    /// A hub whose deliveries pause while `frozen` is true.
    pub(crate) fn new(
        frozen: watch::Receiver<bool>,
        queue_limit: usize,
        counters: Arc<Counters>,
        losses: Losses,
    ) -> Hub {
        let (stop, _) = watch::channel(false);
        Hub {
            inner: Mutex::new(HubInner {
                backlog: Some(Vec::new()),
                subscribers: Vec::new(),
                tasks: Vec::new(),
            }),
            shared: Shared {
                frozen,
                stop: stop.subscribe(),
                counters,
                queue_limit: queue_limit.max(1),
                client: transport::http_client(),
                dropped: Arc::from(losses.dropped),
            },
            omitted: losses.omitted,
            stop,
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
        if self.omitted.contains(&event.kind) {
            return;
        }
        let event = Arc::new(event);
        let mut inner = self.lock();
        if let Some(backlog) = inner.backlog.as_mut() {
            backlog.push(event.clone());
        }
        let stream = event.stream();
        inner.subscribers.retain(|s| {
            if wants(&s.types, stream) {
                s.events.send(Msg::Event(event.clone())).is_ok()
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
    pub(crate) fn subscribe(&self, subscription: Subscription) {
        let (events, received) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        if let Some(backlog) = inner.backlog.as_ref() {
            for e in backlog {
                if wants(&subscription.types, e.stream()) {
                    let _ = events.send(Msg::Event(e.clone()));
                }
            }
        }
        inner.subscribers.push(SubscriberEntry {
            types: subscription.types.clone(),
            events,
        });
        let subscriber = Subscriber::new(subscription, received, self.shared.clone());
        inner.tasks.push(tokio::spawn(subscriber.run()));
    }

    /// Delivers what every subscriber has queued now, and waits until they took it or `limit`
    /// passed (a subscriber that does not answer does not hold up the shutdown).
    pub(crate) async fn flush(&self, limit: Duration) {
        let answers: Vec<oneshot::Receiver<()>> = {
            let inner = self.lock();
            inner
                .subscribers
                .iter()
                .filter_map(|s| {
                    let (done, answer) = oneshot::channel();
                    s.events.send(Msg::Flush(done)).ok().map(|()| answer)
                })
                .collect()
        };
        let _ = tokio::time::timeout(limit, async {
            for answer in answers {
                let _ = answer.await;
            }
        })
        .await;
    }

    /// Stops every subscriber: what is still queued is counted as undelivered.
    pub(crate) async fn stop(&self) {
        let tasks = {
            let mut inner = self.lock();
            inner.subscribers.clear();
            std::mem::take(&mut inner.tasks)
        };
        let _ = self.stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }
}
