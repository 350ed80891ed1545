//! What holds the receivers' memory and connections bounded whatever a client does (ADR 0015):
//! the byte budget of requests being read, decoded and queued, the cap on connections, and the
//! idle timeout. Real sockets on loopback, raw where the test must control every byte.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use contrail_testkit::grpc::{Client, call, framed};
use contrail_testkit::http::{gzip, post};
use http_body_util::Full;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handler::traces;
use super::{
    PROTOBUF, Running, grpc_options, post_gzip_protobuf, start_bounded, start_grpc, wait_until,
};
use crate::diag::Stats;
use crate::intake::receiver::ReceiverConfig;
use crate::intake::receiver::grpc::GrpcOptions;
use crate::pipeline::IntakeBudget;
use crate::pipeline::otlp::RpcStatus;

/// A guard against a test that would hang, not a measurement: every wait below ends on an
/// event (an answer, a close) long before it.
const GUARD: Duration = Duration::from_secs(10);

fn config(max_body_bytes: usize) -> ReceiverConfig {
    ReceiverConfig {
        max_body_bytes,
        max_pending_bytes: max_body_bytes,
        ..ReceiverConfig::default()
    }
}

fn refused(running: &Running) -> u64 {
    Stats::get(&running.stats.receiver_rejected_requests)
}

/// Open a connection and send the head of a POST to `/v1/traces` with `headers`, then `body`.
async fn begin(addr: SocketAddr, headers: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {PROTOBUF}\r\n{headers}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection (or resets it).
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the server closes the connection");
    out
}

