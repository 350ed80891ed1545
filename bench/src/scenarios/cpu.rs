//! Under Lambda's CPU model: Contrail beside the floor extension (`contrail-floor`: register,
//! subscribe, answer every delivery with 200, call `next`), at 128 MB for the budgets and at
//! 512 and 1,769 MB for the record. At 128 MB the environment gets 7 % of one CPU, shared by
//! the runtime and the extension, so every CPU millisecond the extension spends while the
//! function runs lengthens the billed invocation.
//!
//! Each round runs, interleaved (and in alternating order from round to round), Contrail and
//! the floor with a quiet function (two log lines and one SDK span per invocation) and with a
//! loud one (2,000 lines). Every figure is a ratio to the floor of the same round, and the
//! report gives the median over the rounds. "Steady" is after the first three invocations,
//! which adaptive flushing spends in `end` mode. CPU time is the extension's cgroup leaf
//! (every thread, microseconds), read at the end of each invocation.

use anyhow::{Context, Result, anyhow};
use contrail_sim::report::InvocationReport;
use contrail_sim::sink::SinkHandle;
use contrail_sim::{CgroupUse, InitCpu, ResourceModel, RunReport};

use super::PEAK_RSS_KB;
use crate::Options;
use crate::harness::{Bench, Ext, FLOOR, RunSpec, extension_report, median, vars};
use crate::report::{Results, Row};

/// The memory size the budgets hold at.
const BUDGET_MB: u32 = 128;
/// The sizes reported beside it.
const OTHER_MB: [u32; 2] = [512, 1769];
const INVOCATIONS: u32 = 30;
/// Invocations left out of the steady figures.
const WARM_UP: usize = 3;
const QUIET_LINES: u32 = 2;
/// The runtime's own CPU per invocation, as a small Python handler's.
const RUNTIME_WORK_MS: u32 = 2;
const LOUD_LINES: u32 = 2_000;
/// 20 × 2,000 = 40,000 lines for peak RSS.
const RSS_INVOCATIONS: u32 = 20;

/// Contrail's CPU per quiet invocation ÷ the floor's.
const QUIET_CPU_RATIO: f64 = 1.5;
/// Contrail's CPU per function log line (intake to export) ÷ the floor's.
const LINE_CPU_RATIO: f64 = 2.0;
/// Contrail's CPU from exec to its first `next`.
const FIRST_NEXT_CPU_MS: f64 = 1.0;
/// Steady mean invocation duration with Contrail ÷ with the floor, 128 MB.
const QUIET_DURATION_RATIO: f64 = 1.10;
const LOUD_DURATION_RATIO: f64 = 1.15;
/// The INIT phase with Contrail ÷ with the floor, 128 MB.
const INIT_RATIO: f64 = 1.05;

/// The model every run of this scenario uses: required, so that a machine without cgroups
/// skips the scenario instead of measuring something else.
fn model(init_cpu: InitCpu) -> ResourceModel {
    ResourceModel {
        cgroups: CgroupUse::Require,
        init_cpu,
        ..ResourceModel::default()
    }
}

/// The cumulative CPU of `process` at the end of `i`.
fn cpu_at(i: &InvocationReport, process: &str) -> Result<f64> {
    i.cpu
        .iter()
        .find(|p| p.process == process)
        .map(|p| p.cpu_ms)
        .ok_or_else(|| anyhow!("no CPU reading of {process}"))
}

/// What a run spent in its steady invocations.
#[derive(Clone, Copy)]
struct Steady {
    /// The extension's CPU per invocation.
    cpu_ms: f64,
    /// The mean invocation duration.
    duration_ms: f64,
    /// The INIT phase.
    init_ms: f64,
    /// Records the Telemetry API dropped because the extension fell behind.
    dropped: u64,
}

fn steady(report: &RunReport, process: &str) -> Result<Steady> {
    let inv = &report.invocations;
    let last = inv
        .len()
        .checked_sub(1)
        .filter(|l| *l > WARM_UP)
        .context("too few invocations")?;
    let n = (last - (WARM_UP - 1)) as f64;
    let cpu_ms = (cpu_at(&inv[last], process)? - cpu_at(&inv[WARM_UP - 1], process)?) / n;
    let duration_ms = inv[WARM_UP..].iter().map(|i| i.duration_ms).sum::<f64>() / n;
    Ok(Steady {
        cpu_ms,
        duration_ms,
        init_ms: report.init_ms.context("no init duration")?,
        dropped: report.telemetry.records_dropped,
    })
}

