//! The export buffer: OTLP data waiting for the backend, bounded in bytes.
//!
//! - Data is kept **encoded**: each resource as the protobuf bytes of field 1 of its
//!   `Export*ServiceRequest`, so a request body is the concatenation of a batch's entries and
//!   the buffer's memory is the data's wire size, several times smaller than the decoded
//!   structures. Size is that encoded length, the size of the data on the wire before
//!   compression. Data being exported (taken, not yet acknowledged) counts against the bound
//!   too, so memory never exceeds `max_bytes`.
//! - One queue per signal, oldest first. When a push does not fit, the buffer drops the **oldest**
//!   entry of the signal holding the **most bytes** until it fits: fresh data wins, and a flood of
//!   one signal (usually logs) cannot push out the others. Every dropped record is counted as
//!   [`DropReason::BufferFull`]. An entry larger than the whole buffer is dropped on arrival.
//! - Resources larger than the batch size, or with more records than a request may carry, are
//!   split on push (by scope, then by record), so one export request carries at most about
//!   `batch_bytes` and at most the signal's record limit ([`Buffer::set_limits`]: AWS's
//!   endpoints take at most 10,000 spans or log events, or 1,000 data points, per request).
//! - Records are spans, log records and metric data points (the units OTLP partial success
//!   reports).
//!
//! Accounting holds at every moment: `received = exported + dropped + held`
//! (see [`Buffer::counters`] and [`Buffer::held`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::diag::{DropReason, Stats};
use crate::pipeline::otlp::{Item, Signal, data_points};

/// Split into items of at most about `max_bytes` and at most `max_records` records each; a
/// single record larger than that stays whole (and a metric's data points stay together).
fn split(item: Item, max_bytes: usize, max_records: u64) -> Vec<Item> {
    if item.wire_len() <= max_bytes && item.records() <= max_records {
        return vec![item];
    }
    match item {
        Item::Spans(r) => split_spans(r, max_bytes, max_records, |_| 1)
            .into_iter()
            .map(Item::Spans)
            .collect(),
        Item::Metrics(r) => split_metrics(r, max_bytes, max_records, data_points)
            .into_iter()
            .map(Item::Metrics)
            .collect(),
        Item::Logs(r) => split_logs(r, max_bytes, max_records, |_| 1)
            .into_iter()
            .map(Item::Logs)
            .collect(),
    }
}

macro_rules! splitter {
    ($name:ident, $resource:ident, $scopes:ident, $scope:ident, $records:ident) => {
        fn $name(
            mut resource: $resource,
            max_bytes: usize,
            max_records: u64,
            count: impl Fn(&<$scope as Scoped>::Record) -> u64,
        ) -> Vec<$resource> {
            let scopes = std::mem::take(&mut resource.$scopes);
            let shell = resource;
            let shell_len = shell.encoded_len() + 16;
            let mut out = Vec::new();
            let mut current = shell.clone();
            let mut current_len = shell_len;
            let mut current_records = 0u64;
            for mut scope in scopes {
                let records = std::mem::take(&mut scope.$records);
                let scope_shell: $scope = scope;
                let scope_shell_len = scope_shell.encoded_len() + 16;
                let mut open = scope_shell.clone();
                current_len += scope_shell_len;
                for record in records {
                    let len = record.encoded_len() + 6;
                    let n = count(&record);
                    let has_something = !open.$records.is_empty() || !current.$scopes.is_empty();
                    if has_something
                        && (current_len + len > max_bytes || current_records + n > max_records)
                    {
                        if !open.$records.is_empty() {
                            current
                                .$scopes
                                .push(std::mem::replace(&mut open, scope_shell.clone()));
                        }
                        out.push(std::mem::replace(&mut current, shell.clone()));
                        current_len = shell_len + scope_shell_len;
                        current_records = 0;
                    }
                    current_len += len;
                    current_records += n;
                    open.$records.push(record);
                }
                if !open.$records.is_empty() {
                    current.$scopes.push(open);
                } else {
                    current_len -= scope_shell_len;
                }
            }
            if !current.$scopes.is_empty() {
                out.push(current);
            }
            out
        }
    };
}

