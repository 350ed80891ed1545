//! What Contrail reads from `/proc` of the function's processes, end to end: the Python sample
//! (and the Node one for CPU and memory) under the emulator with the release `contrail` binary,
//! its payload asking for a known amount of CPU, memory at a known moment, and PostgreSQL
//! connections (a throwaway cluster, [`Postgres`], reached through psycopg); the invocation
//! spans that arrive through rotel say what the function did, within the tolerances stated at
//! each check.
//!
//! Needs `scripts/install-test-deps.sh` (the venv with awslambdaric and psycopg, Debian's
//! `postgresql`, rotel) and the release build of `contrail`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use contrail_e2e::{
    Backend, Postgres, attr, attr_int, attr_str, extensions_dir, free_loopback_port,
    invocation_spans, node_sample, python_sample,
};
use contrail_sim::{RunConfig, RunReport};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;

const MIB: i64 = 1024 * 1024;

/// A sample function: its folder, the command that runs it, its handler.
struct Sample {
    task_root: PathBuf,
    command: Vec<String>,
    handler: &'static str,
}

fn python() -> Sample {
    let (task_root, command) = python_sample();
    Sample {
        task_root,
        command,
        handler: "app.handler",
    }
}

/// The Node sample with `--expose-gc`, so that it frees its block when it drops it: V8 would
/// otherwise collect it at some later moment, in another invocation.
fn node() -> Sample {
    let (task_root, mut command) = node_sample();
    command.insert(1, "--expose-gc".to_owned());
    Sample {
        task_root,
        command,
        handler: "index.handler",
    }
}

async fn run(
    backend: &Backend,
    payload: &str,
    invocations: u32,
    env: &[(&str, &str)],
    idle_gap: Duration,
) -> RunReport {
    run_sample(python(), backend, payload, invocations, env, idle_gap).await
}

async fn run_sample(
    sample: Sample,
    backend: &Backend,
    payload: &str,
    invocations: u32,
    env: &[(&str, &str)],
    idle_gap: Duration,
) -> RunReport {
    let exts = extensions_dir();
    let Sample {
        task_root,
        command,
        handler,
    } = sample;
    let receiver = format!("127.0.0.1:{}", free_loopback_port());
    let mut vars: Vec<(String, String)> = vec![
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT".into(), backend.endpoint()),
        ("CONTRAIL_FLUSH".into(), "end".into()),
        ("CONTRAIL_RECEIVER_ENDPOINT".into(), receiver),
        ("CONTRAIL_RECEIVER_GRPC_ENDPOINT".into(), "off".into()),
        ("OTEL_SERVICE_NAME".into(), "sample-resources".into()),
        // `auto` stops reading after a reading over its limit, which this host's large
        // connection table can cost; the tests need every reading.
        ("CONTRAIL_CONNECTIONS".into(), "always".into()),
    ];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let cfg = RunConfig {
        runtime_command: command,
        task_root: Some(task_root),
        extensions_dir: Some(exts.path().to_path_buf()),
        handler: handler.into(),
        function_name: "resources-e2e".into(),
        memory_mb: 1024,
        invocations,
        payload: payload.as_bytes().to_vec(),
        idle_gap,
        timeout: Duration::from_secs(30),
        init_timeout: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(5),
        env: vars,
        ..RunConfig::default()
    };
    let report = contrail_sim::run(cfg).await.expect("emulator run");
    contrail_e2e::assert_ran(&report, invocations as usize);
    report
}

/// The invocation spans of `report`'s requests, once all have arrived.
async fn spans(backend: &Backend, report: &RunReport) -> Vec<Span> {
    let ids: Vec<String> = report
        .invocations
        .iter()
        .map(|i| i.request_id.clone())
        .collect();
    backend
        .sink
        .wait_for(Duration::from_secs(30), |r| {
            let spans = invocation_spans(r);
            ids.iter().all(|id| {
                spans
                    .iter()
                    .any(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(id))
            })
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "invocation spans missing: {e}\n{}",
                backend.sink.render_text()
            )
        });
    let all = invocation_spans(&backend.sink.snapshot());
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(id))
                .cloned()
                .unwrap()
        })
        .collect()
}

