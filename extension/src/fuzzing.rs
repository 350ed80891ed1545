//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer; `docs/FUZZING.md`).
//!
//! Built only with the `fuzzing` feature and hidden from the docs: not part of the supported
//! API. Each function takes the fuzzer's bytes, drives one parser the way the running extension
//! does, and panics when an invariant breaks (a panic is what libFuzzer reports as a crash):
//!
//! | function | what it parses |
//! |---|---|
//! | [`telemetry_batch`] | a Telemetry API POST body (`intake::telemetry::decode`) |
//! | [`mapper`] | POST bodies and INVOKE events through the `Mapper`, the export buffer and the request encoding |
//! | [`receiver_body`] | an OTLP/HTTP body (protobuf or JSON, gzip or not) or an OTLP/gRPC call's DATA, within the size cap, then the function's resource merge and the export buffer |
//! | [`xray_header`] | an `X-Amzn-Trace-Id` value (`mapping::xray`) |
//! | [`config`] | an environment: every variable Contrail reads, through `Settings::from_env` and the bootstrap |
//! | [`backend_response`] | an export answer: status, `Content-Type`, `Retry-After`, body (`export::retry`, `export::body`, `export::aws::refusal`) |
//!
//! The layout of each function's input is in its docs; `fuzz/seeds/` holds inputs in that
//! layout made from the repository's fixtures.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::env::Env;
use crate::config::{Bootstrap, Settings};
use crate::diag::Stats;
use crate::export::aws::refusal;
use crate::export::body::{self, MAX_MESSAGE_CHARS};
use crate::export::retry::{self, Class, MAX_RETRY_AFTER};
use crate::export::{Buffer, Compression, MAX_REQUEST_BYTES, Protocol, encode_entries};
use crate::intake::receiver::{decode_body, grpc, merge_resource};
use crate::intake::telemetry::decode_batch;
use crate::lambda_api::ExtensionName;
use crate::mapping::config::{Temporality, XrayContext};
use crate::mapping::cost::{Architecture, CostConfig};
use crate::mapping::xray::{XrayHeader, format_root, hex, parse_hex};
use crate::mapping::{InvokeInfo, Mapper, MappingConfig};
use crate::pipeline::{Item, Signal, Signals};

/// When the fuzzed bodies "arrived": 2022-10-12T00:00:15.299Z, the time of the fixtures.
const NOW_NANOS: u64 = 1_665_532_815_299_000_000;
/// The request id of the fixtures' invocation.
const REQUEST_ID: &str = "8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e";
/// The receiver's body cap in the fuzz targets: small, so that a gzip bomb is refused quickly.
const RECEIVER_MAX_BYTES: usize = 256 * 1024;

/// The byte that separates the parts of an input; a JSON text cannot hold it raw.
const SEPARATOR: u8 = 0;

/// A Telemetry API POST body, decoded. Every element of a body that is a JSON array is
/// either a record or counted as malformed: none disappears.
pub fn telemetry_batch(data: &[u8]) {
    let batch = decode_batch(data, NOW_NANOS);
    assert!(batch.unknown <= batch.records.len() as u64);
    if let Ok(elements) = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(data) {
        assert_eq!(
            batch.records.len() as u64 + batch.malformed,
            elements.len() as u64,
            "an element of a JSON array was neither decoded nor counted"
        );
    }
}

