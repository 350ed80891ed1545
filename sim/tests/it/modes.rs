//! How environments start (SnapStart, provisioned concurrency, Lambda Managed Instances), the
//! Extensions API error calls, and the OTLP sink of the binary: what a real extension process
//! (the recorder) receives under a real runtime client (PyPI `awslambdaric`).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use contrail_sim::{InitType, RunConfig, RunReport, SimError};
use serde_json::{Value, json};

/// The types of the records, in delivery order.
fn types(tel: &[Value]) -> Vec<&str> {
    tel.iter().map(|r| r["type"].as_str().unwrap()).collect()
}

fn position(types: &[&str], t: &str) -> usize {
    types
        .iter()
        .position(|x| *x == t)
        .unwrap_or_else(|| panic!("no {t} in {types:?}"))
}

/// The function's line for `request_id` (`handling <id>`) was delivered as a function record.
fn assert_handled(tel: &[Value], request_id: &str) {
    let line = format!("handling {request_id}");
    assert!(
        records_of(tel, "function")
            .iter()
            .any(|r| r["record"].as_str().is_some_and(|l| l.contains(&line))),
        "no `{line}`"
    );
}

/// The `platform.report` record of one request.
fn report_of<'a>(tel: &'a [Value], request_id: &str) -> &'a Value {
    tel.iter()
        .find(|r| r["type"] == "platform.report" && r["record"]["requestId"] == request_id)
        .unwrap_or_else(|| panic!("no platform.report for {request_id}"))
}

/// Runs `config` and checks what every way of starting shares: the report and the extension's
/// `AWS_LAMBDA_INITIALIZATION_TYPE` say `init_type`, and every invocation succeeded. Returns
/// the report, the recorder's entries and the telemetry it received.
fn run_started_as(
    init_type: &str,
    config: RunConfig,
    recording: &Recording,
) -> (RunReport, Vec<Value>, Vec<Value>) {
    let report = run(config).unwrap();
    assert_eq!(report.initialization_type, init_type);
    assert!(report.invocations.iter().all(|i| i.status == "success"));
    let entries = recording.entries();
    assert_eq!(
        of_kind(&entries, "registered")[0]["data"]["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"],
        init_type
    );
    let tel = telemetry(&entries);
    (report, entries, tel)
}

