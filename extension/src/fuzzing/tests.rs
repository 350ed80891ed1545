//! The seed corpora of `fuzz/seeds/`: made here from the repository's fixtures and from OTLP
//! requests like those of the receiver tests, checked against the committed files, and run
//! through their targets. `CONTRAIL_WRITE_SEEDS=1` writes them instead
//! (`cargo test -p contrail --features fuzzing fuzzing::`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

use crate::pipeline::otlp::RpcStatus;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/telemetry")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv(
                "service.name",
                any_value::Value::StringValue("orders".into()),
            ),
            kv("faas.max_memory", any_value::Value::IntValue(512)),
        ],
        ..Default::default()
    })
}

fn traces() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans: (0..3u8)
                    .map(|i| Span {
                        trace_id: vec![0x5b; 16],
                        span_id: vec![i + 1; 8],
                        parent_span_id: if i == 0 { Vec::new() } else { vec![1; 8] },
                        name: format!("step-{i}"),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_100_000_000,
                        attributes: vec![
                            kv(
                                "http.route",
                                any_value::Value::StringValue("/orders".into()),
                            ),
                            kv("retry", any_value::Value::BoolValue(i == 2)),
                            kv(
                                "tags",
                                any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(any_value::Value::DoubleValue(1.5)),
                                    }],
                                }),
                            ),
                        ],
                        events: vec![span::Event {
                            time_unix_nano: 1_700_000_000_050_000_000,
                            name: "exception".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let point = |v: i64| NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "queue.depth".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point(3), point(4)],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "orders".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(10)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                count: 3,
                                sum: Some(12.5),
                                bucket_counts: vec![1, 2, 0],
                                explicit_bounds: vec![5.0, 10.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records: (0..3)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        trace_id: vec![0x5b; 16],
                        span_id: vec![1; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

fn prefixed(first: &[u8], rest: &[u8]) -> Vec<u8> {
    [first, rest].concat()
}

/// A gRPC length-prefixed message.
fn grpc_frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Every seed: target, file name, bytes.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();

    // mapper: each fixture alone after the INVOKE, under two settings; then whole invocations.
    for (i, name) in names.iter().enumerate() {
        let settings = if i % 2 == 0 { 0x00 } else { 0x8d };
        seeds.push((
            "mapper",
            name.clone(),
            prefixed(&[settings], &fixture(name)),
        ));
    }
    let invocation = [
        "platform.initStart.json",
        "platform.initRuntimeDone.json",
        "platform.initReport.json",
        "platform.start.json",
        "function.text.json",
        "function.json.json",
        "extension.text.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ];
    let mut whole = vec![0x00];
    for (i, name) in invocation.iter().enumerate() {
        if i > 0 {
            whole.push(super::SEPARATOR);
        }
        whole.extend_from_slice(&fixture(name));
    }
    seeds.push(("mapper", "invocation".into(), whole.clone()));
    let mut two = whole.clone();
    two[0] = 0x59;
    two.push(super::SEPARATOR);
    two.extend_from_slice(
        b"!0b7e4f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b|Root=1-5759e989-bd862e3fe1be46a994272794;Sampled=0",
    );
    two.push(super::SEPARATOR);
    two.extend_from_slice(&fixture("platform.report.timeout.json"));
    seeds.push(("mapper", "two-invocations".into(), two));

    // receiver_body: each signal in protobuf and JSON, plain and gzipped, over HTTP and gRPC;
    // gzip bombs and a second gzip member.
    let bodies: [(u8, &str, Vec<u8>, Vec<u8>); 3] = [
        (
            0,
            "traces",
            traces().encode_to_vec(),
            serde_json::to_vec(&traces()).unwrap(),
        ),
        (
            1,
            "metrics",
            metrics().encode_to_vec(),
            serde_json::to_vec(&metrics()).unwrap(),
        ),
        (
            2,
            "logs",
            logs().encode_to_vec(),
            serde_json::to_vec(&logs()).unwrap(),
        ),
    ];
    for (signal, name, protobuf, json) in &bodies {
        seeds.push((
            "receiver_body",
            format!("{name}.pb"),
            prefixed(&[*signal], protobuf),
        ));
        seeds.push((
            "receiver_body",
            format!("{name}.json"),
            prefixed(&[signal | 0x04], json),
        ));
        seeds.push((
            "receiver_body",
            format!("{name}.pb.gz"),
            prefixed(&[signal | 0x08], &gzip(protobuf)),
        ));
        seeds.push((
            "receiver_body",
            format!("{name}.json.gz-here"),
            prefixed(&[signal | 0x04 | 0xe0], json),
        ));
        seeds.push((
            "receiver_body",
            format!("{name}.grpc"),
            prefixed(&[signal | 0x10], &grpc_frame(false, protobuf)),
        ));
        seeds.push((
            "receiver_body",
            format!("{name}.grpc.gz"),
            prefixed(&[signal | 0x10], &grpc_frame(true, &gzip(protobuf))),
        ));
    }
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let bomb = gzip(&zeros);
    seeds.push(("receiver_body", "bomb.gz".into(), prefixed(&[0x08], &bomb)));
    seeds.push((
        "receiver_body",
        "bomb.grpc.gz".into(),
        prefixed(&[0x10], &grpc_frame(true, &bomb)),
    ));
    let protobuf = &bodies[2].2;
    let members = [gzip(protobuf), gzip(protobuf)].concat();
    seeds.push((
        "receiver_body",
        "two-members.gz".into(),
        prefixed(&[0x0a], &members),
    ));

    // xray_header
    for (name, value) in [
        (
            "full",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ),
        (
            "lineage",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:1|68fd508a:5",
        ),
        ("root-only", "Root=1-67891233-abcdef012345678912345678"),
        (
            "spaces",
            " Root = 1-5759E988-BD862E3FE1BE46A994272793 ; Sampled=? ; Self=1-5759e988-aaaaaaaaaaaaaaaaaaaaaaaa",
        ),
    ] {
        seeds.push(("xray_header", name.into(), value.as_bytes().to_vec()));
    }

    // config: a line is a selector byte (the index in `variables()`) and a value.
    let vars = super::variables();
    let pick = |var: &str| u8::try_from(vars.iter().position(|v| v == var).unwrap()).unwrap();
    let env = |pairs: &[(&str, &str)]| {
        let mut out = Vec::new();
        for (var, value) in pairs {
            out.push(pick(var));
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out
    };
    let lambda = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
    ];
    let configs: [(&str, &[(&str, &str)]); 4] = [
        (
            "otlp",
            &[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "https://otlp.example.com:4318",
                ),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-api-key=abc%20def,team=payments",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=payments",
                ),
                ("OTEL_SERVICE_NAME", "orders-api"),
                ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
            ],
        ),
        (
            "contrail",
            &[
                ("CONTRAIL_LOG_LEVEL", "debug"),
                ("CONTRAIL_TELEMETRY_TYPES", "platform,function"),
                ("CONTRAIL_TELEMETRY_MAX_ITEMS", "1000"),
                ("CONTRAIL_TELEMETRY_MAX_BYTES", "262144"),
                ("CONTRAIL_TELEMETRY_TIMEOUT_MS", "25"),
                ("CONTRAIL_RECEIVER_ENDPOINT", "127.0.0.1:4318"),
                ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "off"),
                ("CONTRAIL_RECEIVER_MAX_BODY_BYTES", "1048576"),
                ("CONTRAIL_XRAY_CONTEXT", "link"),
                ("CONTRAIL_MAX_PENDING_INVOCATIONS", "8"),
                ("CONTRAIL_BUFFER_MAX_BYTES", "4194304"),
                ("CONTRAIL_FLUSH", "adaptive"),
                ("CONTRAIL_FLUSH_INTERVAL_MS", "1000"),
                ("CONTRAIL_FLUSH_BUDGET_MS", "200"),
            ],
        ),
        (
            "sigv4",
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://xray.us-east-1.amazonaws.com/v1/traces",
                ),
                (
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                    "https://logs.us-east-1.amazonaws.com/v1/logs",
                ),
                ("CONTRAIL_EXPORTER_OTLP_AUTH", "sigv4"),
                ("CONTRAIL_CLOUDWATCH_LOG_GROUP", "/aws/lambda/orders"),
                ("CONTRAIL_CLOUDWATCH_LOG_STREAM", "contrail"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                ),
                ("AWS_SESSION_TOKEN", "token"),
                (
                    "CONTRAIL_EXPORTER_OTLP_HEADERS",
                    "x-api-key={{resolve:secretsmanager:otlp-key}}",
                ),
            ],
        ),
        (
            "bad",
            &[
                ("CONTRAIL_FLUSH", "sometimes"),
                ("CONTRAIL_TELEMETRY_MAX_ITEMS", "-1"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("OTEL_RESOURCE_ATTRIBUTES", "=,%zz"),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
            ],
        ),
    ];
    for (name, pairs) in configs {
        let mut all = env(&lambda);
        all.extend(env(pairs));
        seeds.push(("config", name.into(), all));
    }

    // backend_response: status (2 bytes), kind, Retry-After line, body.
    let response = |status: u16, kind: u8, retry_after: Option<&str>, body: &[u8]| {
        let mut out = (status - 100).to_be_bytes().to_vec();
        out.push(kind);
        if let Some(value) = retry_after {
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(body);
        out
    };
    let partial_pb = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "spans too old".into(),
        }),
    }
    .encode_to_vec();
    let partial_json = serde_json::to_vec(&ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 5,
            error_message: "log group full".into(),
        }),
    })
    .unwrap();
    let status_pb = RpcStatus {
        code: 8,
        message: "slow down".into(),
        details: Vec::new(),
    }
    .encode_to_vec();
    let responses: [(&str, Vec<u8>); 8] = [
        ("ok-empty", response(200, 0x04, None, b"")),
        ("partial.pb", response(200, 0x04, None, &partial_pb)),
        ("partial.json", response(200, 0x0a, None, &partial_json)),
        ("429-seconds", response(429, 0x04, Some("3"), &status_pb)),
        (
            "503-date",
            response(503, 0x0c, Some("Wed, 12 Oct 2022 00:00:45 GMT"), b"maintenance"),
        ),
        ("502-past-date", response(502, 0x00, Some("Sun, 06 Nov 1994 08:49:37 GMT"), b"")),
        (
            "403-denied",
            response(
                403,
                0x08,
                None,
                br#"{"message":"User: arn:aws:sts::123456789012:assumed-role/r/f is not authorized to perform: logs:PutLogEvents on resource"}"#,
            ),
        ),
        (
            "400-no-group",
            response(400, 0x08, None, br#"{"message":"The specified log group does not exist."}"#),
        ),
    ];
    for (name, bytes) in responses {
        seeds.push(("backend_response", name.into(), bytes));
    }
    seeds
}

