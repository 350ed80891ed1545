//! Steady load: post-runtime time per invocation under back-to-back invocations, with the
//! default (adaptive) flushing.

use anyhow::Result;
use contrail_sim::sink::SinkHandle;

use crate::Options;
use crate::harness::{Bench, invocations, post_runtime, vars};
use crate::report::{Results, Row};

const STEADY_POST_RUNTIME_MS: f64 = 1.0;
const STEADY_INVOCATIONS: u32 = 50;
/// Log lines the function prints per invocation (also in end mode).
pub(crate) const STEADY_LINES: u32 = 10;

/// Post-runtime time per invocation under back-to-back load, default (adaptive) flushing.
pub(crate) async fn run(
    bench: &Bench,
    options: &Options,
    sink: &SinkHandle,
    results: &mut Results,
) -> Result<()> {
    let rounds = options.load_rounds();
    let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
    let (with, without) = bench
        .minimal_rounds(
            "steady load",
            rounds,
            &contrail_env,
            STEADY_INVOCATIONS,
            STEADY_LINES,
        )
        .await?;
    let (a, b) = (post_runtime(&with)?, post_runtime(&without)?);
    results.rows.push(Row::new(
        "post-runtime per invocation, steady load, adaptive: median",
        format!("{:.2} ms (no extension: {:.2} ms)", a.median, b.median),
        format!("≤ {STEADY_POST_RUNTIME_MS} ms"),
        Some(a.median <= STEADY_POST_RUNTIME_MS),
    ));
    results.rows.push(Row::new(
        "post-runtime per invocation, steady load, adaptive: p99",
        format!("{:.2} ms (no extension: {:.2} ms)", a.p99, b.p99),
        "—",
        None,
    ));
    results.notes.push(format!(
        "Steady load: {rounds} rounds × {STEADY_INVOCATIONS} back-to-back invocations of the \
         minimal runtime printing {STEADY_LINES} lines each, exporting to the emulator's OTLP \
         sink over loopback; statistics over all {} invocations with Contrail.",
        invocations(&with)
    ));
    Ok(())
}
