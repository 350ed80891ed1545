//! What `contrail-sim tune` computes from its runs, without I/O: per memory size the cold
//! start, the median and p99 of the warm invocations, the extensions' share of the median (the
//! run with them against the run without), and the cost of a million invocations on each
//! architecture; the cheapest and the fastest size; and the table that prints it.
//!
//! The cost follows Lambda's pricing: `billed duration (s) × memory (GB, MB / 1024) × price per
//! GB-s + price per request`, with the mean billed duration of the warm invocations. Cold
//! starts (billed since August 2025) depend on traffic, so they are shown and not added in.

use std::fmt::Write as _;

use crate::report::{RunReport, Summary};

// The extension's table of Lambda's list prices, compiled here too: one table, so that the
// emulator's estimates and the extension's cost metrics never disagree. A path include rather
// than a shared crate: the file is pure data, and neither crate is published.
#[allow(dead_code)]
#[path = "../../extension/src/mapping/prices.rs"]
mod prices;

/// Lambda's prices (us-east-1, the first duration tier, no free tier).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// x86_64, $ per GB-second.
    pub x86_64_gb_s: f64,
    /// arm64, $ per GB-second.
    pub arm64_gb_s: f64,
    /// $ per million requests (both architectures).
    pub per_million_requests: f64,
}

impl Default for Prices {
    fn default() -> Self {
        let p = prices::US_EAST_1;
        Prices {
            x86_64_gb_s: p.x86_64_gb_second,
            arm64_gb_s: p.arm64_gb_second,
            per_million_requests: p.per_million_requests,
        }
    }
}

/// The cost of a million invocations billed `mean_billed_ms` each at `memory_mb`.
pub fn cost_per_million(
    price_gb_s: f64,
    per_million_requests: f64,
    memory_mb: u32,
    mean_billed_ms: f64,
) -> f64 {
    let gb_s = mean_billed_ms / 1000.0 * f64::from(memory_mb) / 1024.0;
    1e6 * gb_s * price_gb_s + per_million_requests
}

/// What one memory size measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeResult {
    /// The memory size.
    pub memory_mb: u32,
    /// The INIT phase of the cold start.
    pub cold_start_ms: Option<f64>,
    /// The warm invocations' durations (with the extensions).
    pub warm: Summary,
    /// The median warm duration without the extensions, if that was run.
    pub baseline_median_ms: Option<f64>,
    /// The extensions' CPU time per warm invocation.
    pub extensions_cpu_ms: Option<f64>,
    /// The mean billed duration of the warm invocations.
    pub mean_billed_ms: f64,
    /// $ per million invocations on x86_64 and arm64.
    pub cost_x86_64: f64,
    /// See `cost_x86_64`.
    pub cost_arm64: f64,
    /// The invocations that did not succeed, with their error types (`Runtime.OutOfMemory`).
    pub failures: Vec<String>,
    /// The CPU share was enforced in both runs.
    pub throttled: bool,
}

/// A baseline this much slower than the run with the extensions is not the function alone:
/// something in it waited for them (an SDK exporting to their receiver, retrying).
const BASELINE_SLOWER: f64 = 1.25;

impl SizeResult {
    /// The extensions' share of the median: `(with − without) / with`, unless the run without
    /// them was much slower (see [`SizeResult::baseline_waited`]).
    pub fn extensions_share(&self) -> Option<(f64, f64)> {
        let base = self.baseline_median_ms?;
        if self.baseline_waited() {
            return None;
        }
        let added = self.warm.median - base;
        Some((added, added / self.warm.median))
    }

    /// The function was much slower without the extensions than with them: it waits for them
    /// (its SDK exports to their receiver), so the run without is no baseline.
    pub fn baseline_waited(&self) -> bool {
        self.baseline_median_ms
            .is_some_and(|base| base > self.warm.median * BASELINE_SLOWER)
    }

