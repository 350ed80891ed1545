"""Sends one small trace, one log record and one metric with the OpenTelemetry Python SDK over
OTLP/HTTP (protobuf) to the base URL given as the first argument, then prints the trace id.

Exits non-zero if any export fails.
"""

import logging
import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

failures = []


class FailureRecorder(logging.Handler):
    """The SDK reports export failures only as log records of its own loggers."""

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            failures.append(record.getMessage())


logging.getLogger("opentelemetry").addHandler(FailureRecorder())

endpoint = sys.argv[1].rstrip("/")
resource = Resource.create({"service.name": "py-sample", "faas.name": "py-sample"})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(
    SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
)
tracer = tracer_provider.get_tracer("sink-test")

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(
    SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint + "/v1/logs"))
)
app_logger = logging.getLogger("sink-test.app")
app_logger.propagate = False
app_logger.setLevel(logging.INFO)
app_logger.addHandler(LoggingHandler(logger_provider=logger_provider))

reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=endpoint + "/v1/metrics"),
    export_interval_millis=3_600_000,
)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
counter = meter_provider.get_meter("sink-test").create_counter(
    "sample.requests", unit="{request}"
)

with tracer.start_as_current_span("handler") as root:
    with tracer.start_as_current_span("db-query"):
        app_logger.info("querying the database")
    counter.add(3, {"route": "/orders"})

meter_provider.force_flush()
tracer_provider.shutdown()
logger_provider.shutdown()
meter_provider.shutdown()

if failures:
    print("export failed: " + " | ".join(failures), file=sys.stderr)
    sys.exit(1)
print(format(root.get_span_context().trace_id, "032x"))
