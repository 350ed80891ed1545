//! The whole-process scenarios, in the order they run. Each compares runs with Contrail
//! against runs without any extension where a comparison means something, and adds its rows
//! and notes to the report.
//!
//! | scenario | measures |
//! |---|---|
//! | [`startup`] | spawn → register, spawn → first `next`, the init phase with and without Contrail |
//! | [`steady`] | post-runtime time per invocation under back-to-back load (adaptive flushing) |
//! | [`end`] | post-runtime time per invocation with `CONTRAIL_FLUSH=end` |
//! | [`heavy`] | peak RSS and CPU time under heavy logging, and what reached the backend |
//! | [`sdk`] | export time from the function's OpenTelemetry SDK to Contrail's receiver |
//! | [`outage`] | a sick backend for 5 s (refusing, 503, 429, slow): slow invocations, lines once; the busy path beside the floor |
//! | [`cpu`] | under Lambda's CPU model: Contrail's CPU and the durations beside the floor extension |
//! | [`soak`] | 10,000 invocations with logs, idle gaps and freezes: RSS and descriptors first vs last, every line once, the counters |
//!
//! Every scenario but `cpu` runs unthrottled at 512 MB, as these figures always have. `soak`
//! takes minutes and runs only when named (`--only soak`).

pub(crate) mod cpu;
pub(crate) mod end;
pub(crate) mod heavy;
pub(crate) mod outage;
pub(crate) mod sdk;
pub(crate) mod soak;
pub(crate) mod startup;
pub(crate) mod steady;

use anyhow::Result;

use crate::Options;
use crate::harness::{Bench, start_sink};
use crate::report::Results;

/// The budget on Contrail's peak RSS, idle or under load.
const PEAK_RSS_KB: u64 = 6 * 1024;

/// A scenario, as `--only` names it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    Startup,
    Steady,
    End,
    Heavy,
    Sdk,
    Outage,
    Cpu,
    Soak,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Startup => "startup",
            Scenario::Steady => "steady",
            Scenario::End => "end",
            Scenario::Heavy => "heavy",
            Scenario::Sdk => "sdk",
            Scenario::Outage => "outage",
            Scenario::Cpu => "cpu",
            Scenario::Soak => "soak",
        }
    }
}

/// Every scenario `options` selects, in order.
pub(crate) async fn run(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let sink = start_sink().await?;
    if options.runs(Scenario::Startup) {
        startup::run(bench, options, results).await?;
    }
    if options.runs(Scenario::Steady) {
        steady::run(bench, options, &sink, results).await?;
    }
    if options.runs(Scenario::End) {
        end::run(bench, options, &sink, results).await?;
    }
    if options.runs(Scenario::Heavy) {
        heavy::run(bench, options, results).await?;
    }
    match &bench.python_sdk {
        _ if !options.runs(Scenario::Sdk) => {}
        Some(sdk) => sdk::run(bench, sdk, results).await?,
        None => results.notes.push(
            "SDK → receiver export time: not measured (no awslambdaric and OpenTelemetry SDK in \
             .tools/venv; run scripts/install-test-deps.sh)."
                .to_owned(),
        ),
    }
    if options.runs(Scenario::Outage) {
        outage::run(bench, options, results).await?;
    }
    if options.runs(Scenario::Cpu) {
        cpu::run(bench, options, &sink, results).await?;
    }
    if options.only.contains(&Scenario::Soak) {
        soak::run(bench, options, results).await?;
    }
    sink.shutdown().await;
    Ok(())
}
