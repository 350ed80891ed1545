//! The metrics Contrail derives from platform reports: a fixed set of instruments without
//! attributes (one series each), aggregated here and read at each flush.
//!
//! Names follow the OpenTelemetry FaaS metric conventions where one exists (`faas.*`), and
//! `aws.lambda.*` otherwise.
//!
//! Temporality:
//! - cumulative: every series that has ever recorded is exported at each collection, with
//!   `start_time_unix_nano` = the time of its first measurement;
//! - delta: only series that recorded since the last collection, with
//!   `start_time_unix_nano` = the previous collection (or the first measurement of the first
//!   interval), and the aggregate is reset.

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
    metric, number_data_point,
};

use super::config::Temporality;
use super::otlp::{kv_int, kv_str};

/// `faas.invoke_duration` boundaries from the conventions, extended to Lambda's 15-minute limit.
const DURATION_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
    300.0, 900.0,
];
/// Post-runtime extension time: sub-millisecond to seconds.
const OVERHEAD_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const MIB: f64 = 1024.0 * 1024.0;
/// Lambda memory: 128 MB to 10,240 MB.
const MEMORY_BYTES: &[f64] = &[
    32.0 * MIB,
    64.0 * MIB,
    128.0 * MIB,
    256.0 * MIB,
    512.0 * MIB,
    1024.0 * MIB,
    2048.0 * MIB,
    4096.0 * MIB,
    8192.0 * MIB,
    10240.0 * MIB,
];
/// Response sizes: up to 6 MB buffered, 200 MB streamed.
/// Estimated costs in US dollars: a 1 ms invocation at 128 MB (about $0.0000002) to 15 minutes
/// at 10,240 MB (about $0.15).
const COST_USD: &[f64] = &[
    0.000_000_25,
    0.000_001,
    0.000_002_5,
    0.000_01,
    0.000_025,
    0.000_1,
    0.000_25,
    0.001,
    0.01,
    0.1,
];
/// Idle time between invocations: a millisecond to the hours an environment may be kept.
const IDLE_S: &[f64] = &[
    0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
];
const RESPONSE_BYTES: &[f64] = &[
    1024.0,
    16.0 * 1024.0,
    64.0 * 1024.0,
    256.0 * 1024.0,
    MIB,
    6.0 * MIB,
    20.0 * MIB,
    200.0 * MIB,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetricId {
    InvokeDuration,
    InitDuration,
    Coldstarts,
    Invocations,
    Errors,
    Timeouts,
    MemUsage,
    BilledDuration,
    MemorySize,
    RestoreDuration,
    ProducedBytes,
    ExtensionOverhead,
    LogsDroppedRecords,
    LogsDroppedBytes,
    InvocationCost,
    InitCost,
    RestoreCost,
    Utilization,
    Lifetime,
    BusyTime,
    EnvironmentInvocations,
    IdleGap,
    UnusedInit,
    CpuUser,
    CpuSystem,
    ContrailCpu,
    MemoryPeak,
    NetReceive,
    NetTransmit,
    TmpUsage,
    ConnectionsOpened,
}

/// The one attribute of a series whose instrument shares its name with others (the series of
/// one metric, next to each other in [`INSTRUMENTS`]).
fn series_attribute(id: MetricId) -> Option<(&'static str, &'static str)> {
    match id {
        MetricId::CpuUser => Some(("cpu.mode", "user")),
        MetricId::CpuSystem => Some(("cpu.mode", "system")),
        MetricId::NetReceive => Some(("network.io.direction", "receive")),
        MetricId::NetTransmit => Some(("network.io.direction", "transmit")),
        _ => None,
    }
}

/// CPU time per invocation: a millisecond to minutes.
const CPU_S: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];
/// Network bytes per invocation.
const NET_BYTES: &[f64] = &[
    0.0,
    1024.0,
    16.0 * 1024.0,
    256.0 * 1024.0,
    MIB,
    16.0 * MIB,
    256.0 * MIB,
    1024.0 * MIB,
];
/// Remote ports followed by `aws.lambda.connections`, at most; connections to others are
/// counted under port 0.
pub(super) const MAX_PORTS: usize = 32;

