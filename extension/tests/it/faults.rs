//! A backend that misbehaves on every flush of several invocations: each misbehaviour is said
//! once on stderr, however often it happens, and nothing is lost once the backend behaves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use contrail_testkit::otlp_backend::{Backend, Reply};

use crate::support::{Extension, FakeLambda, NEXT, Script, listening, post_json};

const INVOCATIONS: usize = 3;

/// Run `INVOCATIONS` invocations that log one line each against a backend scripted with
/// `script`, then shut down; the extension's stderr and the lines the backend accepted.
async fn invocations_against(script: Vec<Reply>) -> (String, Vec<String>) {
    let backend = Backend::start(script).await;
    let fake = FakeLambda::start(Script::default()).await;
    let endpoint = backend.endpoint();
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("CONTRAIL_FLUSH_BUDGET_MS", "300"),
            // A stalled request is given up after this long, so that the SHUTDOWN flush, which
            // sends even while the circuit breaker is open, can meet a stall and still deliver.
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
        ],
    );
    let port = listening(&fake).await;
    for i in 0..INVOCATIONS {
        let id = format!("req-{i}");
        fake.push_invoke(&id, Duration::from_secs(30));
        let batch = format!(
            r#"[{{"time":"2024-01-01T00:00:0{i}.000Z","type":"platform.start","record":{{"requestId":"{id}"}}}},
                {{"time":"2024-01-01T00:00:0{i}.010Z","type":"function","record":"line of invocation {i}"}},
                {{"time":"2024-01-01T00:00:0{i}.100Z","type":"platform.runtimeDone","record":{{"requestId":"{id}","status":"success","metrics":{{"durationMs":90.0}}}}}}]"#
        );
        assert_eq!(
            post_json(port, Box::leak(batch.into_boxed_str())).await,
            200
        );
        fake.wait_for(NEXT, i + 2).await;
    }
    let deadline = fake.push_shutdown(Duration::from_millis(2000));
    let status = ext.wait_exit(deadline).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ext.stderr());
    let lines = backend
        .accepted_log_records()
        .into_iter()
        .filter_map(|lr| lr.body.and_then(|b| b.value))
        .map(|v| format!("{v:?}"))
        .filter(|v| v.contains("line of invocation"))
        .collect();
    (ext.stderr(), lines)
}

fn said(stderr: &str, reason: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains(&format!("contrail.export.faults, reason {reason}")))
        .count()
}

fn assert_every_line_arrived(lines: &[String]) {
    for i in 0..INVOCATIONS {
        let want = format!("line of invocation {i}");
        assert_eq!(
            lines.iter().filter(|l| l.contains(&want)).count(),
            1,
            "{want:?} exactly once: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_retry_after_on_every_flush_is_said_once() {
    let busy = || Reply::Status(503, vec![("retry-after", "whenever".into())], Vec::new());
    let (stderr, lines) = invocations_against((0..8).map(|_| busy()).collect()).await;
    assert_eq!(said(&stderr, "invalid_retry_after"), 1, "stderr:\n{stderr}");
    assert_every_line_arrived(&lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stalls_on_every_flush_is_said_once() {
    let (stderr, lines) = invocations_against(vec![Reply::Hang, Reply::Hang, Reply::Hang]).await;
    assert_eq!(said(&stderr, "stalled_response"), 1, "stderr:\n{stderr}");
    assert_every_line_arrived(&lines);
}
