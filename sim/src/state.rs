//! The state of one execution environment, shared by the API handlers and the lifecycle.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::config::InitType;
use crate::telemetry::{Hub, Schema};

/// What the APIs answer with that does not change during a run.
#[derive(Debug, Clone)]
pub(crate) struct EnvInfo {
    pub function_name: String,
    pub function_version: String,
    pub function_arn: String,
    pub handler: String,
    pub account_id: String,
    pub init_type: InitType,
    pub memory_mb: u32,
    pub instance_id: String,
    pub required_schema: Option<Schema>,
}

/// An invocation as handed to the runtime by `invocation/next`.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub request_id: String,
    pub deadline_ms: i64,
    pub trace_header: String,
    pub body: Bytes,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

/// How the runtime answered an invocation.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// `None` for `response`, the error type for `error`.
    pub error_type: Option<String>,
    pub started: Instant,
    pub started_wall: OffsetDateTime,
    pub finished: Instant,
    pub bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct InvSlot {
    pub outcome: Option<Outcome>,
}

#[derive(Debug)]
pub(crate) struct ExtSlot {
    pub name: String,
    pub pid: Option<u32>,
    pub spawned_at: Instant,
    pub id: Option<String>,
    pub events: Vec<String>,
    pub registered_at: Option<Instant>,
    pub first_next_at: Option<Instant>,
    pub last_next_at: Option<Instant>,
    pub waiter: Option<oneshot::Sender<Value>>,
    pub pending: VecDeque<Value>,
    /// Set by `init/error` or `exit/error`.
    pub error_type: Option<String>,
    pub exited: Option<String>,
    pub crashed: bool,
    pub subscribed: Option<Schema>,
}

impl ExtSlot {
    pub(crate) fn new(name: String, spawned_at: Instant) -> ExtSlot {
        ExtSlot {
            name,
            pid: None,
            spawned_at,
            id: None,
            events: Vec::new(),
            registered_at: None,
            first_next_at: None,
            last_next_at: None,
            waiter: None,
            pending: VecDeque::new(),
            error_type: None,
            exited: None,
            crashed: false,
            subscribed: None,
        }
    }

    /// Parked in `event/next` with nothing to receive.
    pub(crate) fn in_next(&self) -> bool {
        self.waiter.as_ref().is_some_and(|w| !w.is_closed())
    }

    pub(crate) fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

#[derive(Debug, Default)]
pub(crate) struct RuntimeSlot {
    pub pid: Option<u32>,
    pub spawned_at: Option<Instant>,
    pub waiters: Vec<oneshot::Sender<Dispatch>>,
    pub pending: VecDeque<Dispatch>,
    pub first_next_at: Option<Instant>,
    pub init_error: Option<String>,
    pub restore_waiter: Option<oneshot::Sender<()>>,
    pub restore_next_at: Option<Instant>,
    pub restore_error: Option<String>,
    pub exited: Option<String>,
}

impl RuntimeSlot {
    /// Number of `invocation/next` calls parked right now.
    pub(crate) fn parked(&self) -> usize {
        self.waiters.iter().filter(|w| !w.is_closed()).count()
    }

    pub(crate) fn in_restore_next(&self) -> bool {
        self.restore_waiter.as_ref().is_some_and(|w| !w.is_closed())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Init,
    Running,
    Shutdown,
}

#[derive(Debug)]
pub(crate) struct State {
    pub phase: Phase,
    pub registration_open: bool,
    pub exts: Vec<ExtSlot>,
    pub rt: RuntimeSlot,
    pub invocations: HashMap<String, InvSlot>,
}

/// One execution environment.
pub(crate) struct Env {
    pub info: EnvInfo,
    st: Mutex<State>,
    changed: watch::Sender<u64>,
    pub hub: Arc<Hub>,
}

impl Env {
    pub(crate) fn new(info: EnvInfo, hub: Arc<Hub>) -> Env {
        let (changed, _) = watch::channel(0);
        Env {
            info,
            st: Mutex::new(State {
                phase: Phase::Init,
                registration_open: true,
                exts: Vec::new(),
                rt: RuntimeSlot::default(),
                invocations: HashMap::new(),
            }),
            changed,
            hub,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        match self.st.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Wakes everything waiting in [`Env::wait_until`].
    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Runs `f` on the state, then wakes waiters.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let r = {
            let mut st = self.lock();
            f(&mut st)
        };
        self.bump();
        r
    }

    /// Waits until `f` returns `Some`, or `deadline` passes (`None`).
    pub(crate) async fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let st = self.lock();
                if let Some(t) = f(&st) {
                    return Some(t);
                }
            }
            // Parked handlers whose client went away are noticed by polling now and then.
            let tick = Instant::now() + std::time::Duration::from_millis(250);
            let wake = match deadline {
                Some(d) if d < tick => d,
                _ => tick,
            };
            match tokio::time::timeout_at(wake, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let st = self.lock();
                        return f(&st);
                    }
                }
            }
        }
    }

    /// Hands an event to an extension: to its parked `next` call or its queue.
    pub(crate) fn deliver_to_extension(&self, idx: usize, event: Value) {
        self.update(|st| {
            if let Some(ext) = st.exts.get_mut(idx) {
                let mut event = event;
                if let Some(w) = ext.waiter.take() {
                    match w.send(event) {
                        Ok(()) => return,
                        Err(back) => event = back,
                    }
                }
                ext.pending.push_back(event);
            }
        });
    }

    /// Hands an invocation to the runtime: to a parked `next` call or its queue.
    pub(crate) fn dispatch_to_runtime(&self, d: Dispatch) {
        self.update(|st| {
            st.invocations.entry(d.request_id.clone()).or_default();
            let mut d = d;
            while !st.rt.waiters.is_empty() {
                let w = st.rt.waiters.remove(0);
                match w.send(d) {
                    Ok(()) => return,
                    Err(back) => d = back,
                }
            }
            st.rt.pending.push_back(d);
        });
    }
}
