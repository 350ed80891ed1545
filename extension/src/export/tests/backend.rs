//! Delivery against a scripted OTLP/HTTP backend on 127.0.0.1: retries, Retry-After, a backend
//! that is down or hangs, refusals, partial success, encodings, headers, self-telemetry.
//!
//! Real sockets need real time, so these tests never assert an upper bound on durations: a
//! flush "returned by its deadline" is shown by it returning with the request abandoned and the
//! data still held.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use contrail_testkit::otlp_backend as backend;

use std::collections::HashSet;
use std::time::Duration;

use super::delivery;
use crate::diag::{DropReason, Stats};
use crate::pipeline::Signals;
use crate::pipeline::otlp::RpcStatus;
use backend::{Backend, Reply};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::time::Instant;

fn span_id(n: u32) -> Vec<u8> {
    let mut id = vec![0xab, 0xcd, 0, 0];
    id.extend_from_slice(&n.to_be_bytes());
    id
}

pub(super) fn spans(range: std::ops::Range<u32>, name_len: usize) -> Signals {
    let spans = range
        .map(|n| Span {
            trace_id: vec![0x11; 16],
            span_id: span_id(n),
            name: format!("span-{n}-{}", "x".repeat(name_len)),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            ..Default::default()
        })
        .collect();
    Signals {
        spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) fn in_secs(s: u64) -> Instant {
    Instant::now() + Duration::from_secs(s)
}

pub(super) fn assert_unique(ids: &[Vec<u8>], expected: u32) {
    let set: HashSet<&Vec<u8>> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "duplicates arrived");
    assert_eq!(ids.len(), expected as usize);
    for n in 0..expected {
        assert!(set.contains(&span_id(n)), "span {n} missing");
    }
}

