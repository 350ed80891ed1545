//! The lifecycle loop: `next`, tell the worker about each invocation, flush when the
//! [`FlushPolicy`] says so, and exit cleanly on `SHUTDOWN`.
//!
//! - [`policy`]: when to flush, a pure state machine over an injected clock.
//! - [`drain`]: at `SHUTDOWN`, how long to keep receiving before the final flush (pure).
//! - [`degrade`]: what happens after an internal failure (the idle loop).
//!
//! The loop talks to the worker only through a [`WorkerHandle`] on its control channel.
//! Control travels apart from data (the intake queue), so a flush is never stuck behind a full
//! data queue; every wait is bounded by a deadline computed once from the event's
//! `deadlineMs`.
//!
//! After registration no internal failure may break the function: when the worker is gone
//! (its task ended or panicked) or a start-up step failed, the extension degrades to
//! [`idle_loop`], which keeps calling `next` and exits on `SHUTDOWN`, having said why once.

pub(crate) mod degrade;
pub(crate) mod drain;
pub(crate) mod policy;

pub(crate) use degrade::{Degraded, FatalReceiver, announce_degraded, idle_loop, report_error};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::diag;
use crate::diag::Stats;
use crate::export::cut::Cut;
use crate::lambda_api::{ApiError, Client, ExtensionId, InvokeEvent, NextEvent, ShutdownEvent};
use crate::lifecycle::drain::Drain;
use crate::lifecycle::policy::{Action, FlushPolicy, instant_from_epoch_ms};
use crate::mapping::OwnInit;
use crate::pipeline::stages::now_unix_nano;
use crate::pipeline::worker::{INIT_REPORT, Waited, WorkerGone, WorkerHandle};

/// Consecutive failed `next` calls after which the Lambda API is considered gone.
pub(crate) const NEXT_ATTEMPTS: u32 = 3;
/// Pause between failed `next` calls.
pub(crate) const NEXT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// At SHUTDOWN, the share of the window the drain may take (receiving what Lambda still
/// delivers, the last `platform.report` among it) before the final flush.
const SHUTDOWN_WAIT_SHARE: u32 = 2;

/// The Telemetry API stream as the lifecycle sees it (absent when not subscribed).
#[derive(Debug)]
pub(crate) struct Stream {
    /// `platform` is among the subscribed types: `platform.runtimeDone` and `platform.report`
    /// are expected.
    pub(crate) platform: bool,
    /// Moves with each delivery (`intake::telemetry::listener::Deliveries`).
    pub(crate) deliveries: watch::Receiver<u64>,
    /// The subscription's buffering window (`timeoutMs`).
    pub(crate) buffering: Duration,
    /// The request id of the last `platform.runtimeDone` the listener received
    /// (`intake::telemetry::listener::Deliveries::runtime_done`).
    pub(crate) runtime_done: watch::Receiver<String>,
}

/// How the lifecycle ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// SHUTDOWN was handled: exit 0.
    Shutdown,
    /// The Lambda API is unusable (repeated `next` failures): exit non-zero.
    ApiGone(ApiError),
    /// An internal failure: continue with [`idle_loop`].
    Degraded(Degraded),
}

/// Invocations in a row whose `platform.runtimeDone` did not come before the wait ended, after
/// which the loop stops waiting for it (the policy then flushes at the start of invocations).
const MISSED_RUNTIME_DONE_LIMIT: u32 = 2;

static RUNTIME_DONE_MISSING: diag::Once = diag::Once::new();

/// The lifecycle loop and its state.
pub(crate) struct Lifecycle {
    client: Client,
    id: ExtensionId,
    worker: WorkerHandle,
    policy: FlushPolicy,
    /// Failures reported by the other tasks (listener, receiver, worker).
    fatal: FatalReceiver,
    /// Whether `platform.runtimeDone` and `platform.report` are expected at all (false when the
    /// subscription was refused or `platform` is not among the subscribed types).
    platform_telemetry: bool,
    /// The subscribed stream, drained at SHUTDOWN; `None` when there is no subscription.
    stream: Option<Stream>,
    /// The request id of the last INVOKE, to wait for its `platform.report` at shutdown.
    last_request: Option<String>,
    /// Invocations in a row whose runtimeDone did not arrive while the loop waited for it.
    missed_runtime_done: u32,
    /// The previous invocation's runtimeDone wait, when it had not been answered: an answer
    /// that comes later shows that runtimeDone does arrive, only late.
    previous_runtime_done: Option<oneshot::Receiver<Waited>>,
    stats: Arc<Stats>,
    /// When the process started (Unix epoch nanoseconds), until the first `next` has been
    /// answered and the worker told.
    process_start_ns: Option<u64>,
}

