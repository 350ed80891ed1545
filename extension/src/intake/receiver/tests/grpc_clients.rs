//! Real clients against the OTLP/gRPC receiver: the Python SDK's gRPC exporters (grpcio), and a
//! raw HTTP/2 client (the Python `h2` package) for every way of abusing the port.
//!
//! Needs `scripts/install-test-deps.sh` (the Python venv in `.tools/venv` with
//! `opentelemetry-exporter-otlp-proto-grpc`, `grpcio` and `h2`), so these tests are ignored by a
//! plain `cargo test`; run them with `--include-ignored`. Without the tools they fail, saying
//! what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use opentelemetry_proto::tonic::common::v1::any_value::Value;

use super::{Running, grpc_options, python, start_grpc, wait_until};
use crate::diag::{DropReason, Stats};
use crate::pipeline::{Intake, OtlpPayload};

const SDK_SCRIPT: &str = include_str!("grpc_sdk.py");
const REFUSALS_SCRIPT: &str = include_str!("grpc_refusals.py");
const SPANS_PER_EXPORT: usize = 50;
const EXPORTS: usize = 40;

/// Drain the intake queue the way the worker does; count records per signal.
#[derive(Default, Debug)]
struct Drained {
    spans: u64,
    trace_ids: std::collections::BTreeSet<String>,
    metric_names: Vec<String>,
    log_bodies: Vec<String>,
    log_span_ids: Vec<String>,
}

