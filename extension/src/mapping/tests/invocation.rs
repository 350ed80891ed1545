//! The mapper over the Telemetry API fixtures: spans, logs and metrics for every rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::diag::stats::{DropReason, Stats};
use crate::intake::telemetry::event::{TelemetryRecord, decode_batch};
use crate::mapping::{
    InvokeInfo, Mapper, MappingConfig, Temporality, XrayContext, lambda_resource,
};
use crate::pipeline::Signals;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

const RID: &str = "8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e";
const HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const ROOT_HEX: &str = "5759e988bd862e3fe1be46a994272793";
const PARENT_HEX: &str = "53995c3f42cd8ad8";
const LAMBDA_SPAN_HEX: &str = "24cd7d670fa455f0";
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders:live";
const NOW: u64 = 1_665_532_900_000_000_000;

fn records(name: &str) -> Vec<TelemetryRecord> {
    let path = format!(
        "{}/tests/fixtures/telemetry/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let batch = decode_batch(&std::fs::read(&path).unwrap());
    assert_eq!(batch.malformed, 0, "{name}");
    batch.records
}

fn mapper_with(config: MappingConfig) -> (Mapper, Arc<Stats>) {
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
    (mapper, stats)
}

fn mapper() -> (Mapper, Arc<Stats>) {
    mapper_with(MappingConfig::default())
}

fn invoke() -> InvokeInfo {
    InvokeInfo {
        request_id: RID.to_owned(),
        deadline_ms: 1_665_532_818_300,
        invoked_function_arn: ARN.to_owned(),
        xray_header: Some(HEADER.to_owned()),
    }
}

fn feed(m: &mut Mapper, files: &[&str], out: &mut Signals) {
    for f in files {
        m.on_records(records(f), out);
    }
}

fn spans(out: &Signals) -> Vec<Span> {
    out.spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.clone())
        .collect()
}

fn logs(out: &Signals) -> Vec<LogRecord> {
    out.logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| sl.log_records.clone())
        .collect()
}

fn metrics(out: &Signals) -> Vec<Metric> {
    out.metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| sm.metrics.clone())
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

const COLD_INIT: &[&str] = &[
    "platform.initStart.json",
    "platform.initRuntimeDone.json",
    "platform.initReport.json",
];

