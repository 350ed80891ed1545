//! Log lines and platform records as logs: held until their trace context is known, linked
//! to init, to the invocation, or to one already retired.

use super::{NOW, PARENT_HEX, ROOT_HEX, Run, attr, counter, hex, span, str_attr};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;

#[test]
fn missing_header_generates_ids_and_holds_logs_until_known() {
    let mut run = Run::new();
    let start = br#"[{"time":"2022-10-12T00:00:15.300Z","type":"platform.start","record":{"requestId":"r-1"}},
        {"time":"2022-10-12T00:00:15.310Z","type":"function","record":{"requestId":"r-1","message":"held"}}]"#;
    run.batch(start);
    assert!(
        run.logs().is_empty(),
        "held until the trace context is known"
    );
    let done = br#"[{"time":"2022-10-12T00:00:15.400Z","type":"platform.runtimeDone","record":{"requestId":"r-1","status":"error","errorType":"Handled.Error"}}]"#;
    run.batch(done);
    let all = run.spans();
    let inv = span(&all, "orders");
    assert_eq!(inv.trace_id.len(), 16);
    assert_eq!(inv.span_id.len(), 8);
    assert!(inv.trace_id.iter().any(|b| *b != 0));
    let l = run.logs();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].trace_id, inv.trace_id);
    assert_eq!(l[0].span_id, inv.span_id);
}

#[test]
fn held_logs_are_released_at_collect() {
    let mut run = Run::new();
    let start = br#"[{"time":"2022-10-12T00:00:15.300Z","type":"platform.start","record":{"requestId":"r-2"}},
        {"time":"2022-10-12T00:00:15.310Z","type":"function","record":"line one"}]"#;
    run.batch(start);
    assert!(run.logs().is_empty());
    run.collect(NOW);
    let l = run.logs();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].trace_id.len(), 16);
    assert_eq!(
        str_attr(&l[0].attributes, "faas.invocation_id"),
        Some("r-2")
    );
    // The span later uses the same context.
    let done = br#"[{"time":"2022-10-12T00:00:15.400Z","type":"platform.runtimeDone","record":{"requestId":"r-2","status":"success"}}]"#;
    run.batch(done);
    assert_eq!(span(&run.spans(), "orders").trace_id, l[0].trace_id);
}

#[test]
fn init_logs_link_to_the_init_span() {
    let mut run = Run::new();
    let early = br#"[{"time":"2022-10-12T00:00:15.000Z","type":"function","record":"[INFO]\t2022-10-12T00:00:15.000Z\t\tbefore init start"}]"#;
    run.batch(early);
    assert!(run.logs().is_empty(), "held until the init span exists");
    run.feed(&["platform.initStart.json"]);
    let during = br#"[{"time":"2022-10-12T00:00:15.100Z","type":"function","record":"2022-10-12T00:00:15.100Z\tundefined\tINFO\tloading"}]"#;
    run.batch(during);
    run.feed(&["platform.initRuntimeDone.json", "platform.initReport.json"]);
    let init = span(&run.spans(), "aws.lambda.init").clone();
    let l = run.logs();
    assert_eq!(l.len(), 2);
    for line in &l {
        assert_eq!(line.trace_id, init.trace_id);
        assert_eq!(line.span_id, init.span_id);
        assert!(attr(&line.attributes, "faas.invocation_id").is_none());
    }
}

#[test]
fn platform_records_become_event_logs() {
    let mut run = Run::new();
    run.feed(&[
        "platform.extension.json",
        "platform.telemetrySubscription.json",
        "platform.logsDropped.json",
        "unknown.json",
        "extension.text.json",
    ]);
    // The extension line came before any init or invocation: held, released at collection.
    assert_eq!(run.logs().len(), 4);
    run.collect(NOW);
    let l = run.logs();
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
    let ms = run.metrics();
    assert_eq!(counter(&ms, "aws.lambda.logs_dropped.records"), Some(123));
    assert_eq!(counter(&ms, "aws.lambda.logs_dropped.bytes"), Some(12345));
}

