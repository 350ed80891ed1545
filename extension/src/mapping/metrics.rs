//! The metrics Contrail derives from platform reports and the environment's readings: a fixed
//! set of instruments (`instruments.rs`), one series each except the few that share a name and
//! differ by one attribute (`cpu.mode`, `network.io.direction`) and `aws.lambda.connections`
//! (a series per `server.port`), aggregated here and read at each flush.
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
use super::instruments::{
    CONNECTIONS_DESCRIPTION, CONNECTIONS_NAME, INSTRUMENTS, Instrument, Kind, series_attribute,
};
pub(super) use super::instruments::{MAX_PORTS, MetricId};
use super::otlp::{kv_int, kv_str};

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
        let index = id as usize;
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
    use crate::mapping::instruments::MIB;

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
