//! OTLP/gRPC, end to end: functions under the emulator export traces, metrics and logs with
//! real gRPC exporters to the release `contrail` binary's gRPC receiver, and Contrail forwards
//! them through a real collector (rotel) to a sink the test decodes.
//!
//! - the Python SDK's exporters (`opentelemetry-exporter-otlp-proto-grpc` on `grpcio`);
//! - Node's (`@opentelemetry/exporter-{trace,metrics,logs}-otlp-grpc` on `@grpc/grpc-js`,
//!   `tests/node-grpc`).
//!
//! Each handler makes a `grpc-order` span under the span the invocation's X-Ray header names as
//! parent (Contrail's invocation span), writes one OTLP log record in it and counts
//! `grpc.orders`, then flushes. The local OTLP/HTTP receiver is off: whatever arrives came over
//! gRPC. The Python sample run by `opentelemetry-instrument` is in `functions.rs`.
//!
//! Needs `scripts/install-test-deps.sh` (the venv's gRPC packages, `tests/node-grpc`'s npm
//! packages, the Node runtime client of the Node sample) and the release build of `contrail`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use contrail_e2e::{
    Backend, attr_str, body_of, extensions_dir, free_loopback_port, hex, invocation_spans,
    latest_counter, log_records, node_bin, python_function, root, sample_dir,
};
use contrail_sim::sink::Received;
use contrail_sim::{RunConfig, RunReport};

const INVOCATIONS: u32 = 3;

const PYTHON_HANDLER: &str = r#"
import logging, os

from opentelemetry import context as otel_context, trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.aws import AwsXRayLambdaPropagator
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

url = "http://" + os.environ["CONTRAIL_RECEIVER_GRPC_ENDPOINT"]
resource = Resource.create()
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url))],
)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=url)))
log = logging.getLogger("grpc-e2e")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
tracer = tracer_provider.get_tracer("contrail-e2e-python-grpc")
orders = meter_provider.get_meter("contrail-e2e-python-grpc").create_counter("grpc.orders")


def handler(event, context):
    request_id = context.aws_request_id
    token = otel_context.attach(AwsXRayLambdaPropagator().extract({}))
    try:
        with tracer.start_as_current_span("grpc-order", attributes={"faas.invocation_id": request_id}):
            orders.add(1, {"transport": "grpc"})
            log.info("grpc log line", extra={"faas.invocation_id": request_id})
    finally:
        otel_context.detach(token)
        tracer_provider.force_flush()
        meter_provider.force_flush()
        logger_provider.force_flush()
    return {"requestId": request_id}
"#;

/// A function to run: its command, folder and handler.
struct Function {
    name: &'static str,
    command: Vec<String>,
    task_root: PathBuf,
    handler: &'static str,
    /// Folders to keep for the run.
    _dirs: Vec<tempfile::TempDir>,
}

fn python() -> Function {
    let (dir, command) = python_function(PYTHON_HANDLER);
    Function {
        name: "python",
        command,
        task_root: dir.path().to_path_buf(),
        handler: "app.handler",
        _dirs: vec![dir],
    }
}

fn node() -> Function {
    let task_root = root().join("tests/node-grpc");
    assert!(
        task_root
            .join("node_modules/@opentelemetry/exporter-trace-otlp-grpc")
            .is_dir(),
        "{}/node_modules missing: run scripts/install-test-deps.sh",
        task_root.display()
    );
    // The runtime client of the Node sample; the handler's packages are its own.
    let ric = sample_dir("node").join("node_modules/aws-lambda-ric/index.mjs");
    assert!(
        ric.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        ric.display()
    );
    Function {
        name: "node",
        command: vec![node_bin().display().to_string(), ric.display().to_string()],
        task_root,
        handler: "index.handler",
        _dirs: Vec::new(),
    }
}

