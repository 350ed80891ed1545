//! The hot-path figures criterion left in `target/criterion` (`cargo bench -p contrail --bench
//! pipeline`, `--bench environment`), as throughput in records per second.

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::report::{Results, Row};

/// The budget on the whole chain, decode → map → encode + gzip, on one core.
const RECORDS_PER_S: f64 = 100_000.0;
/// The budget on signing one export request with SigV4 (its body's hash included), one core.
const SIGN_NS: f64 = 20_000.0;
/// The budget on the `/proc` readings of one invocation, the processes known (issue 13).
const ENVIRONMENT_NS: f64 = 20_000.0;

/// Throughput figures criterion left in `target/criterion`.
pub(crate) struct CriterionRow {
    pub(crate) id: String,
    pub(crate) records_per_s: f64,
    pub(crate) median_ns: f64,
}

/// Every benchmark of the groups below that criterion measured, and a budget row for each
/// whole chain.
pub(crate) fn read(root: &Path, results: &mut Results) -> Result<Vec<CriterionRow>> {
    let base = root.join("target/criterion");
    let mut rows = Vec::new();
    let groups = [
        "telemetry_text",
        "telemetry_json",
        "receiver",
        "sigv4",
        "environment",
    ];
    for group in groups {
        let Ok(entries) = std::fs::read_dir(base.join(group)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("new/estimates.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let dir = base.join(group).join(&name).join("new");
            let estimates: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("estimates.json"))?)?;
            let benchmark: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("benchmark.json"))?)?;
            let median_ns = estimates["median"]["point_estimate"]
                .as_f64()
                .ok_or_else(|| anyhow!("{group}/{name}: no median"))?;
            let elements = benchmark["throughput"]["Elements"]
                .as_f64()
                .ok_or_else(|| anyhow!("{group}/{name}: no element throughput"))?;
            rows.push(CriterionRow {
                id: format!("{group}/{name}"),
                records_per_s: elements / (median_ns / 1e9),
                median_ns,
            });
        }
    }
    for chain in ["telemetry_text/chain_gzip", "telemetry_json/chain_gzip"] {
        if let Some(r) = rows.iter().find(|r| r.id == chain) {
            results.rows.push(Row::new(
                format!("decode → map → encode + gzip, one core (`{chain}`)"),
                format!("{:.0} records/s", r.records_per_s),
                "≥ 100,000 records/s",
                Some(r.records_per_s >= RECORDS_PER_S),
            ));
        }
    }
    if let Some(r) = rows.iter().find(|r| r.id == "sigv4/sign_4kib_request") {
        results.rows.push(Row::new(
            "SigV4 signing of one export request, 4 KiB body hashed, one core (`sigv4/sign_4kib_request`)",
            format!("{:.1} µs", r.median_ns / 1000.0),
            "≤ 20 µs",
            Some(r.median_ns <= SIGN_NS),
        ));
    }
    if let Some(r) = rows.iter().find(|r| r.id == "environment/invocation") {
        results.rows.push(Row::new(
            "`/proc` readings of one invocation, start and end, processes known, one core (`environment/invocation`, `cargo bench -p contrail --bench environment`)",
            format!("{:.1} µs", r.median_ns / 1000.0),
            "≤ 20 µs",
            Some(r.median_ns <= ENVIRONMENT_NS),
        ));
    }
    for (id, what) in [
        (
            "environment/first_invocation",
            "`/proc` readings of an invocation that looks for the processes (the first; every one in the emulator)",
        ),
        ("environment/sample", "one RSS sample during an invocation"),
    ] {
        if let Some(r) = rows.iter().find(|r| r.id == id) {
            results.rows.push(Row::new(
                format!("{what} (`{id}`)"),
                format!("{:.1} µs", r.median_ns / 1000.0),
                "—",
                None,
            ));
        }
    }
    if rows.is_empty() {
        results.notes.push(
            "Criterion figures: none in target/criterion (run `cargo bench -p contrail --bench \
             pipeline`)."
                .to_owned(),
        );
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