#[test]
fn a_late_record_for_a_retired_invocation_keeps_its_context() {
    let mut run = Run::new();
    run.invoke(1);
    run.feed(&[
        "platform.start.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ]);
    let late = br#"[{"time":"2022-10-12T00:00:16.000Z","type":"function","record":{"requestId":"8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e","message":"late"}}]"#;
    run.clear();
    run.batch(late);
    let l = run.logs();
    assert_eq!(hex(&l[0].trace_id), ROOT_HEX);
    assert_eq!(hex(&l[0].span_id), PARENT_HEX);
    assert_eq!(run.mapper.pending_invocations(), 0);
}

/// A JSON line's own `timestamp` is its time, in whatever shape the logger wrote it: Python
/// logging's default (Powertools for AWS Lambda) or epoch milliseconds.
#[test]
fn json_timestamps_in_the_shapes_loggers_write() {
    let mut run = Run::new();
    run.feed(&["function.json.powertools.json"]);
    run.finish(NOW);
    let l = run.logs();
    assert_eq!(l.len(), 2);
    let line = |body: &str| {
        l.iter()
            .find(|r| {
                r.body.as_ref().and_then(|b| b.value.as_ref())
                    == Some(&Value::StringValue(body.into()))
            })
            .unwrap_or_else(|| panic!("no line {body:?} in {l:?}"))
    };
    let powertools = line("Collecting payment");
    assert_eq!(powertools.time_unix_nano, 1_620_035_232_494_000_000);
    assert_eq!(str_attr(&powertools.attributes, "service"), Some("payment"));
    assert_eq!(
        line("charged card").time_unix_nano,
        1_620_035_232_500_000_000
    );
    for line in &l {
        assert!(attr(&line.attributes, "timestamp").is_none());
    }
}

/// A JSON line without a message-like key keeps a body: the line as it was written, or the
/// object as JSON text. Messages under the keys other loggers use (tracing's `fields.message`,
/// structlog's `event`) are the body.
#[test]
fn json_lines_without_a_message_keep_a_body() {
    let mut run = Run::new();
    run.feed(&["function.json.no-message.json"]);
    run.finish(NOW);
    let l = run.logs();
    assert_eq!(l.len(), 5);
    let body = |i: usize| match l[i].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("line {i}: body {other:?}"),
    };
    let by_time = |t: u64| {
        l.iter()
            .position(|r| r.observed_time_unix_nano == t)
            .unwrap_or_else(|| panic!("no line observed at {t}"))
    };
    let hello = by_time(1_715_817_560_171_000_000);
    assert_eq!(body(hello), r#"{"hello":"world"}"#);
    assert_eq!(str_attr(&l[hello].attributes, "hello"), Some("world"));

    let order = by_time(1_715_817_560_172_000_000);
    assert_eq!(
        body(order),
        r#"{"level":"INFO","requestId":"3d848a12-c8b0-46f7-9992-28e8eea524ee","orderId":"A-1","total":42.5}"#
    );
    assert_eq!(str_attr(&l[order].attributes, "orderId"), Some("A-1"));
    assert_eq!(l[order].severity_number, SeverityNumber::Info as i32);

    let tracing = by_time(1_715_817_560_173_000_000);
    assert_eq!(body(tracing), "request handled");
    assert!(attr(&l[tracing].attributes, "fields.message").is_none());
    assert_eq!(
        attr(&l[tracing].attributes, "fields.status"),
        Some(&Value::IntValue(200))
    );

    let structlog = by_time(1_715_817_560_174_000_000);
    assert_eq!(body(structlog), "payment captured");
    assert!(attr(&l[structlog].attributes, "event").is_none());

    let empty = by_time(1_715_817_560_175_000_000);
    let text = body(empty);
    assert!(text.contains(r#""retry":3"#), "{text}");
    assert_eq!(l[empty].severity_number, SeverityNumber::Warn as i32);
}