/// Records through the mapper, then every signal through the export buffer and the request
/// encoding, as delivery does. Nothing is lost: every record the mapper emits is exported or
/// counted as dropped.
///
/// Input: one byte of settings (X-Ray context, temporality, the pending and held bounds, the
/// export protocol), then parts separated by a zero byte. A part that starts with `!` is an
/// INVOKE (`!request-id` then optionally `|` and an X-Ray header); any other part is a
/// Telemetry API POST body. An INVOKE of the fixtures' request comes first.
pub fn mapper(data: &[u8]) {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let config = MappingConfig {
        xray_context: match settings % 3 {
            0 => XrayContext::Parent,
            1 => XrayContext::Link,
            _ => XrayContext::Ignore,
        },
        temporality: if settings & 0x04 == 0 {
            Temporality::Cumulative
        } else {
            Temporality::Delta
        },
        max_pending_invocations: 1 + usize::from((settings >> 3) & 0x03),
        max_held_logs: 1 + usize::from((settings >> 5) & 0x03) * 8,
        // Documented prices, so that every report is priced as in a real region.
        cost: CostConfig::from_env(&[("AWS_REGION", "us-east-1")], Architecture::X86_64).0,
    };
    let protocol = if settings & 0x80 == 0 {
        Protocol::HttpProtobuf
    } else {
        Protocol::HttpJson
    };
    let stats = Arc::new(Stats::default());
    let mut mapper = Mapper::with_seed(config, function_resource(), stats, 7);
    let invoke = |request_id: &str, xray: Option<&str>| InvokeInfo {
        request_id: request_id.to_owned(),
        deadline_ms: NOW_NANOS / 1_000_000 + 3_000,
        invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:orders".to_owned(),
        xray_header: xray.map(str::to_owned),
    };
    let mut now = NOW_NANOS;
    mapper.on_invoke(
        invoke(
            REQUEST_ID,
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
        ),
        now,
    );
    let mut out = Signals::default();
    for part in rest.split(|b| *b == SEPARATOR) {
        now += 1_000_000;
        if let Some(event) = part.strip_prefix(b"!") {
            let event = String::from_utf8_lossy(event);
            let (request_id, xray) = match event.split_once('|') {
                Some((id, xray)) => (id, Some(xray)),
                None => (&*event, None),
            };
            mapper.on_invoke(invoke(request_id, xray), now);
        } else {
            mapper.on_records(decode_batch(part, now).records, &mut out);
        }
    }
    mapper.collect_metrics(now, &mut out);
    mapper.finish(now + 1_000_000, &mut out);
    export(out, protocol);
}

/// An OTLP/HTTP body or an OTLP/gRPC call's DATA, read as the receivers read it (within a cap
/// of 256 KiB), then merged with the function's resource and exported.
///
/// Input: one byte, then the body. The byte's bits 0–1 pick the signal (3 is traces), bit 2
/// JSON rather than protobuf, bit 3 a gzip `Content-Encoding`, bit 4 gRPC (the body is the
/// call's DATA, length prefix included, cut into DATA frames of `(byte >> 5) + 1` KiB), and
/// with bit 3 clear and bits 5–7 all set the body is first gzipped here, so that the
/// decoders behind the inflater are reached with valid gzip. Every decoded record is exported
/// or counted as dropped, and nothing inflates past the cap (`Gunzip::TooLarge` otherwise).
pub fn receiver_body(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let signal = match mode & 0x03 {
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => Signal::Traces,
    };
    let json = mode & 0x04 != 0;
    let mut gzip = mode & 0x08 != 0;
    let grpc = mode & 0x10 != 0;
    let body = if !gzip && mode >> 5 == 0x07 {
        gzip = true;
        gzipped(body)
    } else {
        Bytes::copy_from_slice(body)
    };
    let decoded = if grpc {
        let frame = 1024 * (usize::from(mode >> 5) + 1);
        grpc::decode_message(signal, body.chunks(frame), RECEIVER_MAX_BYTES)
    } else {
        decode_body(signal, json, gzip, body, RECEIVER_MAX_BYTES).map_err(|(status, _)| {
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                "a body refused with {status}"
            );
            status.to_string()
        })
    };
    let Ok(payload) = decoded else {
        return;
    };
    let records = payload.records();
    let signals = merge_resource(payload, &function_resource());
    let merged: u64 = signals.clone().into_items().map(|i| i.records()).sum();
    assert_eq!(
        merged, records,
        "the resource merge changed the record count"
    );
    export(signals, Protocol::HttpProtobuf);
}

/// Gzip `body` (the fuzz target's own valid gzip).
fn gzipped(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let written = encoder.write_all(body).and_then(|()| encoder.finish());
    match written {
        Ok(out) => Bytes::from(out),
        Err(e) => panic!("gzip into memory failed: {e}"),
    }
}

