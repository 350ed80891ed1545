//! Whole-process benchmarks of the release extension under the emulator, written to
//! `docs/BENCHMARKS.md` with each figure next to its budget.
//!
//! ```text
//! bench [--out FILE] [--rounds N] [--command TEXT] [--only SCENARIO]...
//!                                                    measure and write the report
//! bench runtime                                      a minimal Lambda runtime (used by the above)
//! ```
//!
//! Every comparison runs the same function with Contrail (A) and without any extension (B),
//! interleaved A, B, A, B… so that machine noise falls on both sides. Figures are medians over
//! the rounds (nearest rank). The criterion figures of `cargo bench -p contrail --bench
//! pipeline` are read from `target/criterion` when present.
//!
//! `bench runtime` is a Lambda runtime written with the standard library alone: it answers every
//! invocation with `{}` after printing `BENCH_LINES` log lines (default 0). It starts in about a
//! millisecond, so that the extension's own cost is not hidden behind the function's.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use contrail_sim::report::{ExtensionReport, Summary};
use contrail_sim::sink::{self, SinkConfig, SinkHandle};
use contrail_sim::{RunConfig, RunReport};

/// Budgets the figures are held to.
const SPAWN_TO_REGISTER_MS: f64 = 3.0;
const SPAWN_TO_FIRST_NEXT_MS: f64 = 7.0;
const INIT_RATIO: f64 = 1.10;
const STEADY_POST_RUNTIME_MS: f64 = 1.0;
const TELEMETRY_BUFFERING_MS: f64 = 25.0;
const END_MODE_MARGIN_MS: f64 = 5.0;
const PEAK_RSS_KB: u64 = 6 * 1024;
const CPU_MS: u64 = 80;
const BINARY_BYTES: u64 = 4 * 1024 * 1024;
const ZIP_BYTES: u64 = 2 * 1024 * 1024;
const RECORDS_PER_S: f64 = 100_000.0;

const STEADY_INVOCATIONS: u32 = 50;
const END_INVOCATIONS: u32 = 20;
const HEAVY_INVOCATIONS: u32 = 20;
const HEAVY_LINES: u32 = 2_000;
const STEADY_LINES: u32 = 10;
const SDK_SPANS: u32 = 100;
const SDK_EXPORTS: u32 = 20;
/// An https endpoint nothing listens on: no name lookup, and nothing is sent before the first
/// invocation anyway.
const UNREACHABLE_HTTPS: &str = "https://127.0.0.1:9";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("runtime") {
        runtime_main()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")
            .and_then(|rt| rt.block_on(bench_main(&args)))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The minimal runtime.

fn runtime_main() -> Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API")?;
    let addr = resolve(&api)?;
    let lines: u32 = match std::env::var("BENCH_LINES") {
        Ok(v) => v.trim().parse().context("BENCH_LINES")?,
        Err(_) => 0,
    };
    loop {
        let next = http(addr, "GET", "/2018-06-01/runtime/invocation/next", "", &[])?;
        let request_id = next
            .header("lambda-runtime-aws-request-id")
            .ok_or_else(|| anyhow!("next: no Lambda-Runtime-Aws-Request-Id"))?
            .to_owned();
        if lines > 0 {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for i in 0..lines {
                writeln!(
                    out,
                    "INFO\tprocessed order {i} for customer c-{} in {} ms (items={})",
                    i * 7 % 1_000,
                    i % 40,
                    i % 9 + 1
                )?;
            }
            out.flush()?;
        }
        http(
            addr,
            "POST",
            &format!("/2018-06-01/runtime/invocation/{request_id}/response"),
            "application/json",
            b"{}",
        )?;
    }
}

fn resolve(host_port: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .with_context(|| format!("resolve {host_port}"))?
        .next()
        .ok_or_else(|| anyhow!("{host_port}: no address"))
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a new connection; reads the whole response.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok(Response { status, headers })
}

// ---------------------------------------------------------------------------------------------
// The benchmarks.

struct Options {
    root: PathBuf,
    out: PathBuf,
    rounds: usize,
    command: String,
    /// Run only these scenarios (`--only`, repeatable); all when empty.
    only: Vec<String>,
}

/// The whole-process scenarios, in the order they run.
const SCENARIOS: [&str; 5] = ["startup", "steady", "end", "heavy", "sdk"];

