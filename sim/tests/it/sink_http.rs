//! The sink over real HTTP: encodings, error answers, the JSON lines file, duplicates.

use crate::support::otlp::*;
use contrail_sim::sink::{self, SinkConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

fn sample_traces() -> ExportTraceServiceRequest {
    let mut failed = span(1, 3, 1, "runtimeOverhead", 90, 100);
    failed.status = error_status("boom");
    traces(
        "checkout",
        vec![
            span(1, 1, 0, "invoke", 0, 100),
            span(1, 2, 1, "responseLatency", 5, 40),
            failed,
        ],
    )
}

fn sample_logs() -> ExportLogsServiceRequest {
    logs(
        "checkout",
        vec![
            log(1, 1, 10, "INFO", "hello\nworld"),
            log(0, 0, 20, "WARN", "no trace"),
        ],
    )
}

fn sample_metrics() -> ExportMetricsServiceRequest {
    metrics(
        "checkout",
        vec![
            delta_sum(
                "faas.invocations",
                "{invocation}",
                vec![int_point(2, 5, vec![string_kv("faas.trigger", "http")])],
            ),
            delta_histogram("faas.duration", "ms", &[12.5, 40.0], 5),
        ],
    )
}

#[tokio::test]
async fn protobuf_json_and_gzip_decode_to_the_same_requests() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let base = sink.endpoint();
    assert!(base.starts_with("http://127.0.0.1:"));

    let t = sample_traces();
    let l = sample_logs();
    let m = sample_metrics();
    let bodies: [(&str, Vec<u8>, Vec<u8>); 3] = [
        (
            "/v1/traces",
            t.encode_to_vec(),
            serde_json::to_vec(&t).unwrap(),
        ),
        (
            "/v1/logs",
            l.encode_to_vec(),
            serde_json::to_vec(&l).unwrap(),
        ),
        (
            "/v1/metrics",
            m.encode_to_vec(),
            serde_json::to_vec(&m).unwrap(),
        ),
    ];
    for (path, proto, json) in &bodies {
        let url = format!("{base}{path}");
        let variants = [
            ("application/x-protobuf", None, proto.clone()),
            ("application/x-protobuf", Some("gzip"), gzip(proto)),
            ("application/json", None, json.clone()),
            ("application/json; charset=utf-8", Some("gzip"), gzip(json)),
        ];
        for (content_type, encoding, body) in variants {
            let answer = post(&url, Some(content_type), encoding, body)
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{path} {content_type} {encoding:?}");
            if content_type.starts_with("application/json") {
                assert_eq!(answer.headers["content-type"], "application/json");
                assert_eq!(&answer.body[..], b"{}");
            } else {
                assert_eq!(answer.headers["content-type"], "application/x-protobuf");
                let response = ExportTraceServiceResponse::decode(answer.body).unwrap();
                assert_eq!(response.partial_success, None);
            }
        }
    }

    let got = sink.snapshot();
    assert_eq!(got.traces, vec![t.clone(); 4]);
    assert_eq!(got.logs, vec![l.clone(); 4]);
    assert_eq!(got.metrics, vec![m.clone(); 4]);
    assert_eq!(got.counters.requests, 12);
    assert_eq!(got.counters.bad_requests, 0);
    let wire: u64 = bodies
        .iter()
        .map(|(_, p, j)| (p.len() + gzip(p).len() + j.len() + gzip(j).len()) as u64)
        .sum();
    assert_eq!(got.counters.bytes, wire);
    assert_eq!(got.attempts.len(), 12);
    assert!(got.attempts.iter().all(|a| a.status == 200));
    assert_eq!(got.attempts[0].items, Some(3));
    assert_eq!(got.span_count(), 12);
    sink.shutdown().await;
}

