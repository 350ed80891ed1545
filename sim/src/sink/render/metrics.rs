//! The metrics summary: one line per metric and attribute set.

use std::collections::HashSet;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, NumberDataPoint};

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
        let (shape, kind) = match &m.data {
            Some(Data::Gauge(_)) => (Shape::Gauge, "gauge".to_owned()),
            Some(Data::Sum(s)) => {
                let temporality = if is_delta(s.aggregation_temporality) {
                    "delta"
                } else {
                    "cumulative"
                };
                let monotonic = if s.is_monotonic { ", monotonic" } else { "" };
                let shape = if is_delta(s.aggregation_temporality) {
                    Shape::DeltaSum
                } else {
                    Shape::CumulativeSum
                };
                (shape, format!("sum, {temporality}{monotonic}"))
            }
            Some(Data::Histogram(h)) => histogram_kind("histogram", h.aggregation_temporality),
            Some(Data::ExponentialHistogram(h)) => {
                histogram_kind("exponential histogram", h.aggregation_temporality)
            }
            Some(Data::Summary(_)) => (Shape::Summary, "summary".to_owned()),
            None => (Shape::Empty, "no data".to_owned()),
        };
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
        let series = |group: &mut MetricGroup, attributes: &[KeyValue]| -> usize {
            let key = format!("{service}{}", attributes_text(attributes));
            match group.series.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    group.series.push((key, Series::default()));
                    group.series.len() - 1
                }
            }
        };
        match &m.data {
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i]
                        .1
                        .number(p.time_unix_nano, number_value(p), false);
                }
            }
            Some(Data::Sum(s)) => {
                let add = is_delta(s.aggregation_temporality);
                for p in &s.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i]
                        .1
                        .number(p.time_unix_nano, number_value(p), add);
                }
            }
            Some(Data::Histogram(h)) => {
                let add = is_delta(h.aggregation_temporality);
                for p in &h.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i].1.distribution(
                        p.time_unix_nano,
                        p.count,
                        p.sum,
                        p.min,
                        p.max,
                        add,
                    );
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                let add = is_delta(h.aggregation_temporality);
                for p in &h.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i].1.distribution(
                        p.time_unix_nano,
                        p.count,
                        p.sum,
                        p.min,
                        p.max,
                        add,
                    );
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    let i = series(group, &p.attributes);
                    group.series[i].1.distribution(
                        p.time_unix_nano,
                        p.count,
                        Some(p.sum),
                        None,
                        None,
                        false,
                    );
                }
            }
            None => {}
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
