"""The Python SDK's OTLP/gRPC exporters (grpcio) against Contrail's receiver.

argv: the receiver's host:port, spans per export, exports per exporter. Exports spans (plain and
gzip), metrics and logs with the SDK's own gRPC exporters, times `export()` of the spans as a
span processor calls it, and prints what happened as one JSON object.
"""

import json
import logging
import statistics
import sys
import time

import grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

address, per_export, exports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
endpoint = "http://" + address
resource = Resource.create({"service.name": "grpc-sdk-check"})

memory = InMemorySpanExporter()
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = tracer_provider.get_tracer("grpc-check")
with tracer.start_as_current_span("handler") as root:
    for i in range(per_export - 1):
        with tracer.start_as_current_span(f"step-{i}") as span:
            span.set_attribute("step.index", i)
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
    return {
        "median_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        "failures": failures,
    }


plain = measure(OTLPSpanExporter(endpoint=endpoint))
gzip = measure(OTLPSpanExporter(endpoint=endpoint, compression=grpc.Compression.Gzip))

reader = InMemoryMetricReader()
meter = MeterProvider(resource=resource, metric_readers=[reader]).get_meter("grpc-check")
meter.create_counter("invocations").add(3, {"cold": True})
meter.create_histogram("latency", unit="ms").record(12.5)
metrics_result = OTLPMetricExporter(endpoint=endpoint).export(reader.get_metrics_data())

logger_provider = LoggerProvider(resource=resource)
log_exporter = OTLPLogExporter(endpoint=endpoint)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
log = logging.getLogger("grpc-check")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
with tracer.start_as_current_span("logging") as logging_span:
    log.info("first line", extra={"order.id": "A-1"})
    log.warning("second line")
logger_provider.force_flush()

print(
    json.dumps(
        {
            "plain": plain,
            "gzip": gzip,
            "metrics_ok": metrics_result.name == "SUCCESS",
            "trace_id": format(root.get_span_context().trace_id, "032x"),
            "logging_span_id": format(logging_span.get_span_context().span_id, "016x"),
        }
    )
)