/// OTLP JSON as the specification writes it (hex ids, 64-bit integers as strings, enums as
/// numbers), not as this crate's serializer happens to write it.
#[tokio::test]
async fn accepts_otlp_json_as_specified() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let body = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0"},
          "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "kind": 2,
            "attributes": [{"key": "my.span.attr", "value": {"intValue": "42"}}],
            "status": {"code": 2, "message": "failed"}
          }]
        }]
      }]
    }"#;
    let answer = post(
        &format!("{}/v1/traces", sink.endpoint()),
        Some("application/json"),
        None,
        body.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let got = sink.snapshot();
    let spans = got.spans();
    assert_eq!(spans.len(), 1);
    let s = spans[0].span;
    assert_eq!(
        s.trace_id,
        [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(s.span_id, [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
    assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 1_000_000_000);
    assert_eq!(s.status.as_ref().map(|st| st.code), Some(2));
    assert_eq!(
        spans[0].scope.map(|sc| sc.name.as_str()),
        Some("my.library")
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_400_415_404_405_with_a_reason_and_nothing_is_kept() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let base = sink.endpoint();
    let traces_url = format!("{base}/v1/traces");
    let valid = sample_traces().encode_to_vec();

    // Undecodable bodies: 400 with the reason in a google.rpc.Status of the same encoding.
    let garbage = post(
        &traces_url,
        Some("application/x-protobuf"),
        None,
        vec![0xff, 0xff, 0xff, 0xff],
    )
    .await
    .unwrap();
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.headers["content-type"], "application/x-protobuf");
    let reason = String::from_utf8_lossy(&garbage.body).to_string();
    assert!(
        reason.contains("not a valid protobuf ExportTraceServiceRequest"),
        "{reason}"
    );

    let bad_json = post(
        &format!("{base}/v1/logs"),
        Some("application/json"),
        None,
        b"{\"resourceLogs\": 7}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(bad_json.status, 400);
    let status: serde_json::Value = serde_json::from_slice(&bad_json.body).unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("not a valid OTLP JSON ExportLogsServiceRequest"),
        "{status}"
    );

    let bad_gzip = post(
        &traces_url,
        Some("application/x-protobuf"),
        Some("gzip"),
        valid.clone(),
    )
    .await
    .unwrap();
    assert_eq!(bad_gzip.status, 400);
    assert!(String::from_utf8_lossy(&bad_gzip.body).contains("not valid gzip"));

    // Unsupported media: 415.
    let text = post(&traces_url, Some("text/plain"), None, valid.clone())
        .await
        .unwrap();
    assert_eq!(text.status, 415);
    assert!(String::from_utf8_lossy(&text.body).contains("unsupported Content-Type"));
    let missing = post(&traces_url, None, None, valid.clone()).await.unwrap();
    assert_eq!(missing.status, 415);
    assert!(String::from_utf8_lossy(&missing.body).contains("missing Content-Type"));
    let zstd = post(
        &traces_url,
        Some("application/x-protobuf"),
        Some("zstd"),
        valid.clone(),
    )
    .await
    .unwrap();
    assert_eq!(zstd.status, 415);
    assert!(String::from_utf8_lossy(&zstd.body).contains("unsupported Content-Encoding"));

    // Other paths and methods.
    let other = post(
        &format!("{base}/v1/profiles"),
        Some("application/x-protobuf"),
        None,
        valid.clone(),
    )
    .await
    .unwrap();
    assert_eq!(other.status, 404);
    assert!(String::from_utf8_lossy(&other.body).contains("/v1/traces"));
    let get = send("GET", &traces_url, None, None, Vec::new())
        .await
        .unwrap();
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");

    let got = sink.snapshot();
    assert!(got.traces.is_empty() && got.logs.is_empty() && got.metrics.is_empty());
    assert_eq!(got.counters.requests, 0);
    assert_eq!(got.counters.bytes, 0);
    assert_eq!(got.counters.bad_requests, 8);
    let statuses: Vec<u16> = got.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![400, 400, 400, 415, 415, 415, 404, 405]);
    sink.shutdown().await;
}

#[tokio::test]
async fn jsonl_file_holds_one_line_per_accepted_request_that_decodes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("received.jsonl");
    std::fs::write(&path, "left over from an earlier run\n").unwrap();
    let sink = sink::start(SinkConfig {
        jsonl_path: Some(path.clone()),
        ..SinkConfig::default()
    })
    .await
    .unwrap();
    let base = sink.endpoint();
    let t = sample_traces();
    let l = sample_logs();
    let m = sample_metrics();
    for (path, body) in [
        ("/v1/traces", t.encode_to_vec()),
        ("/v1/logs", gzip(&l.encode_to_vec())),
        ("/v1/metrics", m.encode_to_vec()),
    ] {
        let encoding = (path == "/v1/logs").then_some("gzip");
        let answer = post(
            &format!("{base}{path}"),
            Some("application/x-protobuf"),
            encoding,
            body,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    // A rejected request adds no line.
    let bad = post(
        &format!("{base}/v1/traces"),
        Some("application/json"),
        None,
        b"[".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 400);

    // Each line is on disk as soon as its request was answered.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let signals: Vec<&str> = lines
        .iter()
        .map(|l| l["signal"].as_str().unwrap())
        .collect();
    assert_eq!(signals, ["traces", "logs", "metrics"]);
    let times: Vec<u64> = lines
        .iter()
        .map(|l| l["received_unix_nano"].as_u64().unwrap())
        .collect();
    assert!(times[0] > 1_600_000_000_000_000_000);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // OTLP JSON: hex ids, not base64 or arrays of numbers.
    assert_eq!(
        lines[0]["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"],
        format!("{}01", "ab".repeat(15))
    );
    let back_t: ExportTraceServiceRequest =
        serde_json::from_value(lines[0]["request"].clone()).unwrap();
    let back_l: ExportLogsServiceRequest =
        serde_json::from_value(lines[1]["request"].clone()).unwrap();
    let back_m: ExportMetricsServiceRequest =
        serde_json::from_value(lines[2]["request"].clone()).unwrap();
    assert_eq!(back_t, t);
    assert_eq!(back_l, l);
    assert_eq!(back_m, m);
    sink.shutdown().await;
}

#[tokio::test]
async fn duplicates_are_detected_for_spans_and_log_records() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let base = sink.endpoint();
    let send_all = |body: Vec<u8>, path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let answer = post(&url, Some("application/x-protobuf"), None, body)
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
        }
    };
    send_all(sample_traces().encode_to_vec(), "/v1/traces").await;
    send_all(sample_logs().encode_to_vec(), "/v1/logs").await;
    let first = sink.snapshot();
    assert!(first.duplicate_spans().is_empty());
    assert!(first.duplicate_logs().is_empty());

    // A different span in the same trace, and a log line differing only in its body.
    send_all(
        traces("checkout", vec![span(1, 9, 1, "other", 1, 2)]).encode_to_vec(),
        "/v1/traces",
    )
    .await;
    send_all(
        logs("checkout", vec![log(1, 1, 10, "INFO", "hello again")]).encode_to_vec(),
        "/v1/logs",
    )
    .await;
    let second = sink.snapshot();
    assert!(second.duplicate_spans().is_empty());
    assert!(second.duplicate_logs().is_empty());

    // The same spans and log records again, as a retry after a lost answer would send them.
    send_all(sample_traces().encode_to_vec(), "/v1/traces").await;
    send_all(
        logs("checkout", vec![log(0, 0, 20, "WARN", "no trace")]).encode_to_vec(),
        "/v1/logs",
    )
    .await;
    let third = sink.snapshot();
    let spans = third.duplicate_spans();
    let names: Vec<&str> = spans.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["invoke", "responseLatency", "runtimeOverhead"]);
    assert!(
        spans
            .iter()
            .all(|d| d.count == 2 && d.key.trace_id == trace_id(1))
    );
    let logs = third.duplicate_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].count, 2);
    assert!(logs[0].key.trace_id.is_empty());
    assert!(logs[0].key.body.contains("no trace"));
    sink.shutdown().await;
}

