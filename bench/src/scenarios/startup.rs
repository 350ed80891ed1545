//! Start-up: spawn → register, spawn → first `next`, and the init phase with and without
//! Contrail, for each function there is (the minimal runtime, the Rust sample, Python); with
//! `--baseline`, the same spawn figures and idle memory of the baseline build, run in the same
//! rounds.

use std::path::Path;

use anyhow::Result;
use contrail_sim::report::ExtensionReport;

use super::PEAK_RSS_KB;
use crate::Options;
use crate::harness::{Bench, contrail_report, median, vars};
use crate::report::{Results, Row};

const SPAWN_TO_REGISTER_MS: f64 = 3.0;
const SPAWN_TO_FIRST_NEXT_MS: f64 = 7.0;
const INIT_RATIO: f64 = 1.10;
/// Spawn → first `next` with SigV4 and a Secrets Manager header configured ÷ without: nothing
/// of either may run before the first `next` (ADR 0012); the margin is the machine's noise.
const AWS_FIRST_NEXT_RATIO: f64 = 1.10;
/// The A/B runs this many times the start-up rounds.
const AB_ROUNDS_FACTOR: u32 = 3;
/// A Secrets Manager ARN in a header: the resolver is set up, and waits for the first INVOKE.
const SECRET_HEADER: &str =
    "x-api-key=${arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-key-AbCdEf}";
/// An https endpoint nothing listens on: no name lookup, and nothing is sent before the first
/// invocation anyway.
const UNREACHABLE_HTTPS: &str = "https://127.0.0.1:9";

/// Spawn → register, spawn → first next, and the init phase with and without Contrail.
pub(crate) async fn run(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", UNREACHABLE_HTTPS)]);
    let mut functions = vec![bench.builtin.clone()];
    functions.extend(bench.sample_rust.clone());
    functions.extend(bench.python.clone());
    let mut register = Vec::new();
    let mut first_next = Vec::new();
    let mut idle_rss = Vec::new();
    let mut baseline = Spawns::default();
    for function in &functions {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for round in 0..options.rounds {
            eprintln!(
                "bench: start-up, {} ({}/{})",
                function.label,
                round + 1,
                options.rounds
            );
            let (a, b) = bench.pair(function, &contrail_env, 1, &[]).await?;
            let ext = contrail_report(&a)?;
            register.extend(ext.spawn_to_register_ms);
            idle_rss.extend(ext.peak_rss_kb.map(|v| v as f64));
            first_next.extend(ext.spawn_to_first_next_ms);
            if let Some(c) = bench.run_baseline(function, &contrail_env, 1).await? {
                baseline.add(contrail_report(&c)?);
            }
            with.extend(a.init_ms);
            without.extend(b.init_ms);
        }
        let (w, wo) = (median(&with)?, median(&without)?);
        let ratio = w / wo;
        results.rows.push(Row::new(
            format!("init phase with Contrail ÷ without, {}", function.label),
            format!("{ratio:.2} ({w:.1} ms ÷ {wo:.1} ms)"),
            format!("≤ {INIT_RATIO:.2}"),
            Some(ratio <= INIT_RATIO),
        ));
    }
    // The same minimal function, plain and with SigV4 and a secret, interleaved.
    let aws_env = vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", UNREACHABLE_HTTPS),
        ("CONTRAIL_EXPORTER_OTLP_AUTH", "sigv4"),
        ("CONTRAIL_EXPORTER_OTLP_SIGV4_SERVICE", "xray"),
        ("CONTRAIL_EXPORTER_OTLP_HEADERS", SECRET_HEADER),
        ("AWS_ENDPOINT_URL", UNREACHABLE_HTTPS),
    ]);
    // A second plain side: how far two sides of the same build land apart in this run.
    let (mut plain, mut aws, mut again) = (Vec::new(), Vec::new(), Vec::new());
    // Spawn → first `next` spreads over 2–5 ms unthrottled, run to run: a tenth apart needs
    // more rounds than the other rows.
    let ab_rounds = options.rounds * AB_ROUNDS_FACTOR;
    for round in 0..ab_rounds {
        eprintln!(
            "bench: start-up, SigV4 and secrets A/B ({}/{ab_rounds})",
            round + 1,
        );
        // Each round in another order, so that what the machine did just before falls on
        // every side alike.
        let mut sides = [
            (&contrail_env, &mut plain),
            (&aws_env, &mut aws),
            (&contrail_env, &mut again),
        ];
        let n = sides.len();
        sides.rotate_left(round as usize % n);
        for (env, out) in sides {
            let report = bench.run(&bench.builtin, Some(env), 1, &[]).await?;
            out.extend(contrail_report(&report)?.spawn_to_first_next_ms);
        }
    }
    let (p, a, p2) = (median(&plain)?, median(&aws)?, median(&again)?);
    let aws_ratio = a / p;
    results.rows.push(Row::new(
        "spawn → first `next` with SigV4 and a Secrets Manager header ÷ without, minimal runtime",
        format!("{aws_ratio:.2} ({a:.2} ms ÷ {p:.2} ms)"),
        format!("≤ {AWS_FIRST_NEXT_RATIO:.2}"),
        Some(aws_ratio <= AWS_FIRST_NEXT_RATIO),
    ));
    results.rows.push(Row::new(
        "the same without ÷ without (a second plain side of the same rounds: the noise)",
        format!("{:.2} ({p2:.2} ms ÷ {p:.2} ms)", p2 / p),
        "—".to_owned(),
        None,
    ));
    let (r, n) = (median(&register)?, median(&first_next)?);
    results.rows.insert(
        0,
        Row::new(
            "spawn → register",
            format!("{r:.2} ms"),
            format!("≤ {SPAWN_TO_REGISTER_MS} ms"),
            Some(r <= SPAWN_TO_REGISTER_MS),
        ),
    );
    results.rows.insert(
        1,
        Row::new(
            "spawn → first `next`",
            format!("{n:.2} ms"),
            format!("≤ {SPAWN_TO_FIRST_NEXT_MS} ms"),
            Some(n <= SPAWN_TO_FIRST_NEXT_MS),
        ),
    );
    let idle = median(&idle_rss)?;
    results.rows.push(Row::new(
        "peak RSS of Contrail, start-up runs (one invocation, nothing exported)",
        format!("{:.2} MB", idle / 1024.0),
        format!("≤ {} MB", PEAK_RSS_KB / 1024),
        Some(idle <= PEAK_RSS_KB as f64),
    ));
    results.notes.push(format!(
        "Start-up: {} rounds per function, each a run with Contrail and a run without any \
         extension, one invocation each; Contrail exports to `{UNREACHABLE_HTTPS}`. Spawn \
         figures are medians over all {} runs with Contrail.",
        options.rounds,
        register.len()
    ));
    results.notes.push(format!(
        "SigV4 and secrets A/B: {} rounds of the minimal runtime, each a run exporting to \
         `{UNREACHABLE_HTTPS}`, a run that also signs it (`CONTRAIL_EXPORTER_OTLP_AUTH=sigv4`) \
         and names a Secrets Manager secret in a header, and a second plain run, in rotating \
         order; medians of spawn → first `next`.",
        options.rounds * AB_ROUNDS_FACTOR
    ));
    if let Some(base) = &bench.baseline {
        baseline.report(&base.path, [r, n, idle], results)?;
    }
    Ok(())
}

