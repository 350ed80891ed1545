//! SDK → receiver: export time of a 100-span batch from the Python OpenTelemetry SDK to
//! Contrail's local receiver.

use anyhow::{Context, Result, anyhow};
use contrail_sim::report::Summary;

use crate::harness::{Bench, Function, start_sink, vars};
use crate::report::{Results, Row};

const SDK_SPANS: u32 = 100;
const SDK_EXPORTS: u32 = 20;

/// Times the export of one 100-span batch to Contrail's receiver, `BENCH_EXPORTS` times, and
/// writes the milliseconds to `BENCH_OUT`, one per line.
pub(crate) const PYTHON_SDK_HANDLER: &str = r#"import os, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("bench")
for i in range(int(os.environ["BENCH_SPANS"])):
    with tracer.start_as_current_span("SELECT orders %d" % i) as span:
        span.set_attribute("db.system.name", "postgresql")
        span.set_attribute("db.query.text", "SELECT * FROM orders WHERE id = $1")
        span.set_attribute("db.response.returned_rows", i)
SPANS = memory.get_finished_spans()
EXPORTER = OTLPSpanExporter(endpoint="http://%s/v1/traces" % os.environ["CONTRAIL_RECEIVER_ENDPOINT"])

def handler(event, context):
    times = []
    for _ in range(int(os.environ["BENCH_EXPORTS"])):
        start = time.perf_counter()
        result = EXPORTER.export(SPANS)
        times.append((time.perf_counter() - start) * 1000.0)
        if result.name != "SUCCESS":
            raise RuntimeError("export failed: %s" % result)
    with open(os.environ["BENCH_OUT"], "a") as f:
        for t in times:
            f.write("%f\n" % t)
    return {}
"#;

/// Export time of a 100-span batch from the Python SDK to Contrail's receiver.
pub(crate) async fn run(bench: &Bench, sdk: &Function, results: &mut Results) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("times.txt");
    let sink = start_sink().await?;
    let contrail_env = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
    let extra = vec![
        ("BENCH_SPANS".to_owned(), SDK_SPANS.to_string()),
        ("BENCH_EXPORTS".to_owned(), SDK_EXPORTS.to_string()),
        ("BENCH_OUT".to_owned(), out.display().to_string()),
    ];
    eprintln!("bench: SDK → receiver");
    let invocations = 5;
    bench
        .run(sdk, Some(&contrail_env), invocations, &extra)
        .await?;
    sink.shutdown().await;
    let times: Vec<f64> = std::fs::read_to_string(&out)
        .context("read the SDK timings")?
        .lines()
        .map(|l| l.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .context("parse the SDK timings")?;
    let s = Summary::of(&times).ok_or_else(|| anyhow!("no SDK timings"))?;
    results.rows.push(Row::new(
        format!("function SDK → receiver, one {SDK_SPANS}-span export: median / p99"),
        format!("{:.2} ms / {:.2} ms", s.median, s.p99),
        "—",
        None,
    ));
    results.notes.push(format!(
        "SDK → receiver: the Python OpenTelemetry SDK's OTLP/HTTP span exporter, timed around \
         `export()` of the same {SDK_SPANS} spans, {SDK_EXPORTS} times per invocation × \
         {invocations} invocations ({} exports).",
        times.len()
    ));
    Ok(())
}
