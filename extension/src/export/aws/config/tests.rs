#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use crate::export::config::ExportConfig;

#[test]
fn service_and_region_come_from_the_host_unless_set() {
    assert_eq!(
        service_and_region("xray.eu-west-1.amazonaws.com"),
        Some(("xray", "eu-west-1"))
    );
    assert_eq!(
        service_and_region("logs.cn-north-1.amazonaws.com.cn"),
        Some(("logs", "cn-north-1"))
    );
    assert_eq!(service_and_region("collector.example.com"), None);
    assert_eq!(service_and_region("amazonaws.com"), None);

    let env = [
        (
            "CONTRAIL_EXPORTER_OTLP_ENDPOINT",
            "https://xray.eu-west-1.amazonaws.com",
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://xray.eu-west-1.amazonaws.com/v1/traces",
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "https://logs.eu-west-1.amazonaws.com/v1/logs",
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://127.0.0.1:9000/v1/metrics",
        ),
        ("CONTRAIL_EXPORTER_OTLP_AUTH", "sigv4"),
        ("CONTRAIL_EXPORTER_OTLP_METRICS_SIGV4_SERVICE", "monitoring"),
        ("AWS_REGION", "us-east-2"),
        ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
    ];
    let c = ExportConfig::from_env(&env).unwrap();
    assert_eq!(
        c.traces.auth,
        Auth::SigV4 {
            region: "eu-west-1".into(),
            service: "xray".into()
        }
    );
    assert_eq!(
        c.metrics.auth,
        Auth::SigV4 {
            region: "us-east-2".into(),
            service: "monitoring".into()
        }
    );
    assert_eq!(
        c.metrics.limits,
        EndpointLimits {
            bytes: 1_000_000,
            records: 1_000
        }
    );
    assert_eq!(c.traces.limits.records, 10_000);
    let logs: Vec<(String, String)> = c
        .logs
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert!(
        logs.contains(&("x-aws-log-group".into(), "/aws/lambda/orders".into())),
        "{logs:?}"
    );
    assert!(
        logs.contains(&("x-aws-log-stream".into(), "contrail".into())),
        "{logs:?}"
    );
    assert!(c.traces.headers.iter().all(|(n, _)| n != "x-aws-log-group"));
}

#[test]
fn bad_auth_settings_are_reported() {
    let env = [
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9000"),
        ("CONTRAIL_EXPORTER_OTLP_TRACES_AUTH", "sigv4"),
        ("CONTRAIL_EXPORTER_OTLP_LOGS_AUTH", "basic"),
        ("CONTRAIL_EXPORTER_OTLP_LOGS_SIGV4_SERVICE", "logs"),
        ("CONTRAIL_EXPORTER_OTLP_LOGS_SIGV4_REGION", "us-east-1"),
        ("CONTRAIL_CLOUDWATCH_LOG_STREAM", "a:b"),
        ("AWS_ENDPOINT_URL_SSM", "ftp://x"),
    ];
    let errors = ExportConfig::from_env(&env).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let has = |s: &str| text.iter().any(|t| t.contains(s));
    assert!(
        has("CONTRAIL_EXPORTER_OTLP_TRACES_AUTH") && has("the region"),
        "{text:?}"
    );
    assert!(has("expected none or sigv4"), "{text:?}");
    assert!(has("AWS_ENDPOINT_URL_SSM"), "{text:?}");
    assert!(
        !has("CONTRAIL_CLOUDWATCH_LOG_STREAM"),
        "logs are not signed for `logs`: {text:?}"
    );
}

#[test]
fn header_values_that_name_secrets_are_kept_apart_and_bad_ones_reported_without_their_value() {
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf";
    let headers = format!("x-api-key=${{{arn}#key}},x-plain=1");
    let env = [
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", "https://api.example.com"),
        ("CONTRAIL_EXPORTER_OTLP_HEADERS", headers.as_str()),
    ];
    let c = ExportConfig::from_env(&env).unwrap();
    assert_eq!(c.traces.secret_headers.len(), 1);
    assert_eq!(c.traces.headers.len(), 1, "x-plain stays a static header");
    assert_eq!(
        c.secret_references().len(),
        3,
        "one per signal; the resolver merges them"
    );

    let env = [
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", "https://api.example.com"),
        (
            "CONTRAIL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer ${arn:aws:ssm:us-east-1:1:parameter/x}",
        ),
    ];
    let errors = ExportConfig::from_env(&env).unwrap_err();
    assert!(
        errors[0].var.starts_with("CONTRAIL_EXPORTER_OTLP_"),
        "{}",
        errors[0]
    );
    assert!(errors[0].reason.contains("12-digit"), "{}", errors[0]);
    assert!(!errors[0].to_string().contains("Bearer"));

    let mut errs = Vec::new();
    let e = Endpoints::from_env(&[], &mut errs);
    assert_eq!(
        e.url("ssm", "cn-north-1", "aws-cn").to_string(),
        "https://ssm.cn-north-1.amazonaws.com.cn/"
    );
}
