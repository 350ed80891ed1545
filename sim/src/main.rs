//! `contrail-sim`: run a Lambda function and its extensions in a local execution environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use contrail_sim::Schema;
use contrail_sim::sink::{self, SinkConfig};
use contrail_sim::{InitType, LogFormat, RunConfig, Schedule};

/// A local AWS Lambda execution environment: the Runtime, Extensions and Telemetry APIs on
/// loopback, with the platform's lifecycle, freeze, deadlines and telemetry.
#[derive(Parser, Debug)]
#[command(name = "contrail-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a function (RUNTIME_CMD) with extensions for some invocations, then print what was
    /// received and measured.
    Run(Box<RunArgs>),
    /// Run only the embedded OTLP/HTTP sink until Ctrl-C or SIGTERM.
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4318")]
        listen: SocketAddr,
        /// Append every received request to this file as one line of OTLP JSON.
        #[arg(long)]
        jsonl: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum InitTypeArg {
    OnDemand,
    ProvisionedConcurrency,
    SnapStart,
    LambdaManagedInstances,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Folder whose executables are all extensions (like /opt/extensions).
    #[arg(long, value_name = "DIR")]
    extensions_dir: Option<PathBuf>,
    /// An extension executable (repeatable). Its file name is the name it must register with.
    #[arg(long = "extension", value_name = "PATH")]
    extensions: Vec<PathBuf>,
    /// The handler (`_HANDLER`), e.g. app.handler.
    #[arg(long, default_value = "function.handler")]
    handler: String,
    /// The runtime's working directory (`LAMBDA_TASK_ROOT`); default: the current directory.
    #[arg(long, value_name = "DIR")]
    task_root: Option<PathBuf>,
    /// Number of invocations.
    #[arg(long, default_value_t = 1)]
    invocations: u32,
    /// The event, inline JSON.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// The event, read from a file.
    #[arg(long, value_name = "FILE")]
    payload_file: Option<PathBuf>,
    /// Start invocations this many milliseconds apart.
    #[arg(long, value_name = "MS", conflicts_with = "burst")]
    interval_ms: Option<u64>,
    /// Start each invocation as soon as the previous one ends (the default).
    #[arg(long)]
    burst: bool,
    /// Keep the environment frozen this long between invocations (for provisioned
    /// concurrency, also before the first one).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    idle_gap_ms: u64,
    /// Do not freeze the environment between invocations.
    #[arg(long)]
    no_freeze: bool,
    /// `AWS_LAMBDA_LOG_FORMAT`.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormatArg,
    /// `AWS_LAMBDA_LOG_LEVEL` (JSON log format).
    #[arg(long)]
    log_level: Option<String>,
    /// Memory size in MB (128-10240).
    #[arg(long, default_value_t = 128)]
    memory_mb: u32,
    /// Function timeout in seconds (fractions allowed).
    #[arg(long, default_value_t = 3.0)]
    timeout_s: f64,
    /// How the environment starts.
    #[arg(long, value_enum, default_value = "on-demand")]
    init_type: InitTypeArg,
    /// Invocations in flight at once (lambda-managed-instances only).
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// A function environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The function's name.
    #[arg(long, default_value = "contrail-sim-function")]
    function_name: String,
    /// `AWS_ENDPOINT_URL` of every process: where AWS SDKs (and Contrail's secrets resolver)
    /// reach AWS's APIs, e.g. a local emulator on loopback.
    #[arg(long, value_name = "URL")]
    aws_endpoint_url: Option<String>,
    /// Accept only Telemetry API subscriptions with this schema version
    /// (2022-07-01, 2022-12-13 or 2025-01-29).
    #[arg(long, value_name = "VERSION")]
    schema: Option<String>,
    /// Address of the Runtime, Extensions and Telemetry APIs.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Records a telemetry subscriber may have queued before the oldest are dropped.
    #[arg(long, default_value_t = RunConfig::default().telemetry_queue_limit)]
    telemetry_queue_limit: usize,
    /// Write the run's measurements as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Append every OTLP request the embedded sink receives to this file (JSON lines).
    #[arg(long, value_name = "FILE")]
    otlp_jsonl: Option<PathBuf>,
    /// Do not start the embedded OTLP sink.
    #[arg(long)]
    no_sink: bool,
    /// Do not echo the children's output.
    #[arg(long)]
    quiet: bool,
    /// The runtime command and its arguments.
    #[arg(last = true, required = true, value_name = "RUNTIME_CMD")]
    runtime: Vec<String>,
}