#[test]
fn cold_start_invocation_in_parent_mode() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    feed(&mut m, COLD_INIT, &mut out);
    m.on_invoke(invoke(), 1_665_532_815_299_000_000);
    feed(
        &mut m,
        &[
            "platform.start.json",
            "function.text.json",
            "function.json.json",
            "platform.runtimeDone.json",
        ],
        &mut out,
    );
    let all = spans(&out);
    let init = span(&all, "aws.lambda.init");
    assert_eq!(init.kind, SpanKind::Internal as i32);
    assert_eq!(
        attr(&init.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        str_attr(&init.attributes, "aws.lambda.initialization_type"),
        Some("on-demand")
    );
    assert_eq!(
        init.end_time_unix_nano - init.start_time_unix_nano,
        200_500_000
    );
    assert_ne!(hex(&init.trace_id), ROOT_HEX);

    let inv = span(&all, "orders");
    assert_eq!(inv.kind, SpanKind::Server as i32);
    assert_eq!(hex(&inv.trace_id), ROOT_HEX);
    assert_eq!(hex(&inv.span_id), PARENT_HEX);
    assert!(inv.parent_span_id.is_empty());
    assert_eq!(inv.start_time_unix_nano, 1_665_532_815_300_000_000);
    assert_eq!(inv.end_time_unix_nano, 1_665_532_815_424_500_000);
    assert_eq!(str_attr(&inv.attributes, "faas.invocation_id"), Some(RID));
    assert_eq!(
        attr(&inv.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        str_attr(&inv.attributes, "cloud.account.id"),
        Some("123456789012")
    );
    assert_eq!(
        str_attr(&inv.attributes, "aws.lambda.invoked_arn"),
        Some(ARN)
    );
    assert_eq!(
        str_attr(&inv.attributes, "cloud.resource_id"),
        Some("arn:aws:lambda:us-east-1:123456789012:function:orders")
    );
    assert_eq!(inv.status, None, "success leaves the status unset");
    assert_eq!(inv.links.len(), 1, "the cold start links to the init span");
    assert_eq!(inv.links[0].trace_id, init.trace_id);
    assert_eq!(inv.links[0].span_id, init.span_id);

    for child in [
        "aws.lambda.responseLatency",
        "aws.lambda.responseDuration",
        "aws.lambda.runtimeOverhead",
    ] {
        let c = span(&all, child);
        assert_eq!(c.trace_id, inv.trace_id, "{child}");
        assert_eq!(c.parent_span_id, inv.span_id, "{child}");
        assert!(c.end_time_unix_nano > c.start_time_unix_nano, "{child}");
    }
    assert_eq!(
        span(&all, "aws.lambda.responseLatency").end_time_unix_nano,
        1_665_532_815_420_000_000
    );

    // Every function line carries the invocation's trace context.
    let lines = logs(&out);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        assert_eq!(hex(&l.trace_id), ROOT_HEX);
        assert_eq!(hex(&l.span_id), PARENT_HEX);
        assert_eq!(str_attr(&l.attributes, "faas.invocation_id"), Some(RID));
    }
    assert_eq!(
        (lines[0].severity_number, lines[0].severity_text.as_str()),
        (9, "INFO")
    );
    assert_eq!(
        lines[0].body.as_ref().unwrap().value,
        Some(Value::StringValue("creating order 42".into()))
    );
    assert_eq!(lines[0].time_unix_nano, 1_665_532_815_349_000_000);
    assert_eq!(lines[0].observed_time_unix_nano, 1_665_532_815_350_000_000);
    assert_eq!(lines[1].severity_number, SeverityNumber::Error as i32);
    assert_eq!(
        lines[2].severity_number,
        SeverityNumber::Unspecified as i32,
        "no level in a plain line"
    );
    let json = &lines[3];
    assert_eq!(json.severity_text, "WARN");
    assert_eq!(json.time_unix_nano, 1_665_532_815_359_000_000);
    assert_eq!(
        json.body.as_ref().unwrap().value,
        Some(Value::StringValue("stock low".into()))
    );
    assert_eq!(attr(&json.attributes, "count"), Some(&Value::IntValue(3)));
    assert_eq!(
        attr(&json.attributes, "ratio"),
        Some(&Value::DoubleValue(0.5))
    );
    assert_eq!(attr(&json.attributes, "ok"), Some(&Value::BoolValue(false)));
    assert_eq!(str_attr(&json.attributes, "ctx.region"), Some("eu"));
    assert_eq!(
        attr(&json.attributes, "ctx.shard"),
        Some(&Value::IntValue(7))
    );
    assert!(
        matches!(attr(&json.attributes, "tags"), Some(Value::ArrayValue(a)) if a.values.len() == 2)
    );
    assert!(attr(&json.attributes, "timestamp").is_none());
    assert!(attr(&json.attributes, "level").is_none());

    // The report completes it: extensionOverhead under the invocation span, and metrics.
    let mut later = Signals::default();
    feed(&mut m, &["platform.report.json"], &mut later);
    let after = spans(&later);
    assert_eq!(after.len(), 1);
    let overhead = span(&after, "aws.lambda.extensionOverhead");
    assert_eq!(overhead.parent_span_id, inv.span_id);
    assert_eq!(overhead.trace_id, inv.trace_id);
    assert_eq!(m.pending_invocations(), 0);

    m.collect_metrics(NOW, &mut later);
    let ms = metrics(&later);
    assert_eq!(counter(&ms, "faas.invocations"), Some(1));
    assert_eq!(counter(&ms, "faas.coldstarts"), Some(1));
    assert_eq!(counter(&ms, "faas.errors"), None);
    assert_eq!(histogram(&ms, "faas.invoke_duration"), Some((1, 0.1245)));
    assert_eq!(histogram(&ms, "faas.init_duration"), Some((1, 0.2005)));
    assert_eq!(
        histogram(&ms, "aws.lambda.billed_duration"),
        Some((1, 0.125))
    );
    assert_eq!(
        histogram(&ms, "faas.mem_usage"),
        Some((1, 87.0 * 1024.0 * 1024.0))
    );
    assert_eq!(
        histogram(&ms, "aws.lambda.extension_overhead"),
        Some((1, 0.012))
    );
    assert_eq!(histogram(&ms, "aws.lambda.produced_bytes"), Some((1, 53.0)));
    assert!(ms.iter().any(|m| m.name == "aws.lambda.memory_size"));
}

