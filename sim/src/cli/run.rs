//! `contrail-sim run`: one function for some invocations, then what the sink received and
//! what the run measured.

use std::path::PathBuf;

use contrail_sim::sink::{self, SinkConfig};

use super::env::EnvArgs;

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Number of invocations.
    #[arg(long, default_value_t = 1)]
    invocations: u32,
    /// Memory size in MB (128-10240): also the CPU share and the memory limit.
    #[arg(long, default_value_t = 128)]
    memory_mb: u32,
    /// Write the run's measurements as JSON to this file.
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

/// True when the function's exporter is pointed somewhere already.
pub(crate) fn endpoint_set(env: &[(String, String)]) -> bool {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env.iter().any(|(k, _)| k == "OTEL_EXPORTER_OTLP_ENDPOINT")
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = args.env.config(args.memory_mb, args.invocations)?;
    let sink = if args.no_sink || endpoint_set(&config.env) {
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
    // Ctrl-C or SIGTERM ends the run: dropping it kills the children and removes the cgroups.
    let interrupted = super::interruption()?;
    let result = tokio::select! {
        r = contrail_sim::run(config) => r.map_err(anyhow::Error::from),
        () = interrupted => Err(anyhow::anyhow!("interrupted")),
    };
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