fn process_of(ext: Ext) -> &'static str {
    match ext {
        Ext::Floor => FLOOR,
        Ext::Contrail | Ext::Baseline | Ext::None => "contrail",
    }
}

/// One round at one size: (Contrail, floor) × (quiet, loud).
struct Round {
    quiet: [Steady; 2],
    loud: [Steady; 2],
    first_next_ms: [Option<f64>; 2],
}

struct Runner<'a> {
    bench: &'a Bench,
    env: Vec<(String, String)>,
}

impl Runner<'_> {
    async fn run(
        &self,
        ext: Ext,
        memory_mb: u32,
        invocations: u32,
        lines: u32,
        init_cpu: InitCpu,
    ) -> Result<RunReport> {
        let extra = vars(&[
            ("BENCH_LINES", &lines.to_string()),
            ("BENCH_WORK_MS", &RUNTIME_WORK_MS.to_string()),
        ]);
        self.bench
            .run_spec(&RunSpec {
                function: &self.bench.builtin,
                extension: ext,
                extension_env: &self.env,
                invocations,
                extra_env: &extra,
                memory_mb,
                resources: model(init_cpu),
                send_span: true,
                schedule: contrail_sim::Schedule::Burst,
                idle_gap: std::time::Duration::ZERO,
            })
            .await
    }

    async fn round(&self, memory_mb: u32, flip: bool) -> Result<Round> {
        let order = if flip {
            [Ext::Floor, Ext::Contrail]
        } else {
            [Ext::Contrail, Ext::Floor]
        };
        let slot = |ext: Ext| usize::from(ext == Ext::Floor);
        let mut quiet = [None, None];
        let mut loud = [None, None];
        let mut first_next_ms = [None, None];
        for lines in [QUIET_LINES, LOUD_LINES] {
            for ext in order {
                let r = self
                    .run(ext, memory_mb, INVOCATIONS, lines, InitCpu::Auto)
                    .await?;
                let s = steady(&r, process_of(ext))?;
                if lines == QUIET_LINES {
                    quiet[slot(ext)] = Some(s);
                    first_next_ms[slot(ext)] =
                        extension_report(&r, process_of(ext))?.cpu_to_first_next_ms;
                } else {
                    loud[slot(ext)] = Some(s);
                }
            }
        }
        let both = |pair: [Option<Steady>; 2]| -> Result<[Steady; 2]> {
            Ok([pair[0].context("run")?, pair[1].context("run")?])
        };
        Ok(Round {
            quiet: both(quiet)?,
            loud: both(loud)?,
            first_next_ms,
        })
    }
}

/// `a ÷ b` for every round, and the medians of a, b and of the ratios.
struct Ratio {
    ratio: f64,
    a: f64,
    b: f64,
    /// Records the Telemetry API dropped over the runs (Contrail's, the floor's).
    dropped: (u64, u64),
}

fn ratio(pairs: &[(f64, f64)]) -> Result<Ratio> {
    let ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
    Ok(Ratio {
        ratio: median(&ratios)?,
        a: median(&pairs.iter().map(|p| p.0).collect::<Vec<_>>())?,
        b: median(&pairs.iter().map(|p| p.1).collect::<Vec<_>>())?,
        dropped: (0, 0),
    })
}

/// The ratio of `side(round)` of Contrail to the floor, with what was dropped on each side.
fn ratio_of(
    rounds: &[Round],
    side: impl Fn(&Round) -> &[Steady; 2],
    f: impl Fn(&Steady) -> f64,
) -> Result<Ratio> {
    let pairs: Vec<(f64, f64)> = rounds
        .iter()
        .map(|r| (f(&side(r)[0]), f(&side(r)[1])))
        .collect();
    let mut r = ratio(&pairs)?;
    r.dropped = (
        rounds.iter().map(|r| side(r)[0].dropped).sum(),
        rounds.iter().map(|r| side(r)[1].dropped).sum(),
    );
    Ok(r)
}