#[test]
fn resource_gains_faas_instance_and_every_batch_is_one_resource_entry() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    feed(&mut m, &["platform.initStart.json"], &mut out);
    let instance = m
        .resource()
        .attributes
        .iter()
        .find(|kv| kv.key == "faas.instance")
        .and_then(|kv| kv.value.clone());
    assert!(
        matches!(instance.and_then(|v| v.value), Some(Value::StringValue(s)) if s.contains("2a7b1c4d"))
    );
    feed(&mut m, &["function.text.json"], &mut out);
    assert_eq!(out.logs.len(), 1, "one ResourceLogs per batch");
    assert_eq!(out.logs[0].scope_logs.len(), 1);
    assert_eq!(
        out.logs[0].scope_logs[0].scope.as_ref().unwrap().name,
        "contrail"
    );
    assert_eq!(out.logs[0].scope_logs[0].log_records.len(), 3);
    let res = out.logs[0].resource.as_ref().unwrap();
    assert!(res.attributes.iter().any(|kv| kv.key == "faas.instance"));
}

#[test]
fn link_and_ignore_modes() {
    for mode in [XrayContext::Link, XrayContext::Ignore] {
        let (mut m, _) = mapper_with(MappingConfig {
            xray_context: mode,
            ..MappingConfig::default()
        });
        let mut out = Signals::default();
        m.on_invoke(invoke(), 1);
        feed(
            &mut m,
            &[
                "platform.start.json",
                "function.text.json",
                "platform.runtimeDone.json",
            ],
            &mut out,
        );
        let all = spans(&out);
        let inv = span(&all, "orders");
        assert_ne!(hex(&inv.trace_id), ROOT_HEX, "{mode:?}: a new trace");
        assert_eq!(
            hex(&inv.span_id),
            LAMBDA_SPAN_HEX,
            "{mode:?}: Lambda's span id"
        );
        match mode {
            XrayContext::Link => {
                assert_eq!(inv.links.len(), 1);
                assert_eq!(hex(&inv.links[0].trace_id), ROOT_HEX);
                assert_eq!(hex(&inv.links[0].span_id), PARENT_HEX);
            }
            _ => assert!(inv.links.is_empty()),
        }
        for l in logs(&out) {
            assert_eq!(l.trace_id, inv.trace_id);
            assert_eq!(l.span_id, inv.span_id);
        }
    }
}

#[test]
fn invoke_after_start_still_fills_the_span() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    feed(&mut m, &["platform.start.json"], &mut out);
    m.on_invoke(invoke(), 2);
    feed(&mut m, &["platform.runtimeDone.json"], &mut out);
    let all = spans(&out);
    let inv = span(&all, "orders");
    assert_eq!(
        str_attr(&inv.attributes, "aws.lambda.invoked_arn"),
        Some(ARN)
    );
    assert_eq!(hex(&inv.span_id), PARENT_HEX);
}

#[test]
fn timeout_without_runtime_done_emits_at_report() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    m.on_invoke(invoke(), 1);
    feed(&mut m, &["platform.start.json"], &mut out);
    assert!(
        spans(&out).is_empty(),
        "nothing until the runtime is done or the report comes"
    );
    feed(&mut m, &["platform.report.timeout.json"], &mut out);
    let all = spans(&out);
    let inv = span(&all, "orders");
    let status = inv.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(str_attr(&inv.attributes, "error.type"), Some("timeout"));
    assert_eq!(
        inv.end_time_unix_nano - inv.start_time_unix_nano,
        3_000_000_000
    );
    m.collect_metrics(NOW, &mut out);
    let ms = metrics(&out);
    assert_eq!(counter(&ms, "faas.timeouts"), Some(1));
    assert_eq!(counter(&ms, "faas.invocations"), None);
}

