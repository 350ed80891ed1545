//! A sick backend: for 5 s in the middle of a run the sink refuses connections, answers 503,
//! answers 429 with `Retry-After`, or answers after 300 ms. Per fault and per function (a
//! sparse one in `end` mode, a busy one that logs 2,000 lines per invocation in `adaptive`
//! mode), how many invocations spent more than the telemetry buffering time plus 5 ms after
//! the runtime was done, and whether every line still arrived exactly once or was counted as
//! dropped. Then the busy path on a healthy backend: 2,000 lines per invocation, back to back,
//! beside the floor extension.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use contrail_sim::sink::{Behaviour, SinkHandle};
use contrail_sim::{ResourceModel, RunReport, Schedule};

use super::heavy::self_counter;
use crate::Options;
use crate::harness::{Bench, Ext, RunSpec, start_sink, vars};
use crate::report::{Results, Row};
use crate::runtime::UNIQUE_PREFIX;

/// The Telemetry API's batching delay in these runs (`CONTRAIL_TELEMETRY_TIMEOUT_MS`).
const TELEMETRY_BUFFERING_MS: f64 = 25.0;
/// What an invocation may spend after the runtime is done beyond the batching delay.
const MARGIN_MS: f64 = 5.0;
/// Invocations per outage allowed over that: the one whose flush finds the backend sick.
const SLOW_PER_OUTAGE: usize = 1;
/// When the fault starts after the run does, and how long it lasts.
const HEALTHY_BEFORE: Duration = Duration::from_secs(1);
const OUTAGE: Duration = Duration::from_secs(5);
/// Invocation starts are this far apart; the runs last this many of them (8 s).
const SPACING: Duration = Duration::from_millis(50);
const INVOCATIONS: u32 = 160;
const SPARSE_LINES: u32 = 10;
const BUSY_LINES: u32 = 2_000;
/// The busy path beside the floor: invocations per run, rounds, and the first invocations
/// left out of the mean (start-up, the mode switch).
const FLOOR_INVOCATIONS: u32 = 40;
const FLOOR_ROUNDS: u32 = 2;
const FLOOR_SKIP: usize = 3;
/// Contrail's mean invocation duration may exceed the floor's by this share.
const FLOOR_RATIO: f64 = 1.10;

fn faults() -> [(&'static str, Behaviour); 4] {
    [
        ("refusing connections", Behaviour::Refuse),
        (
            "answering 503",
            Behaviour::Status {
                code: 503,
                retry_after: None,
            },
        ),
        (
            "answering 429 with `Retry-After: 1`",
            Behaviour::Status {
                code: 429,
                retry_after: Some(Duration::from_secs(1)),
            },
        ),
        (
            "answering after 300 ms",
            Behaviour::Delay(Duration::from_millis(300)),
        ),
    ]
}

/// How many times each unique line reached the sink.
fn unique_lines(sink: &SinkHandle) -> HashMap<String, usize> {
    use opentelemetry_proto::tonic::common::v1::any_value;
    let mut seen = HashMap::new();
    for request in &sink.snapshot().logs {
        for record in request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            if let Some(any_value::Value::StringValue(body)) =
                record.body.as_ref().and_then(|b| b.value.as_ref())
                && let Some(rest) = body.strip_prefix(UNIQUE_PREFIX)
            {
                let key = rest.split(' ').next().unwrap_or_default().to_owned();
                *seen.entry(key).or_insert(0) += 1;
            }
        }
    }
    seen
}

struct Outcome {
    /// Slow invocations after the first `skip`.
    slow: usize,
    /// All slow invocations: (number from 1, post-runtime ms).
    which: Vec<(usize, f64)>,
    worst_ms: f64,
    median_ms: f64,
    arrived: usize,
    duplicated: usize,
    dropped: i64,
    expected: usize,
}