impl Options {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn parse_args(args: &[String]) -> Result<Options> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("no workspace root"))?;
    let mut options = Options {
        out: root.join("docs/BENCHMARKS.md"),
        root,
        rounds: 10,
        command: "scripts/bench.sh".to_owned(),
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => options.out = PathBuf::from(value()?),
            "--root" => options.root = PathBuf::from(value()?),
            "--rounds" => {
                options.rounds = value()?.parse().context("--rounds")?;
                if options.rounds == 0 {
                    bail!("--rounds must be at least 1");
                }
            }
            "--command" => options.command = value()?.clone(),
            "--only" => {
                let scenario = value()?.clone();
                if !SCENARIOS.contains(&scenario.as_str()) {
                    bail!("--only: unknown scenario {scenario} (one of {SCENARIOS:?})");
                }
                options.only.push(scenario);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

/// A function the emulator can run.
#[derive(Clone)]
struct Function {
    label: String,
    command: Vec<String>,
    task_root: Option<PathBuf>,
    env: Vec<(String, String)>,
}

struct Bench {
    /// `target/release/contrail` (its size is reported).
    contrail: PathBuf,
    /// Which binary the whole-process runs use: the layer's static musl build when it is
    /// present and not older than the release build (it is what users run), else the release
    /// build. Described for the report.
    runs_label: String,
    /// A folder laid out like `/opt/extensions`, holding the extension as `contrail`.
    extensions: tempfile::TempDir,
    /// Kept alive while the Python functions may run.
    _python_dirs: Vec<tempfile::TempDir>,
    builtin: Function,
    python: Option<Function>,
    python_sdk: Option<Function>,
    sample_rust: Option<Function>,
}

/// The layer's build of the extension for this machine's architecture, when it exists and is
/// at least as new as `release` (an older one would measure stale code).
fn layer_binary(root: &Path, release: &Path) -> Option<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        _ => return None,
    };
    let layer = root.join(format!("target/lambda-{arch}/extensions/contrail"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&layer), modified(release)) {
        (Some(layer_time), Some(release_time)) if layer_time >= release_time => Some(layer),
        (Some(_), None) => Some(layer),
        _ => None,
    }
}

