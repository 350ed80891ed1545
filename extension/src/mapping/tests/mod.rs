//! The mapper over the Telemetry API fixtures: spans, logs and metrics for every rule, one
//! file per role of the mapper.

mod environment;
mod invocation;
mod logs;
mod phases;
mod usage;

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::diag::Stats;
use crate::intake::telemetry::decode::decode_batch;
use crate::intake::telemetry::event::TelemetryRecord;
use crate::mapping::{InvokeInfo, Mapper, MappingConfig, lambda_resource};
use crate::pipeline::Signals;

const RID: &str = "8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e";
const HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const ROOT_HEX: &str = "5759e988bd862e3fe1be46a994272793";
const PARENT_HEX: &str = "53995c3f42cd8ad8";
const LAMBDA_SPAN_HEX: &str = "24cd7d670fa455f0";
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders:live";
const NOW: u64 = 1_665_532_900_000_000_000;

const COLD_INIT: &[&str] = &[
    "platform.initStart.json",
    "platform.initRuntimeDone.json",
    "platform.initReport.json",
];

/// The decoded records of a fixture in `tests/fixtures/telemetry`.
fn records(name: &str) -> Vec<TelemetryRecord> {
    let path = format!(
        "{}/tests/fixtures/telemetry/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let batch = decode_batch(&std::fs::read(&path).unwrap(), NOW);
    assert_eq!(batch.malformed, 0, "{name}");
    batch.records
}

/// The `INVOKE` event of the fixtures' invocation.
fn invoke() -> InvokeInfo {
    InvokeInfo {
        request_id: RID.to_owned(),
        deadline_ms: 1_665_532_818_300,
        invoked_function_arn: ARN.to_owned(),
        xray_header: Some(HEADER.to_owned()),
    }
}

/// A mapper for the function `orders` (ids from a fixed seed), and what it has produced.
struct Run {
    mapper: Mapper,
    stats: Arc<Stats>,
    out: Signals,
}

impl Run {
    fn new() -> Run {
        Run::with(MappingConfig::default())
    }

    fn with(config: MappingConfig) -> Run {
        let env = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ];
        let stats = Arc::new(Stats::default());
        let mapper = Mapper::with_seed(
            config,
            lambda_resource(&env).unwrap(),
            Arc::clone(&stats),
            42,
        );
        Run {
            mapper,
            stats,
            out: Signals::default(),
        }
    }

    /// The fixtures' `INVOKE` event, at `now_unix_nano`.
    fn invoke(&mut self, now_unix_nano: u64) {
        self.mapper.on_invoke(invoke(), now_unix_nano);
    }

    /// Each fixture as one Telemetry API batch.
    fn feed(&mut self, files: &[&str]) {
        for f in files {
            self.mapper.on_records(records(f), &mut self.out);
        }
    }

    /// One Telemetry API POST body.
    fn batch(&mut self, body: &[u8]) {
        self.mapper
            .on_records(decode_batch(body, NOW).records, &mut self.out);
    }

    fn collect(&mut self, now_unix_nano: u64) {
        self.mapper.collect_metrics(now_unix_nano, &mut self.out);
    }

    fn finish(&mut self, now_unix_nano: u64) {
        self.mapper.finish(now_unix_nano, &mut self.out);
    }

    /// Forget what was produced so far: the next reads see only what comes after.
    fn clear(&mut self) {
        self.out = Signals::default();
    }

    fn spans(&self) -> Vec<Span> {
        flatten(&self.out.spans, |r| &r.scope_spans, |s| &s.spans)
    }

    fn logs(&self) -> Vec<LogRecord> {
        flatten(&self.out.logs, |r| &r.scope_logs, |s| &s.log_records)
    }

    fn metrics(&self) -> Vec<Metric> {
        flatten(&self.out.metrics, |r| &r.scope_metrics, |s| &s.metrics)
    }
}

/// The records of every scope of every resource.
fn flatten<R, S, T: Clone>(
    resources: &[R],
    scopes: impl Fn(&R) -> &Vec<S>,
    records: impl Fn(&S) -> &Vec<T>,
) -> Vec<T> {
    resources
        .iter()
        .flat_map(|r| scopes(r).iter())
        .flat_map(|s| records(s).iter().cloned())
        .collect()
}

fn span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn counter(metrics: &[Metric], name: &str) -> Option<i64> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(metric::Data::Sum(s)) => match s.data_points.first()?.value {
                Some(number_data_point::Value::AsInt(v)) => Some(v),
                _ => None,
            },
            _ => None,
        })
}

fn histogram(metrics: &[Metric], name: &str) -> Option<(u64, f64)> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => {
                let p = h.data_points.first()?;
                Some((p.count, p.sum.unwrap_or(f64::NAN)))
            }
            _ => None,
        })
}

fn gauge(metrics: &[Metric], name: &str) -> Option<f64> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => match g.data_points.last()?.value {
                Some(number_data_point::Value::AsDouble(v)) => Some(v),
                _ => None,
            },
            _ => None,
        })
}
