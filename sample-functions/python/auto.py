"""The Python sample for ``opentelemetry-instrument``: the same work as ``app.py`` (``order.py``),
with no SDK set-up in code.

Run as ``opentelemetry-instrument python -m awslambdaric auto.handler``. The distro selects the
``otlp`` exporter for traces, metrics and logs and its protocol, gRPC, so the SDK exports to
``http://localhost:4317``: Contrail's OTLP/gRPC receiver, with nothing configured.
``OTEL_PROPAGATORS=tracecontext,baggage,xray-lambda`` (the OpenTelemetry Lambda layer's setting)
makes the invocation's X-Ray header the parent, so the spans nest under Contrail's invocation span.
"""

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace

from order import handle_order

tracer = trace.get_tracer("contrail-sample-python-auto")
orders = metrics.get_meter("contrail-sample-python-auto").create_counter(
    "orders", description="Orders handled, by outcome"
)


def handler(event, context):
    # The configured propagators; xray-lambda reads _X_AMZN_TRACE_ID, set per invocation.
    token = otel_context.attach(propagate.extract({}))
    try:
        return handle_order(tracer, orders, event, context.aws_request_id)
    finally:
        otel_context.detach(token)
        # Export now, before the environment can freeze: the SDK's batch processor and metric
        # reader would otherwise wait for their intervals.
        trace.get_tracer_provider().force_flush(2000)
        metrics.get_meter_provider().force_flush(2000)