/// The spawn figures and idle memory of the baseline build's runs.
#[derive(Default)]
struct Spawns {
    register: Vec<f64>,
    first_next: Vec<f64>,
    rss_kb: Vec<f64>,
}

impl Spawns {
    fn add(&mut self, ext: &ExtensionReport) {
        self.register.extend(ext.spawn_to_register_ms);
        self.first_next.extend(ext.spawn_to_first_next_ms);
        self.rss_kb.extend(ext.peak_rss_kb.map(|v| v as f64));
    }

    /// Rows beside this build's `[register, first next, idle RSS]`, unbudgeted: the baseline
    /// is whatever the command line named.
    fn report(&self, path: &Path, this: [f64; 3], results: &mut Results) -> Result<()> {
        let (r, n, rss) = (
            median(&self.register)?,
            median(&self.first_next)?,
            median(&self.rss_kb)?,
        );
        let name = path.display();
        let rows = [
            (
                "spawn → register",
                format!("{r:.2} ms (this build {:+.2} ms)", this[0] - r),
            ),
            (
                "spawn → first `next`",
                format!("{n:.2} ms (this build {:+.2} ms)", this[1] - n),
            ),
            (
                "peak RSS of Contrail, start-up runs",
                format!(
                    "{:.2} MB (this build {:+.2} MB)",
                    rss / 1024.0,
                    (this[2] - rss) / 1024.0
                ),
            ),
        ];
        for (what, figure) in rows {
            results.rows.push(Row::new(
                format!("{what}, baseline `{name}`"),
                figure,
                "—",
                None,
            ));
        }
        results.notes.push(format!(
            "Baseline: `{name}` ran in the same start-up rounds, after each pair, with the same \
             configuration ({} runs); its figures are medians like this build's.",
            self.register.len()
        ));
        Ok(())
    }
}
