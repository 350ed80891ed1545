//! The state of one execution environment, shared by the API handlers (which record what the
//! runtime and the extensions call) and the lifecycle (which waits on it to move between
//! Lambda's phases).
//!
//! Three names, three things: [`EnvInfo`] is what the APIs answer with and never changes,
//! [`State`] is what changes, and [`EnvState`] holds both with the telemetry [`Hub`] and wakes
//! whoever waits for a change. The lifecycle's `Environment` owns an `EnvState` together with
//! the child processes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::config::InitType;
use crate::resources::CpuClock;
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
    /// Telemetry API subscriptions with another schema version are refused.
    pub required_schema: Option<Schema>,
    /// What the container credentials endpoint hands out (SnapStart), and the token it wants.
    pub credentials: crate::config::AwsCredentials,
    pub credentials_token: String,
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
    /// When the runtime began to send its answer.
    pub started: Instant,
    pub started_wall: OffsetDateTime,
    /// When the answer had arrived.
    pub finished: Instant,
    /// Size of the response body.
    pub bytes: usize,
}

/// One invocation handed to the runtime.
#[derive(Debug, Default)]
pub(crate) struct InvocationSlot {
    /// The runtime's answer, once it came.
    pub outcome: Option<Outcome>,
}

/// One extension process, from its spawn to its exit.
#[derive(Debug)]
pub(crate) struct ExtensionSlot {
    /// The executable's file name: the name it must register with.
    pub name: String,
    pub pid: Option<u32>,
    pub spawned_at: Instant,
    /// The `Lambda-Extension-Identifier` given at registration.
    pub id: Option<String>,
    /// The events it registered for (`INVOKE`, `SHUTDOWN`).
    pub events: Vec<String>,
    pub registered_at: Option<Instant>,
    pub first_next_at: Option<Instant>,
    /// Its cgroup's CPU time once `exec` had loaded it: the end of the forked copy of the
    /// emulator and the `exec` itself, which are not the extension's work.
    pub cpu_at_exec_ms: Option<f64>,
    /// Its CPU time from then to its first `event/next` (counted by cgroups only).
    pub cpu_to_first_next_ms: Option<f64>,
    pub last_next_at: Option<Instant>,
    /// Its parked `event/next` call.
    pub waiter: Option<oneshot::Sender<Value>>,
    /// Events not yet taken by `event/next`.
    pub pending: VecDeque<Value>,
    /// Set by `init/error` or `exit/error`.
    pub error_type: Option<String>,
    /// How the process ended, once it did.
    pub exited: Option<String>,
    /// Exited while Lambda still needed it (before SHUTDOWN, without reporting an error).
    pub crashed: bool,
    /// The schema version of its Telemetry API subscription.
    pub subscribed: Option<Schema>,
}

