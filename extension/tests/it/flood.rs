//! The real binary under a flood of maximum-size requests on many connections to both local
//! receivers (ADR 0015): its memory stays within the receivers' byte bound, the flood is
//! answered with OTLP's refusals (HTTP 503 with `Retry-After`, gRPC `RESOURCE_EXHAUSTED`), and
//! the Telemetry API path is not held up: every batch posted during the flood is answered 200
//! and its records are exported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use contrail_testkit::grpc;
use contrail_testkit::otlp_backend::Backend;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use tokio::net::TcpStream;

use crate::support::{Extension, FakeLambda, NEXT, Script, listening, post_json};

/// The default `CONTRAIL_RECEIVER_MAX_BODY_BYTES`, and so the default byte bound.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Connections of the OTLP/HTTP flood, and requests sent on each.
const HTTP_CONNECTIONS: usize = 24;
const HTTP_REQUESTS_EACH: usize = 2;
/// Concurrent calls of the OTLP/gRPC flood, each on a connection of its own.
const GRPC_CALLS: usize = 8;
/// Telemetry API batches posted while the flood runs, and function lines in each.
const BATCHES: usize = 20;
const LINES_PER_BATCH: usize = 5;
/// What the flood may add to Contrail's peak RSS. The bound is the receivers' byte budget
/// (4 MiB of requests in memory), the decoded form of what it holds, and the export buffer;
/// without the budget the flood's requests alone would be 24 × 4 MiB read at once.
const PEAK_ABOVE_IDLE_KB: u64 = 48 * 1024;

/// A logs export request of just under `bytes`, of 512-byte records: many small allocations
/// when decoded, the costly shape.
fn max_size_logs(bytes: usize, tag: &str) -> Vec<u8> {
    let record = |i: usize| LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!(
                "{tag} {i:06} {}",
                "x".repeat(500)
            ))),
        }),
        ..Default::default()
    };
    let one = record(0).encoded_len() + 3;
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..(bytes - 64) / one).map(record).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = request.encode_to_vec();
    assert!(
        body.len() <= bytes && body.len() > bytes - 2 * one,
        "{}",
        body.len()
    );
    body
}

/// What the HTTP flood was answered.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    busy: AtomicU64,
    /// The server closed or reset the connection before its answer could be read (it
    /// answers a refused request before reading its body, then closes).
    closed: AtomicU64,
    other: AtomicU64,
}

