//! The metrics summary: one line per metric and attribute set.

use std::collections::HashSet;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    SummaryDataPoint,
};

use super::text::{attributes_text, fit, resource_attr};
use crate::sink::received::MetricEntry;

/// One line of the metrics summary: a metric's points with one attribute set.
#[derive(Default)]
struct Series {
    points: usize,
    /// Delta sums and histograms add up; cumulative ones and gauges keep the latest.
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    last: Option<(u64, f64)>,
}

impl Series {
    fn number(&mut self, time: u64, value: f64, add: bool) {
        self.points += 1;
        if add {
            self.sum += value;
        }
        if self.last.is_none_or(|(t, _)| time >= t) {
            self.last = Some((time, value));
        }
    }

    fn distribution(
        &mut self,
        time: u64,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        add: bool,
    ) {
        self.points += 1;
        let newest = self.last.is_none_or(|(t, _)| time >= t);
        if add {
            self.count += count;
            self.sum += sum.unwrap_or(0.0);
            self.min = merge(self.min, min, f64::min);
            self.max = merge(self.max, max, f64::max);
        } else if newest {
            self.count = count;
            self.sum = sum.unwrap_or(0.0);
            self.min = min;
            self.max = max;
        }
        if newest {
            self.last = Some((time, sum.unwrap_or(0.0)));
        }
    }
}

fn merge(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Gauge,
    DeltaSum,
    CumulativeSum,
    DeltaHistogram,
    CumulativeHistogram,
    Summary,
    Empty,
}

struct MetricGroup {
    title: String,
    shape: Shape,
    series: Vec<(String, Series)>,
}

/// A data point, reduced to what the summary shows.
enum Reading {
    Number(f64),
    Distribution {
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    },
}

impl Reading {
    fn distribution(count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) -> Reading {
        Reading::Distribution {
            count,
            sum,
            min,
            max,
        }
    }
}

/// One data point of any metric type.
struct Point<'a> {
    attributes: &'a [KeyValue],
    time: u64,
    reading: Reading,
}

impl Series {
    fn take(&mut self, time: u64, reading: Reading, add: bool) {
        match reading {
            Reading::Number(value) => self.number(time, value, add),
            Reading::Distribution {
                count,
                sum,
                min,
                max,
            } => self.distribution(time, count, sum, min, max, add),
        }
    }
}

fn number_value(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn is_delta(temporality: i32) -> bool {
    temporality == AggregationTemporality::Delta as i32
}

/// The shape of a metric and how its title names it (`sum, delta, monotonic`).
fn describe(data: Option<&Data>) -> (Shape, String) {
    match data {
        Some(Data::Gauge(_)) => (Shape::Gauge, "gauge".to_owned()),
        Some(Data::Sum(s)) => {
            let monotonic = if s.is_monotonic { ", monotonic" } else { "" };
            if is_delta(s.aggregation_temporality) {
                (Shape::DeltaSum, format!("sum, delta{monotonic}"))
            } else {
                (Shape::CumulativeSum, format!("sum, cumulative{monotonic}"))
            }
        }
        Some(Data::Histogram(h)) => histogram_kind("histogram", h.aggregation_temporality),
        Some(Data::ExponentialHistogram(h)) => {
            histogram_kind("exponential histogram", h.aggregation_temporality)
        }
        Some(Data::Summary(_)) => (Shape::Summary, "summary".to_owned()),
        None => (Shape::Empty, "no data".to_owned()),
    }
}

/// What the summary reads of a data point, whatever the metric type.
trait DataPoint {
    fn attributes(&self) -> &[KeyValue];
    fn time(&self) -> u64;
    fn reading(&self) -> Reading;
}

/// Implements [`DataPoint`] for an OTLP point type: they all carry `attributes` and
/// `time_unix_nano`; `reading` says what the summary takes of the rest.
macro_rules! data_point {
    ($point:ty, |$p:ident| $reading:expr) => {
        impl DataPoint for $point {
            fn attributes(&self) -> &[KeyValue] {
                &self.attributes
            }
            fn time(&self) -> u64 {
                self.time_unix_nano
            }
            fn reading(&self) -> Reading {
                let $p = self;
                $reading
            }
        }
    };
}

data_point!(NumberDataPoint, |p| Reading::Number(number_value(p)));
data_point!(HistogramDataPoint, |p| Reading::distribution(
    p.count, p.sum, p.min, p.max
));
data_point!(ExponentialHistogramDataPoint, |p| Reading::distribution(
    p.count, p.sum, p.min, p.max
));
data_point!(SummaryDataPoint, |p| Reading::distribution(
    p.count,
    Some(p.sum),
    None,
    None
));

fn collect<P: DataPoint>(points: &[P]) -> Vec<Point<'_>> {
    points
        .iter()
        .map(|p| Point {
            attributes: p.attributes(),
            time: p.time(),
            reading: p.reading(),
        })
        .collect()
}

