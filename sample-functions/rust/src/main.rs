//! A Lambda function instrumented with the OpenTelemetry SDK, exporting to Contrail.
//!
//! Each invocation makes a `handle-order` span with two children (`validate`, `price`), logs one
//! JSON line per step, counts orders in a metric, and fails when the payload is `{"fail": true}`.
//! Its spans continue the invocation's X-Ray trace (`Lambda-Runtime-Trace-Id`), so they nest under
//! the invocation span Contrail makes from the same header. It exports OTLP/HTTP protobuf to
//! Contrail's local receiver and flushes at the end of each invocation: on loopback that costs
//! well under a millisecond, and nothing waits in the SDK while the environment is frozen.

use std::collections::HashMap;
use std::time::Duration;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use opentelemetry::metrics::{Counter, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_aws::trace::XrayPropagator;
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use serde_json::{Value, json};
use tracing::{error, info};

/// Where Contrail's receiver listens; the same variable Contrail reads, so both agree.
const RECEIVER_VAR: &str = "CONTRAIL_RECEIVER_ENDPOINT";
const DEFAULT_RECEIVER: &str = "127.0.0.1:4318";

struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    orders: Counter<u64>,
    propagator: XrayPropagator,
}

fn receiver_url(signal: &str) -> String {
    let receiver = std::env::var(RECEIVER_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_RECEIVER.to_owned());
    format!("http://{receiver}/v1/{signal}")
}

/// Exporters point at the receiver explicitly: `OTEL_EXPORTER_OTLP_ENDPOINT`, when set (as the
/// emulator's demo does), names the backend Contrail forwards to, not where the function should
/// send.
fn telemetry() -> Result<Telemetry, Error> {
    let resource = Resource::builder().build();
    let spans = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(receiver_url("traces"))
        .with_timeout(Duration::from_secs(2))
        .build()?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(spans).build())
        .with_resource(resource.clone())
        .build();
    let metrics = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(receiver_url("metrics"))
        .with_timeout(Duration::from_secs(2))
        .build()?;
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics).build())
        .with_resource(resource)
        .build();
    global::set_tracer_provider(tracer_provider.clone());
    let orders = meter_provider
        .meter("contrail-sample-rust")
        .u64_counter("orders")
        .with_description("Orders handled, by outcome")
        .build();
    Ok(Telemetry {
        tracer_provider,
        meter_provider,
        orders,
        propagator: XrayPropagator::default(),
    })
}

/// The invocation's X-Ray context as the parent of this invocation's spans.
fn parent_context(propagator: &XrayPropagator, xray_header: Option<&str>) -> Context {
    let mut carrier = HashMap::new();
    if let Some(header) = xray_header {
        carrier.insert("x-amzn-trace-id".to_owned(), header.to_owned());
    }
    propagator.extract(&carrier)
}

#[derive(Debug)]
struct OrderFailed(String);

impl std::fmt::Display for OrderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OrderFailed {}

/// What Lambda reports as `errorType`/`errorMessage` for a failed invocation.
impl From<OrderFailed> for Diagnostic {
    fn from(failure: OrderFailed) -> Diagnostic {
        Diagnostic {
            error_type: "OrderFailed".into(),
            error_message: failure.0,
        }
    }
}

fn validate(payload: &Value) -> Result<u64, OrderFailed> {
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err(OrderFailed("the payload asked to fail".into()));
    }
    Ok(payload.get("quantity").and_then(Value::as_u64).unwrap_or(1))
}

fn price(quantity: u64) -> u64 {
    quantity.saturating_mul(250)
}

async fn handle(event: LambdaEvent<Value>, telemetry: &Telemetry) -> Result<Value, OrderFailed> {
    let (payload, context) = event.into_parts();
    let request_id = context.request_id.as_str();
    let tracer = telemetry.tracer_provider.tracer("contrail-sample-rust");
    let parent = parent_context(&telemetry.propagator, context.xray_trace_id.as_deref());

    let root = tracer
        .span_builder("handle-order")
        .with_kind(SpanKind::Internal)
        .with_attributes([KeyValue::new("faas.invocation_id", request_id.to_owned())])
        .start_with_context(&tracer, &parent);
    let cx = parent.with_span(root);
    info!(requestId = request_id, step = "start", "handling order");

    let mut validate_span = tracer.start_with_context("validate", &cx);
    let validated = validate(&payload);
    let outcome = match validated {
        Ok(quantity) => {
            validate_span.set_attribute(KeyValue::new("order.quantity", quantity as i64));
            validate_span.end();
            info!(
                requestId = request_id,
                step = "validate",
                quantity,
                "order is valid"
            );

            let mut price_span = tracer.start_with_context("price", &cx);
            let cents = price(quantity);
            price_span.set_attribute(KeyValue::new("order.total_cents", cents as i64));
            price_span.end();
            info!(
                requestId = request_id,
                step = "price",
                cents,
                "order priced"
            );
            Ok(json!({"requestId": request_id, "quantity": quantity, "totalCents": cents}))
        }
        Err(failure) => {
            validate_span.record_error(&failure);
            validate_span.set_status(Status::error(failure.to_string()));
            validate_span.end();
            error!(requestId = request_id, step = "validate", error = %failure, "order rejected");
            Err(failure)
        }
    };

    let span = cx.span();
    match &outcome {
        Ok(_) => span.set_status(Status::Ok),
        Err(failure) => span.set_status(Status::error(failure.to_string())),
    }
    span.end();
    let label = if outcome.is_ok() { "ok" } else { "failed" };
    telemetry.orders.add(1, &[KeyValue::new("outcome", label)]);
    info!(
        requestId = request_id,
        step = "done",
        outcome = label,
        "order handled"
    );

    flush(telemetry).await;
    outcome
}

/// Export this invocation's spans and metrics now, before the environment can freeze.
/// The SDK's flush blocks, so it runs on the blocking pool, not on the runtime's thread.
async fn flush(telemetry: &Telemetry) {
    let tracer_provider = telemetry.tracer_provider.clone();
    let meter_provider = telemetry.meter_provider.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        (tracer_provider.force_flush(), meter_provider.force_flush())
    })
    .await;
    match flushed {
        Ok((Ok(()), Ok(()))) => {}
        Ok((spans, metrics)) => {
            error!(spans = ?spans.err(), metrics = ?metrics.err(), "telemetry flush failed")
        }
        Err(join) => error!(error = %join, "telemetry flush did not finish"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .flatten_event(true)
        .init();
    let telemetry = telemetry()?;
    let telemetry = &telemetry;
    let result = lambda_runtime::run(service_fn(move |event| handle(event, telemetry))).await;
    let _ = telemetry.tracer_provider.shutdown();
    let _ = telemetry.meter_provider.shutdown();
    result
}