/// One `platform.initStart`, `initRuntimeDone` and `initReport` each, of `init_type`.
fn assert_one_init_of_type(tel: &[Value], init_type: &str) {
    let t = types(tel);
    for kind in [
        "platform.initStart",
        "platform.initRuntimeDone",
        "platform.initReport",
    ] {
        let recs = records_of(tel, kind);
        assert_eq!(recs.len(), 1, "one {kind}: {t:?}");
        assert_eq!(recs[0]["record"]["initializationType"], init_type, "{kind}");
    }
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn snap_start_delivers_the_snapshot_init_then_the_restore() {
    let recording = Recording::new();
    let config = RunConfig {
        init_type: InitType::SnapStart,
        invocations: 2,
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13")])
    };
    let (report, _, tel) = run_started_as("snap-start", config, &recording);
    let restore_ms = report.restore_ms.expect("a restore was measured");
    let t = types(&tel);

    // The snapshot's init events, each once, typed snap-start, then the restore of this
    // environment, then the first invocation.
    assert_one_init_of_type(&tel, "snap-start");
    for kind in [
        "platform.restoreStart",
        "platform.restoreRuntimeDone",
        "platform.restoreReport",
    ] {
        assert_eq!(records_of(&tel, kind).len(), 1, "one {kind}: {t:?}");
    }
    assert_eq!(
        records_of(&tel, "platform.initReport")[0]["record"]["status"],
        "success"
    );
    assert!(position(&t, "platform.initStart") < position(&t, "platform.initRuntimeDone"));
    assert!(position(&t, "platform.initRuntimeDone") < position(&t, "platform.initReport"));
    assert!(position(&t, "platform.initReport") < position(&t, "platform.restoreStart"));
    assert!(position(&t, "platform.restoreStart") < position(&t, "platform.restoreRuntimeDone"));
    assert!(position(&t, "platform.restoreRuntimeDone") < position(&t, "platform.restoreReport"));
    assert!(position(&t, "platform.restoreReport") < position(&t, "platform.start"));

    let restore_start = &records_of(&tel, "platform.restoreStart")[0]["record"];
    assert_eq!(restore_start["functionName"], "contrail-sim-function");
    assert!(restore_start["instanceId"].is_string());
    assert_eq!(
        records_of(&tel, "platform.restoreRuntimeDone")[0]["record"]["status"],
        "success"
    );
    let restore_report = &records_of(&tel, "platform.restoreReport")[0]["record"];
    assert_eq!(restore_report["status"], "success");
    let reported = restore_report["metrics"]["durationMs"].as_f64().unwrap();
    assert!(
        (reported - restore_ms).abs() < 0.001,
        "{reported} vs {restore_ms}"
    );

    // The first invocation's report carries the restore, not an init duration; later ones
    // carry neither.
    let first = &report_of(&tel, &report.invocations[0].request_id)["record"]["metrics"];
    let first_restore = first["restoreDurationMs"]
        .as_f64()
        .expect("restoreDurationMs");
    assert!((first_restore - restore_ms).abs() < 0.001, "{first}");
    assert!(first.get("initDurationMs").is_none(), "{first}");
    assert_eq!(report.invocations[0].restore_duration_ms, Some(restore_ms));
    let second = &report_of(&tel, &report.invocations[1].request_id)["record"]["metrics"];
    assert!(second.get("restoreDurationMs").is_none(), "{second}");
    assert!(second.get("initDurationMs").is_none(), "{second}");
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn provisioned_concurrency_reports_no_init_duration_on_the_first_invocation() {
    let recording = Recording::new();
    let config = RunConfig {
        init_type: InitType::ProvisionedConcurrency,
        invocations: 2,
        idle_gap: Duration::from_millis(200),
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13")])
    };
    let (report, _, tel) = run_started_as("provisioned-concurrency", config, &recording);
    assert!(report.init_ms.is_some());
    let t = types(&tel);
    assert_one_init_of_type(&tel, "provisioned-concurrency");
    assert!(position(&t, "platform.initReport") < position(&t, "platform.start"));
    assert!(
        !t.iter().any(|k| k.starts_with("platform.restore")),
        "{t:?}"
    );
    for inv in &report.invocations {
        let m = &report_of(&tel, &inv.request_id)["record"]["metrics"];
        assert!(m.get("initDurationMs").is_none(), "{m}");
        assert!(m["billedDurationMs"].as_u64().unwrap() > 0);
        assert!(inv.init_duration_ms.is_none());
    }
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn managed_instances_allow_shutdown_only_schema_2025_and_overlap_invocations() {
    let recording = Recording::new();
    let config = RunConfig {
        init_type: InitType::LambdaManagedInstances,
        invocations: 6,
        concurrency: 3,
        // Each invocation sleeps long enough for the next ones to start meanwhile.
        payload: br#"{"sleep_s": 0.5}"#.to_vec(),
        ..recording.python_run(&[
            ("RECORDER_TRY_EVENTS", "INVOKE,SHUTDOWN"),
            ("RECORDER_EVENTS", "SHUTDOWN"),
            ("RECORDER_TRY_SCHEMA", "2022-12-13"),
            ("RECORDER_SCHEMA", "2025-01-29"),
        ])
    };
    let (report, entries, tel) = run_started_as("lambda-managed-instances", config, &recording);
    assert_eq!(report.invocations.len(), 6);
    assert_eq!(report.environments, 1);
    let extension = &report.extensions[0];
    assert_eq!(extension.events, ["SHUTDOWN"]);
    assert_eq!(extension.telemetry_schema.as_deref(), Some("2025-01-29"));
    assert!(!extension.crashed);

    // INVOKE cannot be registered; another schema cannot be subscribed.
    assert_eq!(
        of_kind(&entries, "try_register")[0]["data"],
        json!([403, "Extension.InvalidEventType"])
    );
    assert_eq!(
        of_kind(&entries, "try_subscribe")[0]["data"],
        json!([400, "ValidationError"])
    );
    // Only SHUTDOWN reaches the extension.
    let evs = events(&entries);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["eventType"], "SHUTDOWN");

    assert_eq!(
        records_of(&tel, "platform.initStart")[0]["record"]["initializationType"],
        "lambda-managed-instances"
    );
    // As AWS's emulator for Managed Instances: no runtimeDone; each report carries only
    // durationMs, and the response spans instead of extensionOverhead.
    let t = types(&tel);
    assert!(
        records_of(&tel, "platform.runtimeDone").is_empty(),
        "no runtimeDone on Managed Instances: {t:?}"
    );
    for inv in &report.invocations {
        let record = &report_of(&tel, &inv.request_id)["record"];
        let m = &record["metrics"];
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["durationMs"], "{m}");
        let duration = m["durationMs"].as_f64().unwrap();
        assert!(duration > 0.0);
        let spans = record["spans"].as_array().expect("spans");
        let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["responseLatency", "responseDuration"], "{record}");
        let spanned: f64 = spans
            .iter()
            .map(|s| s["durationMs"].as_f64().unwrap())
            .sum();
        assert!(spanned <= duration + 0.01, "{spanned} > {duration}");
        assert_eq!(record["status"], "success");
    }
    // Invocations overlap: another one starts before the first one's report.
    let first_report = position(&t, "platform.report");
    let starts_before = tel[..first_report]
        .iter()
        .filter(|r| r["type"] == "platform.start")
        .count();
    assert!(starts_before >= 2, "no overlap: {t:?}");
    assert!(
        starts_before <= 3,
        "more than the concurrency at once: {t:?}"
    );
    // Every invocation's function output arrives.
    for inv in &report.invocations {
        assert_handled(&tel, &inv.request_id);
    }
}

