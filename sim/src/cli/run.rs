//! `contrail-sim run`: one function for some invocations, then what the sink received and
//! what the run measured.

use std::path::{Path, PathBuf};

use contrail_sim::sink::{self, SinkConfig, SinkHandle};

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

/// The embedded sink, started and named in `env` as the exporters' endpoint, unless
/// `no_sink` or the function's exporter is pointed somewhere already.
pub(crate) async fn start_sink(
    no_sink: bool,
    jsonl: Option<PathBuf>,
    env: &mut Vec<(String, String)>,
) -> anyhow::Result<Option<SinkHandle>> {
    if no_sink || endpoint_set(env) {
        return Ok(None);
    }
    let handle = sink::start(SinkConfig {
        jsonl_path: jsonl,
        ..SinkConfig::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the OTLP sink: {e}"))?;
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), handle.endpoint()));
    Ok(Some(handle))
}

/// Runs `job` until it ends or Ctrl-C or SIGTERM (dropping it kills the children and removes
/// the cgroups); then prints what the sink received (`render`) and shuts it down, prints the
/// report and writes it as JSON to `json`.
pub(crate) async fn finish<R, E>(
    job: impl Future<Output = Result<R, E>>,
    sink: Option<SinkHandle>,
    render: impl Fn(&SinkHandle) -> String,
    text: impl Fn(&R) -> String,
    json: Option<&Path>,
) -> anyhow::Result<()>
where
    R: serde::Serialize,
    anyhow::Error: From<E>,
{
    let interrupted = super::interruption()?;
    let result = tokio::select! {
        r = job => r.map_err(anyhow::Error::from),
        () = interrupted => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(s) = sink {
        println!("{}", render(&s));
        s.shutdown().await;
    }
    let report = result?;
    print!("{}", text(&report));
    if let Some(path) = json {
        let bytes = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = args.env.config(args.memory_mb, args.invocations)?;
    let sink = start_sink(args.no_sink, args.otlp_jsonl.clone(), &mut config.env).await?;
    finish(
        contrail_sim::run(config),
        sink,
        SinkHandle::render_text,
        contrail_sim::RunReport::render_text,
        args.report_json.as_deref(),
    )
    .await
}