fn double(s: &Span, key: &str) -> f64 {
    match attr(&s.attributes, key) {
        Some(any_value::Value::DoubleValue(v)) => *v,
        other => panic!("{key}: {other:?}"),
    }
}

fn int(s: &Span, key: &str) -> i64 {
    attr_int(&s.attributes, key).unwrap_or_else(|| panic!("{key} missing"))
}

fn samples(s: &Span) -> Vec<(u64, i64)> {
    s.events
        .iter()
        .filter(|e| e.name == "aws.lambda.memory.sample")
        .map(|e| {
            (
                e.time_unix_nano,
                attr_int(&e.attributes, "process.memory.usage").unwrap(),
            )
        })
        .collect()
}

/// The invocation spans of two invocations of `sample`, each asking for 400 ms of CPU, then
/// 64 MiB allocated 300 ms into the invocation and held 400 ms, with RSS samples every 100 ms.
async fn burn_and_allocate(sample: Sample) -> Vec<Span> {
    let backend = Backend::start().await;
    let payload = r#"{"burn_cpu_ms": 400, "alloc_mb": 64, "alloc_after_ms": 300, "hold_ms": 400}"#;
    let report = run_sample(
        sample,
        &backend,
        payload,
        2,
        &[("CONTRAIL_RSS_SAMPLE_INTERVAL_MS", "100")],
        Duration::ZERO,
    )
    .await;
    spans(&backend, &report).await
}