/// A port nothing listens on right now, for Contrail's local receiver (the default 4318 may be
/// taken on a shared machine).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Bench {
    fn new(root: &Path) -> Result<Bench> {
        let contrail = root.join("target/release/contrail");
        if !contrail.is_file() {
            bail!(
                "{} not found: cargo build --release -p contrail",
                contrail.display()
            );
        }
        let (runs, runs_label) = match layer_binary(root, &contrail) {
            Some(layer) => {
                let label = format!(
                    "the layer's static musl build `{}` (`layer/build.sh`, what users run)",
                    layer.strip_prefix(root).unwrap_or(&layer).display()
                );
                (layer, label)
            }
            None => (
                contrail.clone(),
                "the release `target/release/contrail` (no current layer build in \
                 `target/lambda-*`: run `layer/build.sh` to measure the shipped binary)"
                    .to_owned(),
            ),
        };
        let extensions = tempfile::tempdir()?;
        std::fs::copy(&runs, extensions.path().join("contrail")).context("copy the extension")?;
        let me = std::env::current_exe().context("current_exe")?;
        let builtin = Function {
            label: "minimal runtime (std only)".to_owned(),
            command: vec![me.display().to_string(), "runtime".to_owned()],
            task_root: None,
            env: Vec::new(),
        };
        let mut python_dirs = Vec::new();
        let venv = root.join(".tools/venv/bin/python");
        let has_ric = venv.is_file()
            && std::process::Command::new(&venv)
                .args(["-c", "import awslambdaric, opentelemetry.sdk"])
                .status()
                .is_ok_and(|s| s.success());
        let (python, python_sdk) = if has_ric {
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("app.py"), PYTHON_HANDLER)?;
            std::fs::write(dir.path().join("sdk.py"), PYTHON_SDK_HANDLER)?;
            let command = |handler: &str| {
                vec![
                    venv.display().to_string(),
                    "-m".to_owned(),
                    "awslambdaric".to_owned(),
                    handler.to_owned(),
                ]
            };
            let python = Function {
                label: "Python 3 under awslambdaric".to_owned(),
                command: command("app.handler"),
                task_root: Some(dir.path().to_path_buf()),
                env: Vec::new(),
            };
            let sdk = Function {
                label: "Python OpenTelemetry SDK under awslambdaric".to_owned(),
                command: command("sdk.handler"),
                task_root: Some(dir.path().to_path_buf()),
                env: Vec::new(),
            };
            python_dirs.push(dir);
            (Some(python), Some(sdk))
        } else {
            (None, None)
        };
        let sample = root.join("target/release/sample-rust");
        let sample_rust = sample.is_file().then(|| Function {
            label: "Rust sample function (lambda_runtime)".to_owned(),
            command: vec![sample.display().to_string()],
            task_root: None,
            env: Vec::new(),
        });
        Ok(Bench {
            contrail,
            runs_label,
            extensions,
            _python_dirs: python_dirs,
            builtin,
            python,
            python_sdk,
            sample_rust,
        })
    }

    /// One run of `function`, with Contrail configured by `contrail_env` or without any
    /// extension. Fails unless every invocation succeeded and Contrail ran to the end.
    async fn run(
        &self,
        function: &Function,
        contrail_env: Option<&[(String, String)]>,
        invocations: u32,
        extra_env: &[(String, String)],
    ) -> Result<RunReport> {
        let mut env = function.env.clone();
        env.extend_from_slice(extra_env);
        let with_contrail = contrail_env.is_some();
        if let Some(vars) = contrail_env {
            env.extend_from_slice(vars);
            env.push((
                "CONTRAIL_RECEIVER_ENDPOINT".to_owned(),
                format!("127.0.0.1:{}", free_port()?),
            ));
        }
        let config = RunConfig {
            runtime_command: function.command.clone(),
            task_root: function.task_root.clone(),
            extensions_dir: with_contrail.then(|| self.extensions.path().to_path_buf()),
            function_name: "bench".to_owned(),
            memory_mb: 512,
            timeout: Duration::from_secs(30),
            invocations,
            env,
            ..RunConfig::default()
        };
        let report = contrail_sim::run(config)
            .await
            .with_context(|| format!("run {}", function.label))?;
        if report.invocations.len() != invocations as usize {
            bail!(
                "{}: {} of {invocations} invocations ran",
                function.label,
                report.invocations.len()
            );
        }
        if let Some(bad) = report.invocations.iter().find(|i| i.status != "success") {
            bail!(
                "{}: invocation {} ended with {} {:?}",
                function.label,
                bad.request_id,
                bad.status,
                bad.error_type
            );
        }
        if with_contrail {
            let ext = contrail_report(&report)?;
            if ext.crashed {
                bail!("contrail crashed: {:?}", ext.exit);
            }
        }
        Ok(report)
    }
}