async fn one(
    bench: &Bench,
    fault: &Behaviour,
    end_mode: bool,
    lines: u32,
    skip: usize,
) -> Result<(Outcome, RunReport)> {
    let sink = start_sink().await?;
    let endpoint = sink.endpoint();
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    if end_mode {
        env.push(("CONTRAIL_FLUSH", "end"));
    }
    let extension_env = vars(&env);
    let lines_text = lines.to_string();
    let extra_env = vars(&[("BENCH_LINES", &lines_text), ("BENCH_UNIQUE_LINES", "1")]);
    let spec = RunSpec {
        function: &bench.builtin,
        extension: Ext::Contrail,
        extension_env: &extension_env,
        invocations: INVOCATIONS,
        extra_env: &extra_env,
        memory_mb: 512,
        resources: ResourceModel::off(),
        send_span: false,
        schedule: Schedule::Interval(SPACING),
        idle_gap: Duration::ZERO,
    };
    let script = async {
        tokio::time::sleep(HEALTHY_BEFORE).await;
        sink.set_behaviour(fault.clone()).await?;
        tokio::time::sleep(OUTAGE).await;
        sink.set_behaviour(Behaviour::Accept).await?;
        anyhow::Ok(())
    };
    let (report, scripted) = tokio::join!(bench.run_spec(&spec), script);
    let report = report?;
    scripted?;
    let limit = TELEMETRY_BUFFERING_MS + MARGIN_MS;
    let post: Vec<f64> = report
        .invocations
        .iter()
        .map(|i| i.post_runtime_ms)
        .collect();
    let seen = unique_lines(&sink);
    let dropped = self_counter(&sink, "contrail.records.dropped")
        .iter()
        .map(|(_, v)| *v)
        .sum();
    let outcome = Outcome {
        slow: post.iter().skip(skip).filter(|ms| **ms > limit).count(),
        which: post
            .iter()
            .enumerate()
            .filter(|(_, ms)| **ms > limit)
            .map(|(i, ms)| (i + 1, *ms))
            .collect(),
        worst_ms: post.iter().copied().fold(0.0, f64::max),
        median_ms: crate::harness::median(&post)?,
        arrived: seen.len(),
        duplicated: seen.values().filter(|n| **n > 1).count(),
        dropped,
        expected: (INVOCATIONS * lines) as usize,
    };
    sink.shutdown().await;
    Ok((outcome, report))
}

