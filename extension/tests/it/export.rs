//! The real binary, wired end to end: Telemetry API records and the local receivers' OTLP (HTTP
//! and gRPC) reach a scripted OTLP backend, flushed at the end of the invocation (before the
//! next `next`) and at shutdown.

// The scripted backend is shared with the export tests; a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use contrail_testkit::grpc;
use contrail_testkit::otlp_backend as backend;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use std::time::Duration;

use crate::support::{Extension, FakeLambda, NEXT, Script, listening, post, post_json};
use backend::Backend;

const TRACE_ID_HEX: &str = "5759e988bd862e3fe1be46a994272793";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_telemetry_is_exported_before_the_next_call_and_the_rest_at_shutdown() {
    let backend = Backend::start(Vec::new()).await;
    let free_port = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let receiver_port = free_port();
    let receiver = format!("127.0.0.1:{receiver_port}");
    let grpc_receiver: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let fake = FakeLambda::start(Script::default()).await;
    let endpoint = backend.endpoint();
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("CONTRAIL_RECEIVER_ENDPOINT", &receiver),
            (
                "CONTRAIL_RECEIVER_GRPC_ENDPOINT",
                &grpc_receiver.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    let port = listening(&fake).await;

    fake.push_invoke("req-1", Duration::from_secs(30));
    // The function's SDK exports a span to the local receiver while it runs.
    let sdk_span = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"unknown_service"}}]},
        "scopeSpans":[{"spans":[{"traceId":"5759e988bd862e3fe1be46a994272793","spanId":"0102030405060708",
        "name":"sdk-work","kind":1,"startTimeUnixNano":"1704067201000000000","endTimeUnixNano":"1704067201050000000"}]}]}]}"#;
    let status = post(receiver_port, "/v1/traces", sdk_span).await;
    assert_eq!(status, 200);
    // And one over gRPC.
    let grpc_span = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: (0..16).collect(),
                    span_id: vec![9; 8],
                    name: "sdk-grpc-work".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let answer = grpc::call(
        grpc_receiver,
        grpc::TRACES,
        &[],
        grpc::framed(false, &grpc_span.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status(), Some(0), "{answer:?}");
    assert_eq!(
        post_json(
            port,
            r#"[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"req-1","version":"$LATEST"}},
                {"time":"2024-01-01T00:00:01.010Z","type":"function","record":"processing order 42"},
                {"time":"2024-01-01T00:00:01.100Z","type":"platform.runtimeDone","record":{"requestId":"req-1","status":"success","metrics":{"durationMs":100.0,"producedBytes":12}}}]"#,
        )
        .await,
        200
    );
    let second_next = fake.wait_for(NEXT, 2).await.remove(1);

    // Exported before the extension said it was done with the invocation.
    let traces: Vec<_> = backend
        .received()
        .into_iter()
        .filter(|r| r.traces.is_some() && r.at <= second_next.at)
        .collect();
    let spans: Vec<_> = traces
        .iter()
        .filter_map(|r| r.traces.clone())
        .flat_map(|t| t.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
    assert!(
        spans
            .iter()
            .any(|s| hex(&s.trace_id) == TRACE_ID_HEX && s.name != "sdk-work"),
        "the invocation span, in the caller's trace, before the next call: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The SDK's span went through with Lambda's resource merged in.
    let sdk = backend
        .received()
        .into_iter()
        .filter_map(|r| r.traces)
        .flat_map(|t| t.resource_spans)
        .find(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(|ss| &ss.spans)
                .any(|s| s.name == "sdk-work")
        })
        .expect("the SDK span was exported");
    let attrs: Vec<(String, String)> = sdk
        .resource
        .unwrap()
        .attributes
        .into_iter()
        .map(|kv| {
            let v = match kv.value.and_then(|v| v.value) {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s,
                other => format!("{other:?}"),
            };
            (kv.key, v)
        })
        .collect();
    assert!(
        attrs.contains(&("faas.name".into(), "orders".into())),
        "{attrs:?}"
    );
    assert!(
        attrs.contains(&("service.name".into(), "orders".into())),
        "{attrs:?}"
    );
    let grpc_exported = backend
        .received()
        .into_iter()
        .filter(|r| r.at <= second_next.at)
        .filter_map(|r| r.traces)
        .flat_map(|t| t.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .any(|s| s.name == "sdk-grpc-work");
    assert!(
        grpc_exported,
        "the span sent over gRPC, before the next call"
    );

    // SHUTDOWN: the last invocation's report arrives only now and is exported before exit.
    let deadline = fake.push_shutdown(Duration::from_millis(2000));
    post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:01.200Z","type":"platform.report","record":{"requestId":"req-1","status":"success","metrics":{"durationMs":100.0,"billedDurationMs":100,"memorySizeMB":128,"maxMemoryUsedMB":30}}}]"#,
    )
    .await;
    let status = ext.wait_exit(deadline).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ext.stderr());
    assert!(
        !ext.stderr().contains("telemetry is disabled"),
        "a normal shutdown is not a failure:\n{}",
        ext.stderr()
    );
    let metrics = backend.accepted_metric_names();
    assert!(
        metrics.iter().any(|m| m == "faas.invoke_duration"),
        "report metrics exported at shutdown: {metrics:?}"
    );
    let logs = log_bodies(&backend);
    assert!(
        logs.iter().any(|l| l.contains("processing order 42")),
        "the function's log line: {logs:?}"
    );
}

