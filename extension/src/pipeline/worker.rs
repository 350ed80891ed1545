//! The worker: the one task that owns the mapping and delivery stages.
//!
//! It takes [`Intake`] from the bounded intake queue and [`Control`] messages from the
//! lifecycle on a separate channel, control first, so a flush is never stuck behind a full data
//! queue. It also remembers which requests' `platform.runtimeDone` and `platform.report` it has
//! processed, and answers the lifecycle's waits for them (also when a `platform.logsDropped`
//! says the record may have been dropped); and after each unit it publishes how
//! full the export buffer is, waking the lifecycle when the fill reaches the high-water mark it
//! was given (the flush policy's).
//!
//! ```text
//! lifecycle ── WorkerHandle ── Control (unbounded) ──▶ run() ◀── Intake (bounded) ── intake
//!           ◀── oneshot replies, BufferGauge (fill, pressure) ──┘
//! ```
//!
//! The stages themselves sit behind [`Stages`] so this loop can be tested on its own; the
//! production stages are [`crate::pipeline::stages::Pipeline`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::export::FlushOutcome;
use crate::export::cut::Cut;
use crate::intake::telemetry::event::{Event, TelemetryRecord};
use crate::lambda_api::InvokeEvent;
use crate::mapping::OwnInit;
use crate::pipeline::{Intake, OtlpPayload};

/// How long a flush reply may come after its deadline before the caller stops waiting for it.
const REPLY_GRACE: Duration = Duration::from_millis(20);

/// How many recent request ids are remembered per kind (Managed Instances run several
/// invocations at once; classic Lambda one at a time).
const REMEMBERED: usize = 64;

/// What the worker drives: the mapper and the delivery side.
pub(crate) trait Stages {
    /// An INVOKE event: the X-Ray header and deadline of a request.
    fn invoke(&mut self, event: &InvokeEvent);
    /// Contrail's own start-up times, once its first `next` returned.
    fn own_init(&mut self, _own: OwnInit) {}
    /// The decoded records of one Telemetry API POST.
    fn telemetry(&mut self, records: Vec<TelemetryRecord>);
    /// One request of the local OTLP receiver.
    fn otlp(&mut self, payload: OtlpPayload);
    /// Export what is buffered, returning by `deadline`. `last` at shutdown: also give up
    /// per-invocation state that is still incomplete, so it is exported rather than lost.
    /// `cut`, for a flush that overlaps the function's work: stop at the next piece boundary
    /// once it fires.
    fn flush(
        &mut self,
        deadline: Instant,
        last: bool,
        cut: Option<Cut>,
    ) -> impl Future<Output = FlushOutcome>;
    /// How full the export buffer is: held bytes ÷ its bound.
    fn buffer_fill(&self) -> f64;
    /// Whether an export endpoint's circuit breaker holds its data (open or half-open).
    fn backend_held(&self) -> bool {
        false
    }
    /// The lifecycle is about to call `next`: the invocation is over as far as it knows.
    fn idle(&mut self) {}
    /// When the stages want [`Stages::sample`] called (only while an invocation runs).
    fn sample_due(&self) -> Option<Instant> {
        None
    }
    /// The time of [`Stages::sample_due`] has come.
    fn sample(&mut self) {}
}

/// What the lifecycle tells the worker.
#[derive(Debug)]
pub(crate) enum Control {
    /// An INVOKE event arrived.
    Invoke(InvokeEvent),
    /// Contrail's process start and first `next` (after that `next` returned).
    OwnInit(OwnInit),
    /// The lifecycle is about to call `next` again.
    Idle,
    /// Answer when `platform.runtimeDone` of `request_id` has been processed (at once if it
    /// already has been), or when a `platform.logsDropped` was. The caller bounds the wait.
    WaitRuntimeDone {
        request_id: String,
        reply: oneshot::Sender<Waited>,
    },
    /// Answer when `platform.report` of `request_id` has been processed, or a
    /// `platform.logsDropped` was.
    WaitReport {
        request_id: String,
        reply: oneshot::Sender<Waited>,
    },
    /// Process what is queued, then export what is buffered, returning by `deadline`.
    Flush {
        deadline: Instant,
        /// Fired when the runtime is done, for a flush that overlaps the function's work.
        cut: Option<Cut>,
        reply: oneshot::Sender<FlushOutcome>,
    },
    /// Like `Flush`, and the last thing asked: process and export everything still held.
    Shutdown {
        deadline: Instant,
        reply: oneshot::Sender<FlushOutcome>,
    },
}

/// How a wait for a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The record was processed.
    Seen,
    /// Lambda reported dropped records (`platform.logsDropped`) while the wait was pending:
    /// the record may have been among them.
    Dropped,
}