enum Kind {
    Counter,
    Histogram(&'static [f64]),
    Gauge,
}

struct Instrument {
    id: MetricId,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    kind: Kind,
}

const INSTRUMENTS: &[Instrument] = &[
    Instrument {
        id: MetricId::InvokeDuration,
        name: "faas.invoke_duration",
        unit: "s",
        description: "Duration of the function's invocations (platform.report durationMs).",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::InitDuration,
        name: "faas.init_duration",
        unit: "s",
        description: "Duration of the environment's initialization (platform.initReport).",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::Coldstarts,
        name: "faas.coldstarts",
        unit: "{coldstart}",
        description: "Invocations that were the first after a cold start or a SnapStart restore.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Invocations,
        name: "faas.invocations",
        unit: "{invocation}",
        description: "Successful invocations.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Errors,
        name: "faas.errors",
        unit: "{error}",
        description: "Invocations that ended in an error or a failure (timeouts excluded).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Timeouts,
        name: "faas.timeouts",
        unit: "{timeout}",
        description: "Invocations that timed out.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::MemUsage,
        name: "faas.mem_usage",
        unit: "By",
        description: "Maximum memory used per invocation.",
        kind: Kind::Histogram(MEMORY_BYTES),
    },
    Instrument {
        id: MetricId::BilledDuration,
        name: "aws.lambda.billed_duration",
        unit: "s",
        description: "Billed duration per invocation.",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::MemorySize,
        name: "aws.lambda.memory_size",
        unit: "By",
        description: "Memory configured for the function.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::RestoreDuration,
        name: "aws.lambda.restore_duration",
        unit: "s",
        description: "Duration of SnapStart restores (platform.restoreReport).",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::ProducedBytes,
        name: "aws.lambda.produced_bytes",
        unit: "By",
        description: "Size of the function's responses.",
        kind: Kind::Histogram(RESPONSE_BYTES),
    },
    Instrument {
        id: MetricId::ExtensionOverhead,
        name: "aws.lambda.extension_overhead",
        unit: "s",
        description: "Time extensions took after the runtime finished (billed).",
        kind: Kind::Histogram(OVERHEAD_S),
    },
    Instrument {
        id: MetricId::LogsDroppedRecords,
        name: "aws.lambda.logs_dropped.records",
        unit: "{record}",
        description: "Telemetry records Lambda dropped (platform.logsDropped).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::LogsDroppedBytes,
        name: "aws.lambda.logs_dropped.bytes",
        unit: "By",
        description: "Telemetry bytes Lambda dropped (platform.logsDropped).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::InvocationCost,
        name: "aws.lambda.invocation.cost",
        unit: "{USD}",
        description: "Estimated cost of each invocation at list prices: billed duration × memory × price per GB-second, plus the request charge (the first invocation's billed duration holds an on-demand INIT).",
        kind: Kind::Histogram(COST_USD),
    },
    Instrument {
        id: MetricId::InitCost,
        name: "aws.lambda.init.cost",
        unit: "{USD}",
        description: "Estimated cost of an on-demand INIT phase at list prices: a part of the first invocation's cost, not to be added to it.",
        kind: Kind::Histogram(COST_USD),
    },
    Instrument {
        id: MetricId::RestoreCost,
        name: "aws.lambda.restore.cost",
        unit: "{USD}",
        description: "Estimated cost of a SnapStart restore at list prices: memory restored × price per GB, plus the billed restore duration.",
        kind: Kind::Histogram(COST_USD),
    },
    Instrument {
        id: MetricId::Utilization,
        name: "aws.lambda.environment.utilization",
        unit: "1",
        description: "Busy time ÷ lifetime of this execution environment so far.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::Lifetime,
        name: "aws.lambda.environment.lifetime",
        unit: "s",
        description: "Time since this execution environment's init or restore began, frozen time included.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::BusyTime,
        name: "aws.lambda.environment.busy_time",
        unit: "s",
        description: "Time this execution environment spent in invoke phases so far.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::EnvironmentInvocations,
        name: "aws.lambda.environment.invocations",
        unit: "{invocation}",
        description: "Invocations this execution environment has run so far.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::IdleGap,
        name: "aws.lambda.environment.idle_gap",
        unit: "s",
        description: "Idle time before each invocation: since the previous invoke phase ended, or since init.",
        kind: Kind::Histogram(IDLE_S),
    },
    Instrument {
        id: MetricId::UnusedInit,
        name: "aws.lambda.environment.unused_init",
        unit: "{environment}",
        description: "Execution environments shut down without running an invocation.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::CpuUser,
        name: "faas.cpu_usage",
        unit: "s",
        description: "CPU time of the function's processes per invocation, by cpu.mode (/proc).",
        kind: Kind::Histogram(CPU_S),
    },
    Instrument {
        id: MetricId::CpuSystem,
        name: "faas.cpu_usage",
        unit: "s",
        description: "CPU time of the function's processes per invocation, by cpu.mode (/proc).",
        kind: Kind::Histogram(CPU_S),
    },
    Instrument {
        id: MetricId::ContrailCpu,
        name: "aws.lambda.contrail.cpu_usage",
        unit: "s",
        description: "Contrail's own CPU time per invocation.",
        kind: Kind::Histogram(OVERHEAD_S),
    },
    Instrument {
        id: MetricId::MemoryPeak,
        name: "aws.lambda.function.memory.peak",
        unit: "By",
        description: "Highest RSS of the function's processes during each invocation (/proc).",
        kind: Kind::Histogram(MEMORY_BYTES),
    },
    Instrument {
        id: MetricId::NetReceive,
        name: "faas.net_io",
        unit: "By",
        description: "Network bytes of the environment per invocation, lo excluded, by network.io.direction.",
        kind: Kind::Histogram(NET_BYTES),
    },
    Instrument {
        id: MetricId::NetTransmit,
        name: "faas.net_io",
        unit: "By",
        description: "Network bytes of the environment per invocation, lo excluded, by network.io.direction.",
        kind: Kind::Histogram(NET_BYTES),
    },
    Instrument {
        id: MetricId::TmpUsage,
        name: "aws.lambda.tmp.usage",
        unit: "By",
        description: "Bytes used on /tmp at the end of the last invocation.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::ConnectionsOpened,
        name: "aws.lambda.connections.opened",
        unit: "{connection}",
        description: "TCP connections the function's processes opened during invocations (still established at their end).",
        kind: Kind::Counter,
    },
];

/// `aws.lambda.connections`: established TCP connections of the function's processes at the
/// end of the last invocation, one series per remote port (`server.port`).
const CONNECTIONS_NAME: &str = "aws.lambda.connections";
const CONNECTIONS_DESCRIPTION: &str = "Established TCP connections of the function's processes at the end of the last invocation, by remote port (server.port; 0: any other port once 32 are followed).";

#[derive(Debug, Clone, Default)]
struct Series {
    /// First measurement of this series (cumulative) or of this interval (delta).
    first_ns: Option<u64>,
    /// Measured since the last collection.
    dirty: bool,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
    last: f64,
    last_ns: u64,
}

/// The aggregates of every instrument.
pub(super) struct MetricStore {
    temporality: Temporality,
    series: Vec<Series>,
    last_collect_ns: Option<u64>,
    /// `aws.lambda.connections`: per remote port, the count and its time; a port seen once
    /// stays (at 0 when no connection to it is left), at most [`MAX_PORTS`].
    ports: std::collections::BTreeMap<u16, (u64, u64)>,
    ports_dirty: bool,
}

impl MetricStore {
    pub(super) fn new(temporality: Temporality) -> MetricStore {
        MetricStore {
            temporality,
            series: INSTRUMENTS
                .iter()
                .map(|i| Series {
                    buckets: match i.kind {
                        Kind::Histogram(bounds) => vec![0; bounds.len() + 1],
                        _ => Vec::new(),
                    },
                    ..Series::default()
                })
                .collect(),
            last_collect_ns: None,
            ports: std::collections::BTreeMap::new(),
            ports_dirty: false,
        }
    }

