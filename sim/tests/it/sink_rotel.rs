//! Real clients and a real collector against the sink: the OpenTelemetry Python SDK exporting
//! directly, and through the rotel collector.

use std::path::PathBuf;
use std::time::Instant;

use crate::support::otlp::PATIENCE;
use crate::support::{assets, venv_python};
use contrail_sim::sink::rotel::{RotelCollector, RotelError, RotelOptions};
use contrail_sim::sink::{self, Received, SinkConfig, SinkHandle};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;

/// Runs the SDK script against `endpoint` and returns the trace id it printed.
async fn send_with_python_sdk(endpoint: &str) -> String {
    let script = assets().join("sdk/send_otel.py");
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(venv_python())
            .arg(&script)
            .arg(endpoint)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the SDK script did not finish")
    .expect("cannot run the venv's python");
    assert!(
        output.status.success(),
        "SDK script failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let trace_id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id:?}");
    trace_id
}

/// rotel forwarding to `forward_to`, or a failure that says what is missing.
async fn rotel(forward_to: &str) -> RotelCollector {
    RotelCollector::start(forward_to)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn wait_for_everything(sink: &SinkHandle) -> Received {
    sink.wait_for(PATIENCE, |r| {
        r.span_count() >= 2
            && r.log_record_count() >= 1
            && !r.metrics_named("sample.requests").is_empty()
    })
    .await
    .unwrap()
}

/// What the script sent, as the sink must have decoded it.
fn check(received: &Received, trace_id: &str) {
    let spans = received.spans();
    assert_eq!(spans.len(), 2, "{}", received.summary());
    let handler = received.spans_named("handler");
    let db = received.spans_named("db-query");
    assert_eq!((handler.len(), db.len()), (1, 1));
    let (handler, db) = (handler[0], db[0]);
    assert_eq!(hex(&handler.span.trace_id), trace_id);
    assert_eq!(hex(&db.span.trace_id), trace_id);
    assert!(handler.span.parent_span_id.is_empty());
    assert_eq!(db.span.parent_span_id, handler.span.span_id);
    assert!(handler.span.end_time_unix_nano >= db.span.end_time_unix_nano);
    let service = handler
        .resource
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(service, Some(Value::StringValue("py-sample".to_owned())));

    let logs = received.log_records();
    assert_eq!(logs.len(), 1);
    let record = logs[0].record;
    assert_eq!(hex(&record.trace_id), trace_id);
    assert_eq!(record.span_id, db.span.span_id);
    assert_eq!(
        record.body.as_ref().and_then(|b| b.value.clone()),
        Some(Value::StringValue("querying the database".to_owned()))
    );
    assert_eq!(record.severity_text, "INFO");

    let metric = received.metrics_named("sample.requests");
    let Some(Data::Sum(sum)) = &metric[0].metric.data else {
        panic!("sample.requests is not a sum: {:?}", metric[0].metric);
    };
    assert_eq!(sum.data_points.len(), 1);
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(3))
    );

    assert!(received.duplicate_spans().is_empty());
    assert!(received.duplicate_logs().is_empty());
}

#[tokio::test]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn python_sdk_exports_to_the_sink() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let trace_id = send_with_python_sdk(&sink.endpoint()).await;
    // The SDK's exports are synchronous: everything is there once the script ended.
    let received = sink.snapshot();
    check(&received, &trace_id);
    let text = sink.render_text();
    assert!(text.contains(&format!("== trace {trace_id}")), "{text}");
    assert!(text.contains("querying the database  [db-query]"), "{text}");
    sink.shutdown().await;
}

#[tokio::test]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn python_sdk_through_rotel_reaches_the_sink_decoded() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let rotel = rotel(&sink.endpoint()).await;
    let trace_id = send_with_python_sdk(&rotel.http_endpoint()).await;
    let sent = Instant::now();
    let received = wait_for_everything(&sink).await;
    eprintln!(
        "rotel forwarded everything {:?} after the SDK finished",
        sent.elapsed()
    );
    check(&received, &trace_id);
    // rotel exports gzip-compressed protobuf, all accepted.
    assert!(received.attempts.iter().all(|a| a.status == 200));
    assert_eq!(received.counters.bad_requests, 0);
    drop(rotel);
    sink.shutdown().await;
}

#[tokio::test]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn rotel_retries_after_the_sink_answers_503() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    sink.set_behaviour(sink::Behaviour::Status {
        code: 503,
        retry_after: None,
    })
    .await
    .unwrap();
    let rotel = rotel(&sink.endpoint()).await;
    let trace_id = send_with_python_sdk(&rotel.http_endpoint()).await;
    // rotel has tried (and been refused) for every signal before the sink accepts again.
    sink.wait_for(PATIENCE, |r| r.counters.rejected >= 3)
        .await
        .unwrap();
    sink.set_behaviour(sink::Behaviour::Accept).await.unwrap();
    let received = wait_for_everything(&sink).await;
    check(&received, &trace_id);
    assert!(received.failed_attempts().iter().all(|a| a.status == 503));
    drop(rotel);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_missing_rotel_binary_is_a_clear_error() {
    let missing = RotelCollector::start_with(
        "http://127.0.0.1:9",
        RotelOptions {
            binary: Some(PathBuf::from("/nowhere/rotel-agent")),
            ..RotelOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, RotelError::NotFound(_)), "{missing}");
    assert!(missing.to_string().contains("/nowhere/rotel-agent"));
}

#[tokio::test]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn rotel_that_exits_at_start_is_a_clear_error() {
    // A binary that exits at once (rotel with an exporter flag it does not know).
    let exits = RotelCollector::start_with(
        "http://127.0.0.1:9",
        RotelOptions {
            extra_args: vec!["--no-such-flag".to_owned()],
            ..RotelOptions::default()
        },
    )
    .await
    .unwrap_err();
    let RotelError::Exited { status, output } = &exits else {
        panic!("expected an exit, got {exits}");
    };
    assert!(!status.success());
    assert!(output.contains("--no-such-flag"), "{output}");
}
