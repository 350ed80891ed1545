//! The local OTLP receiver over real HTTP on 127.0.0.1: what it accepts, what it refuses and how.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use contrail_testkit::http::{gzip, post, send};

use super::{PROTOBUF, post_gzip_protobuf, start};
use crate::diag::{DropReason, Stats};
use crate::pipeline::otlp::RpcStatus;
use crate::pipeline::{Intake, OtlpPayload};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const JSON: &str = "application/json";
const CAP: usize = 64 * 1024;

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub(super) fn traces(spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "orders")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![0x5b; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: format!("step-{i}"),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_100_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(super) fn gauge_metrics(points: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(super) fn logs(records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn received(intake: &mut tokio::sync::mpsc::Receiver<Intake>) -> OtlpPayload {
    match intake.try_recv() {
        Ok(Intake::Otlp(payload, _)) => payload,
        other => panic!("expected one queued OTLP payload, got {other:?}"),
    }
}

#[tokio::test]
async fn protobuf_traces_are_queued_and_answered_with_an_empty_protobuf_response() {
    let mut receiver = start(8, CAP).await;
    let request = traces(3);
    let answer = post(
        receiver.addr,
        "/v1/traces",
        PROTOBUF,
        request.encode_to_vec(),
    )
    .await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type(), PROTOBUF);
    let response = ExportTraceServiceResponse::decode(answer.body.clone()).unwrap();
    assert_eq!(response.partial_success, None);
    assert_eq!(received(&mut receiver.intake), OtlpPayload::Traces(request));
    assert_eq!(Stats::get(&receiver.stats.receiver_records), 3);
    assert_eq!(Stats::get(&receiver.stats.receiver_rejected_requests), 0);
    receiver.stop().await;
}

#[tokio::test]
async fn gzip_protobuf_metrics_and_logs_are_decompressed_and_queued() {
    let mut receiver = start(8, CAP).await;
    let metrics = gauge_metrics(4);
    let answer =
        post_gzip_protobuf(receiver.addr, "/v1/metrics", gzip(&metrics.encode_to_vec())).await;
    assert_eq!(answer.status, 200);
    ExportMetricsServiceResponse::decode(answer.body.clone()).unwrap();
    assert_eq!(
        received(&mut receiver.intake),
        OtlpPayload::Metrics(metrics)
    );

    let records = logs(5);
    let answer = send(
        receiver.addr,
        "POST",
        "/v1/logs",
        &[
            ("content-type", "application/x-protobuf; charset=binary"),
            ("content-encoding", "GZIP"),
        ],
        gzip(&records.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status, 200);
    ExportLogsServiceResponse::decode(answer.body.clone()).unwrap();
    assert_eq!(received(&mut receiver.intake), OtlpPayload::Logs(records));
    // Four metric data points and five log records.
    assert_eq!(Stats::get(&receiver.stats.receiver_records), 4 + 5);
    receiver.stop().await;
}

/// The examples of the OTLP specification's JSON encoding: hex ids, 64-bit integers as strings,
/// enums as integers, camelCase names, unknown fields ignored.
#[tokio::test]
async fn otlp_json_as_the_specification_writes_it_is_accepted_and_answered_in_json() {
    let mut receiver = start(8, CAP).await;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[
          {"key":"service.name","value":{"stringValue":"checkout"}}]},
        "scopeSpans":[{"scope":{"name":"manual","version":"1.0"},
          "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "parentSpanId":"eee19b7ec3c1b173","name":"charge","kind":3,
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"retries","value":{"intValue":"3"}},
                          {"key":"amount","value":{"doubleValue":12.5}},
                          {"key":"ok","value":{"boolValue":true}}],
            "status":{"code":2,"message":"declined"},
            "someFutureField":{"ignored":true}}]}]}]}"#;
    let answer = post(
        receiver.addr,
        "/v1/traces",
        "application/json; charset=utf-8",
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.content_type(), JSON);
    assert_eq!(answer.text(), "{}");

    let OtlpPayload::Traces(request) = received(&mut receiver.intake) else {
        panic!("expected traces")
    };
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.kind, 3);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(any_value::Value::IntValue(3))
    );
    receiver.stop().await;
}