fn contrail_report(report: &RunReport) -> Result<&ExtensionReport> {
    report
        .extensions
        .iter()
        .find(|e| e.name == "contrail")
        .ok_or_else(|| anyhow!("no report for the contrail extension"))
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn median(values: &[f64]) -> Result<f64> {
    Summary::of(values)
        .map(|s| s.median)
        .ok_or_else(|| anyhow!("no values"))
}

const PYTHON_HANDLER: &str = "def handler(event, context):\n    return {}\n";

/// Times the export of one 100-span batch to Contrail's receiver, `BENCH_EXPORTS` times, and
/// writes the milliseconds to `BENCH_OUT`, one per line.
const PYTHON_SDK_HANDLER: &str = r#"import os, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("bench")
for i in range(int(os.environ["BENCH_SPANS"])):
    with tracer.start_as_current_span("SELECT orders %d" % i) as span:
        span.set_attribute("db.system.name", "postgresql")
        span.set_attribute("db.query.text", "SELECT * FROM orders WHERE id = $1")
        span.set_attribute("db.response.returned_rows", i)
SPANS = memory.get_finished_spans()
EXPORTER = OTLPSpanExporter(endpoint="http://%s/v1/traces" % os.environ["CONTRAIL_RECEIVER_ENDPOINT"])

def handler(event, context):
    times = []
    for _ in range(int(os.environ["BENCH_EXPORTS"])):
        start = time.perf_counter()
        result = EXPORTER.export(SPANS)
        times.append((time.perf_counter() - start) * 1000.0)
        if result.name != "SUCCESS":
            raise RuntimeError("export failed: %s" % result)
    with open(os.environ["BENCH_OUT"], "a") as f:
        for t in times:
            f.write("%f\n" % t)
    return {}
"#;

/// One figure of the report, with its budget.
struct Row {
    what: String,
    figure: String,
    budget: String,
    met: Option<bool>,
}

impl Row {
    fn new(
        what: impl Into<String>,
        figure: impl Into<String>,
        budget: impl Into<String>,
        met: Option<bool>,
    ) -> Row {
        Row {
            what: what.into(),
            figure: figure.into(),
            budget: budget.into(),
            met,
        }
    }
}

struct Results {
    rows: Vec<Row>,
    notes: Vec<String>,
}

async fn bench_main(args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    let bench = Bench::new(&options.root)?;
    let started = Instant::now();
    let mut results = Results {
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let sink = sink::start(SinkConfig::default())
        .await
        .context("start the sink")?;

    if options.runs("startup") {
        startup(&bench, &options, &mut results).await?;
    }
    if options.runs("steady") {
        steady(&bench, &options, &sink, &mut results).await?;
    }
    if options.runs("end") {
        end_mode(&bench, &options, &sink, &mut results).await?;
    }
    if options.runs("heavy") {
        heavy(&bench, &options, &mut results).await?;
    }
    match &bench.python_sdk {
        _ if !options.runs("sdk") => {}
        Some(sdk) => sdk_export(&bench, sdk, &mut results).await?,
        None => results.notes.push(
            "SDK → receiver export time: not measured (no awslambdaric and OpenTelemetry SDK in \
             .tools/venv; run scripts/install-test-deps.sh)."
                .to_owned(),
        ),
    }
    sizes(&bench, &options, &mut results)?;
    let criterion = criterion_rows(&options.root, &mut results)?;
    sink.shutdown().await;

    let markdown = render(&options, &bench, &results, &criterion, started.elapsed())?;
    std::fs::write(&options.out, markdown)
        .with_context(|| format!("write {}", options.out.display()))?;
    eprintln!("bench: wrote {}", options.out.display());
    Ok(())
}

fn https_unreachable() -> Vec<(String, String)> {
    vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", UNREACHABLE_HTTPS)])
}

/// Spawn → register, spawn → first next, and the init phase with and without Contrail.
async fn startup(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let contrail_env = https_unreachable();
    let mut functions = vec![bench.builtin.clone()];
    functions.extend(bench.sample_rust.clone());
    functions.extend(bench.python.clone());
    let mut register = Vec::new();
    let mut first_next = Vec::new();
    let mut idle_rss = Vec::new();
    for function in &functions {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for round in 0..options.rounds {
            eprintln!(
                "bench: start-up, {} ({}/{})",
                function.label,
                round + 1,
                options.rounds
            );
            let a = bench.run(function, Some(&contrail_env), 1, &[]).await?;
            let b = bench.run(function, None, 1, &[]).await?;
            let ext = contrail_report(&a)?;
            register.extend(ext.spawn_to_register_ms);
            idle_rss.extend(ext.peak_rss_kb.map(|v| v as f64));
            first_next.extend(ext.spawn_to_first_next_ms);
            with.extend(a.init_ms);
            without.extend(b.init_ms);
        }
        let (w, wo) = (median(&with)?, median(&without)?);
        let ratio = w / wo;
        results.rows.push(Row::new(
            format!("init phase with Contrail ÷ without, {}", function.label),
            format!("{ratio:.2} ({w:.1} ms ÷ {wo:.1} ms)"),
            format!("≤ {INIT_RATIO:.2}"),
            Some(ratio <= INIT_RATIO),
        ));
    }
    let (r, n) = (median(&register)?, median(&first_next)?);
    results.rows.insert(
        0,
        Row::new(
            "spawn → register",
            format!("{r:.2} ms"),
            format!("≤ {SPAWN_TO_REGISTER_MS} ms"),
            Some(r <= SPAWN_TO_REGISTER_MS),
        ),
    );
    results.rows.insert(
        1,
        Row::new(
            "spawn → first `next`",
            format!("{n:.2} ms"),
            format!("≤ {SPAWN_TO_FIRST_NEXT_MS} ms"),
            Some(n <= SPAWN_TO_FIRST_NEXT_MS),
        ),
    );
    let idle = median(&idle_rss)?;
    results.rows.push(Row::new(
        "peak RSS of Contrail, start-up runs (one invocation, nothing exported)",
        format!("{:.2} MB", idle / 1024.0),
        format!("≤ {} MB", PEAK_RSS_KB / 1024),
        Some(idle <= PEAK_RSS_KB as f64),
    ));
    results.notes.push(format!(
        "Start-up: {} rounds per function, each a run with Contrail and a run without any \
         extension, one invocation each; Contrail exports to `{UNREACHABLE_HTTPS}`. Spawn \
         figures are medians over all {} runs with Contrail.",
        options.rounds,
        register.len()
    ));
    Ok(())
}

fn post_runtime_values(reports: &[RunReport]) -> Vec<f64> {
    reports
        .iter()
        .flat_map(|r| r.invocations.iter().map(|i| i.post_runtime_ms))
        .collect()
}

/// Post-runtime time per invocation under back-to-back load, default (adaptive) flushing.
async fn steady(
    bench: &Bench,
    options: &Options,
    sink: &SinkHandle,
    results: &mut Results,
) -> Result<()> {
    let rounds = options.rounds.div_ceil(3);
    let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
    let lines = vec![("BENCH_LINES".to_owned(), STEADY_LINES.to_string())];
    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: steady load ({}/{rounds})", round + 1);
        with.push(
            bench
                .run(
                    &bench.builtin,
                    Some(&contrail_env),
                    STEADY_INVOCATIONS,
                    &lines,
                )
                .await?,
        );
        without.push(
            bench
                .run(&bench.builtin, None, STEADY_INVOCATIONS, &lines)
                .await?,
        );
    }
    let a = Summary::of(&post_runtime_values(&with)).ok_or_else(|| anyhow!("no invocations"))?;
    let b = Summary::of(&post_runtime_values(&without)).ok_or_else(|| anyhow!("no invocations"))?;
    results.rows.push(Row::new(
        "post-runtime per invocation, steady load, adaptive: median",
        format!("{:.2} ms (no extension: {:.2} ms)", a.median, b.median),
        format!("≤ {STEADY_POST_RUNTIME_MS} ms"),
        Some(a.median <= STEADY_POST_RUNTIME_MS),
    ));
    results.rows.push(Row::new(
        "post-runtime per invocation, steady load, adaptive: p99",
        format!("{:.2} ms (no extension: {:.2} ms)", a.p99, b.p99),
        "—",
        None,
    ));
    results.notes.push(format!(
        "Steady load: {rounds} rounds × {STEADY_INVOCATIONS} back-to-back invocations of the \
         minimal runtime printing {STEADY_LINES} lines each, exporting to the emulator's OTLP \
         sink over loopback; statistics over all {} invocations with Contrail.",
        a_len(&with)
    ));
    Ok(())
}

fn a_len(reports: &[RunReport]) -> usize {
    reports.iter().map(|r| r.invocations.len()).sum()
}

/// Round trip of one small export request to the sink, on a new connection.
fn export_round_trip(addr: SocketAddr) -> Result<f64> {
    let start = Instant::now();
    let response = http(addr, "POST", "/v1/logs", "application/x-protobuf", &[])?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    if response.status != 200 {
        bail!("sink answered {}", response.status);
    }
    Ok(elapsed)
}

/// Post-runtime time per invocation when Contrail flushes at the end of every invocation.
async fn end_mode(
    bench: &Bench,
    options: &Options,
    sink: &SinkHandle,
    results: &mut Results,
) -> Result<()> {
    let rounds = options.rounds.div_ceil(3);
    let contrail_env = vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint()),
        ("CONTRAIL_FLUSH", "end"),
    ]);
    let lines = vec![("BENCH_LINES".to_owned(), STEADY_LINES.to_string())];
    let mut with = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: end mode ({}/{rounds})", round + 1);
        with.push(
            bench
                .run(&bench.builtin, Some(&contrail_env), END_INVOCATIONS, &lines)
                .await?,
        );
        bench
            .run(&bench.builtin, None, END_INVOCATIONS, &lines)
            .await?;
    }
    let addr = sink.local_addr();
    let rtts = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| export_round_trip(addr))
            .collect::<Result<Vec<f64>>>()
    })
    .await??;
    let rtt = median(&rtts)?;
    let a = Summary::of(&post_runtime_values(&with)).ok_or_else(|| anyhow!("no invocations"))?;
    let budget = TELEMETRY_BUFFERING_MS + rtt + END_MODE_MARGIN_MS;
    results.rows.push(Row::new(
        "post-runtime per invocation, `CONTRAIL_FLUSH=end`: median",
        format!("{:.2} ms", a.median),
        format!(
            "≤ {TELEMETRY_BUFFERING_MS} ms + round trip {rtt:.2} ms + {END_MODE_MARGIN_MS} ms = {budget:.2} ms"
        ),
        Some(a.median <= budget),
    ));
    results.rows.push(Row::new(
        "post-runtime per invocation, `CONTRAIL_FLUSH=end`: p99",
        format!("{:.2} ms", a.p99),
        format!("≤ {budget:.2} ms"),
        Some(a.p99 <= budget),
    ));
    results.notes.push(format!(
        "End mode: {rounds} rounds × {END_INVOCATIONS} invocations ({} with Contrail), \
         exporting to the emulator's OTLP sink; the round trip is the median of 20 empty \
         `POST /v1/logs` to that sink, each on a new connection.",
        a_len(&with)
    ));
    Ok(())
}

