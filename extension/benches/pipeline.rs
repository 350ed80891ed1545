//! Throughput of Contrail's hot paths, in records per second.
//!
//! - `decode`: a Telemetry API POST body of 1,000 records → `decode_batch`;
//! - `map`: the decoded records → `Mapper::on_records` (after the invocation's `INVOKE`);
//! - `encode`: the resulting OTLP data → the export buffer (`Buffer::push_item`, which splits and
//!   encodes each resource) → one batch per signal (`Buffer::take`) → its request body
//!   (`encode_entries`), protobuf, with and without gzip: the path every flush takes;
//! - `chain`: all three, from the POST body to gzipped export bodies: the figure to compare with
//!   the 100,000 log records/s target;
//! - `receiver`: an `ExportTraceServiceRequest` of 100 spans → prost decode → `merge_resource`;
//! - `sigv4`: one export request signed as an attempt signs it: the SHA-256 of a 4 KiB (gzipped)
//!   body, the canonical request, the string to sign and the HMAC with the kept signing key.
//!
//! Each batch holds `platform.start`, 997 `function` lines and `platform.runtimeDone` and
//! `platform.report`, in the text or the JSON log format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use contrail::{
    Buffer, Compression, DEFAULT_BUFFER_MAX_BYTES, InvokeInfo, Item, MAX_REQUEST_BYTES, Mapper,
    MappingConfig, OtlpPayload, Protocol, Signal, Signals, Stats, TelemetryRecord, decode_batch,
    encode_entries, lambda_resource, merge_resource,
};
use contrail::{Credentials, Signer, sha256_hex};

const RECORDS: usize = 1_000;
const SPANS: usize = 100;
const RID: &str = "8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e";
const HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders:live";
const NOW: u64 = 1_665_532_815_299_000_000;

const ENV: [(&str, &str); 5] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=prod,team=payments",
    ),
];

#[derive(Clone, Copy)]
enum Format {
    Text,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }
}

/// `2022-10-12T00:00:15.<millis>Z` with a microsecond part, as the platform writes it.
fn time(i: usize) -> String {
    format!(
        "2022-10-12T00:00:{:02}.{:06}Z",
        15 + i / 1_000_000,
        i % 1_000_000
    )
}

