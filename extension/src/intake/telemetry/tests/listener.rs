//! The Telemetry API listener over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use contrail_testkit::http::send;
use tokio::net::TcpListener;

use crate::diag::{DropReason, FieldReason, Stats};
use crate::intake::telemetry::listener::{Deliveries, serve_with_shutdown};
use crate::pipeline::{Intake, intake_queue};

/// Send one request on a fresh connection, as Lambda does; the answer's status code.
async fn post(addr: std::net::SocketAddr, method: &str, body: &[u8]) -> String {
    let headers = [
        ("host", "sandbox.localdomain"),
        ("content-type", "application/json"),
    ];
    let answer = send(addr, method, "/telemetry", &headers, body.to_vec()).await;
    answer.status.as_str().to_owned()
}

fn status(response: &str) -> &str {
    response
}

#[tokio::test]
async fn answers_200_decodes_counts_and_queues() {
    let stats = Arc::new(Stats::default());
    let (tx, mut rx) = intake_queue(4, Arc::clone(&stats));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (deliveries, mut delivered) = Deliveries::new();
    let server = tokio::spawn(serve_with_shutdown(listener, tx, deliveries, 4096, async {
        let _ = stop_rx.await;
    }));

    let body = std::fs::read(format!(
        "{}/tests/fixtures/telemetry/malformed.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let response = post(addr, "POST", &body).await;
    assert_eq!(status(&response), "200", "{response}");
    let Some(Intake::Telemetry(records)) = rx.recv().await else {
        panic!("nothing queued")
    };
    assert_eq!(records.len(), 3);
    // Each POST moves the delivery count: when it arrives and when its records are queued.
    assert_eq!(*delivered.borrow_and_update(), 2);
    assert_eq!(Stats::get(&stats.telemetry_records), 5);
    assert_eq!(stats.dropped_total(DropReason::Malformed), 2);
    assert_eq!(stats.fields_dropped_total(FieldReason::InvalidTime), 1);
    assert_eq!(stats.fields_dropped_total(FieldReason::Missing), 1);

    // Not an array at all: still 200, one malformed.
    assert_eq!(status(&post(addr, "POST", b"{\"oops\":1}").await), "200");
    assert_eq!(stats.dropped_total(DropReason::Malformed), 3);

    // Unknown types are counted and queued.
    let unknown = br#"[{"time":"2022-10-12T00:00:16.500Z","type":"platform.next","record":{}}]"#;
    assert_eq!(status(&post(addr, "POST", unknown).await), "200");
    assert!(matches!(rx.recv().await, Some(Intake::Telemetry(r)) if r.len() == 1));
    assert_eq!(Stats::get(&stats.unknown_records), 1);

    // Over the cap: 200 (a retry would fail the same way), counted.
    let big = format!(
        "[{{\"time\":\"2022-10-12T00:00:16.500Z\",\"type\":\"function\",\"record\":\"{}\"}}]",
        "x".repeat(5000)
    );
    assert_eq!(status(&post(addr, "POST", big.as_bytes()).await), "200");
    assert_eq!(stats.dropped_total(DropReason::Malformed), 4);

    // Other methods are not the Telemetry API.
    assert_eq!(status(&post(addr, "GET", b"").await), "405");

    stop_tx.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_full_queue_still_answers_200_and_counts_the_loss() {
    let stats = Arc::new(Stats::default());
    let (tx, _rx) = intake_queue(1, Arc::clone(&stats));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (deliveries, _delivered) = Deliveries::new();
    let server = tokio::spawn(serve_with_shutdown(
        listener,
        tx,
        deliveries,
        1 << 20,
        async {
            let _ = stop_rx.await;
        },
    ));
    let body = std::fs::read(format!(
        "{}/tests/fixtures/telemetry/function.text.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(status(&post(addr, "POST", &body).await), "200");
    assert_eq!(status(&post(addr, "POST", &body).await), "200");
    assert_eq!(stats.dropped_total(DropReason::IntakeFull), 3);
    assert_eq!(Stats::get(&stats.telemetry_records), 6);
    stop_tx.send(()).unwrap();
    server.await.unwrap();
}