fn log_records(sink: &SinkHandle) -> usize {
    sink.snapshot()
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// The largest value of each data point of Contrail's cumulative counter `name`, per
/// attribute set: what Contrail last reported about itself.
fn self_counter(sink: &SinkHandle, name: &str) -> Vec<(String, i64)> {
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let mut out: Vec<(String, i64)> = Vec::new();
    for request in &sink.snapshot().metrics {
        let metrics = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name);
        for m in metrics {
            let Some(metric::Data::Sum(sum)) = &m.data else {
                continue;
            };
            for point in &sum.data_points {
                let value = match point.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    Some(number_data_point::Value::AsDouble(v)) => v as i64,
                    None => continue,
                };
                let key = point
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = kv
                            .value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(|v| match v {
                                any_value::Value::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        format!("{}={v}", kv.key)
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let key = if key.is_empty() {
                    "total".to_owned()
                } else {
                    key
                };
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, max)) => *max = (*max).max(value),
                    None => out.push((key, value)),
                }
            }
        }
    }
    out.retain(|(_, v)| *v != 0);
    out
}

/// `a=1, b=2`, or `0` for nothing.
fn counters(values: &[(String, i64)]) -> String {
    if values.is_empty() {
        return "0".to_owned();
    }
    values
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Memory and CPU for 20 invocations × 2,000 log lines, intake to export.
async fn heavy(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let rounds = options.rounds.div_ceil(3);
    let lines = vec![("BENCH_LINES".to_owned(), HEAVY_LINES.to_string())];
    let expected = (HEAVY_INVOCATIONS * HEAVY_LINES) as usize;
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let mut delivered = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: log volume ({}/{rounds})", round + 1);
        let sink = sink::start(SinkConfig::default())
            .await
            .context("start the sink")?;
        let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
        let a = bench
            .run(
                &bench.builtin,
                Some(&contrail_env),
                HEAVY_INVOCATIONS,
                &lines,
            )
            .await?;
        let ext = contrail_report(&a)?;
        rss.extend(ext.peak_rss_kb.map(|v| v as f64));
        cpu.extend(ext.cpu_ms.map(|v| v as f64));
        delivered.push(log_records(&sink));
        let t = &a.telemetry;
        results.notes.push(format!(
            "Log volume, round {}: the emulator delivered {} Telemetry API records in {} \
             batches to Contrail ({} retries, {} dropped by the emulator's queue, {} \
             undelivered at the end); the sink received {} log records; Contrail's last \
             self-reported `contrail.records.exported` {}, `contrail.records.dropped` {}.",
            round + 1,
            t.records_delivered,
            t.batches_delivered,
            t.retries,
            t.records_dropped,
            t.records_undelivered,
            log_records(&sink),
            counters(&self_counter(&sink, "contrail.records.exported")),
            counters(&self_counter(&sink, "contrail.records.dropped"))
        ));
        sink.shutdown().await;
        bench
            .run(&bench.builtin, None, HEAVY_INVOCATIONS, &lines)
            .await?;
    }
    let (rss, cpu) = (median(&rss)?, median(&cpu)?);
    let least = delivered.iter().copied().min().unwrap_or(0);
    results.rows.push(Row::new(
        format!("peak RSS of Contrail, {HEAVY_INVOCATIONS} invocations × {HEAVY_LINES} lines"),
        format!("{:.2} MB", rss / 1024.0),
        format!("≤ {} MB", PEAK_RSS_KB / 1024),
        Some(rss <= PEAK_RSS_KB as f64),
    ));
    results.rows.push(Row::new(
        format!(
            "CPU time of Contrail for those {} lines (whole process)",
            HEAVY_INVOCATIONS * HEAVY_LINES
        ),
        format!("{:.3} s", cpu / 1000.0),
        format!("≤ {:.2} s", CPU_MS as f64 / 1000.0),
        Some(cpu <= CPU_MS as f64),
    ));
    results.notes.push(format!(
        "Log volume: {rounds} rounds; the sink received at least {least} log records per run \
         ({expected} function lines were written). RSS is `VmHWM`, CPU is utime + stime from \
         `/proc`, both of the whole Contrail process from spawn to exit."
    ));
    if least < expected {
        results.notes.push(format!(
            "Not every line reached the sink: {least} of {expected} in the worst run."
        ));
    }
    Ok(())
}