#[tokio::test]
async fn otlp_json_metrics_and_logs_are_accepted() {
    let mut receiver = start(8, CAP).await;
    let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"requests",
        "sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
          {"asInt":"42","startTimeUnixNano":"1544712660000000000","timeUnixNano":"1544712661000000000"}]}}]}]}]}"#;
    let answer = post(receiver.addr, "/v1/metrics", JSON, metrics).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let OtlpPayload::Metrics(request) = received(&mut receiver.intake) else {
        panic!("expected metrics")
    };
    let Some(metric::Data::Sum(sum)) =
        &request.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("expected a sum")
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(42))
    );

    let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"timeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information",
         "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
         "body":{"stringValue":"Example log record"}}]}]}]}"#;
    let answer = send(
        receiver.addr,
        "POST",
        "/v1/logs",
        &[("content-type", JSON), ("content-encoding", "gzip")],
        gzip(logs.as_bytes()),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let OtlpPayload::Logs(request) = received(&mut receiver.intake) else {
        panic!("expected logs")
    };
    let record = &request.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.severity_number, 10);
    assert_eq!(hex(&record.trace_id), "5b8efff798038103d269b633813fc60c");
    receiver.stop().await;
}

#[tokio::test]
async fn an_undecodable_body_gets_400_with_a_reason_in_the_request_encoding() {
    let receiver = start(8, CAP).await;

    let answer = post(
        receiver.addr,
        "/v1/traces",
        PROTOBUF,
        &b"\xff\xff\xff\xff"[..],
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.content_type(), PROTOBUF);
    let status = RpcStatus::decode(answer.body.clone()).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status.message.contains("not a valid OTLP protobuf"),
        "{}",
        status.message
    );

    let answer = post(receiver.addr, "/v1/logs", JSON, r#"{"resourceLogs": 7}"#).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.content_type(), JSON);
    let status: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("not a valid OTLP JSON")
    );

    // A trace id that is not hex.
    let bad_id = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","name":"x"}]}]}]}"#;
    let answer = post(receiver.addr, "/v1/traces", JSON, bad_id).await;
    assert_eq!(answer.status, 400, "{}", answer.text());

    assert_eq!(Stats::get(&receiver.stats.receiver_rejected_requests), 3);
    assert_eq!(Stats::get(&receiver.stats.receiver_records), 0);
    receiver.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_gzip_gets_400() {
    let receiver = start(8, CAP).await;
    let answer = post_gzip_protobuf(receiver.addr, "/v1/traces", traces(1).encode_to_vec()).await;
    assert_eq!(answer.status, 400);
    let status = RpcStatus::decode(answer.body.clone()).unwrap();
    assert!(
        status.message.contains("invalid gzip body"),
        "{}",
        status.message
    );

    // A gzip stream cut in half.
    let whole = gzip(&traces(20).encode_to_vec());
    let answer = post_gzip_protobuf(
        receiver.addr,
        "/v1/traces",
        whole[..whole.len() / 2].to_vec(),
    )
    .await;
    assert_eq!(answer.status, 400);
    receiver.stop().await;
}

