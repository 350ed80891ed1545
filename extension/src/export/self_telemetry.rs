//! Contrail's own telemetry: OTLP metrics from [`Stats`] and the delivery histograms, sent
//! after the data at each flush, and a rate-limited warning on stderr when data is dropped.
//!
//! All metrics are cumulative (a snapshot since start-up), so a snapshot that could not be
//! sent is simply superseded by the next one: self-telemetry is never buffered.
//!
//! | metric | type | unit | attributes |
//! |---|---|---|---|
//! | `contrail.records.received` | counter | `{record}` | `source` = `telemetry_api` \| `receiver` |
//! | `contrail.records.exported` | counter | `{record}` | |
//! | `contrail.records.dropped` | counter | `{record}` | `reason` (see `DropReason::as_str`) |
//! | `contrail.fields.dropped` | counter | `{field}` | `reason` = `invalid_time` \| `invalid_value` \| `missing` |
//! | `contrail.export.requests` | counter | `{request}` | |
//! | `contrail.export.failures` | counter | `{request}` | |
//! | `contrail.export.abandoned` | counter | `{request}` | |
//! | `contrail.export.duration` | histogram | `ms` | `signal`, `outcome` = `ok` \| `failed` \| `retryable` \| `abandoned` \| `cut` (a probe the runtime's end stopped) |
//! | `contrail.flush.duration` | histogram | `ms` | |
//! | `contrail.post_runtime.duration` | counter | `ms` | |
//! | `contrail.platform.dropped.records` / `.bytes` | counter | `{record}` / `By` | |
//! | `contrail.secrets.failures` | counter | `{fetch}` | |
//! | `contrail.buffer.held` | gauge | `{record}` | |
//! | `contrail.buffer.bytes` | gauge | `By` | |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::diag;
use crate::diag::{DropReason, ExportFault, FieldReason, Stats};
use crate::export::LatencySink;
use crate::export::Outcome;
use crate::export::breaker::{Health, State};
use crate::export::buffer::Held;
use crate::pipeline::Signal;

/// Bucket bounds (ms) of the duration histograms.
pub(crate) const DURATION_BOUNDS_MS: [f64; 10] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// How often the drop warning may be written.
pub(crate) const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A cumulative histogram of durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DurationHistogram {
    counts: [u64; DURATION_BOUNDS_MS.len() + 1],
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
}

impl DurationHistogram {
    pub(crate) fn observe(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let bucket = DURATION_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(DURATION_BOUNDS_MS.len());
        self.counts[bucket] += 1;
        self.sum += ms;
        self.count += 1;
        self.min = Some(self.min.map_or(ms, |m| m.min(ms)));
        self.max = Some(self.max.map_or(ms, |m| m.max(ms)));
    }

    fn point(&self, attributes: Vec<KeyValue>, start: u64, now: u64) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.counts.to_vec(),
            explicit_bounds: DURATION_BOUNDS_MS.to_vec(),
            min: self.min,
            max: self.max,
            ..Default::default()
        }
    }
}

/// The delivery-side observations self-telemetry reports next to [`Stats`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SelfTelemetry {
    /// Keyed by (signal, outcome).
    export: Vec<((Signal, Outcome), DurationHistogram)>,
    flush: DurationHistogram,
    start_unix_nano: u64,
}

/// One export endpoint in self-telemetry: its breaker's state and what was learnt about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointReport {
    /// `host:port`.
    pub(crate) endpoint: String,
    pub(crate) state: State,
    pub(crate) health: Health,
}

impl LatencySink for SelfTelemetry {
    fn observe_export(&mut self, signal: Signal, latency: Duration, outcome: Outcome) {
        match self
            .export
            .iter_mut()
            .find(|(k, _)| *k == (signal, outcome))
        {
            Some((_, h)) => h.observe(latency),
            None => {
                let mut h = DurationHistogram::default();
                h.observe(latency);
                self.export.push(((signal, outcome), h));
            }
        }
    }
}

fn unix_nano(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn int_point(attributes: Vec<KeyValue>, value: u64, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(value).unwrap_or(i64::MAX),
        )),
        ..Default::default()
    }
}

fn counter(name: &str, unit: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, description: &str, point: NumberDataPoint) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point],
        })),
        ..Default::default()
    }
}

impl SelfTelemetry {
    pub(crate) fn new() -> Self {
        SelfTelemetry {
            start_unix_nano: unix_nano(SystemTime::now()),
            ..Default::default()
        }
    }

    pub(crate) fn observe_flush(&mut self, d: Duration) {
        self.flush.observe(d);
    }