/// Export time of a 100-span batch from the Python SDK to Contrail's receiver.
async fn sdk_export(bench: &Bench, sdk: &Function, results: &mut Results) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("times.txt");
    let sink = sink::start(SinkConfig::default())
        .await
        .context("start the sink")?;
    let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
    let extra = vec![
        ("BENCH_SPANS".to_owned(), SDK_SPANS.to_string()),
        ("BENCH_EXPORTS".to_owned(), SDK_EXPORTS.to_string()),
        ("BENCH_OUT".to_owned(), out.display().to_string()),
    ];
    eprintln!("bench: SDK → receiver");
    let invocations = 5;
    bench
        .run(sdk, Some(&contrail_env), invocations, &extra)
        .await?;
    sink.shutdown().await;
    let times: Vec<f64> = std::fs::read_to_string(&out)
        .context("read the SDK timings")?
        .lines()
        .map(|l| l.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .context("parse the SDK timings")?;
    let s = Summary::of(&times).ok_or_else(|| anyhow!("no SDK timings"))?;
    results.rows.push(Row::new(
        format!("function SDK → receiver, one {SDK_SPANS}-span export: median / p99"),
        format!("{:.2} ms / {:.2} ms", s.median, s.p99),
        "—",
        None,
    ));
    results.notes.push(format!(
        "SDK → receiver: the Python OpenTelemetry SDK's OTLP/HTTP span exporter, timed around \
         `export()` of the same {SDK_SPANS} spans, {SDK_EXPORTS} times per invocation × \
         {invocations} invocations ({} exports).",
        times.len()
    ));
    Ok(())
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len())
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB ({bytes} bytes)", bytes as f64 / (1024.0 * 1024.0))
}

