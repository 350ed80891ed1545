//! The export buffer: accounting under random operation sequences, the bound, drop-oldest,
//! splitting, order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use crate::diag::{DropReason, Stats};
use crate::export::buffer::{Batch, Buffer};
use crate::pipeline::Signals;
use crate::pipeline::{Item, Signal};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn span(id: u64, pad: usize) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: id.to_be_bytes().to_vec(),
        name: "s".repeat(pad),
        ..Default::default()
    }
}

fn spans_item(ids: std::ops::Range<u64>, pad: usize, scopes: usize) -> Item {
    let ids: Vec<u64> = ids.collect();
    let per = ids.len().div_ceil(scopes.max(1)).max(1);
    Item::Spans(ResourceSpans {
        scope_spans: ids
            .chunks(per)
            .map(|c| ScopeSpans {
                spans: c.iter().map(|&i| span(i, pad)).collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

fn random_item(rng: &mut Rng, next_id: &mut u64) -> Item {
    let n = 1 + rng.below(40);
    let pad = rng.below(400) as usize;
    match rng.below(3) {
        0 => {
            let item = spans_item(*next_id..*next_id + n, pad, 1 + rng.below(3) as usize);
            *next_id += n;
            item
        }
        1 => Item::Logs(ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|_| LogRecord {
                        severity_text: "x".repeat(pad),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        _ => Item::Metrics(ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".repeat(pad),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..n).map(|_| NumberDataPoint::default()).collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn check(buffer: &Buffer, stats: &Stats, max: usize, context: &str) {
    let c = buffer.counters();
    let held = buffer.held();
    assert_eq!(
        c.received,
        c.exported + c.dropped + held.records,
        "accounting broken after {context}: {c:?} {held:?}"
    );
    assert!(held.bytes <= max, "bound broken after {context}: {held:?}");
    assert_eq!(Stats::get(&stats.exported_records), c.exported);
    let dropped: u64 = DropReason::ALL
        .iter()
        .map(|r| stats.dropped_total(*r))
        .sum();
    assert_eq!(dropped, c.dropped, "stats disagree after {context}");
}

#[test]
fn accounting_holds_over_random_operation_sequences() {
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let stats = Arc::new(Stats::default());
        let max = 4_096 + rng.below(60_000) as usize;
        let batch = 512 + rng.below(16_000) as usize;
        let mut buffer = Buffer::new(max, batch, stats.clone());
        let mut in_flight: Vec<Batch> = Vec::new();
        let mut next_id = 0;
        for step in 0..300 {
            let op = rng.below(10);
            let context = format!("seed {seed} step {step} op {op}");
            match op {
                0..=3 => {
                    let item = random_item(&mut rng, &mut next_id);
                    buffer.push_item(item);
                }
                4 | 5 => {
                    let signal = Signal::ALL[rng.below(3) as usize];
                    if let Some(b) = buffer.take(signal) {
                        assert!(b.records() > 0);
                        in_flight.push(b);
                    }
                }
                6 if !in_flight.is_empty() => {
                    let b = in_flight.swap_remove(rng.below(in_flight.len() as u64) as usize);
                    let rejected = rng.below(b.records() + 2);
                    buffer.ack(b, rejected);
                }
                7 if !in_flight.is_empty() => {
                    let b = in_flight.swap_remove(rng.below(in_flight.len() as u64) as usize);
                    buffer.requeue(b);
                }
                8 if !in_flight.is_empty() => {
                    let b = in_flight.swap_remove(rng.below(in_flight.len() as u64) as usize);
                    let reason = if rng.below(2) == 0 {
                        DropReason::Rejected
                    } else {
                        DropReason::ExportFailed
                    };
                    buffer.drop_batch(b, reason);
                }
                _ => {
                    for item in Signals::default().into_items() {
                        buffer.push_item(item);
                    }
                }
            }
            check(&buffer, &stats, max, &context);
        }
        for b in in_flight.drain(..) {
            buffer.requeue(b);
        }
        check(&buffer, &stats, max, &format!("seed {seed} end"));
    }
}

#[test]
fn full_buffer_drops_the_oldest_of_the_largest_signal() {
    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(20_000, 20_000, stats.clone());
    // A little trace data, then a flood of logs.
    buffer.push_item(spans_item(0..5, 10, 1));
    for _ in 0..100 {
        buffer.push_item(Item::Logs(ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_text: "x".repeat(500),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }));
    }
    let held = buffer.held();
    assert!(held.bytes <= 20_000);
    assert_eq!(
        held.records_by_signal[Signal::Traces.index()],
        5,
        "logs pushed out spans"
    );
    assert!(stats.dropped_total(DropReason::BufferFull) > 0);
    assert_eq!(
        stats.dropped_total(DropReason::BufferFull) + held.records,
        105
    );
}

#[test]
fn large_resources_are_split_into_batches_in_order() {
    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(1 << 20, 4_096, stats);
    buffer.push_item(spans_item(0..300, 100, 3));
    let mut ids = Vec::new();
    let mut batches = 0;
    while let Some(b) = buffer.take(Signal::Traces) {
        batches += 1;
        assert!(b.bytes() <= 4_096 + 512, "batch of {} bytes", b.bytes());
        for item in b.items() {
            let Item::Spans(rs) = item else {
                panic!("not spans")
            };
            for ss in &rs.scope_spans {
                ids.extend(ss.spans.iter().map(|s| s.span_id.clone()));
            }
        }
        buffer.ack(b, 0);
    }
    assert!(batches > 5);
    let expected: Vec<Vec<u8>> = (0..300u64).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(ids, expected);
    assert_eq!(buffer.counters().exported, 300);
}

#[test]
fn requeued_batches_go_back_to_the_front() {
    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(1 << 20, 1 << 20, stats);
    buffer.push_item(spans_item(0..3, 0, 1));
    let first = buffer.take(Signal::Traces).unwrap();
    buffer.push_item(spans_item(3..6, 0, 1));
    buffer.requeue(first);
    let again = buffer.take(Signal::Traces).unwrap();
    let ids: Vec<Vec<u8>> = again
        .items()
        .flat_map(|i| match i {
            Item::Spans(rs) => rs.scope_spans.clone(),
            _ => vec![],
        })
        .flat_map(|ss| ss.spans)
        .map(|s| s.span_id)
        .collect();
    assert_eq!(ids[0], 0u64.to_be_bytes().to_vec());
    assert_eq!(ids.len(), 6);
    buffer.ack(again, 0);
    assert!(buffer.is_empty());
}

#[test]
fn an_item_larger_than_the_buffer_is_dropped_and_counted() {
    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(1_000, 1_000, stats.clone());
    // One span alone is larger than the buffer: it cannot be split further.
    let dropped = buffer.push_item(spans_item(0..1, 5_000, 1));
    assert_eq!(dropped, 1);
    assert_eq!(stats.dropped_total(DropReason::BufferFull), 1);
    assert_eq!(buffer.held().records, 0);
}

#[test]
fn the_fill_follows_the_buffer_and_reaches_the_high_water_mark() {
    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(100_000, 100_000, stats.clone());
    assert_eq!(buffer.fill(), 0.0);
    // Under the mark: a fill level. (The worker turns reaching the mark into a wake-up of the
    // lifecycle: `pipeline::worker`.)
    buffer.push_item(spans_item(0..10, 100, 1));
    let low = buffer.fill();
    assert!(
        low > 0.0 && low < crate::lifecycle::policy::HIGH_WATER,
        "{low}"
    );
    buffer.push_item(spans_item(10..500, 100, 1));
    assert!(buffer.fill() >= crate::lifecycle::policy::HIGH_WATER);
    // Taken data still counts (it is in memory) until it is acknowledged.
    let batch = buffer.take(Signal::Traces).unwrap();
    assert!(buffer.fill() >= crate::lifecycle::policy::HIGH_WATER);
    buffer.ack(batch, 0);
    assert_eq!(buffer.fill(), 0.0);
}

#[test]
fn batches_are_kept_encoded_and_their_body_is_the_export_request() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(1 << 20, 1 << 20, stats);
    let first = spans_item(0..3, 10, 1);
    let second = spans_item(3..5, 10, 2);
    buffer.push_item(first.clone());
    buffer.push_item(second.clone());
    let batch = buffer.take(Signal::Traces).unwrap();
    let body = batch.protobuf();
    assert_eq!(body.len(), batch.bytes());
    let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let (Item::Spans(a), Item::Spans(b)) = (first, second) else {
        panic!("spans")
    };
    assert_eq!(request.resource_spans, vec![a, b]);
    assert_eq!(batch.items().count(), 2);
    buffer.ack(batch, 0);
}

#[test]
fn push_if_room_counts_the_pieces_an_item_is_split_into() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    let stats = Arc::new(Stats::default());
    let mut buffer = Buffer::new(16_384, 16_384, stats.clone());
    // One span per batch: each piece repeats the resource, 300 bytes of attributes.
    buffer.set_limits(Signal::Traces, 16_384, 1);
    let item = |ids: std::ops::Range<u64>| {
        let Item::Spans(mut rs) = spans_item(ids, 20, 1) else {
            unreachable!()
        };
        rs.resource = Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(300))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        Item::Spans(rs)
    };
    // Held: 40 spans of one piece each, about 14 KB.
    for id in 0..40 {
        assert_eq!(buffer.push_item(item(id..id + 1)), 0);
    }
    let held = buffer.held();
    let room = 16_384 - held.bytes;
    // Ten spans in one item: whole, they would fit the room; in pieces they do not.
    let ten = item(100..110);
    assert!(ten.wire_len() <= room, "{} > {room}", ten.wire_len());
    assert_eq!(buffer.push_if_room(vec![ten]), Err(10));
    assert_eq!(buffer.held(), held, "nothing added, nothing pushed out");
    assert_eq!(stats.dropped_total(DropReason::BufferFull), 0);
    // One span in pieces fits.
    assert_eq!(buffer.push_if_room(vec![item(200..201)]), Ok(()));
    assert_eq!(buffer.held().records, held.records + 1);
}