async fn run(function: &Function, backend: &Backend) -> RunReport {
    let exts = extensions_dir();
    let grpc = format!("127.0.0.1:{}", free_loopback_port());
    let config = RunConfig {
        runtime_command: function.command.clone(),
        task_root: Some(function.task_root.clone()),
        extensions_dir: Some(exts.path().to_path_buf()),
        handler: function.handler.into(),
        function_name: format!("grpc-e2e-{}", function.name),
        memory_mb: 256,
        invocations: INVOCATIONS,
        timeout: Duration::from_secs(20),
        init_timeout: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(5),
        env: vec![
            ("CONTRAIL_EXPORTER_OTLP_ENDPOINT".into(), backend.endpoint()),
            // Only gRPC: what arrives came that way.
            ("CONTRAIL_RECEIVER_ENDPOINT".into(), "off".into()),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT".into(), grpc),
            ("CONTRAIL_FLUSH".into(), "end".into()),
            (
                "OTEL_SERVICE_NAME".into(),
                format!("grpc-{}", function.name),
            ),
        ],
        ..RunConfig::default()
    };
    let report = contrail_sim::run(config)
        .await
        .unwrap_or_else(|e| panic!("{}: emulator run failed: {e}", function.name));
    assert_eq!(
        report.invocations.len(),
        INVOCATIONS as usize,
        "{}",
        report.render_text()
    );
    for ext in &report.extensions {
        assert!(!ext.crashed, "contrail crashed: {ext:?}");
    }
    for invocation in &report.invocations {
        assert_eq!(invocation.status, "success", "{}", report.render_text());
    }
    report
}

/// Every invocation's `grpc-order` span and SDK log record, and the counter's total.
fn complete(received: &Received, report: &RunReport) -> bool {
    let spans = received.spans_named("grpc-order");
    let logs = log_records(received);
    report.invocations.iter().all(|i| {
        spans
            .iter()
            .any(|s| attr_str(&s.span.attributes, "faas.invocation_id") == Some(&i.request_id))
            && logs.iter().any(|l| {
                body_of(l) == "grpc log line"
                    && attr_str(&l.attributes, "faas.invocation_id") == Some(&i.request_id)
            })
    }) && latest_counter(received, "grpc.orders", Some(("transport", "grpc")))
        >= i64::from(INVOCATIONS)
}

async fn exports_every_signal_over_grpc(function: Function) {
    let name = function.name;
    let backend = Backend::start().await;
    let report = run(&function, &backend).await;
    let received = backend
        .sink
        .wait_for(Duration::from_secs(30), |r| complete(r, &report))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name}: not everything arrived: {e}\n{}\n{}",
                report.render_text(),
                backend.sink.render_text()
            )
        });
    let invocation = invocation_spans(&received);
    let spans = received.spans_named("grpc-order");
    let logs = received.log_records();
    for i in &report.invocations {
        let rid = i.request_id.as_str();
        let parent = invocation
            .iter()
            .find(|s| attr_str(&s.attributes, "faas.invocation_id") == Some(rid))
            .unwrap_or_else(|| panic!("{name}: no invocation span for {rid}"));
        let mine: Vec<_> = spans
            .iter()
            .filter(|s| attr_str(&s.span.attributes, "faas.invocation_id") == Some(rid))
            .collect();
        assert_eq!(mine.len(), 1, "{name}: one grpc-order span for {rid}");
        let span = mine[0];
        assert_eq!(
            hex(&span.span.trace_id),
            hex(&parent.trace_id),
            "{name}: {rid}"
        );
        assert_eq!(
            hex(&span.span.parent_span_id),
            hex(&parent.span_id),
            "{name}: grpc-order is a child of the invocation span ({rid})"
        );
        // The SDK's resource is kept, and Lambda's is merged into it.
        let resource = span.resource.unwrap();
        assert_eq!(
            attr_str(&resource.attributes, "service.name"),
            Some(format!("grpc-{name}").as_str())
        );
        assert_eq!(
            attr_str(&resource.attributes, "cloud.provider"),
            Some("aws"),
            "{name}: Lambda's resource merged in"
        );
        let log = logs
            .iter()
            .find(|l| {
                body_of(l.record) == "grpc log line"
                    && attr_str(&l.record.attributes, "faas.invocation_id") == Some(rid)
            })
            .unwrap();
        assert_eq!(hex(&log.record.trace_id), hex(&span.span.trace_id));
        assert_eq!(
            hex(&log.record.span_id),
            hex(&span.span.span_id),
            "{name}: the SDK's log record is in its span"
        );
    }
    assert_eq!(
        latest_counter(&received, "grpc.orders", Some(("transport", "grpc"))),
        i64::from(INVOCATIONS),
        "{name}: grpc.orders"
    );
    assert!(
        received.duplicate_spans().is_empty(),
        "{name}: {:?}",
        received.duplicate_spans()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_grpc_exporters_export_through_contrail() {
    exports_every_signal_over_grpc(python()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_grpc_exporters_export_through_contrail() {
    exports_every_signal_over_grpc(node()).await;
}
