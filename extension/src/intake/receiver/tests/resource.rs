//! `merge_resource`: the function's resource wins; Contrail's Lambda resource fills the gaps.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use crate::intake::receiver::merge_resource;
use crate::pipeline::OtlpPayload;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn kv(key: &str, value: Option<Value>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.map(|v| AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, Some(Value::StringValue(value.into())))
}

fn lambda() -> Resource {
    Resource {
        attributes: vec![
            s("service.name", "orders-fn"),
            s("cloud.provider", "aws"),
            s("cloud.region", "eu-west-1"),
            s("faas.name", "orders-fn"),
            kv("faas.max_memory", Some(Value::IntValue(268_435_456))),
        ],
        ..Default::default()
    }
}

fn attrs(resource: &Option<Resource>) -> Vec<(String, Option<Value>)> {
    resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().and_then(|v| v.value.clone()),
            )
        })
        .collect()
}

fn str_value(v: &str) -> Option<Value> {
    Some(Value::StringValue(v.into()))
}

fn traces_with(resource: Option<Resource>) -> OtlpPayload {
    OtlpPayload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource,
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "work".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

#[test]
fn the_functions_attributes_are_kept_and_lambdas_fill_the_rest() {
    let sdk = Resource {
        attributes: vec![
            s("service.name", "checkout"),
            s("cloud.region", "us-east-1"),
            s("telemetry.sdk.language", "python"),
        ],
        dropped_attributes_count: 2,
        ..Default::default()
    };
    let signals = merge_resource(traces_with(Some(sdk)), &lambda());
    assert_eq!(signals.spans.len(), 1);
    assert!(signals.metrics.is_empty() && signals.logs.is_empty());
    assert_eq!(
        attrs(&signals.spans[0].resource),
        vec![
            ("service.name".into(), str_value("checkout")),
            ("cloud.region".into(), str_value("us-east-1")),
            ("telemetry.sdk.language".into(), str_value("python")),
            ("cloud.provider".into(), str_value("aws")),
            ("faas.name".into(), str_value("orders-fn")),
            ("faas.max_memory".into(), Some(Value::IntValue(268_435_456))),
        ]
    );
    assert_eq!(
        signals.spans[0]
            .resource
            .as_ref()
            .unwrap()
            .dropped_attributes_count,
        2
    );
    // The spans themselves are untouched.
    assert_eq!(signals.spans[0].scope_spans[0].spans[0].name, "work");
}

#[test]
fn the_sdks_unknown_service_fallback_counts_as_unset() {
    for fallback in [
        "unknown_service",
        "unknown_service:python3.12",
        "unknown_service:node",
        "",
    ] {
        let sdk = Resource {
            attributes: vec![s("service.name", fallback), s("host.arch", "arm64")],
            ..Default::default()
        };
        let signals = merge_resource(traces_with(Some(sdk)), &lambda());
        let merged = attrs(&signals.spans[0].resource);
        assert_eq!(
            merged[0],
            ("service.name".into(), str_value("orders-fn")),
            "{fallback:?}"
        );
        assert_eq!(
            merged.iter().filter(|(k, _)| k == "service.name").count(),
            1
        );
        assert_eq!(merged[1], ("host.arch".into(), str_value("arm64")));
    }
}

#[test]
fn an_attribute_without_a_value_is_filled_but_unknown_service_elsewhere_is_kept() {
    let sdk = Resource {
        attributes: vec![
            kv("cloud.provider", None),
            s("faas.name", "unknown_service"),
        ],
        ..Default::default()
    };
    let signals = merge_resource(traces_with(Some(sdk)), &lambda());
    let merged = attrs(&signals.spans[0].resource);
    assert_eq!(merged[0], ("cloud.provider".into(), str_value("aws")));
    assert_eq!(
        merged[1],
        ("faas.name".into(), str_value("unknown_service"))
    );
}

#[test]
fn a_missing_resource_becomes_the_lambda_resource() {
    let signals = merge_resource(traces_with(None), &lambda());
    assert_eq!(signals.spans[0].resource, Some(lambda()));
}

#[test]
fn metrics_and_logs_are_merged_per_resource_entry() {
    let metrics = OtlpPayload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![s("service.name", "a")],
                    ..Default::default()
                }),
                ..Default::default()
            },
            ResourceMetrics::default(),
        ],
    });
    let signals = merge_resource(metrics, &lambda());
    assert_eq!(signals.metrics.len(), 2);
    assert_eq!(attrs(&signals.metrics[0].resource)[0].1, str_value("a"));
    assert_eq!(signals.metrics[1].resource, Some(lambda()));

    let logs = OtlpPayload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs::default()],
    });
    let signals = merge_resource(logs, &lambda());
    assert_eq!(signals.logs[0].resource, Some(lambda()));
    assert!(signals.spans.is_empty());
}
