//! The OTLP/gRPC receiver over real HTTP/2 on 127.0.0.1: what it accepts, each refusal and
//! its status, the bound on unfinished messages, and what it tells clients that do not speak
//! HTTP/2 at all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use bytes::Bytes;
use contrail_testkit::grpc::{
    Client, GrpcAnswer, LOGS, METRICS, TRACES, call, call_with_body, fed, framed,
};
use contrail_testkit::http::{gzip, post};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handler::{gauge_metrics, logs, traces};
use super::{Running, grpc_options, start_grpc, wait_until};
use crate::diag::{DropReason, Stats};
use crate::intake::receiver::grpc::GrpcOptions;
use crate::pipeline::{Intake, OtlpPayload};

const CAP: usize = 64 * 1024;
const OK: u16 = 0;
const INVALID_ARGUMENT: u16 = 3;
const DEADLINE_EXCEEDED: u16 = 4;
const RESOURCE_EXHAUSTED: u16 = 8;
const UNIMPLEMENTED: u16 = 12;

async fn receiver() -> Running {
    start_grpc(8, 0, grpc_options(CAP)).await
}

fn queued(running: &mut Running) -> OtlpPayload {
    match running.intake.try_recv() {
        Ok(Intake::Otlp(payload, _)) => payload,
        other => panic!("expected one queued OTLP payload, got {other:?}"),
    }
}

fn refused(running: &Running) -> u64 {
    Stats::get(&running.stats.grpc_refused)
}

/// A refusal in a Trailers-Only answer: `:status 200`, the status in the headers, no DATA.
fn assert_trailers_only(answer: &GrpcAnswer, code: u16, says: &str) {
    assert_eq!(answer.http, 200);
    assert!(answer.trailers.is_none(), "Trailers-Only: {answer:?}");
    assert!(answer.data.is_empty());
    assert_eq!(answer.headers["content-type"], "application/grpc");
    assert_eq!(answer.status(), Some(code), "{answer:?}");
    assert!(answer.message().contains(says), "{}", answer.message());
}

