//! The `contrail-sim` binary: help, one-line errors, and a run that writes its JSON report.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::*;

fn stderr_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_documents_every_run_option() {
    let out = sim().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--extensions-dir",
        "--extension",
        "--handler",
        "--invocations",
        "--payload",
        "--payload-file",
        "--interval-ms",
        "--burst",
        "--idle-gap-ms",
        "--no-freeze",
        "--log-format",
        "--memory-mb",
        "--timeout-s",
        "--init-type",
        "--concurrency",
        "--env",
        "--function-name",
        "--report-json",
        "--otlp-jsonl",
        "--no-sink",
        "--quiet",
        "--schema",
        "--cgroups",
        "--no-cpu-limit",
        "--cpu-period-ms",
        "--cpu-burst-ms",
        "--init-cpu",
        "--no-memory-limit",
        "--freezer",
        "--memory-per-vcpu-gib",
    ] {
        assert!(help.contains(opt), "help lacks {opt}");
    }
}

#[test]
fn tune_help_documents_its_options_and_the_prices() {
    let out = sim().args(["tune", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--memory-mb",
        "--invocations",
        "--no-baseline",
        "--price-x86-64-gb-s",
        "--price-arm64-gb-s",
        "--price-per-million-requests",
        "--extensions-dir",
        "--cgroups",
        "0.0000166667",
        "0.0000133334",
    ] {
        assert!(help.contains(opt), "tune help lacks {opt}:\n{help}");
    }
}

#[test]
fn missing_and_non_executable_binaries_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = stderr_of(sim().args([
        "run",
        "--no-sink",
        "--extension",
        "/nonexistent/ext",
        "--",
        "true",
    ]));
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "contrail-sim: extension /nonexistent/ext does not exist"
    );
    let plain = dir.path().join("ext");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = stderr_of(
        sim()
            .args(["run", "--no-sink", "--extension"])
            .arg(&plain)
            .args(["--", "true"]),
    );
    assert!(!ok);
    assert!(
        err.trim()
            .ends_with("is not an executable file (chmod +x?)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
    let (ok, err) = stderr_of(sim().args(["run", "--no-sink", "--", "no-such-runtime-xyz"]));
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "contrail-sim: runtime command \"no-such-runtime-xyz\" not found"
    );
}

#[test]
fn port_in_use_is_reported() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (ok, err) = stderr_of(sim().args([
        "run",
        "--no-sink",
        "--quiet",
        "--listen",
        &addr,
        "--",
        "true",
    ]));
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!("contrail-sim: address {addr} is already in use (choose another with --listen)")
    );
}

#[test]
fn crashing_extension_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let extension = dir.path().join("crasher");
    std::fs::write(&extension, "#!/bin/sh\necho boom >&2\nexit 7\n").unwrap();
    std::fs::set_permissions(&extension, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, err) = stderr_of(
        sim()
            .args(["run", "--no-sink", "--quiet", "--extension"])
            .arg(&extension)
            .args(["--", "true"]),
    );
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "contrail-sim: extension crasher crashed during init (exit code 7): Extension.Crash"
    );
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn runtime_init_error_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.py"),
        "raise RuntimeError('init fails')\ndef handler(e, c):\n    return 1\n",
    )
    .unwrap();
    let (ok, err) = stderr_of(
        sim()
            .args(["run", "--no-sink", "--quiet", "--task-root"])
            .arg(dir.path())
            .args(["--handler", "bad.handler", "--"])
            .args(awslambdaric("bad.handler")),
    );
    assert!(!ok);
    // awslambdaric reports the exception class as the error type.
    assert_eq!(err.trim(), "contrail-sim: runtime init error: RuntimeError");
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn run_writes_a_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = sim_python_run(vec![
        "--no-sink".into(),
        "--invocations".into(),
        "2".into(),
        "--payload".into(),
        "{\"a\":1}".into(),
        "--extension".into(),
        recorder().into(),
        "--report-json".into(),
        report.clone().into(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("extension recorder"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["invocations"].as_array().unwrap().len(), 2);
    assert!(v["extensions"][0]["spawn_to_register_ms"].as_f64().unwrap() > 0.0);
    assert!(v["post_runtime"]["p99"].is_number());
    assert!(v["runtime"]["cpu_ms"].is_number());
}