/// The stripped binary and the layer zips.
fn sizes(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stripped = dir.path().join("contrail");
    let ran = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&bench.contrail)
        .status()
        .is_ok_and(|s| s.success());
    let (size, how) = if ran {
        (file_size(&stripped)?, "after `strip`")
    } else {
        (file_size(&bench.contrail)?, "as built (`strip` not found)")
    };
    results.rows.push(Row::new(
        format!("binary size, target/release/contrail {how}"),
        mb(size),
        "≤ 4 MB",
        Some(size <= BINARY_BYTES),
    ));
    let dist = options.root.join("layer/dist");
    let mut zips: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "zip"))
                .collect()
        })
        .unwrap_or_default();
    zips.sort();
    if zips.is_empty() {
        results
            .notes
            .push("Layer zips: none in layer/dist (build them with `layer/build.sh`).".to_owned());
    }
    for zip in zips {
        let size = file_size(&zip)?;
        let name = zip
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        results.rows.push(Row::new(
            format!("layer zip, {name}"),
            mb(size),
            "≤ 2 MB",
            Some(size <= ZIP_BYTES),
        ));
    }
    Ok(())
}

/// Throughput figures criterion left in `target/criterion`.
struct CriterionRow {
    id: String,
    records_per_s: f64,
    median_ns: f64,
}

