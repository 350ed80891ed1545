//! The sample functions (Rust, Python, Node.js), end to end: each runs under the emulator with
//! the release `contrail` binary attached and exports its own spans, logs and metric with the
//! real OpenTelemetry SDK to Contrail's local receiver; Contrail forwards them, with its own
//! telemetry, through a real collector (rotel) to a sink the test decodes. The Python sample
//! runs twice: as `app.py`, which sets the SDK up in code and exports OTLP/HTTP, and as
//! `auto.py` under `opentelemetry-instrument` with the distro's defaults, which export
//! OTLP/gRPC to `localhost:4317`; with Contrail's OTLP/HTTP receiver off, everything its SDK
//! sent came over gRPC.
//!
//! Per sample, a run of successful invocations and a run with the payload `{"fail": true}` (the
//! emulator sends one payload per run). For every invocation: the function's `handle-order` span
//! shares the trace of Contrail's invocation span and nests under it, with `validate` (and
//! `price`) under it; its log lines carry the invocation's trace and span id and their severity;
//! its `orders` counter arrives per outcome; the failed invocation has ERROR on the function's
//! spans and on Contrail's invocation span, with the runtime's error type; nothing arrives twice.
//!
//! Needs `scripts/install-test-deps.sh` (the Python venv in `.tools/venv`, with the distro, and
//! the Node packages in `sample-functions/node/node_modules`) and the release builds of
//! `contrail` and `sample-rust`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use contrail_e2e::{
    Backend, attr_int, attr_str, body_of, extensions_dir, free_loopback_port, hex,
    invocation_spans, latest_counter, log_records, node_sample, python_sample, root,
    sample_rust_bin, xray_parent, xray_trace_id,
};
use contrail_sim::report::InvocationReport;
use contrail_sim::sink::Received;
use contrail_sim::{RunConfig, RunReport};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// Successful invocations per sample.
const OK_INVOCATIONS: u32 = 4;
/// Failing invocations per sample (payload `{"fail": true}`).
const FAIL_INVOCATIONS: u32 = 1;
/// The payload of the successful run: `price` is `quantity * 250` cents.
const QUANTITY: i64 = 3;

