//! Log volume: peak RSS and CPU time of Contrail while 20 invocations print 2,000 lines each,
//! intake to export, and how many of those lines reached the backend.

use anyhow::Result;
use contrail_sim::sink::SinkHandle;

use super::PEAK_RSS_KB;
use crate::Options;
use crate::harness::{Bench, contrail_report, median, start_sink, vars};
use crate::report::{Results, Row};

const CPU_MS: u64 = 80;
const HEAVY_INVOCATIONS: u32 = 20;
const HEAVY_LINES: u32 = 2_000;

/// Log records the sink has received.
fn log_records(sink: &SinkHandle) -> usize {
    sink.snapshot()
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// The largest value of each data point of Contrail's cumulative counter `name`, per
/// attribute set: what Contrail last reported about itself.
pub(crate) fn self_counter(sink: &SinkHandle, name: &str) -> Vec<(String, i64)> {
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let mut out: Vec<(String, i64)> = Vec::new();
    for request in &sink.snapshot().metrics {
        let metrics = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name);
        for m in metrics {
            let Some(metric::Data::Sum(sum)) = &m.data else {
                continue;
            };
            for point in &sum.data_points {
                let value = match point.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    Some(number_data_point::Value::AsDouble(v)) => v as i64,
                    None => continue,
                };
                let key = point
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = kv
                            .value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(|v| match v {
                                any_value::Value::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        format!("{}={v}", kv.key)
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let key = if key.is_empty() {
                    "total".to_owned()
                } else {
                    key
                };
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, max)) => *max = (*max).max(value),
                    None => out.push((key, value)),
                }
            }
        }
    }
    out.retain(|(_, v)| *v != 0);
    out
}

/// `a=1, b=2`, or `0` for nothing.
pub(crate) fn counters(values: &[(String, i64)]) -> String {
    if values.is_empty() {
        return "0".to_owned();
    }
    values
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Memory and CPU for 20 invocations × 2,000 log lines, intake to export.
pub(crate) async fn run(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let rounds = options.load_rounds();
    let lines = vars(&[("BENCH_LINES", &HEAVY_LINES.to_string())]);
    let expected = (HEAVY_INVOCATIONS * HEAVY_LINES) as usize;
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let mut delivered = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: log volume ({}/{rounds})", round + 1);
        let sink = start_sink().await?;
        let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
        let (a, _) = bench
            .pair(&bench.builtin, &contrail_env, HEAVY_INVOCATIONS, &lines)
            .await?;
        let ext = contrail_report(&a)?;
        rss.extend(ext.peak_rss_kb.map(|v| v as f64));
        cpu.extend(ext.cpu_ms);
        delivered.push(log_records(&sink));
        let t = &a.telemetry;
        results.notes.push(format!(
            "Log volume, round {}: the emulator delivered {} Telemetry API records in {} \
             batches to Contrail ({} retries, {} dropped by the emulator's queue, {} \
             undelivered at the end); the sink received {} log records; Contrail's last \
             self-reported `contrail.records.exported` {}, `contrail.records.dropped` {}.",
            round + 1,
            t.records_delivered,
            t.batches_delivered,
            t.retries,
            t.records_dropped,
            t.records_undelivered,
            log_records(&sink),
            counters(&self_counter(&sink, "contrail.records.exported")),
            counters(&self_counter(&sink, "contrail.records.dropped"))
        ));
        sink.shutdown().await;
    }
    let (rss, cpu) = (median(&rss)?, median(&cpu)?);
    let least = delivered.iter().copied().min().unwrap_or(0);
    results.rows.push(Row::new(
        format!("peak RSS of Contrail, {HEAVY_INVOCATIONS} invocations × {HEAVY_LINES} lines"),
        format!("{:.2} MB", rss / 1024.0),
        format!("≤ {} MB", PEAK_RSS_KB / 1024),
        Some(rss <= PEAK_RSS_KB as f64),
    ));
    results.rows.push(Row::new(
        format!(
            "CPU time of Contrail for those {} lines (whole process)",
            HEAVY_INVOCATIONS * HEAVY_LINES
        ),
        format!("{:.3} s", cpu / 1000.0),
        format!("≤ {:.2} s", CPU_MS as f64 / 1000.0),
        Some(cpu <= CPU_MS as f64),
    ));
    results.notes.push(format!(
        "Log volume: {rounds} rounds; the sink received at least {least} log records per run \
         ({expected} function lines were written). RSS is `VmHWM`, CPU is utime + stime from \
         `/proc`, both of the whole Contrail process from spawn to exit."
    ));
    if least < expected {
        results.notes.push(format!(
            "Not every line reached the sink: {least} of {expected} in the worst run."
        ));
    }
    Ok(())
}