#[tokio::test]
async fn each_signal_is_queued_and_answered_ok_in_the_trailers() {
    let mut receiver = receiver().await;
    let spans = traces(3);
    let answer = call(
        receiver.addr,
        TRACES,
        &[],
        framed(false, &spans.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.http, 200);
    assert_eq!(answer.headers["content-type"], "application/grpc");
    assert_eq!(answer.headers["grpc-accept-encoding"], "identity,gzip");
    assert!(answer.headers.get("content-length").is_none());
    assert_eq!(answer.trailers.as_ref().unwrap()["grpc-status"], "0");
    let response = ExportTraceServiceResponse::decode(answer.response()).unwrap();
    assert_eq!(response.partial_success, None);
    assert_eq!(queued(&mut receiver), OtlpPayload::Traces(spans));

    let points = gauge_metrics(4);
    let answer = call(
        receiver.addr,
        METRICS,
        &[],
        framed(false, &points.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status(), Some(OK));
    assert_eq!(
        ExportMetricsServiceResponse::decode(answer.response())
            .unwrap()
            .partial_success,
        None
    );
    assert_eq!(queued(&mut receiver), OtlpPayload::Metrics(points));

    let records = logs(5);
    let answer = call(
        receiver.addr,
        LOGS,
        &[],
        framed(false, &records.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status(), Some(OK));
    assert_eq!(queued(&mut receiver), OtlpPayload::Logs(records));

    assert_eq!(Stats::get(&receiver.stats.receiver_records), 3 + 4 + 5);
    assert_eq!(refused(&receiver), 0);
    receiver.stop().await;
}

#[tokio::test]
async fn a_gzip_message_is_inflated_and_a_compressed_flag_without_an_encoding_is_refused() {
    let mut receiver = receiver().await;
    let spans = traces(2);
    let body = framed(true, &gzip(&spans.encode_to_vec()));
    let answer = call(
        receiver.addr,
        TRACES,
        &[("grpc-encoding", "gzip")],
        body.clone(),
    )
    .await;
    assert_eq!(answer.status(), Some(OK), "{answer:?}");
    assert_eq!(queued(&mut receiver), OtlpPayload::Traces(spans.clone()));

    // `grpc-encoding: gzip` allows compression; a message may still come uncompressed.
    let plain = framed(false, &spans.encode_to_vec());
    let answer = call(receiver.addr, TRACES, &[("grpc-encoding", "gzip")], plain).await;
    assert_eq!(answer.status(), Some(OK));
    queued(&mut receiver);

    let answer = call(receiver.addr, TRACES, &[], body).await;
    assert_trailers_only(&answer, INVALID_ARGUMENT, "flagged compressed");
    let bad_gzip = framed(true, b"not gzip at all");
    let answer = call(
        receiver.addr,
        TRACES,
        &[("grpc-encoding", "gzip")],
        bad_gzip,
    )
    .await;
    assert_trailers_only(&answer, INVALID_ARGUMENT, "invalid gzip");
    assert!(receiver.intake.try_recv().is_err());
    assert_eq!(refused(&receiver), 2);
    receiver.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_answered_ok_with_a_partial_success_like_the_http_receiver() {
    // Capacity 2, all of it left to the Telemetry API: every offer is dropped.
    let mut receiver = start_grpc(2, 2, grpc_options(CAP)).await;
    let answer = call(
        receiver.addr,
        TRACES,
        &[],
        framed(false, &traces(3).encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status(), Some(OK));
    let partial = ExportTraceServiceResponse::decode(answer.response())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert!(partial.error_message.contains("do not retry"));

    let answer = call(
        receiver.addr,
        LOGS,
        &[],
        framed(false, &logs(2).encode_to_vec()),
    )
    .await;
    let partial = ExportLogsServiceResponse::decode(answer.response())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 2);
    assert_eq!(receiver.stats.dropped_total(DropReason::IntakeFull), 5);
    assert_eq!(Stats::get(&receiver.stats.receiver_records), 5);
    assert_eq!(refused(&receiver), 0, "a partial success is not a refusal");
    assert!(receiver.intake.try_recv().is_err());
    receiver.stop().await;
}

#[tokio::test]
async fn malformed_messages_are_invalid_argument_and_queue_nothing() {
    let mut receiver = receiver().await;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "not protobuf",
            framed(false, &[0xff, 0xff, 0xff]),
            "not a valid OTLP Traces export request",
        ),
        (
            "truncated",
            framed(false, b"twelve bytes")[..10].to_vec(),
            "ended inside the message",
        ),
        ("bad flag", vec![7, 0, 0, 0, 0], "compressed flag is 7"),
        (
            "short prefix",
            vec![0, 0],
            "ended inside the message (2 of 5 bytes)",
        ),
    ];
    for (what, body, says) in cases {
        let answer = call(receiver.addr, TRACES, &[], body).await;
        assert_eq!(answer.status(), Some(INVALID_ARGUMENT), "{what}");
        assert!(
            answer.message().contains(says),
            "{what}: {}",
            answer.message()
        );
    }
    assert!(receiver.intake.try_recv().is_err());
    assert_eq!(refused(&receiver), 4);
    receiver.stop().await;
}

#[tokio::test]
async fn a_message_over_the_cap_is_invalid_argument_declared_or_inflated() {
    let mut receiver = start_grpc(8, 0, grpc_options(2048)).await;
    // Only the prefix is needed to refuse: the declared length.
    let mut declared = vec![0, 0, 0, 0x08, 0x01];
    declared.extend_from_slice(&[0; 100]);
    let answer = call(receiver.addr, TRACES, &[], declared).await;
    assert_trailers_only(
        &answer,
        INVALID_ARGUMENT,
        "is 2049 bytes, more than 2048 bytes",
    );
    assert!(
        answer
            .message()
            .contains("CONTRAIL_RECEIVER_MAX_BODY_BYTES")
    );

    // A small gzip message that inflates beyond the cap.
    let bomb = framed(true, &gzip(&vec![b'a'; 100_000]));
    assert!(bomb.len() < 2048);
    let answer = call(receiver.addr, LOGS, &[("grpc-encoding", "gzip")], bomb).await;
    assert_trailers_only(
        &answer,
        INVALID_ARGUMENT,
        "inflates to more than 2048 bytes",
    );
    assert!(receiver.intake.try_recv().is_err());
    assert_eq!(refused(&receiver), 2);
    receiver.stop().await;
}

#[tokio::test]
async fn anything_but_the_three_unary_exports_is_unimplemented() {
    let receiver = receiver().await;
    let message = framed(false, &traces(1).encode_to_vec());
    let unknown = call(
        receiver.addr,
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        &[],
        message.clone(),
    )
    .await;
    assert_trailers_only(&unknown, UNIMPLEMENTED, "unknown method");
    let get = call_with_body(
        receiver.addr,
        "GET",
        TRACES,
        &[],
        http_body_util::Full::new(Bytes::new()),
    )
    .await;
    assert_trailers_only(&get, UNIMPLEMENTED, "POST");
    let none = call(receiver.addr, TRACES, &[], Bytes::new()).await;
    assert_trailers_only(&none, UNIMPLEMENTED, "no request message");
    let mut two = message.clone();
    two.extend_from_slice(&message);
    let two = call(receiver.addr, TRACES, &[], two).await;
    assert_trailers_only(&two, UNIMPLEMENTED, "more than one request message");
    let deflate = call(
        receiver.addr,
        TRACES,
        &[("grpc-encoding", "deflate")],
        message.clone(),
    )
    .await;
    assert_trailers_only(&deflate, UNIMPLEMENTED, "unsupported grpc-encoding");
    assert_eq!(deflate.headers["grpc-accept-encoding"], "identity,gzip");
    let json = call(
        receiver.addr,
        TRACES,
        &[("content-type", "application/grpc+json")],
        message.clone(),
    )
    .await;
    assert_trailers_only(&json, UNIMPLEMENTED, "codec");
    let proto = call(
        receiver.addr,
        TRACES,
        &[("content-type", "application/grpc+proto")],
        message.clone(),
    )
    .await;
    assert_eq!(proto.status(), Some(OK));

    // Not gRPC at all: HTTP 415, as the gRPC specification asks.
    let not_grpc = call(
        receiver.addr,
        TRACES,
        &[("content-type", "application/x-protobuf")],
        message,
    )
    .await;
    assert_eq!(not_grpc.http, 415);
    assert!(String::from_utf8_lossy(&not_grpc.data).contains("OTLP/HTTP"));
    assert_eq!(refused(&receiver), 7);
    receiver.stop().await;
}

#[tokio::test]
async fn unfinished_messages_hold_at_most_the_in_flight_bound_then_refuse_with_retry_info() {
    // Messages of up to 1000 bytes, at most 1000 bytes of them at once.
    let options = GrpcOptions {
        in_flight_bytes: 1000,
        ..grpc_options(1000)
    };
    let mut receiver = start_grpc(8, 0, options).await;
    let addr = receiver.addr;
    // One call declares 900 bytes and sends 100 of them.
    let (feed, body) = fed();
    let mut prefix = vec![0, 0, 0, 0x03, 0x84];
    prefix.extend_from_slice(&[0; 100]);
    feed.send(Bytes::from(prefix)).await.unwrap();
    let first = tokio::spawn(call_with_body(addr, "POST", TRACES, &[], body));
    wait_until(|| receiver_in_flight(&receiver) == 900).await;

    // A second of 900 does not fit beside it: refused at once, with a delay to retry after.
    let busy = call(addr, TRACES, &[], framed(false, &[0; 900])).await;
    assert_trailers_only(&busy, RESOURCE_EXHAUSTED, "retry shortly");
    let retry = busy.binary("google.rpc.retryinfo-bin").unwrap();
    // RetryInfo { retry_delay: Duration { nanos: 50_000_000 } }
    assert_eq!(retry, [0x0a, 0x05, 0x10, 0x80, 0xe1, 0xeb, 0x17], "50 ms");
    assert!(busy.binary("grpc-status-details-bin").is_some());
    // A small one still fits, and holds its bytes while it waits in the intake queue.
    let small_message = traces(1).encode_to_vec();
    let small = call(addr, TRACES, &[], framed(false, &small_message)).await;
    assert_eq!(small.status(), Some(OK));
    assert_eq!(receiver_in_flight(&receiver), 900 + small_message.len());
    // Taken by the worker and dropped once mapped: given back.
    drop(receiver.intake.try_recv().unwrap());
    assert_eq!(receiver_in_flight(&receiver), 900);

    // The first one never finishes: it is cut off at the message timeout and its bytes given
    // back.
    let stalled = first.await.unwrap();
    assert_trailers_only(&stalled, DEADLINE_EXCEEDED, "did not arrive within 500 ms");
    drop(feed);
    wait_until(|| receiver_in_flight(&receiver) == 0).await;
    let again = call(addr, TRACES, &[], framed(false, &[0; 0])).await;
    assert_eq!(again.status(), Some(OK));
    assert_eq!(refused(&receiver), 2);
    receiver.stop().await;
}

fn receiver_in_flight(receiver: &Running) -> usize {
    receiver.grpc.as_ref().unwrap().in_flight_bytes()
}

#[tokio::test]
async fn an_http1_client_is_told_this_is_the_grpc_port() {
    let receiver = receiver().await;
    let answer = post(
        receiver.addr,
        "/v1/traces",
        "application/x-protobuf",
        traces(1).encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, 505);
    assert!(
        answer.text().contains("OTLP/gRPC receiver"),
        "{}",
        answer.text()
    );
    assert!(answer.text().contains("port 4318"), "{}", answer.text());
    assert_eq!(refused(&receiver), 1);
    receiver.stop().await;
}

#[tokio::test]
async fn a_tls_client_gets_a_handshake_failure_alert_and_silence_is_cut_off() {
    let receiver = receiver().await;
    let mut tls = TcpStream::connect(receiver.addr).await.unwrap();
    // The start of a ClientHello record.
    tls.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c])
        .await
        .unwrap();
    let mut alert = Vec::new();
    tls.read_to_end(&mut alert).await.unwrap();
    assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);

    let mut silent = TcpStream::connect(receiver.addr).await.unwrap();
    let mut nothing = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut nothing))
        .await
        .expect("closed after the greeting timeout");
    assert_eq!(read.unwrap(), 0);
    assert_eq!(refused(&receiver), 2);
    receiver.stop().await;
}