/// The record type of a scope, for the splitters' record counts.
trait Scoped {
    type Record;
}
impl Scoped for ScopeSpans {
    type Record = opentelemetry_proto::tonic::trace::v1::Span;
}
impl Scoped for ScopeLogs {
    type Record = opentelemetry_proto::tonic::logs::v1::LogRecord;
}
impl Scoped for ScopeMetrics {
    type Record = opentelemetry_proto::tonic::metrics::v1::Metric;
}

splitter!(split_spans, ResourceSpans, scope_spans, ScopeSpans, spans);
splitter!(split_logs, ResourceLogs, scope_logs, ScopeLogs, log_records);
splitter!(
    split_metrics,
    ResourceMetrics,
    scope_metrics,
    ScopeMetrics,
    metrics
);

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Field 1 of the signal's `Export*ServiceRequest` (tag, length, message).
    data: Bytes,
    bytes: usize,
    records: u64,
}

#[cfg(test)]
/// Decode one entry back into an item.
fn decode_entry(signal: Signal, data: &[u8]) -> Option<Item> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(data)
            .ok()?
            .resource_spans
            .pop()
            .map(Item::Spans),
        Signal::Metrics => ExportMetricsServiceRequest::decode(data)
            .ok()?
            .resource_metrics
            .pop()
            .map(Item::Metrics),
        Signal::Logs => ExportLogsServiceRequest::decode(data)
            .ok()?
            .resource_logs
            .pop()
            .map(Item::Logs),
    }
}

/// Items taken from the buffer for one export request. Hand it back with exactly one of
/// [`Buffer::ack`], `Buffer::requeue` or `Buffer::drop_batch`.
#[derive(Debug)]
#[must_use = "a batch must be acknowledged, requeued or dropped"]
pub struct Batch {
    signal: Signal,
    entries: Vec<Entry>,
    bytes: usize,
    records: u64,
}

impl Batch {
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    #[cfg(test)]
    /// Encoded size of the request body (protobuf, before compression).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    /// The request body in protobuf: the entries are already field 1 of the request.
    pub(crate) fn protobuf(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.bytes);
        for entry in &self.entries {
            body.extend_from_slice(&entry.data);
        }
        body
    }

    /// The entries, each field 1 of the request: sent one after another they are the
    /// protobuf request body, without copying them into one buffer.
    pub fn chunks(&self) -> Vec<Bytes> {
        self.entries.iter().map(|e| e.data.clone()).collect()
    }

    #[cfg(test)]
    /// The items, decoded again (for inspection; export sends [`Batch::chunks`]).
    pub(crate) fn items(&self) -> impl Iterator<Item = Item> + '_ {
        let signal = self.signal;
        self.entries
            .iter()
            .filter_map(move |e| decode_entry(signal, &e.data))
    }
}

/// Cumulative record counts of the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BufferCounters {
    pub(crate) received: u64,
    pub(crate) exported: u64,
    pub(crate) dropped: u64,
}

/// What the buffer holds now (queued and being exported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) records: u64,
    pub(crate) bytes: usize,
    /// Records per signal, indexed by [`Signal::index`].
    pub(crate) records_by_signal: [u64; 3],
}

/// The bounded export buffer. See the module documentation for the policy.
#[derive(Debug)]
pub struct Buffer {
    max_bytes: usize,
    /// Per signal: the most bytes and records one batch carries.
    batch_bytes: [usize; 3],
    batch_records: [u64; 3],
    queues: [VecDeque<Entry>; 3],
    queued_bytes: [usize; 3],
    queued_records: [u64; 3],
    in_flight_bytes: usize,
    in_flight_records: u64,
    counters: BufferCounters,
    stats: Arc<Stats>,
}