#[tokio::test]
async fn wait_for_returns_once_data_arrives_and_reports_what_it_holds_on_timeout() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let url = format!("{}/v1/traces", sink.endpoint());
    let poster = tokio::spawn(async move {
        post(
            &url,
            Some("application/x-protobuf"),
            None,
            sample_traces().encode_to_vec(),
        )
        .await
        .map(|a| a.status)
    });
    let got = sink.wait_for_spans(3, PATIENCE).await.unwrap();
    assert_eq!(got.span_count(), 3);
    assert_eq!(poster.await.unwrap().unwrap(), 200);

    let err = sink
        .wait_for(std::time::Duration::from_millis(50), |r| {
            r.span_count() >= 4
        })
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("3 spans"), "{message}");
    sink.shutdown().await;
}

#[tokio::test]
async fn jsonl_path_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = sink::start(SinkConfig {
        jsonl_path: Some(dir.path().join("missing-dir").join("out.jsonl")),
        ..SinkConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("out.jsonl"), "{err}");
}

#[tokio::test]
async fn requests_beyond_the_memory_cap_are_acknowledged_written_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("received.jsonl");
    let first = sample_traces();
    let sink = sink::start(SinkConfig {
        jsonl_path: Some(path.clone()),
        max_stored_bytes: first.encoded_len() + 10,
        ..SinkConfig::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/traces", sink.endpoint());
    for _ in 0..3 {
        let answer = post(
            &url,
            Some("application/x-protobuf"),
            None,
            first.encode_to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    let got = sink.snapshot();
    assert_eq!(got.traces.len(), 1);
    assert_eq!(got.counters.requests, 3);
    assert_eq!(got.counters.over_cap, 2);
    assert!(
        sink.render_text()
            .contains("2 accepted requests are not shown")
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    sink.shutdown().await;
}