/// One sample function: how to start it.
struct Sample {
    name: &'static str,
    command: Vec<String>,
    task_root: PathBuf,
    handler: &'static str,
    /// Which of Contrail's receivers its SDK exports to.
    transport: Transport,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// OTLP/HTTP to `CONTRAIL_RECEIVER_ENDPOINT`, which the sample reads.
    Http,
    /// OTLP/gRPC with the SDK's default configuration, moved to a free port by
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` only.
    Grpc,
}

fn rust_sample() -> Sample {
    Sample {
        name: "rust",
        command: vec![sample_rust_bin().display().to_string()],
        task_root: contrail_e2e::sample_dir("rust"),
        handler: "bootstrap",
        transport: Transport::Http,
    }
}

fn python() -> Sample {
    let (task_root, command) = python_sample();
    Sample {
        name: "python",
        command,
        task_root,
        handler: "app.handler",
        transport: Transport::Http,
    }
}

/// `auto.py` under `opentelemetry-instrument`, the distro's console script.
fn python_auto() -> Sample {
    let (task_root, python) = python_sample();
    let instrument = root().join(".tools/venv/bin/opentelemetry-instrument");
    assert!(
        instrument.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        instrument.display()
    );
    let mut command = vec![instrument.display().to_string()];
    command.extend(python.into_iter().map(|arg| {
        if arg == "app.handler" {
            "auto.handler".to_owned()
        } else {
            arg
        }
    }));
    Sample {
        name: "python-auto",
        command,
        task_root,
        handler: "auto.handler",
        transport: Transport::Grpc,
    }
}

fn node() -> Sample {
    let (task_root, command) = node_sample();
    Sample {
        name: "node",
        command,
        task_root,
        handler: "index.handler",
        transport: Transport::Http,
    }
}

fn service_name(sample: &Sample) -> String {
    format!("sample-{}", sample.name)
}

/// One emulator run of the sample with Contrail attached, exporting to `backend`.
async fn run(sample: &Sample, backend: &Backend, payload: &str, invocations: u32) -> RunReport {
    let exts = extensions_dir();
    // The function's SDK and Contrail's receiver agree on this address; a port of its own keeps
    // the tests of this file (and others) from fighting over 4318 and 4317.
    let receiver = format!("127.0.0.1:{}", free_loopback_port());
    let receivers: [(String, String); 2] = match sample.transport {
        Transport::Http => [
            ("CONTRAIL_RECEIVER_ENDPOINT".into(), receiver.clone()),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT".into(), "off".into()),
        ],
        Transport::Grpc => [
            ("CONTRAIL_RECEIVER_ENDPOINT".into(), "off".into()),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT".into(), receiver.clone()),
        ],
    };
    let mut env: Vec<(String, String)> = vec![
        // Not OTEL_EXPORTER_OTLP_ENDPOINT: the function's SDK would read that too.
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT".into(), backend.endpoint()),
        ("CONTRAIL_FLUSH".into(), "end".into()),
        ("OTEL_SERVICE_NAME".into(), service_name(sample)),
    ];
    env.extend(receivers);
    if sample.transport == Transport::Grpc {
        // The SDK's own default is http://localhost:4317; the same on a port of its own. No
        // protocol and no exporter is named: the distro picks them. The propagators are the
        // OpenTelemetry Lambda layer's, so that the X-Ray header is the parent.
        env.extend([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://{receiver}"),
            ),
            (
                "OTEL_PROPAGATORS".into(),
                "tracecontext,baggage,xray-lambda".into(),
            ),
        ]);
    }
    let cfg = RunConfig {
        runtime_command: sample.command.clone(),
        task_root: Some(sample.task_root.clone()),
        extensions_dir: Some(exts.path().to_path_buf()),
        handler: sample.handler.into(),
        function_name: format!("functions-e2e-{}", sample.name),
        memory_mb: 256,
        invocations,
        payload: payload.as_bytes().to_vec(),
        timeout: Duration::from_secs(20),
        init_timeout: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(5),
        env,
        ..RunConfig::default()
    };
    let report = contrail_sim::run(cfg)
        .await
        .unwrap_or_else(|e| panic!("{} sample: emulator run failed: {e}", sample.name));
    contrail_e2e::assert_ran(&report, invocations as usize);
    report
}

fn spans_of(received: &Received) -> Vec<Span> {
    received
        .spans()
        .into_iter()
        .map(|e| e.span.clone())
        .collect()
}

/// The function's `handle-order` span of a request (the samples tag it with the request id).
fn handle_order<'a>(spans: &'a [Span], request_id: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| {
            s.name == "handle-order"
                && attr_str(&s.attributes, "faas.invocation_id") == Some(request_id)
        })
        .collect()
}

/// Log lines of a request with this message and `step`.
fn lines<'a>(
    logs: &'a [LogRecord],
    request_id: &str,
    message: &str,
    step: &str,
) -> Vec<&'a LogRecord> {
    logs.iter()
        .filter(|l| {
            body_of(l) == message
                && attr_str(&l.attributes, "faas.invocation_id") == Some(request_id)
                && attr_str(&l.attributes, "step") == Some(step)
        })
        .collect()
}

/// (message, step, severity number) of the lines every successful invocation writes.
const OK_LINES: [(&str, &str, i32); 4] = [
    ("handling order", "start", 9),
    ("order is valid", "validate", 9),
    ("order priced", "price", 9),
    ("order handled", "done", 9),
];
/// The lines every failed invocation writes (the Rust sample also logs `order handled`).
const FAIL_LINES: [(&str, &str, i32); 2] = [
    ("handling order", "start", 9),
    ("order rejected", "validate", 17),
];

/// Everything arrived for these invocations: Contrail's spans, the SDK's spans, every log line
/// and both outcomes of the counter.
fn complete(r: &Received, ok: &[InvocationReport], failed: &[InvocationReport]) -> bool {
    let spans = spans_of(r);
    let logs = log_records(r);
    let inv = invocation_spans(r);
    let all = ok.iter().chain(failed);
    all.clone().all(|i| {
        inv.iter()
            .any(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(i.request_id.as_str()))
            && !handle_order(&spans, &i.request_id).is_empty()
    }) && spans.iter().filter(|s| s.name == "validate").count() >= ok.len() + failed.len()
        && spans.iter().filter(|s| s.name == "price").count() >= ok.len()
        && ok.iter().all(|i| {
            OK_LINES
                .iter()
                .all(|(m, step, _)| !lines(&logs, &i.request_id, m, step).is_empty())
        })
        && failed.iter().all(|i| {
            FAIL_LINES
                .iter()
                .all(|(m, step, _)| !lines(&logs, &i.request_id, m, step).is_empty())
        })
        && latest_counter(r, "orders", Some(("outcome", "ok"))) >= ok.len() as i64
        && latest_counter(r, "orders", Some(("outcome", "failed"))) >= failed.len() as i64
}

fn check(sample: &Sample, ok: &RunReport, failed: &RunReport, received: &Received) {
    let name = sample.name;
    assert!(
        received.duplicate_spans().is_empty(),
        "{name}: duplicate spans: {:?}",
        received.duplicate_spans()
    );
    assert!(
        received.duplicate_logs().is_empty(),
        "{name}: duplicate logs: {:?}",
        received.duplicate_logs()
    );
    let spans = spans_of(received);
    let logs = log_records(received);
    let inv = invocation_spans(received);

    let runs = [(ok, false), (failed, true)];
    for (report, fails) in runs {
        for r in &report.invocations {
            let rid = r.request_id.as_str();
            // Contrail's invocation span: the X-Ray trace, the runtime's parent as its id.
            let found: Vec<&Span> = inv
                .iter()
                .filter(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(rid))
                .collect();
            assert_eq!(found.len(), 1, "{name}: one invocation span for {rid}");
            let span = found[0];
            assert_eq!(
                Some(hex(&span.trace_id)),
                xray_trace_id(&r.trace_header),
                "{name}: invocation span in the X-Ray trace"
            );
            assert_eq!(
                Some(hex(&span.span_id)),
                xray_parent(&r.trace_header),
                "{name}: invocation span id is the X-Ray parent"
            );

            // The function's own spans nest under it.
            let roots = handle_order(&spans, rid);
            assert_eq!(roots.len(), 1, "{name}: one handle-order span for {rid}");
            let root = roots[0];
            assert_eq!(
                hex(&root.trace_id),
                hex(&span.trace_id),
                "{name}: handle-order shares the invocation's trace ({rid})"
            );
            assert_eq!(
                hex(&root.parent_span_id),
                hex(&span.span_id),
                "{name}: handle-order is a child of the invocation span ({rid})"
            );
            let service = received
                .spans()
                .into_iter()
                .find(|e| e.span.span_id == root.span_id)
                .and_then(|e| e.resource)
                .and_then(|res| attr_str(&res.attributes, "service.name").map(str::to_owned));
            assert_eq!(
                service,
                Some(service_name(sample)),
                "{name}: the SDK's resource is kept"
            );
            let children = |child: &str| -> Vec<&Span> {
                spans
                    .iter()
                    .filter(|s| {
                        s.name == child
                            && s.trace_id == root.trace_id
                            && s.parent_span_id == root.span_id
                    })
                    .collect()
            };
            let validate = children("validate");
            assert_eq!(
                validate.len(),
                1,
                "{name}: validate under handle-order ({rid})"
            );
            let price = children("price");
            let code = |s: &Span| s.status.as_ref().map_or(0, |st| st.code);

            if fails {
                assert_eq!(r.status, "error", "{name}: the emulator saw the error");
                assert!(
                    price.is_empty(),
                    "{name}: no price span when validation fails"
                );
                assert_eq!(
                    code(root),
                    StatusCode::Error as i32,
                    "{name}: handle-order is an error ({rid})"
                );
                assert_eq!(
                    code(validate[0]),
                    StatusCode::Error as i32,
                    "{name}: validate is an error ({rid})"
                );
                // Contrail's span carries the error type the runtime client reported (its
                // `Lambda-Runtime-Function-Error-Type`, as the emulator recorded it), which is
                // not necessarily the function's exception name.
                let want = r
                    .error_type
                    .as_deref()
                    .unwrap_or_else(|| panic!("{name}: no error type recorded for {rid}"));
                assert_eq!(
                    code(span),
                    StatusCode::Error as i32,
                    "{name}: invocation span is an error ({rid})"
                );
                assert_eq!(
                    attr_str(&span.attributes, "error.type"),
                    Some(want),
                    "{name}: error.type of the invocation span ({rid})"
                );
                assert_eq!(
                    attr_str(&span.attributes, "aws.lambda.status"),
                    Some("error")
                );
            } else {
                assert_eq!(r.status, "success", "{name}: {}", report.render_text());
                assert_eq!(
                    code(root),
                    StatusCode::Ok as i32,
                    "{name}: handle-order is OK ({rid})"
                );
                assert_ne!(code(validate[0]), StatusCode::Error as i32);
                assert_eq!(price.len(), 1, "{name}: price under handle-order ({rid})");
                assert_eq!(
                    attr_int(&price[0].attributes, "order.total_cents"),
                    Some(QUANTITY * 250),
                    "{name}: the payload reached the function"
                );
                assert_ne!(code(span), StatusCode::Error as i32);
                assert_eq!(attr_str(&span.attributes, "error.type"), None);
            }

            // Its log lines, once each, in the invocation's trace, with their severity.
            let expected: &[(&str, &str, i32)] = if fails { &FAIL_LINES } else { &OK_LINES };
            for (message, step, severity) in expected {
                let found = lines(&logs, rid, message, step);
                assert_eq!(found.len(), 1, "{name}: one `{message}` line for {rid}");
                let l = found[0];
                assert_eq!(
                    hex(&l.trace_id),
                    hex(&span.trace_id),
                    "{name}: trace id of `{message}` ({rid})"
                );
                assert_eq!(
                    hex(&l.span_id),
                    hex(&span.span_id),
                    "{name}: span id of `{message}` ({rid})"
                );
                assert_eq!(
                    l.severity_number, *severity,
                    "{name}: severity of `{message}` ({rid})"
                );
            }
            if fails {
                assert!(
                    lines(&logs, rid, "order priced", "price").is_empty(),
                    "{name}: nothing priced when validation fails"
                );
            }
        }
    }

    // The counter, per outcome, as the SDK counted it (cumulative within each run's process).
    assert_eq!(
        latest_counter(received, "orders", Some(("outcome", "ok"))),
        i64::from(OK_INVOCATIONS),
        "{name}: orders{{outcome=ok}}"
    );
    assert_eq!(
        latest_counter(received, "orders", Some(("outcome", "failed"))),
        i64::from(FAIL_INVOCATIONS),
        "{name}: orders{{outcome=failed}}"
    );
}

async fn sample_end_to_end(sample: Sample) {
    let backend = Backend::start().await;
    let payload = format!("{{\"quantity\": {QUANTITY}}}");
    let ok = run(&sample, &backend, &payload, OK_INVOCATIONS).await;
    let failed = run(&sample, &backend, r#"{"fail": true}"#, FAIL_INVOCATIONS).await;

    backend
        .sink
        .wait_for(Duration::from_secs(30), |r| {
            complete(r, &ok.invocations, &failed.invocations)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: not everything arrived: {e}\n{}\n{}\n{}",
                sample.name,
                ok.render_text(),
                failed.render_text(),
                backend.sink.render_text()
            )
        });
    // Give a late duplicate the chance to show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    check(&sample, &ok, &failed, &backend.sink.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sample_spans_logs_and_metric_nest_under_the_invocation() {
    sample_end_to_end(rust_sample()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sample_spans_logs_and_metric_nest_under_the_invocation() {
    sample_end_to_end(python()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sample_under_opentelemetry_instrument_exports_grpc_and_nests_under_the_invocation()
{
    sample_end_to_end(python_auto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sample_spans_logs_and_metric_nest_under_the_invocation() {
    sample_end_to_end(node()).await;
}