/// Lambda Managed Instances send no INVOKE to extensions, so nothing holds the environment
/// until telemetry arrives: an extension that exits at SHUTDOWN must still get what the
/// Telemetry API held, as AWS's emulator flushes it before SHUTDOWN. With a one-second
/// buffering timeout and no wait at SHUTDOWN, nothing would reach it otherwise.
#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn managed_instances_deliver_held_telemetry_before_shutdown() {
    let recording = Recording::new();
    let config = RunConfig {
        init_type: InitType::LambdaManagedInstances,
        invocations: 1,
        ..recording.python_run(&[
            ("RECORDER_EVENTS", "SHUTDOWN"),
            ("RECORDER_SCHEMA", "2025-01-29"),
            ("RECORDER_TIMEOUT_MS", "1000"),
            ("RECORDER_SHUTDOWN_SLEEP_MS", "0"),
        ])
    };
    let (report, _, tel) = run_started_as("lambda-managed-instances", config, &recording);
    assert_eq!(
        report.telemetry.records_undelivered,
        0,
        "{}",
        report.render_text()
    );
    assert!(report.telemetry.batches_delivered >= 1);
    let request_id = &report.invocations[0].request_id;
    report_of(&tel, request_id);
    assert_handled(&tel, request_id);
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn extension_init_error_fails_the_init() {
    let recording = Recording::new();
    let config = recording.python_run(&[
        ("RECORDER_SCHEMA", "2022-12-13"),
        ("RECORDER_INIT_ERROR", "Extension.ConfigInvalid"),
        ("RECORDER_ERROR_LINGER_MS", "1000"),
    ]);
    let err = run(config).unwrap_err();
    match &err {
        SimError::ExtensionInitError { name, error_type } => {
            assert_eq!(name, "recorder");
            assert_eq!(error_type, "Extension.ConfigInvalid");
        }
        other => panic!("unexpected error: {other}"),
    }
    let entries = recording.entries();
    let e = &of_kind(&entries, "init_error")[0]["data"];
    assert_eq!(e["reported"], json!([202, null]));
    assert_eq!(e["next_after"][0], 403, "no call succeeds after init/error");
    assert!(
        of_kind(&entries, "event").is_empty(),
        "no event after init/error"
    );
    // The init ends in error with the extension's error type; no invocation starts.
    let tel = telemetry(&entries);
    let t = types(&tel);
    let init_report = &records_of(&tel, "platform.initReport")
        .first()
        .unwrap_or_else(|| panic!("no initReport: {t:?}"))["record"];
    assert_eq!(init_report["status"], "error", "{init_report}");
    assert_eq!(init_report["errorType"], "Extension.ConfigInvalid");
    assert_eq!(init_report["initializationType"], "on-demand");
    assert!(!t.contains(&"platform.start"), "{t:?}");
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn extension_exit_error_fails_the_invocation_and_resets() {
    let recording = Recording::new();
    let config = RunConfig {
        invocations: 2,
        ..recording.python_run(&[("RECORDER_EXIT_ERROR", "Extension.UnrecoverableState")])
    };
    let report = run(config).unwrap();
    // The failed invocation resets the environment: the second runs in a new one.
    assert_eq!(report.environments, 2, "{}", report.render_text());
    assert_eq!(report.invocations[1].environment, 1);
    let inv = &report.invocations[0];
    assert_eq!(inv.status, "failure", "{}", report.render_text());
    assert_eq!(
        inv.error_type.as_deref(),
        Some("Extension.UnrecoverableState")
    );
    let extension = &report.extensions[0];
    assert_eq!(
        extension.error_type.as_deref(),
        Some("Extension.UnrecoverableState")
    );
    assert!(
        !extension.crashed,
        "an exit after exit/error is not a crash"
    );
    let entries = recording.entries();
    let e = &of_kind(&entries, "exit_error")[0]["data"];
    assert_eq!(e["reported"], json!([202, null]));
    assert_eq!(e["next_after"][0], 403, "no call succeeds after exit/error");
}

/// An OTLP/HTTP JSON request with one span.
fn otlp_trace_body() -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "modes-test"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5759e988bd862e3fe1be46a994272793",
            "spanId": "53995c3f42cd8ad8",
            "name": "modes-span",
            "kind": 2,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000100000000"
        }]}]
    }]})
    .to_string()
}

