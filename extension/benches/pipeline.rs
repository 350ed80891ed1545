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

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use contrail::{Compression, OtlpPayload, Signals, decode_batch, lambda_resource, merge_resource};
use contrail::{Credentials, Signer, sha256_hex};

mod common;
use common::{ENV, Format, NOW, RECORDS, batch, export_bodies, items, log_records, map, mapper};

const SPANS: usize = 100;

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
