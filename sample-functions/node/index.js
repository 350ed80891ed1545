'use strict';
// A Lambda function instrumented with the OpenTelemetry SDK, exporting to Contrail.
//
// Each invocation makes a `handle-order` span with two children (`validate`, `price`), logs one
// JSON line per step, counts orders in a metric, and throws `OrderFailed` when the payload is
// `{"fail": true}`; the payload options of resources.js use known amounts of CPU, memory and
// `/tmp` first. Its spans continue the invocation's X-Ray trace (`_X_AMZN_TRACE_ID`), so they
// nest under the invocation span Contrail makes from the same header. It exports OTLP/HTTP
// protobuf to Contrail's local receiver and flushes at the end of each invocation: on loopback
// that costs about a millisecond, and nothing waits in the SDK while the environment is frozen.

const api = require('@opentelemetry/api');
const { AWSXRayPropagator } = require('@opentelemetry/propagator-aws-xray');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const { defaultResource, detectResources, envDetector } = require('@opentelemetry/resources');
const { BatchSpanProcessor, TracerProvider } = require('@opentelemetry/sdk-trace');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { useResources } = require('./resources');

// Where Contrail's receiver listens: the same variable Contrail reads, so both agree. The
// exporters name it explicitly because OTEL_EXPORTER_OTLP_ENDPOINT, when set (as the emulator's
// demo does), names the backend Contrail forwards to, not where the function should send.
const receiver = (process.env.CONTRAIL_RECEIVER_ENDPOINT || '').trim() || '127.0.0.1:4318';

// service.name from OTEL_SERVICE_NAME, plus OTEL_RESOURCE_ATTRIBUTES.
const resource = defaultResource().merge(detectResources({ detectors: [envDetector] }));
const tracerProvider = new TracerProvider({
  resource,
  spanProcessors: [
    new BatchSpanProcessor({
      exporter: new OTLPTraceExporter({ url: `http://${receiver}/v1/traces`, timeoutMillis: 2000 }),
    }),
  ],
});
const meterProvider = new MeterProvider({
  resource,
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter({ url: `http://${receiver}/v1/metrics`, timeoutMillis: 2000 }),
    }),
  ],
});
const tracer = tracerProvider.getTracer('contrail-sample-node');
const orders = meterProvider
  .getMeter('contrail-sample-node')
  .createCounter('orders', { description: 'Orders handled, by outcome' });
const propagator = new AWSXRayPropagator();

/** One JSON object per line: timestamp, level, message, requestId and the step's fields. */
function log(level, message, fields) {
  process.stdout.write(
    `${JSON.stringify({ timestamp: new Date().toISOString(), level, message, ...fields })}\n`,
  );
}

class OrderFailed extends Error {
  constructor(message) {
    super(message);
    this.name = 'OrderFailed';
  }
}

function validate(payload) {
  if (payload && payload.fail === true) {
    throw new OrderFailed('the payload asked to fail');
  }
  const quantity = payload && Number.isInteger(payload.quantity) ? payload.quantity : 1;
  return quantity;
}

/** The invocation's X-Ray context (the runtime client sets _X_AMZN_TRACE_ID per invocation). */
function parentContext() {
  const header = process.env._X_AMZN_TRACE_ID;
  const carrier = header ? { 'x-amzn-trace-id': header } : {};
  return propagator.extract(api.ROOT_CONTEXT, carrier, api.defaultTextMapGetter);
}

exports.handler = async (event, context) => {
  const requestId = context.awsRequestId;
  const root = tracer.startSpan(
    'handle-order',
    { kind: api.SpanKind.INTERNAL, attributes: { 'faas.invocation_id': requestId } },
    parentContext(),
  );
  const cx = api.trace.setSpan(api.ROOT_CONTEXT, root);
  log('INFO', 'handling order', { requestId, step: 'start' });
  try {
    const done = await useResources(event, requestId);
    const validateSpan = tracer.startSpan('validate', {}, cx);
    let quantity;
    try {
      quantity = validate(event);
      validateSpan.setAttribute('order.quantity', quantity);
    } catch (failure) {
      validateSpan.recordException(failure);
      validateSpan.setStatus({ code: api.SpanStatusCode.ERROR, message: failure.message });
      throw failure;
    } finally {
      validateSpan.end();
    }
    log('INFO', 'order is valid', { requestId, step: 'validate', quantity });

    const priceSpan = tracer.startSpan('price', {}, cx);
    const cents = quantity * 250;
    priceSpan.setAttribute('order.total_cents', cents);
    priceSpan.end();
    log('INFO', 'order priced', { requestId, step: 'price', cents });

    root.setStatus({ code: api.SpanStatusCode.OK });
    orders.add(1, { outcome: 'ok' });
    log('INFO', 'order handled', { requestId, step: 'done', outcome: 'ok' });
    return { requestId, quantity, totalCents: cents, ...done };
  } catch (failure) {
    root.setStatus({ code: api.SpanStatusCode.ERROR, message: failure.message });
    orders.add(1, { outcome: 'failed' });
    log('ERROR', 'order rejected', { requestId, step: 'validate', error: failure.message });
    throw failure;
  } finally {
    root.end();
    // Export this invocation's spans and metrics now, before the environment can freeze.
    await Promise.all([tracerProvider.forceFlush(), meterProvider.forceFlush()]).catch((err) =>
      log('ERROR', 'telemetry flush failed', { requestId, error: String(err) }),
    );
  }
};