fn drain_in_background(receiver: &mut Running) -> tokio::task::JoinHandle<Drained> {
    let mut intake = receiver.take_intake();
    tokio::spawn(async move {
        let mut drained = Drained::default();
        while let Some(unit) = intake.recv().await {
            match unit {
                Intake::Otlp(OtlpPayload::Traces(request), _) => {
                    for span in request
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .flat_map(|s| &s.spans)
                    {
                        drained.spans += 1;
                        drained.trace_ids.insert(hex(&span.trace_id));
                    }
                }
                Intake::Otlp(OtlpPayload::Metrics(request), _) => drained.metric_names.extend(
                    request
                        .resource_metrics
                        .iter()
                        .flat_map(|r| &r.scope_metrics)
                        .flat_map(|s| &s.metrics)
                        .map(|m| m.name.clone()),
                ),
                Intake::Otlp(OtlpPayload::Logs(request), _) => {
                    for record in request
                        .resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .flat_map(|s| &s.log_records)
                    {
                        if let Some(Value::StringValue(body)) =
                            record.body.as_ref().and_then(|b| b.value.as_ref())
                        {
                            drained.log_bodies.push(body.clone());
                        }
                        drained.log_span_ids.push(hex(&record.span_id));
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        drained
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn the_python_sdks_grpc_exporters_deliver_traces_metrics_and_logs() {
    let mut receiver = start_grpc(64, 0, grpc_options(4 * 1024 * 1024)).await;
    let drain = drain_in_background(&mut receiver);
    let report = python(
        SDK_SCRIPT,
        vec![
            receiver.addr.to_string(),
            SPANS_PER_EXPORT.to_string(),
            EXPORTS.to_string(),
        ],
    )
    .await;
    let (plain, gzip) = (&report["plain"], &report["gzip"]);
    let ms = |v: &serde_json::Value, which: &str| v[which].as_f64().unwrap();
    println!(
        "Python SDK (opentelemetry-exporter-otlp-proto-grpc, grpcio) exporting {SPANS_PER_EXPORT} \
         spans to the gRPC receiver, {EXPORTS} times each:\n  \
         exporter.export, identity: median {:.3} ms, p99 {:.3} ms\n  \
         exporter.export, gzip:     median {:.3} ms, p99 {:.3} ms",
        ms(plain, "median_ms"),
        ms(plain, "p99_ms"),
        ms(gzip, "median_ms"),
        ms(gzip, "p99_ms"),
    );
    assert_eq!(plain["failures"], 0);
    assert_eq!(gzip["failures"], 0);
    assert_eq!(report["metrics_ok"], true);

    let stats = receiver.stats.clone();
    receiver.stop().await;
    let drained = drain.await.unwrap();
    let spans = (2 * EXPORTS * SPANS_PER_EXPORT) as u64;
    assert_eq!(drained.spans, spans);
    assert_eq!(
        drained.trace_ids.into_iter().collect::<Vec<_>>(),
        [report["trace_id"].as_str().unwrap()]
    );
    assert_eq!(drained.metric_names, ["invocations", "latency"]);
    assert_eq!(drained.log_bodies, ["first line", "second line"]);
    // The SDK's log records carry the span they were written in.
    let logging_span = report["logging_span_id"].as_str().unwrap();
    assert_eq!(drained.log_span_ids, [logging_span, logging_span]);
    assert_eq!(Stats::get(&stats.receiver_records), spans + 2 + 2);
    assert_eq!(Stats::get(&stats.grpc_refused), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn a_full_queue_costs_the_python_exporter_one_call_and_no_retry() {
    // Every slot is left to the Telemetry API: each export is answered with a partial success.
    let receiver = start_grpc(4, 4, grpc_options(4 * 1024 * 1024)).await;
    let report = python(
        SDK_SCRIPT,
        vec![receiver.addr.to_string(), "10".into(), "5".into()],
    )
    .await;
    // The SDK takes a partial success as success: no error, no retry with backoff.
    assert_eq!(report["plain"]["failures"], 0);
    assert_eq!(report["gzip"]["failures"], 0);
    assert_eq!(report["metrics_ok"], true);
    // Each record arrived exactly once: one call per export.
    let sent = 2 * 5 * 10 + 2 + 2;
    assert_eq!(Stats::get(&receiver.stats.receiver_records), sent);
    assert_eq!(
        receiver.stats.dropped_total(DropReason::IntakeFull),
        sent,
        "every record dropped and counted"
    );
    assert_eq!(Stats::get(&receiver.stats.grpc_refused), 0);
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn every_abuse_of_the_port_gets_a_clear_refusal_and_bounded_memory() {
    let cap = 64 * 1024;
    let options = grpc_options(cap);
    let (timeout, bound) = (options.message_timeout, options.in_flight_bytes);
    let receiver = start_grpc(8, 0, options).await;
    let result = python(
        REFUSALS_SCRIPT,
        vec![
            receiver.addr.to_string(),
            cap.to_string(),
            timeout.as_millis().to_string(),
        ],
    )
    .await;
    let max_streams = crate::intake::receiver::grpc::MAX_CONCURRENT_STREAMS;
    assert_eq!(result["max_concurrent_streams"], max_streams, "{result}");
    // RST_STREAM(NO_ERROR) follows an answer sent before the request ended.
    let no_error = serde_json::json!(0);

    let oversize = &result["oversize"];
    assert_eq!(oversize["status"], 3, "INVALID_ARGUMENT: {oversize}");
    assert!(
        oversize["message"]
            .as_str()
            .unwrap()
            .contains("CONTRAIL_RECEIVER_MAX_BODY_BYTES")
    );
    assert_eq!(oversize["reset"], no_error);

    let stalled = &result["stalled"];
    assert_eq!(stalled["status"], 4, "DEADLINE_EXCEEDED: {stalled}");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("did not arrive within"),
        "{stalled}"
    );
    assert_eq!(stalled["reset"], no_error);

    // The flood: as many streams as the bound on unfinished messages holds are read (and then
    // time out); every other one is refused at once with a delay to retry after.
    let flood = result["flood"].as_array().unwrap();
    assert_eq!(flood.len(), max_streams as usize);
    let read = bound / cap;
    let timed_out = flood.iter().filter(|s| s["status"] == 4).count();
    let busy: Vec<_> = flood.iter().filter(|s| s["status"] == 8).collect();
    assert_eq!(timed_out, read, "{result}");
    assert_eq!(busy.len(), flood.len() - read, "{result}");
    assert!(busy.iter().all(|s| s["retry_info"] == true), "{result}");
    // A client that keeps to the advertised limit cannot open more.
    assert_eq!(result["client_refused_one_more"], true);

    // A client that opens streams beyond the limit has them refused by HTTP/2
    // (REFUSED_STREAM, 7), never seen as calls; the calls it had open are cut off.
    let beyond = &result["beyond_limit"];
    assert_eq!(beyond["reset"], 7, "REFUSED_STREAM: {beyond}");
    assert_eq!(beyond["status"], serde_json::Value::Null, "{beyond}");
    let waiting = result["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), max_streams as usize);
    assert!(waiting.iter().all(|s| s["status"] == 4), "{result}");

    let http1 = &result["http1"];
    assert_eq!(http1["status"], 505);
    assert!(
        http1["body"]
            .as_str()
            .unwrap()
            .contains("Send OTLP/HTTP to port 4318"),
        "{http1}"
    );
    let tls = result["tls"].as_str().unwrap();
    assert!(
        tls.to_ascii_lowercase().contains("handshake failure"),
        "{tls}"
    );

    // GOAWAY with PROTOCOL_ERROR.
    assert_eq!(result["protocol_error"], serde_json::json!([1]), "{result}");

    let calls = receiver.grpc.as_ref().unwrap();
    assert_eq!(calls.in_flight_bytes(), 0, "everything given back");
    // oversize, stalled, the flood, the calls open beside the refused stream, the protocol
    // error, HTTP/1.1, TLS
    let expected = 1 + 1 + flood.len() as u64 + waiting.len() as u64 + 1 + 1 + 1;
    // The protocol error is counted when its connection has ended, which may be a moment after
    // the client saw the GOAWAY.
    wait_until(|| Stats::get(&receiver.stats.grpc_refused) >= expected).await;
    assert_eq!(Stats::get(&receiver.stats.grpc_refused), expected);
    receiver.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
