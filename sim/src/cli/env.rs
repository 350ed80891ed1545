//! The options that describe a function and its execution environment, shared by `run` and
//! `tune`, and the [`RunConfig`] they make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use contrail_sim::{
    CgroupUse, FreezeWith, InitCpu, InitType, LogFormat, ResourceModel, RunConfig, Schedule, Schema,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum InitTypeArg {
    OnDemand,
    ProvisionedConcurrency,
    SnapStart,
    LambdaManagedInstances,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum CgroupsArg {
    /// When possible (root, hierarchies mounted); otherwise say so and run unthrottled.
    Auto,
    /// Fail when a part of the model cannot be enforced.
    Require,
    /// Never: no CPU share, no memory limit, SIGSTOP freezing.
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum InitCpuArg {
    /// Unthrottled on demand, throttled for provisioned concurrency and SnapStart.
    Auto,
    /// The same share as invocations.
    Throttled,
    /// At least two vCPUs.
    Unthrottled,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum FreezerArg {
    /// The cgroup freezer of the hierarchy the CPU and memory controllers are in, else SIGSTOP.
    Auto,
    /// The cgroup v1 freezer controller.
    CgroupV1,
    /// cgroup v2 cgroup.freeze.
    CgroupV2,
    /// SIGSTOP and SIGCONT of every child's process group.
    Signal,
}

/// Lambda's resource model (see the README's "Resource model").
#[derive(clap::Args, Debug)]
pub(crate) struct ResourceArgs {
    /// Use cgroups for the CPU share, the memory limit and the freezer.
    #[arg(long, value_enum, default_value = "auto")]
    cgroups: CgroupsArg,
    /// Do not give the environment Lambda's CPU share (memory / 1769 MB of one CPU).
    #[arg(long)]
    no_cpu_limit: bool,
    /// The CFS period of the CPU share, in ms (1-1000).
    #[arg(long, value_name = "MS", default_value_t = 20.0)]
    cpu_period_ms: f64,
    /// CPU quota a period may carry over into the next, in ms.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    cpu_burst_ms: f64,
    /// The CPU of the INIT phase.
    #[arg(long, value_enum, default_value = "auto")]
    init_cpu: InitCpuArg,
    /// Do not make the memory size a hard limit of the environment.
    #[arg(long)]
    no_memory_limit: bool,
    /// How to freeze the environment between invocations.
    #[arg(long, value_enum, default_value = "auto")]
    freezer: FreezerArg,
    /// Lambda Managed Instances: the capacity provider's memory per vCPU, in GiB (2-8).
    #[arg(long, value_name = "GIB", default_value_t = 2.0)]
    memory_per_vcpu_gib: f64,
}

fn millis(value: f64, what: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value >= 0.0) {
        anyhow::bail!("--{what} must be a number of milliseconds, at least 0");
    }
    Ok(Duration::from_secs_f64(value / 1000.0))
}

impl ResourceArgs {
    pub(crate) fn model(&self) -> anyhow::Result<ResourceModel> {
        Ok(ResourceModel {
            cgroups: match self.cgroups {
                CgroupsArg::Auto => CgroupUse::Auto,
                CgroupsArg::Require => CgroupUse::Require,
                CgroupsArg::Off => CgroupUse::Off,
            },
            cpu: !self.no_cpu_limit,
            cpu_period: millis(self.cpu_period_ms, "cpu-period-ms")?,
            cpu_burst: millis(self.cpu_burst_ms, "cpu-burst-ms")?,
            init_cpu: match self.init_cpu {
                InitCpuArg::Auto => InitCpu::Auto,
                InitCpuArg::Throttled => InitCpu::Throttled,
                InitCpuArg::Unthrottled => InitCpu::Unthrottled,
            },
            memory_limit: !self.no_memory_limit,
            freezer: match self.freezer {
                FreezerArg::Auto => FreezeWith::Auto,
                FreezerArg::CgroupV1 => FreezeWith::CgroupV1,
                FreezerArg::CgroupV2 => FreezeWith::CgroupV2,
                FreezerArg::Signal => FreezeWith::Signal,
            },
            managed_gib_per_vcpu: self.memory_per_vcpu_gib,
        })
    }
}

/// The function, its extensions and its environment.
#[derive(clap::Args, Debug)]
pub(crate) struct EnvArgs {
    /// Folder whose executables are all extensions (like /opt/extensions).
    #[arg(long, value_name = "DIR")]
    pub(crate) extensions_dir: Option<PathBuf>,
    /// An extension executable (repeatable). Its file name is the name it must register with.
    #[arg(long = "extension", value_name = "PATH")]
    pub(crate) extensions: Vec<PathBuf>,
    /// The handler (`_HANDLER`), e.g. app.handler.
    #[arg(long, default_value = "function.handler")]
    handler: String,
    /// The runtime's working directory (`LAMBDA_TASK_ROOT`); default: the current directory.
    #[arg(long, value_name = "DIR")]
    task_root: Option<PathBuf>,
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
    /// Do not echo the children's output.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    resources: ResourceArgs,
    /// The runtime command and its arguments.
    #[arg(last = true, required = true, value_name = "RUNTIME_CMD")]
    runtime: Vec<String>,
}

impl EnvArgs {
    /// The run these options describe, at `memory_mb` for `invocations`.
    pub(crate) fn config(&self, memory_mb: u32, invocations: u32) -> anyhow::Result<RunConfig> {
        let payload = match (&self.payload, &self.payload_file) {
            (Some(p), _) => p.clone().into_bytes(),
            (None, Some(f)) => std::fs::read(f)
                .map_err(|e| anyhow::anyhow!("cannot read payload file {}: {e}", f.display()))?,
            (None, None) => b"{}".to_vec(),
        };
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&payload) {
            anyhow::bail!("the payload is not valid JSON: {e}");
        }
        let mut env = Vec::new();
        for kv in &self.env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--env {kv:?}: expected KEY=VALUE"))?;
            env.push((k.to_owned(), v.to_owned()));
        }
        if !(self.timeout_s > 0.0 && self.timeout_s <= 900.0) {
            anyhow::bail!("--timeout-s must be between 0 and 900");
        }
        let required_schema = match &self.schema {
            Some(s) => Some(Schema::parse(s).ok_or_else(|| {
                anyhow::anyhow!("--schema {s:?}: use 2022-07-01, 2022-12-13 or 2025-01-29")
            })?),
            None => None,
        };
        Ok(RunConfig {
            runtime_command: self.runtime.clone(),
            task_root: self.task_root.clone(),
            extensions_dir: self.extensions_dir.clone(),
            extensions: self.extensions.clone(),
            handler: self.handler.clone(),
            function_name: self.function_name.clone(),
            aws_endpoint_url: self.aws_endpoint_url.clone(),
            memory_mb,
            timeout: Duration::from_secs_f64(self.timeout_s),
            init_type: match self.init_type {
                InitTypeArg::OnDemand => InitType::OnDemand,
                InitTypeArg::ProvisionedConcurrency => InitType::ProvisionedConcurrency,
                InitTypeArg::SnapStart => InitType::SnapStart,
                InitTypeArg::LambdaManagedInstances => InitType::LambdaManagedInstances,
            },
            invocations,
            payload,
            schedule: match self.interval_ms {
                Some(ms) => Schedule::Interval(Duration::from_millis(ms)),
                None => Schedule::Burst,
            },
            idle_gap: Duration::from_millis(self.idle_gap_ms),
            freeze: !self.no_freeze,
            resources: self.resources.model()?,
            log_format: match self.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            },
            log_level: self.log_level.clone(),
            concurrency: self.concurrency,
            env,
            listen: self.listen,
            telemetry_queue_limit: self.telemetry_queue_limit,
            required_schema,
            echo_output: !self.quiet,
            ..RunConfig::default()
        })
    }
}