fn criterion_rows(root: &Path, results: &mut Results) -> Result<Vec<CriterionRow>> {
    let base = root.join("target/criterion");
    let mut rows = Vec::new();
    let groups = ["telemetry_text", "telemetry_json", "receiver"];
    for group in groups {
        let Ok(entries) = std::fs::read_dir(base.join(group)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("new/estimates.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let dir = base.join(group).join(&name).join("new");
            let estimates: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("estimates.json"))?)?;
            let benchmark: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("benchmark.json"))?)?;
            let median_ns = estimates["median"]["point_estimate"]
                .as_f64()
                .ok_or_else(|| anyhow!("{group}/{name}: no median"))?;
            let elements = benchmark["throughput"]["Elements"]
                .as_f64()
                .ok_or_else(|| anyhow!("{group}/{name}: no element throughput"))?;
            rows.push(CriterionRow {
                id: format!("{group}/{name}"),
                records_per_s: elements / (median_ns / 1e9),
                median_ns,
            });
        }
    }
    for chain in ["telemetry_text/chain_gzip", "telemetry_json/chain_gzip"] {
        if let Some(r) = rows.iter().find(|r| r.id == chain) {
            results.rows.push(Row::new(
                format!("decode → map → encode + gzip, one core (`{chain}`)"),
                format!("{:.0} records/s", r.records_per_s),
                "≥ 100,000 records/s",
                Some(r.records_per_s >= RECORDS_PER_S),
            ));
        }
    }
    if rows.is_empty() {
        results.notes.push(
            "Criterion figures: none in target/criterion (run `cargo bench -p contrail --bench \
             pipeline`)."
                .to_owned(),
        );
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// The report.

fn machine() -> (String, String, String) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    (cpus, model, kernel)
}

/// `YYYY-MM-DD HH:MM UTC` of now.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC")
}

fn render(
    options: &Options,
    bench: &Bench,
    results: &Results,
    criterion: &[CriterionRow],
    elapsed: Duration,
) -> Result<String> {
    let (cpus, model, kernel) = machine();
    let mut s = String::new();
    writeln!(s, "# Benchmarks")?;
    writeln!(s)?;
    writeln!(
        s,
        "Written by `{}` on {}. Do not edit by hand: run the command again.",
        options.command,
        utc_now()
    )?;
    writeln!(s)?;
    writeln!(s, "- Machine: {cpus} CPUs, {model}, Linux {kernel}")?;
    writeln!(
        s,
        "- Whole-process runs: {} under the emulator (`contrail_sim::run`), {} start-up \
         rounds, {:.0} s",
        bench.runs_label,
        options.rounds,
        elapsed.as_secs_f64()
    )?;
    if !options.only.is_empty() {
        writeln!(
            s,
            "- Partial report: only the scenarios {} (`--only`)",
            options.only.join(", ")
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## Budgets")?;
    writeln!(s)?;
    writeln!(s, "| measure | figure | budget | |")?;
    writeln!(s, "|---|---|---|---|")?;
    for row in &results.rows {
        let verdict = match row.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "",
        };
        writeln!(
            s,
            "| {} | {} | {} | {} |",
            row.what, row.figure, row.budget, verdict
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## How")?;
    writeln!(s)?;
    for note in &results.notes {
        writeln!(s, "- {note}")?;
    }
    writeln!(s)?;
    writeln!(s, "## Hot paths (criterion, one core)")?;
    writeln!(s)?;
    if criterion.is_empty() {
        writeln!(s, "Not run.")?;
    } else {
        writeln!(
            s,
            "`cargo bench -p contrail --bench pipeline -- --quick` (extension/benches/pipeline.rs). \
             Telemetry groups: a Telemetry API batch of 1,000 records (`platform.start`, 997 \
             function lines, `runtimeDone`, `report`) in the text or the JSON log format; \
             `receiver`: an `ExportTraceServiceRequest` of 100 spans decoded and merged with the \
             Lambda resource. Throughput from criterion's median time."
        )?;
        writeln!(s)?;
        writeln!(s, "| benchmark | time per batch | records/s |")?;
        writeln!(s, "|---|---|---|")?;
        for row in criterion {
            writeln!(
                s,
                "| `{}` | {:.1} µs | {:.0} |",
                row.id,
                row.median_ns / 1000.0,
                row.records_per_s
            )?;
        }
    }
    Ok(s)
}