async fn flood_http(addr: SocketAddr, body: Bytes, outcomes: Arc<Outcomes>) {
    for _ in 0..HTTP_REQUESTS_EACH {
        let Ok(stream) = TcpStream::connect(addr).await else {
            outcomes.closed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok((mut client, connection)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            outcomes.closed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tokio::spawn(connection);
        let request = hyper::Request::post("/v1/logs")
            .header("host", addr.to_string())
            .header("content-type", "application/x-protobuf")
            .body(Full::new(body.clone()))
            .unwrap();
        match client.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                let _ = response.into_body().collect().await;
                match status {
                    200 => outcomes.ok.fetch_add(1, Ordering::Relaxed),
                    503 => {
                        assert_eq!(retry_after.unwrap(), "1");
                        outcomes.busy.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => outcomes.other.fetch_add(1, Ordering::Relaxed),
                };
            }
            Err(_) => {
                outcomes.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_maximum_size_requests_stays_in_the_byte_bound_and_never_holds_up_the_telemetry_api()
 {
    let backend = Backend::start(Vec::new()).await;
    let free_port = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let http_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let grpc_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let fake = FakeLambda::start(Script::default()).await;
    let endpoint = backend.endpoint();
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("CONTRAIL_RECEIVER_ENDPOINT", &http_addr.to_string()),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", &grpc_addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ],
    );
    let pid = ext.child.id();
    let port = listening(&fake).await;
    let (idle_rss, _) = memory_kb(pid);

    fake.push_invoke("req-flood", Duration::from_secs(60));
    let body = Bytes::from(max_size_logs(MAX_BODY, "sdk"));
    let outcomes = Arc::new(Outcomes::default());
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..HTTP_CONNECTIONS {
        flood.spawn(flood_http(http_addr, body.clone(), outcomes.clone()));
    }
    let grpc_codes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let message = grpc::framed(false, &max_size_logs(MAX_BODY - 5, "grpc"));
    for _ in 0..GRPC_CALLS {
        let (message, codes) = (message.clone(), grpc_codes.clone());
        flood.spawn(async move {
            let answer = grpc::call(grpc_addr, grpc::LOGS, &[], message).await;
            codes.lock().unwrap().push(answer.status());
        });
    }

    // While it runs, Lambda delivers the function's lines: each batch is answered 200.
    for batch in 0..BATCHES {
        let records: Vec<String> = (0..LINES_PER_BATCH)
            .map(|line| {
                format!(
                    r#"{{"time":"2024-01-01T00:00:01.{batch:03}Z","type":"function","record":"during the flood {batch:02}-{line}"}}"#
                )
            })
            .collect();
        let body: &'static str = Box::leak(format!("[{}]", records.join(",")).into_boxed_str());
        assert_eq!(post_json(port, body).await, 200, "batch {batch}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(done) = flood.join_next().await {
        done.unwrap();
    }
    assert_eq!(
        post_json(
            port,
            r#"[{"time":"2024-01-01T00:00:02.000Z","type":"platform.runtimeDone","record":{"requestId":"req-flood","status":"success","metrics":{"durationMs":1000.0}}}]"#
        )
        .await,
        200
    );
    fake.wait_for(NEXT, 2).await;
    let (_, peak) = memory_kb(pid);

    // The bound held, and the flood was told so the way OTLP says.
    let (ok, busy, closed, other) = (
        outcomes.ok.load(Ordering::Relaxed),
        outcomes.busy.load(Ordering::Relaxed),
        outcomes.closed.load(Ordering::Relaxed),
        outcomes.other.load(Ordering::Relaxed),
    );
    let codes = grpc_codes.lock().unwrap().clone();
    println!(
        "idle RSS {idle_rss} kB, peak {peak} kB (+{} kB); HTTP: {ok} ok, {busy} 503, {closed} closed before the answer; gRPC codes {codes:?}",
        peak - idle_rss
    );
    assert_eq!(other, 0, "only 200 and 503");
    assert!(ok >= 1, "some of the flood is accepted");
    assert!(busy + closed >= 1, "and the rest refused");
    assert!(
        codes.iter().all(|c| matches!(c, Some(0) | Some(8))),
        "gRPC: OK or RESOURCE_EXHAUSTED, {codes:?}"
    );
    assert!(
        peak - idle_rss <= PEAK_ABOVE_IDLE_KB,
        "the flood added {} kB to the peak RSS, more than {PEAK_ABOVE_IDLE_KB} kB",
        peak - idle_rss
    );

    // Every line Lambda delivered during the flood was exported.
    let exported: Vec<String> = backend
        .received()
        .into_iter()
        .filter_map(|r| r.logs)
        .flat_map(|l| l.resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .filter_map(|lr| match lr.body.and_then(|b| b.value) {
            Some(any_value::Value::StringValue(s)) if s.starts_with("during the flood") => Some(s),
            _ => None,
        })
        .collect();
    for batch in 0..BATCHES {
        for line in 0..LINES_PER_BATCH {
            let want = format!("during the flood {batch:02}-{line}");
            assert!(
                exported.contains(&want),
                "{want:?} was not exported ({} of {} were); stderr:\n{}",
                exported.len(),
                BATCHES * LINES_PER_BATCH,
                ext.stderr()
            );
        }
    }
    let deadline = fake.push_shutdown(Duration::from_millis(2000));
    let status = ext.wait_exit(deadline).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ext.stderr());
}
