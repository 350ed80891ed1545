//! End mode: post-runtime time per invocation when Contrail flushes at the end of every
//! invocation, held to the Telemetry API's batching delay plus one export round trip.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Result, bail};
use contrail_sim::sink::SinkHandle;

use super::steady::STEADY_LINES;
use crate::Options;
use crate::harness::{Bench, invocations, median, post_runtime, vars};
use crate::report::{Results, Row};
use crate::runtime::http;

const TELEMETRY_BUFFERING_MS: f64 = 25.0;
const END_MODE_MARGIN_MS: f64 = 5.0;
const END_INVOCATIONS: u32 = 20;

/// Round trip of one small export request to the sink, on a new connection.
fn export_round_trip(addr: SocketAddr) -> Result<f64> {
    let start = Instant::now();
    let response = http(addr, "POST", "/v1/logs", "application/x-protobuf", &[])?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    if response.status != 200 {
        bail!("sink answered {}", response.status);
    }
    Ok(elapsed)
}

/// Post-runtime time per invocation when Contrail flushes at the end of every invocation.
pub(crate) async fn run(
    bench: &Bench,
    options: &Options,
    sink: &SinkHandle,
    results: &mut Results,
) -> Result<()> {
    let rounds = options.load_rounds();
    let contrail_env = vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint()),
        ("CONTRAIL_FLUSH", "end"),
    ]);
    let (with, _) = bench
        .minimal_rounds(
            "end mode",
            rounds,
            &contrail_env,
            END_INVOCATIONS,
            STEADY_LINES,
        )
        .await?;
    let addr = sink.local_addr();
    let rtts = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| export_round_trip(addr))
            .collect::<Result<Vec<f64>>>()
    })
    .await??;
    let rtt = median(&rtts)?;
    let a = post_runtime(&with)?;
    let budget = TELEMETRY_BUFFERING_MS + rtt + END_MODE_MARGIN_MS;
    results.rows.push(Row::new(
        "post-runtime per invocation, `CONTRAIL_FLUSH=end`: median",
        format!("{:.2} ms", a.median),
        format!(
            "≤ {TELEMETRY_BUFFERING_MS} ms + round trip {rtt:.2} ms + {END_MODE_MARGIN_MS} ms = {budget:.2} ms"
        ),
        Some(a.median <= budget),
    ));
    results.rows.push(Row::new(
        "post-runtime per invocation, `CONTRAIL_FLUSH=end`: p99",
        format!("{:.2} ms", a.p99),
        format!("≤ {budget:.2} ms"),
        Some(a.p99 <= budget),
    ));
    results.notes.push(format!(
        "End mode: {rounds} rounds × {END_INVOCATIONS} invocations ({} with Contrail), \
         exporting to the emulator's OTLP sink; the round trip is the median of 20 empty \
         `POST /v1/logs` to that sink, each on a new connection.",
        invocations(&with)
    ));
    Ok(())
}
