//! Delivery: the export buffer, the exporter and self-telemetry behind one small API.
//!
//! ```text
//! let config = ExportConfig::from_env(&ProcessEnv)?;         // every bad variable reported
//! let mut delivery = Delivery::new(config, interval, stats); // no I/O, no TLS set-up
//! delivery.set_resource(resource);                           // resource of self-telemetry
//! delivery.push(signals);                                    // never blocks; drops are counted
//! let outcome = delivery.flush(deadline).await;              // returns by `deadline`
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

use bytes::Bytes;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::time::Instant;

use crate::diag;
use crate::diag::{DropReason, Stats};
use crate::export::aws::credentials::Provider;
use crate::export::aws::secrets::{self, Secrets};
use crate::export::body::encode_entries;
#[cfg(test)]
use crate::export::buffer::BufferCounters;
use crate::export::buffer::{Buffer, Held};
use crate::export::config::ExportConfig;
use crate::export::self_telemetry::{DropWarner, SelfTelemetry};
use crate::export::{ExportResult, Exporter};
use crate::pipeline::Signals;
use crate::pipeline::{Item, Signal};

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
/// One warning per cause of a refusal with advice (`DropReason` order).
static ADVISED: [diag::Once; DropReason::ALL.len()] =
    [const { diag::Once::new() }; DropReason::ALL.len()];

impl Delivery {
    /// `self_telemetry_every`: how often self-telemetry is reported when nothing else makes it
    /// due (the flush interval).
    pub(crate) fn new(
        config: ExportConfig,
        self_telemetry_every: Duration,
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
        }
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
            let signal = item.signal();
            if self.exporter.has_endpoint(signal) {
                self.buffer.push_item(item);
            } else {
                let records = item.records();
                self.stats.dropped(DropReason::NoEndpoint, records);
                self.note_no_endpoint();
            }
        }
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
        self.flush_inner(deadline, false).await
    }

    /// The last flush before the process exits: like [`Delivery::flush`], and it always
    /// reports self-telemetry.
    pub(crate) async fn finish(&mut self, deadline: Instant) -> FlushOutcome {
        self.flush_inner(deadline, true).await
    }

    /// Self-telemetry is reported on the first and the last flush, when something was dropped
    /// since the last report, and otherwise once per flush interval: not on every flush, where
    /// in `end` mode it would cost a request per invocation.
    fn self_telemetry_due(&self, last: bool) -> bool {
        if !self.exporter.has_endpoint(Signal::Metrics) {
            return false;
        }
        match self.selftel_sent {
            None => true,
            Some((at, dropped)) => {
                last || dropped != self.dropped_total() || at.elapsed() >= self.self_telemetry_every
            }
        }
    }

    fn dropped_total(&self) -> u64 {
        DropReason::ALL
            .iter()
            .map(|r| self.stats.dropped_total(*r))
            .sum()
    }

    /// The self-telemetry snapshot as one encoded `resource_metrics` entry.
    fn self_telemetry_entry(&self, started: Instant) -> Bytes {
        // The snapshot's own flush is not over yet: include the time so far.
        let mut selftel = self.selftel.clone();
        selftel.observe_flush(started.elapsed());
        let snapshot = Item::Metrics(selftel.snapshot(
            &self.stats,
            self.buffer.held(),
            self.resource.clone(),
            SystemTime::now(),
        ));
        let mut buf = Vec::new();
        snapshot.encode_field_into(&mut buf);
        Bytes::from(buf)
    }

    async fn flush_inner(&mut self, deadline: Instant, last: bool) -> FlushOutcome {
        let started = Instant::now();
        let before = self.buffer.counters();
        let mut abandoned = 0;
        let mut selftel_due = self.self_telemetry_due(last);
        let mut self_telemetry_sent = false;
        'signals: for signal in Signal::ALL {
            while let Some(batch) = self.buffer.take(signal) {
                if Instant::now() >= deadline {
                    self.buffer.requeue(batch);
                    break 'signals;
                }
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
                match self
                    .exporter
                    .export(signal, body, deadline, &mut self.selftel)
                    .await
                {
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
                        continue 'signals;
                    }
                    ExportResult::Abandoned => {
                        abandoned += 1;
                        FAILED.warn(format_args!(
                            "the backend did not answer before the flush deadline; data kept for the next flush (raise CONTRAIL_FLUSH_BUDGET_MS if this repeats)"
                        ));
                        self.buffer.requeue(batch);
                        break 'signals;
                    }
                }
            }
        }
        self.warner.check(&self.stats);
        if selftel_due && self.send_self_telemetry(deadline, started).await {
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

    /// Self-telemetry in a request of its own, when no metrics request carried it.
    async fn send_self_telemetry(&mut self, deadline: Instant, started: Instant) -> bool {
        let signal = Signal::Metrics;
        if Instant::now() >= deadline {
            return false;
        }
        let entry = self.self_telemetry_entry(started);
        let config = self.exporter.config(signal);
        let Ok(body) = encode_entries(signal, vec![entry], config.protocol, config.compression)
        else {
            return false;
        };
        matches!(
            self.exporter
                .export(signal, body, deadline, &mut self.selftel)
                .await,
            ExportResult::Delivered { .. }
        )
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