/// The worker is gone: its control channel closed or it dropped a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the processing task has stopped")]
pub(crate) struct WorkerGone;

/// The export buffer's fill as the worker last published it, and the wake-up when it is at or
/// above the high-water mark. The one place buffer pressure lives.
#[derive(Debug)]
struct BufferGauge {
    /// The fill (held bytes ÷ bound) as `f64` bits.
    fill: AtomicU64,
    high_water: f64,
    pressure: Notify,
    /// An export endpoint's breaker holds its data ([`Stages::backend_held`]).
    held: std::sync::atomic::AtomicBool,
}

impl BufferGauge {
    fn publish(&self, fill: f64, after_intake: bool) {
        self.fill.store(fill.to_bits(), Ordering::Relaxed);
        // Intake is what fills the buffer; a flush only empties it.
        if after_intake && fill >= self.high_water {
            self.pressure.notify_one();
        }
    }

    fn fill(&self) -> f64 {
        f64::from_bits(self.fill.load(Ordering::Relaxed))
    }
}

/// The id [`WorkerHandle::report`] waits under for the init phase's `platform.initReport`
/// (request ids are UUIDs).
pub(crate) const INIT_REPORT: &str = "init";

/// The lifecycle's handle on the worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerHandle {
    tx: mpsc::UnboundedSender<Control>,
    gauge: Arc<BufferGauge>,
}

/// The worker's end of [`channel`]: what [`run`] serves.
#[derive(Debug)]
pub(crate) struct Inbox {
    control: mpsc::UnboundedReceiver<Control>,
    gauge: Arc<BufferGauge>,
}

/// Create the control channel and the buffer gauge; the worker wakes [`WorkerHandle::pressure`]
/// whenever intake leaves the buffer at least `high_water` full.
///
/// The queue is unbounded in type but not in practice: only the lifecycle (and the Managed
/// Instances ticker) send, a few messages per invocation, and both wait for the worker's
/// replies.
pub(crate) fn channel(high_water: f64) -> (WorkerHandle, Inbox) {
    let (tx, control) = mpsc::unbounded_channel();
    let gauge = Arc::new(BufferGauge {
        fill: AtomicU64::new(0f64.to_bits()),
        high_water,
        pressure: Notify::new(),
        held: std::sync::atomic::AtomicBool::new(false),
    });
    (
        WorkerHandle {
            tx,
            gauge: gauge.clone(),
        },
        Inbox { control, gauge },
    )
}

impl WorkerHandle {
    fn send(&self, msg: Control) -> Result<(), WorkerGone> {
        self.tx.send(msg).map_err(|_| WorkerGone)
    }

    /// Tell the worker that the loop is about to call `next`.
    pub(crate) fn idle(&self) -> Result<(), WorkerGone> {
        self.send(Control::Idle)
    }

    /// Tell the worker about an INVOKE event.
    pub(crate) fn invoke(&self, event: InvokeEvent) -> Result<(), WorkerGone> {
        self.send(Control::Invoke(event))
    }

    /// Tell the worker when Contrail started and sent its first `next`.
    pub(crate) fn own_init(&self, own: OwnInit) -> Result<(), WorkerGone> {
        self.send(Control::OwnInit(own))
    }

