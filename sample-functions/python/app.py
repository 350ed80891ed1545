"""A Lambda function instrumented with the OpenTelemetry SDK, exporting to Contrail.

Each invocation makes a ``handle-order`` span with two children (``validate``, ``price``), logs one
JSON line per step, counts orders in a metric, and raises ``OrderFailed`` when the payload is
``{"fail": true}`` (``order.py``). Its spans continue the invocation's X-Ray trace
(``_X_AMZN_TRACE_ID``), so they nest under the invocation span Contrail makes from the same header.
It exports OTLP/HTTP protobuf to Contrail's local receiver and flushes at the end of each
invocation: on loopback that costs about a millisecond, and nothing waits in the SDK while the
environment is frozen.
"""

import os

from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.aws import AwsXRayLambdaPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from order import handle_order
from resources import connect_at_init, use_resources

# Where Contrail's receiver listens: the same variable Contrail reads, so both agree. The
# exporters name it explicitly because OTEL_EXPORTER_OTLP_ENDPOINT, when set (as the emulator's
# demo does), names the backend Contrail forwards to, not where the function should send.
RECEIVER = os.environ.get("CONTRAIL_RECEIVER_ENDPOINT", "").strip() or "127.0.0.1:4318"

resource = Resource.create()  # service.name from OTEL_SERVICE_NAME, plus OTEL_RESOURCE_ATTRIBUTES
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(
    BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{RECEIVER}/v1/traces", timeout=2))
)
meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[
        PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"http://{RECEIVER}/v1/metrics", timeout=2)
        )
    ],
)
tracer = tracer_provider.get_tracer("contrail-sample-python")
orders = meter_provider.get_meter("contrail-sample-python").create_counter(
    "orders", description="Orders handled, by outcome"
)
propagator = AwsXRayLambdaPropagator()

# One PostgreSQL connection per environment, opened at init when SAMPLE_PG_DSN is set, and used
# by every invocation (resources.py): a refused connection fails the init.
database = connect_at_init()


def handler(event, context):
    # The X-Ray header of this invocation (awslambdaric sets _X_AMZN_TRACE_ID per invocation).
    token = otel_context.attach(propagator.extract({}))
    try:
        done = use_resources(event, context.aws_request_id, database)
        result = handle_order(tracer, orders, event, context.aws_request_id)
        return {**result, **done} if done else result
    finally:
        otel_context.detach(token)
        # Export this invocation's spans and metrics now, before the environment can freeze.
        tracer_provider.force_flush(timeout_millis=2000)
        meter_provider.force_flush(timeout_millis=2000)