/// `; the Telemetry API dropped …` when records were dropped: the extension fell behind, so
/// the figure counts less work than the function produced.
fn dropped((contrail, floor): (u64, u64)) -> String {
    if contrail == 0 && floor == 0 {
        String::new()
    } else {
        format!(
            "; **the Telemetry API dropped {contrail} records with Contrail, {floor} with the \
             floor** (the extension fell behind)"
        )
    }
}

fn ratio_row(what: String, r: &Ratio, unit: &str, scale: f64, budget: Option<f64>) -> Row {
    Row::new(
        what,
        format!(
            "{:.2} ({:.2} {unit} ÷ {:.2} {unit}){}",
            r.ratio,
            r.a * scale,
            r.b * scale,
            dropped(r.dropped)
        ),
        budget.map_or_else(|| "reported".to_owned(), |b| format!("≤ {b:.2}")),
        budget.map(|b| r.ratio <= b),
    )
}

/// Contrail beside the floor under the CPU model (see the module doc).
pub(crate) async fn run(
    bench: &Bench,
    options: &Options,
    sink: &SinkHandle,
    results: &mut Results,
) -> Result<()> {
    // Ratios of small CPU figures need more rounds than the load scenarios: half the start-up
    // rounds, rounded up.
    let rounds = options.rounds.div_ceil(2);
    let runner = Runner {
        bench,
        env: vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]),
    };
    // A machine without cgroups (or not root) cannot enforce the model: say so, measure nothing.
    let probe = match runner.run(Ext::Floor, BUDGET_MB, 1, 0, InitCpu::Auto).await {
        Ok(r) => r,
        Err(e) if format!("{e:#}").contains("cgroups:") => {
            results.notes.push(format!(
                "Under the CPU model: not measured, the emulator cannot enforce it here ({e:#})."
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut by_size = Vec::new();
    for memory_mb in std::iter::once(BUDGET_MB).chain(OTHER_MB) {
        let mut size_rounds = Vec::new();
        for round in 0..rounds {
            eprintln!(
                "bench: CPU model, {memory_mb} MB, Contrail and the floor ({}/{rounds})",
                round + 1
            );
            size_rounds.push(runner.round(memory_mb, round % 2 == 1).await?);
        }
        by_size.push((memory_mb, size_rounds));
    }

    let (_, at_budget) = &by_size[0];
    let pairs =
        |f: &dyn Fn(&Round) -> (f64, f64)| -> Vec<(f64, f64)> { at_budget.iter().map(f).collect() };
    let quiet_cpu = ratio_of(at_budget, |r| &r.quiet, |s| s.cpu_ms)?;
    let per_line = |r: &Round, i: usize| {
        (r.loud[i].cpu_ms - r.quiet[i].cpu_ms) / f64::from(LOUD_LINES - QUIET_LINES)
    };
    let mut line_cpu = ratio(&pairs(&|r| (per_line(r, 0), per_line(r, 1))))?;
    line_cpu.dropped = ratio_of(at_budget, |r| &r.loud, |s| s.cpu_ms)?.dropped;
    results.rows.push(ratio_row(
        format!(
            "CPU model, {BUDGET_MB} MB: CPU per quiet invocation ({QUIET_LINES} log lines, one \
             SDK span), Contrail ÷ floor"
        ),
        &quiet_cpu,
        "ms",
        1.0,
        Some(QUIET_CPU_RATIO),
    ));
    results.rows.push(ratio_row(
        format!("CPU model, {BUDGET_MB} MB: CPU per function log line, intake to export, Contrail ÷ floor"),
        &line_cpu,
        "µs",
        1000.0,
        Some(LINE_CPU_RATIO),
    ));
    let first_next: Vec<f64> = at_budget
        .iter()
        .filter_map(|r| r.first_next_ms[0])
        .collect();
    let floor_first_next: Vec<f64> = at_budget
        .iter()
        .filter_map(|r| r.first_next_ms[1])
        .collect();
    let (c, f) = (median(&first_next)?, median(&floor_first_next)?);
    results.rows.push(Row::new(
        "CPU model: Contrail's CPU from exec to its first `next`",
        format!("{c:.2} ms (floor: {f:.2} ms)"),
        format!("≤ {FIRST_NEXT_CPU_MS} ms"),
        Some(c <= FIRST_NEXT_CPU_MS),
    ));
    for (memory_mb, rounds) in &by_size {
        let budget = *memory_mb == BUDGET_MB;
        let quiet = ratio_of(rounds, |r| &r.quiet, |s| s.duration_ms)?;
        let loud = ratio_of(rounds, |r| &r.loud, |s| s.duration_ms)?;
        results.rows.push(ratio_row(
            format!("CPU model, {memory_mb} MB: steady mean invocation, Contrail ÷ floor, quiet function"),
            &quiet,
            "ms",
            1.0,
            budget.then_some(QUIET_DURATION_RATIO),
        ));
        results.rows.push(ratio_row(
            format!(
                "CPU model, {memory_mb} MB: steady mean invocation, Contrail ÷ floor, {LOUD_LINES} \
                 log lines per invocation"
            ),
            &loud,
            "ms",
            1.0,
            budget.then_some(LOUD_DURATION_RATIO),
        ));
    }
    let init = ratio_of(at_budget, |r| &r.quiet, |s| s.init_ms)?;
    results.rows.push(ratio_row(
        format!("CPU model, {BUDGET_MB} MB: INIT phase, Contrail ÷ floor (INIT unthrottled, the default on demand)"),
        &init,
        "ms",
        1.0,
        Some(INIT_RATIO),
    ));
    let mut throttled_init = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: CPU model, INIT throttled ({}/{rounds})", round + 1);
        let c = runner
            .run(Ext::Contrail, BUDGET_MB, 1, QUIET_LINES, InitCpu::Throttled)
            .await?;
        let f = runner
            .run(Ext::Floor, BUDGET_MB, 1, QUIET_LINES, InitCpu::Throttled)
            .await?;
        throttled_init.push((
            c.init_ms.context("no init duration")?,
            f.init_ms.context("no init duration")?,
        ));
    }
    results.rows.push(ratio_row(
        format!("CPU model, {BUDGET_MB} MB: INIT phase, Contrail ÷ floor (INIT throttled, as provisioned concurrency)"),
        &ratio(&throttled_init)?,
        "ms",
        1.0,
        Some(INIT_RATIO),
    ));
    let mut rss = Vec::new();
    let mut floor_rss = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: CPU model, 40,000 lines ({}/{rounds})", round + 1);
        for (ext, into) in [(Ext::Contrail, &mut rss), (Ext::Floor, &mut floor_rss)] {
            let r = runner
                .run(ext, BUDGET_MB, RSS_INVOCATIONS, LOUD_LINES, InitCpu::Auto)
                .await?;
            into.extend(
                extension_report(&r, process_of(ext))?
                    .peak_rss_kb
                    .map(|v| v as f64),
            );
        }
    }
    let (rss, floor_rss) = (median(&rss)?, median(&floor_rss)?);
    results.rows.push(Row::new(
        format!(
            "CPU model, {BUDGET_MB} MB: peak RSS of Contrail, {RSS_INVOCATIONS} invocations × \
             {LOUD_LINES} lines"
        ),
        format!(
            "{:.2} MB (floor: {:.2} MB)",
            rss / 1024.0,
            floor_rss / 1024.0
        ),
        format!("≤ {} MB", PEAK_RSS_KB / 1024),
        Some(rss <= PEAK_RSS_KB as f64),
    ));
    results.notes.push(format!(
        "CPU model: {}. Per size {rounds} rounds, each four runs of {INVOCATIONS} back-to-back \
         invocations of the minimal runtime spending {RUNTIME_WORK_MS} ms of CPU each (Contrail, \
         the floor; {QUIET_LINES} lines and one SDK span, {LOUD_LINES} lines), interleaved in alternating order; steady figures leave \
         out the first {WARM_UP} invocations; CPU per invocation is the extension's cgroup CPU \
         time over the steady invocations, per line the difference of the loud and the quiet \
         runs over {} lines. The floor also answers the SDK span (200) so that the function does \
         the same work with either. Figures are medians over the rounds of each round's ratio; \
         the ms beside them are medians of each side. INIT throttled: {rounds} pairs of \
         one-invocation runs. CPU from exec to the first `next` is the extension's cgroup CPU \
         at its first `next` less its CPU when `spawn` returned: the child joins its group \
         before `exec`, so the group also counts the end of the forked copy of the emulator \
         and the `exec`, which are not the extension's work.",
        probe.resources.summary,
        LOUD_LINES - QUIET_LINES
    ));
    Ok(())
}