/// Mean invocation duration after the first [`FLOOR_SKIP`].
fn steady_mean(report: &RunReport) -> Result<f64> {
    let values: Vec<f64> = report
        .invocations
        .iter()
        .skip(FLOOR_SKIP)
        .map(|i| i.duration_ms)
        .collect();
    if values.is_empty() {
        bail!("no invocations after the first {FLOOR_SKIP}");
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

async fn busy_beside_the_floor(bench: &Bench, results: &mut Results) -> Result<()> {
    let sink = start_sink().await?;
    let extension_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
    let lines_text = BUSY_LINES.to_string();
    let extra_env = vars(&[("BENCH_LINES", &lines_text)]);
    let (mut contrail, mut floor) = (Vec::new(), Vec::new());
    let (mut slow, mut worst) = (0, 0.0f64);
    let mut parts = Vec::new();
    for round in 0..FLOOR_ROUNDS {
        eprintln!(
            "bench: busy path beside the floor ({}/{FLOOR_ROUNDS})",
            round + 1
        );
        for ext in [Ext::Contrail, Ext::Floor] {
            let report = bench
                .run_spec(&RunSpec {
                    function: &bench.builtin,
                    extension: ext,
                    extension_env: &extension_env,
                    invocations: FLOOR_INVOCATIONS,
                    extra_env: &extra_env,
                    memory_mb: 512,
                    resources: ResourceModel::off(),
                    send_span: false,
                    schedule: Schedule::Burst,
                    idle_gap: Duration::ZERO,
                })
                .await?;
            let mean = steady_mean(&report)?;
            let part = |f: fn(&contrail_sim::report::InvocationReport) -> f64| {
                let v: Vec<f64> = report.invocations.iter().skip(FLOOR_SKIP).map(f).collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            parts.push(format!(
                "{} round {}: runtime {:.2} ms + post-runtime {:.2} ms",
                if ext == Ext::Contrail {
                    "Contrail"
                } else {
                    "floor"
                },
                round + 1,
                part(|i| i.runtime_duration_ms),
                part(|i| i.post_runtime_ms)
            ));
            if ext == Ext::Contrail {
                contrail.push(mean);
                for i in report.invocations.iter().skip(FLOOR_SKIP) {
                    worst = worst.max(i.post_runtime_ms);
                    if i.post_runtime_ms > TELEMETRY_BUFFERING_MS + MARGIN_MS {
                        slow += 1;
                    }
                }
            } else {
                floor.push(mean);
            }
        }
    }
    sink.shutdown().await;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (c, f) = (mean(&contrail), mean(&floor));
    let ratio = c / f;
    results.rows.push(Row::new(
        format!(
            "busy path: {BUSY_LINES} lines per invocation back to back, mean invocation after the first {FLOOR_SKIP}, Contrail ÷ floor"
        ),
        format!("{c:.2} ms ÷ {f:.2} ms = {ratio:.2}"),
        format!("≤ {FLOOR_RATIO:.2}"),
        Some(ratio <= FLOOR_RATIO),
    ));
    results.rows.push(Row::new(
        format!(
            "busy path: invocations after the first {FLOOR_SKIP} over {TELEMETRY_BUFFERING_MS} + {MARGIN_MS} ms after the runtime was done"
        ),
        format!("{slow} (worst {worst:.1} ms)"),
        "0".to_owned(),
        Some(slow == 0),
    ));
    results.notes.push(format!(
        "Busy path: {FLOOR_ROUNDS} rounds × {FLOOR_INVOCATIONS} invocations of the minimal \
         runtime printing {BUSY_LINES} lines, back to back, unthrottled at 512 MB, with Contrail \
         (defaults, exporting to the sink) and with the floor extension interleaved; the mean \
         leaves out the first {FLOOR_SKIP} invocations of each run. Mean parts: {}.",
        parts.join("; ")
    ));
    Ok(())
}

/// Every fault × both functions, then the busy path beside the floor.
pub(crate) async fn run(bench: &Bench, _options: &Options, results: &mut Results) -> Result<()> {
    let limit = TELEMETRY_BUFFERING_MS + MARGIN_MS;
    for (name, fault) in faults() {
        // Adaptive mode spends the first invocations in `end`: the busy function's end
        // flushes there are not the outage's (the busy path below judges them).
        for (kind, end_mode, lines, skip, which) in [
            ("sparse (`end`)", true, SPARSE_LINES, 0, String::new()),
            (
                "busy (`adaptive`)",
                false,
                BUSY_LINES,
                FLOOR_SKIP,
                format!(" after the first {FLOOR_SKIP}"),
            ),
        ] {
            eprintln!("bench: backend {name}, {kind} function");
            let (o, _) = one(bench, &fault, end_mode, lines, skip).await?;
            results.rows.push(Row::new(
                format!(
                    "backend {name} for 5 s, {kind}, {lines} lines: invocations{which} over {limit} ms after the runtime was done"
                ),
                format!(
                    "{} (median {:.1} ms, worst {:.1} ms{})",
                    o.slow,
                    o.median_ms,
                    o.worst_ms,
                    o.which
                        .iter()
                        .map(|(n, ms)| format!("; #{n}: {ms:.1} ms"))
                        .collect::<String>()
                ),
                format!("≤ {SLOW_PER_OUTAGE}"),
                Some(o.slow <= SLOW_PER_OUTAGE),
            ));
            let complete = o.duplicated == 0
                && o.arrived <= o.expected
                && o.arrived as i64 + o.dropped >= o.expected as i64;
            results.rows.push(Row::new(
                format!("backend {name} for 5 s, {kind}: lines arrived once / dropped (counted) / written"),
                format!(
                    "{} / {} / {} ({} duplicated)",
                    o.arrived, o.dropped, o.expected, o.duplicated
                ),
                "arrived + dropped = written, none twice".to_owned(),
                Some(complete),
            ));
        }
    }
    results.notes.push(format!(
        "Sick backend: each run is {INVOCATIONS} invocations of the minimal runtime started \
         {} ms apart, exporting to the emulator's sink, which is healthy for the first {} s, \
         then refuses connections, answers 503, answers 429 with `Retry-After: 1`, or answers \
         after 300 ms (`Behaviour::Delay`: a request whose client gave up first is not kept) \
         for {} s, then is healthy again. The count of slow invocations is over the whole run \
         (before, during and after the outage), for the busy function after its first \
         {FLOOR_SKIP}, which adaptive mode spends in `end` (every slow one is listed); dropped \
         is Contrail's own last reported `contrail.records.dropped` (every reason, so it may include records that are not lines).",
        SPACING.as_millis(),
        HEALTHY_BEFORE.as_secs(),
        OUTAGE.as_secs()
    ));
    busy_beside_the_floor(bench, results).await
}