fn run(target: &str, data: &[u8]) {
    match target {
        "telemetry_batch" => super::telemetry_batch(data),
        "mapper" => super::mapper(data),
        "receiver_body" => super::receiver_body(data),
        "xray_header" => super::xray_header(data),
        "config" => super::config(data),
        "backend_response" => super::backend_response(data),
        other => panic!("no target {other}"),
    }
}

/// The committed seeds are the ones made here, each small, and each passes its target.
#[test]
fn seeds_are_committed_and_pass_their_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let write = std::env::var_os("CONTRAIL_WRITE_SEEDS").is_some();
    let seeds = seeds();
    for (target, name, bytes) in &seeds {
        assert!(
            bytes.len() <= 8 * 1024,
            "{target}/{name} is {} bytes",
            bytes.len()
        );
        let path = root.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with CONTRAIL_WRITE_SEEDS=1", path.display()));
        assert!(
            committed == *bytes,
            "{target}/{name} differs from what the fixtures make"
        );
        run(target, bytes);
    }
    for target in [
        "mapper",
        "receiver_body",
        "xray_header",
        "config",
        "backend_response",
    ] {
        let committed = std::fs::read_dir(root.join(target)).unwrap().count();
        let made = seeds.iter().filter(|(t, _, _)| *t == target).count();
        assert_eq!(
            committed, made,
            "fuzz/seeds/{target} holds files not made here"
        );
    }
    for name in std::fs::read_dir(fixtures()).unwrap() {
        run(
            "telemetry_batch",
            &std::fs::read(name.unwrap().path()).unwrap(),
        );
    }
}
