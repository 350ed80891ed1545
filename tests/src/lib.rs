//! Shared helpers for the end-to-end tests: the release binaries, a real collector in front
//! of a decoding sink, sample functions, and OTLP look-ups over what arrived.
//!
//! The binaries are built by `scripts/test.sh` (`cargo build --release`); their paths come from
//! `CONTRAIL_BIN`, `CONTRAIL_SAMPLE_RUST_BIN`, or the default `target/release/` location.
//!
//! Everything here serves tests: a failure to set up is a test failure, so it panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use contrail_sim::sink::Received;
use contrail_sim::sink::rotel::RotelCollector;
use contrail_sim::sink::{self, SinkConfig, SinkHandle};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use std::collections::HashMap;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn release_binary(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release").join(name));
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build --release -p {}` or run scripts/test.sh (or set {var})",
        path.display(),
        name
    );
    path
}

/// The release build of the extension.
pub fn contrail_bin() -> PathBuf {
    release_binary("CONTRAIL_BIN", "contrail")
}

/// The release build of the Rust sample function.
pub fn sample_rust_bin() -> PathBuf {
    release_binary("CONTRAIL_SAMPLE_RUST_BIN", "sample-rust")
}

/// A folder laid out like `/opt/extensions`, holding the extension as `contrail`.
pub fn extensions_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    // A link, not a copy: a file just written by this process can fail to exec with "text file
    // busy" while a parallel test forks (the child briefly holds the write descriptor).
    std::os::unix::fs::symlink(contrail_bin(), dir.path().join("contrail")).expect("link contrail");
    dir
}

/// The Python interpreter of the test virtual environment (`scripts/install-test-deps.sh`).
pub fn venv_python() -> PathBuf {
    let p = root().join(".tools/venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// The command that runs `app.handler` under the real `awslambdaric` runtime client, with the
/// test virtual environment's Python (`scripts/install-test-deps.sh`).
fn awslambdaric_command() -> Vec<String> {
    vec![
        venv_python().display().to_string(),
        "-m".into(),
        "awslambdaric".into(),
        "app.handler".into(),
    ]
}

/// A Python handler module written to a temp dir, and the command that runs it under the
/// real `awslambdaric` runtime client.
pub fn python_function(source: &str) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("app.py"), source).expect("write handler");
    (dir, awslambdaric_command())
}

/// A run of the Python handler `source` under the real `awslambdaric`, with Contrail attached,
/// named `function_name`, with a 10 s timeout and the function variables `env` (plus the local
/// receivers turned off: the tests run in parallel and none needs their fixed ports). Set the rest
/// of the run with struct update; keep the returned folders alive for the run.
pub fn python_run(
    source: &str,
    function_name: &str,
    env: &[(&str, String)],
) -> (contrail_sim::RunConfig, [tempfile::TempDir; 2]) {
    let exts = extensions_dir();
    let (func, cmd) = python_function(source);
    let mut vars = vec![
        ("CONTRAIL_RECEIVER_ENDPOINT".to_owned(), "off".to_owned()),
        (
            "CONTRAIL_RECEIVER_GRPC_ENDPOINT".to_owned(),
            "off".to_owned(),
        ),
    ];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let config = contrail_sim::RunConfig {
        runtime_command: cmd,
        task_root: Some(func.path().to_path_buf()),
        extensions_dir: Some(exts.path().to_path_buf()),
        handler: "app.handler".into(),
        function_name: function_name.into(),
        timeout: std::time::Duration::from_secs(10),
        env: vars,
        ..contrail_sim::RunConfig::default()
    };
    (config, [exts, func])
}

/// Asserts that the run answered `invocations` invocations and that no extension crashed,
/// printing the run's report when not.
pub fn assert_ran(report: &contrail_sim::RunReport, invocations: usize) {
    assert_eq!(
        report.invocations.len(),
        invocations,
        "{}",
        report.render_text()
    );
    for ext in &report.extensions {
        assert!(!ext.crashed, "contrail crashed: {ext:?}");
    }
}

/// A real OTLP collector (rotel) on loopback, forwarding to a sink the test decodes.
pub struct Backend {
    pub sink: SinkHandle,
    pub collector: RotelCollector,
}

impl Backend {
    pub async fn start() -> Backend {
        let sink = sink::start(SinkConfig::default())
            .await
            .expect("start sink");
        let collector = RotelCollector::start(&sink.endpoint())
            .await
            .expect("start rotel collector");
        Backend { sink, collector }
    }

    /// What the extension should export to.
    pub fn endpoint(&self) -> String {
        self.collector.http_endpoint()
    }
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace id an X-Ray header names (`Root=1-5759e988-bd862e3f…` → `5759e988bd862e3f…`).
pub fn xray_trace_id(header: &str) -> Option<String> {
    let root = header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Root="))?;
    let mut it = root.split('-');
    let (_v, time, rest) = (it.next()?, it.next()?, it.next()?);
    Some(format!("{time}{rest}").to_ascii_lowercase())
}

/// The `Parent` span id an X-Ray header names.
pub fn xray_parent(header: &str) -> Option<String> {
    header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Parent="))
        .map(str::to_ascii_lowercase)
}

/// An attribute's value, if present.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// An attribute's value as a string (string values only).
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

/// An attribute's value as an integer.
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// An attribute's value as a bool.
pub fn attr_bool(attrs: &[KeyValue], key: &str) -> Option<bool> {
    match attr(attrs, key)? {
        any_value::Value::BoolValue(b) => Some(*b),
        _ => None,
    }
}

/// A log body as text.
pub fn body_text(body: Option<&AnyValue>) -> String {
    match body.and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A log record's body as text.
pub fn body_of(l: &LogRecord) -> String {
    body_text(l.body.as_ref())
}

pub fn invocation_spans(r: &Received) -> Vec<Span> {
    r.spans()
        .into_iter()
        .map(|e| e.span)
        .filter(|s| {
            s.kind == SpanKind::Server as i32
                && attr_str(&s.attributes, "faas.invocation_id").is_some()
        })
        .cloned()
        .collect()
}

pub fn log_records(r: &Received) -> Vec<LogRecord> {
    r.log_records()
        .into_iter()
        .map(|e| e.record.clone())
        .collect()
}

/// The largest value a cumulative counter reached, over the points matching `attr`.
pub fn latest_counter(received: &Received, name: &str, attr: Option<(&str, &str)>) -> i64 {
    received
        .metrics_named(name)
        .into_iter()
        .filter_map(|m| match &m.metric.data {
            Some(metric::Data::Sum(s)) => Some(s.data_points.clone()),
            _ => None,
        })
        .flatten()
        .filter(|p| attr.is_none_or(|(k, v)| attr_str(&p.attributes, k) == Some(v)))
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i,
            Some(number_data_point::Value::AsDouble(d)) => d as i64,
            None => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Count and sum over every data point of a histogram metric, whatever the temporality: with
/// cumulative temporality the latest point per attribute set holds the totals.
pub fn histogram_totals(received: &Received, name: &str) -> (u64, f64) {
    let mut latest: HashMap<String, (u64, u64, f64)> = HashMap::new();
    let mut delta = (0u64, 0f64);
    for m in received.metrics_named(name) {
        match &m.metric.data {
            Some(metric::Data::Histogram(h)) => {
                for p in &h.data_points {
                    if h.aggregation_temporality == 2 {
                        let key = format!("{:?}", p.attributes);
                        let e = latest.entry(key).or_insert((0, 0, 0.0));
                        if p.time_unix_nano >= e.0 {
                            *e = (p.time_unix_nano, p.count, p.sum.unwrap_or(0.0));
                        }
                    } else {
                        delta.0 += p.count;
                        delta.1 += p.sum.unwrap_or(0.0);
                    }
                }
            }
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }
    let cum = latest
        .values()
        .fold((0u64, 0f64), |acc, v| (acc.0 + v.1, acc.1 + v.2));
    (cum.0 + delta.0, cum.1 + delta.1)
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a listener a child process opens,
/// such as Contrail's receiver (`CONTRAIL_RECEIVER_ENDPOINT`), so tests running side by side do
/// not all want 4318 ([`contrail_sim::ports::free_loopback_port`]).
pub fn free_loopback_port() -> u16 {
    contrail_sim::ports::free_loopback_port().expect("a free loopback port")
}

/// A sample function's folder, `sample-functions/<name>`.
pub fn sample_dir(name: &str) -> PathBuf {
    root().join("sample-functions").join(name)
}

/// The Node.js interpreter: `CONTRAIL_NODE`, else `node` on `PATH`.
pub fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONTRAIL_NODE") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("node"))
        .find(|p| p.is_file())
        .expect("node not found on PATH (or set CONTRAIL_NODE): install Node.js, then run scripts/install-test-deps.sh")
}

/// The Node.js sample's folder, with its packages installed (`npm install` by
/// `scripts/install-test-deps.sh`), and the command that runs it under the real
/// `aws-lambda-ric` runtime client (which reads `_HANDLER` and `LAMBDA_TASK_ROOT`).
pub fn node_sample() -> (PathBuf, Vec<String>) {
    let dir = sample_dir("node");
    let ric = dir.join("node_modules/aws-lambda-ric/index.mjs");
    assert!(
        ric.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        ric.display()
    );
    let cmd = vec![node_bin().display().to_string(), ric.display().to_string()];
    (dir, cmd)
}

/// The Python sample's folder and the command that runs it under the real `awslambdaric`
/// runtime client, with the test virtual environment (`scripts/install-test-deps.sh`).
pub fn python_sample() -> (PathBuf, Vec<String>) {
    let dir = sample_dir("python");
    (dir, awslambdaric_command())
}

/// A throwaway PostgreSQL cluster (Debian's `postgresql`: `initdb`, `pg_ctl`, `psql`) on a free
/// loopback port with `max_connections` as given, trust authentication and the superuser
/// `postgres`, stopped on drop. PostgreSQL refuses to run as root: then it runs as the
/// `postgres` user the package creates, in a folder it owns.
pub struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    /// The port it listens on, on 127.0.0.1 (5432 may be taken on a shared machine).
    pub port: u16,
    user: Option<String>,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("Debian's postgresql is not installed (/usr/lib/postgresql/*/bin/initdb): run scripts/install-test-deps.sh")
    })
}

fn as_user(user: &Option<String>, program: &Path, args: &[&str]) -> std::process::Command {
    let mut c = match user {
        Some(u) => {
            let mut c = std::process::Command::new("runuser");
            c.arg("-u").arg(u).arg("--").arg(program);
            c
        }
        None => std::process::Command::new(program),
    };
    c.args(args);
    c
}

impl Postgres {
    /// A new cluster accepting `max_connections` connections (superusers' reserved slots
    /// included: `superuser_reserved_connections`, 3 by default, are kept for them).
    pub fn start(max_connections: u32) -> Postgres {
        let bin = pg_bin();
        let data = tempfile::tempdir().unwrap();
        let root = std::env::var("USER").as_deref() == Ok("root")
            || std::process::Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout == b"0\n");
        let user = root.then(|| "postgres".to_owned());
        if root {
            let ok = std::process::Command::new("chown")
                .arg("postgres")
                .arg(data.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown postgres");
        }
        let dir = data.path().join("db");
        let dir_s = dir.display().to_string();
        let ok = as_user(
            &user,
            &bin.join("initdb"),
            &["-D", &dir_s, "-A", "trust", "-U", "postgres"],
        )
        .output()
        .unwrap();
        assert!(
            ok.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let port = free_loopback_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c max_connections={max_connections} -k {}",
            data.path().display()
        );
        let log = data.path().join("log").display().to_string();
        let ok = as_user(
            &user,
            &bin.join("pg_ctl"),
            &["-D", &dir_s, "-o", &opts, "-l", &log, "-w", "start"],
        )
        .output()
        .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Postgres {
            bin,
            data,
            port,
            user,
        }
    }

    /// The `psql` command that runs `sql` as the superuser and prints the result unaligned,
    /// without headers.
    pub fn sql_command(&self, sql: &str) -> std::process::Command {
        let mut c = std::process::Command::new(self.bin.join("psql"));
        let port = self.port.to_string();
        c.args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql]);
        c
    }

    /// Runs `sql` as the superuser; returns what it printed, trimmed.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.sql_command(sql).output().expect("run psql");
        assert!(
            out.status.success(),
            "psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A libpq connection string for `user` on the database `postgres`.
    pub fn dsn(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let dir = self.data.path().join("db").display().to_string();
        let _ = as_user(
            &self.user,
            &self.bin.join("pg_ctl"),
            &["-D", &dir, "-m", "immediate", "stop"],
        )
        .output();
    }
}