impl Lifecycle {
    pub(crate) fn new(
        client: Client,
        id: ExtensionId,
        worker: WorkerHandle,
        mut policy: FlushPolicy,
        fatal: FatalReceiver,
        stream: Option<Stream>,
        stats: Arc<Stats>,
    ) -> Lifecycle {
        let platform_telemetry = stream.as_ref().is_some_and(|s| s.platform);
        policy.set_runtime_done_available(platform_telemetry);
        Lifecycle {
            client,
            id,
            worker,
            policy,
            fatal,
            platform_telemetry,
            stream,
            last_request: None,
            missed_runtime_done: 0,
            previous_runtime_done: None,
            stats,
            process_start_ns: None,
        }
    }

    /// When the process started: the first `next`'s reply then tells the worker Contrail's
    /// own share of init (`aws.lambda.init.contrail`).
    pub(crate) fn set_process_start(&mut self, unix_ns: u64) {
        self.process_start_ns = Some(unix_ns);
    }

    pub(crate) fn id(&self) -> &ExtensionId {
        &self.id
    }

    /// Run until SHUTDOWN or until something fails. Hands the client back for [`idle_loop`].
    pub(crate) async fn run(mut self) -> (Ended, Client, ExtensionId) {
        let ended = self.run_inner().await;
        (ended, self.client, self.id)
    }

    /// After an invocation: learn whether runtimeDone can be relied on.
    fn note_runtime_done(
        &mut self,
        seen: bool,
        timed_out: bool,
        rx: Option<oneshot::Receiver<Waited>>,
    ) {
        if seen {
            self.missed_runtime_done = 0;
            self.policy.set_runtime_done_available(true);
            return;
        }
        if timed_out {
            self.missed_runtime_done = self.missed_runtime_done.saturating_add(1);
        }
        self.previous_runtime_done = rx;
        if self.missed_runtime_done >= MISSED_RUNTIME_DONE_LIMIT
            && self.policy.runtime_done_available()
        {
            RUNTIME_DONE_MISSING.warn(format_args!(
                "platform.runtimeDone did not arrive for {MISSED_RUNTIME_DONE_LIMIT} invocations in a row: flushing without waiting for it until it does"
            ));
            self.policy.set_runtime_done_available(false);
        }
    }

    async fn run_inner(&mut self) -> Ended {
        let mut failures = 0;
        loop {
            if let Ok(reason) = self.fatal.try_recv() {
                return Ended::Degraded(reason);
            }
            // One clock read, only before the first `next`.
            let first_next_ns = self.process_start_ns.map(|_| now_unix_nano());
            let event = match self.client.next(&self.id).await {
                Ok(event) => {
                    failures = 0;
                    if let (Some(process_start_ns), Some(first_next_ns)) =
                        (self.process_start_ns.take(), first_next_ns)
                    {
                        let own = OwnInit {
                            process_start_ns,
                            first_next_ns,
                        };
                        if let Err(gone) = self.worker.own_init(own) {
                            return Ended::Degraded(Degraded::Worker(gone));
                        }
                    }
                    event
                }
                Err(ApiError::Invalid { reason, .. }) => {
                    // An event this version does not understand: it was delivered, so the next
                    // call asks for the one after it.
                    diag::warn!("ignoring an event from the Extensions API: {reason}");
                    continue;
                }
                Err(err) => {
                    failures += 1;
                    if failures >= NEXT_ATTEMPTS {
                        return Ended::ApiGone(err);
                    }
                    diag::warn!("calling next failed ({err}); trying again");
                    tokio::time::sleep(NEXT_RETRY_PAUSE).await;
                    continue;
                }
            };
            let step = match event {
                NextEvent::Invoke(invoke) => self.on_invoke(invoke).await,
                NextEvent::Shutdown(shutdown) => {
                    return match self.on_shutdown(shutdown).await {
                        Ok(()) => Ended::Shutdown,
                        Err(gone) => {
                            diag::error!("final flush not possible: {gone}");
                            Ended::Shutdown
                        }
                    };
                }
            };
            if let Err(gone) = step {
                return Ended::Degraded(Degraded::Worker(gone));
            }
        }
    }

