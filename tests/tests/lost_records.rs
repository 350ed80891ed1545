//! What real Lambda sends when the stream is not whole, end to end: the release `contrail`
//! binary under the emulator with a Python function under the real `awslambdaric`, exporting
//! through a real collector (rotel). A `platform.runtimeDone` that Lambda lost and reported in
//! `platform.logsDropped` ends the wait at once; one lost without a trace is waited for only up
//! to `CONTRAIL_RUNTIME_DONE_WAIT_MS`; and what Lambda delivers after `SHUTDOWN` (the runtime's
//! last lines) is exported before the extension exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use contrail_e2e::{
    Backend, attr_bool, attr_str, body_of, invocation_spans, latest_counter, log_records,
    python_run,
};
use contrail_sim::sink::Received;
use contrail_sim::{RunConfig, RunReport};

/// Each invocation's deadline: what the wait for runtimeDone would last without an end.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The wait after the runtime's answer, far below the timeout: the wait did end early.
const WELL_BEFORE_THE_TIMEOUT_MS: f64 = 5_000.0;

const HANDLER: &str = r#"
import logging
import os
import signal
import threading
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def shut_down_on_sigterm():
    # The runtime client's main thread waits for the next event in a native call, where a
    # Python signal handler would not run: this thread takes SIGTERM instead.
    signal.sigwait({signal.SIGTERM})
    # Closing takes a moment: the last invocation's records have long been delivered.
    time.sleep(0.15)
    print("shutdown: closing the connection pool", flush=True)
    print("shutdown: connection pool closed", flush=True)
    os._exit(0)


signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
threading.Thread(target=shut_down_on_sigterm, daemon=True).start()


def handler(event, context):
    logger.info("lost-records line request=%s", context.aws_request_id)
    return {"ok": True}
"#;

async fn run(
    name: &str,
    contrail_env: &[(&str, &str)],
    invocations: u32,
    configure: impl FnOnce(RunConfig) -> RunConfig,
    wait_for: impl Fn(&Received) -> bool,
) -> (RunReport, Received) {
    let backend = Backend::start().await;
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", backend.endpoint())];
    env.extend(contrail_env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let (base, _dirs) = python_run(HANDLER, name, &env);
    let cfg = configure(RunConfig {
        invocations,
        timeout: TIMEOUT,
        ..base
    });
    let report = contrail_sim::run(cfg).await.expect("emulator run");
    contrail_e2e::assert_ran(&report, invocations as usize);
    let received = backend
        .sink
        .wait_for(Duration::from_secs(20), wait_for)
        .await
        .unwrap_or_else(|e| panic!("not everything arrived: {e}\n{}", report.render_text()));
    (report, received)
}

/// Each invocation has one complete span, and Contrail called next well before the deadline.
fn check_invocations(report: &RunReport, received: &Received) {
    let spans = invocation_spans(received);
    for inv in &report.invocations {
        assert_eq!(inv.status, "success", "{}", report.render_text());
        assert!(
            inv.post_runtime_ms < WELL_BEFORE_THE_TIMEOUT_MS,
            "{} waited {} ms after the runtime's answer: {}",
            inv.request_id,
            inv.post_runtime_ms,
            report.render_text()
        );
        let found: Vec<_> = spans
            .iter()
            .filter(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(&inv.request_id))
            .collect();
        assert_eq!(found.len(), 1, "one span for {}", inv.request_id);
        assert_eq!(
            attr_bool(&found[0].attributes, "aws.lambda.incomplete"),
            None,
            "completed from its report"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_runtime_done_reported_in_logs_dropped_ends_the_wait_at_once() {
    let (report, received) = run(
        "lost-records-dropped",
        // Only the drop can end the wait: its bound is past the deadline.
        &[
            ("CONTRAIL_FLUSH", "end"),
            ("CONTRAIL_RUNTIME_DONE_WAIT_MS", "900000"),
        ],
        2,
        |cfg| RunConfig {
            drop_telemetry: vec!["platform.runtimeDone".into()],
            ..cfg
        },
        |r| {
            invocation_spans(r).len() >= 2
                && latest_counter(r, "aws.lambda.logs_dropped.records", None) >= 2
        },
    )
    .await;
    assert_eq!(
        report.telemetry.records_dropped, 2,
        "{:?}",
        report.telemetry
    );
    check_invocations(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_done_lost_without_a_trace_is_waited_for_only_up_to_the_bound() {
    let (report, received) = run(
        "lost-records-omitted",
        &[
            ("CONTRAIL_FLUSH", "end"),
            ("CONTRAIL_RUNTIME_DONE_WAIT_MS", "1000"),
        ],
        1,
        |cfg| RunConfig {
            omit_telemetry: vec!["platform.runtimeDone".into()],
            ..cfg
        },
        |r| !invocation_spans(r).is_empty(),
    )
    .await;
    check_invocations(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtimes_shutdown_lines_are_exported_before_the_extension_exits() {
    const LINES: [&str; 2] = [
        "shutdown: closing the connection pool",
        "shutdown: connection pool closed",
    ];
    let (report, received) = run(
        "lost-records-shutdown",
        &[],
        1,
        |cfg| cfg,
        |r| {
            let logs = log_records(r);
            LINES
                .iter()
                .all(|line| logs.iter().any(|l| body_of(l).contains(line)))
                && !r.metrics_named("faas.invoke_duration").is_empty()
        },
    )
    .await;
    // Contrail exited on its own, within the shutdown window.
    for ext in &report.extensions {
        assert!(
            ext.exit.as_deref().is_some_and(|e| e.contains("code 0")),
            "{ext:?}"
        );
    }
    let logs = log_records(&received);
    for line in LINES {
        assert_eq!(
            logs.iter().filter(|l| body_of(l).contains(line)).count(),
            1,
            "exactly one {line:?}"
        );
    }
}

/// Lambda Managed Instances send no `platform.runtimeDone` (AWS's emulator for them never
/// broadcasts it) and run invocations at once: each still gets one complete span, from its
/// start and its report, with its own line on its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_without_runtime_done_get_complete_spans() {
    const INVOCATIONS: u32 = 8;
    let (report, received) = run(
        "lost-records-managed",
        &[],
        INVOCATIONS,
        |cfg| RunConfig {
            init_type: contrail_sim::InitType::LambdaManagedInstances,
            concurrency: 4,
            log_format: contrail_sim::LogFormat::Json,
            omit_telemetry: vec!["platform.runtimeDone".into()],
            ..cfg
        },
        |r| {
            invocation_spans(r).len() >= INVOCATIONS as usize
                && log_records(r)
                    .iter()
                    .filter(|l| body_of(l).contains("lost-records line"))
                    .count()
                    >= INVOCATIONS as usize
        },
    )
    .await;
    check_invocations(&report, &received);
    let spans = invocation_spans(&received);
    let logs = log_records(&received);
    for inv in &report.invocations {
        let span = spans
            .iter()
            .find(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(&inv.request_id))
            .unwrap();
        let line = logs
            .iter()
            .find(|l| body_of(l).contains(&format!("request={}", inv.request_id)))
            .unwrap_or_else(|| panic!("no line for {}", inv.request_id));
        assert_eq!(line.trace_id, span.trace_id, "{}", inv.request_id);
        assert_eq!(line.span_id, span.span_id, "{}", inv.request_id);
    }
}