/// Every item into a buffer as delivery puts it; every batch taken, encoded and acknowledged.
/// The buffer's counts add up: received = exported + dropped, nothing held at the end.
fn export(signals: Signals, protocol: Protocol) {
    let items: Vec<Item> = signals.into_items().collect();
    let records: u64 = items.iter().map(Item::records).sum();
    let mut buffer = Buffer::new(1024 * 1024, MAX_REQUEST_BYTES, Arc::new(Stats::default()));
    for item in items {
        buffer.push_item(item);
    }
    for signal in Signal::ALL {
        while let Some(batch) = buffer.take(signal) {
            let encoded = encode_entries(signal, batch.chunks(), protocol, Compression::None);
            assert!(
                encoded.is_ok(),
                "a buffered batch did not encode: {encoded:?}"
            );
            buffer.ack(batch, 0);
        }
    }
    let counters = buffer.counters();
    assert_eq!(
        counters.received, records,
        "records went missing in the buffer"
    );
    assert_eq!(
        counters.exported + counters.dropped,
        counters.received,
        "the buffer's counts do not add up"
    );
}

/// The resource of the fixtures' function.
fn function_resource() -> opentelemetry_proto::tonic::resource::v1::Resource {
    static RESOURCE: OnceLock<opentelemetry_proto::tonic::resource::v1::Resource> = OnceLock::new();
    RESOURCE
        .get_or_init(|| {
            let env = [
                ("AWS_REGION", "us-east-1"),
                ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
            ];
            crate::mapping::lambda_resource(&env).unwrap_or_default()
        })
        .clone()
}

/// An `X-Amzn-Trace-Id` value (not UTF-8: read lossily). What is parsed survives a round trip
/// through the header form, and the `Root` parts are the ids' hex.
pub fn xray_header(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    let header = XrayHeader::parse(&value);
    let again = XrayHeader::parse(&header.to_header_value());
    assert_eq!(
        again, header,
        "the header form of {value:?} parses differently"
    );
    if let Some(trace_id) = header.trace_id {
        assert_ne!(trace_id, [0; 16]);
        let root = format_root(&trace_id);
        assert_eq!(root.len(), 35);
        assert_eq!(parse_hex::<16>(&root[2..].replace('-', "")), Some(trace_id));
    }
    if let Some(parent) = header.parent_id {
        assert_eq!(parse_hex::<8>(&hex(&parent)), Some(parent));
    }
}

/// The variables of [`config`], in the order an input's selector bytes index them.
fn variables() -> &'static [String] {
    static VARS: OnceLock<Vec<String>> = OnceLock::new();
    VARS.get_or_init(|| {
        use crate::export::aws::credentials;
        use crate::export::config as export;
        let exporter = [
            export::ENDPOINT_VAR,
            export::HEADERS_VAR,
            export::TIMEOUT_VAR,
            export::COMPRESSION_VAR,
            export::PROTOCOL_VAR,
        ];
        // Left out: OTEL_EXPORTER_OTLP_[{SIGNAL}_]CERTIFICATE and
        // AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE name files to read; the exporter's variables
        // come below under every name they take.
        let skipped = [
            export::CERTIFICATE_VAR,
            credentials::CONTAINER_TOKEN_FILE_VAR,
        ];
        let mut vars: Vec<String> = crate::config::VARIABLES
            .iter()
            .filter(|v| !skipped.contains(v) && !exporter.contains(v))
            .chain(&["AWS_LAMBDA_FUNCTION_VERSION"])
            .map(|v| (*v).to_owned())
            .collect();
        for var in exporter {
            let suffix = var.trim_start_matches("OTEL_EXPORTER_OTLP_");
            for signal in ["", "TRACES_", "METRICS_", "LOGS_"] {
                let name = format!("OTEL_EXPORTER_OTLP_{signal}{suffix}");
                vars.push(name.replacen("OTEL_", "CONTRAIL_", 1));
                vars.push(name);
            }
        }
        vars
    })
}