    /// `contrail.export.breaker.*` and `contrail.export.endpoint.*`, per endpoint.
    fn endpoint_metrics(endpoints: &[EndpointReport], start: u64, now: u64) -> Vec<Metric> {
        if endpoints.is_empty() {
            return Vec::new();
        }
        let each = |f: &dyn Fn(&EndpointReport) -> Vec<NumberDataPoint>| {
            endpoints.iter().flat_map(f).collect::<Vec<_>>()
        };
        let at = |e: &EndpointReport| kv("endpoint", &e.endpoint);
        let mut metrics = vec![
            Metric {
                name: "contrail.export.breaker.state".to_owned(),
                description: "The export circuit breaker of each endpoint: 0 closed, 1 open, 2 half-open (probing)".to_owned(),
                unit: "1".to_owned(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: each(&|e| {
                        vec![int_point(
                            vec![at(e), kv("state", e.state.as_str())],
                            e.state.code(),
                            start,
                            now,
                        )]
                    }),
                })),
                ..Default::default()
            },
            counter(
                "contrail.export.breaker.trips",
                "{trip}",
                "Times an endpoint's breaker opened (a flush could not finish inside its budget)",
                each(&|e| vec![int_point(vec![at(e)], e.health.trips, start, now)]),
            ),
            counter(
                "contrail.export.breaker.probes",
                "{request}",
                "Probes (export requests without data) sent to an endpoint whose breaker was open, by outcome",
                each(&|e| {
                    vec![
                        int_point(
                            vec![at(e), kv("outcome", "answered")],
                            e.health.probes_answered,
                            start,
                            now,
                        ),
                        int_point(
                            vec![at(e), kv("outcome", "unanswered")],
                            e.health.probes - e.health.probes_answered,
                            start,
                            now,
                        ),
                    ]
                }),
            ),
            counter(
                "contrail.export.endpoint.attempts",
                "{request}",
                "Export attempts per endpoint: answered, failed (retryable answer or connection error), timed out",
                each(&|e| {
                    [
                        ("answered", e.health.successes),
                        ("failed", e.health.failures),
                        ("timed_out", e.health.timeouts),
                    ]
                    .into_iter()
                    .map(|(o, n)| int_point(vec![at(e), kv("outcome", o)], n, start, now))
                    .collect()
                }),
            ),
        ];
        let rtts = each(&|e| {
            e.health
                .rtt
                .map(|rtt| {
                    int_point(
                        vec![at(e)],
                        u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
                        start,
                        now,
                    )
                })
                .into_iter()
                .collect()
        });
        if !rtts.is_empty() {
            metrics.push(Metric {
                name: "contrail.export.endpoint.rtt".to_owned(),
                description:
                    "Moving average of the round trips of answered export attempts, per endpoint"
                        .to_owned(),
                unit: "us".to_owned(),
                data: Some(metric::Data::Gauge(Gauge { data_points: rtts })),
                ..Default::default()
            });
        }
        metrics
    }

    /// A snapshot of every `contrail.*` metric.
    pub(crate) fn snapshot(
        &self,
        stats: &Stats,
        held: Held,
        endpoints: &[EndpointReport],
        resource: Option<Resource>,
        now: SystemTime,
    ) -> ResourceMetrics {
        let start = self.start_unix_nano;
        let now = unix_nano(now);
        let get = Stats::get;
        let mut metrics = vec![
            counter(
                "contrail.records.received",
                "{record}",
                "Records Contrail received",
                vec![
                    int_point(
                        vec![kv("source", "telemetry_api")],
                        get(&stats.telemetry_records),
                        start,
                        now,
                    ),
                    int_point(
                        vec![kv("source", "receiver")],
                        get(&stats.receiver_records),
                        start,
                        now,
                    ),
                ],
            ),
            counter(
                "contrail.records.unknown",
                "{record}",
                "Telemetry API records of a type Contrail does not know (exported as logs)",
                vec![int_point(vec![], get(&stats.unknown_records), start, now)],
            ),
            counter(
                "contrail.records.exported",
                "{record}",
                "Records the backend accepted",
                vec![int_point(vec![], get(&stats.exported_records), start, now)],
            ),
            counter(
                "contrail.records.dropped",
                "{record}",
                "Records Contrail dropped, by reason",
                DropReason::ALL
                    .iter()
                    .map(|r| {
                        int_point(
                            vec![kv("reason", r.as_str())],
                            stats.dropped_total(*r),
                            start,
                            now,
                        )
                    })
                    .collect(),
            ),
            counter(
                "contrail.fields.dropped",
                "{field}",
                "Fields of Telemetry API records given up (the records were kept), by reason",
                FieldReason::ALL
                    .iter()
                    .map(|r| {
                        int_point(
                            vec![kv("reason", r.as_str())],
                            stats.fields_dropped_total(*r),
                            start,
                            now,
                        )
                    })
                    .collect(),
            ),
            counter(
                "contrail.export.requests",
                "{request}",
                "Export requests sent",
                vec![int_point(vec![], get(&stats.export_attempts), start, now)],
            ),
            counter(
                "contrail.export.failures",
                "{request}",
                "Export requests that failed",
                vec![int_point(vec![], get(&stats.export_failures), start, now)],
            ),
            counter(
                "contrail.export.faults",
                "{attempt}",
                "Export attempts that failed beyond a status code (a reset, a stall, a name that does not resolve, a bad Retry-After, a huge body), by reason",
                ExportFault::ALL
                    .iter()
                    .map(|r| {
                        int_point(
                            vec![kv("reason", r.as_str())],
                            stats.faults_total(*r),
                            start,
                            now,
                        )
                    })
                    .collect(),
            ),
            counter(
                "contrail.export.abandoned",
                "{request}",
                "Export requests abandoned at a flush deadline",
                vec![int_point(vec![], get(&stats.export_abandoned), start, now)],
            ),
            counter(
                "contrail.post_runtime.duration",
                "ms",
                "Time Contrail spent after the runtime was done, before calling next",
                vec![int_point(vec![], get(&stats.post_runtime_ms), start, now)],
            ),
            counter(
                "contrail.receiver.refused",
                "{request}",
                "Requests the local OTLP receivers refused (undecodable, too large, wrong type), by transport",
                vec![
                    int_point(
                        vec![kv("transport", "http")],
                        get(&stats.receiver_rejected_requests),
                        start,
                        now,
                    ),
                    int_point(
                        vec![kv("transport", "grpc")],
                        get(&stats.grpc_refused),
                        start,
                        now,
                    ),
                ],
            ),
            counter(
                "contrail.secrets.failures",
                "{fetch}",
                "Header values from Secrets Manager or SSM that a fetch failed to get",
                vec![int_point(vec![], get(&stats.secret_failures), start, now)],
            ),
            gauge(
                "contrail.buffer.held",
                "{record}",
                "Records waiting in the export buffer",
                int_point(vec![], held.records, start, now),
            ),
            gauge(
                "contrail.buffer.bytes",
                "By",
                "Bytes waiting in the export buffer",
                int_point(vec![], held.bytes as u64, start, now),
            ),
        ];
        metrics.extend(Self::endpoint_metrics(endpoints, start, now));
        metrics.push(Metric {
            name: "contrail.export.duration".to_owned(),
            description: "Duration of export requests".to_owned(),
            unit: "ms".to_owned(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: self
                    .export
                    .iter()
                    .map(|((signal, outcome), h)| {
                        h.point(
                            vec![
                                kv("signal", signal.as_str()),
                                kv("outcome", outcome.as_str()),
                            ],
                            start,
                            now,
                        )
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        });
        metrics.push(Metric {
            name: "contrail.flush.duration".to_owned(),
            description: "Duration of flushes".to_owned(),
            unit: "ms".to_owned(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![self.flush.point(vec![], start, now)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        });
        ResourceMetrics {
            resource,
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "contrail".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

/// Warns on stderr when records were dropped, at most once per [`DROP_WARNING_INTERVAL`], with
/// the counts since the last warning. Never per record: Contrail's stderr comes back to it as
/// telemetry.
#[derive(Debug)]
pub(crate) struct DropWarner {
    reported: [u64; DropReason::ALL.len()],
    every: diag::Every,
}

impl Default for DropWarner {
    fn default() -> Self {
        DropWarner {
            reported: [0; DropReason::ALL.len()],
            every: diag::Every::new(DROP_WARNING_INTERVAL),
        }
    }
}

impl DropWarner {
    /// Compare the drop counters with the last warning; warn if they moved and the interval
    /// allows. Returns the message when one was written.
    pub(crate) fn check(&mut self, stats: &Stats) -> Option<String> {
        let totals = DropReason::ALL.map(|r| stats.dropped_total(r));
        let parts: Vec<String> = DropReason::ALL
            .iter()
            .zip(totals.iter().zip(self.reported.iter()))
            .filter(|(_, (now, before))| now > before)
            .map(|(r, (now, before))| format!("{} {}", now - before, r.as_str()))
            .collect();
        if parts.is_empty() {
            return None;
        }
        let message = format!(
            "dropped records since the last report: {}",
            parts.join(", ")
        );
        if self.every.warn(format_args!("{message}")) {
            self.reported = totals;
            Some(message)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_given_up_are_exported_by_reason() {
        let stats = Stats::default();
        stats.fields_dropped(FieldReason::InvalidTime, 2);
        stats.fields_dropped(FieldReason::Missing, 1);
        let snapshot =
            SelfTelemetry::new().snapshot(&stats, Held::default(), &[], None, SystemTime::now());
        let metric = snapshot.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == "contrail.fields.dropped")
            .expect("contrail.fields.dropped");
        let Some(metric::Data::Sum(sum)) = &metric.data else {
            panic!("not a sum: {metric:?}")
        };
        let by_reason: Vec<(String, i64)> = sum
            .data_points
            .iter()
            .map(|p| {
                let reason = match p.attributes[0]
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("{other:?}"),
                };
                let n = match p.value {
                    Some(number_data_point::Value::AsInt(n)) => n,
                    other => panic!("{other:?}"),
                };
                (reason, n)
            })
            .collect();
        assert_eq!(
            by_reason,
            [
                ("invalid_time".to_owned(), 2),
                ("invalid_value".to_owned(), 0),
                ("missing".to_owned(), 1),
            ]
        );
    }
}
