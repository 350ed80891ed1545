//! The report: each figure next to its budget, how it was measured, and the Markdown
//! `docs/BENCHMARKS.md` is written from.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use contrail_sim::report::Machine;

use crate::Options;
use crate::criterion::CriterionRow;
use crate::harness::Bench;

/// One figure of the report, with its budget.
pub(crate) struct Row {
    what: String,
    figure: String,
    budget: String,
    met: Option<bool>,
}

impl Row {
    pub(crate) fn new(
        what: impl Into<String>,
        figure: impl Into<String>,
        budget: impl Into<String>,
        met: Option<bool>,
    ) -> Row {
        Row {
            what: what.into(),
            figure: figure.into(),
            budget: budget.into(),
            met,
        }
    }
}

/// What the scenarios found: the budget table's rows, and the notes on how.
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
}

/// `YYYY-MM-DD HH:MM UTC` of now.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC")
}

/// The sections the report writes; every other `## ` section of the file it replaces (the
/// before-and-after records of tuning changes, added by hand) is kept, in its order, after them.
const GENERATED: [&str; 3] = ["Budgets", "How", "Hot paths (criterion, one core)"];

/// The sections of `old` (an earlier `docs/BENCHMARKS.md`) that the report does not write,
/// from each `## ` heading to the next.
pub(crate) fn kept_sections(old: &str) -> String {
    let mut kept = String::new();
    let mut keep = false;
    for line in old.split_inclusive('\n') {
        if let Some(heading) = line.strip_prefix("## ") {
            keep = !GENERATED.contains(&heading.trim_end());
        }
        if keep {
            kept.push_str(line);
        }
    }
    kept
}

/// The whole of `docs/BENCHMARKS.md`: the report, then what `kept` holds (see
/// [`kept_sections`]).
pub(crate) fn render(
    options: &Options,
    bench: &Bench,
    results: &Results,
    criterion: &[CriterionRow],
    elapsed: Duration,
    kept: &str,
) -> Result<String> {
    let Machine {
        cpus,
        model,
        kernel,
    } = Machine::this();
    let mut s = String::new();
    writeln!(s, "# Benchmarks")?;
    writeln!(s)?;
    writeln!(
        s,
        "Written by `{}` on {}. Do not edit the sections up to the criterion table: run the \
         command again. The sections after it are dated records of tuning changes, measured \
         before and after, which a new run keeps.",
        options.command,
        utc_now()
    )?;
    writeln!(s)?;
    writeln!(s, "- Machine: {cpus} CPUs, {model}, Linux {kernel}")?;
    writeln!(
        s,
        "- Whole-process runs: {} under the emulator (`contrail_sim::run`), {} start-up \
         rounds, {:.0} s",
        bench.runs_label,
        options.rounds,
        elapsed.as_secs_f64()
    )?;
    if !options.only.is_empty() {
        writeln!(
            s,
            "- Partial report: only the scenarios {} (`--only`)",
            options
                .only
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## {}", GENERATED[0])?;
    writeln!(s)?;
    writeln!(s, "| measure | figure | budget | |")?;
    writeln!(s, "|---|---|---|---|")?;
    for row in &results.rows {
        let verdict = match row.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "",
        };
        writeln!(
            s,
            "| {} | {} | {} | {} |",
            row.what, row.figure, row.budget, verdict
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## {}", GENERATED[1])?;
    writeln!(s)?;
    for note in &results.notes {
        writeln!(s, "- {note}")?;
    }
    writeln!(s)?;
    writeln!(s, "## {}", GENERATED[2])?;
    writeln!(s)?;
    if criterion.is_empty() {
        writeln!(s, "Not run.")?;
    } else {
        writeln!(
            s,
            "`cargo bench -p contrail --bench pipeline -- --quick` (extension/benches/pipeline.rs). \
             Telemetry groups: a Telemetry API batch of 1,000 records (`platform.start`, 997 \
             function lines, `runtimeDone`, `report`) in the text or the JSON log format; \
             `receiver`: an `ExportTraceServiceRequest` of 100 spans decoded and merged with the \
             Lambda resource. Throughput from criterion's median time."
        )?;
        writeln!(s)?;
        writeln!(s, "| benchmark | time per batch | records/s |")?;
        writeln!(s, "|---|---|---|")?;
        for row in criterion {
            writeln!(
                s,
                "| `{}` | {:.1} µs | {:.0} |",
                row.id,
                row.median_ns / 1000.0,
                row.records_per_s
            )?;
        }
    }
    if !kept.is_empty() {
        writeln!(s)?;
        s.push_str(kept);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::kept_sections;

    #[test]
    fn hand_written_sections_survive_a_new_report() {
        let old = "# Benchmarks\n\nWritten by x.\n\n## Budgets\n\n| a |\n\n## How\n\n- b\n\n\
                   ## A tuning change: before and after\n\n| c |\n\n### Detail\n\nd\n\n\
                   ## Hot paths (criterion, one core)\n\n| e |\n\n## Another change\n\nf\n";
        assert_eq!(
            kept_sections(old),
            "## A tuning change: before and after\n\n| c |\n\n### Detail\n\nd\n\n\
             ## Another change\n\nf\n"
        );
        assert_eq!(kept_sections("# Benchmarks\n\n## Budgets\n\n| a |\n"), "");
    }
}