    /// A receiver that completes when `request_id`'s `platform.runtimeDone` was processed, or
    /// Lambda reported dropped records.
    pub(crate) fn runtime_done(
        &self,
        request_id: &str,
    ) -> Result<oneshot::Receiver<Waited>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Control::WaitRuntimeDone {
            request_id: request_id.to_owned(),
            reply,
        })?;
        Ok(rx)
    }

    /// A receiver that completes when `request_id`'s `platform.report` was processed, or Lambda
    /// reported dropped records. [`INIT_REPORT`] waits for `platform.initReport`.
    pub(crate) fn report(&self, request_id: &str) -> Result<oneshot::Receiver<Waited>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Control::WaitReport {
            request_id: request_id.to_owned(),
            reply,
        })?;
        Ok(rx)
    }

    /// Flush by `deadline`. `Ok(None)` when the reply did not come in time (the flush goes on
    /// in the background; the loop must not wait longer).
    pub(crate) async fn flush(
        &self,
        deadline: Instant,
    ) -> Result<Option<FlushOutcome>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Control::Flush {
            deadline,
            cut: None,
            reply,
        })?;
        Self::await_reply(rx, deadline).await
    }

    /// A flush that overlaps the function's work: it stops at the next piece boundary once
    /// `cut` fires. The reply comes back on the receiver, to await with [`WorkerHandle::reply`].
    pub(crate) fn flush_while_running(
        &self,
        deadline: Instant,
        cut: Cut,
    ) -> Result<oneshot::Receiver<FlushOutcome>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Control::Flush {
            deadline,
            cut: Some(cut),
            reply,
        })?;
        Ok(rx)
    }

    /// The reply of [`WorkerHandle::flush_while_running`], waited for until `deadline` (and a
    /// grace period).
    pub(crate) async fn reply(
        rx: oneshot::Receiver<FlushOutcome>,
        deadline: Instant,
    ) -> Result<Option<FlushOutcome>, WorkerGone> {
        Self::await_reply(rx, deadline).await
    }

    /// Whether an export endpoint's breaker holds its data, as of the last flush.
    pub(crate) fn backend_held(&self) -> bool {
        self.gauge.held.load(Ordering::Relaxed)
    }

    /// The final flush, by `deadline`.
    pub(crate) async fn shutdown(
        &self,
        deadline: Instant,
    ) -> Result<Option<FlushOutcome>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Control::Shutdown { deadline, reply })?;
        Self::await_reply(rx, deadline).await
    }

    /// How full the export buffer is (held bytes ÷ bound), as of the last unit of work.
    pub(crate) fn buffer_fill(&self) -> f64 {
        self.gauge.fill()
    }

    /// Completes once intake has left the buffer at or above the high-water mark (at once if
    /// that happened since the last wake-up).
    pub(crate) async fn pressure(&self) {
        self.gauge.pressure.notified().await;
    }

    async fn await_reply(
        rx: oneshot::Receiver<FlushOutcome>,
        deadline: Instant,
    ) -> Result<Option<FlushOutcome>, WorkerGone> {
        match timeout_at(deadline + REPLY_GRACE, rx).await {
            Ok(Ok(outcome)) => Ok(Some(outcome)),
            Ok(Err(_)) => Err(WorkerGone),
            Err(_) => Ok(None),
        }
    }
}

/// Request ids seen recently, oldest first.
#[derive(Debug, Default)]
struct Recent(VecDeque<String>);

impl Recent {
    fn insert(&mut self, id: &str) {
        if self.contains(id) {
            return;
        }
        if self.0.len() == REMEMBERED {
            self.0.pop_front();
        }
        self.0.push_back(id.to_owned());
    }

    fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|x| x == id)
    }
}

/// The waits for one kind of record, and the ids already seen.
#[derive(Debug, Default)]
struct Watch {
    seen: Recent,
    waiters: Vec<(String, oneshot::Sender<Waited>)>,
    /// [`INIT_REPORT`] was seen (kept apart from `seen`, which holds the recent ids only).
    init_seen: bool,
    /// Lambda reported dropped records and no record of this kind has come since: the next
    /// one waited for may have been among them (the drop can be reported before the wait is
    /// asked).
    dropped_since_seen: bool,
}

impl Watch {
    fn wait(&mut self, request_id: String, reply: oneshot::Sender<Waited>) {
        if self.seen.contains(&request_id) || (request_id == INIT_REPORT && self.init_seen) {
            let _ = reply.send(Waited::Seen);
        } else if self.dropped_since_seen {
            let _ = reply.send(Waited::Dropped);
        } else {
            self.waiters.retain(|(_, tx)| !tx.is_closed());
            self.waiters.push((request_id, reply));
        }
    }

    fn saw(&mut self, request_id: &str) {
        // The init's report stays seen: the recent ids of many invocations would push it out.
        self.init_seen |= request_id == INIT_REPORT;
        self.seen.insert(request_id);
        self.dropped_since_seen = false;
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 == request_id {
                let (_, tx) = self.waiters.swap_remove(i);
                let _ = tx.send(Waited::Seen);
            } else {
                i += 1;
            }
        }
    }

    /// Records were dropped: every pending wait ends, and so do those asked before a record of
    /// this kind comes again.
    fn dropped(&mut self) {
        self.dropped_since_seen = true;
        for (_, tx) in self.waiters.drain(..) {
            let _ = tx.send(Waited::Dropped);
        }
    }
}

/// Which kind of record a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    RuntimeDone,
    Report,
}

/// The request ids whose `platform.runtimeDone` and `platform.report` were processed, and the
/// lifecycle's waits for them.
#[derive(Debug, Default)]
struct Tracker {
    runtime_done: Watch,
    report: Watch,
}

/// What a unit of records completes, noted before it is mapped and marked after.
#[derive(Debug, Default)]
struct Observed {
    seen: Vec<(Awaited, String)>,
    /// A `platform.logsDropped` was among the records.
    dropped: bool,
}

