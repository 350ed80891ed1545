//! Delivery's own report: when the self-telemetry snapshot is due, the snapshot as an encoded
//! entry, and its request of its own when no metrics request carried it.

use std::time::SystemTime;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Delivery, Observer};
use crate::diag::DropReason;
use crate::export::ExportResult;
use crate::export::body::encode_entries;
use crate::export::self_telemetry::EndpointReport;
use crate::pipeline::{Item, Signal};

impl Delivery {
    /// Self-telemetry is reported on the first and the last flush, when something was dropped
    /// since the last report, and otherwise once per flush interval: not on every flush, where
    /// in `end` mode it would cost a request per invocation.
    pub(super) fn self_telemetry_due(&self, last: bool) -> bool {
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

    pub(super) fn dropped_total(&self) -> u64 {
        DropReason::ALL
            .iter()
            .map(|r| self.stats.dropped_total(*r))
            .sum()
    }

    /// The self-telemetry snapshot as one encoded `resource_metrics` entry.
    pub(super) fn self_telemetry_entry(&self, started: Instant) -> Bytes {
        // The snapshot's own flush is not over yet: include the time so far.
        let mut selftel = self.selftel.clone();
        selftel.observe_flush(started.elapsed());
        let now = Instant::now();
        let endpoints: Vec<EndpointReport> = self
            .breakers
            .iter()
            .map(|(endpoint, b)| EndpointReport {
                endpoint: endpoint.clone(),
                state: b.state(now),
                health: b.health(),
            })
            .collect();
        let snapshot = Item::Metrics(selftel.snapshot(
            &self.stats,
            self.buffer.held(),
            &endpoints,
            self.resource.clone(),
            SystemTime::now(),
        ));
        let mut buf = Vec::new();
        snapshot.encode_field_into(&mut buf);
        Bytes::from(buf)
    }

    /// Self-telemetry in a request of its own, when no metrics request carried it. Its
    /// attempts count toward the endpoint's health like any other.
    pub(super) async fn send_self_telemetry(
        &mut self,
        deadline: Instant,
        started: Instant,
    ) -> bool {
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
        let mut observer = Observer {
            selftel: &mut self.selftel,
            breaker: self.breaker_of[signal.index()].map(|b| &mut self.breakers[b].1),
            failed: false,
        };
        let result = self
            .exporter
            .export(signal, body, deadline, &mut observer)
            .await;
        let failed = observer.failed
            && matches!(
                result,
                ExportResult::Deferred { .. } | ExportResult::Abandoned
            );
        self.judge(signal, failed, true);
        matches!(result, ExportResult::Delivered { .. })
    }
}