#[test]
fn out_of_memory_is_an_error_counted_once() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    m.on_invoke(invoke(), 1);
    feed(
        &mut m,
        &["platform.start.json", "platform.runtimeDone.oom.json"],
        &mut out,
    );
    let all = spans(&out);
    let inv = span(&all, "orders");
    assert_eq!(inv.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(
        str_attr(&inv.attributes, "error.type"),
        Some("Runtime.OutOfMemory")
    );
    // The report never comes: shutdown counts the error from runtimeDone.
    m.finish(NOW, &mut out);
    let ms = metrics(&out);
    assert_eq!(counter(&ms, "faas.errors"), Some(1));
    assert_eq!(spans(&out).iter().filter(|s| s.name == "orders").count(), 1);
}

#[test]
fn missing_header_generates_ids_and_holds_logs_until_known() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    let start = br#"[{"time":"2022-10-12T00:00:15.300Z","type":"platform.start","record":{"requestId":"r-1"}},
        {"time":"2022-10-12T00:00:15.310Z","type":"function","record":{"requestId":"r-1","message":"held"}}]"#;
    m.on_records(decode_batch(start).records, &mut out);
    assert!(
        logs(&out).is_empty(),
        "held until the trace context is known"
    );
    let done = br#"[{"time":"2022-10-12T00:00:15.400Z","type":"platform.runtimeDone","record":{"requestId":"r-1","status":"error","errorType":"Handled.Error"}}]"#;
    m.on_records(decode_batch(done).records, &mut out);
    let all = spans(&out);
    let inv = span(&all, "orders");
    assert_eq!(inv.trace_id.len(), 16);
    assert_eq!(inv.span_id.len(), 8);
    assert!(inv.trace_id.iter().any(|b| *b != 0));
    let l = logs(&out);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].trace_id, inv.trace_id);
    assert_eq!(l[0].span_id, inv.span_id);
}

#[test]
fn held_logs_are_released_at_collect() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    let start = br#"[{"time":"2022-10-12T00:00:15.300Z","type":"platform.start","record":{"requestId":"r-2"}},
        {"time":"2022-10-12T00:00:15.310Z","type":"function","record":"line one"}]"#;
    m.on_records(decode_batch(start).records, &mut out);
    assert!(logs(&out).is_empty());
    m.collect_metrics(NOW, &mut out);
    let l = logs(&out);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].trace_id.len(), 16);
    assert_eq!(
        str_attr(&l[0].attributes, "faas.invocation_id"),
        Some("r-2")
    );
    // The span later uses the same context.
    let done = br#"[{"time":"2022-10-12T00:00:15.400Z","type":"platform.runtimeDone","record":{"requestId":"r-2","status":"success"}}]"#;
    m.on_records(decode_batch(done).records, &mut out);
    assert_eq!(span(&spans(&out), "orders").trace_id, l[0].trace_id);
}

#[test]
fn init_logs_link_to_the_init_span() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    let early = br#"[{"time":"2022-10-12T00:00:15.000Z","type":"function","record":"[INFO]\t2022-10-12T00:00:15.000Z\t\tbefore init start"}]"#;
    m.on_records(decode_batch(early).records, &mut out);
    assert!(logs(&out).is_empty(), "held until the init span exists");
    feed(&mut m, &["platform.initStart.json"], &mut out);
    let during = br#"[{"time":"2022-10-12T00:00:15.100Z","type":"function","record":"2022-10-12T00:00:15.100Z\tundefined\tINFO\tloading"}]"#;
    m.on_records(decode_batch(during).records, &mut out);
    feed(
        &mut m,
        &["platform.initRuntimeDone.json", "platform.initReport.json"],
        &mut out,
    );
    let init = span(&spans(&out), "aws.lambda.init").clone();
    let l = logs(&out);
    assert_eq!(l.len(), 2);
    for line in &l {
        assert_eq!(line.trace_id, init.trace_id);
        assert_eq!(line.span_id, init.span_id);
        assert!(attr(&line.attributes, "faas.invocation_id").is_none());
    }
}

