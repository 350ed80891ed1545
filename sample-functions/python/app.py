"""A Lambda function instrumented with the OpenTelemetry SDK, exporting to Contrail.

Each invocation makes a ``handle-order`` span with two children (``validate``, ``price``), logs one
JSON line per step, counts orders in a metric, and raises ``OrderFailed`` when the payload is
``{"fail": true}``. Its spans continue the invocation's X-Ray trace (``_X_AMZN_TRACE_ID``), so they
nest under the invocation span Contrail makes from the same header. It exports OTLP/HTTP protobuf
to Contrail's local receiver and flushes at the end of each invocation: on loopback that costs
about a millisecond, and nothing waits in the SDK while the environment is frozen.
"""

import json
import logging
import os
import sys
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.aws import AwsXRayLambdaPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# Where Contrail's receiver listens: the same variable Contrail reads, so both agree. The
# exporters name it explicitly because OTEL_EXPORTER_OTLP_ENDPOINT, when set (as the emulator's
# demo does), names the backend Contrail forwards to, not where the function should send.
RECEIVER = os.environ.get("CONTRAIL_RECEIVER_ENDPOINT", "").strip() or "127.0.0.1:4318"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, message, requestId and the step's fields."""

    FIELDS = ("requestId", "step", "quantity", "cents", "outcome", "error")

    def format(self, record):
        line = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        return json.dumps(line)


log = logging.getLogger("sample")
log.setLevel(logging.INFO)
log.propagate = False  # the managed runtime's root handler would print each line a second time
_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(JsonFormatter())
log.addHandler(_handler)

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


class OrderFailed(Exception):
    """The order could not be handled; Lambda reports it as errorType OrderFailed."""


def validate(payload):
    if isinstance(payload, dict) and payload.get("fail") is True:
        raise OrderFailed("the payload asked to fail")
    quantity = payload.get("quantity", 1) if isinstance(payload, dict) else 1
    return int(quantity)


def handler(event, context):
    request_id = context.aws_request_id
    # The X-Ray header of this invocation (awslambdaric sets _X_AMZN_TRACE_ID per invocation).
    parent = propagator.extract({})
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(
            "handle-order",
            kind=SpanKind.INTERNAL,
            attributes={"faas.invocation_id": request_id},
            record_exception=False,
            set_status_on_exception=False,
        ) as root:
            log.info("handling order", extra={"requestId": request_id, "step": "start"})
            try:
                with tracer.start_as_current_span("validate") as span:
                    quantity = validate(event)
                    span.set_attribute("order.quantity", quantity)
                log.info(
                    "order is valid",
                    extra={"requestId": request_id, "step": "validate", "quantity": quantity},
                )
                with tracer.start_as_current_span("price") as span:
                    cents = quantity * 250
                    span.set_attribute("order.total_cents", cents)
                log.info(
                    "order priced",
                    extra={"requestId": request_id, "step": "price", "cents": cents},
                )
            except OrderFailed as failure:
                root.set_status(Status(StatusCode.ERROR, str(failure)))
                orders.add(1, {"outcome": "failed"})
                log.error(
                    "order rejected",
                    extra={"requestId": request_id, "step": "validate", "error": str(failure)},
                )
                raise
            root.set_status(Status(StatusCode.OK))
            orders.add(1, {"outcome": "ok"})
            log.info("order handled", extra={"requestId": request_id, "step": "done", "outcome": "ok"})
            return {"requestId": request_id, "quantity": quantity, "totalCents": cents}
    finally:
        otel_context.detach(token)
        # Export this invocation's spans and metrics now, before the environment can freeze.
        tracer_provider.force_flush(timeout_millis=2000)
        meter_provider.force_flush(timeout_millis=2000)