impl Tracker {
    /// What `records` completes, to [`Tracker::mark`] once they are mapped.
    fn observe(records: &[TelemetryRecord]) -> Observed {
        let mut observed = Observed::default();
        for r in records {
            match &r.event {
                Event::RuntimeDone(rd) => observed
                    .seen
                    .push((Awaited::RuntimeDone, rd.request_id.clone())),
                Event::Report(rep) => observed
                    .seen
                    .push((Awaited::Report, rep.request_id.clone())),
                Event::InitReport(_) => observed
                    .seen
                    .push((Awaited::Report, INIT_REPORT.to_owned())),
                Event::LogsDropped(_) => observed.dropped = true,
                _ => {}
            }
        }
        observed
    }

    /// The records that came first; then a drop ends the waits they did not answer.
    fn mark(&mut self, observed: Observed) {
        for (kind, id) in observed.seen {
            match kind {
                Awaited::RuntimeDone => self.runtime_done.saw(&id),
                Awaited::Report => self.report.saw(&id),
            }
        }
        if observed.dropped {
            self.runtime_done.dropped();
            self.report.dropped();
        }
    }
}

/// The worker's state: the stages, the waits, the gauge it publishes to.
struct Worker<S> {
    stages: S,
    tracker: Tracker,
    gauge: Arc<BufferGauge>,
}

/// Run the worker until every control handle is dropped. It keeps serving after a shutdown
/// flush (the process exits right after it), so it never ends while the lifecycle runs: an end
/// is always a failure to the supervisor.
pub(crate) async fn run<S: Stages>(stages: S, inbox: Inbox, mut intake: mpsc::Receiver<Intake>) {
    let Inbox { mut control, gauge } = inbox;
    let mut worker = Worker {
        stages,
        tracker: Tracker::default(),
        gauge,
    };
    let mut intake_open = true;
    // One timer for the samples, moved when their due time changes, not made anew for each
    // message.
    let sample_timer = sleep_until(Instant::now());
    tokio::pin!(sample_timer);
    loop {
        // Armed only while an invocation runs: nothing wakes the worker while it is idle.
        let due = worker.stages.sample_due();
        if let Some(due) = due.filter(|d| *d != sample_timer.deadline()) {
            sample_timer.as_mut().reset(due);
        }
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                None => return,
                Some(msg) => worker.handle_control(&mut intake, msg).await,
            },
            item = intake.recv(), if intake_open => match item {
                // Every producer is gone: keep serving control.
                None => intake_open = false,
                Some(item) => worker.process(item),
            },
            () = &mut sample_timer, if due.is_some() => {
                worker.stages.sample();
            }
        }
    }
}

impl<S: Stages> Worker<S> {
    fn process(&mut self, item: Intake) {
        match item {
            Intake::Telemetry(records) => {
                let seen = Tracker::observe(&records);
                self.stages.telemetry(records);
                // Answer the waits only once the records are mapped: a flush that follows
                // sees them.
                self.tracker.mark(seen);
            }
            // The bytes held go back once the payload is mapped.
            Intake::Otlp(payload, _held) => self.stages.otlp(payload),
        }
        self.gauge.publish(self.stages.buffer_fill(), true);
    }

    /// Process what is queued right now (not what arrives while doing so), stopping at
    /// `deadline`: mapping runs on the one thread the lifecycle also needs; what is left is
    /// processed after.
    fn drain(&mut self, intake: &mut mpsc::Receiver<Intake>, deadline: Instant) {
        let queued = intake.len();
        for _ in 0..queued {
            if Instant::now() >= deadline {
                break;
            }
            match intake.try_recv() {
                Ok(item) => self.process(item),
                Err(_) => break,
            }
        }
    }

    async fn handle_control(&mut self, intake: &mut mpsc::Receiver<Intake>, msg: Control) {
        let (deadline, last, cut, reply) = match msg {
            Control::Invoke(event) => return self.stages.invoke(&event),
            Control::OwnInit(own) => return self.stages.own_init(own),
            Control::Idle => return self.stages.idle(),
            Control::WaitRuntimeDone { request_id, reply } => {
                return self.tracker.runtime_done.wait(request_id, reply);
            }
            Control::WaitReport { request_id, reply } => {
                return self.tracker.report.wait(request_id, reply);
            }
            Control::Flush {
                deadline,
                cut,
                reply,
            } => (deadline, false, cut, reply),
            Control::Shutdown { deadline, reply } => (deadline, true, None, reply),
        };
        self.drain(intake, deadline);
        let outcome = self.stages.flush(deadline, last, cut).await;
        // Published before the reply: the lifecycle reads the fill when the reply arrives.
        self.gauge.publish(self.stages.buffer_fill(), false);
        self.gauge
            .held
            .store(self.stages.backend_held(), Ordering::Relaxed);
        let _ = reply.send(outcome);
    }
}

#[cfg(test)]
mod tests;
