//! What the benchmarks share: the Telemetry API batch of one invocation, in the text or the
//! JSON log format, and the stages it goes through (decode, map, buffer and encode).
#![allow(dead_code)] // each bench uses its part

use std::sync::Arc;

use contrail::{
    Buffer, Compression, DEFAULT_BUFFER_MAX_BYTES, InvokeInfo, Item, MAX_REQUEST_BYTES, Mapper,
    MappingConfig, Protocol, Signal, Signals, Stats, TelemetryRecord, decode_batch, encode_entries,
    lambda_resource,
};

pub const RECORDS: usize = 1_000;
pub const RID: &str = "8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e";
pub const HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
pub const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders:live";
pub const NOW: u64 = 1_665_532_815_299_000_000;

pub const ENV: [(&str, &str); 5] = [
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
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }
}

/// `2022-10-12T00:00:15.<millis>Z` with a microsecond part, as the platform writes it.
pub fn time(i: usize) -> String {
    format!(
        "2022-10-12T00:00:{:02}.{:06}Z",
        15 + i / 1_000_000,
        i % 1_000_000
    )
}

/// A Telemetry API POST body: one invocation's start, `RECORDS - 3` function lines, its
/// runtimeDone and report.
pub fn batch(format: Format) -> Vec<u8> {
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
pub fn mapper() -> Mapper {
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

pub fn map(records: Vec<TelemetryRecord>) -> Signals {
    let mut mapper = mapper();
    let mut out = Signals::default();
    mapper.on_records(records, &mut out);
    out
}

pub fn items(signals: Signals) -> Vec<Item> {
    signals.into_items().collect()
}

/// Buffer `signals` as delivery does, then take and encode every batch as a flush does; the
/// bytes of the request bodies.
pub fn export_bodies(signals: Signals, compression: Compression) -> usize {
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

pub fn log_records(items: &[Item]) -> usize {
    items
        .iter()
        .filter(|i| i.signal() == Signal::Logs)
        .map(|i| i.records() as usize)
        .sum()
}
