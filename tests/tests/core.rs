//! The core, end to end: the release `contrail` binary under the emulator, exporting through a
//! real collector (rotel) to a sink the test decodes. A cold start and 20 invocations, with text
//! and with JSON logs: one invocation span per request in the X-Ray trace with its child spans,
//! one init span, report metrics equal to what the emulator reported, every function log line
//! exactly once with the right trace id and severity, and an unknown event and a malformed record
//! in the stream losing nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use contrail_e2e::{
    Backend, attr_bool, attr_str, body_of, hex, histogram_totals, invocation_spans, latest_counter,
    log_records, python_run, xray_parent, xray_trace_id,
};
use contrail_sim::sink::Received;
use contrail_sim::{LogFormat, RunConfig, RunReport};
use opentelemetry_proto::tonic::trace::v1::Span;

const INVOCATIONS: usize = 20;

const HANDLER: &str = r#"
import logging

print("init: loading the handler module")
logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    rid = context.aws_request_id
    logger.info("step=one request=%s", rid)
    logger.warning("step=two request=%s", rid)
    logger.error("step=three request=%s", rid)
    return {"ok": True}
"#;

/// (marker, expected severity text, expected severity number) of each line per invocation.
const LINES: [(&str, &str, i32); 3] = [
    ("step=one", "INFO", 9),
    ("step=two", "WARN", 13),
    ("step=three", "ERROR", 17),
];

async fn run_core(log_format: LogFormat) -> (RunReport, Received) {
    let backend = Backend::start().await;
    let (base, _dirs) = python_run(
        HANDLER,
        "core-e2e",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", backend.endpoint()),
            ("CONTRAIL_FLUSH", "end".into()),
        ],
    );
    let cfg = RunConfig {
        invocations: INVOCATIONS as u32,
        log_format,
        inject_telemetry: vec![
            // A platform event type Contrail has never heard of, and a record that is not an
            // object where one is required: both must lose nothing else.
            (
                "platform.futureEvent".into(),
                serde_json::json!({"answer": 42}),
            ),
            ("platform.start".into(), serde_json::json!("not an object")),
        ],
        ..base
    };
    let report = contrail_sim::run(cfg).await.expect("emulator run");
    contrail_e2e::assert_ran(&report, INVOCATIONS);

    let want_logs = INVOCATIONS * LINES.len();
    backend
        .sink
        .wait_for(Duration::from_secs(20), |r| {
            invocation_spans(r).len() >= INVOCATIONS
                && r.log_records()
                    .iter()
                    .filter(|l| body_of(l.record).contains("step="))
                    .count()
                    >= want_logs
                && !r.metrics_named("aws.lambda.billed_duration").is_empty()
        })
        .await
        .unwrap_or_else(|e| panic!("not everything arrived: {e}\n{}", report.render_text()));
    // Give a late duplicate the chance to show up before judging.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (report, backend.sink.snapshot())
}

