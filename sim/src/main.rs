//! `contrail-sim`: run a Lambda function and its extensions in a local execution environment
//! (the command line is in `cli`).

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use contrail_sim::sink::{self, SinkConfig};

use cli::{Cli, Command};

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
    let interrupted = cli::interruption()?;
    eprintln!("contrail-sim sink listening on {}", handle.endpoint());
    interrupted.await;
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
            Command::Run(args) => cli::run::run(*args).await,
            Command::Tune(args) => cli::tune::run(*args).await,
            Command::Scale(args) => cli::scale::run(*args).await,
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