/// POSTs `body` to `http://addr/v1/traces` and returns the status line.
fn post_traces(addr: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn sink_subcommand_receives_an_otlp_request() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("otlp.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = sim()
        .args(["sink", "--listen", &addr, "--jsonl"])
        .arg(&jsonl)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says where it listens once it does.
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(&addr), "{first}");
    let status = post_traces(&addr, &otlp_trace_body());
    assert!(status.contains(" 200"), "{status}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    the_one_traces_line(&jsonl);
}

/// The JSON lines file of a sink that received the request of [`otlp_trace_body`] once.
fn the_one_traces_line(jsonl: &std::path::Path) -> String {
    let text = std::fs::read_to_string(jsonl).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(text.contains("modes-span"), "{text}");
    text
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn run_otlp_jsonl_records_what_the_embedded_sink_received() {
    let py = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("otlp.jsonl");
    // An extension that sends one OTLP request to the endpoint the run gives it.
    let extension = dir.path().join("otlp-sender");
    std::fs::write(
        &extension,
        format!(
            r#"#!{py}
import json, os, urllib.request
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
def call(method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://{{API}}{{path}}", method=method, data=body, headers=headers or {{}})
    with urllib.request.urlopen(req) as r:
        return dict(r.headers), r.read()
h, _ = call("POST", "/2020-01-01/extension/register", b'{{"events":["SHUTDOWN"]}}',
            {{"Lambda-Extension-Name": "otlp-sender"}})
ext_id = h["Lambda-Extension-Identifier"]
req = urllib.request.Request(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces",
                             method="POST", data={body}.encode(),
                             headers={{"Content-Type": "application/json"}})
urllib.request.urlopen(req).read()
call("GET", "/2020-01-01/extension/event/next", None, {{"Lambda-Extension-Identifier": ext_id}})
"#,
            py = py.display(),
            body = serde_json::to_string(&otlp_trace_body()).unwrap(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &extension,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    sim_python_run(vec![
        "--extension".into(),
        extension.into(),
        "--otlp-jsonl".into(),
        jsonl.clone().into(),
    ]);
    let text = the_one_traces_line(&jsonl);
    assert!(text.contains("5759e988bd862e3fe1be46a994272793"), "{text}");
}