fn config_from(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let payload = match (&args.payload, &args.payload_file) {
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f)
            .map_err(|e| anyhow::anyhow!("cannot read payload file {}: {e}", f.display()))?,
        (None, None) => b"{}".to_vec(),
    };
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&payload) {
        anyhow::bail!("the payload is not valid JSON: {e}");
    }
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env {kv:?}: expected KEY=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    if !(args.timeout_s > 0.0 && args.timeout_s <= 900.0) {
        anyhow::bail!("--timeout-s must be between 0 and 900");
    }
    let required_schema = match &args.schema {
        Some(s) => Some(Schema::parse(s).ok_or_else(|| {
            anyhow::anyhow!("--schema {s:?}: use 2022-07-01, 2022-12-13 or 2025-01-29")
        })?),
        None => None,
    };
    Ok(RunConfig {
        runtime_command: args.runtime.clone(),
        task_root: args.task_root.clone(),
        extensions_dir: args.extensions_dir.clone(),
        extensions: args.extensions.clone(),
        handler: args.handler.clone(),
        function_name: args.function_name.clone(),
        aws_endpoint_url: args.aws_endpoint_url.clone(),
        memory_mb: args.memory_mb,
        timeout: Duration::from_secs_f64(args.timeout_s),
        init_type: match args.init_type {
            InitTypeArg::OnDemand => InitType::OnDemand,
            InitTypeArg::ProvisionedConcurrency => InitType::ProvisionedConcurrency,
            InitTypeArg::SnapStart => InitType::SnapStart,
            InitTypeArg::LambdaManagedInstances => InitType::LambdaManagedInstances,
        },
        invocations: args.invocations,
        payload,
        schedule: match args.interval_ms {
            Some(ms) => Schedule::Interval(Duration::from_millis(ms)),
            None => Schedule::Burst,
        },
        idle_gap: Duration::from_millis(args.idle_gap_ms),
        freeze: !args.no_freeze,
        log_format: match args.log_format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        },
        log_level: args.log_level.clone(),
        concurrency: args.concurrency,
        env,
        listen: args.listen,
        telemetry_queue_limit: args.telemetry_queue_limit,
        required_schema,
        echo_output: !args.quiet,
        ..RunConfig::default()
    })
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = config_from(&args)?;
    let endpoint_set = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || config
            .env
            .iter()
            .any(|(k, _)| k == "OTEL_EXPORTER_OTLP_ENDPOINT");
    let sink = if args.no_sink || endpoint_set {
        None
    } else {
        let handle = sink::start(SinkConfig {
            jsonl_path: args.otlp_jsonl.clone(),
            ..SinkConfig::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the OTLP sink: {e}"))?;
        config
            .env
            .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), handle.endpoint()));
        Some(handle)
    };
    let result = contrail_sim::run(config).await;
    if let Some(s) = &sink {
        println!("{}", s.render_text());
    }
    if let Some(s) = sink {
        s.shutdown().await;
    }
    let report = result?;
    print!("{}", report.render_text());
    if let Some(path) = &args.report_json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

async fn run_sink(listen: SocketAddr, jsonl: Option<PathBuf>) -> anyhow::Result<()> {
    let handle = sink::start(SinkConfig {
        addr: listen,
        jsonl_path: jsonl,
        ..SinkConfig::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the OTLP sink on {listen}: {e}"))?;
    // Take over SIGTERM before saying where the sink listens: whoever waits for that line may
    // send it at once, and the default action would kill the process without a shutdown.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    eprintln!("contrail-sim sink listening on {}", handle.endpoint());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("contrail-sim: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Sink { listen, jsonl } => run_sink(listen, jsonl).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contrail-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