    /// The established connections at the end of an invocation, by remote port.
    pub(super) fn record_connections(
        &mut self,
        by_port: &std::collections::BTreeMap<u16, u32>,
        time_ns: u64,
    ) {
        for (count, _) in self.ports.values_mut() {
            *count = 0;
        }
        for (port, n) in by_port {
            let port = if self.ports.contains_key(port) || self.ports.len() < MAX_PORTS {
                *port
            } else {
                0
            };
            self.ports.entry(port).or_default().0 += u64::from(*n);
        }
        for (_, t) in self.ports.values_mut() {
            *t = time_ns;
        }
        self.ports_dirty = true;
    }

    fn series(&mut self, id: MetricId) -> Option<(&Instrument, &mut Series)> {
        let index = INSTRUMENTS.iter().position(|i| i.id == id)?;
        Some((INSTRUMENTS.get(index)?, self.series.get_mut(index)?))
    }

    /// Add to a counter, or record a histogram or gauge value.
    pub(super) fn record(&mut self, id: MetricId, value: f64, time_ns: u64) {
        if !value.is_finite() {
            return;
        }
        let Some((instrument, s)) = self.series(id) else {
            return;
        };
        s.first_ns = Some(s.first_ns.map_or(time_ns, |t| t.min(time_ns)));
        s.dirty = true;
        s.last = value;
        s.last_ns = s.last_ns.max(time_ns);
        if s.count == 0 {
            s.min = value;
            s.max = value;
        } else {
            s.min = s.min.min(value);
            s.max = s.max.max(value);
        }
        s.count += 1;
        s.sum += value;
        if let Kind::Histogram(bounds) = instrument.kind {
            // Explicit bounds are upper-inclusive.
            let bucket = bounds
                .iter()
                .position(|b| value <= *b)
                .unwrap_or(bounds.len());
            if let Some(c) = s.buckets.get_mut(bucket) {
                *c += 1;
            }
        }
    }

