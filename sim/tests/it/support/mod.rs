//! Helpers shared by the emulator's integration tests.
#![allow(dead_code)]

pub mod otlp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use contrail_sim::RunConfig;
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn assets() -> PathBuf {
    root().join("tests/assets")
}

/// The test venv's Python (awslambdaric), or `None` with a message when it is not installed.
pub fn venv_python() -> Option<PathBuf> {
    let p = root().join("../.tools/venv/bin/python");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is missing; run scripts/install-test-deps.sh",
            p.display()
        );
        None
    }
}

pub fn recorder() -> PathBuf {
    assets().join("extensions/recorder")
}

/// A run of the Python handler under awslambdaric with the recorder extension.
pub fn python_run(python: &Path, out: &Path, env: &[(&str, &str)]) -> RunConfig {
    let mut e: Vec<(String, String)> = vec![("RECORDER_OUT".into(), out.display().to_string())];
    e.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    RunConfig {
        runtime_command: vec![
            python.display().to_string(),
            "-m".into(),
            "awslambdaric".into(),
            "app.handler".into(),
        ],
        task_root: Some(assets().join("python")),
        extensions: vec![recorder()],
        handler: "app.handler".into(),
        env: e,
        timeout: Duration::from_secs(10),
        ..RunConfig::default()
    }
}

/// Every JSON line of a file.
pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The recorder's entries of one kind.
pub fn of_kind<'a>(entries: &'a [Value], kind: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["kind"] == kind).collect()
}

/// Every telemetry record the recorder received, in order.
pub fn telemetry(entries: &[Value]) -> Vec<Value> {
    of_kind(entries, "telemetry")
        .into_iter()
        .flat_map(|e| e["data"]["records"].as_array().cloned().unwrap_or_default())
        .collect()
}

pub fn records_of<'a>(tel: &'a [Value], kind: &str) -> Vec<&'a Value> {
    tel.iter().filter(|r| r["type"] == kind).collect()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs with a generous bound so a hang fails instead of blocking the suite.
pub fn run(cfg: RunConfig) -> Result<contrail_sim::RunReport, contrail_sim::SimError> {
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), contrail_sim::run(cfg))
            .await
            .expect("run did not finish within 120 s")
    })
}