/// Whether the points of a metric add up (delta temporality), and its points.
fn points(data: Option<&Data>) -> (bool, Vec<Point<'_>>) {
    match data {
        Some(Data::Gauge(g)) => (false, collect(&g.data_points)),
        Some(Data::Sum(s)) => (is_delta(s.aggregation_temporality), collect(&s.data_points)),
        Some(Data::Histogram(h)) => (is_delta(h.aggregation_temporality), collect(&h.data_points)),
        Some(Data::ExponentialHistogram(h)) => {
            (is_delta(h.aggregation_temporality), collect(&h.data_points))
        }
        Some(Data::Summary(s)) => (false, collect(&s.data_points)),
        None => (false, Vec::new()),
    }
}

pub(super) fn render_metrics(entries: &[MetricEntry<'_>], out: &mut String) {
    if entries.is_empty() {
        return;
    }
    let services: HashSet<Option<String>> = entries
        .iter()
        .map(|e| resource_attr(e.resource, "service.name"))
        .collect();
    let show_service = services.len() > 1;

    let mut groups: Vec<MetricGroup> = Vec::new();
    for entry in entries {
        let m = entry.metric;
        let (shape, kind) = describe(m.data.as_ref());
        let unit = if m.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", m.unit)
        };
        let title = format!("{}{unit}  {kind}", m.name);
        let index = match groups.iter().position(|g| g.title == title) {
            Some(i) => i,
            None => {
                groups.push(MetricGroup {
                    title,
                    shape,
                    series: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        let service = if show_service {
            resource_attr(entry.resource, "service.name")
                .map(|s| format!("service.name={s} "))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let (add, points) = points(m.data.as_ref());
        for point in points {
            let key = format!("{service}{}", attributes_text(point.attributes));
            let i = match group.series.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    group.series.push((key, Series::default()));
                    group.series.len() - 1
                }
            };
            group.series[i].1.take(point.time, point.reading, add);
        }
    }

    let _ = writeln!(out, "\n== metrics ({})", groups.len());
    for group in &groups {
        let _ = writeln!(out, "  {}", group.title);
        let width = group
            .series
            .iter()
            .map(|(k, _)| k.chars().count().max("(no attributes)".len()))
            .max()
            .unwrap_or(0);
        for (key, s) in &group.series {
            let key = if key.is_empty() {
                "(no attributes)"
            } else {
                key
            };
            let value = match group.shape {
                Shape::Gauge | Shape::CumulativeSum => {
                    format!("last={}", num(s.last.map_or(0.0, |(_, v)| v)))
                }
                Shape::DeltaSum => format!("sum={}", num(s.sum)),
                Shape::DeltaHistogram | Shape::CumulativeHistogram => format!(
                    "count={} sum={} min={} max={}",
                    s.count,
                    num(s.sum),
                    s.min.map_or("-".to_owned(), num),
                    s.max.map_or("-".to_owned(), num),
                ),
                Shape::Summary => format!("count={} sum={}", s.count, num(s.sum)),
                Shape::Empty => String::new(),
            };
            let _ = writeln!(
                out,
                "      {}  {value}  ({} points)",
                fit(key, width),
                s.points
            );
        }
    }
}

fn histogram_kind(name: &str, temporality: i32) -> (Shape, String) {
    if is_delta(temporality) {
        (Shape::DeltaHistogram, format!("{name}, delta"))
    } else {
        (Shape::CumulativeHistogram, format!("{name}, cumulative"))
    }
}

fn num(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() < 0.001 || value.abs() >= 1e15 {
        format!("{value:e}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