    /// The metric data to export now; `None` when there is nothing to report.
    pub(super) fn collect(&mut self, now_ns: u64) -> Vec<Metric> {
        let delta = self.temporality == Temporality::Delta;
        let temporality = if delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let previous = self.last_collect_ns;
        let mut out: Vec<Metric> = Vec::new();
        for (instrument, s) in INSTRUMENTS.iter().zip(self.series.iter_mut()) {
            let Some(first_ns) = s.first_ns else {
                continue;
            };
            if delta && !s.dirty {
                continue;
            }
            let start = match (delta, previous) {
                (true, Some(prev)) => prev.min(first_ns),
                _ => first_ns,
            }
            .min(now_ns);
            let data = match instrument.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: now_ns,
                        value: Some(number_data_point::Value::AsInt(s.sum as i64)),
                        ..Default::default()
                    }],
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                }),
                Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: s.last_ns,
                        value: Some(number_data_point::Value::AsDouble(s.last)),
                        ..Default::default()
                    }],
                }),
                Kind::Histogram(bounds) => metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: now_ns,
                        count: s.count,
                        sum: Some(s.sum),
                        bucket_counts: s.buckets.clone(),
                        explicit_bounds: bounds.to_vec(),
                        min: Some(s.min),
                        max: Some(s.max),
                        ..Default::default()
                    }],
                    aggregation_temporality: temporality,
                }),
            };
            let data = with_attribute(data, series_attribute(instrument.id));
            match out.last_mut() {
                // A series of the metric just pushed (same name): one more data point.
                Some(last)
                    if series_attribute(instrument.id).is_some()
                        && last.name == instrument.name =>
                {
                    merge_points(last, data);
                }
                _ => out.push(Metric {
                    name: instrument.name.to_owned(),
                    description: instrument.description.to_owned(),
                    unit: instrument.unit.to_owned(),
                    data: Some(data),
                    ..Default::default()
                }),
            }
            s.dirty = false;
            if delta {
                let buckets = std::mem::take(&mut s.buckets);
                *s = Series {
                    buckets: vec![0; buckets.len()],
                    ..Series::default()
                };
            }
        }
        if !self.ports.is_empty() && (self.ports_dirty || !delta) {
            out.push(Metric {
                name: CONNECTIONS_NAME.to_owned(),
                description: CONNECTIONS_DESCRIPTION.to_owned(),
                unit: "{connection}".to_owned(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: self
                        .ports
                        .iter()
                        .map(|(port, (count, t))| NumberDataPoint {
                            attributes: vec![kv_int("server.port", i64::from(*port))],
                            time_unix_nano: *t,
                            value: Some(number_data_point::Value::AsInt(*count as i64)),
                            ..Default::default()
                        })
                        .collect(),
                })),
                ..Default::default()
            });
            self.ports_dirty = false;
        }
        self.last_collect_ns = Some(now_ns);
        out
    }
}

