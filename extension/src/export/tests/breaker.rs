//! The circuit breaker against a scripted backend: what opens it, what a flush does while it
//! is open (nothing sent, data held under the bound, drops counted), the probe that closes it,
//! flushes in pieces that stop when the runtime is done, and what self-telemetry says.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use contrail_testkit::otlp_backend::{Backend, Reply};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use tokio::time::Instant;

use super::backend::{assert_unique, in_secs, spans, trace_requests};
use super::delivery;
use crate::diag::{DropReason, ExportFault, Stats};
use crate::export::breaker::{BACKOFF_START, State};
use crate::export::cut::Cut;
use crate::export::delivery::PIECE_BYTES;
use crate::pipeline::Signal;

/// A port nothing listens on (connections are refused), for a backend that is down.
fn refused_endpoint() -> (std::net::SocketAddr, String) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    (addr, format!("http://{addr}"))
}

fn throttled(retry_after_s: u64) -> Reply {
    Reply::Status(
        429,
        vec![("retry-after", retry_after_s.to_string())],
        b"slow down".to_vec(),
    )
}

/// The metrics named `name` among what the backend accepted.
fn metrics_named(b: &Backend, name: &str) -> Vec<Metric> {
    b.accepted_metrics()
        .into_iter()
        .filter(|m| m.name == name)
        .collect()
}