fn check(report: &RunReport, received: &Received) {
    let spans: Vec<Span> = received
        .spans()
        .into_iter()
        .map(|e| e.span.clone())
        .collect();
    let logs = log_records(received);
    assert!(
        received.duplicate_spans().is_empty(),
        "duplicate spans: {:?}",
        received.duplicate_spans()
    );
    assert!(
        received.duplicate_logs().is_empty(),
        "duplicate logs: {:?}",
        received.duplicate_logs()
    );

    // One invocation span per request, in the caller's X-Ray trace, with its child spans.
    let inv = invocation_spans(received);
    let by_request: HashMap<&str, Vec<_>> = inv.iter().fold(HashMap::new(), |mut m, s| {
        m.entry(attr_str(&s.attributes, "faas.invocation_id").unwrap_or_default())
            .or_default()
            .push(s);
        m
    });
    assert_eq!(by_request.len(), INVOCATIONS);
    for (i, r) in report.invocations.iter().enumerate() {
        let found = by_request
            .get(r.request_id.as_str())
            .unwrap_or_else(|| panic!("no span for {}", r.request_id));
        assert_eq!(found.len(), 1, "one span per request id");
        let span = found[0];
        assert_eq!(
            hex(&span.trace_id),
            xray_trace_id(&r.trace_header).unwrap(),
            "trace id from the X-Ray header"
        );
        assert_eq!(
            hex(&span.span_id),
            xray_parent(&r.trace_header).unwrap(),
            "span id is the runtime's parent"
        );
        assert_eq!(
            attr_bool(&span.attributes, "faas.coldstart"),
            Some(i == 0),
            "coldstart on the first only"
        );
        let children: HashSet<&str> = spans
            .iter()
            .filter(|c| c.parent_span_id == span.span_id && c.trace_id == span.trace_id)
            .map(|c| c.name.as_str())
            .collect();
        for want in ["aws.lambda.responseLatency", "aws.lambda.responseDuration"] {
            assert!(
                children.contains(want),
                "{want} under {}: {children:?}",
                r.request_id
            );
        }
    }
    assert_eq!(
        inv.iter()
            .filter(|s| attr_bool(&s.attributes, "faas.coldstart") == Some(true))
            .count(),
        1
    );

    // One init span, linked from the first invocation.
    let init: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "aws.lambda.init")
        .collect();
    assert_eq!(
        init.len(),
        1,
        "one init span: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let first = by_request[report.invocations[0].request_id.as_str()][0];
    assert!(
        first
            .links
            .iter()
            .any(|l| l.span_id == init[0].span_id && l.trace_id == init[0].trace_id),
        "first invocation links to the init span"
    );
    // The line printed while the module loaded belongs to the init span.
    let init_line = logs
        .iter()
        .find(|l| body_of(l).contains("init: loading the handler module"))
        .expect("init log line");
    assert_eq!(init_line.trace_id, init[0].trace_id);
    assert_eq!(init_line.span_id, init[0].span_id);

    // Report metrics carry what the emulator reported.
    let billed_total: f64 = report
        .invocations
        .iter()
        .map(|r| r.billed_duration_ms as f64)
        .sum();
    let (count, sum) = histogram_totals(received, "aws.lambda.billed_duration");
    assert_eq!(count, INVOCATIONS as u64, "one billed duration per report");
    assert!(
        (sum - billed_total).abs() < 1e-6 || (sum * 1000.0 - billed_total).abs() < 1e-3,
        "billed sum {sum} vs {billed_total}"
    );
    let max_mem: u64 = report
        .invocations
        .iter()
        .map(|r| r.max_memory_used_mb)
        .max()
        .unwrap_or(0);
    assert!(max_mem > 0);
    let (inv_count, _) = histogram_totals(received, "faas.invoke_duration");
    assert_eq!(inv_count, INVOCATIONS as u64);

    // The unknown event type arrived as a log record, and both it and the malformed record
    // were counted in Contrail's own metrics.
    assert!(
        logs.iter()
            .any(|l| l.event_name == "aws.lambda.platform.futureEvent"),
        "unknown event exported as a log record"
    );
    assert!(latest_counter(received, "contrail.records.unknown", None) >= 1);
    assert!(
        latest_counter(
            received,
            "contrail.records.dropped",
            Some(("reason", "malformed"))
        ) >= 1
    );

    // Every function log line exactly once, with its invocation's trace and the right severity.
    for r in &report.invocations {
        let span = by_request[r.request_id.as_str()][0];
        for (marker, sev_text, sev_num) in LINES {
            let needle = format!("{marker} request={}", r.request_id);
            let lines: Vec<_> = logs
                .iter()
                .filter(|l| body_of(l).contains(&needle))
                .collect();
            assert_eq!(lines.len(), 1, "exactly one `{needle}`");
            let l = lines[0];
            assert_eq!(l.trace_id, span.trace_id, "trace id of `{needle}`");
            assert_eq!(l.span_id, span.span_id, "span id of `{needle}`");
            assert_eq!(l.severity_number, sev_num, "severity of `{needle}`");
            assert!(
                l.severity_text.eq_ignore_ascii_case(sev_text)
                    || (sev_text == "WARN" && l.severity_text.eq_ignore_ascii_case("WARNING")),
                "severity text {}",
                l.severity_text
            );
            assert_eq!(
                attr_str(&l.attributes, "faas.invocation_id"),
                Some(r.request_id.as_str())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_cold_start_and_twenty_invocations() {
    let (report, received) = run_core(LogFormat::Text).await;
    check(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_cold_start_and_twenty_invocations() {
    let (report, received) = run_core(LogFormat::Json).await;
    check(&report, &received);
}