#[test]
fn snapstart_restore_is_the_cold_start() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    let snapshot_init = br#"[
        {"time":"2022-10-01T09:00:00.000Z","type":"platform.initStart","record":{"initializationType":"snap-start","phase":"init"}},
        {"time":"2022-10-01T09:00:01.000Z","type":"platform.initRuntimeDone","record":{"initializationType":"snap-start","phase":"init","status":"success"}},
        {"time":"2022-10-01T09:00:01.100Z","type":"platform.initReport","record":{"initializationType":"snap-start","phase":"init","metrics":{"durationMs":1100.0}}}]"#;
    m.on_records(decode_batch(snapshot_init).records, &mut out);
    feed(
        &mut m,
        &[
            "platform.restoreStart.json",
            "platform.restoreRuntimeDone.json",
            "platform.restoreReport.json",
        ],
        &mut out,
    );
    m.on_invoke(invoke(), 1);
    feed(
        &mut m,
        &["platform.start.json", "platform.runtimeDone.json"],
        &mut out,
    );
    let all = spans(&out);
    let init = span(&all, "aws.lambda.init");
    assert_eq!(
        attr(&init.attributes, "aws.lambda.snapstart.snapshot"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attr(&init.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    let restore = span(&all, "aws.lambda.restore");
    assert_eq!(
        restore.end_time_unix_nano - restore.start_time_unix_nano,
        260_000_000
    );
    assert_eq!(
        attr(&restore.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(true))
    );
    let inv = span(&all, "orders");
    assert_eq!(
        attr(&inv.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(inv.links.len(), 1);
    assert_eq!(inv.links[0].span_id, restore.span_id);
    m.collect_metrics(NOW, &mut out);
    let ms = metrics(&out);
    assert_eq!(
        histogram(&ms, "faas.init_duration"),
        None,
        "the snapshot's init is not this environment's"
    );
    assert_eq!(
        histogram(&ms, "aws.lambda.restore_duration"),
        Some((1, 0.26))
    );
    assert_eq!(counter(&ms, "faas.coldstarts"), Some(1));
}

#[test]
fn provisioned_concurrency_is_not_a_cold_start() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    let init = br#"[
        {"time":"2022-10-12T00:00:00.000Z","type":"platform.initStart","record":{"initializationType":"provisioned-concurrency","phase":"init"}},
        {"time":"2022-10-12T00:00:00.800Z","type":"platform.initReport","record":{"initializationType":"provisioned-concurrency","phase":"init","status":"success","metrics":{"durationMs":800.0}}}]"#;
    m.on_records(decode_batch(init).records, &mut out);
    m.on_invoke(invoke(), 1);
    feed(
        &mut m,
        &["platform.start.json", "platform.runtimeDone.json"],
        &mut out,
    );
    let all = spans(&out);
    let init = span(&all, "aws.lambda.init");
    assert_eq!(
        str_attr(&init.attributes, "aws.lambda.initialization_type"),
        Some("provisioned-concurrency")
    );
    assert_eq!(
        attr(&init.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    let inv = span(&all, "orders");
    assert_eq!(
        attr(&inv.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    assert!(inv.links.is_empty());
    m.collect_metrics(NOW, &mut out);
    let ms = metrics(&out);
    assert_eq!(counter(&ms, "faas.coldstarts"), None);
    assert_eq!(histogram(&ms, "faas.init_duration"), Some((1, 0.8)));
}

#[test]
fn second_invocation_is_warm() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    feed(&mut m, COLD_INIT, &mut out);
    m.on_invoke(invoke(), 1);
    feed(
        &mut m,
        &["platform.start.json", "platform.runtimeDone.json"],
        &mut out,
    );
    let second = br#"[
        {"time":"2022-10-12T00:00:20.000Z","type":"platform.report","record":{"requestId":"8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e","status":"success","metrics":{"durationMs":124.5}}},
        {"time":"2022-10-12T00:00:20.001Z","type":"platform.start","record":{"requestId":"r-warm","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-63460000-000000000000000000000001;Parent=0000000000000002;Sampled=1"}}},
        {"time":"2022-10-12T00:00:20.101Z","type":"platform.runtimeDone","record":{"requestId":"r-warm","status":"success"}}]"#;
    m.on_records(decode_batch(second).records, &mut out);
    let all = spans(&out);
    let warm = all
        .iter()
        .find(|s| str_attr(&s.attributes, "faas.invocation_id") == Some("r-warm"))
        .unwrap();
    assert_eq!(
        attr(&warm.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    assert!(warm.links.is_empty());
    assert_eq!(hex(&warm.trace_id), "63460000000000000000000000000001");
}

#[test]
fn managed_instances_report_with_only_duration() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    feed(
        &mut m,
        &["platform.report.managed-instances.json"],
        &mut out,
    );
    let all = spans(&out);
    let inv = span(&all, "orders");
    assert_eq!(
        inv.end_time_unix_nano - inv.start_time_unix_nano,
        410_250_000
    );
    m.collect_metrics(NOW, &mut out);
    let ms = metrics(&out);
    assert_eq!(histogram(&ms, "faas.invoke_duration"), Some((1, 0.41025)));
    assert_eq!(histogram(&ms, "aws.lambda.billed_duration"), None);
    assert_eq!(counter(&ms, "faas.invocations"), Some(1));
}

#[test]
fn eviction_emits_best_effort_and_counts_the_loss() {
    let (mut m, stats) = mapper_with(MappingConfig {
        max_pending_invocations: 2,
        ..MappingConfig::default()
    });
    let mut out = Signals::default();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        m.on_invoke(
            InvokeInfo {
                request_id: (*id).to_owned(),
                deadline_ms: 0,
                invoked_function_arn: ARN.to_owned(),
                xray_header: None,
            },
            1_665_532_815_000_000_000 + i as u64,
        );
    }
    assert_eq!(m.pending_invocations(), 2);
    assert_eq!(stats.dropped_total(DropReason::Evicted), 1);
    m.collect_metrics(NOW, &mut out);
    let all = spans(&out);
    assert_eq!(all.len(), 1);
    assert_eq!(
        str_attr(&all[0].attributes, "faas.invocation_id"),
        Some("a")
    );
    assert_eq!(
        attr(&all[0].attributes, "aws.lambda.incomplete"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(all[0].status, None);
}

#[test]
fn finish_emits_every_incomplete_invocation() {
    let (mut m, stats) = mapper();
    let mut out = Signals::default();
    m.on_invoke(invoke(), 1_665_532_815_299_000_000);
    feed(
        &mut m,
        &["platform.initStart.json", "platform.start.json"],
        &mut out,
    );
    m.finish(NOW, &mut out);
    let all = spans(&out);
    let inv = span(&all, "orders");
    assert_eq!(
        attr(&inv.attributes, "aws.lambda.incomplete"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(inv.end_time_unix_nano, NOW);
    let init = span(&all, "aws.lambda.init");
    assert_eq!(
        attr(&init.attributes, "aws.lambda.incomplete"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(m.pending_invocations(), 0);
    assert_eq!(stats.dropped_total(DropReason::Evicted), 0);
}

#[test]
fn platform_records_become_event_logs() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    feed(
        &mut m,
        &[
            "platform.extension.json",
            "platform.telemetrySubscription.json",
            "platform.logsDropped.json",
            "unknown.json",
            "extension.text.json",
        ],
        &mut out,
    );
    // The extension line came before any init or invocation: held, released at collection.
    assert_eq!(logs(&out).len(), 4);
    m.collect_metrics(NOW, &mut out);
    let l = logs(&out);
    let names: Vec<_> = l
        .iter()
        .map(|r| str_attr(&r.attributes, "event.name"))
        .collect();
    assert_eq!(
        names,
        [
            Some("aws.lambda.platform.extension"),
            Some("aws.lambda.platform.telemetrySubscription"),
            Some("aws.lambda.platform.logsDropped"),
            Some("aws.lambda.platform.futureThing"),
            None,
        ]
    );
    assert_eq!(l[0].event_name, "aws.lambda.platform.extension");
    assert_eq!(
        str_attr(&l[0].attributes, "aws.lambda.extension.name"),
        Some("contrail")
    );
    assert_eq!(l[2].severity_number, SeverityNumber::Warn as i32);
    assert_eq!(
        attr(&l[2].attributes, "aws.lambda.logs_dropped.records"),
        Some(&Value::IntValue(123))
    );
    assert!(matches!(
        l[3].body.as_ref().and_then(|b| b.value.as_ref()),
        Some(Value::KvlistValue(_))
    ));
    assert_eq!(
        str_attr(&l[4].attributes, "aws.lambda.log.source"),
        Some("extension")
    );
    let ms = metrics(&out);
    assert_eq!(counter(&ms, "aws.lambda.logs_dropped.records"), Some(123));
    assert_eq!(counter(&ms, "aws.lambda.logs_dropped.bytes"), Some(12345));
}

#[test]
fn delta_temporality_reports_each_interval_once() {
    let (mut m, _) = mapper_with(MappingConfig {
        temporality: Temporality::Delta,
        ..MappingConfig::default()
    });
    let mut out = Signals::default();
    m.on_invoke(invoke(), 1);
    feed(
        &mut m,
        &[
            "platform.start.json",
            "platform.runtimeDone.json",
            "platform.report.json",
        ],
        &mut out,
    );
    m.collect_metrics(NOW, &mut out);
    assert_eq!(counter(&metrics(&out), "faas.invocations"), Some(1));
    let mut next = Signals::default();
    m.collect_metrics(NOW + 1, &mut next);
    assert!(metrics(&next).is_empty());
}

#[test]
fn a_late_record_for_a_retired_invocation_keeps_its_context() {
    let (mut m, _) = mapper();
    let mut out = Signals::default();
    m.on_invoke(invoke(), 1);
    feed(
        &mut m,
        &[
            "platform.start.json",
            "platform.runtimeDone.json",
            "platform.report.json",
        ],
        &mut out,
    );
    let late = br#"[{"time":"2022-10-12T00:00:16.000Z","type":"function","record":{"requestId":"8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e","message":"late"}}]"#;
    let mut later = Signals::default();
    m.on_records(decode_batch(late).records, &mut later);
    let l = logs(&later);
    assert_eq!(hex(&l[0].trace_id), ROOT_HEX);
    assert_eq!(hex(&l[0].span_id), PARENT_HEX);
    assert_eq!(m.pending_invocations(), 0);
}

/// Environments restored from one snapshot share its id generator's state; their restore spans
/// must still get different ids.
#[test]
fn restored_environments_do_not_repeat_ids() {
    let restore_span = |instance: &str| {
        let (mut m, _) = mapper();
        let mut out = Signals::default();
        let batch = format!(
            r#"[{{"time":"2022-10-12T00:00:14.000Z","type":"platform.restoreStart","record":{{"instanceId":"{instance}"}}}},
               {{"time":"2022-10-12T00:00:14.200Z","type":"platform.restoreRuntimeDone","record":{{"status":"success"}}}},
               {{"time":"2022-10-12T00:00:14.260Z","type":"platform.restoreReport","record":{{"status":"success","metrics":{{"durationMs":260.0}}}}}}]"#
        );
        m.on_records(decode_batch(batch.as_bytes()).records, &mut out);
        span(&spans(&out), "aws.lambda.restore").clone()
    };
    let a = restore_span("2022/10/12/[3]aaaaaaaaaaaa");
    let b = restore_span("2022/10/12/[3]bbbbbbbbbbbb");
    assert_ne!(a.span_id, b.span_id);
    assert_ne!(a.trace_id, b.trace_id);
}
