//! How environments start, end to end: the release `contrail` binary under the emulator with
//! SnapStart, provisioned concurrency and Lambda Managed Instances, exporting through a real
//! collector (rotel) to a sink the test decodes. The cold start is the restore for SnapStart and
//! nothing for pre-initialized environments; on Managed Instances Contrail registers SHUTDOWN
//! only, subscribes with schema 2025-01-29, and still makes one span per concurrent invocation
//! with its log lines on its trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use contrail_e2e::{
    Backend, attr_bool, attr_str, body_of, hex, invocation_spans, log_records, python_run,
    xray_trace_id,
};
use contrail_sim::sink::Received;
use contrail_sim::{InitType, LogFormat, RunConfig, RunReport};
use opentelemetry_proto::tonic::trace::v1::Span;

const HANDLER: &str = r#"
import logging
import time

print("init: loading the handler module")
logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    logger.info("modes line request=%s", context.aws_request_id)
    if event.get("sleep_s"):
        time.sleep(event["sleep_s"])
    return {"ok": True}
"#;

struct Mode {
    init_type: InitType,
    invocations: u32,
    concurrency: u32,
    payload: &'static [u8],
    idle_gap: Duration,
}

async fn run_mode(m: Mode, wait_for: impl Fn(&Received) -> bool) -> (RunReport, Received) {
    let backend = Backend::start().await;
    let (base, _dirs) = python_run(
        HANDLER,
        "modes-e2e",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", backend.endpoint())],
    );
    let cfg = RunConfig {
        init_type: m.init_type,
        invocations: m.invocations,
        concurrency: m.concurrency,
        payload: m.payload.to_vec(),
        idle_gap: m.idle_gap,
        log_format: LogFormat::Json,
        ..base
    };
    let report = contrail_sim::run(cfg).await.expect("emulator run");
    assert_eq!(
        report.invocations.len(),
        m.invocations as usize,
        "{}",
        report.render_text()
    );
    assert!(
        report.invocations.iter().all(|i| i.status == "success"),
        "{}",
        report.render_text()
    );
    for ext in &report.extensions {
        assert!(!ext.crashed, "contrail crashed: {ext:?}");
    }
    backend
        .sink
        .wait_for(Duration::from_secs(20), |r| {
            invocation_spans(r).len() >= m.invocations as usize && wait_for(r)
        })
        .await
        .unwrap_or_else(|e| panic!("not everything arrived: {e}\n{}", report.render_text()));
    // Give a late duplicate the chance to show up before judging.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (report, backend.sink.snapshot())
}

fn all_spans(received: &Received) -> Vec<Span> {
    received
        .spans()
        .into_iter()
        .map(|e| e.span.clone())
        .collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn span_of<'a>(inv: &'a [Span], request_id: &str) -> &'a Span {
    let found: Vec<&Span> = inv
        .iter()
        .filter(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(request_id))
        .collect();
    assert_eq!(found.len(), 1, "one span for {request_id}");
    found[0]
}

