//! The handle of a running sink: start it, read what it received, script its answers.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::received::Received;
use super::render::{render, render_environments};
use super::server::{Shared, accept_loop};
use super::{Behaviour, SinkConfig};

/// How long [`SinkHandle::set_behaviour`] waits for the listener to follow a change.
const BEHAVIOUR_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the sink and returns once it is listening.
///
/// Fails if the address cannot be bound or the JSON lines file cannot be created.
pub async fn start(config: SinkConfig) -> std::io::Result<SinkHandle> {
    let listener = TcpListener::bind(config.addr).await?;
    let local_addr = listener.local_addr()?;
    let jsonl = match &config.jsonl_path {
        Some(path) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot create JSON lines file {}: {e}", path.display()),
                    )
                })?,
        )),
        None => None,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(Received::default()),
        version: watch::Sender::new(0),
        behaviour: watch::Sender::new(Behaviour::Accept),
        shutdown: watch::Sender::new(false),
        listening: watch::Sender::new(true),
        jsonl,
        max_stored_bytes: config.max_stored_bytes,
    });
    let accept_task = tokio::spawn(accept_loop(Arc::clone(&shared), listener, local_addr));
    Ok(SinkHandle {
        shared,
        local_addr,
        accept_task: Some(accept_task),
    })
}

/// A running sink. Dropping it stops the sink (without waiting); prefer [`SinkHandle::shutdown`].
#[derive(Debug)]
pub struct SinkHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_task: Option<JoinHandle<()>>,
}

/// [`SinkHandle::wait_for`] gave up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("waited {timeout:?} for the OTLP sink and the condition was not met; it holds {summary}")]
pub struct WaitTimeout {
    /// How long it waited.
    pub timeout: Duration,
    /// What the sink held then ([`Received::summary`]).
    pub summary: String,
}

/// [`SinkHandle::set_behaviour`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BehaviourError {
    /// [`Behaviour::Status`] with a status outside 300-599.
    #[error("scripted status {0} is not an error status: use a code from 300 to 599")]
    NotAnErrorStatus(u16),
    /// The listener did not follow in time (it could not listen again on its port).
    #[error(
        "the sink did not apply the behaviour within {timeout:?} (last listen error: {last_listen_error:?})"
    )]
    NotApplied {
        /// How long it waited.
        timeout: Duration,
        /// Why listening failed, the last time.
        last_listen_error: Option<String>,
    },
}

impl SinkHandle {
    /// Base URL of the sink, e.g. `http://127.0.0.1:4318` (append `/v1/traces` etc.).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The address the sink listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A copy of everything received so far.
    pub fn snapshot(&self) -> Received {
        self.shared.lock().clone()
    }

    /// What each environment sent, and the totals (see [`super::render_environments()`]).
    pub fn render_environments(&self) -> String {
        render_environments(&self.shared.lock())
    }

    /// What was received, rendered for a person (see [`super::render()`]).
    pub fn render_text(&self) -> String {
        render(&self.shared.lock())
    }

    /// Waits until `pred` holds for what was received, at most `timeout`, and returns a copy of
    /// what was received at that moment. `pred` runs with the sink's state locked: it must not
    /// call back into the sink.
    pub async fn wait_for<F>(&self, timeout: Duration, mut pred: F) -> Result<Received, WaitTimeout>
    where
        F: FnMut(&Received) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.version.subscribe();
        loop {
            changes.borrow_and_update();
            {
                let state = self.shared.lock();
                if pred(&state) {
                    return Ok(state.clone());
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let state = self.shared.lock();
                    if pred(&state) {
                        return Ok(state.clone());
                    }
                    return Err(WaitTimeout {
                        timeout,
                        summary: state.summary(),
                    });
                }
            }
        }
    }

    /// Waits until at least `n` spans have arrived.
    pub async fn wait_for_spans(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Received, WaitTimeout> {
        self.wait_for(timeout, |r| r.span_count() >= n).await
    }

    /// Changes how the sink answers from now on. Requests held by [`Behaviour::Hang`] are
    /// answered according to the new behaviour. Returns once the change is in effect: after a
    /// change to [`Behaviour::Refuse`] connecting is refused, after a change away from it the
    /// sink listens again on the same port.
    pub async fn set_behaviour(&self, behaviour: Behaviour) -> Result<(), BehaviourError> {
        if let Behaviour::Status { code, .. } = behaviour {
            if !(300..=599).contains(&code) {
                return Err(BehaviourError::NotAnErrorStatus(code));
            }
        }
        let listen = behaviour != Behaviour::Refuse;
        self.shared.behaviour.send_replace(behaviour);
        let mut listening = self.shared.listening.subscribe();
        let applied = tokio::time::timeout(
            BEHAVIOUR_TIMEOUT,
            listening.wait_for(|state| *state == listen),
        )
        .await;
        match applied {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(BehaviourError::NotApplied {
                timeout: BEHAVIOUR_TIMEOUT,
                last_listen_error: self.shared.lock().counters.last_listen_error.clone(),
            }),
        }
    }

    /// How the sink answers now.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.behaviour.borrow().clone()
    }

    /// Stops listening, closes every connection (held requests are never answered) and waits
    /// for the listener task to end.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.accept_task.take() {
            // The task only ends by returning; a panic in it has nothing left to clean up.
            let _ = task.await;
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}