/// The function's user and system CPU time on the invocation span, seconds.
fn cpu(span: &Span) -> (f64, f64) {
    (
        double(span, "aws.lambda.function.cpu.user_time"),
        double(span, "aws.lambda.function.cpu.system_time"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn cpu_and_memory_of_the_function_match_what_it_did() {
    for span in burn_and_allocate(python()).await {
        let (user, system) = cpu(&span);
        // The spin is 400 ms of user time by time.process_time; clock ticks are 10 ms, and
        // the allocation, the SDK's export and the runtime client add some.
        assert!(
            (0.38..=0.75).contains(&(user + system)),
            "CPU {user} + {system} s for a 400 ms spin"
        );
        assert!(user >= 0.36, "the spin is user time: {user}");
        let contrail = double(&span, "aws.lambda.contrail.cpu_time");
        assert!(
            contrail > 0.0 && contrail < 0.05,
            "Contrail's own CPU: {contrail} s"
        );
        // 64 MiB touched then freed: this invocation's peak is at least 56 MiB above the
        // end, also for the second invocation (the peak is this invocation's, not the
        // environment's).
        let peak = int(&span, "aws.lambda.function.memory.peak");
        let end = int(&span, "aws.lambda.function.memory.usage");
        assert!(peak - end >= 56 * MIB, "peak {peak} end {end}");
        assert!(peak - end <= 80 * MIB, "peak {peak} end {end}");
        // Samples every 100 ms over ~0.9 s: before the allocation low, during it high.
        let s = samples(&span);
        assert!(s.len() >= 5, "samples: {s:?}");
        let low = s.iter().map(|x| x.1).min().unwrap();
        let high = s.iter().map(|x| x.1).max().unwrap();
        assert!(high - low >= 56 * MIB, "samples: {s:?}");
        assert!(
            s.first().unwrap().1 < high - 56 * MIB,
            "the first sample is before the allocation: {s:?}"
        );
        assert!(
            s.iter().all(|(t, _)| *t >= span.start_time_unix_nano
                && *t <= span.end_time_unix_nano + 50_000_000),
            "samples within the invocation"
        );
        assert!(int(&span, "aws.lambda.function.threads") >= 1);
        assert!(int(&span, "aws.lambda.function.file_descriptors") >= 3);
        assert!(int(&span, "aws.lambda.function.processes") >= 1);
    }
}

/// The Node sample under the real `aws-lambda-ric`, with the same payload: its CPU and its
/// memory, against the RSS before the allocation (the first sample).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn the_node_samples_cpu_and_memory_match_what_it_did() {
    for span in burn_and_allocate(node()).await {
        let (user, system) = cpu(&span);
        // 400 ms by process.cpuUsage (user + system); clock ticks are 10 ms, and filling
        // 64 MiB, the SDK's export and the runtime client add some.
        assert!(
            (0.38..=0.80).contains(&(user + system)),
            "CPU {user} + {system} s for a 400 ms spin"
        );
        assert!(user >= 0.30, "the spin is mostly user time: {user}");
        let s = samples(&span);
        assert!(s.len() >= 5, "samples: {s:?}");
        let before = s.first().unwrap().1;
        let high = s.iter().map(|x| x.1).max().unwrap();
        assert!(high - before >= 56 * MIB, "samples: {s:?}");
        let peak = int(&span, "aws.lambda.function.memory.peak");
        assert!(peak - before >= 56 * MIB, "peak {peak}, before {before}");
        assert!(
            peak >= high,
            "the peak {peak} is at least the highest sample {high}"
        );
        assert!(
            int(&span, "aws.lambda.function.threads") >= 2,
            "Node runs threads"
        );
        assert!(int(&span, "aws.lambda.function.processes") >= 1);
    }
}

/// Short invocations with idle gaps of 1.5 s between them (not frozen): no sample at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn an_idle_environment_is_not_sampled() {
    let backend = Backend::start().await;
    let report = run(
        &backend,
        r#"{"quantity": 1}"#,
        3,
        &[("CONTRAIL_RSS_SAMPLE_INTERVAL_MS", "100")],
        Duration::from_millis(1500),
    )
    .await;
    let spans = spans(&backend, &report).await;
    for span in &spans {
        let length = span.end_time_unix_nano - span.start_time_unix_nano;
        let expected_at_most = length / 100_000_000;
        assert!(
            samples(span).len() as u64 <= expected_at_most,
            "{} samples in a {} ms invocation",
            samples(span).len(),
            length / 1_000_000
        );
    }
    // A timer left running in the 1.5 s gaps would have given ~15 samples each.
    let total: usize = spans.iter().map(|s| samples(s).len()).sum();
    assert!(total <= 3, "samples: {total}");
}

fn connection_events(span: &Span) -> Vec<(i64, i64, i64)> {
    span.events
        .iter()
        .filter(|e| e.name == "aws.lambda.connections")
        .map(|e| {
            (
                attr_int(&e.attributes, "server.port").unwrap(),
                attr_int(&e.attributes, "aws.lambda.connections.established").unwrap(),
                attr_int(&e.attributes, "aws.lambda.connections.opened").unwrap(),
            )
        })
        .collect()
}

/// Three connections opened by each invocation and kept: the first ends with 3 established
/// to the server's port, all opened then; the second with 6, 3 of them opened then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn postgres_connections_are_counted_by_port() {
    let pg = Postgres::start(10);
    let backend = Backend::start().await;
    let dsn = pg.dsn("postgres");
    // Each invocation opens 3 more and keeps them all: 3 after the first, 6 after the second.
    // The server listens on a free port (5432 may be taken on a shared machine).
    let payload = format!(r#"{{"pg_dsn": "{dsn}", "pg_connections": 3}}"#);
    let report = run(&backend, &payload, 2, &[], Duration::ZERO).await;
    let spans = spans(&backend, &report).await;
    let port = i64::from(pg.port);
    let first: Vec<_> = connection_events(&spans[0])
        .into_iter()
        .filter(|c| c.0 == port)
        .collect();
    let second: Vec<_> = connection_events(&spans[1])
        .into_iter()
        .filter(|c| c.0 == port)
        .collect();
    assert_eq!(first, vec![(port, 3, 3)], "{:?}", spans[0].events);
    assert_eq!(second, vec![(port, 6, 3)], "{:?}", spans[1].events);
    assert!(int(&spans[1], "aws.lambda.connections.established") >= 6);
}