/// The bodies of every log record the backend received.
fn log_bodies(backend: &Backend) -> Vec<String> {
    backend
        .received()
        .into_iter()
        .filter_map(|r| r.logs)
        .flat_map(|l| l.resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .filter_map(|lr| lr.body.and_then(|b| b.value))
        .map(|v| format!("{v:?}"))
        .collect()
}

/// What Lambda delivers after SHUTDOWN reached the extension, in separate batches one buffering
/// window apart (the last invocation's report, then the lines the runtime wrote while it shut
/// down), is received and exported before the extension exits, within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_delivered_after_shutdown_are_received_and_exported() {
    let backend = Backend::start(Vec::new()).await;
    let fake = FakeLambda::start(Script::default()).await;
    let endpoint = backend.endpoint();
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ],
    );
    let port = listening(&fake).await;
    fake.push_invoke("req-last", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(50)).await;
    post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"req-last"}},
            {"time":"2024-01-01T00:00:01.100Z","type":"platform.runtimeDone","record":{"requestId":"req-last","status":"success","metrics":{"durationMs":100.0}}}]"#,
    )
    .await;
    fake.wait_for(NEXT, 2).await;

    let deadline = fake.push_shutdown(Duration::from_millis(2000));
    // Delivered by another task: after the extension exits, a POST has nowhere to go.
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let report = post_json(
            port,
            r#"[{"time":"2024-01-01T00:00:01.300Z","type":"platform.report","record":{"requestId":"req-last","status":"success","metrics":{"durationMs":104.2,"billedDurationMs":105,"memorySizeMB":128,"maxMemoryUsedMB":31},"spans":[{"name":"extensionOverhead","start":"2024-01-01T00:00:01.100Z","durationMs":4.2}]}}]"#,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        let lines = post_json(
            port,
            r#"[{"time":"2024-01-01T00:05:00.010Z","type":"function","record":"[INFO]\t2024-01-01T00:05:00.010Z\t\tSIGTERM received: closing the connection pool\n"},
                {"time":"2024-01-01T00:05:00.012Z","type":"function","record":"[INFO]\t2024-01-01T00:05:00.012Z\t\tconnection pool closed\n"}]"#,
        )
        .await;
        (report, lines)
    });
    let status = ext.wait_exit(deadline).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ext.stderr());
    let answers = late
        .await
        .unwrap_or_else(|e| panic!("the extension no longer took records after SHUTDOWN: {e}"));
    assert_eq!(answers, (200, 200));
    let logs = log_bodies(&backend);
    for line in [
        "SIGTERM received: closing the connection pool",
        "connection pool closed",
    ] {
        assert!(
            logs.iter().any(|l| l.contains(line)),
            "{line:?} exported: {logs:?}"
        );
    }
    assert!(
        backend
            .accepted_metric_names()
            .iter()
            .any(|m| m == "faas.invoke_duration"),
        "the last report's metrics exported"
    );
}
