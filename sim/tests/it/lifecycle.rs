//! The lifecycle under a real runtime client (PyPI `awslambdaric`) and a real extension process.

use std::time::Duration;

use crate::support::*;
use contrail_sim::RunConfig;

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn python_function_with_extension_gets_lambda_lifecycle_and_telemetry() {
    let recording = Recording::new();
    let config = RunConfig {
        invocations: 3,
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13"), ("USER_VAR", "u")])
    };
    let report = run(config).unwrap();
    assert_eq!(report.invocations.len(), 3);
    assert!(report.invocations.iter().all(|i| i.status == "success"));
    let extension = &report.extensions[0];
    assert_eq!(extension.name, "recorder");
    assert!(extension.spawn_to_register_ms.unwrap() <= extension.spawn_to_first_next_ms.unwrap());
    assert_eq!(extension.exit.as_deref(), Some("exit code 0"));
    assert!(!extension.crashed);
    assert!(report.runtime.init_ms.unwrap() > 0.0);
    assert!(report.runtime.peak_rss_kb.unwrap() > 0);
    assert!(extension.peak_rss_kb.unwrap() > 0);
    assert!(report.post_runtime.is_some());

    let entries = recording.entries();
    // Registration answer and the extension's environment.
    let reg = of_kind(&entries, "registered")[0];
    assert_eq!(reg["data"]["body"]["handler"], "app.handler");
    assert_eq!(reg["data"]["body"]["accountId"], "000000000000");
    let extension_env = &reg["data"]["env"];
    for hidden in [
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "_X_AMZN_TRACE_ID",
    ] {
        assert!(
            extension_env.get(hidden).is_none(),
            "extension sees {hidden}"
        );
    }
    assert_eq!(extension_env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(extension_env["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(extension_env["USER_VAR"], "u");
    assert!(
        extension_env["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // INVOKE events carry the trace header of each invocation; SHUTDOWN comes last.
    let evs = events(&entries);
    assert_eq!(evs.len(), 4);
    for (ev, inv) in evs.iter().zip(&report.invocations) {
        assert_eq!(ev["eventType"], "INVOKE");
        assert_eq!(ev["requestId"], inv.request_id.as_str());
        assert_eq!(ev["tracing"]["type"], "X-Amzn-Trace-Id");
        assert_eq!(ev["tracing"]["value"], inv.trace_header.as_str());
        assert!(ev["deadlineMs"].as_i64().unwrap() > 0);
    }
    assert_eq!(evs[3]["eventType"], "SHUTDOWN");
    assert_eq!(evs[3]["shutdownReason"], "spindown");

    // Telemetry: order of the init events and, per invocation, start/runtimeDone/report with
    // one span id and the same header.
    let tel = telemetry(&entries);
    let types: Vec<&str> = tel.iter().map(|r| r["type"].as_str().unwrap()).collect();
    let pos = |t: &str| {
        types
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("no {t} in {types:?}"))
    };
    assert!(pos("platform.initStart") < pos("platform.initRuntimeDone"));
    assert!(pos("platform.initRuntimeDone") < pos("platform.initReport"));
    assert!(pos("platform.initReport") < pos("platform.start"));
    assert!(types.contains(&"platform.extension"));
    assert!(types.contains(&"platform.telemetrySubscription"));
    let init_start = records_of(&tel, "platform.initStart")[0];
    assert_eq!(init_start["record"]["initializationType"], "on-demand");
    assert_eq!(init_start["record"]["instanceMaxMemory"], 128);
    for (n, inv) in report.invocations.iter().enumerate() {
        let find = |t: &str| {
            tel.iter()
                .find(|r| r["type"] == t && r["record"]["requestId"] == inv.request_id.as_str())
                .unwrap_or_else(|| panic!("no {t} for {}", inv.request_id))
        };
        let (s, d, r) = (
            find("platform.start"),
            find("platform.runtimeDone"),
            find("platform.report"),
        );
        for e in [s, d, r] {
            assert_eq!(e["record"]["tracing"]["value"], inv.trace_header.as_str());
            assert_eq!(e["record"]["tracing"]["spanId"], inv.span_id.as_str());
            assert_eq!(e["record"]["tracing"]["type"], "X-Amzn-Trace-Id");
        }
        assert_eq!(d["record"]["status"], "success");
        let spans: Vec<&str> = d["record"]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(spans, ["responseLatency", "responseDuration"]);
        assert!(d["record"]["metrics"]["producedBytes"].as_u64().unwrap() > 0);
        let m = &r["record"]["metrics"];
        assert_eq!(m["memorySizeMB"], 128);
        assert!(m["maxMemoryUsedMB"].as_u64().unwrap() > 0);
        assert!(
            m["billedDurationMs"].as_u64().unwrap()
                >= m["durationMs"].as_f64().unwrap().ceil() as u64
        );
        assert_eq!(
            m.get("initDurationMs").is_some(),
            n == 0,
            "initDurationMs only on the cold start"
        );
        // The report of invocation N is produced after the extension is back in next: after
        // platform.start of N... and before the start of N+1 in delivery order.
        let ri = tel.iter().position(|x| std::ptr::eq(x, r)).unwrap();
        let si = tel.iter().position(|x| std::ptr::eq(x, s)).unwrap();
        assert!(si < ri);
    }
    // Function output arrives as `function` records, the extension's as `extension` records.
    let func: Vec<&str> = records_of(&tel, "function")
        .iter()
        .filter_map(|r| r["record"].as_str())
        .collect();
    assert!(
        func.iter().any(|l| l.contains("app module loaded")),
        "{func:?}"
    );
    assert!(
        func.iter()
            .any(|l| l.contains(&report.invocations[0].request_id))
    );
    let extension_logs: Vec<&str> = records_of(&tel, "extension")
        .iter()
        .filter_map(|r| r["record"].as_str())
        .collect();
    assert!(
        extension_logs.contains(&"recorder ready"),
        "{extension_logs:?}"
    );
    assert!(report.telemetry.records_delivered >= tel.len() as u64);
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn runtime_sees_trace_header_handler_and_task_root() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.jsonl");
    let config = RunConfig {
        runtime_command: vec![
            venv_python().display().to_string(),
            "probe_runtime.py".into(),
        ],
        task_root: Some(assets().join("python")),
        handler: "probe.handler".into(),
        env: vec![("PROBE_OUT".into(), out.display().to_string())],
        invocations: 2,
        payload: br#"{"hello":"world"}"#.to_vec(),
        ..RunConfig::default()
    };
    let report = run(config).unwrap();
    let entries = lines(&out);
    let env = &of_kind(&entries, "env")[0]["data"];
    assert_eq!(env["_HANDLER"], "probe.handler");
    assert_eq!(
        env["LAMBDA_TASK_ROOT"],
        std::fs::canonicalize(assets().join("python"))
            .unwrap()
            .display()
            .to_string()
    );
    assert!(
        env["AWS_LAMBDA_LOG_STREAM_NAME"]
            .as_str()
            .unwrap()
            .contains("[$LATEST]")
    );
    let next = &of_kind(&entries, "next")[0]["data"];
    let h = &next["headers"];
    assert_eq!(next["body"]["hello"], "world");
    assert_eq!(
        h["Lambda-Runtime-Aws-Request-Id"],
        report.invocations[0].request_id.as_str()
    );
    assert_eq!(
        h["Lambda-Runtime-Trace-Id"],
        report.invocations[0].trace_header.as_str()
    );
    assert_eq!(h["Content-Type"], "application/json");
    assert!(
        h["Lambda-Runtime-Deadline-Ms"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert!(
        h["Lambda-Runtime-Invoked-Function-Arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:lambda:us-east-1:")
    );
    assert_eq!(
        of_kind(&entries, "unknown_id")[0]["data"],
        serde_json::json!([400, "InvalidRequestID"])
    );
    assert_eq!(of_kind(&entries, "response")[0]["data"][0], 202);
    assert_eq!(
        of_kind(&entries, "second_response")[0]["data"],
        serde_json::json!([403, "InvalidStateTransition"])
    );
    assert_eq!(
        of_kind(&entries, "late_init_error")[0]["data"],
        serde_json::json!([403, "InvalidStateTransition"])
    );
    assert_eq!(report.invocations[0].status, "success");
    assert_eq!(report.invocations[1].status, "error");
    assert_eq!(
        report.invocations[1].error_type.as_deref(),
        Some("Probe.Error")
    );
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn extensions_and_telemetry_apis_refuse_bad_calls_like_lambda() {
    let recording = Recording::new();
    let report = run(recording.python_run(&[("RECORDER_PROBE", "1")])).unwrap();
    assert_eq!(report.invocations[0].status, "success");
    let entries = recording.entries();
    let probe = &of_kind(&entries, "probe")[0]["data"];
    assert_eq!(
        probe["register_wrong_name"],
        serde_json::json!([403, "Extension.InvalidExtensionName"])
    );
    assert_eq!(
        probe["register_bad_event"],
        serde_json::json!([403, "Extension.InvalidEventType"])
    );
    assert_eq!(
        probe["next_unknown_id"],
        serde_json::json!([403, "Extension.UnknownExtensionIdentifier"])
    );
    assert_eq!(
        probe["subscribe_unknown_id"],
        serde_json::json!([403, "Extension.UnknownExtensionIdentifier"])
    );
    let subs = &of_kind(&entries, "probe_subscriptions")[0]["data"];
    for case in [
        "bad_schema",
        "bad_type",
        "max_items_low",
        "max_bytes_high",
        "timeout_low",
        "reserved_port",
        "remote_host",
    ] {
        assert_eq!(
            subs[case],
            serde_json::json!([400, "ValidationError"]),
            "{case}"
        );
    }
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn a_frozen_extension_timer_does_not_fire() {
    let ticks_in_gap = |freeze: bool| {
        let recording = Recording::new();
        let config = RunConfig {
            invocations: 2,
            idle_gap: Duration::from_millis(2_000),
            freeze,
            ..recording.python_run(&[("RECORDER_TIMER_MS", "50")])
        };
        run(config).unwrap();
        let entries = recording.entries();
        let invokes: Vec<f64> = of_kind(&entries, "event")
            .iter()
            .filter(|e| e["data"]["eventType"] == "INVOKE")
            .map(|e| e["at"].as_f64().unwrap())
            .collect();
        assert_eq!(invokes.len(), 2);
        // Leave half a second after the first INVOKE for the extension to get back to next, and
        // half a second before the second one (a tick that was due fires right at the thaw).
        let (from, to) = (invokes[0] + 0.5, invokes[1] - 0.5);
        of_kind(&entries, "tick")
            .iter()
            .filter(|e| {
                let at = e["at"].as_f64().unwrap();
                at > from && at < to
            })
            .count()
    };
    assert_eq!(ticks_in_gap(true), 0, "timer fired while frozen");
    assert!(
        ticks_in_gap(false) > 0,
        "control run without freeze saw no ticks"
    );
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn shutdown_deadline_kills_an_extension_that_does_not_exit() {
    let recording = Recording::new();
    let config = RunConfig {
        shutdown_timeout: Duration::from_millis(2_000),
        ..recording.python_run(&[("RECORDER_SHUTDOWN_SLEEP_MS", "60000")])
    };
    let started = std::time::Instant::now();
    let report = run(config).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the extension outlived the deadline"
    );
    let extension = &report.extensions[0];
    assert_eq!(extension.exit.as_deref(), Some("killed by SIGKILL"));
    assert!(!extension.crashed);
    let entries = recording.entries();
    let shutdown = of_kind(&entries, "event")
        .into_iter()
        .find(|e| e["data"]["eventType"] == "SHUTDOWN")
        .unwrap();
    let deadline = shutdown["data"]["deadlineMs"].as_f64().unwrap() / 1000.0;
    assert!(deadline > shutdown["at"].as_f64().unwrap());
    assert!(of_kind(&entries, "exiting").is_empty());
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn function_timeout_reports_timeout_and_resets_the_environment() {
    let recording = Recording::new();
    let config = RunConfig {
        invocations: 2,
        timeout: Duration::from_millis(1_000),
        payload: br#"{"sleep_s": 30}"#.to_vec(),
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13")])
    };
    let report = run(config).unwrap();
    assert_eq!(report.environments, 2);
    assert_eq!(report.invocations[0].status, "timeout");
    assert_eq!(report.invocations[1].status, "timeout");
    assert_eq!(report.invocations[1].environment, 1);
    assert!(
        report.invocations[1].init_duration_ms.is_some(),
        "the reset environment starts cold"
    );
    let entries = recording.entries();
    let reasons: Vec<&str> = events(&entries)
        .iter()
        .filter(|e| e["eventType"] == "SHUTDOWN")
        .map(|e| e["shutdownReason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["timeout", "timeout"]);
    let tel = telemetry(&entries);
    let done = records_of(&tel, "platform.runtimeDone");
    assert!(done.iter().any(|r| r["record"]["status"] == "timeout"));
    assert!(records_of(&tel, "platform.initStart").len() >= 2);
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn slow_subscriber_gets_logs_dropped() {
    let recording = Recording::new();
    let config = RunConfig {
        telemetry_queue_limit: 20,
        payload: br#"{"lines": 300}"#.to_vec(),
        ..recording.python_run(&[
            ("RECORDER_SCHEMA", "2022-12-13"),
            ("RECORDER_TELEMETRY_DELAY_MS", "300"),
            ("RECORDER_SHUTDOWN_SLEEP_MS", "1900"),
        ])
    };
    let report = run(config).unwrap();
    assert!(
        report.telemetry.records_dropped > 0,
        "{:?}",
        report.telemetry
    );
    let tel = telemetry(&recording.entries());
    let dropped = records_of(&tel, "platform.logsDropped");
    assert!(!dropped.is_empty());
    let total: u64 = dropped
        .iter()
        .map(|d| d["record"]["droppedRecords"].as_u64().unwrap())
        .sum();
    assert!(total > 0);
    assert!(
        dropped[0]["record"]["reason"]
            .as_str()
            .unwrap()
            .contains("fallen behind")
    );
    assert!(dropped[0]["record"]["droppedBytes"].as_u64().unwrap() > 0);
}

/// A record type can be lost on the way, reported in `platform.logsDropped` in its place, or
/// omitted from the stream without a trace.
#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn record_types_can_be_dropped_or_omitted() {
    let recording = Recording::new();
    let config = RunConfig {
        invocations: 2,
        drop_telemetry: vec!["platform.runtimeDone".into()],
        omit_telemetry: vec!["platform.report".into()],
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13")])
    };
    let report = run(config).unwrap();
    assert_eq!(report.invocations.len(), 2);
    assert_eq!(
        report.telemetry.records_dropped, 2,
        "{:?}",
        report.telemetry
    );
    let tel = telemetry(&recording.entries());
    assert!(records_of(&tel, "platform.runtimeDone").is_empty());
    assert!(records_of(&tel, "platform.report").is_empty());
    assert_eq!(records_of(&tel, "platform.start").len(), 2);
    let dropped = records_of(&tel, "platform.logsDropped");
    let total: u64 = dropped
        .iter()
        .map(|d| d["record"]["droppedRecords"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2, "one per lost runtimeDone: {dropped:?}");
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn failing_subscriber_is_retried_with_backoff() {
    let recording = Recording::new();
    let report = run(recording.python_run(&[
        ("RECORDER_SCHEMA", "2022-12-13"),
        ("RECORDER_TELEMETRY_STATUS", "500"),
    ]))
    .unwrap();
    assert!(report.telemetry.retries > 0, "{:?}", report.telemetry);
    let attempts = of_kind(&recording.entries(), "telemetry").len();
    assert!(attempts >= 2);
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn crashing_extension_fails_the_invocation_with_extension_crash() {
    let recording = Recording::new();
    let config = RunConfig {
        invocations: 2,
        ..recording.python_run(&[("RECORDER_CRASH_AFTER_INVOKES", "1")])
    };
    let report = run(config).unwrap();
    assert_eq!(report.invocations[0].status, "failure");
    assert_eq!(
        report.invocations[0].error_type.as_deref(),
        Some("Extension.Crash")
    );
    assert!(report.extensions[0].crashed);
    assert_eq!(report.extensions[0].exit.as_deref(), Some("exit code 3"));
    assert_eq!(report.environments, 2);
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn old_schema_subscriber_gets_records_without_span_id() {
    let recording = Recording::new();
    run(recording.python_run(&[("RECORDER_SCHEMA", "2022-07-01")])).unwrap();
    let tel = telemetry(&recording.entries());
    let start = records_of(&tel, "platform.start")[0];
    assert!(start["record"]["tracing"].get("spanId").is_none());
    assert_eq!(start["record"]["tracing"]["type"], "X-Amzn-Trace-Id");
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn json_log_format_delivers_objects() {
    let recording = Recording::new();
    let config = RunConfig {
        log_format: contrail_sim::LogFormat::Json,
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13")])
    };
    run(config).unwrap();
    let entries = recording.entries();
    let reg = of_kind(&entries, "registered")[0];
    assert_eq!(reg["data"]["env"]["AWS_LAMBDA_LOG_FORMAT"], "JSON");
    let tel = telemetry(&entries);
    assert!(!records_of(&tel, "function").is_empty());
}
