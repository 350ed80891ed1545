'use strict';
// A Lambda handler that exports traces, metrics and logs with the OpenTelemetry OTLP/gRPC
// exporters (on @grpc/grpc-js) to Contrail's gRPC receiver, for the end-to-end tests.
//
// Each invocation makes a `grpc-order` span in the invocation's X-Ray trace, under the span the
// header names as parent (Contrail's invocation span), counts it in `grpc.orders`, writes one
// OTLP log record in that span, and flushes all three before it returns.

const api = require('@opentelemetry/api');
const { SeverityNumber } = require('@opentelemetry/api-logs');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-grpc');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-grpc');
const { defaultResource, detectResources, envDetector } = require('@opentelemetry/resources');
const { SimpleSpanProcessor, TracerProvider } = require('@opentelemetry/sdk-trace');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { LoggerProvider, SimpleLogRecordProcessor } = require('@opentelemetry/sdk-logs');

// The same variable Contrail reads, so both agree; else the gRPC exporters' default.
const receiver = (process.env.CONTRAIL_RECEIVER_GRPC_ENDPOINT || '').trim() || 'localhost:4317';
const url = `http://${receiver}`;

const resource = defaultResource().merge(detectResources({ detectors: [envDetector] }));
const tracerProvider = new TracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url }) })],
});
const meterProvider = new MeterProvider({
  resource,
  readers: [new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url }) })],
});
const loggerProvider = new LoggerProvider({
  resource,
  processors: [new SimpleLogRecordProcessor({ exporter: new OTLPLogExporter({ url }) })],
});
const tracer = tracerProvider.getTracer('contrail-e2e-node-grpc');
const orders = meterProvider.getMeter('contrail-e2e-node-grpc').createCounter('grpc.orders');
const logger = loggerProvider.getLogger('contrail-e2e-node-grpc');

/** The context `_X_AMZN_TRACE_ID` names: `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1`. */
function parentContext() {
  const fields = Object.fromEntries(
    (process.env._X_AMZN_TRACE_ID || '').split(';').map((kv) => kv.trim().split('=')),
  );
  const root = (fields.Root || '').split('-');
  if (root.length !== 3 || !fields.Parent) {
    return api.ROOT_CONTEXT;
  }
  return api.trace.setSpanContext(api.ROOT_CONTEXT, {
    traceId: (root[1] + root[2]).toLowerCase(),
    spanId: fields.Parent.toLowerCase(),
    traceFlags: fields.Sampled === '0' ? api.TraceFlags.NONE : api.TraceFlags.SAMPLED,
    isRemote: true,
  });
}

exports.handler = async (event, context) => {
  const requestId = context.awsRequestId;
  const span = tracer.startSpan(
    'grpc-order',
    { attributes: { 'faas.invocation_id': requestId } },
    parentContext(),
  );
  orders.add(1, { transport: 'grpc' });
  logger.emit({
    body: 'grpc log line',
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    attributes: { 'faas.invocation_id': requestId },
    context: api.trace.setSpan(api.ROOT_CONTEXT, span),
  });
  span.end();
  await Promise.all([
    tracerProvider.forceFlush(),
    meterProvider.forceFlush(),
    loggerProvider.forceFlush(),
  ]);
  return { requestId };
};