impl Buffer {
    /// A buffer holding at most `max_bytes`, handing out batches of at most about
    /// `batch_bytes` (clamped to `max_bytes`).
    pub fn new(max_bytes: usize, batch_bytes: usize, stats: Arc<Stats>) -> Self {
        let max_bytes = max_bytes.max(1);
        Buffer {
            max_bytes,
            batch_bytes: [batch_bytes.clamp(1, max_bytes); 3],
            batch_records: [u64::MAX; 3],
            queues: Default::default(),
            queued_bytes: [0; 3],
            queued_records: [0; 3],
            in_flight_bytes: 0,
            in_flight_records: 0,
            counters: BufferCounters::default(),
            stats,
        }
    }

    /// Lower the batch size of `signal` to `bytes` (never above the buffer's own batch size)
    /// and cap its records per batch at `records`.
    pub(crate) fn set_limits(&mut self, signal: Signal, bytes: usize, records: u64) {
        let i = signal.index();
        self.batch_bytes[i] = self.batch_bytes[i].min(bytes.max(1));
        self.batch_records[i] = records.max(1);
    }

    /// Add one item. Returns the number of records dropped to make room (or the item's own).
    pub fn push_item(&mut self, item: Item) -> u64 {
        let mut dropped = 0;
        self.pieces(item, |buffer, piece, bytes| {
            dropped += buffer.push_piece(piece, bytes);
        });
        dropped
    }

    /// Add `items` only if all of them fit beside what is held, dropping nothing to make room
    /// (the pieces they are split into counted, with their own wrappers). `Err` with their
    /// records when they do not fit: nothing was added, and the caller counts them.
    pub(crate) fn push_if_room(&mut self, items: Vec<Item>) -> Result<(), u64> {
        let mut pieces = Vec::with_capacity(items.len());
        for item in items {
            self.pieces(item, |_, piece, bytes| pieces.push((piece, bytes)));
        }
        let bytes: usize = pieces.iter().map(|(_, bytes)| bytes).sum();
        if bytes > self.max_bytes.saturating_sub(self.total_bytes()) {
            return Err(pieces.iter().map(|(piece, _)| piece.records()).sum());
        }
        for (piece, bytes) in pieces {
            self.push_piece(piece, bytes);
        }
        Ok(())
    }

    /// `item` in pieces that each fit one batch of its signal, each with its
    /// [`Item::wire_len`]. The encoded length is a walk over every record: taken once for an
    /// item that fits one batch (the usual case), and once per piece for one that is split.
    fn pieces(&mut self, item: Item, mut each: impl FnMut(&mut Self, Item, usize)) {
        let i = item.signal().index();
        let (max_bytes, max_records) = (self.batch_bytes[i], self.batch_records[i]);
        let bytes = item.wire_len();
        if bytes <= max_bytes && item.records() <= max_records {
            return each(self, item, bytes);
        }
        for piece in split(item, max_bytes, max_records) {
            let bytes = piece.wire_len();
            each(self, piece, bytes);
        }
    }

    /// Queue one piece that fits a batch, `bytes` being its [`Item::wire_len`].
    fn push_piece(&mut self, piece: Item, bytes: usize) -> u64 {
        let records = piece.records();
        if records == 0 {
            return 0;
        }
        self.counters.received += records;
        if bytes > self.max_bytes {
            return self.count_drop(records, DropReason::BufferFull);
        }
        let mut dropped = 0;
        while self.total_bytes() + bytes > self.max_bytes {
            match self.evict_oldest() {
                Some(evicted) => dropped += evicted,
                None => break,
            }
        }
        if self.total_bytes() + bytes > self.max_bytes {
            return dropped + self.count_drop(records, DropReason::BufferFull);
        }
        let i = piece.signal().index();
        let data = Bytes::from(piece.encode_field(bytes));
        drop(piece);
        self.queued_bytes[i] += bytes;
        self.queued_records[i] += records;
        self.queues[i].push_back(Entry {
            data,
            bytes,
            records,
        });
        dropped
    }

    /// Take the oldest entries of `signal`, up to the batch size (at least one entry).
    pub fn take(&mut self, signal: Signal) -> Option<Batch> {
        self.take_up_to(signal, usize::MAX)
    }