    /// Takes part in choosing the cheapest and the fastest size.
    fn usable(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The invocations of `report` that are not the first of their environment (its cold start).
fn warm(report: &RunReport) -> Vec<&crate::report::InvocationReport> {
    let mut seen = Vec::new();
    report
        .invocations
        .iter()
        .filter(|i| {
            let first = !seen.contains(&i.environment);
            if first {
                seen.push(i.environment);
            }
            !first
        })
        .collect()
}

/// The extensions' CPU per warm invocation of the first environment: the difference of their
/// cumulative CPU time from the end of its first invocation to the end of its last.
fn extensions_cpu(report: &RunReport) -> Option<f64> {
    let of = |i: &crate::report::InvocationReport| -> f64 {
        i.cpu
            .iter()
            .filter(|p| p.process != "runtime")
            .map(|p| p.cpu_ms)
            .sum()
    };
    let first_env: Vec<_> = report
        .invocations
        .iter()
        .filter(|i| i.environment == 0)
        .collect();
    let (first, last) = (first_env.first()?, first_env.last()?);
    let n = first_env.len().checked_sub(1).filter(|n| *n > 0)?;
    if !report.extensions.iter().any(|e| e.environment == 0) {
        return None;
    }
    Some((of(last) - of(first)) / n as f64)
}

/// The figures of one memory size from its run with the extensions and, if there was one,
/// the run without.
pub fn size_result(
    memory_mb: u32,
    with: &RunReport,
    without: Option<&RunReport>,
    prices: &Prices,
) -> Result<SizeResult, String> {
    let warm_with = warm(with);
    let durations: Vec<f64> = warm_with.iter().map(|i| i.duration_ms).collect();
    let Some(summary) = Summary::of(&durations) else {
        return Err(format!(
            "{memory_mb} MB: no warm invocation (at least 2 invocations are needed)"
        ));
    };
    let mut failures: Vec<String> = with
        .invocations
        .iter()
        .chain(without.map_or(&[][..], |w| &w.invocations))
        .filter(|i| i.status != "success")
        .map(|i| match &i.error_type {
            Some(e) => format!("{} ({e})", i.status),
            None => i.status.clone(),
        })
        .collect();
    failures.sort();
    let billed: Vec<f64> = warm_with
        .iter()
        .map(|i| i.billed_duration_ms as f64)
        .collect();
    let mean_billed_ms = billed.iter().sum::<f64>() / billed.len() as f64;
    let baseline_median_ms = without
        .and_then(|w| Summary::of(&warm(w).iter().map(|i| i.duration_ms).collect::<Vec<_>>()))
        .map(|s| s.median);
    Ok(SizeResult {
        memory_mb,
        cold_start_ms: with.init_ms,
        warm: summary,
        baseline_median_ms,
        extensions_cpu_ms: extensions_cpu(with),
        mean_billed_ms,
        cost_x86_64: cost_per_million(
            prices.x86_64_gb_s,
            prices.per_million_requests,
            memory_mb,
            mean_billed_ms,
        ),
        cost_arm64: cost_per_million(
            prices.arm64_gb_s,
            prices.per_million_requests,
            memory_mb,
            mean_billed_ms,
        ),
        failures,
        throttled: with.resources.cpu_enforced && without.is_none_or(|w| w.resources.cpu_enforced),
    })
}

/// The index of the cheapest usable size (x86_64 and arm64 order the sizes alike), the faster
/// one on a tie.
pub fn cheapest(results: &[SizeResult]) -> Option<usize> {
    best(results, |r| (r.cost_x86_64, r.warm.median))
}

/// The index of the size with the lowest median, the cheaper one on a tie.
pub fn fastest(results: &[SizeResult]) -> Option<usize> {
    best(results, |r| (r.warm.median, r.cost_x86_64))
}

fn best(results: &[SizeResult], key: impl Fn(&SizeResult) -> (f64, f64)) -> Option<usize> {
    results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.usable())
        .min_by(|(_, a), (_, b)| {
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
        .map(|(i, _)| i)
}

/// What the table's header says about how it was measured.
#[derive(Debug, Clone)]
pub struct TuneContext {
    /// Invocations per run.
    pub invocations: u32,
    /// The runs without the extensions were made.
    pub baseline: bool,
    /// The resource model of the runs (one line).
    pub resources: String,
    /// This machine (`2 CPUs, AMD EPYC`).
    pub machine: String,
    /// The prices used.
    pub prices: Prices,
}

fn dollars(v: f64) -> String {
    if v < 10.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// The table, with the cheapest and the fastest size marked and the estimate's caveats.
pub fn render(results: &[SizeResult], context: &TuneContext) -> String {
    let mut s = String::new();
    let p = &context.prices;
    let _ = writeln!(
        s,
        "== contrail-sim tune: {} invocations per memory size (the first is the cold start), {}",
        context.invocations,
        if context.baseline {
            "each size run with and without the extensions"
        } else {
            "with the extensions only"
        }
    );
    let _ = writeln!(s, "resources: {}", context.resources);
    let _ = writeln!(
        s,
        "ESTIMATE: measured on this machine ({}) under Lambda's CPU model, not on Lambda. Cost of \
         the warm invocations at ${}/GB-s (x86_64), ${}/GB-s (arm64) and ${:.2} per million \
         requests; cold starts not included.",
        context.machine, p.x86_64_gb_s, p.arm64_gb_s, p.per_million_requests
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>9}  {:>11}  {:>10}  {:>10}  {:>22}  {:>13}  {:>12}  {:>12}",
        "memory",
        "cold start",
        "median",
        "p99",
        "extensions' share",
        "ext. CPU/inv",
        "$/1M x86_64",
        "$/1M arm64"
    );
    let (cheap, fast) = (cheapest(results), fastest(results));
    let waited: Vec<String> = results
        .iter()
        .filter(|r| r.baseline_waited())
        .map(|r| format!("{} MB", r.memory_mb))
        .collect();
    for (i, r) in results.iter().enumerate() {
        let share = match r.extensions_share() {
            Some((ms, frac)) => format!("{ms:+.1} ms ({:+.1} %)", frac * 100.0),
            None => "-".to_owned(),
        };
        let mut marks = Vec::new();
        if cheap == Some(i) {
            marks.push("cheapest");
        }
        if fast == Some(i) {
            marks.push("fastest");
        }
        if !r.throttled {
            marks.push("UNTHROTTLED");
        }
        let failed;
        if !r.failures.is_empty() {
            failed = format!("FAILED: {}", r.failures.join(", "));
            marks.push(&failed);
        }
        let row = format!(
            "{:>6} MB  {:>11}  {:>7.1} ms  {:>7.1} ms  {:>22}  {:>13}  {:>12}  {:>12}  {}",
            r.memory_mb,
            r.cold_start_ms
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.1} ms")),
            r.warm.median,
            r.warm.p99,
            share,
            r.extensions_cpu_ms
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.2} ms")),
            dollars(r.cost_x86_64),
            dollars(r.cost_arm64),
            marks.join(", ")
        );
        let _ = writeln!(s, "{}", row.trim_end());
    }
    if !waited.is_empty() {
        let _ = writeln!(
            s,
            "\nWithout the extensions the function was slower at {}: it waits for them (does its \
             SDK export to their receiver?), so their share is not shown there; their CPU per \
             invocation is.",
            waited.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{InvocationReport, ProcessCpu, ResourceReport};

    #[test]
    fn cost_per_million_by_hand() {
        // 512 MB = 0.5 GB; 120 ms = 0.12 s; 0.06 GB-s × $0.0000166667 = $0.000001000002 per
        // invocation, plus $0.0000002 per request: $1.200002 per million.
        let p = Prices::default();
        let x86 = cost_per_million(p.x86_64_gb_s, p.per_million_requests, 512, 120.0);
        assert!((x86 - 1.200_002).abs() < 1e-9, "{x86}");
        // arm64: 0.06 × $0.0000133334 = $0.000000800004, + $0.0000002: $1.000004 per million.
        let arm = cost_per_million(p.arm64_gb_s, p.per_million_requests, 512, 120.0);
        assert!((arm - 1.000_004).abs() < 1e-9, "{arm}");
        // 128 MB for 1 ms: 0.000125 GB-s × $0.0000166667 = $2.0833e-9, + $2e-7: $0.2020833.
        let tiny = cost_per_million(p.x86_64_gb_s, p.per_million_requests, 128, 1.0);
        assert!((tiny - 0.202_083_337_5).abs() < 1e-9, "{tiny}");
    }

    fn invocation(env: u32, duration: f64, billed: u64, ext_cpu: f64) -> InvocationReport {
        InvocationReport {
            environment: env,
            status: "success".into(),
            duration_ms: duration,
            billed_duration_ms: billed,
            cpu: vec![
                ProcessCpu {
                    process: "runtime".into(),
                    cpu_ms: 100.0,
                },
                ProcessCpu {
                    process: "contrail".into(),
                    cpu_ms: ext_cpu,
                },
            ],
            ..InvocationReport::default()
        }
    }

    fn report(durations: &[f64], init_ms: f64) -> RunReport {
        let mut r = RunReport {
            init_ms: Some(init_ms),
            resources: ResourceReport {
                cpu_enforced: true,
                ..ResourceReport::default()
            },
            extensions: vec![crate::report::ExtensionReport::default()],
            ..RunReport::default()
        };
        for (n, d) in durations.iter().enumerate() {
            r.invocations
                .push(invocation(0, *d, d.ceil() as u64, 1.0 + n as f64 * 0.5));
        }
        r
    }

    #[test]
    fn the_cold_invocation_is_left_out_and_the_share_is_against_the_baseline() {
        let with = report(&[900.0, 100.0, 110.0, 120.0], 300.0);
        let without = report(&[800.0, 90.0, 99.0, 100.0], 280.0);
        let r = size_result(128, &with, Some(&without), &Prices::default()).unwrap();
        assert_eq!(r.cold_start_ms, Some(300.0));
        assert_eq!((r.warm.median, r.warm.p99), (110.0, 120.0));
        assert_eq!(r.baseline_median_ms, Some(99.0));
        let (added, share) = r.extensions_share().unwrap();
        assert!((added - 11.0).abs() < 1e-9);
        assert!((share - 0.1).abs() < 1e-9);
        assert!((r.mean_billed_ms - 110.0).abs() < 1e-9);
        // 1.0 → 2.5 ms over 3 warm invocations.
        assert!((r.extensions_cpu_ms.unwrap() - 0.5).abs() < 1e-9);
        assert!(r.throttled && r.failures.is_empty());
    }

    #[test]
    fn a_baseline_that_waited_for_the_extensions_is_not_a_baseline() {
        let with = report(&[900.0, 40.0, 40.0], 300.0);
        let without = report(&[900.0, 2000.0, 2100.0], 300.0);
        let r = size_result(128, &with, Some(&without), &Prices::default()).unwrap();
        assert!(r.baseline_waited());
        assert_eq!(r.extensions_share(), None);
        let table = render(
            &[r],
            &TuneContext {
                invocations: 3,
                baseline: true,
                resources: String::new(),
                machine: String::new(),
                prices: Prices::default(),
            },
        );
        assert!(table.contains("slower at 128 MB"), "{table}");
    }

    #[test]
    fn cheapest_and_fastest_skip_failed_sizes() {
        let prices = Prices::default();
        let mut oom = report(&[1.0, 2.0, 2.0], 10.0);
        oom.invocations[1].status = "error".into();
        oom.invocations[1].error_type = Some("Runtime.OutOfMemory".into());
        let sizes = [
            size_result(128, &oom, None, &prices).unwrap(),
            size_result(512, &report(&[50.0, 40.0, 40.0], 10.0), None, &prices).unwrap(),
            size_result(1024, &report(&[30.0, 21.0, 21.0], 10.0), None, &prices).unwrap(),
            size_result(2048, &report(&[20.0, 20.0, 20.0], 10.0), None, &prices).unwrap(),
        ];
        assert_eq!(sizes[0].failures, ["error (Runtime.OutOfMemory)"]);
        // 512 × 40 = 20480 < 1024 × 21 = 21504 < 2048 × 20 = 40960 MB-ms.
        assert_eq!(cheapest(&sizes), Some(1));
        assert_eq!(fastest(&sizes), Some(3));
        let table = render(
            &sizes,
            &TuneContext {
                invocations: 3,
                baseline: false,
                resources: "CPU …".into(),
                machine: "2 CPUs".into(),
                prices,
            },
        );
        let line = |mb: &str| {
            table
                .lines()
                .find(|l| l.trim_start().starts_with(mb))
                .unwrap()
                .to_owned()
        };
        assert!(line("512 MB").ends_with("cheapest"), "{table}");
        assert!(line("2048 MB").ends_with("fastest"), "{table}");
        assert!(line("128 MB").contains("FAILED: error (Runtime.OutOfMemory)"));
        assert!(table.contains("ESTIMATE"));
        assert_eq!(
            size_result(128, &report(&[5.0], 1.0), None, &prices).unwrap_err(),
            "128 MB: no warm invocation (at least 2 invocations are needed)"
        );
    }
}