#[tokio::test]
async fn a_flood_of_calls_on_one_connection_leaves_the_telemetry_api_its_share_of_the_queue() {
    // A queue of 8 units, 4 of them kept for the Telemetry API; nobody drains it.
    let mut receiver = start_grpc(8, 4, grpc_options(CAP)).await;
    let mut client = Client::connect(receiver.addr).await;
    let body = Bytes::from(framed(false, &traces(2).encode_to_vec()));
    // One call first, so that the client knows the receiver's SETTINGS (at most 32 streams at
    // once) and queues the rest, as gRPC clients do.
    let first = client
        .call("POST", TRACES, &[], http_body_util::Full::new(body.clone()))
        .await;
    assert_eq!(first.status(), Some(OK));
    queued(&mut receiver);
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let mut client = client.clone();
            let body = http_body_util::Full::new(body.clone());
            tokio::spawn(async move { client.call("POST", TRACES, &[], body).await })
        })
        .collect();
    let mut queued = 0;
    let mut rejected = 0;
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer.status(), Some(OK), "{answer:?}");
        match ExportTraceServiceResponse::decode(answer.response())
            .unwrap()
            .partial_success
        {
            None => queued += 1,
            Some(partial) => rejected += partial.rejected_spans,
        }
    }
    assert_eq!(queued, 4, "the receiver filled its half");
    assert_eq!(rejected, 36 * 2);
    assert_eq!(receiver.stats.dropped_total(DropReason::IntakeFull), 72);
    // The Telemetry API's half is still free.
    for _ in 0..4 {
        assert_eq!(
            receiver.telemetry.offer(Intake::Telemetry(Vec::new())),
            crate::pipeline::Offered::Queued
        );
    }
    receiver.stop().await;
}
