//! Invocations: the span, its trace context in each X-Ray mode, status, cold start, the
//! report's metrics, eviction and shutdown.

use super::{
    ARN, COLD_INIT, LAMBDA_SPAN_HEX, NOW, PARENT_HEX, RID, ROOT_HEX, Run, attr, counter, gauge,
    hex, histogram, span, str_attr,
};
use crate::diag::DropReason;
use crate::mapping::config::{Temporality, XrayContext};
use crate::mapping::{InvokeInfo, MappingConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

#[test]
fn cold_start_invocation_in_parent_mode() {
    let mut run = Run::new();
    run.feed(COLD_INIT);
    run.invoke(1_665_532_815_299_000_000);
    run.feed(&[
        "platform.start.json",
        "function.text.json",
        "function.json.json",
        "platform.runtimeDone.json",
    ]);
    let all = run.spans();
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
    let lines = run.logs();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        assert_eq!(hex(&l.trace_id), ROOT_HEX);
        assert_eq!(hex(&l.span_id), PARENT_HEX);
        assert_eq!(str_attr(&l.attributes, "faas.invocation_id"), Some(RID));
    }
    assert_eq!(
        (lines[0].severity_number, lines[0].severity_text.as_str()),
        (SeverityNumber::Info as i32, "INFO")
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
    run.clear();
    run.feed(&["platform.report.json"]);
    let after = run.spans();
    assert_eq!(after.len(), 1);
    let overhead = span(&after, "aws.lambda.extensionOverhead");
    assert_eq!(overhead.parent_span_id, inv.span_id);
    assert_eq!(overhead.trace_id, inv.trace_id);
    assert_eq!(run.mapper.pending_invocations(), 0);

    run.collect(NOW);
    let ms = run.metrics();
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
    let mut run = Run::new();
    run.feed(&["platform.initStart.json"]);
    let instance = run
        .mapper
        .resource()
        .attributes
        .iter()
        .find(|kv| kv.key == "faas.instance")
        .and_then(|kv| kv.value.clone());
    assert!(
        matches!(instance.and_then(|v| v.value), Some(Value::StringValue(s)) if s.contains("2a7b1c4d"))
    );
    run.feed(&["function.text.json"]);
    assert_eq!(run.out.logs.len(), 1, "one ResourceLogs per batch");
    assert_eq!(run.out.logs[0].scope_logs.len(), 1);
    assert_eq!(
        run.out.logs[0].scope_logs[0].scope.as_ref().unwrap().name,
        "contrail"
    );
    assert_eq!(run.out.logs[0].scope_logs[0].log_records.len(), 3);
    let res = run.out.logs[0].resource.as_ref().unwrap();
    assert!(res.attributes.iter().any(|kv| kv.key == "faas.instance"));
}

#[test]
fn link_and_ignore_modes() {
    for mode in [XrayContext::Link, XrayContext::Ignore] {
        let mut run = Run::with(MappingConfig {
            xray_context: mode,
            ..MappingConfig::default()
        });
        run.invoke(1);
        run.feed(&[
            "platform.start.json",
            "function.text.json",
            "platform.runtimeDone.json",
        ]);
        let all = run.spans();
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
        for l in run.logs() {
            assert_eq!(l.trace_id, inv.trace_id);
            assert_eq!(l.span_id, inv.span_id);
        }
    }
}

#[test]
fn invoke_after_start_still_fills_the_span() {
    let mut run = Run::new();
    run.feed(&["platform.start.json"]);
    run.invoke(2);
    run.feed(&["platform.runtimeDone.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(
        str_attr(&inv.attributes, "aws.lambda.invoked_arn"),
        Some(ARN)
    );
    assert_eq!(hex(&inv.span_id), PARENT_HEX);
}

#[test]
fn a_runtime_done_mapped_before_its_invoke_waits_for_it() {
    let mut run = Run::new();
    run.mapper.expect_invokes();
    run.feed(&["platform.start.json", "platform.runtimeDone.json"]);
    run.collect(NOW);
    assert!(
        run.spans().iter().all(|s| s.name != "orders"),
        "no invocation span before its INVOKE"
    );
    run.invoke(2);
    run.collect(NOW);
    let all = run.spans();
    assert_eq!(all.iter().filter(|s| s.name == "orders").count(), 1);
    let inv = span(&all, "orders");
    assert_eq!(
        str_attr(&inv.attributes, "aws.lambda.invoked_arn"),
        Some(ARN)
    );
    // The INVOKE's X-Ray header gives its context, as when the event comes first.
    assert_eq!(hex(&inv.span_id), PARENT_HEX);
    // The report adds its metrics and no second span.
    run.clear();
    run.feed(&["platform.report.json"]);
    assert!(run.spans().iter().all(|s| s.name != "orders"));
}

#[test]
fn an_invoke_that_never_comes_leaves_the_span_to_the_report() {
    let mut run = Run::new();
    run.mapper.expect_invokes();
    run.feed(&["platform.start.json", "platform.runtimeDone.json"]);
    run.collect(NOW);
    assert!(run.spans().iter().all(|s| s.name != "orders"));
    run.feed(&["platform.report.json"]);
    let all = run.spans();
    assert_eq!(all.iter().filter(|s| s.name == "orders").count(), 1);
    let inv = span(&all, "orders");
    assert_eq!(str_attr(&inv.attributes, "aws.lambda.invoked_arn"), None);
}

#[test]
fn an_invoke_after_its_invocation_was_reported_adds_nothing() {
    let mut run = Run::new();
    run.feed(&[
        "platform.start.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ]);
    run.invoke(2);
    run.finish(NOW);
    let all = run.spans();
    assert_eq!(all.iter().filter(|s| s.name == "orders").count(), 1);
    assert_eq!(run.mapper.pending_invocations(), 0);
}

#[test]
fn timeout_without_runtime_done_emits_at_report() {
    let mut run = Run::new();
    run.invoke(1);
    run.feed(&["platform.start.json"]);
    assert!(
        run.spans().is_empty(),
        "nothing until the runtime is done or the report comes"
    );
    run.feed(&["platform.report.timeout.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    let status = inv.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(str_attr(&inv.attributes, "error.type"), Some("timeout"));
    assert_eq!(
        inv.end_time_unix_nano - inv.start_time_unix_nano,
        3_000_000_000
    );
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(counter(&ms, "faas.timeouts"), Some(1));
    assert_eq!(counter(&ms, "faas.invocations"), None);
}

#[test]
fn out_of_memory_is_an_error_counted_once() {
    let mut run = Run::new();
    run.invoke(1);
    run.feed(&["platform.start.json", "platform.runtimeDone.oom.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(
        str_attr(&inv.attributes, "error.type"),
        Some("Runtime.OutOfMemory")
    );
    // The report never comes: shutdown counts the error from runtimeDone.
    run.finish(NOW);
    let ms = run.metrics();
    assert_eq!(counter(&ms, "faas.errors"), Some(1));
    assert_eq!(run.spans().iter().filter(|s| s.name == "orders").count(), 1);
}

#[test]
fn second_invocation_is_warm() {
    let mut run = Run::new();
    run.feed(COLD_INIT);
    run.invoke(1);
    run.feed(&["platform.start.json", "platform.runtimeDone.json"]);
    let second = br#"[
        {"time":"2022-10-12T00:00:20.000Z","type":"platform.report","record":{"requestId":"8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e","status":"success","metrics":{"durationMs":124.5}}},
        {"time":"2022-10-12T00:00:20.001Z","type":"platform.start","record":{"requestId":"r-warm","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-63460000-000000000000000000000001;Parent=0000000000000002;Sampled=1"}}},
        {"time":"2022-10-12T00:00:20.101Z","type":"platform.runtimeDone","record":{"requestId":"r-warm","status":"success"}}]"#;
    run.batch(second);
    let all = run.spans();
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
    let mut run = Run::new();
    run.feed(&["platform.report.managed-instances.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(
        inv.end_time_unix_nano - inv.start_time_unix_nano,
        410_250_000
    );
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(histogram(&ms, "faas.invoke_duration"), Some((1, 0.41025)));
    assert_eq!(histogram(&ms, "aws.lambda.billed_duration"), None);
    assert_eq!(counter(&ms, "faas.invocations"), Some(1));
}

#[test]
fn eviction_emits_best_effort_and_counts_the_loss() {
    let mut run = Run::with(MappingConfig {
        max_pending_invocations: 2,
        ..MappingConfig::default()
    });
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        run.mapper.on_invoke(
            InvokeInfo {
                request_id: (*id).to_owned(),
                deadline_ms: 0,
                invoked_function_arn: ARN.to_owned(),
                xray_header: None,
            },
            1_665_532_815_000_000_000 + i as u64,
        );
    }
    assert_eq!(run.mapper.pending_invocations(), 2);
    assert_eq!(run.stats.dropped_total(DropReason::Evicted), 1);
    run.collect(NOW);
    let all = run.spans();
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
    let mut run = Run::new();
    run.invoke(1_665_532_815_299_000_000);
    run.feed(&["platform.initStart.json", "platform.start.json"]);
    run.finish(NOW);
    let all = run.spans();
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
    assert_eq!(run.mapper.pending_invocations(), 0);
    assert_eq!(run.stats.dropped_total(DropReason::Evicted), 0);
}

#[test]
fn delta_temporality_reports_each_interval_once() {
    let mut run = Run::with(MappingConfig {
        temporality: Temporality::Delta,
        ..MappingConfig::default()
    });
    run.invoke(1);
    run.feed(&[
        "platform.start.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ]);
    run.collect(NOW);
    assert_eq!(counter(&run.metrics(), "faas.invocations"), Some(1));
    run.clear();
    run.collect(NOW + 1);
    assert!(run.metrics().is_empty());
}

/// AWS's own example of `platform.report` (the telemetry schema reference) has no `status`, as
/// reports of older schema versions: its duration, billed duration and memory are still
/// metrics, the invocation is counted, and its span is complete.
#[test]
fn a_report_without_status_still_becomes_metrics() {
    let mut run = Run::new();
    run.feed(&["platform.report.no-status.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(
        str_attr(&inv.attributes, "faas.invocation_id"),
        Some("6d68ca91-49c9-448d-89b8-7ca3e6dc66aa")
    );
    assert_eq!(inv.status, None, "no status is not an error");
    assert_eq!(
        inv.end_time_unix_nano - inv.start_time_unix_nano,
        693_920_000
    );
    assert!(attr(&inv.attributes, "aws.lambda.incomplete").is_none());
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(histogram(&ms, "faas.invoke_duration"), Some((1, 0.69392)));
    assert_eq!(
        histogram(&ms, "aws.lambda.billed_duration"),
        Some((1, 0.694))
    );
    assert_eq!(
        histogram(&ms, "faas.mem_usage"),
        Some((1, 84.0 * 1024.0 * 1024.0))
    );
    assert_eq!(
        gauge(&ms, "aws.lambda.memory_size"),
        Some(128.0 * 1024.0 * 1024.0)
    );
    assert_eq!(counter(&ms, "faas.invocations"), Some(1));
    assert_eq!(counter(&ms, "faas.errors"), None);
}

/// Without a `status`, an `errorType` still says the invocation failed.
#[test]
fn a_report_without_status_but_with_an_error_type_is_an_error() {
    let mut run = Run::new();
    run.batch(br#"[{"time":"2022-10-12T00:01:15.000Z","type":"platform.report","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","errorType":"Runtime.ExitError","metrics":{"durationMs":12.5,"billedDurationMs":13,"memorySizeMB":128,"maxMemoryUsedMB":61}}}]"#);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(
        str_attr(&inv.attributes, "error.type"),
        Some("Runtime.ExitError")
    );
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(counter(&ms, "faas.errors"), Some(1));
    assert_eq!(counter(&ms, "faas.invocations"), None);
}

/// A runtimeDone with one span whose start is not a time still ends the invocation: the span
/// is complete at runtimeDone, with the other children and the produced bytes.
#[test]
fn a_runtime_done_with_a_bad_span_still_ends_the_invocation() {
    let mut run = Run::new();
    run.batch(br#"[{"time":"2024-05-15T23:59:20.840Z","type":"platform.start","record":{"requestId":"3d848a12-c8b0-46f7-9992-28e8eea524ee","version":"$LATEST"}}]"#);
    run.feed(&["platform.runtimeDone.bad-fields.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert!(attr(&inv.attributes, "aws.lambda.incomplete").is_none());
    assert_eq!(
        inv.end_time_unix_nano - inv.start_time_unix_nano,
        245_800_000
    );
    span(&all, "aws.lambda.responseLatency");
    span(&all, "aws.lambda.runtimeOverhead");
    assert!(all.iter().all(|s| s.name != "aws.lambda.responseDuration"));
    run.collect(NOW);
    assert_eq!(
        histogram(&run.metrics(), "aws.lambda.produced_bytes"),
        Some((1, 53.0))
    );
}

/// Without `platform.start`, the span still covers the invocation, on the records' own clock:
/// from runtimeDone's time less its duration, or from the report's time less its duration,
/// not from when Contrail happened to see the `INVOKE` event (here, records replayed later).
#[test]
fn without_platform_start_the_span_comes_from_the_best_evidence() {
    // INVOKE seen at NOW, 85 s after the records were written.
    let mut run = Run::new();
    run.invoke(NOW);
    run.feed(&["platform.runtimeDone.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.start_time_unix_nano, 1_665_532_815_300_500_000);
    assert_eq!(inv.end_time_unix_nano, 1_665_532_815_425_000_000);

    // Neither start nor runtimeDone: the report's duration, ending at the report.
    let mut run = Run::new();
    run.invoke(NOW);
    run.feed(&["platform.report.timeout.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.start_time_unix_nano, 1_665_532_815_310_000_000);
    assert_eq!(inv.end_time_unix_nano, 1_665_532_818_310_000_000);

    // Only INVOKE and a runtimeDone without metrics: from INVOKE to runtimeDone.
    let mut run = Run::new();
    run.invoke(1_665_532_815_299_000_000);
    run.batch(br#"[{"time":"2022-10-12T00:00:15.425Z","type":"platform.runtimeDone","record":{"requestId":"8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e","status":"success"}}]"#);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.start_time_unix_nano, 1_665_532_815_299_000_000);
    assert_eq!(inv.end_time_unix_nano, 1_665_532_815_425_000_000);

    // platform.start wins over everything; runtimeDone's duration from there.
    let mut run = Run::new();
    run.invoke(NOW);
    run.feed(&["platform.start.json", "platform.runtimeDone.json"]);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.start_time_unix_nano, 1_665_532_815_300_000_000);
    assert_eq!(inv.end_time_unix_nano, 1_665_532_815_424_500_000);
}

/// Lambda Managed Instances send no `INVOKE` and no `platform.runtimeDone`, and run several
/// invocations at once; their reports carry only `durationMs` and the `responseLatency` and
/// `responseDuration` spans. Each invocation still gets a complete span in its own trace, from
/// its start and its report, with those two as children (they are not extension overhead),
/// and its lines.
#[test]
fn managed_instances_without_runtime_done_get_complete_spans() {
    let mut run = Run::new();
    run.feed(&["managed-instances.concurrent.json"]);
    let all = run.spans();
    let invocations: Vec<_> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(invocations.len(), 2);
    let logs = run.logs();
    for (id, trace, duration_ns, error) in [
        (
            "13d1305b-a2f5-440c-bfbe-686ccff3d3e0",
            "68cdb1d23f5a7c9e1b2d4f6a8c0e2b4d",
            1_148_000,
            None,
        ),
        (
            "e4a1b7c2-9d3f-4e8a-b6c5-0f2d1a3e5b7c",
            "68cdb1d27e9a1c3e5b7d9f1a3c5e7a9b",
            33_520_000,
            Some("Function.Unhandled"),
        ),
    ] {
        let inv = invocations
            .iter()
            .find(|s| str_attr(&s.attributes, "faas.invocation_id") == Some(id))
            .unwrap_or_else(|| panic!("no span for {id}"));
        assert_eq!(hex(&inv.trace_id), trace);
        assert!(
            attr(&inv.attributes, "aws.lambda.incomplete").is_none(),
            "{id}"
        );
        assert_eq!(
            inv.end_time_unix_nano - inv.start_time_unix_nano,
            duration_ns,
            "{id}"
        );
        assert_eq!(str_attr(&inv.attributes, "error.type"), error, "{id}");
        assert_eq!(
            attr(&inv.attributes, "faas.coldstart"),
            Some(&Value::BoolValue(false)),
            "initialized ahead of requests"
        );
        let children: Vec<&str> = all
            .iter()
            .filter(|c| c.parent_span_id == inv.span_id)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            children,
            ["aws.lambda.responseLatency", "aws.lambda.responseDuration"],
            "{id}"
        );
        let line = logs
            .iter()
            .find(|l| str_attr(&l.attributes, "faas.invocation_id") == Some(id))
            .unwrap_or_else(|| panic!("no line for {id}"));
        assert_eq!(line.trace_id, inv.trace_id);
        assert_eq!(line.span_id, inv.span_id);
    }
    assert_eq!(run.mapper.pending_invocations(), 0);
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(histogram(&ms, "faas.invoke_duration").map(|h| h.0), Some(2));
    assert_eq!(counter(&ms, "faas.invocations"), Some(1));
    assert_eq!(counter(&ms, "faas.errors"), Some(1));
    assert_eq!(
        histogram(&ms, "aws.lambda.extension_overhead"),
        None,
        "the response spans are not the extensions' time"
    );
}
