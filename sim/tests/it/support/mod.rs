//! Helpers shared by the emulator's integration tests: where things are, the outside tools
//! (each one fails the test with what to install when it is missing), runs of the Python
//! handler with the recorder extension and what the recorder wrote, and the binary.
//!
//! Tests that need an outside tool are `#[ignore = "needs scripts/install-test-deps.sh"]`:
//! a plain `cargo test` leaves them out and says how many; `-- --include-ignored` runs them,
//! and then a missing tool is a failure, never a silent pass.

pub mod otlp;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use contrail_sim::{RunConfig, RunReport, SimError};
use serde_json::Value;

/// This package's folder (`sim/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Test files: the Python handler, the recorder extension, the SDK script.
pub fn assets() -> PathBuf {
    root().join("tests/assets")
}

/// An outside tool's path, or a failure that says how to get it.
fn tool(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is missing at {}: run scripts/install-test-deps.sh",
        path.display()
    );
    path
}

/// The test venv's Python, with awslambdaric and the OpenTelemetry SDK.
pub fn venv_python() -> PathBuf {
    tool(
        root().join("../.tools/venv/bin/python"),
        "the test venv's Python",
    )
}

/// Node's `aws-lambda-ric` runtime client (`sample-functions/node/node_modules`).
pub fn node_ric() -> PathBuf {
    tool(
        root().join("../sample-functions/node/node_modules/aws-lambda-ric"),
        "Node's aws-lambda-ric",
    )
}

/// The recorder: an extension (standard-library Python) that writes every event and
/// telemetry record it receives to `$RECORDER_OUT` as JSON lines.
pub fn recorder() -> PathBuf {
    assets().join("extensions/recorder")
}

/// A temporary file for the recorder to write to, and what it wrote.
pub struct Recording {
    dir: tempfile::TempDir,
}

impl Recording {
    pub fn new() -> Recording {
        Recording {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The recorder's output file (`$RECORDER_OUT`).
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("rec.jsonl")
    }

    /// The folder the file is in, for other files of the same test.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A run of the Python handler under awslambdaric with the recorder, whose other
    /// variables are `env`.
    pub fn python_run(&self, env: &[(&str, &str)]) -> RunConfig {
        let mut vars: Vec<(String, String)> =
            vec![("RECORDER_OUT".into(), self.out().display().to_string())];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        RunConfig {
            runtime_command: awslambdaric("app.handler"),
            task_root: Some(assets().join("python")),
            extensions: vec![recorder()],
            handler: "app.handler".into(),
            env: vars,
            timeout: Duration::from_secs(10),
            ..RunConfig::default()
        }
    }

    /// Every entry the recorder wrote.
    pub fn entries(&self) -> Vec<Value> {
        lines(&self.out())
    }
}

/// The venv's Python running `handler` under awslambdaric.
pub fn awslambdaric(handler: &str) -> Vec<String> {
    vec![
        venv_python().display().to_string(),
        "-m".into(),
        "awslambdaric".into(),
        handler.into(),
    ]
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

/// The records of one type.
pub fn records_of<'a>(tel: &'a [Value], kind: &str) -> Vec<&'a Value> {
    tel.iter().filter(|r| r["type"] == kind).collect()
}

/// The `data` of every event the recorder received (INVOKE, SHUTDOWN).
pub fn events(entries: &[Value]) -> Vec<&Value> {
    of_kind(entries, "event")
        .into_iter()
        .map(|e| &e["data"])
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs with a generous bound so a hang fails instead of blocking the suite.
pub fn run(config: RunConfig) -> Result<RunReport, SimError> {
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), contrail_sim::run(config))
            .await
            .expect("run did not finish within 120 s")
    })
}

/// The `contrail-sim` binary.
pub fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_contrail-sim"))
}

/// `contrail-sim run` of the Python handler under awslambdaric, quiet; `options` go before
/// the runtime command.
pub fn sim_python_run(options: Vec<OsString>) -> Output {
    let out = sim()
        .args(["run", "--quiet", "--handler", "app.handler", "--task-root"])
        .arg(assets().join("python"))
        .args(options)
        .arg("--")
        .args(awslambdaric("app.handler"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds (if needed) and locates an example binary of this package.
pub fn example(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "contrail-sim", "--example", name])
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example {name} failed");
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built (cargo test builds examples)",
        p.display()
    );
    p
}

/// A TCP port on loopback that was free a moment ago ([`contrail_sim::ports`]).
pub fn free_port() -> u16 {
    contrail_sim::ports::free_loopback_port().unwrap()
}
