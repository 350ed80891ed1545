//! The export circuit breaker in the real binary: once a flush could not finish inside its
//! budget, invocations stop waiting for the backend (no end-of-invocation flush, no wait for
//! `platform.runtimeDone`), a probe that the backend does not answer is given up when the
//! runtime is done, the held data arrives exactly once when the backend answers again, and
//! what the buffer's bound drops meanwhile is counted under `buffer_full`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::Duration;

use contrail_testkit::otlp_backend::{Backend, Reply};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

use crate::support::{Extension, FakeLambda, NEXT, Script, listening, post_json};

fn throttled(retry_after_s: u64) -> Reply {
    Reply::Status(
        429,
        vec![("retry-after", retry_after_s.to_string())],
        b"slow down".to_vec(),
    )
}

/// POST one Telemetry API batch (owned text) to the extension's listener.
async fn post_batch(port: u16, body: String) -> u16 {
    // The listener's answers are all that is read back; the body outlives the test.
    post_json(port, Box::leak(body.into_boxed_str())).await
}

/// `n` function lines of `request_id`, each `pad` characters longer than its name.
fn lines(request_id: &str, n: usize, pad: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"time":"2024-01-01T00:00:01.000Z","type":"function","record":"line {request_id} {i} {}"}}"#,
                "x".repeat(pad)
            )
        })
        .collect()
}

fn runtime_done(request_id: &str) -> String {
    format!(
        r#"{{"time":"2024-01-01T00:00:01.100Z","type":"platform.runtimeDone","record":{{"requestId":"{request_id}","status":"success"}}}}"#
    )
}

fn batch(records: Vec<String>) -> String {
    format!("[{}]", records.join(","))
}