    /// Like [`Buffer::take`], at most `max_bytes` (and at least one entry): a piece of a flush
    /// that must be able to stop soon.
    pub fn take_up_to(&mut self, signal: Signal, max_bytes: usize) -> Option<Batch> {
        let i = signal.index();
        let limit = self.batch_bytes[i].min(max_bytes);
        let mut batch = Batch {
            signal,
            entries: Vec::new(),
            bytes: 0,
            records: 0,
        };
        while let Some(front) = self.queues[i].front() {
            if !batch.entries.is_empty()
                && (batch.bytes + front.bytes > limit
                    || batch.records + front.records > self.batch_records[i])
            {
                break;
            }
            let Some(entry) = self.queues[i].pop_front() else {
                break;
            };
            self.queued_bytes[i] -= entry.bytes;
            self.queued_records[i] -= entry.records;
            batch.bytes += entry.bytes;
            batch.records += entry.records;
            batch.entries.push(entry);
        }
        if batch.entries.is_empty() {
            return None;
        }
        self.in_flight_bytes += batch.bytes;
        self.in_flight_records += batch.records;
        Some(batch)
    }

    /// The backend accepted the batch; `rejected` of its records were refused (OTLP partial
    /// success) and are counted as `DropReason::Rejected`.
    pub fn ack(&mut self, batch: Batch, rejected: u64) {
        self.release(&batch);
        let rejected = rejected.min(batch.records);
        let exported = batch.records - rejected;
        self.counters.exported += exported;
        Stats::add(&self.stats.exported_records, exported);
        if rejected > 0 {
            self.count_drop(rejected, DropReason::Rejected);
        }
    }

    /// The batch was not delivered; put it back at the front, in its original order.
    pub(crate) fn requeue(&mut self, batch: Batch) {
        self.release(&batch);
        let i = batch.signal.index();
        for entry in batch.entries.into_iter().rev() {
            self.queued_bytes[i] += entry.bytes;
            self.queued_records[i] += entry.records;
            self.queues[i].push_front(entry);
        }
    }

    /// The batch will never be delivered: count its records as dropped for `reason`.
    pub(crate) fn drop_batch(&mut self, batch: Batch, reason: DropReason) {
        self.release(&batch);
        self.count_drop(batch.records, reason);
    }

    /// Records of `signal` waiting to be taken.
    pub(crate) fn queued(&self, signal: Signal) -> u64 {
        self.queued_records[signal.index()]
    }

    pub(crate) fn held(&self) -> Held {
        // In-flight records are not attributed per signal: a batch is in flight only inside a
        // flush.
        let records_by_signal = self.queued_records;
        Held {
            records: self.queued_records.iter().sum::<u64>() + self.in_flight_records,
            bytes: self.total_bytes(),
            records_by_signal,
        }
    }

    /// How full the buffer is: held bytes (queued and being exported) ÷ the bound.
    pub(crate) fn fill(&self) -> f64 {
        self.total_bytes() as f64 / self.max_bytes as f64
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty) && self.in_flight_records == 0
    }

    pub(crate) fn counters(&self) -> BufferCounters {
        self.counters
    }

    fn total_bytes(&self) -> usize {
        self.queued_bytes.iter().sum::<usize>() + self.in_flight_bytes
    }

    fn release(&mut self, batch: &Batch) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(batch.bytes);
        self.in_flight_records = self.in_flight_records.saturating_sub(batch.records);
    }

    fn count_drop(&mut self, records: u64, reason: DropReason) -> u64 {
        self.counters.dropped += records;
        self.stats.dropped(reason, records);
        records
    }

    /// Drop the oldest entry of the signal holding the most queued bytes.
    fn evict_oldest(&mut self) -> Option<u64> {
        let i = (0..3)
            .filter(|&i| !self.queues[i].is_empty())
            .max_by_key(|&i| self.queued_bytes[i])?;
        let entry = self.queues[i].pop_front()?;
        self.queued_bytes[i] -= entry.bytes;
        self.queued_records[i] -= entry.records;
        Some(self.count_drop(entry.records, DropReason::BufferFull))
    }
}

#[cfg(test)]
mod tests;