fn links_to(span: &Span, target: &Span) -> bool {
    span.links
        .iter()
        .any(|l| l.span_id == target.span_id && l.trace_id == target.trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_cold_start_is_the_restore() {
    let (report, received) = run_mode(
        Mode {
            init_type: InitType::SnapStart,
            invocations: 3,
            concurrency: 1,
            payload: b"{}",
            idle_gap: Duration::ZERO,
        },
        |r| {
            r.spans()
                .iter()
                .any(|s| s.span.name == "aws.lambda.restore")
        },
    )
    .await;
    assert!(received.duplicate_spans().is_empty());
    let spans = all_spans(&received);
    let restore = named(&spans, "aws.lambda.restore");
    assert_eq!(restore.len(), 1, "exactly one restore span");
    let restore = restore[0];
    assert_eq!(attr_bool(&restore.attributes, "faas.coldstart"), Some(true));

    let inv = invocation_spans(&received);
    assert_eq!(inv.len(), 3);
    for (i, r) in report.invocations.iter().enumerate() {
        let span = span_of(&inv, &r.request_id);
        assert_eq!(
            attr_bool(&span.attributes, "faas.coldstart"),
            Some(i == 0),
            "coldstart on the first invocation only ({})",
            r.request_id
        );
        assert_eq!(hex(&span.trace_id), xray_trace_id(&r.trace_header).unwrap());
    }
    let first = span_of(&inv, &report.invocations[0].request_id);
    assert!(
        links_to(first, restore),
        "the first invocation links to the restore span: {:?}",
        first.links
    );

    // The snapshot's init span, when exported, is marked and is not the cold start.
    for init in named(&spans, "aws.lambda.init") {
        assert_eq!(
            attr_bool(&init.attributes, "aws.lambda.snapstart.snapshot"),
            Some(true),
            "snapshot init span marked"
        );
        assert_eq!(attr_bool(&init.attributes, "faas.coldstart"), Some(false));
        assert_eq!(
            attr_str(&init.attributes, "aws.lambda.initialization_type"),
            Some("snap-start")
        );
        for s in &inv {
            assert!(
                !links_to(s, init),
                "an invocation links to the snapshot init"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_concurrency_first_invocation_is_not_a_cold_start() {
    let (report, received) = run_mode(
        Mode {
            init_type: InitType::ProvisionedConcurrency,
            invocations: 2,
            concurrency: 1,
            payload: b"{}",
            idle_gap: Duration::from_millis(200),
        },
        |r| r.spans().iter().any(|s| s.span.name == "aws.lambda.init"),
    )
    .await;
    assert!(received.duplicate_spans().is_empty());
    let spans = all_spans(&received);
    let init = named(&spans, "aws.lambda.init");
    assert_eq!(init.len(), 1, "one init span");
    let init = init[0];
    assert_eq!(
        attr_str(&init.attributes, "aws.lambda.initialization_type"),
        Some("provisioned-concurrency")
    );
    assert_eq!(attr_bool(&init.attributes, "faas.coldstart"), Some(false));
    assert!(named(&spans, "aws.lambda.restore").is_empty());
    let inv = invocation_spans(&received);
    assert_eq!(inv.len(), 2);
    for r in &report.invocations {
        let span = span_of(&inv, &r.request_id);
        assert_eq!(attr_bool(&span.attributes, "faas.coldstart"), Some(false));
        assert!(!links_to(span, init), "no cold-start link");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_concurrent_invocations_each_get_their_span_and_logs() {
    const N: usize = 9;
    let (report, received) = run_mode(
        Mode {
            init_type: InitType::LambdaManagedInstances,
            invocations: N as u32,
            concurrency: 3,
            payload: br#"{"sleep_s": 0.3}"#,
            idle_gap: Duration::ZERO,
        },
        |r| {
            r.log_records()
                .iter()
                .filter(|l| body_of(l.record).contains("modes line request="))
                .count()
                >= N
        },
    )
    .await;
    // Contrail follows the Managed Instances protocol.
    let ext = report
        .extensions
        .iter()
        .find(|e| e.name == "contrail")
        .expect("contrail ran");
    assert_eq!(ext.events, ["SHUTDOWN"], "registers SHUTDOWN only");
    assert_eq!(ext.telemetry_schema.as_deref(), Some("2025-01-29"));
    assert_eq!(ext.exit.as_deref(), Some("exit code 0"));

    assert!(received.duplicate_spans().is_empty());
    assert!(received.duplicate_logs().is_empty());
    let inv = invocation_spans(&received);
    assert_eq!(inv.len(), N, "one span per invocation");
    let logs = log_records(&received);
    let mut trace_ids = HashMap::new();
    for r in &report.invocations {
        let span = span_of(&inv, &r.request_id);
        assert_eq!(
            hex(&span.trace_id),
            xray_trace_id(&r.trace_header).unwrap(),
            "trace id from the X-Ray header"
        );
        assert_eq!(
            attr_bool(&span.attributes, "faas.coldstart"),
            Some(false),
            "Managed Instances initialize ahead of requests"
        );
        trace_ids.insert(span.trace_id.clone(), r.request_id.as_str());
        let needle = format!("modes line request={}", r.request_id);
        let lines: Vec<_> = logs
            .iter()
            .filter(|l| body_of(l).contains(&needle))
            .collect();
        assert_eq!(lines.len(), 1, "exactly one `{needle}`");
        assert_eq!(lines[0].trace_id, span.trace_id, "trace of `{needle}`");
        assert_eq!(lines[0].span_id, span.span_id, "span of `{needle}`");
        assert_eq!(
            attr_str(&lines[0].attributes, "faas.invocation_id"),
            Some(r.request_id.as_str())
        );
    }
    assert_eq!(trace_ids.len(), N, "one trace per invocation");
}
