//! The pipeline's common currency: what the listener and the local receiver hand to the
//! worker, and the bounded queue between them.
//!
//! Producers (the Telemetry API listener, the local OTLP receiver) never wait: they
//! `try_send` and, when the queue is full, count the loss in [`Stats`] and move on.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::diag::{DropReason, Stats};
use crate::intake::telemetry::event::TelemetryRecord;
use crate::pipeline::held::Held;
use crate::pipeline::otlp::OtlpPayload;

/// One unit of work for the worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Intake {
    /// The decoded records of one Telemetry API POST, in delivery order.
    Telemetry(Vec<TelemetryRecord>),
    /// One request of a local OTLP receiver, and the bytes of the receivers' budget it holds
    /// until the worker has mapped it.
    Otlp(OtlpPayload, Held),
}

impl Intake {
    /// How many records this unit carries, for drop accounting: Telemetry API records, or
    /// the payload's spans, log records or metric data points.
    pub(crate) fn record_count(&self) -> u64 {
        match self {
            Intake::Telemetry(records) => records.len() as u64,
            Intake::Otlp(payload, _) => payload.records(),
        }
    }
}

/// The producer side of the intake queue. Cheap to clone; never blocks.
#[derive(Clone, Debug)]
pub(crate) struct IntakeSender {
    tx: mpsc::Sender<Intake>,
    stats: Arc<Stats>,
    /// Free slots this producer leaves to the others (see [`IntakeSender::leaving_free`]).
    reserve: usize,
}

/// Whether [`IntakeSender::offer`] queued the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    Queued,
    /// The queue was full or closed; the records were counted as dropped.
    Dropped,
}

impl IntakeSender {
    /// Queue `intake` without waiting. A full or closed queue drops it and counts the loss.
    pub(crate) fn offer(&self, intake: Intake) -> Offered {
        let records = intake.record_count();
        let room = self.tx.capacity() > self.reserve;
        match room.then(|| self.tx.try_send(intake)) {
            Some(Ok(())) => Offered::Queued,
            _ => {
                self.stats.dropped(DropReason::IntakeFull, records);
                Offered::Dropped
            }
        }
    }

    /// A producer that gives up once only `reserve` free slots are left, keeping them for the
    /// others. The local receiver uses it: a function's SDK sending a burst of small requests
    /// must not crowd out the Telemetry API batches that carry `platform.runtimeDone`, which the
    /// `end` flush mode waits for.
    pub(crate) fn leaving_free(&self, reserve: usize) -> IntakeSender {
        IntakeSender {
            reserve,
            ..self.clone()
        }
    }

    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Create the intake queue holding at most `capacity` units.
pub(crate) fn intake_queue(
    capacity: usize,
    stats: Arc<Stats>,
) -> (IntakeSender, mpsc::Receiver<Intake>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let sender = IntakeSender {
        tx,
        stats,
        reserve: 0,
    };
    (sender, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_leaving_slots_free_cannot_fill_the_queue() {
        let stats = Arc::new(Stats::default());
        let (telemetry, _rx) = intake_queue(4, stats.clone());
        let receiver = telemetry.leaving_free(2);
        assert_eq!(
            receiver.offer(Intake::Telemetry(Vec::new())),
            Offered::Queued
        );
        assert_eq!(
            receiver.offer(Intake::Telemetry(Vec::new())),
            Offered::Queued
        );
        assert_eq!(
            receiver.offer(Intake::Telemetry(Vec::new())),
            Offered::Dropped
        );
        assert_eq!(
            telemetry.offer(Intake::Telemetry(Vec::new())),
            Offered::Queued
        );
        assert_eq!(
            telemetry.offer(Intake::Telemetry(Vec::new())),
            Offered::Queued
        );
        assert_eq!(
            telemetry.offer(Intake::Telemetry(Vec::new())),
            Offered::Dropped
        );
    }
}
