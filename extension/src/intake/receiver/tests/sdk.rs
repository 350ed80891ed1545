//! Real OpenTelemetry SDKs against the receiver: the Python SDK's OTLP/HTTP protobuf exporter
//! (with the export time it costs the function), and the Node SDK's OTLP JSON serializer.
//!
//! Needs `scripts/install-test-deps.sh` (the Python venv in `.tools/venv` and the Node
//! packages in `sample-functions/node/node_modules`), so both tests are ignored by a plain
//! `cargo test`; run them with `--include-ignored`. Without the tools they fail, saying what is
//! missing: they never pass without running.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::process::Command;

use contrail_testkit::http::post;

use super::{python, repo_root, start};
use crate::diag::Stats;
use crate::pipeline::{Intake, OtlpPayload};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

const EXPORTS: usize = 200;
const SPANS_PER_EXPORT: usize = 100;

/// Builds one batch of spans with the SDK, then times `exporter.export(batch)` as a span
/// processor would call it: the function waits exactly this long per export.
const PYTHON_EXPORT: &str = r#"
import json, statistics, sys, time
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

base, exports, per_export = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
memory = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "sdk-bench"}))
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("bench")
with tracer.start_as_current_span("handler") as root:
    for i in range(per_export - 1):
        with tracer.start_as_current_span(f"step-{i}") as span:
            span.set_attribute("step.index", i)
            span.set_attribute("step.ratio", i / 7)
            span.set_attribute("step.tags", ["a", "b"])
            span.add_event("checkpoint", {"ok": True})
batch = memory.get_finished_spans()
assert len(batch) == per_export, len(batch)

def measure(exporter):
    times, failures = [], 0
    for _ in range(exports):
        t0 = time.perf_counter()
        result = exporter.export(batch)
        times.append((time.perf_counter() - t0) * 1000.0)
        failures += result is not SpanExportResult.SUCCESS
    times.sort()
    return {"median_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
            "failures": failures}

def summarize(times):
    times.sort()
    return {"median_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))]}

# The SDK's own share: turning the batch into protobuf bytes, no I/O.
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
encode_times = []
for _ in range(exports):
    t0 = time.perf_counter()
    body = encode_spans(batch).SerializePartialToString()
    encode_times.append((time.perf_counter() - t0) * 1000.0)

# The receiver's share: one POST of the encoded bytes on a kept-alive connection.
import requests
session = requests.Session()
post_times = []
for _ in range(exports):
    t0 = time.perf_counter()
    answer = session.post(base + "/v1/traces", data=body,
                          headers={"Content-Type": "application/x-protobuf"})
    post_times.append((time.perf_counter() - t0) * 1000.0)
    assert answer.status_code == 200, answer.status_code

# The same POST with the standard library's client, which costs less than requests.
import http.client, urllib.parse
host = urllib.parse.urlsplit(base).netloc
connection = http.client.HTTPConnection(host)
raw_times = []
for _ in range(exports):
    t0 = time.perf_counter()
    connection.request("POST", "/v1/traces", body=body,
                       headers={"Content-Type": "application/x-protobuf"})
    answer = connection.getresponse()
    answer.read()
    raw_times.append((time.perf_counter() - t0) * 1000.0)
    assert answer.status == 200, answer.status
connection.close()

plain = measure(OTLPSpanExporter(endpoint=base + "/v1/traces"))
gzip = measure(OTLPSpanExporter(endpoint=base + "/v1/traces", compression=Compression.Gzip))

reader = InMemoryMetricReader()
meter = MeterProvider(metric_readers=[reader]).get_meter("bench")
meter.create_counter("invocations").add(3, {"cold": True})
meter.create_histogram("latency", unit="ms").record(12.5)
metric_result = OTLPMetricExporter(endpoint=base + "/v1/metrics").export(reader.get_metrics_data())
print(json.dumps({"plain": plain, "gzip": gzip, "encode": summarize(encode_times),
                  "post": summarize(post_times), "raw": summarize(raw_times), "body_bytes": len(body), "metrics_ok": metric_result.name == "SUCCESS",
                  "trace_id": format(root.get_span_context().trace_id, "032x")}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn the_python_sdk_exports_every_span_and_reports_what_an_export_costs() {
    let mut receiver = start(64, crate::intake::receiver::config::DEFAULT_MAX_BODY_BYTES).await;
    // Drain like the worker does, counting spans and metrics.
    let mut intake = receiver.take_intake();
    let drain = tokio::spawn(async move {
        let (mut spans, mut metrics, mut trace_ids) =
            (0u64, Vec::new(), std::collections::BTreeSet::new());
        while let Some(unit) = intake.recv().await {
            match unit {
                Intake::Otlp(OtlpPayload::Traces(request), _) => {
                    for span in request
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .flat_map(|s| &s.spans)
                    {
                        spans += 1;
                        trace_ids.insert(hex(&span.trace_id));
                    }
                }
                Intake::Otlp(OtlpPayload::Metrics(request), _) => metrics.push(request),
                other => panic!("unexpected {other:?}"),
            }
        }
        (spans, metrics, trace_ids)
    });

    let url = format!("http://{}", receiver.addr);
    let report = python(
        PYTHON_EXPORT,
        vec![url, EXPORTS.to_string(), SPANS_PER_EXPORT.to_string()],
    )
    .await;
    let (plain, gzip) = (&report["plain"], &report["gzip"]);
    let ms = |v: &serde_json::Value, which: &str| v[which].as_f64().unwrap();
    println!(
        "Python SDK (opentelemetry-exporter-otlp-proto-http) exporting {SPANS_PER_EXPORT} spans \
         ({} bytes of protobuf) to the receiver, {EXPORTS} times each:\n  \
         exporter.export, protobuf:      median {:.3} ms, p99 {:.3} ms\n  \
         exporter.export, protobuf+gzip: median {:.3} ms, p99 {:.3} ms\n  \
         of which SDK encoding only:     median {:.3} ms, p99 {:.3} ms\n  \
         POST of the encoded body only:  median {:.3} ms, p99 {:.3} ms (requests)\n  \
         the same with http.client:      median {:.3} ms, p99 {:.3} ms",
        report["body_bytes"],
        ms(plain, "median_ms"),
        ms(plain, "p99_ms"),
        ms(gzip, "median_ms"),
        ms(gzip, "p99_ms"),
        ms(&report["encode"], "median_ms"),
        ms(&report["encode"], "p99_ms"),
        ms(&report["post"], "median_ms"),
        ms(&report["post"], "p99_ms"),
        ms(&report["raw"], "median_ms"),
        ms(&report["raw"], "p99_ms"),
    );
    assert_eq!(plain["failures"], 0);
    assert_eq!(gzip["failures"], 0);
    assert_eq!(report["metrics_ok"], true);

    let stats = receiver.stats.clone();
    receiver.stop().await;
    let (spans, metrics, trace_ids) = drain.await.unwrap();
    let expected_spans = (4 * EXPORTS * SPANS_PER_EXPORT) as u64;
    assert_eq!(spans, expected_spans);
    assert_eq!(
        trace_ids.into_iter().collect::<Vec<_>>(),
        [report["trace_id"].as_str().unwrap()]
    );
    assert_eq!(Stats::get(&stats.receiver_records), expected_spans + 2);
    assert_eq!(Stats::get(&stats.receiver_rejected_requests), 0);

    let names: Vec<_> = metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["invocations", "latency"]);
}

/// What the JavaScript SDK's OTLP/HTTP JSON exporter sends (its own serializer).
const NODE_JSON: &str = r#"
const { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } =
  require('@opentelemetry/sdk-trace');
const { JsonTraceSerializer } = require('@opentelemetry/otlp-transformer');
const api = require('@opentelemetry/api');
const memory = new InMemorySpanExporter();
const provider = new TracerProvider({
  spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
});
const tracer = provider.getTracer('json-check', '1.2.3');
const parent = tracer.startSpan('handler', { kind: api.SpanKind.SERVER });
const ctx = api.trace.setSpan(api.context.active(), parent);
const child = tracer.startSpan('query', {
  kind: api.SpanKind.CLIENT,
  attributes: { 'db.rows': 42, 'db.ratio': 0.25, 'db.cached': false, 'db.tags': ['x', 'y'] },
}, ctx);
child.addEvent('retry', { attempt: 2 });
child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'timeout' });
child.end();
parent.end();
provider.forceFlush().then(() => {
  const body = Buffer.from(JsonTraceSerializer.serializeRequest(memory.getFinishedSpans()));
  process.stdout.write(JSON.stringify({
    body: body.toString('utf8'),
    traceId: child.spanContext().traceId,
    childId: child.spanContext().spanId,
    parentId: parent.spanContext().spanId,
  }));
}, (err) => { console.error(err); process.exit(1); });
"#;

