//! A backend that misbehaves beyond its status code, scripted byte by byte on a raw socket: a
//! connection reset mid-response, a body that never finishes, a TLS handshake that stalls, a
//! host name that does not resolve, a malformed `Retry-After`, a huge body. Each flush comes
//! back by its deadline with the data kept (or delivered), and the misbehaviour is counted
//! under its own `contrail.export.faults` reason.
//!
//! As in `backend.rs`, no upper bound on durations is asserted: "within the budget" is shown by
//! the flush returning with the request abandoned or deferred and the data still held.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::backend::spans;
use super::delivery;
use crate::diag::{DropReason, ExportFault, Stats};

/// What the backend does with one connection.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Read the request, send the head and part of the body, then reset the connection.
    ResetMidResponse,
    /// Read the request, send the head and part of the body, then nothing more.
    BodyNeverEnds,
    /// Accept and read whatever comes, never send a byte (a TLS handshake stalls here).
    Silent,
    /// Read the request and send these bytes as the answer, keeping the connection.
    Answer(&'static str),
    /// Read the request and answer 200 with a body of this many bytes.
    HugeBody(usize),
}

const OK: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";

/// A backend on loopback that acts on its connections in the order of `script`, then answers
/// every request 200. It counts the requests it answered 200.
struct RawBackend {
    addr: SocketAddr,
    answered_ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    async fn start(script: Vec<Act>) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered_ok = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let ok = answered_ok.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let act = script.lock().unwrap().pop_front();
                tokio::spawn(serve(stream, act, ok.clone()));
            }
        });
        RawBackend {
            addr,
            answered_ok,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Read one request (head and `content-length` body); `false` if the connection ended.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|n| n.trim().parse().unwrap())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return true;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

async fn serve(mut stream: TcpStream, act: Option<Act>, ok: Arc<AtomicUsize>) {
    match act {
        Some(Act::Silent) => {
            let mut sink = [0u8; 4096];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    return;
                }
            }
        }
        Some(Act::ResetMidResponse) => {
            if read_request(&mut stream).await {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        }
        Some(Act::BodyNeverEnds) => {
            if read_request(&mut stream).await {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                std::future::pending::<()>().await;
            }
        }
        Some(Act::Answer(bytes)) => {
            if read_request(&mut stream).await {
                let _ = stream.write_all(bytes.as_bytes()).await;
                keep_answering(stream, ok).await;
            }
        }
        Some(Act::HugeBody(n)) => {
            if read_request(&mut stream).await {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < n {
                    let len = chunk.len().min(n - sent);
                    if stream.write_all(&chunk[..len]).await.is_err() {
                        return;
                    }
                    sent += len;
                }
                ok.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => keep_answering(stream, ok).await,
    }
}

async fn keep_answering(mut stream: TcpStream, ok: Arc<AtomicUsize>) {
    while read_request(&mut stream).await {
        if stream.write_all(OK.as_bytes()).await.is_err() {
            return;
        }
        ok.fetch_add(1, Ordering::Relaxed);
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(300)
}

fn in_secs(s: u64) -> Instant {
    Instant::now() + Duration::from_secs(s)
}

/// The misbehaviour cost one flush its budget, nothing was lost, and a later flush, against
/// a backend that behaves, delivers everything once. That flush is the SHUTDOWN one, which
/// sends even while the breaker the misbehaviour opened keeps end-of-invocation flushes away.
async fn kept_then_delivered(d: &mut crate::export::delivery::Delivery, b: &RawBackend) {
    let outcome = d.finish(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10, "{outcome:?}");
    let c = d.counters();
    assert_eq!((c.received, c.exported, c.dropped), (10, 10, 0), "{c:?}");
    assert!(b.answered_ok.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_response_is_counted_and_the_data_kept() {
    let b = RawBackend::start(vec![Act::ResetMidResponse; 64]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(soon()).await;
    assert!(!outcome.complete, "{outcome:?}");
    assert_eq!(outcome.held.records, 10);
    assert!(stats.faults_total(ExportFault::ConnectionReset) >= 1);
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 0);
    // The rest of the script resets too: give the backend back its manners.
    drop(b);
    let b = RawBackend::start(vec![]).await;
    let (mut d2, _) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d2.push(spans(0..10, 0));
    kept_then_delivered(&mut d2, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_once_is_retried_in_the_same_flush() {
    let b = RawBackend::start(vec![Act::ResetMidResponse]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
    assert_eq!(stats.faults_total(ExportFault::ConnectionReset), 1);
    // A failure the same flush recovered from is not one that holds the backend.
    assert!(!d.backend_held(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_is_abandoned_at_the_deadline_and_counted() {
    let b = RawBackend::start(vec![Act::BodyNeverEnds]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(soon()).await;
    assert_eq!(outcome.abandoned, 1, "{outcome:?}");
    assert_eq!(outcome.held.records, 10);
    assert_eq!(stats.faults_total(ExportFault::StalledBody), 1);
    assert_eq!(Stats::get(&stats.export_abandoned), 1);
    kept_then_delivered(&mut d, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_stalls_is_abandoned_at_the_deadline_and_counted() {
    let b = RawBackend::start(vec![Act::Silent]).await;
    let endpoint = format!("https://localhost:{}", b.addr.port());
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(soon()).await;
    assert_eq!(outcome.abandoned, 1, "{outcome:?}");
    assert_eq!(outcome.held.records, 10);
    assert_eq!(stats.faults_total(ExportFault::StalledTlsHandshake), 1);
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_that_does_not_resolve_costs_the_budget_and_is_counted() {
    // `.invalid` never resolves (RFC 2606): the lookup fails, or does not answer in time.
    let (mut d, stats) = delivery(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://contrail-backend.invalid:4318",
    )]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(soon()).await;
    assert!(!outcome.complete, "{outcome:?}");
    assert_eq!(outcome.held.records, 10);
    assert!(stats.faults_total(ExportFault::UnresolvedHost) >= 1);
    assert_eq!(stats.faults_total(ExportFault::ConnectFailed), 0);
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_retry_after_is_ignored_for_backoff_and_counted() {
    let busy =
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: in a while\r\ncontent-length: 0\r\n\r\n";
    let b = RawBackend::start(vec![Act::Answer(busy)]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    // Retried after the computed backoff (not never, not at once for ever): delivered.
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
    assert_eq!(stats.faults_total(ExportFault::InvalidRetryAfter), 1);
    assert!(b.answered_ok.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_response_body_is_not_read_and_counted() {
    let b = RawBackend::start(vec![Act::HugeBody(8 * 1024 * 1024)]).await;
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &b.endpoint())]);
    d.push(spans(0..10, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
    assert_eq!(stats.faults_total(ExportFault::ResponseTooLarge), 1);
    // The connection was not reused: the next export goes on a new one, and works.
    d.push(spans(10..20, 0));
    let outcome = d.flush(in_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 10);
}