#[tokio::test]
async fn a_body_over_the_cap_gets_413_before_and_after_decompression() {
    let cap = 4096;
    let receiver = start(8, cap).await;

    // Declared by Content-Length.
    let answer = post(receiver.addr, "/v1/traces", PROTOBUF, vec![0u8; cap + 1]).await;
    assert_eq!(answer.status, 413);
    let status = RpcStatus::decode(answer.body.clone()).unwrap();
    assert!(status.message.contains("4096"), "{}", status.message);

    // Small on the wire, too large once inflated.
    let bomb = gzip(&vec![0u8; cap * 100]);
    assert!(bomb.len() < cap);
    let answer = post_gzip_protobuf(receiver.addr, "/v1/traces", bomb).await;
    assert_eq!(answer.status, 413);

    // Chunked, so the size is only known while reading.
    let addr = receiver.addr;
    let status_line = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let chunk = vec![b'a'; 1000];
        let mut request = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {PROTOBUF}\r\n\
             transfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..5 {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(&chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        stream.write_all(&request).unwrap();
        let mut answer = vec![0u8; 12];
        stream.read_exact(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 413");

    assert_eq!(Stats::get(&receiver.stats.receiver_rejected_requests), 3);
    receiver.stop().await;
}

#[tokio::test]
async fn unknown_content_types_and_encodings_get_415() {
    let receiver = start(8, CAP).await;
    let body = traces(1).encode_to_vec();

    let answer = post(receiver.addr, "/v1/traces", "text/plain", body.clone()).await;
    assert_eq!(answer.status, 415);
    assert!(
        answer.text().contains("application/x-protobuf"),
        "{}",
        answer.text()
    );

    let answer = send(receiver.addr, "POST", "/v1/traces", &[], body.clone()).await;
    assert_eq!(answer.status, 415);

    let answer = send(
        receiver.addr,
        "POST",
        "/v1/traces",
        &[("content-type", PROTOBUF), ("content-encoding", "br")],
        body,
    )
    .await;
    assert_eq!(answer.status, 415);
    let status = RpcStatus::decode(answer.body.clone()).unwrap();
    assert!(status.message.contains("\"br\""), "{}", status.message);
    receiver.stop().await;
}

#[tokio::test]
async fn other_paths_get_404_and_other_methods_405() {
    let receiver = start(8, CAP).await;
    let answer = post(receiver.addr, "/v1/profiles", PROTOBUF, Vec::new()).await;
    assert_eq!(answer.status, 404);
    let answer = post(receiver.addr, "/", PROTOBUF, Vec::new()).await;
    assert_eq!(answer.status, 404);

    let answer = send(receiver.addr, "GET", "/v1/traces", &[], Vec::new()).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers.get("allow").unwrap(), "POST");
    let answer = send(
        receiver.addr,
        "PUT",
        "/v1/logs",
        &[("content-type", JSON)],
        "{}",
    )
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(Stats::get(&receiver.stats.receiver_rejected_requests), 4);
    receiver.stop().await;
}

/// A full queue costs the function nothing: 200 at once, with `partial_success` naming the
/// rejected records so the SDK does not retry, and the loss counted.
#[tokio::test]
async fn a_full_queue_answers_success_with_partial_success_and_counts_the_drop() {
    let mut receiver = start(1, CAP).await;
    let first = traces(2);
    let answer = post(receiver.addr, "/v1/traces", PROTOBUF, first.encode_to_vec()).await;
    assert_eq!(answer.status, 200);

    let answer = post(
        receiver.addr,
        "/v1/traces",
        PROTOBUF,
        traces(7).encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, 200);
    let partial = ExportTraceServiceResponse::decode(answer.body.clone())
        .unwrap()
        .partial_success
        .expect("partial_success is set when records are dropped");
    assert_eq!(partial.rejected_spans, 7);
    assert!(partial.error_message.contains("queue is full"));

    let answer = post(
        receiver.addr,
        "/v1/metrics",
        PROTOBUF,
        gauge_metrics(5).encode_to_vec(),
    )
    .await;
    let partial = ExportMetricsServiceResponse::decode(answer.body.clone())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_data_points, 5);

    let answer = post(
        receiver.addr,
        "/v1/logs",
        JSON,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{},{}]}]}]}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "3");

    // 2 spans queued; 7 spans, 5 metric data points and 3 log records dropped and counted, in
    // the unit each partial success above reported.
    assert_eq!(Stats::get(&receiver.stats.receiver_records), 2 + 7 + 5 + 3);
    assert_eq!(
        receiver.stats.dropped_total(DropReason::IntakeFull),
        7 + 5 + 3
    );
    assert_eq!(received(&mut receiver.intake), OtlpPayload::Traces(first));
    assert!(receiver.intake.try_recv().is_err());

    // Room again: the next request is queued.
    let answer = post(
        receiver.addr,
        "/v1/traces",
        PROTOBUF,
        traces(1).encode_to_vec(),
    )
    .await;
    assert_eq!(
        ExportTraceServiceResponse::decode(answer.body.clone())
            .unwrap()
            .partial_success,
        None
    );
    receiver.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_and_returns() {
    let mut receiver = start(8, CAP).await;
    let stream = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post("/v1/traces")
        .header("host", receiver.addr.to_string())
        .header("content-type", PROTOBUF)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            traces(1).encode_to_vec(),
        )))
        .unwrap();
    assert_eq!(client.send_request(request).await.unwrap().status(), 200);
    received(&mut receiver.intake);

    // The connection is idle and kept alive; stopping must not wait for the client to close it.
    receiver.stop().await;
    connection.await.unwrap().unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
