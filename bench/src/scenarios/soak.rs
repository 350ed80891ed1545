//! Soak: 10,000 invocations of a function that logs, frozen between invocations with an idle
//! gap, against the emulator's sink. Contrail's resident set and open descriptors are sampled
//! at every invocation (by the function, from `/proc`), and compared between the first and
//! the last 1,000; every line the function wrote must reach the sink exactly once, and
//! Contrail's own counters must add up.
//!
//! It takes minutes, so it runs only when named: `--only soak`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use contrail_sim::sink::SinkHandle;
use contrail_sim::{ResourceModel, Schedule};

use super::heavy::{counters, self_counter};
use crate::Options;
use crate::harness::{Bench, Ext, RunSpec, contrail_report, start_sink, vars};
use crate::report::{Results, Row};

const SOAK_INVOCATIONS: u32 = 10_000;
const SOAK_LINES: u32 = 10;
/// Frozen between two invocations for this long.
const SOAK_IDLE_GAP: Duration = Duration::from_millis(2);
/// Invocations at each end of the run that are compared; the first of them are the warm-up
/// (buffers, connections and allocator arenas reach their working size).
const WINDOW: usize = 1_000;
/// How much the resident set of the last 1,000 invocations may exceed the 1,000 after the
/// warm-up (medians): allocator slack, not growth with the number of invocations.
const RSS_GROWTH_KB: i64 = 256;

/// One sample the function took: invocation, `VmRSS` (kB), open descriptors.
struct Sample {
    rss_kb: u64,
    fds: usize,
}

fn read_samples(path: &std::path::Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .map(|line| {
            let mut parts = line.split_whitespace().skip(1);
            let rss_kb = parts.next().context("rss")?.parse()?;
            let fds = parts.next().context("fds")?.parse()?;
            Ok(Sample { rss_kb, fds })
        })
        .collect()
}