/// Give every data point of `data` the series' attribute.
fn with_attribute(mut data: metric::Data, attr: Option<(&str, &str)>) -> metric::Data {
    let Some((key, value)) = attr else {
        return data;
    };
    match &mut data {
        metric::Data::Sum(s) => s
            .data_points
            .iter_mut()
            .for_each(|p| p.attributes.push(kv_str(key, value))),
        metric::Data::Gauge(g) => g
            .data_points
            .iter_mut()
            .for_each(|p| p.attributes.push(kv_str(key, value))),
        metric::Data::Histogram(h) => h
            .data_points
            .iter_mut()
            .for_each(|p| p.attributes.push(kv_str(key, value))),
        _ => {}
    }
    data
}

/// Append the data points of `data` to `metric` (both of the same kind).
fn merge_points(metric: &mut Metric, data: metric::Data) {
    match (&mut metric.data, data) {
        (Some(metric::Data::Sum(a)), metric::Data::Sum(b)) => a.data_points.extend(b.data_points),
        (Some(metric::Data::Gauge(a)), metric::Data::Gauge(b)) => {
            a.data_points.extend(b.data_points)
        }
        (Some(metric::Data::Histogram(a)), metric::Data::Histogram(b)) => {
            a.data_points.extend(b.data_points)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(metrics: &[Metric], name: &str) -> Option<metric::Data> {
        metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.data.clone())
    }

    #[test]
    fn cumulative_keeps_totals_and_first_start() {
        let mut store = MetricStore::new(Temporality::Cumulative);
        assert!(store.collect(5).is_empty());
        store.record(MetricId::Invocations, 1.0, 100);
        store.record(MetricId::InvokeDuration, 0.02, 100);
        store.record(MetricId::InvokeDuration, 20.0, 150);
        let m = store.collect(200);
        assert_eq!(m.len(), 2);
        let Some(metric::Data::Histogram(h)) = point(&m, "faas.invoke_duration") else {
            panic!("histogram missing")
        };
        let p = &h.data_points[0];
        assert_eq!(
            (p.start_time_unix_nano, p.time_unix_nano, p.count),
            (100, 200, 2)
        );
        assert_eq!(p.bucket_counts[2], 1, "0.02 s lands in (0.01, 0.025]");
        assert_eq!(p.bucket_counts[14], 1, "20 s lands in (10, 30]");
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 2);
        assert_eq!((p.min, p.max), (Some(0.02), Some(20.0)));
        store.record(MetricId::Invocations, 1.0, 300);
        let m = store.collect(400);
        let Some(metric::Data::Sum(s)) = point(&m, "faas.invocations") else {
            panic!("sum missing")
        };
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert!(s.is_monotonic);
        let p = &s.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(2)));
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (100, 400));
        assert_eq!(m.len(), 2, "unchanged cumulative series are still reported");
    }

    #[test]
    fn delta_resets_and_starts_at_previous_collection() {
        let mut store = MetricStore::new(Temporality::Delta);
        store.record(MetricId::Errors, 1.0, 100);
        store.record(MetricId::Errors, 1.0, 120);
        let m = store.collect(200);
        let Some(metric::Data::Sum(s)) = point(&m, "faas.errors") else {
            panic!("sum missing")
        };
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
        assert_eq!(s.data_points[0].start_time_unix_nano, 100);
        assert!(
            store.collect(300).is_empty(),
            "nothing new, nothing reported"
        );
        store.record(MetricId::Errors, 1.0, 350);
        let m = store.collect(400);
        let Some(metric::Data::Sum(s)) = point(&m, "faas.errors") else {
            panic!("sum missing")
        };
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(1))
        );
        assert_eq!(
            (
                s.data_points[0].start_time_unix_nano,
                s.data_points[0].time_unix_nano
            ),
            (300, 400)
        );
    }

    #[test]
    fn gauge_reports_the_last_value() {
        let mut store = MetricStore::new(Temporality::Cumulative);
        store.record(MetricId::MemorySize, 128.0 * MIB, 10);
        store.record(MetricId::MemorySize, 256.0 * MIB, 20);
        let m = store.collect(30);
        let Some(metric::Data::Gauge(g)) = point(&m, "aws.lambda.memory_size") else {
            panic!("gauge missing")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(256.0 * MIB))
        );
        assert_eq!(g.data_points[0].time_unix_nano, 20);
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut store = MetricStore::new(Temporality::Cumulative);
        store.record(MetricId::InvokeDuration, f64::NAN, 1);
        assert!(store.collect(2).is_empty());
    }
}