pub(super) fn trace_requests(b: &Backend) -> usize {
    b.received().iter().filter(|r| r.traces.is_some()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_503_until_the_backend_recovers() {
    let unavailable = Reply::Status(503, vec![], b"busy".to_vec());
    let b = Backend::start(vec![unavailable.clone(), unavailable.clone(), unavailable]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
    assert_eq!(trace_requests(&b), 4);
    assert!(Stats::get(&stats.export_failures) >= 3);
    assert_unique(&b.accepted_span_ids(), 10);
    let c = d.counters();
    assert_eq!(c.received, c.exported + c.dropped + d.held().records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_honoured() {
    let b = Backend::start(vec![Reply::Status(
        429,
        vec![("retry-after", "1".to_owned())],
        vec![],
    )])
    .await;
    let (mut d, _) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..5, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    let traces: Vec<_> = b
        .received()
        .into_iter()
        .filter(|r| r.traces.is_some())
        .collect();
    assert_eq!(traces.len(), 2);
    // A lower bound only: a slow machine can only make the gap longer.
    assert!(traces[1].at.duration_since(traces[0].at) >= Duration::from_millis(990));
    assert_unique(&b.accepted_span_ids(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_past_the_deadline_keeps_the_data_and_is_remembered() {
    let b = Backend::start(vec![Reply::Status(
        429,
        vec![("retry-after", "120".to_owned())],
        vec![],
    )])
    .await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..5, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(!outcome.complete);
    assert_eq!(outcome.held.records, 5);
    assert_eq!(trace_requests(&b), 1);
    // The backend asked for two minutes: the next flush does not send traces at all.
    let outcome = d.flush(in_secs(20)).await;
    assert_eq!(outcome.held.records, 5);
    assert_eq!(trace_requests(&b), 1);
    assert_eq!(stats.dropped_total(DropReason::Rejected), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_then_up_loses_nothing_and_duplicates_nothing() {
    // Reserve a port, then close it: connections are refused until the backend starts there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{addr}");
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(Instant::now() + Duration::from_millis(300)).await;
    assert_eq!(outcome.held.records, 10);
    assert!(Stats::get(&stats.export_failures) >= 1);
    // The breaker is open: the next flush does not try, it keeps the data.
    assert!(d.backend_held());
    let attempts = Stats::get(&stats.export_attempts);
    d.push(spans(10..20, 0));
    let outcome = d.flush(Instant::now() + Duration::from_millis(200)).await;
    assert_eq!(outcome.held.records, 20);
    assert_eq!(Stats::get(&stats.export_attempts), attempts);

    let b = Backend::start_at(addr, vec![]).await;
    // After the backoff, a flush while the function runs probes, then sends the data.
    tokio::time::sleep(crate::export::breaker::BACKOFF_START).await;
    let outcome = d
        .flush_while_running(in_secs(20), &crate::export::cut::Cut::new())
        .await;
    assert!(outcome.complete, "{outcome:?}");
    assert!(!d.backend_held());
    assert_unique(&b.accepted_span_ids(), 20);
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 0);
    assert_eq!(stats.dropped_total(DropReason::BufferFull), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_backend_is_abandoned_at_the_deadline_and_data_kept() {
    let b = Backend::start(vec![Reply::Hang]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(Instant::now() + Duration::from_millis(300)).await;
    // The flush came back although the backend never answered: it gave up at its deadline.
    assert_eq!(outcome.abandoned, 1, "{outcome:?}");
    assert_eq!(outcome.held.records, 10);
    assert_eq!(Stats::get(&stats.export_abandoned), 1);
    assert_eq!(trace_requests(&b), 1);

    // The backend answers again: the final flush sends whatever the breaker says, and
    // everything arrives, once.
    assert!(d.backend_held());
    let outcome = d.finish(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_unique(&b.accepted_span_ids(), 10);
    let c = d.counters();
    assert_eq!(c.received, 10);
    assert_eq!(c.exported, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_counted_as_rejected() {
    let status = RpcStatus {
        code: 3,
        message: "span name too long".to_owned(),
        details: Vec::new(),
    };
    let b = Backend::start(vec![Reply::Status(
        400,
        vec![("content-type", "application/x-protobuf".to_owned())],
        status.encode_to_vec(),
    )])
    .await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete);
    assert_eq!(outcome.dropped, 10);
    assert_eq!(trace_requests(&b), 1);
    assert_eq!(stats.dropped_total(DropReason::Rejected), 10);
    assert_eq!(Stats::get(&stats.exported_records), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_counts_the_rejected_records() {
    let response = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 3,
            error_message: "3 spans too old".to_owned(),
        }),
    };
    let b = Backend::start(vec![Reply::Status(
        200,
        vec![("content-type", "application/x-protobuf".to_owned())],
        response.encode_to_vec(),
    )])
    .await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete);
    assert_eq!(outcome.exported, 7);
    assert_eq!(stats.dropped_total(DropReason::Rejected), 3);
    assert_eq!(Stats::get(&stats.exported_records), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_json_bodies_and_headers_arrive_decodable() {
    let b = Backend::start(vec![]).await;
    let (mut d, _) = delivery(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-api-key=s3cr%20t,x-team=core",
        ),
    ]);
    d.push(spans(0..4, 0));
    assert!(d.flush(in_secs(20)).await.complete);
    let traces: Vec<_> = b
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/traces")
        .collect();
    assert_eq!(traces.len(), 1);
    let r = &traces[0];
    assert_eq!(r.headers["content-encoding"], "gzip");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-api-key"], "s3cr t");
    assert_eq!(r.headers["x-team"], "core");
    // OTLP/JSON: camelCase keys, ids as hex.
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(text.contains("\"resourceSpans\""), "{text}");
    assert!(text.contains("abcd000000000003"), "{text}");
    assert_unique(&b.accepted_span_ids(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_gzip_and_per_signal_endpoint_used_as_is() {
    let b = Backend::start(vec![]).await;
    let traces_endpoint = format!("{}/custom/traces/v1/traces", b.endpoint());
    let (mut d, _) = delivery(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint()),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_endpoint),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
    ]);
    d.push(spans(0..3, 0));
    assert!(d.flush(in_secs(20)).await.complete);
    let received = b.received();
    let traces: Vec<_> = received.iter().filter(|r| r.traces.is_some()).collect();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].path, "/custom/traces/v1/traces");
    assert_eq!(traces[0].headers["content-type"], "application/x-protobuf");
    assert_eq!(traces[0].headers["content-encoding"], "gzip");
    // Metrics (self-telemetry) went to the base endpoint, uncompressed.
    let metrics: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/v1/metrics")
        .collect();
    assert_eq!(metrics.len(), 1);
    assert!(metrics[0].headers.get("content-encoding").is_none());
    assert_unique(&b.accepted_span_ids(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_overflow_is_counted_and_reported_as_self_telemetry() {
    let b = Backend::start(vec![]).await;
    let (mut d, stats) = delivery(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint()),
        ("CONTRAIL_BUFFER_MAX_BYTES", "65536"),
    ]);
    // About 200 bytes per span: 2,000 spans cannot fit in 64 KiB.
    for chunk in 0..20 {
        d.push(spans(chunk * 100..(chunk + 1) * 100, 150));
    }
    let dropped = stats.dropped_total(DropReason::BufferFull);
    assert!(dropped > 0);
    let held = d.held();
    assert!(held.bytes <= 65_536);
    assert_eq!(dropped + held.records, 2_000);
    // Drop oldest: the newest span is still held.
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert!(b.accepted_span_ids().contains(&span_id(1_999)));
    assert!(!b.accepted_span_ids().contains(&span_id(0)));

    let metrics = b
        .received()
        .into_iter()
        .filter_map(|r| r.metrics)
        .flat_map(|m| m.resource_metrics)
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect::<Vec<_>>();
    let dropped_metric = metrics
        .iter()
        .find(|m| m.name == "contrail.records.dropped")
        .expect("contrail.records.dropped exported");
    let Some(metric::Data::Sum(sum)) = &dropped_metric.data else {
        panic!("not a sum: {dropped_metric:?}");
    };
    let point = sum
        .data_points
        .iter()
        .find(|p| {
            p.attributes
                .iter()
                .any(|kv| kv.key == "reason" && format!("{:?}", kv.value).contains("buffer_full"))
        })
        .expect("a buffer_full point");
    assert_eq!(
        point.value,
        Some(number_data_point::Value::AsInt(dropped as i64))
    );
    for name in [
        "contrail.records.exported",
        "contrail.export.requests",
        "contrail.export.duration",
        "contrail.flush.duration",
        "contrail.buffer.held",
    ] {
        assert!(
            b.accepted_metric_names().iter().any(|n| n == name),
            "{name}"
        );
    }
}

#[test]
fn push_if_room_keeps_what_is_held_and_returns_what_did_not_fit() {
    let (mut d, stats) = delivery(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("CONTRAIL_BUFFER_MAX_BYTES", "65536"),
    ]);
    // About 200 bytes per span: 200 fit, another 200 do not fit beside them.
    assert_eq!(d.push_if_room(spans(0..200, 150)), None);
    let held = d.held();
    assert_eq!(held.records, 200);
    assert_eq!(d.push_if_room(spans(200..400, 150)), Some(200));
    assert_eq!(d.held(), held, "what was held is kept whole");
    // The caller counts what was returned; nothing was counted here.
    assert_eq!(stats.dropped_total(DropReason::BufferFull), 0);
    // What fits in the room left still joins.
    assert_eq!(d.push_if_room(spans(400..401, 0)), None);
    assert_eq!(d.held().records, 201);
}

#[test]
fn push_if_room_counts_a_signal_without_an_endpoint_as_no_endpoint() {
    let (mut d, stats) = delivery(&[]);
    assert_eq!(d.push_if_room(spans(0..5, 0)), None);
    assert_eq!(stats.dropped_total(DropReason::NoEndpoint), 5);
    assert_eq!(d.held().records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_data_is_dropped_and_counted() {
    let (mut d, stats) = delivery(&[]);
    d.push(spans(0..7, 0));
    assert_eq!(stats.dropped_total(DropReason::NoEndpoint), 7);
    assert_eq!(d.held().records, 0);
    let outcome = d.flush(in_secs(1)).await;
    assert!(outcome.complete);
    assert!(!outcome.self_telemetry_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_not_retried_and_counted_as_failed() {
    let b = Backend::start(vec![Reply::Status(500, vec![], b"boom".to_vec())]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..4, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete);
    assert_eq!(trace_requests(&b), 1);
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_body_is_not_read_and_the_export_still_counts() {
    let huge = Reply::Status(200, vec![], vec![b'x'; 1024 * 1024]);
    let b = Backend::start(vec![huge]).await;
    let (mut d, _) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
    // The connection with the unread body is not reused: the next export still works.
    d.push(spans(10..20, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
    assert_eq!(trace_requests(&b), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_telemetry_is_reported_when_due_not_on_every_flush() {
    let b = Backend::start(vec![]).await;
    let (mut d, _) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    let selftel_requests = |b: &Backend| {
        b.received()
            .iter()
            .filter(|r| {
                r.metrics.as_ref().is_some_and(|m| {
                    m.resource_metrics.iter().any(|rm| {
                        rm.scope_metrics
                            .iter()
                            .any(|sm| sm.metrics.iter().any(|m| m.name.starts_with("contrail.")))
                    })
                })
            })
            .count()
    };
    // The first flush reports, the next ones within the interval (20 s) and without drops do
    // not, the last one does.
    for n in 0..3 {
        d.push(spans(n * 10..n * 10 + 10, 0));
        assert!(d.flush(in_secs(20)).await.complete);
    }
    assert_eq!(trace_requests(&b), 3);
    assert_eq!(selftel_requests(&b), 1);
    assert!(d.finish(in_secs(20)).await.self_telemetry_sent);
    assert_eq!(selftel_requests(&b), 2);
}