fn median_of(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Function lines the sink received.
fn function_lines(sink: &SinkHandle) -> usize {
    use opentelemetry_proto::tonic::common::v1::any_value;
    sink.snapshot()
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .filter(|r| {
            matches!(
                r.body.as_ref().and_then(|b| b.value.as_ref()),
                Some(any_value::Value::StringValue(s)) if s.contains("processed order")
            )
        })
        .count()
}

pub(crate) async fn run(bench: &Bench, _options: &Options, results: &mut Results) -> Result<()> {
    eprintln!("bench: soak, {SOAK_INVOCATIONS} invocations");
    let sink = start_sink().await?;
    let samples = tempfile::NamedTempFile::new()?;
    let extra = vars(&[
        ("BENCH_LINES", &SOAK_LINES.to_string()),
        ("BENCH_SAMPLES", &samples.path().display().to_string()),
        ("BENCH_SAMPLE_EXTENSION", "contrail"),
    ]);
    let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
    let started = std::time::Instant::now();
    let report = bench
        .run_spec(&RunSpec {
            function: &bench.builtin,
            extension: Ext::Contrail,
            extension_env: &contrail_env,
            invocations: SOAK_INVOCATIONS,
            extra_env: &extra,
            memory_mb: 512,
            resources: ResourceModel::off(),
            send_span: false,
            schedule: Schedule::Burst,
            idle_gap: SOAK_IDLE_GAP,
        })
        .await?;
    let took = started.elapsed();
    let samples = read_samples(samples.path())?;
    if samples.len() != SOAK_INVOCATIONS as usize {
        bail!(
            "soak: {} samples for {SOAK_INVOCATIONS} invocations",
            samples.len()
        );
    }
    let first = &samples[..WINDOW];
    let last = &samples[samples.len() - WINDOW..];
    let rss = |s: &[Sample]| median_of(s.iter().map(|x| x.rss_kb).collect());
    let max_rss = |s: &[Sample]| s.iter().map(|x| x.rss_kb).max().unwrap_or(0);
    let fds = |s: &[Sample]| {
        (
            s.iter().map(|x| x.fds).min().unwrap_or(0),
            s.iter().map(|x| x.fds).max().unwrap_or(0),
        )
    };
    let (rss_first, rss_last) = (rss(first), rss(last));
    let rss_warm = rss(&samples[WINDOW..2 * WINDOW]);
    let growth = rss_last as i64 - rss_warm as i64;
    let ((fd_first_min, fd_first_max), (fd_last_min, fd_last_max)) = (fds(first), fds(last));
    // The median of each 1,000 in turn: growth that levels off, or growth that goes on.
    let windows: Vec<String> = samples.chunks(WINDOW).map(|w| rss(w).to_string()).collect();
    let peak = contrail_report(&report)?.peak_rss_kb.unwrap_or(0);
    let lines = function_lines(&sink);
    let expected = (SOAK_INVOCATIONS * SOAK_LINES) as usize;
    let dropped = self_counter(&sink, "contrail.records.dropped");
    let received = self_counter(&sink, "contrail.records.received");
    let telemetry_received = received
        .iter()
        .find(|(k, _)| k == "source=telemetry_api")
        .map_or(0, |(_, v)| *v);
    let t = &report.telemetry;

    results.rows.push(Row::new(
        format!("soak: RSS of Contrail, median of the first {WINDOW} invocations → the last"),
        format!(
            "{rss_first} kB → {rss_last} kB ({:+} kB)",
            rss_last as i64 - rss_first as i64
        ),
        "—",
        None,
    ));
    results.rows.push(Row::new(
        format!(
            "soak: RSS of Contrail after the warm-up, median of invocations {}–{} → the last {WINDOW}",
            WINDOW + 1,
            2 * WINDOW
        ),
        format!("{rss_warm} kB → {rss_last} kB ({growth:+} kB)"),
        format!("≤ {RSS_GROWTH_KB} kB"),
        Some(growth <= RSS_GROWTH_KB),
    ));
    results.rows.push(Row::new(
        "soak: open descriptors of Contrail, first vs last 1,000 invocations (min–max)",
        format!("{fd_first_min}–{fd_first_max} → {fd_last_min}–{fd_last_max}"),
        "no growth",
        Some(fd_last_max <= fd_first_max),
    ));
    results.rows.push(Row::new(
        format!("soak: function lines at the sink, of {expected} written"),
        lines.to_string(),
        "all, once",
        Some(lines == expected),
    ));
    results.rows.push(Row::new(
        "soak: records Contrail dropped (self-reported)",
        counters(&dropped),
        "0",
        Some(dropped.is_empty()),
    ));
    results.notes.push(format!(
        "Soak: {SOAK_INVOCATIONS} invocations of the minimal runtime printing {SOAK_LINES} \
         lines each, the environment frozen for {} ms between invocations, exporting to the \
         emulator's sink; {:.0} s. The function sampled Contrail's `VmRSS` and `/proc/PID/fd` \
         at each invocation: first {WINDOW} median {rss_first} kB (max {}), last {WINDOW} \
         median {rss_last} kB (max {}); the median of each 1,000 in turn, kB: {}; peak \
         (`VmHWM`) {:.2} MB. Counters: the emulator \
         delivered {} Telemetry API records ({} dropped by its queue, {} undelivered), \
         Contrail counted {telemetry_received} received from the Telemetry API; the sink got \
         {lines} of the {expected} function lines, so lines written = exported + dropped \
         ({}) + held (0 after the shutdown flush).",
        SOAK_IDLE_GAP.as_millis(),
        took.as_secs_f64(),
        max_rss(first),
        max_rss(last),
        windows.join(", "),
        peak as f64 / 1024.0,
        t.records_delivered,
        t.records_dropped,
        t.records_undelivered,
        counters(&dropped),
    ));
    sink.shutdown().await;
    Ok(())
}