    async fn on_invoke(&mut self, invoke: InvokeEvent) -> Result<(), WorkerGone> {
        let now = Instant::now();
        let invoke_deadline = instant_from_epoch_ms(invoke.deadline_ms, SystemTime::now(), now);
        let request_id = invoke.request_id.clone();
        self.last_request = Some(request_id.clone());
        self.worker.invoke(invoke)?;

        if let Some(mut previous) = self.previous_runtime_done.take()
            && previous.try_recv() == Ok(Waited::Seen)
        {
            // The previous request's runtimeDone came after all: it can be waited for.
            self.missed_runtime_done = 0;
            self.policy.set_runtime_done_available(true);
        }
        // One wait per invocation, asked up front; the same receiver serves every step.
        let mut runtime_done = if self.platform_telemetry {
            Some(self.worker.runtime_done(&request_id)?)
        } else {
            None
        };
        let mut seen_at: Option<Instant> = None;
        // Lambda reported dropped records while the loop waited.
        let mut dropped = false;
        let mut timed_out = false;
        let worker = self.worker.clone();
        // The listener's view of runtimeDone: it sees the record before the worker maps it,
        // so it can stop a flush that the worker is busy with.
        let mut runtime_done_seen = self
            .stream
            .as_ref()
            .filter(|s| s.platform)
            .map(|s| s.runtime_done.clone());
        self.policy.set_backend_held(worker.backend_held());
        let mut action = self
            .policy
            .on_invoke(now, invoke_deadline, worker.buffer_fill());
        loop {
            action = match action {
                Action::CallNext => break,
                // Before this request's runtimeDone is known, a flush overlaps the function's
                // own work: it goes in pieces and stops at a piece boundary once the runtime
                // is done, so it costs the function no time after that.
                Action::FlushNow { deadline } if seen_at.is_none() && !dropped => {
                    let cut = Cut::new();
                    let rx = worker.flush_while_running(deadline, cut.clone())?;
                    let mut cut_at = None;
                    let reply = WorkerHandle::reply(rx, deadline);
                    tokio::pin!(reply);
                    let outcome = tokio::select! {
                        outcome = &mut reply => outcome?,
                        () = runtime_done_of(runtime_done_seen.as_mut(), &request_id) => {
                            cut.fire();
                            cut_at = Some(Instant::now());
                            reply.await?
                        }
                    };
                    if outcome.is_none() {
                        diag::debug!("a flush did not finish by its deadline");
                    }
                    self.policy.set_backend_held(worker.backend_held());
                    match cut_at {
                        Some(at) => {
                            // The runtime was done when the listener saw its runtimeDone: the
                            // next wait for it (in end mode) ends at once, and the end flush
                            // runs after the worker has mapped what came with it.
                            seen_at = Some(at);
                            self.policy.on_flush_cut(Instant::now())
                        }
                        None => {
                            take_answer(&mut runtime_done, &mut seen_at, &mut dropped);
                            self.policy
                                .on_flush_done(Instant::now(), worker.buffer_fill())
                        }
                    }
                }
                Action::FlushNow { deadline } => {
                    if worker.flush(deadline).await?.is_none() {
                        diag::debug!("a flush did not finish by its deadline");
                    }
                    self.policy.set_backend_held(worker.backend_held());
                    take_answer(&mut runtime_done, &mut seen_at, &mut dropped);
                    self.policy
                        .on_flush_done(Instant::now(), worker.buffer_fill())
                }
                Action::WaitForRuntimeDone { until } => match runtime_done.as_mut() {
                    _ if seen_at.is_some() => self.policy.on_runtime_done(Instant::now()),
                    _ if dropped => self.policy.on_logs_dropped(Instant::now()),
                    Some(rx) => tokio::select! {
                        // A dropped reply means the worker is gone.
                        got = rx => match got.map_err(|_| WorkerGone)? {
                            Waited::Seen => {
                                seen_at = Some(Instant::now());
                                self.policy.on_runtime_done(Instant::now())
                            }
                            // Lambda dropped records: runtimeDone may be one of them.
                            Waited::Dropped => {
                                runtime_done = None;
                                dropped = true;
                                self.policy.on_logs_dropped(Instant::now())
                            }
                        },
                        () = sleep_until(until) => {
                            timed_out = true;
                            self.policy.on_timer(Instant::now())
                        }
                        // The buffer crossed its high-water mark while the function runs.
                        () = worker.pressure() => {
                            self.policy.on_pressure(Instant::now(), worker.buffer_fill())
                        }
                    },
                    // Not expected at all: only the timer can end the wait.
                    None => tokio::select! {
                        () = sleep_until(until) => self.policy.on_timer(Instant::now()),
                        () = worker.pressure() => {
                            self.policy.on_pressure(Instant::now(), worker.buffer_fill())
                        }
                    },
                },
            };
        }
        if let Some(at) = seen_at {
            // Billed time after the runtime was done (as Contrail learnt it), before `next`.
            let ms = (at.elapsed().as_micros() + 500) / 1000;
            Stats::add(&self.stats.post_runtime_ms, ms as u64);
        }
        if self.platform_telemetry {
            self.note_runtime_done(seen_at.is_some(), timed_out, runtime_done);
        }
        // Ends the invocation's /proc readings if runtimeDone did not.
        self.worker.idle()?;
        Ok(())
    }

