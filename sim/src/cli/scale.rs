//! `contrail-sim scale`: one function under a load profile, on as many environments as Lambda
//! would give it, then what the sink received and what the fleet measured.

use std::path::PathBuf;
use std::time::Duration;

use contrail_sim::fleet::{DEFAULT_ACCOUNT_CONCURRENCY, FleetConfig, Load};
use contrail_sim::sink::{self, SinkConfig};

use super::env::EnvArgs;
use super::run::endpoint_set;

/// What every environment gets when no `--environment-env` is given: Contrail's OTLP
/// receivers on ports of their own (on Lambda each environment has its own loopback).
const CONTRAIL_RECEIVERS: [(&str, &str); 2] = [
    ("CONTRAIL_RECEIVER_ENDPOINT", "127.0.0.1:{port}"),
    ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "127.0.0.1:{port1}"),
];

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
    /// become loopback ports of that environment (default: Contrail's two receivers).
    #[arg(long, value_name = "KEY=VALUE")]
    environment_env: Vec<String>,
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
        if !(self.idle_timeout_s.is_finite() && self.idle_timeout_s > 0.0) {
            anyhow::bail!("--idle-timeout-s must be a number of seconds above 0");
        }
        let mut environment_env = Vec::new();
        for kv in &self.environment_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--environment-env {kv:?}: expected KEY=VALUE"))?;
            environment_env.push((k.to_owned(), v.to_owned()));
        }
        if self.environment_env.is_empty() {
            for (k, v) in CONTRAIL_RECEIVERS {
                if !function.env.iter().any(|(name, _)| name == k) {
                    environment_env.push((k.to_owned(), v.to_owned()));
                }
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
        })
    }
}

pub(crate) async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let mut config = args.fleet()?;
    let sink = if args.no_sink || endpoint_set(&config.function.env) {
        None
    } else {
        let handle = sink::start(SinkConfig {
            jsonl_path: args.otlp_jsonl.clone(),
            ..SinkConfig::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the OTLP sink: {e}"))?;
        config
            .function
            .env
            .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), handle.endpoint()));
        Some(handle)
    };
    let interrupted = super::interruption()?;
    let result = tokio::select! {
        r = contrail_sim::run_fleet(config) => r.map_err(anyhow::Error::from),
        () = interrupted => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(s) = &sink {
        println!("{}", s.render_environments());
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