#[tokio::test]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn the_node_sdks_otlp_json_is_decoded_field_for_field() {
    let mut receiver = start(8, crate::intake::receiver::config::DEFAULT_MAX_BODY_BYTES).await;
    let node_dir = repo_root().join("sample-functions/node");
    assert!(
        node_dir
            .join("node_modules/@opentelemetry/otlp-transformer")
            .exists(),
        "Node packages missing: run scripts/install-test-deps.sh"
    );
    let output = Command::new("node")
        .arg("-e")
        .arg(NODE_JSON)
        .current_dir(&node_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let body = generated["body"].as_str().unwrap().to_owned();

    let answer = post(
        receiver.addr,
        "/v1/traces",
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, 200, "{} for {body}", answer.text());
    let Ok(Intake::Otlp(OtlpPayload::Traces(request), _)) = receiver.intake.try_recv() else {
        panic!("nothing queued")
    };
    let scope = &request.resource_spans[0].scope_spans[0];
    assert_eq!(scope.scope.as_ref().unwrap().version, "1.2.3");
    let child = scope.spans.iter().find(|s| s.name == "query").unwrap();
    let parent = scope.spans.iter().find(|s| s.name == "handler").unwrap();
    assert_eq!(hex(&child.trace_id), generated["traceId"].as_str().unwrap());
    assert_eq!(hex(&child.span_id), generated["childId"].as_str().unwrap());
    assert_eq!(
        hex(&child.parent_span_id),
        generated["parentId"].as_str().unwrap()
    );
    assert_eq!(child.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(parent.kind, 2, "SPAN_KIND_SERVER");
    assert!(child.start_time_unix_nano > 1_600_000_000_000_000_000);
    assert!(child.end_time_unix_nano >= child.start_time_unix_nano);
    assert_eq!(child.status.as_ref().unwrap().code, 2);
    assert_eq!(child.status.as_ref().unwrap().message, "timeout");
    assert_eq!(child.events[0].name, "retry");
    let value = |key: &str| {
        child
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    assert_eq!(value("db.rows"), Some(Value::IntValue(42)));
    assert_eq!(value("db.ratio"), Some(Value::DoubleValue(0.25)));
    assert_eq!(value("db.cached"), Some(Value::BoolValue(false)));
    assert!(matches!(value("db.tags"), Some(Value::ArrayValue(a)) if a.values.len() == 2));
    // The resource the SDK sent (its unknown_service fallback among it) arrives intact.
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert!(
        resource
            .attributes
            .iter()
            .any(|kv| kv.key == "service.name")
    );
    receiver.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
