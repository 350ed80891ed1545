//! Merging Contrail's Lambda resource into what a function's SDK sent.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::pipeline::{OtlpPayload, Signals};

const SERVICE_NAME: &str = "service.name";

/// Give every resource in `payload` Contrail's Lambda resource attributes where the function's
/// SDK did not set them.
///
/// Rules:
/// - every attribute the SDK set is kept, with its value, in its order;
/// - an attribute of `lambda` is appended when the SDK's resource lacks that key, or has it
///   without a value, or (for `service.name`) has it empty or as the SDK's fallback
///   `unknown_service` / `unknown_service:<process>` (the SDKs' way of saying "not set");
/// - a payload entry without a resource gets `lambda` whole;
/// - `dropped_attributes_count` and `entity_refs` stay the SDK's.
pub fn merge_resource(payload: OtlpPayload, lambda: &Resource) -> Signals {
    let mut signals = Signals::default();
    match payload {
        OtlpPayload::Traces(request) => {
            signals.spans = request.resource_spans;
            for entry in &mut signals.spans {
                merge_into(&mut entry.resource, lambda);
            }
        }
        OtlpPayload::Metrics(request) => {
            signals.metrics = request.resource_metrics;
            for entry in &mut signals.metrics {
                merge_into(&mut entry.resource, lambda);
            }
        }
        OtlpPayload::Logs(request) => {
            signals.logs = request.resource_logs;
            for entry in &mut signals.logs {
                merge_into(&mut entry.resource, lambda);
            }
        }
    }
    signals
}

fn merge_into(resource: &mut Option<Resource>, lambda: &Resource) {
    let resource = resource.get_or_insert_with(Resource::default);
    for attribute in &lambda.attributes {
        match resource
            .attributes
            .iter_mut()
            .find(|kv| kv.key == attribute.key)
        {
            Some(existing) if is_unset(existing) => existing.value = attribute.value.clone(),
            Some(_) => {}
            None => resource.attributes.push(attribute.clone()),
        }
    }
}

fn is_unset(kv: &KeyValue) -> bool {
    match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
        None => true,
        Some(Value::StringValue(s)) if kv.key == SERVICE_NAME => {
            s.trim().is_empty() || s.starts_with("unknown_service")
        }
        Some(_) => false,
    }
}