/// How many times each function line reached the backend (accepted requests only).
fn line_counts(backend: &Backend) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in backend.accepted_log_records() {
        if let Some(any_value::Value::StringValue(s)) = record.body.and_then(|b| b.value)
            && s.starts_with("line ")
        {
            let key = s.split(' ').take(3).collect::<Vec<_>>().join(" ");
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    counts
}

/// The last reported value of `contrail.records.dropped{reason}`.
fn dropped_reported(backend: &Backend, reason: &str) -> Option<i64> {
    backend
        .accepted_metrics()
        .into_iter()
        .filter(|m| m.name == "contrail.records.dropped")
        .filter_map(|m| match m.data {
            Some(metric::Data::Sum(sum)) => Some(sum.data_points),
            _ => None,
        })
        .flatten()
        .filter(|p| {
            p.attributes.iter().any(|kv| {
                kv.key == "reason"
                    && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(any_value::Value::StringValue(s)) if s == reason)
            })
        })
        .filter_map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_breaker_is_open_invocations_do_not_wait_and_held_data_arrives_once() {
    // The first request is throttled for longer than the first invocation has left; the first
    // probe is never answered; then the backend takes everything.
    let backend = Backend::start(vec![throttled(3), Reply::Hang]).await;
    let fake = FakeLambda::start(Script::default()).await;
    let endpoint = backend.endpoint();
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("CONTRAIL_FLUSH", "end"),
            // A budget longer than the test's patience: an invocation that waited for the
            // backend would never reach its next call in time.
            ("CONTRAIL_FLUSH_BUDGET_MS", "60000"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ],
    );
    let port = listening(&fake).await;

    // 1: the end flush gets the 429, whose Retry-After ends past the invocation's deadline.
    fake.push_invoke("req-1", Duration::from_secs(2));
    let mut records = lines("req-1", 5, 0);
    records.push(runtime_done("req-1"));
    assert_eq!(post_batch(port, batch(records)).await, 200);
    fake.wait_for(NEXT, 2).await;
    assert_eq!(backend.received().len(), 1);

    // 2: the breaker is open. No runtimeDone is ever sent for this request, and the backend is
    // not asked anything: the invocation ends without waiting for either.
    fake.push_invoke("req-2", Duration::from_secs(30));
    assert_eq!(post_batch(port, batch(lines("req-2", 5, 0))).await, 200);
    fake.wait_for(NEXT, 3).await;
    assert_eq!(backend.received().len(), 1);

    // 3: past the Retry-After, the invocation's start probes; the backend holds the probe, and
    // the runtime being done ends it (not the 60 s budget).
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    fake.push_invoke("req-3", Duration::from_secs(30));
    let mut records = lines("req-3", 5, 0);
    records.push(runtime_done("req-3"));
    // Give the probe time to be sent before the runtime is done.
    while backend.received().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(post_batch(port, batch(records)).await, 200);
    fake.wait_for(NEXT, 4).await;
    let probe = &backend.received()[1];
    assert_eq!(probe.answered, 0, "the probe was never answered");
    let probe_records = probe.traces.as_ref().map_or(0, |t| t.resource_spans.len())
        + probe
            .metrics
            .as_ref()
            .map_or(0, |m| m.resource_metrics.len())
        + probe.logs.as_ref().map_or(0, |l| l.resource_logs.len());
    assert_eq!(probe_records, 0, "a probe carries no data: {probe:?}");
    assert!(line_counts(&backend).is_empty());

    // 4: the next probe is answered; the held data goes out while the function runs, and the
    // end flush follows.
    tokio::time::sleep(Duration::from_millis(600)).await;
    fake.push_invoke("req-4", Duration::from_secs(30));
    let mut records = lines("req-4", 5, 0);
    records.push(runtime_done("req-4"));
    assert_eq!(post_batch(port, batch(records)).await, 200);
    fake.wait_for(NEXT, 5).await;

    let deadline = fake.push_shutdown(Duration::from_millis(2000));
    let status = ext.wait_exit(deadline).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ext.stderr());
    let counts = line_counts(&backend);
    for request in ["req-1", "req-2", "req-3", "req-4"] {
        for i in 0..5 {
            let key = format!("line {request} {i}");
            assert_eq!(counts.get(&key), Some(&1), "{key}: {counts:?}");
        }
    }
    assert!(
        ext.stderr()
            .contains("could not take a flush inside its budget"),
        "{}",
        ext.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_bound_drops_while_the_breaker_is_open_is_counted_under_buffer_full() {
    let backend = Backend::start(vec![throttled(2)]).await;
    let fake = FakeLambda::start(Script::default()).await;
    let endpoint = backend.endpoint();
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("CONTRAIL_FLUSH", "end"),
            ("CONTRAIL_BUFFER_MAX_BYTES", "65536"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ],
    );
    let port = listening(&fake).await;

    fake.push_invoke("req-1", Duration::from_secs(1));
    let mut records = lines("req-1", 5, 0);
    records.push(runtime_done("req-1"));
    post_batch(port, batch(records)).await;
    fake.wait_for(NEXT, 2).await;

    // While the breaker is open: far more than 64 KiB of lines.
    fake.push_invoke("req-2", Duration::from_secs(30));
    for chunk in 0..10 {
        let mut records = lines(&format!("req-2-{chunk}"), 50, 300);
        if chunk == 9 {
            records.push(runtime_done("req-2"));
        }
        assert_eq!(post_batch(port, batch(records)).await, 200);
    }
    fake.wait_for(NEXT, 3).await;

    // The backend answers again: what the bound kept arrives once, at the latest at shutdown.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let deadline = fake.push_shutdown(Duration::from_millis(2000));
    let status = ext.wait_exit(deadline).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ext.stderr());
    let counts = line_counts(&backend);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    let dropped = dropped_reported(&backend, "buffer_full").expect("buffer_full reported");
    assert!(dropped > 0);
    // Every line (5 before the flood, 500 in it) either arrived or was counted as dropped,
    // the oldest first: the newest arrived.
    assert!(counts.contains_key("line req-2-9 49"), "{counts:?}");
    assert_eq!(counts.len() as i64 + dropped, 505, "{counts:?}");
}
