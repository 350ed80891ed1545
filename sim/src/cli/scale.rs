//! `contrail-sim scale`: one function under a load profile, on as many environments as Lambda
//! would give it, then what the sink received and what the fleet measured.

use std::path::PathBuf;
use std::time::Duration;

use contrail_sim::fleet::{
    DEFAULT_ACCOUNT_CONCURRENCY, FleetConfig, Load, contrail_receiver_ports,
};
use contrail_sim::sink::SinkHandle;

use super::env::EnvArgs;
use super::run::{finish, start_sink};

#[derive(clap::Args, Debug)]
pub(crate) struct ScaleArgs {
    /// The load: `rate=R,for=D`, `ramp=A-B,for=D`, `spike=BASE-PEAK,at=T,hold=H,for=D` or
    /// `replay=FILE` (one arrival per line, in ms). Durations in seconds, or with `ms`/`s`.
    #[arg(long, value_name = "PROFILE")]
    load: String,
    /// The function's reserved concurrency (none: the account's limit applies).
    #[arg(long, value_name = "N")]
    reserved_concurrency: Option<u32>,
    /// The account's concurrency limit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ACCOUNT_CONCURRENCY)]
    account_concurrency: u32,
    /// Environments initialized before the load (`provisioned-concurrency`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    provisioned_concurrency: u32,
    /// An idle on-demand environment is shut down after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 300.0)]
    idle_timeout_s: f64,
    /// A variable of each environment's own; `{port}`, `{port1}` … `{port9}` in its value
    /// become loopback ports of that environment (Contrail's two receivers get theirs unless
    /// set here or with --env).
    #[arg(long, value_name = "KEY=VALUE")]
    environment_env: Vec<String>,
    /// At most this many environments at once (at least 1), below this machine's own limit.
    #[arg(long, value_name = "N")]
    max_environments: Option<u32>,
    /// Memory size in MB (128-10240): also the CPU share and the memory limit.
    #[arg(long, default_value_t = 128)]
    memory_mb: u32,
    /// Write the fleet's measurements (every request and environment) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Append every OTLP request the embedded sink receives to this file (JSON lines).
    #[arg(long, value_name = "FILE")]
    otlp_jsonl: Option<PathBuf>,
    /// Do not start the embedded OTLP sink.
    #[arg(long)]
    no_sink: bool,
    #[command(flatten)]
    env: EnvArgs,
}

impl ScaleArgs {
    fn fleet(&self) -> anyhow::Result<FleetConfig> {
        let function = self.env.config(self.memory_mb, 1)?;
        let load = Load::parse(&self.load).map_err(|e| anyhow::anyhow!("--{e}"))?;
        if !(self.idle_timeout_s > 0.0 && self.idle_timeout_s <= 86_400.0) {
            anyhow::bail!("--idle-timeout-s must be a number of seconds above 0, at most a day");
        }
        let mut environment_env = Vec::new();
        for kv in &self.environment_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--environment-env {kv:?}: expected KEY=VALUE"))?;
            environment_env.push((k.to_owned(), v.to_owned()));
        }
        // Contrail's receivers on ports of each environment's own, unless set otherwise.
        for (k, v) in contrail_receiver_ports() {
            let set = |vars: &[(String, String)]| vars.iter().any(|(name, _)| *name == k);
            if !set(&function.env) && !set(&environment_env) {
                environment_env.push((k, v));
            }
        }
        Ok(FleetConfig {
            function,
            load,
            reserved_concurrency: self.reserved_concurrency,
            account_concurrency: self.account_concurrency,
            provisioned_concurrency: self.provisioned_concurrency,
            idle_timeout: Duration::from_secs_f64(self.idle_timeout_s),
            environment_env,
            max_environments: self.max_environments,
        })
    }
}

pub(crate) async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let mut config = args.fleet()?;
    let sink = start_sink(
        args.no_sink,
        args.otlp_jsonl.clone(),
        &mut config.function.env,
    )
    .await?;
    finish(
        contrail_sim::run_fleet(config),
        sink,
        SinkHandle::render_environments,
        contrail_sim::fleet::FleetReport::render_text,
        args.report_json.as_deref(),
    )
    .await
}