/// A Telemetry API POST body: one invocation's start, `RECORDS - 3` function lines, its
/// runtimeDone and report.
fn batch(format: Format) -> Vec<u8> {
    let tracing =
        format!(r#"{{"spanId":"24cd7d670fa455f0","type":"X-Amzn-Trace-Id","value":"{HEADER}"}}"#);
    let mut out = String::from("[");
    out.push_str(&format!(
        r#"{{"time":"{}","type":"platform.start","record":{{"requestId":"{RID}","version":"$LATEST","tracing":{tracing}}}}}"#,
        time(0)
    ));
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    for i in 1..RECORDS - 2 {
        let level = levels[i % levels.len()];
        let t = time(i * 100);
        let record = match format {
            Format::Text => serde_json::to_string(&format!(
                "{t}\t{RID}\t{level}\tprocessed order {i} for customer c-{} in {} ms (items={}, total=EUR {}.{:02})\n",
                i * 7 % 1_000,
                i % 40,
                i % 9 + 1,
                i % 300,
                i % 100
            ))
            .unwrap(),
            Format::Json => format!(
                r#"{{"timestamp":"{t}","level":"{level}","requestId":"{RID}","message":"processed order {i}","customer":"c-{}","durationMs":{},"items":{},"total":{}.{:02},"ok":{},"ctx":{{"region":"eu-west-1","shard":{}}}}}"#,
                i * 7 % 1_000,
                i % 40,
                i % 9 + 1,
                i % 300,
                i % 100,
                i % 6 != 5,
                i % 16
            ),
        };
        out.push_str(&format!(
            r#",{{"time":"{t}","type":"function","record":{record}}}"#
        ));
    }
    out.push_str(&format!(
        r#",{{"time":"{}","type":"platform.runtimeDone","record":{{"requestId":"{RID}","status":"success","tracing":{tracing},"spans":[{{"name":"responseLatency","start":"{}","durationMs":120.0}},{{"name":"responseDuration","start":"{}","durationMs":1.5}}],"metrics":{{"durationMs":124.5,"producedBytes":53}}}}}}"#,
        time(RECORDS * 100),
        time(0),
        time(RECORDS * 100 - 10),
    ));
    out.push_str(&format!(
        r#",{{"time":"{}","type":"platform.report","record":{{"requestId":"{RID}","status":"success","metrics":{{"durationMs":124.5,"billedDurationMs":125,"memorySizeMB":512,"maxMemoryUsedMB":87}},"tracing":{tracing},"spans":[{{"name":"extensionOverhead","start":"{}","durationMs":0.4}}]}}}}"#,
        time(RECORDS * 100 + 5),
        time(RECORDS * 100),
    ));
    out.push(']');
    let body = out.into_bytes();
    let decoded = decode_batch(&body, NOW);
    assert_eq!(decoded.records.len(), RECORDS);
    assert_eq!(decoded.malformed + decoded.unknown, 0);
    body
}

/// A mapper that has seen the invocation's `INVOKE` event.
fn mapper() -> Mapper {
    let mut mapper = Mapper::with_seed(
        MappingConfig::default(),
        lambda_resource(&ENV).unwrap(),
        Arc::new(Stats::default()),
        42,
    );
    mapper.on_invoke(
        InvokeInfo {
            request_id: RID.to_owned(),
            deadline_ms: 1_665_532_818_300,
            invoked_function_arn: ARN.to_owned(),
            xray_header: Some(HEADER.to_owned()),
        },
        NOW,
    );
    mapper
}

fn map(records: Vec<TelemetryRecord>) -> Signals {
    let mut mapper = mapper();
    let mut out = Signals::default();
    mapper.on_records(records, &mut out);
    out
}

fn items(signals: Signals) -> Vec<Item> {
    signals.into_items().collect()
}

/// Buffer `signals` as delivery does, then take and encode every batch as a flush does; the
/// bytes of the request bodies.
fn export_bodies(signals: Signals, compression: Compression) -> usize {
    let mut buffer = Buffer::new(
        DEFAULT_BUFFER_MAX_BYTES,
        MAX_REQUEST_BYTES,
        Arc::new(Stats::default()),
    );
    for item in signals.into_items() {
        buffer.push_item(item);
    }
    let mut bytes = 0;
    for signal in Signal::ALL {
        while let Some(batch) = buffer.take(signal) {
            let body = encode_entries(signal, batch.chunks(), Protocol::HttpProtobuf, compression)
                .unwrap();
            bytes += body.len() as usize;
            buffer.ack(batch, 0);
        }
    }
    bytes
}

fn log_records(items: &[Item]) -> usize {
    items
        .iter()
        .filter(|i| i.signal() == Signal::Logs)
        .map(|i| i.records() as usize)
        .sum()
}

fn telemetry(c: &mut Criterion) {
    for format in [Format::Text, Format::Json] {
        let body = batch(format);
        let records = decode_batch(&body, NOW).records;
        let mapped = map(records.clone());
        assert_eq!(
            log_records(&items(mapped.clone())),
            RECORDS - 3,
            "every line mapped"
        );

        let mut group = c.benchmark_group(format!("telemetry_{}", format.name()));
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.bench_function("decode", |b| b.iter(|| decode_batch(black_box(&body), NOW)));
        group.bench_function("map", |b| {
            b.iter_batched(
                || (mapper(), records.clone()),
                |(mut mapper, records)| {
                    let mut out = Signals::default();
                    mapper.on_records(records, &mut out);
                    out
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("encode", |b| {
            b.iter_batched(
                || mapped.clone(),
                |signals| export_bodies(signals, Compression::None),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("encode_gzip", |b| {
            b.iter_batched(
                || mapped.clone(),
                |signals| export_bodies(signals, Compression::Gzip),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("chain_gzip", |b| {
            b.iter_batched(
                mapper,
                |mut mapper| {
                    let batch = decode_batch(black_box(&body), NOW);
                    let mut out = Signals::default();
                    mapper.on_records(batch.records, &mut out);
                    export_bodies(out, Compression::Gzip)
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

fn str_attr(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int_attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// What a function's SDK exports: 100 spans of one trace under an SDK resource.
fn sdk_request() -> Bytes {
    let spans = (0..SPANS)
        .map(|i| Span {
            trace_id: vec![0x57; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            parent_span_id: if i == 0 {
                Vec::new()
            } else {
                1u64.to_be_bytes().to_vec()
            },
            name: format!("SELECT orders {i}"),
            kind: 3,
            start_time_unix_nano: NOW + i as u64 * 1_000,
            end_time_unix_nano: NOW + i as u64 * 1_000 + 800,
            attributes: vec![
                str_attr("db.system.name", "postgresql"),
                str_attr("db.query.text", "SELECT * FROM orders WHERE id = $1"),
                str_attr("server.address", "db.internal"),
                int_attr("server.port", 5432),
                int_attr("db.response.returned_rows", i as i64),
            ],
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    str_attr("service.name", "unknown_service:bootstrap"),
                    str_attr("telemetry.sdk.language", "rust"),
                    str_attr("telemetry.sdk.name", "opentelemetry"),
                    str_attr("telemetry.sdk.version", "0.31.0"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "orders".to_owned(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

fn receiver(c: &mut Criterion) {
    let body = sdk_request();
    let lambda = lambda_resource(&ENV).unwrap();
    let mut group = c.benchmark_group("receiver");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("traces_decode_merge", |b| {
        b.iter(|| {
            let request = ExportTraceServiceRequest::decode(black_box(body.clone())).unwrap();
            merge_resource(OtlpPayload::Traces(request), &lambda)
        })
    });
    group.finish();
}

fn sigv4(c: &mut Criterion) {
    let credentials = Credentials::new(
        "ASIAQEXAMPLE00000000",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some(&"IQoJb3JpZ2luX2VjEA".repeat(40)),
    );
    let body: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let headers = [
        ("host", "xray.us-east-1.amazonaws.com"),
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "gzip"),
    ];
    let mut signer = Signer::new("us-east-1", "xray");
    let now = std::time::SystemTime::now();
    let mut group = c.benchmark_group("sigv4");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign_4kib_request", |b| {
        b.iter(|| {
            let hash = sha256_hex([black_box(body.as_slice())]);
            signer.sign(&credentials, now, "POST", "/v1/traces", &headers, &hash)
        })
    });
    group.finish();
}

criterion_group!(benches, telemetry, receiver, sigv4);
criterion_main!(benches);
