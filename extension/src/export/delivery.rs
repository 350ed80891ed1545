//! Delivery: the export buffer, the exporter and self-telemetry behind one small API.
//!
//! ```text
//! let config = ExportConfig::from_env(&ProcessEnv)?;  // every bad variable reported
//! let mut delivery = Delivery::new(config, interval, budget, stats); // no I/O, no TLS
//! delivery.set_resource(resource);                    // resource of self-telemetry
//! delivery.push(signals);                             // never blocks; drops are counted
//! let outcome = delivery.flush(deadline).await;       // returns by `deadline`
//! ```
//!
//! The worker (`crate::pipeline::worker`) owns the `Delivery` next to the mapper: it pushes
//! what the mapper produces and calls `flush` for the lifecycle's flush and shutdown messages,
//! after mapping what was already queued, so a flush that follows `platform.runtimeDone`
//! includes what arrived with it. When to flush is `crate::lifecycle::policy`'s decision.
//!
//! # Guarantees of [`Delivery::flush`]
//!
//! - It returns by its deadline (plus the time to close a socket): no request is in flight
//!   afterwards, so none can be frozen half-way and resent after the thaw (ADR 0004).
//! - What was not delivered stays buffered, in order, for the next flush; the buffer's bound
//!   still applies (oldest dropped first, counted).
//! - Refused data (4xx, partial success) is counted as `rejected`; other non-retryable failures
//!   as `export_failed`; signals with no endpoint as `no_endpoint`.
//! - After the data, a self-telemetry snapshot (`contrail.*` metrics) is sent if time is left.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::time::Instant;

use crate::diag;
use crate::diag::{DropReason, Stats};
use crate::export::aws::credentials::Provider;
use crate::export::aws::secrets::{self, Secrets};
use crate::export::body::encode_entries;
use crate::export::breaker::{self, Breaker, Probe, State};
#[cfg(test)]
use crate::export::buffer::BufferCounters;
use crate::export::buffer::{Buffer, Held};
use crate::export::config::ExportConfig;
use crate::export::cut::Cut;
use crate::export::self_telemetry::{DropWarner, SelfTelemetry};
use crate::export::{ExportResult, Exporter, LatencySink, Outcome};
use crate::pipeline::{Item, Signal, Signals};

mod self_report;

/// What one flush did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FlushOutcome {
    /// Records the backend accepted during this flush.
    pub(crate) exported: u64,
    /// Records dropped during this flush (refused or failed).
    pub(crate) dropped: u64,
    /// Export requests abandoned at the deadline (their data was kept).
    pub(crate) abandoned: u64,
    /// What is still buffered.
    pub(crate) held: Held,
    /// Whether the buffer was emptied.
    pub(crate) complete: bool,
    /// Whether the self-telemetry snapshot was delivered.
    pub(crate) self_telemetry_sent: bool,
    pub(crate) duration: Duration,
}

/// The buffer, the exporter and self-telemetry. See the module documentation.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// How often self-telemetry is due when nothing else makes it due.
    self_telemetry_every: Duration,
    buffer: Buffer,
    exporter: Exporter,
    stats: Arc<Stats>,
    selftel: SelfTelemetry,
    resource: Option<Resource>,
    warner: DropWarner,
    no_endpoint_noted: bool,
    /// When self-telemetry last reached the backend, and the drop total it reported.
    selftel_sent: Option<(Instant, u64)>,
    /// The secrets resolver's task, until [`Delivery::take_resolver`] hands it out.
    resolver: Option<Resolver>,
    /// One breaker per endpoint (`host:port`), shared by the signals sent there.
    breakers: Vec<(String, Breaker)>,
    /// Each signal's breaker, when it has an endpoint.
    breaker_of: [Option<usize>; 3],
}

/// The most a request of a flush that overlaps the function's work carries: small enough that
/// the piece in flight when the runtime is done finishes within a few milliseconds.
pub(crate) const PIECE_BYTES: usize = 64 * 1024;