/// The head and body of one HTTP/1.1 answer read from `stream` (its `content-length` bytes).
async fn answer(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map(|n| n.trim().parse().unwrap())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + length {
                    return (head, raw[end + 4..end + 4 + length].to_vec());
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer")
}

#[tokio::test]
async fn a_request_that_does_not_fit_the_byte_bound_is_refused_with_503_and_retry_after() {
    let budget = IntakeBudget::new(1000);
    let mut receiver = start_bounded(8, config(1000), budget.clone()).await;
    let addr = receiver.addr;
    // One request declares 900 bytes and sends 100: all 900 are held before they are read.
    let mut slow = begin(addr, "content-length: 900\r\n", &[0; 100]).await;
    wait_until(|| budget.used() == 900).await;

    // A second of 200 does not fit beside it: refused before its body is read, as OTLP says
    // an overloaded server answers, with a protobuf Status.
    let busy = post(addr, "/v1/traces", PROTOBUF, vec![0u8; 200]).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(busy.content_type(), PROTOBUF);
    let status = RpcStatus::decode(busy.body).unwrap();
    assert!(status.message.contains("retry shortly"), "{status:?}");
    assert!(
        status
            .message
            .contains("CONTRAIL_RECEIVER_MAX_PENDING_BYTES")
    );

    // A small one fits, and holds its bytes while it waits in the intake queue.
    let small = traces(1).encode_to_vec();
    let ok = post(addr, "/v1/traces", PROTOBUF, small.clone()).await;
    assert_eq!(ok.status, 200);
    assert_eq!(budget.used(), 900 + small.len());
    // Once the worker has taken and mapped it, its bytes are given back.
    drop(receiver.intake.try_recv().unwrap());
    assert_eq!(budget.used(), 900);

    // The first one ends (its body is not OTLP): refused, its bytes given back.
    slow.write_all(&[0xff; 800]).await.unwrap();
    let (head, _) = answer(&mut slow).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    wait_until(|| budget.used() == 0).await;
    assert_eq!(refused(&receiver), 2);
    receiver.stop().await;
}

#[tokio::test]
async fn a_body_without_a_length_is_held_as_it_arrives_and_refused_when_it_passes_the_bound() {
    let budget = IntakeBudget::new(1000);
    let receiver = start_bounded(8, config(1000), budget.clone()).await;
    let addr = receiver.addr;
    let _holding = begin(addr, "content-length: 600\r\n", &[]).await;
    wait_until(|| budget.used() == 600).await;

    let mut chunked = begin(addr, "transfer-encoding: chunked\r\n", b"12c\r\n").await;
    chunked.write_all(&[0; 300]).await.unwrap();
    chunked.write_all(b"\r\n").await.unwrap();
    wait_until(|| budget.used() == 900).await;
    chunked.write_all(b"c8\r\n").await.unwrap();
    chunked.write_all(&[0; 200]).await.unwrap();
    chunked.write_all(b"\r\n").await.unwrap();
    let (head, _) = answer(&mut chunked).await;
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    wait_until(|| budget.used() == 600).await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_gzip_body_holds_what_it_inflates_to_and_is_refused_when_that_does_not_fit() {
    let budget = IntakeBudget::new(1000);
    let receiver = start_bounded(8, config(1000), budget.clone()).await;
    let addr = receiver.addr;
    let _holding = begin(addr, "content-length: 600\r\n", &[]).await;
    wait_until(|| budget.used() == 600).await;
    // A few dozen bytes on the wire, 500 inflated: 600 + 500 is past the bound.
    let bomb = gzip(&[0u8; 500]);
    assert!(bomb.len() < 100);
    let busy = post_gzip_protobuf(addr, "/v1/traces", bomb).await;
    assert_eq!(busy.status, 503);
    wait_until(|| budget.used() == 600).await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_gzip_request_of_the_largest_size_fits_alone_with_the_default_bound() {
    let cap = 65_536;
    let config =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_BODY_BYTES", "65536")]).unwrap();
    // A span name of hex digits from a small generator: it inflates to just under the cap and
    // compresses only to about half, so both copies together are well past the cap.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut request = traces(1);
    request.resource_spans[0].scope_spans[0].spans[0].name = (0..cap - 1_000)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from_digit(((x >> 60) & 0xf) as u32, 16).unwrap()
        })
        .collect();
    let inflated = request.encode_to_vec();
    let body = gzip(&inflated);
    assert!(inflated.len() <= cap && body.len() <= cap);
    assert!(inflated.len() + body.len() > cap);

    let budget = IntakeBudget::new(config.max_pending_bytes);
    let mut receiver = start_bounded(8, config, budget.clone()).await;
    let ok = post_gzip_protobuf(receiver.addr, "/v1/traces", body).await;
    assert_eq!(ok.status, 200);
    // What it holds while queued is its decoded form's bytes, given back once mapped.
    drop(receiver.intake.try_recv().unwrap());
    assert_eq!(budget.used(), 0);
    receiver.stop().await;
}

#[tokio::test]
async fn a_connection_over_the_cap_is_answered_503_and_closed_and_a_freed_place_is_reused() {
    let budget = IntakeBudget::new(1024);
    let config = ReceiverConfig {
        max_connections: 2,
        ..config(1024)
    };
    let receiver = start_bounded(8, config, budget).await;
    let addr = receiver.addr;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // The third is answered before it sends anything, then closed.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let answer = until_closed(&mut third).await;
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.contains("connections open"), "{text}");
    wait_until(|| refused(&receiver) == 1).await;

    // A place given back is taken by the next connection.
    drop(first);
    let request = traces(1).encode_to_vec();
    let served = tokio::time::timeout(GUARD, async {
        loop {
            let answer = post(addr, "/v1/traces", PROTOBUF, request.clone()).await;
            if answer.status == 200 {
                break;
            }
            assert_eq!(answer.status, 503, "{}", answer.text());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "the freed place is never reused");
    receiver.stop().await;
}

#[tokio::test]
async fn silent_connections_and_headers_sent_a_byte_at_a_time_are_closed_after_the_idle_timeout() {
    let budget = IntakeBudget::new(1024);
    let config = ReceiverConfig {
        idle_timeout: Duration::from_millis(200),
        ..config(1024)
    };
    let receiver = start_bounded(8, config, budget).await;
    let addr = receiver.addr;

    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());

    // Headers that never end, one byte every 20 ms: closed while they are still coming.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(b"POST /v1/traces HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let closed = tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 64];
        loop {
            if trickle.write_all(b"a").await.is_err() {
                return;
            }
            tokio::select! {
                read = trickle.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the trickling connection was never closed");

    // A kept-alive connection is closed too once it has waited that long for the next request.
    let mut kept = begin(addr, "content-length: 0\r\n", &[]).await;
    let (head, _) = answer(&mut kept).await;
    assert!(
        head.starts_with("http/1.1 200"),
        "an empty export is a success: {head}"
    );
    assert!(until_closed(&mut kept).await.is_empty());
    receiver.stop().await;
}

#[tokio::test]
async fn grpc_messages_hold_the_shared_budget_until_mapped() {
    // The calls of this receiver and a request of the OTLP/HTTP one share one budget.
    let options = GrpcOptions {
        in_flight_bytes: 1000,
        ..grpc_options(1000)
    };
    let mut receiver = start_grpc(8, 0, options).await;
    let addr = receiver.addr;
    let message = traces(2).encode_to_vec();
    let ok = call(
        addr,
        contrail_testkit::grpc::TRACES,
        &[],
        framed(false, &message),
    )
    .await;
    assert_eq!(ok.status(), Some(0));
    let held = || receiver.grpc.as_ref().unwrap().in_flight_bytes();
    assert_eq!(held(), message.len());
    drop(receiver.intake.try_recv().unwrap());
    assert_eq!(held(), 0);
    receiver.stop().await;
}

#[tokio::test]
async fn a_grpc_connection_over_the_cap_is_closed_at_once_and_counted() {
    let options = GrpcOptions {
        max_connections: 1,
        ..grpc_options(1000)
    };
    let receiver = start_grpc(8, 0, options).await;
    let addr = receiver.addr;
    let mut client: Client<Full<bytes::Bytes>> = Client::connect(addr).await;
    let ok = client
        .call(
            "POST",
            contrail_testkit::grpc::TRACES,
            &[],
            Full::new(framed(false, &traces(1).encode_to_vec()).into()),
        )
        .await;
    assert_eq!(ok.status(), Some(0));
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut second).await.is_empty());
    assert_eq!(Stats::get(&receiver.stats.grpc_refused), 1);
    receiver.stop().await;
}

#[tokio::test]
async fn a_grpc_connection_without_a_call_is_sent_goaway_after_the_idle_timeout() {
    let options = GrpcOptions {
        idle_timeout: Duration::from_millis(200),
        ..grpc_options(1000)
    };
    let receiver = start_grpc(8, 0, options).await;
    // The preface and nothing more: no call ever starts.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let sent = until_closed(&mut stream).await;
    let mut frame_types = Vec::new();
    let mut at = 0;
    while at + 9 <= sent.len() {
        let len = u32::from_be_bytes([0, sent[at], sent[at + 1], sent[at + 2]]) as usize;
        frame_types.push(sent[at + 3]);
        at += 9 + len;
    }
    const GOAWAY: u8 = 0x7;
    assert!(frame_types.contains(&GOAWAY), "frames {frame_types:?}");
    receiver.stop().await;
}

/// The shared budget is one `Arc`: both receivers of a process see the same holdings.
#[test]
fn the_budget_is_shared_by_clones() {
    let budget = IntakeBudget::new(10);
    let other: Arc<IntakeBudget> = budget.clone();
    let mut held = budget.hold();
    assert!(held.grow(10));
    assert_eq!(other.used(), 10);
    assert!(!other.hold().grow(1));
}
