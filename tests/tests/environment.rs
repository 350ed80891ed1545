//! What an environment cost and how busy it was, end to end: the release `contrail` binary under
//! the emulator with a Python function that sleeps a known time, on a schedule of known idle
//! gaps. The exported cost equals what the emulator's billed durations and init give at the
//! documented prices; busy time, invocations and idle gaps equal what the emulator ran; the init
//! span has its breakdown; an environment shut down without an invocation reports unused init.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use contrail_e2e::python_run;
use contrail_sim::sink::{self, Received, SinkConfig};
use contrail_sim::{RunConfig, RunReport};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;

const HANDLER: &str = r#"
import time


def handler(event, context):
    time.sleep(event["sleep_s"])
    return {"ok": True}
"#;

/// us-east-1, x86_64, first tier: $ per GB-second and per request (extension/src/mapping/prices.rs).
const GB_SECOND: f64 = 0.000_016_666_7;
const PER_REQUEST: f64 = 0.000_000_2;
const MEMORY_MB: u32 = 512;
const INVOCATIONS: u32 = 3;
const SLEEP: Duration = Duration::from_millis(150);
const IDLE_GAP: Duration = Duration::from_millis(700);

async fn run(invocations: u32) -> (RunReport, Received) {
    let sink = sink::start(SinkConfig::default())
        .await
        .expect("start sink");
    let (base, _dirs) = python_run(
        HANDLER,
        "environment-e2e",
        &[
            ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
            ("CONTRAIL_FLUSH", "end".into()),
        ],
    );
    let cfg = RunConfig {
        memory_mb: MEMORY_MB,
        invocations,
        payload: format!(r#"{{"sleep_s": {}}}"#, SLEEP.as_secs_f64()).into_bytes(),
        idle_gap: IDLE_GAP,
        init_timeout: Duration::from_secs(30),
        ..base
    };
    let report = contrail_sim::run(cfg).await.expect("emulator run");
    contrail_e2e::assert_ran(&report, invocations as usize);
    // The run ends after SHUTDOWN: Contrail's final flush has been answered.
    (report, sink.snapshot())
}

/// Every point of a histogram: (count, sum), added over the delta or taken from the latest
/// cumulative point.
fn histogram(r: &Received, name: &str) -> (u64, f64) {
    contrail_e2e::histogram_totals(r, name)
}

/// The latest value of a gauge.
fn gauge(r: &Received, name: &str) -> f64 {
    r.metrics_named(name)
        .into_iter()
        .filter_map(|m| match &m.metric.data {
            Some(metric::Data::Gauge(g)) => g.data_points.last().cloned(),
            _ => None,
        })
        .max_by_key(|p| p.time_unix_nano)
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => Some(v),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no gauge {name}"))
}

fn close(a: f64, b: f64, relative: f64) -> bool {
    (a - b).abs() <= b.abs() * relative
}

fn span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_utilization_and_cold_start_match_what_the_emulator_ran() {
    let (report, received) = run(INVOCATIONS).await;
    let gb = f64::from(MEMORY_MB) / 1024.0;

    // Cost: the emulator's billed durations (the first holds the on-demand init) at the prices.
    let want: f64 = report
        .invocations
        .iter()
        .map(|i| i.billed_duration_ms as f64 / 1000.0 * gb * GB_SECOND + PER_REQUEST)
        .sum();
    let (count, usd) = histogram(&received, "aws.lambda.invocation.cost");
    assert_eq!(count, u64::from(INVOCATIONS));
    assert!(close(usd, want, 1e-9), "cost {usd} != {want}");
    let init_ms = report.init_ms.expect("the emulator's init duration");
    let (count, usd) = histogram(&received, "aws.lambda.init.cost");
    assert_eq!(count, 1);
    let want = init_ms.ceil() / 1000.0 * gb * GB_SECOND;
    assert!(close(usd, want, 1e-9), "init cost {usd} != {want}");

    // Utilization: busy time is the invoke phases the emulator reported, to the microsecond.
    let busy: f64 = report
        .invocations
        .iter()
        .map(|i| i.duration_ms)
        .sum::<f64>()
        / 1000.0;
    let got_busy = gauge(&received, "aws.lambda.environment.busy_time");
    assert!((got_busy - busy).abs() < 1e-6, "busy {got_busy} != {busy}");
    assert_eq!(
        gauge(&received, "aws.lambda.environment.invocations"),
        f64::from(INVOCATIONS)
    );
    // The life holds at least init, the invocations and the scripted gaps between them; the
    // utilization is the exported busy time over it.
    let lifetime = gauge(&received, "aws.lambda.environment.lifetime");
    let least = init_ms / 1000.0 + busy + f64::from(INVOCATIONS - 1) * IDLE_GAP.as_secs_f64();
    assert!(lifetime >= least, "lifetime {lifetime} < {least}");
    let u = gauge(&received, "aws.lambda.environment.utilization");
    assert!(close(u, got_busy / lifetime, 1e-9), "{u}");
    assert!(u > 0.0 && u < 1.0, "{u}");
    // Idle gaps: one before each invocation; those between them are the scripted gap at least
    // (the emulator keeps the environment frozen that long). Init, the gaps and the busy time
    // are consecutive stretches of the life, so together they fit in it.
    let (count, gaps) = histogram(&received, "aws.lambda.environment.idle_gap");
    assert_eq!(count, u64::from(INVOCATIONS));
    let scripted = f64::from(INVOCATIONS - 1) * IDLE_GAP.as_secs_f64();
    assert!(gaps >= scripted, "gaps {gaps} < {scripted}");
    let parts = init_ms / 1000.0 + gaps + got_busy;
    assert!(parts <= lifetime + 1e-6, "{parts} > lifetime {lifetime}");
    assert!(
        received
            .metrics_named("aws.lambda.environment.unused_init")
            .is_empty()
    );

    // The cold-start breakdown: children of the init span, inside it. The extensions' span
    // only when init waited for them after the runtime was ready: in a run where every
    // extension was ready first, the runtime's span ends where init ends.
    let spans: Vec<Span> = received.spans().iter().map(|e| e.span.clone()).collect();
    let init = span(&spans, "aws.lambda.init");
    let waited = spans.iter().any(|s| s.name == "aws.lambda.init.extensions");
    let names = [
        "aws.lambda.init.contrail",
        "aws.lambda.init.runtime",
        "aws.lambda.init.extensions",
    ];
    for name in &names[..if waited { 3 } else { 2 }] {
        let child = span(&spans, name);
        assert_eq!(child.parent_span_id, init.span_id, "{name}");
        assert_eq!(child.trace_id, init.trace_id, "{name}");
        assert!(
            child.start_time_unix_nano <= child.end_time_unix_nano,
            "{name}: {child:?}"
        );
    }
    let runtime = span(&spans, "aws.lambda.init.runtime");
    assert_eq!(runtime.start_time_unix_nano, init.start_time_unix_nano);
    if waited {
        let waiting = span(&spans, "aws.lambda.init.extensions");
        assert_eq!(waiting.start_time_unix_nano, runtime.end_time_unix_nano);
        assert_eq!(waiting.end_time_unix_nano, init.end_time_unix_nano);
    } else {
        assert!(
            runtime.end_time_unix_nano >= init.end_time_unix_nano,
            "init waited after the runtime was ready, and no extensions span says so: {runtime:?} {init:?}"
        );
    }
    // Contrail is an extension: its first `next` is part of what init waits for.
    let own = span(&spans, "aws.lambda.init.contrail");
    assert!(own.end_time_unix_nano <= init.end_time_unix_nano, "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_shut_down_without_an_invocation_reports_unused_init() {
    let (report, received) = run(0).await;
    assert!(report.init_ms.is_some(), "{}", report.render_text());
    let points: i64 = received
        .metrics_named("aws.lambda.environment.unused_init")
        .into_iter()
        .filter_map(|m| match &m.metric.data {
            Some(metric::Data::Sum(s)) => Some(s.data_points.clone()),
            _ => None,
        })
        .flatten()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    assert_eq!(points, 1);
    assert_eq!(gauge(&received, "aws.lambda.environment.invocations"), 0.0);
    assert_eq!(gauge(&received, "aws.lambda.environment.utilization"), 0.0);
    assert!(
        received
            .metrics_named("aws.lambda.invocation.cost")
            .is_empty()
    );
}
