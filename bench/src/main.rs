//! Whole-process benchmarks of the release extension under the emulator, written to
//! `docs/BENCHMARKS.md` with each figure next to its budget.
//!
//! ```text
//! contrail-bench [--out FILE] [--rounds N] [--command TEXT] [--only SCENARIO]...
//!                [--baseline FILE]         measure and write the report
//! contrail-bench runtime                   a minimal Lambda runtime (used by the above)
//! ```
//!
//! Every comparison runs the same function with Contrail (A) and without any extension (B),
//! interleaved A, B, A, B… so that machine noise falls on both sides. Figures are medians over
//! the rounds (nearest rank). The criterion figures of `cargo bench -p contrail --bench
//! pipeline` are read from `target/criterion` when present.
//!
//! | module | role |
//! |---|---|
//! | [`harness`] | the functions under test, and one run of them under the emulator |
//! | [`runtime`] | `contrail-bench runtime`, the minimal Lambda runtime |
//! | [`scenarios`] | the whole-process scenarios, one file each, in the order they run |
//! | [`sizes`] | the stripped binary and the layer zips |
//! | [`criterion`] | the figures `cargo bench` left in `target/criterion` |
//! | [`report`] | the figures with their budgets, and the Markdown written from them |

mod criterion;
mod harness;
mod report;
mod runtime;
mod scenarios;
mod sizes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::harness::Bench;
use crate::report::Results;
use crate::scenarios::Scenario;

#[derive(Parser)]
#[command(
    name = "contrail-bench",
    about = "Whole-process benchmarks of Contrail under the emulator, written to docs/BENCHMARKS.md",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand)]
enum Mode {
    /// A minimal Lambda runtime: answers every invocation with `{}` after printing
    /// `BENCH_LINES` log lines (default 0)
    Runtime,
}

/// What to measure, and where the report goes.
#[derive(Args)]
pub(crate) struct Options {
    /// The workspace root
    #[arg(long, value_name = "DIR", default_value_os_t = workspace_root())]
    pub(crate) root: PathBuf,
    /// The report to write [default: ROOT/docs/BENCHMARKS.md]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Start-up rounds; the other scenarios run a third as many, rounded up
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rounds: u32,
    /// The command the report names as its author
    #[arg(long, value_name = "TEXT", default_value = "scripts/bench.sh")]
    pub(crate) command: String,
    /// Run only this scenario (repeatable); all of them when absent
    #[arg(long, value_enum, value_name = "SCENARIO")]
    pub(crate) only: Vec<Scenario>,
    /// Another build of the extension to compare with, such as the layer build of the commit
    /// a change started from: the start-up rounds run it too, interleaved, and its size is
    /// reported beside the one under test
    #[arg(long, value_name = "FILE")]
    pub(crate) baseline: Option<PathBuf>,
}

impl Options {
    /// The rounds of every scenario but start-up: a third of `--rounds`, rounded up.
    pub(crate) fn load_rounds(&self) -> u32 {
        self.rounds.div_ceil(3)
    }

    pub(crate) fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }

    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.root.join("docs/BENCHMARKS.md"))
    }
}

/// The checkout this runner was built from: the parent of `bench/`.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Some(Mode::Runtime) => runtime::main(),
        None => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")
            .and_then(|rt| rt.block_on(bench_main(&cli.options))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench_main(options: &Options) -> Result<()> {
    let bench = Bench::new(&options.root, options.baseline.as_deref())?;
    let started = Instant::now();
    let mut results = Results::default();
    scenarios::run(&bench, options, &mut results).await?;
    sizes::measure(&bench, options, &mut results)?;
    let criterion = criterion::read(&options.root, &mut results)?;

    let out = options.out();
    // A missing file has nothing to keep; any other failure to read it must not lose it.
    let old = match std::fs::read_to_string(&out) {
        Ok(old) => old,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", out.display())),
    };
    let kept = report::kept_sections(&old);
    let markdown = report::render(
        options,
        &bench,
        &results,
        &criterion,
        started.elapsed(),
        &kept,
    )?;
    std::fs::write(&out, markdown).with_context(|| format!("write {}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}