impl ExtensionSlot {
    pub(crate) fn new(name: String, spawned_at: Instant) -> ExtensionSlot {
        ExtensionSlot {
            name,
            pid: None,
            spawned_at,
            id: None,
            events: Vec::new(),
            registered_at: None,
            first_next_at: None,
            cpu_at_exec_ms: None,
            cpu_to_first_next_ms: None,
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

    /// Registered for `event` (`INVOKE` or `SHUTDOWN`).
    pub(crate) fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    /// The name of its cgroup leaf.
    pub(crate) fn leaf(&self) -> String {
        extension_leaf(&self.name)
    }
}

/// The cgroup leaf of the extension `name`.
pub(crate) fn extension_leaf(name: &str) -> String {
    crate::resources::leaf_name(&format!("ext-{name}"))
}

/// The cgroup leaf of the runtime.
pub(crate) const RUNTIME_LEAF: &str = "runtime";

/// The runtime process.
#[derive(Debug, Default)]
pub(crate) struct RuntimeSlot {
    pub pid: Option<u32>,
    pub spawned_at: Option<Instant>,
    /// Its parked `invocation/next` calls (several on Lambda Managed Instances).
    pub waiters: Vec<oneshot::Sender<Dispatch>>,
    /// Invocations not yet taken by `invocation/next`.
    pub pending: VecDeque<Dispatch>,
    pub first_next_at: Option<Instant>,
    /// Set by `init/error`.
    pub init_error: Option<String>,
    /// Its parked `restore/next` call (SnapStart).
    pub restore_waiter: Option<oneshot::Sender<()>>,
    pub restore_next_at: Option<Instant>,
    /// Set by `restore/error`.
    pub restore_error: Option<String>,
    /// How the process ended, once it did.
    pub exited: Option<String>,
    /// The kernel killed it for exceeding the environment's memory limit.
    pub out_of_memory: bool,
}

impl RuntimeSlot {
    /// Number of `invocation/next` calls parked right now.
    pub(crate) fn parked(&self) -> usize {
        self.waiters.iter().filter(|w| !w.is_closed()).count()
    }

    /// Parked in `restore/next`.
    pub(crate) fn in_restore_next(&self) -> bool {
        self.restore_waiter.as_ref().is_some_and(|w| !w.is_closed())
    }
}

/// The Lambda phase an environment is in, as far as the APIs care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `init/error` is accepted; extensions may register until the runtime starts.
    Init,
    /// Invocations.
    Running,
    /// Processes exiting now are not crashes.
    Shutdown,
}

/// What changes while an environment lives.
#[derive(Debug)]
pub(crate) struct State {
    pub phase: Phase,
    /// Extensions may register (until the runtime starts).
    pub registration_open: bool,
    /// In spawn order.
    pub extensions: Vec<ExtensionSlot>,
    pub runtime: RuntimeSlot,
    /// By request id.
    pub invocations: HashMap<String, InvocationSlot>,
    /// OOM kills of the environment's memory group already accounted for.
    pub oom_kills_seen: u64,
}

/// One execution environment's shared state: its fixed facts, what changes, and its telemetry.
pub(crate) struct EnvState {
    pub info: EnvInfo,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub hub: Arc<Hub>,
    /// The CPU time of each child.
    pub cpu: CpuClock,
}

impl EnvState {
    pub(crate) fn new(info: EnvInfo, hub: Arc<Hub>, cpu: CpuClock) -> EnvState {
        let (changed, _) = watch::channel(0);
        EnvState {
            info,
            state: Mutex::new(State {
                phase: Phase::Init,
                registration_open: true,
                extensions: Vec::new(),
                runtime: RuntimeSlot::default(),
                invocations: HashMap::new(),
                oom_kills_seen: 0,
            }),
            changed,
            hub,
            cpu,
        }
    }

    /// The state, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Wakes everything waiting in [`EnvState::wait_until`].
    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Runs `f` on the state, then wakes waiters.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let r = {
            let mut state = self.lock();
            f(&mut state)
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
                let state = self.lock();
                if let Some(t) = f(&state) {
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
                        let state = self.lock();
                        return f(&state);
                    }
                }
            }
        }
    }

    /// Hands an event to an extension: to its parked `next` call or its queue.
    pub(crate) fn deliver_to_extension(&self, index: usize, event: Value) {
        self.update(|state| {
            if let Some(extension) = state.extensions.get_mut(index) {
                let mut event = event;
                if let Some(w) = extension.waiter.take() {
                    match w.send(event) {
                        Ok(()) => return,
                        Err(back) => event = back,
                    }
                }
                extension.pending.push_back(event);
            }
        });
    }

    /// Hands an invocation to the runtime: to a parked `next` call or its queue.
    pub(crate) fn dispatch_to_runtime(&self, dispatch: Dispatch) {
        self.update(|state| {
            state
                .invocations
                .entry(dispatch.request_id.clone())
                .or_default();
            let mut dispatch = dispatch;
            while !state.runtime.waiters.is_empty() {
                let w = state.runtime.waiters.remove(0);
                match w.send(dispatch) {
                    Ok(()) => return,
                    Err(back) => dispatch = back,
                }
            }
            state.runtime.pending.push_back(dispatch);
        });
    }
}
