//! Signed delivery against a scripted backend that answers as AWS's OTLP endpoints do: each
//! refusal with a known cause is dropped under its own reason, refused credentials are fetched
//! again and the request retried, and over-limit batches are split.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use contrail_testkit::otlp_backend::{Backend, Reply};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use super::delivery;
use crate::diag::DropReason;
use crate::pipeline::Signals;
use crate::pipeline::otlp::RpcStatus;
use prost::Message;
use std::time::Duration;
use tokio::time::Instant;

const KEYS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
    ("AWS_SESSION_TOKEN", "token"),
];

fn logs(n: usize) -> Signals {
    Signals {
        logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn status(code: u16, message: &str) -> Reply {
    let body = RpcStatus {
        code: 3,
        message: message.to_owned(),
        details: Vec::new(),
    }
    .encode_to_vec();
    Reply::Status(
        code,
        vec![("content-type", "application/x-protobuf".into())],
        body,
    )
}

fn signed_logs(b: &Backend) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&str, String)> = KEYS.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    v.extend([
        (
            "CONTRAIL_EXPORTER_OTLP_LOGS_ENDPOINT",
            format!("{}/v1/logs", b.endpoint()),
        ),
        ("CONTRAIL_EXPORTER_OTLP_LOGS_AUTH", "sigv4".into()),
        ("CONTRAIL_EXPORTER_OTLP_LOGS_SIGV4_SERVICE", "logs".into()),
        (
            "CONTRAIL_EXPORTER_OTLP_LOGS_SIGV4_REGION",
            "eu-west-1".into(),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", "orders".into()),
    ]);
    v
}

fn vars<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_logs_carry_the_signature_and_the_log_group_and_a_missing_group_is_its_own_drop() {
    let b = Backend::start(vec![
        Reply::Ok,
        status(400, "The specified log group does not exist."),
    ])
    .await;
    let env = signed_logs(&b);
    let (mut d, stats) = delivery(&vars(&env));
    d.push(logs(3));
    assert!(d.flush(deadline()).await.complete);
    let first = &b.received()[0];
    let auth = first.headers["authorization"].to_str().unwrap();
    assert!(auth.contains("/eu-west-1/logs/aws4_request"), "{auth}");
    assert!(
        auth.contains(
            "content-type;host;x-amz-date;x-amz-security-token;x-aws-log-group;x-aws-log-stream,"
        ),
        "{auth}"
    );
    assert_eq!(first.headers["x-aws-log-group"], "/aws/lambda/orders");
    assert_eq!(first.headers["x-amz-security-token"], "token");

    d.push(logs(2));
    d.flush(deadline()).await;
    assert_eq!(stats.dropped_total(DropReason::LogGroupMissing), 2);
    assert_eq!(stats.dropped_total(DropReason::Rejected), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_search_off_and_a_missing_permission_are_dropped_under_their_reasons() {
    let b = Backend::start(vec![
        status(400, "The OTLP API is supported with CloudWatch Logs as a Trace Segment Destination. Please enable the CloudWatch Logs destination for your traces using the UpdateTraceSegmentDestination API"),
        status(403, "User: arn:aws:sts::123456789012:assumed-role/r/f is not authorized to perform: xray:PutTraceSegments because no identity-based policy allows the xray:PutTraceSegments action"),
    ])
    .await;
    let mut env: Vec<(&str, String)> = KEYS.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    env.extend([
        (
            "CONTRAIL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/v1/traces", b.endpoint()),
        ),
        ("CONTRAIL_EXPORTER_OTLP_TRACES_AUTH", "sigv4".into()),
        ("CONTRAIL_EXPORTER_OTLP_TRACES_SIGV4_SERVICE", "xray".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]);
    let (mut d, stats) = delivery(&vars(&env));
    d.push(super::backend::spans(0..4, 0));
    d.flush(deadline()).await;
    assert_eq!(
        stats.dropped_total(DropReason::TransactionSearchDisabled),
        4
    );
    d.push(super::backend::spans(4..7, 0));
    d.flush(deadline()).await;
    assert_eq!(stats.dropped_total(DropReason::AccessDenied), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_fetched_again_once_then_the_request_is_retried() {
    let b = Backend::start(vec![status(
        403,
        "The security token included in the request is invalid.",
    )])
    .await;
    let env = signed_logs(&b);
    let (mut d, stats) = delivery(&vars(&env));
    d.push(logs(4));
    let outcome = d.flush(deadline()).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(b.received().len(), 2, "refused once, then accepted");
    assert_eq!(stats.dropped_total(DropReason::AccessDenied), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_endpoint_record_limit_is_split() {
    let b = Backend::start(vec![]).await;
    let env = signed_logs(&b);
    let (mut d, _) = delivery(&vars(&env));
    d.push(logs(25_000));
    assert!(d.flush(deadline()).await.complete);
    let sizes: Vec<usize> = b
        .received()
        .iter()
        .map(|r| {
            r.logs
                .as_ref()
                .unwrap()
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 25_000);
    assert!(sizes.iter().all(|n| *n <= 10_000), "{sizes:?}");
}
