"""What the Python sample does per invocation, whichever way its OpenTelemetry SDK is set up.

A ``handle-order`` span with two children (``validate``, ``price``), one JSON log line per step on
stdout, the ``orders`` counter by outcome, and ``OrderFailed`` when the payload is
``{"fail": true}``. ``app.py`` sets the SDK up in code and exports OTLP/HTTP; ``auto.py`` leaves it
to ``opentelemetry-instrument``, which exports OTLP/gRPC.
"""

import json
import logging
import sys
import time

from opentelemetry.trace import SpanKind, Status, StatusCode


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


class OrderFailed(Exception):
    """The order could not be handled; Lambda reports it as errorType OrderFailed."""


def validate(payload):
    if isinstance(payload, dict) and payload.get("fail") is True:
        raise OrderFailed("the payload asked to fail")
    quantity = payload.get("quantity", 1) if isinstance(payload, dict) else 1
    return int(quantity)


def handle_order(tracer, orders, event, request_id):
    """The invocation's work, in the current context (the invocation's X-Ray trace)."""
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