    async fn on_shutdown(&mut self, shutdown: ShutdownEvent) -> Result<(), WorkerGone> {
        let now = Instant::now();
        let deadline = instant_from_epoch_ms(shutdown.deadline_ms, SystemTime::now(), now);
        diag::info!(
            "SHUTDOWN ({}), {} ms left",
            shutdown.reason,
            deadline.saturating_duration_since(now).as_millis()
        );
        let Action::FlushNow { deadline: flush_by } = self.policy.on_shutdown(now, deadline) else {
            return Ok(());
        };
        let drain_until = now + flush_by.saturating_duration_since(now) / SHUTDOWN_WAIT_SHARE;
        self.drain(now, drain_until).await?;
        match self.worker.shutdown(flush_by).await? {
            Some(outcome) if outcome.complete => {}
            Some(_) => {
                diag::warn!(
                    "shutting down with data that could not be exported (counted as dropped)"
                )
            }
            None => diag::warn!("the final flush did not finish before the shutdown deadline"),
        }
        Ok(())
    }

    /// Receive what Lambda still delivers after SHUTDOWN (the last invocation's
    /// `platform.report`, the runtime's last lines) until the stream is quiet and that report
    /// is in, or until `until` (see [`drain`]). The listener keeps running throughout.
    async fn drain(&mut self, now: Instant, until: Instant) -> Result<(), WorkerGone> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut report = match self.last_request.take() {
            Some(id) if self.platform_telemetry => Some(self.worker.report(&id)?),
            // No invocation: an init that failed ends with SHUTDOWN, and its initReport (and
            // the runtime's error) may still be on the way. An init that succeeded was
            // reported long ago, and this wait ends at once.
            None if self.platform_telemetry => Some(self.worker.report(INIT_REPORT)?),
            _ => None,
        };
        stream.deliveries.mark_unchanged();
        let mut drain = Drain::new(now, stream.buffering, until, report.is_some());
        while let Some(wake) = drain.next_wake(Instant::now()) {
            tokio::select! {
                changed = stream.deliveries.changed() => match changed {
                    Ok(()) => drain.delivered(Instant::now()),
                    // The listener is gone: nothing more can arrive.
                    Err(_) => break,
                },
                // Seen, or Lambda dropped records: either way it is settled.
                _ = async { report.as_mut()?.await.ok() }, if report.is_some() => {
                    report = None;
                    drain.report_settled();
                }
                () = sleep_until(wake) => {}
            }
        }
        Ok(())
    }
}

/// After a flush: the worker's answer to the wait for runtimeDone, if it came meanwhile. It is
/// reported by the next `WaitForRuntimeDone` step, after `on_flush_done`, as the policy
/// expects.
fn take_answer(
    runtime_done: &mut Option<oneshot::Receiver<Waited>>,
    seen_at: &mut Option<Instant>,
    dropped: &mut bool,
) {
    let Some(rx) = runtime_done.as_mut() else {
        return;
    };
    if seen_at.is_some() {
        return;
    }
    match rx.try_recv() {
        Ok(Waited::Seen) => *seen_at = Some(Instant::now()),
        Ok(Waited::Dropped) => {
            *runtime_done = None;
            *dropped = true;
        }
        // Not yet; or the worker is gone, which the next wait reports.
        Err(_) => {}
    }
}

/// Completes once the listener has received `request_id`'s `platform.runtimeDone`; never
/// when there is no stream to tell.
async fn runtime_done_of(seen: Option<&mut watch::Receiver<String>>, request_id: &str) {
    match seen {
        Some(rx) => {
            if rx.wait_for(|id| id == request_id).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