/// An environment of fuzzed variables.
struct Fuzzed(Vec<(&'static str, String)>);

impl Env for Fuzzed {
    fn var(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// An environment read as Contrail reads it at start-up: the bootstrap, then every
/// component's configuration. Either it is valid, or it fails with at least one error; every
/// error and warning names a variable Contrail reads (a value derived from another variable,
/// such as the default log group from the function name, is reported under the variable
/// that would override it). A variable that is not UTF-8 is unset, as `std::env::var` has it.
///
/// Input: lines (`\n`); each line's first byte picks a variable (modulo the number of
/// variables, in the order of `variables` in this file), the rest is its value.
pub fn config(data: &[u8]) {
    let vars = variables();
    let mut env = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let Some(name) = vars.get(usize::from(pick) % vars.len()) else {
            continue;
        };
        if let Ok(value) = std::str::from_utf8(value) {
            env.push((name.as_str(), value.to_owned()));
        }
    }
    let env = Fuzzed(env);
    let _ = Bootstrap::from_env(&env, ExtensionName::of_current_exe());
    // A header's error names it after the variable: `..._HEADERS (x-api-key)`.
    let known = |var: &str| {
        let var = var.split(" (").next().unwrap_or(var);
        vars.iter().any(|v| v == var)
    };
    match Settings::from_env(&env) {
        Ok(parsed) => {
            for warning in parsed.warnings {
                assert!(known(&warning.var), "a warning about {}", warning.var);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without an error");
            for error in &errors {
                assert!(known(&error.var), "an error about {}", error.var);
            }
            let message = crate::config::error_message(&errors);
            assert!(message.lines().count() > errors.len());
        }
    }
}

/// An export answer, handled as the exporter handles one: its class, `Retry-After`, partial
/// success or error message, and the AWS refusal it may be. A delay is never over
/// `MAX_RETRY_AFTER`, a message never over `MAX_MESSAGE_CHARS` (and the ellipsis), on one line.
///
/// Input: two bytes of status (100 + the big-endian number modulo 900), one byte picking the
/// signal (bits 0–1) and the `Content-Type` (bits 2–3: none, protobuf, JSON, text), then the
/// `Retry-After` value up to the first `\n` (none when the input has no `\n`), then the body.
pub fn backend_response(data: &[u8]) {
    let [hi, lo, kind, rest @ ..] = data else {
        return;
    };
    let code = 100 + u16::from_be_bytes([*hi, *lo]) % 900;
    let Ok(status) = StatusCode::from_u16(code) else {
        panic!("{code} is a status code");
    };
    let signal = match kind & 0x03 {
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => Signal::Traces,
    };
    let mut headers = HeaderMap::new();
    let content_type = match (kind >> 2) & 0x03 {
        1 => Some("application/x-protobuf"),
        2 => Some("application/json"),
        3 => Some("text/plain; charset=utf-8"),
        _ => None,
    };
    if let Some(content_type) = content_type {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
    }
    let body = match rest.iter().position(|b| *b == b'\n') {
        Some(end) => {
            if let Ok(value) = HeaderValue::from_bytes(&rest[..end]) {
                headers.insert(http::header::RETRY_AFTER, value);
            }
            &rest[end + 1..]
        }
        None => rest,
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW_NANOS / 1_000_000_000);
    let check = |message: &str| {
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(!message.chars().any(char::is_control), "{message:?}");
    };
    match retry::classify(status) {
        Class::Delivered => {
            assert!(status.is_success());
            let partial = body::partial_success(signal, &headers, body);
            check(&partial.message);
        }
        class => {
            assert!(!status.is_success());
            let message = body::error_message(&headers, body);
            check(&message);
            if class == Class::Retryable {
                let delay = retry::retry_after(&headers, now);
                assert!(delay.is_none_or(|d| d <= MAX_RETRY_AFTER));
                let later = retry::retry_after(&headers, now + Duration::from_secs(30));
                assert!(delay.is_some() == later.is_some());
            }
            if let Some(refused) = refusal::classify(status.as_u16(), &message) {
                let _ = refused.reason();
            }
        }
    }
}

#[cfg(test)]
mod tests;