fn attribute(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
        .map(|v| match v {
            any_value::Value::StringValue(s) => s,
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_opens_it_and_no_request_goes_before_it_has_passed() {
    let b = Backend::start(vec![throttled(1)]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    // One attempt: the 429 asks for a second, past this flush's deadline.
    let outcome = d.flush(Instant::now() + Duration::from_millis(200)).await;
    assert_eq!(outcome.held.records, 10);
    assert_eq!(trace_requests(&b), 1);
    assert!(d.backend_held());
    assert_eq!(d.breaker(Signal::Traces).unwrap().health().trips, 1);

    // Neither the end-of-invocation flush nor one while the function runs sends anything
    // before the Retry-After has passed.
    let attempts = Stats::get(&stats.export_attempts);
    d.flush(in_secs(20)).await;
    d.flush_while_running(Instant::now() + Duration::from_millis(200), &Cut::new())
        .await;
    assert_eq!(Stats::get(&stats.export_attempts), attempts);
    assert_eq!(trace_requests(&b), 1);

    tokio::time::sleep(Duration::from_secs(1)).await;
    // A flush whose runtime is already done sends no probe, and the breaker learns nothing.
    let done = Cut::new();
    done.fire();
    d.flush_while_running(in_secs(20), &done).await;
    assert_eq!(trace_requests(&b), 1);
    assert!(d.backend_held());
    assert_eq!(d.breaker(Signal::Traces).unwrap().health().probes, 0);

    let outcome = d.flush_while_running(in_secs(20), &Cut::new()).await;
    assert!(outcome.complete, "{outcome:?}");
    assert!(!d.backend_held());
    // The 429, the probe (an export request without data), the data.
    let requests: Vec<usize> = b
        .received()
        .iter()
        .filter_map(|r| r.traces.as_ref())
        .map(|t| {
            t.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum()
        })
        .collect();
    assert_eq!(requests, [10, 0, 10]);
    assert_unique(&b.accepted_span_ids(), 10);
    let health = d.breaker(Signal::Traces).unwrap().health();
    assert_eq!((health.probes, health.probes_answered), (1, 1));
    assert!(health.failures >= 1 && health.successes >= 2, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_fails_keeps_it_open_and_nothing_is_sent_until_one_is_answered() {
    let unavailable = Reply::Status(503, vec![], b"busy".to_vec());
    let b = Backend::start(vec![throttled(1), unavailable]).await;
    let (mut d, _stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    d.flush(Instant::now() + Duration::from_millis(200)).await;
    assert!(d.backend_held());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The probe gets the 503: still open, the data not sent.
    let outcome = d.flush_while_running(in_secs(20), &Cut::new()).await;
    assert_eq!(outcome.held.records, 10);
    assert!(d.backend_held());
    assert_eq!(trace_requests(&b), 2);
    // The next probe waits twice the first backoff.
    tokio::time::sleep(BACKOFF_START * 2).await;
    let outcome = d.flush_while_running(in_secs(20), &Cut::new()).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_unique(&b.accepted_span_ids(), 10);
    let health = d.breaker(Signal::Traces).unwrap().health();
    assert_eq!((health.probes, health.probes_answered), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_the_runtime_outlasts_backs_off_without_counting_a_fault() {
    let b = Backend::start(vec![throttled(1), Reply::Hang]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    d.flush(Instant::now() + Duration::from_millis(200)).await;
    assert!(d.backend_held());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (failures, before) = (
        Stats::get(&stats.export_failures),
        d.breaker(Signal::Traces).unwrap().health(),
    );

    // The probe hangs; the runtime is done 200 ms later and the probe is given up.
    let cut = Cut::new();
    let done = cut.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        done.fire();
    });
    let outcome = d.flush_while_running(in_secs(20), &cut).await;
    assert_eq!(outcome.held.records, 10);
    assert_eq!(trace_requests(&b), 2, "the probe was sent");
    assert!(d.backend_held());
    // Not a fault of the backend's: no failure, timeout or abandoned request.
    let after = d.breaker(Signal::Traces).unwrap().health();
    assert_eq!(
        (after.failures, after.timeouts, after.successes),
        (before.failures, before.timeouts, before.successes)
    );
    assert_eq!(
        (after.probes, after.probes_answered),
        (before.probes + 1, 0)
    );
    assert_eq!(Stats::get(&stats.export_failures), failures);
    assert_eq!(Stats::get(&stats.export_abandoned), 0);
    assert_eq!(stats.faults_total(ExportFault::StalledResponse), 0);

    // But no round trip of this backend is known, so the 200 ms without an answer count: the
    // next flush sends nothing (open, the backoff doubled to 500 ms) ...
    let outcome = d.flush_while_running(in_secs(20), &Cut::new()).await;
    assert_eq!(outcome.held.records, 10);
    assert_eq!(trace_requests(&b), 2, "no probe before the backoff");
    // ... and the one after it probes, is answered, and sends the data.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let outcome = d.flush_while_running(in_secs(20), &Cut::new()).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_unique(&b.accepted_span_ids(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_open_the_bound_still_applies_and_its_drops_are_counted() {
    let (_, endpoint) = refused_endpoint();
    let (mut d, stats) = delivery(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("CONTRAIL_BUFFER_MAX_BYTES", "65536"),
    ]);
    d.push(spans(0..10, 150));
    d.flush(Instant::now() + Duration::from_millis(100)).await;
    assert!(d.backend_held());
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 0);
    // About 200 bytes per span: 2,000 more cannot fit in 64 KiB.
    for chunk in 1..21 {
        d.push(spans(chunk * 100..(chunk + 1) * 100, 150));
        d.flush(in_secs(20)).await;
    }
    let dropped = stats.dropped_total(DropReason::BufferFull);
    assert!(dropped > 0);
    let c = d.counters();
    assert_eq!(c.received, 2_010);
    assert_eq!(c.exported, 0);
    assert_eq!(c.dropped, dropped);
    assert_eq!(c.received, c.exported + c.dropped + d.held().records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_while_the_function_runs_goes_in_pieces_and_stops_once_cut() {
    let b = Backend::start(vec![]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    // Four entries of about 40 KB: two do not fit in one piece.
    for chunk in 0..4 {
        d.push(spans(chunk * 200..(chunk + 1) * 200, 150));
    }
    assert!(d.held().bytes > 2 * PIECE_BYTES);
    // The runtime is already done: nothing is started, nothing is lost, and the breaker does
    // not count it against the backend.
    let cut = Cut::new();
    cut.fire();
    let outcome = d.flush_while_running(in_secs(20), &cut).await;
    assert_eq!(outcome.held.records, 800);
    assert_eq!(Stats::get(&stats.export_attempts), 0);
    assert!(!d.backend_held());

    let outcome = d.flush_while_running(in_secs(20), &Cut::new()).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(trace_requests(&b), 4);
    for r in b.received().iter().filter(|r| r.traces.is_some()) {
        assert!(r.body.len() <= PIECE_BYTES + 1024, "{}", r.body.len());
    }
    assert_unique(&b.accepted_span_ids(), 800);

    // The same data in an end-of-invocation flush: one request.
    for chunk in 4..8 {
        d.push(spans(chunk * 200..(chunk + 1) * 200, 150));
    }
    d.flush(in_secs(20)).await;
    assert_eq!(trace_requests(&b), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_telemetry_reports_the_breaker_and_the_health_of_the_endpoint() {
    let b = Backend::start(vec![throttled(1)]).await;
    let (mut d, _stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    d.flush(Instant::now() + Duration::from_millis(200)).await;
    assert_eq!(
        d.breaker(Signal::Traces).unwrap().state(Instant::now()),
        State::Open
    );
    // The final flush sends whatever the breaker says (after the Retry-After); the traces
    // delivered close it before the metrics request, which carries self-telemetry.
    let outcome = d.finish(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_unique(&b.accepted_span_ids(), 10);

    let point = |name: &str| {
        metrics_named(&b, name)
            .iter()
            .flat_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.clone(),
                Some(metric::Data::Sum(s)) => s.data_points.clone(),
                _ => Vec::new(),
            })
            .collect::<Vec<_>>()
    };
    let states = point("contrail.export.breaker.state");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(
        attribute(&states[0].attributes, "endpoint"),
        format!("127.0.0.1:{}", b.addr.port())
    );
    assert_eq!(attribute(&states[0].attributes, "state"), "closed");
    assert_eq!(states[0].value, Some(number_data_point::Value::AsInt(0)));
    let trips = point("contrail.export.breaker.trips");
    assert_eq!(trips[0].value, Some(number_data_point::Value::AsInt(1)));
    let attempts = point("contrail.export.endpoint.attempts");
    let failed = attempts
        .iter()
        .find(|p| attribute(&p.attributes, "outcome") == "failed")
        .expect("failed attempts");
    assert_eq!(failed.value, Some(number_data_point::Value::AsInt(1)));
    for name in [
        "contrail.export.breaker.probes",
        "contrail.export.endpoint.rtt",
    ] {
        assert!(!point(name).is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_nobody_cuts_probes_a_held_backend_and_sends_whole_batches() {
    let b = Backend::start(vec![throttled(1)]).await;
    let (mut d, _stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    for chunk in 0..4 {
        d.push(spans(chunk * 200..(chunk + 1) * 200, 150));
    }
    d.flush(Instant::now() + Duration::from_millis(200)).await;
    assert!(d.backend_held());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Managed Instances' timer: no invocation waits for it.
    let outcome = d.flush_while_running(in_secs(20), &Cut::never()).await;
    assert!(outcome.complete, "{outcome:?}");
    // The 429, the probe, then all of it in one request.
    assert_eq!(trace_requests(&b), 3);
    assert_unique(&b.accepted_span_ids(), 800);
}
