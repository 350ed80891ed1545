//! The command line of `contrail-sim`: `run` (one function for some invocations), `tune` (the
//! same function at several memory sizes, with the cost of each), `scale` (the function under a
//! load profile, on many environments) and `sink` (the OTLP sink alone). The options that
//! describe the function and its environment are shared by `run`, `tune` and `scale`
//! ([`env::EnvArgs`]).

pub(crate) mod env;
pub(crate) mod run;
pub(crate) mod scale;
pub(crate) mod tune;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A local AWS Lambda execution environment: the Runtime, Extensions and Telemetry APIs on
/// loopback, with the platform's lifecycle, resource model, freeze, deadlines and telemetry.
#[derive(Parser, Debug)]
#[command(name = "contrail-sim", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run a function (RUNTIME_CMD) with extensions for some invocations, then print what was
    /// received and measured.
    Run(Box<run::RunArgs>),
    /// Run a function with its extensions at several memory sizes under Lambda's CPU model and
    /// print, per size, the cold start, the median and p99 duration, the extensions' share and
    /// the cost per million invocations: an estimate of the size to choose.
    Tune(Box<tune::TuneArgs>),
    /// Run a function under a load profile on as many environments as Lambda would start,
    /// with reserved, account and provisioned concurrency and throttles, then print per
    /// environment its cold start, invocations and utilization.
    Scale(Box<scale::ScaleArgs>),
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

/// Takes over SIGTERM now, and returns what waits for it or Ctrl-C.
pub(crate) fn interruption() -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}
