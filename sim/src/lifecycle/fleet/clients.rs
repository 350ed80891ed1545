//! The load's clients: each request sent to the dispatcher, its answer recorded.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::super::{lock, ms_between};
use super::{Answer, Request};
use crate::fleet::report::RequestRecord;
use crate::fleet::{Load, load::THROTTLE_BACKOFF};

/// Sends the load's requests and records each answer.
pub(super) async fn generate(
    load: Load,
    start: Instant,
    requests: mpsc::UnboundedSender<Request>,
    timeline: Arc<Mutex<Vec<RequestRecord>>>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let clients = load.clients();
    if clients.is_empty() {
        for at in load.arrivals() {
            tokio::time::sleep_until(start + at).await;
            let requests = requests.clone();
            let timeline = timeline.clone();
            tasks.spawn(async move {
                send(&requests, start, &timeline).await;
            });
        }
    } else {
        for client in clients {
            let requests = requests.clone();
            let timeline = timeline.clone();
            tasks.spawn(async move {
                tokio::time::sleep_until(start + client.start).await;
                while Instant::now() < start + client.end {
                    if !send(&requests, start, &timeline).await {
                        tokio::time::sleep(THROTTLE_BACKOFF).await;
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One request: sent now, its answer recorded. False if it was throttled (or not run).
async fn send(
    requests: &mpsc::UnboundedSender<Request>,
    start: Instant,
    timeline: &Mutex<Vec<RequestRecord>>,
) -> bool {
    let arrived = Instant::now();
    let (reply, answer) = oneshot::channel();
    if requests.send(Request { reply }).is_err() {
        return false;
    }
    // An answer never given (the environment's task died) is a failed request, not a lost one.
    let answer = answer.await.unwrap_or(Answer::NotStarted {
        environment: None,
        error: "the environment ended without answering".into(),
    });
    let latency_ms = ms_between(arrived, Instant::now());
    let at_ms = ms_between(start, arrived);
    let (record, ran) = match answer {
        Answer::Throttled(reason) => (
            RequestRecord {
                at_ms,
                environment: None,
                cold: false,
                outcome: "throttled".into(),
                status_code: 429,
                error_type: Some(reason.into()),
                latency_ms: 0.0,
            },
            false,
        ),
        Answer::Ran {
            environment,
            cold,
            status,
            error_type,
            post_runtime_ms,
        } => (
            RequestRecord {
                at_ms,
                environment: Some(environment),
                cold,
                outcome: status,
                status_code: 200,
                error_type,
                latency_ms: (latency_ms - post_runtime_ms).max(0.0),
            },
            true,
        ),
        Answer::NotStarted { environment, error } => (
            RequestRecord {
                at_ms,
                environment,
                cold: true,
                outcome: "failure".into(),
                status_code: 200,
                error_type: Some(error),
                latency_ms,
            },
            false,
        ),
    };
    lock(timeline).push(record);
    ran
}