/// Feeds each attempt to self-telemetry and to the endpoint's health estimate, and notes
/// whether one failed (a flush that kept data because the backend failed, not because it was
/// stopped or waited for secrets).
struct Observer<'a> {
    selftel: &'a mut SelfTelemetry,
    breaker: Option<&'a mut Breaker>,
    failed: bool,
}

impl LatencySink for Observer<'_> {
    fn observe_export(&mut self, signal: Signal, latency: Duration, outcome: Outcome) {
        self.selftel.observe_export(signal, latency, outcome);
        let attempt = match outcome {
            Outcome::Ok | Outcome::Failed => breaker::Attempt::Answered,
            Outcome::Retryable => breaker::Attempt::Failed,
            Outcome::Abandoned => breaker::Attempt::TimedOut,
            // The runtime was done: nothing learned of the backend.
            Outcome::Cut => return,
        };
        if attempt != breaker::Attempt::Answered {
            self.failed = true;
        }
        if let Some(b) = self.breaker.as_deref_mut() {
            b.observe(attempt, latency);
        }
    }
}

/// The secrets resolver's task: the caller spawns it.
pub(crate) struct Resolver(pub(crate) Pin<Box<dyn Future<Output = ()>>>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

static REJECTED: diag::Every = diag::Every::new(Duration::from_secs(60));
static FAILED: diag::Every = diag::Every::new(Duration::from_secs(60));
static NO_ENDPOINT: diag::Once = diag::Once::new();
static BREAKER: diag::Every = diag::Every::new(Duration::from_secs(60));
/// One warning per cause of a refusal with advice (`DropReason` order).
static ADVISED: [diag::Once; DropReason::ALL.len()] =
    [const { diag::Once::new() }; DropReason::ALL.len()];

impl Delivery {
    /// `self_telemetry_every`: how often self-telemetry is reported when nothing else makes it
    /// due (the flush interval).
    /// `flush_budget` is `CONTRAIL_FLUSH_BUDGET_MS`: a backend slower than it on average is
    /// not worth the function's time (its breaker opens).
    pub(crate) fn new(
        config: ExportConfig,
        self_telemetry_every: Duration,
        flush_budget: Duration,
        stats: Arc<Stats>,
    ) -> Self {
        let mut buffer = Buffer::new(
            config.buffer_max_bytes,
            config.batch_max_bytes,
            stats.clone(),
        );
        for signal in Signal::ALL {
            let limits = config.signal(signal).limits;
            buffer.set_limits(signal, limits.bytes, limits.records);
        }
        let credentials = Arc::new(tokio::sync::Mutex::new(Provider::new(
            config.credentials.clone(),
        )));
        let references = config.secret_references();
        let (secrets, resolver) = if references.is_empty() {
            (None, None)
        } else {
            let secrets = Secrets::new(references);
            let task = Resolver(Box::pin(secrets::run(
                secrets.clone(),
                credentials.clone(),
                config.endpoints.clone(),
                stats.clone(),
            )));
            (Some(secrets), Some(task))
        };
        let exporter = Exporter::new(&config, stats.clone(), credentials, secrets);
        let mut breakers: Vec<(String, Breaker)> = Vec::new();
        let breaker_of = Signal::ALL.map(|signal| {
            let origin = exporter.origin(signal)?;
            let name = format!("{}:{}", origin.host, origin.port);
            Some(match breakers.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    breakers.push((name, Breaker::new(flush_budget)));
                    breakers.len() - 1
                }
            })
        });
        Delivery {
            self_telemetry_every,
            buffer,
            exporter,
            stats,
            selftel: SelfTelemetry::new(),
            resource: None,
            warner: DropWarner::default(),
            no_endpoint_noted: false,
            selftel_sent: None,
            resolver,
            breakers,
            breaker_of,
        }
    }

    /// Whether an endpoint's breaker is open (or half-open): flushing after the runtime is
    /// done would cost the function time for nothing, so the lifecycle does not.
    pub(crate) fn backend_held(&self) -> bool {
        self.breakers.iter().any(|(_, b)| b.is_held())
    }

    #[cfg(test)]
    /// The breaker of `signal`'s endpoint.
    pub(crate) fn breaker(&self, signal: Signal) -> Option<&Breaker> {
        Some(&self.breakers[self.breaker_of[signal.index()]?].1)
    }

    /// The secrets resolver's task, once, when a header names a secret: spawn it beside the
    /// worker. Without it secret values never come (exports that need them are deferred).
    pub(crate) fn take_resolver(&mut self) -> Option<Resolver> {
        self.resolver.take()
    }

    /// An INVOKE: start fetching secret values, so the first flush finds them.
    pub(crate) fn prefetch(&self) {
        self.exporter.prefetch();
    }

    /// A SnapStart restore: fetch credentials and secret values again before the next export.
    pub(crate) fn restored(&mut self) {
        self.exporter.restored();
    }

    /// The resource attached to self-telemetry (normally the function's resource).
    pub(crate) fn set_resource(&mut self, resource: Resource) {
        self.resource = Some(resource);
    }

    /// Buffer `signals`. Never blocks. Over the bound the oldest data is dropped and counted;
    /// a signal without an endpoint is dropped and counted as `no_endpoint`.
    pub(crate) fn push(&mut self, signals: Signals) {
        for item in signals.into_items() {
            if self.sendable(&item) {
                self.buffer.push_item(item);
            }
        }
    }

    /// Like [`Delivery::push`], for data that must not push out what is buffered: when the
    /// items that have an endpoint do not fit beside it, nothing is pushed, and the records
    /// of those items are returned for the caller to count.
    pub(crate) fn push_if_room(&mut self, signals: Signals) -> Option<u64> {
        let items: Vec<Item> = signals
            .into_items()
            .filter(|item| self.sendable(item))
            .collect();
        self.buffer.push_if_room(items).err()
    }

    /// Whether `item`'s signal has an endpoint; if not, its records are counted as
    /// `no_endpoint`.
    fn sendable(&mut self, item: &Item) -> bool {
        if self.exporter.has_endpoint(item.signal()) {
            return true;
        }
        self.stats.dropped(DropReason::NoEndpoint, item.records());
        self.note_no_endpoint();
        false
    }

    /// How full the buffer is: held bytes ÷ its bound.
    pub(crate) fn buffer_fill(&self) -> f64 {
        self.buffer.fill()
    }

    #[cfg(test)]
    /// What is buffered now.
    pub(crate) fn held(&self) -> Held {
        self.buffer.held()
    }

    #[cfg(test)]
    /// The buffer's cumulative counts (`received = exported + dropped + held`).
    pub(crate) fn counters(&self) -> BufferCounters {
        self.buffer.counters()
    }

    /// Export what fits before `deadline`; what is left stays buffered.
    pub(crate) async fn flush(&mut self, deadline: Instant) -> FlushOutcome {
        self.flush_inner(deadline, false, None).await
    }

    /// A flush that overlaps the function's own work: requests of at most [`PIECE_BYTES`],
    /// none started once `cut` has fired (the runtime is done), and no retry waited for after
    /// it. It is also where a half-open endpoint is probed.
    pub(crate) async fn flush_while_running(
        &mut self,
        deadline: Instant,
        cut: &Cut,
    ) -> FlushOutcome {
        self.flush_inner(deadline, false, Some(cut)).await
    }

    /// The last flush before the process exits: like [`Delivery::flush`], and it always
    /// reports self-telemetry.
    pub(crate) async fn finish(&mut self, deadline: Instant) -> FlushOutcome {
        self.flush_inner(deadline, true, None).await
    }

    /// Whether `signal` may be sent in this flush: at once if its endpoint's breaker is
    /// closed (or in the last flush, whatever it says); after a probe answered in time if it
    /// is half-open and the flush overlaps the function's work; else not.
    async fn admitted(
        &mut self,
        signal: Signal,
        deadline: Instant,
        last: bool,
        cut: Option<&Cut>,
    ) -> bool {
        let Some(b) = self.breaker_of[signal.index()] else {
            return true;
        };
        if last {
            return true;
        }
        match self.breakers[b].1.state(Instant::now()) {
            State::Closed => true,
            State::Open => false,
            // A probe costs the function nothing only while it runs.
            State::HalfOpen if cut.is_none() => false,
            State::HalfOpen => {
                let config = self.exporter.config(signal);
                let probe =
                    match encode_entries(signal, Vec::new(), config.protocol, config.compression) {
                        Ok(body) => {
                            let mut observer = Observer {
                                selftel: &mut self.selftel,
                                breaker: Some(&mut self.breakers[b].1),
                                failed: false,
                            };
                            self.exporter
                                .probe(signal, body, deadline, cut, &mut observer)
                                .await
                        }
                        Err(_) => Some(Probe::Failed { retry_after: None }),
                    };
                // Not sent: the breaker stays as it is, and so does the data.
                let Some(probe) = probe else {
                    return false;
                };
                let breaker = &mut self.breakers[b].1;
                breaker.on_probe(Instant::now(), probe);
                if breaker.is_held() {
                    false
                } else {
                    diag::info!(
                        "the backend at {} answers again: exports resume",
                        self.breakers[b].0
                    );
                    true
                }
            }
        }
    }

    /// After `signal`'s data was sent: tell its breaker whether the flush could finish.
    fn judge(&mut self, signal: Signal, failed: bool, sent: bool) {
        let Some(b) = self.breaker_of[signal.index()] else {
            return;
        };
        let now = Instant::now();
        let retry_after = self
            .exporter
            .not_before(signal)
            .map(|at| at.saturating_duration_since(now));
        let (name, breaker) = &mut self.breakers[b];
        let was_held = breaker.is_held();
        if failed {
            breaker.on_unfinished(now, retry_after);
        } else if sent {
            breaker.on_finished(now);
        }
        if !was_held && breaker.is_held() {
            BREAKER.warn(format_args!(
                "the backend at {name} could not take a flush inside its budget: data is kept and exported while the function runs or at shutdown, and the backend is probed with backoff until it answers"
            ));
        }
    }

    async fn flush_inner(
        &mut self,
        deadline: Instant,
        last: bool,
        cut: Option<&Cut>,
    ) -> FlushOutcome {
        let started = Instant::now();
        let before = self.buffer.counters();
        let mut abandoned = 0;
        let mut selftel_due = self.self_telemetry_due(last);
        let mut self_telemetry_sent = false;
        let piece = if cut.is_some_and(Cut::can_fire) {
            PIECE_BYTES
        } else {
            usize::MAX
        };
        for signal in Signal::ALL {
            if self.buffer.queued(signal) == 0 && !(signal == Signal::Metrics && selftel_due) {
                continue;
            }
            if !self.admitted(signal, deadline, last, cut).await {
                if signal == Signal::Metrics {
                    selftel_due = false;
                }
                continue;
            }
            let mut failed = false;
            let mut sent = false;
            // Whether the flush stops here (its time is up, or the backend did not answer), or
            // goes on with the next signal.
            let stop = loop {
                let Some(batch) = self.buffer.take_up_to(signal, piece) else {
                    break false;
                };
                if Instant::now() >= deadline || cut.is_some_and(Cut::is_fired) {
                    self.buffer.requeue(batch);
                    break true;
                }
                sent = true;
                // Self-telemetry rides in the first metrics request rather than its own.
                let mut chunks = batch.chunks();
                let carries_selftel = signal == Signal::Metrics && selftel_due;
                if carries_selftel {
                    chunks.push(self.self_telemetry_entry(started));
                }
                let config = self.exporter.config(signal);
                let body = match encode_entries(signal, chunks, config.protocol, config.compression)
                {
                    Ok(body) => body,
                    Err(e) => {
                        FAILED.warn(format_args!(
                            "cannot encode {} for export, dropped: {e}",
                            signal.as_str()
                        ));
                        self.buffer.drop_batch(batch, DropReason::ExportFailed);
                        continue;
                    }
                };
                let b = self.breaker_of[signal.index()];
                let mut observer = Observer {
                    selftel: &mut self.selftel,
                    breaker: b.map(|b| &mut self.breakers[b].1),
                    failed: false,
                };
                let result = self
                    .exporter
                    .export_until(signal, body, deadline, cut, &mut observer)
                    .await;
                // A failed attempt counts only when the export did not recover from it
                // inside this flush: a retry that delivered is a healthy backend.
                failed |= observer.failed
                    && matches!(
                        result,
                        ExportResult::Deferred { .. } | ExportResult::Abandoned
                    );
                match result {
                    ExportResult::Delivered { rejected, message } => {
                        if carries_selftel {
                            selftel_due = false;
                            self_telemetry_sent = true;
                            self.selftel_sent = Some((Instant::now(), self.dropped_total()));
                        }
                        if rejected > 0 {
                            REJECTED.warn(format_args!(
                                "the backend refused {rejected} of {} {}: {message}",
                                batch.records(),
                                signal.as_str()
                            ));
                        }
                        self.buffer.ack(batch, rejected);
                    }
                    ExportResult::Rejected {
                        status,
                        message,
                        reason,
                        advice,
                    } => {
                        let records = batch.records();
                        let what = signal.as_str();
                        match (&advice, reason) {
                            (Some(advice), _) => {
                                ADVISED[reason.index()].warn(format_args!(
                                    "the backend refused {records} {what} with HTTP {status} ({message}): {advice}. Such refusals are counted as dropped, reason {}",
                                    reason.as_str()
                                ));
                            }
                            (None, DropReason::SecretUnavailable) => {
                                ADVISED[reason.index()].warn(format_args!(
                                    "{records} {what} not exported: {message}; counted as dropped, reason secret_unavailable"
                                ));
                            }
                            (None, _) => {
                                REJECTED.warn(format_args!(
                                    "the backend refused {records} {what} with HTTP {status}: {message}"
                                ));
                            }
                        }
                        self.buffer.drop_batch(batch, reason);
                    }
                    ExportResult::Failed { reason } => {
                        FAILED.warn(format_args!(
                            "exporting {} failed, {} records dropped: {reason}",
                            signal.as_str(),
                            batch.records()
                        ));
                        self.buffer.drop_batch(batch, DropReason::ExportFailed);
                    }
                    ExportResult::Deferred { reason } => {
                        FAILED.warn(format_args!(
                            "exporting {} did not succeed before the flush deadline, data kept: {reason}",
                            signal.as_str()
                        ));
                        self.buffer.requeue(batch);
                        break false;
                    }
                    ExportResult::Abandoned => {
                        abandoned += 1;
                        FAILED.warn(format_args!(
                            "the backend did not answer before the flush deadline; data kept for the next flush (raise CONTRAIL_FLUSH_BUDGET_MS if this repeats)"
                        ));
                        self.buffer.requeue(batch);
                        failed = true;
                        break true;
                    }
                }
            };
            self.judge(signal, failed, sent);
            if stop {
                break;
            }
        }
        self.warner.check(&self.stats);
        if selftel_due
            && !cut.is_some_and(Cut::is_fired)
            && self.admitted(Signal::Metrics, deadline, last, None).await
            && self.send_self_telemetry(deadline, started).await
        {
            self_telemetry_sent = true;
            self.selftel_sent = Some((Instant::now(), self.dropped_total()));
        }
        let duration = started.elapsed();
        self.selftel.observe_flush(duration);
        let after = self.buffer.counters();
        let held = self.buffer.held();
        FlushOutcome {
            exported: after.exported - before.exported,
            dropped: after.dropped - before.dropped,
            abandoned,
            held,
            complete: held.records == 0,
            self_telemetry_sent,
            duration,
        }
    }

    fn note_no_endpoint(&mut self) {
        if self.no_endpoint_noted {
            return;
        }
        self.no_endpoint_noted = true;
        let missing: Vec<&str> = Signal::ALL
            .iter()
            .filter(|s| !self.exporter.has_endpoint(**s))
            .map(|s| s.as_str())
            .collect();
        NO_ENDPOINT.warn(format_args!(
            "no OTLP endpoint for {}: set OTEL_EXPORTER_OTLP_ENDPOINT (or a per-signal endpoint); that data is dropped and counted",
            missing.join(", ")
        ));
    }
}
