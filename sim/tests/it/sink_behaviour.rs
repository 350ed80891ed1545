//! The sink as a scripted backend: error statuses, Retry-After, held requests, refused
//! connections.

use std::io::ErrorKind;
use std::time::Duration;

use crate::support::otlp::*;
use contrail_sim::sink::{self, Behaviour, BehaviourError, Signal, SinkConfig, SinkHandle};
use prost::Message;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type Outcome = Result<u16, hyper_util::client::legacy::Error>;

fn two_spans() -> Vec<u8> {
    traces(
        "svc",
        vec![span(1, 1, 0, "invoke", 0, 10), span(1, 2, 1, "child", 1, 5)],
    )
    .encode_to_vec()
}

async fn post_spans(url: &str) -> Result<Answer, hyper_util::client::legacy::Error> {
    post(url, Some("application/x-protobuf"), None, two_spans()).await
}

/// Makes the sink hold requests, sends one, and returns it once the sink holds it.
async fn hold_a_request(sink: &SinkHandle) -> JoinHandle<Outcome> {
    let url = format!("{}/v1/traces", sink.endpoint());
    sink.set_behaviour(Behaviour::Hang).await.unwrap();
    let pending = tokio::spawn(async move { post_spans(&url).await.map(|a| a.status) });
    sink.wait_for(PATIENCE, |r| r.counters.hanging == 1)
        .await
        .unwrap();
    pending
}

/// How a held request ended: its status, or the error of a connection that was cut.
async fn outcome_of(pending: JoinHandle<Outcome>) -> Outcome {
    tokio::time::timeout(PATIENCE, pending)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn scripted_503_is_seen_by_the_client_and_nothing_is_recorded() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let url = format!("{}/v1/traces", sink.endpoint());
    sink.set_behaviour(Behaviour::Status {
        code: 503,
        retry_after: None,
    })
    .await
    .unwrap();

    let answer = post_spans(&url).await.unwrap();
    assert_eq!(answer.status, 503);
    assert!(answer.headers.get("retry-after").is_none());
    let got = sink.snapshot();
    assert!(got.traces.is_empty());
    assert_eq!(got.counters.requests, 0);
    assert_eq!(got.counters.rejected, 1);
    assert_eq!(got.attempts.len(), 1);
    assert_eq!(got.attempts[0].status, 503);
    assert_eq!(got.attempts[0].signal, Some(Signal::Traces));
    assert_eq!(got.attempts[0].items, Some(2));

    // Back to accepting: the retry lands.
    sink.set_behaviour(Behaviour::Accept).await.unwrap();
    let answer = post_spans(&url).await.unwrap();
    assert_eq!(answer.status, 200);
    let got = sink.snapshot();
    assert_eq!(got.span_count(), 2);
    let statuses: Vec<u16> = got.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [503, 200]);
    assert_eq!(got.failed_attempts().len(), 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn scripted_429_carries_retry_after_in_whole_seconds() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let url = format!("{}/v1/logs", sink.endpoint());
    for (after, expected) in [
        (Duration::from_secs(3), "3"),
        (Duration::from_millis(1500), "2"),
    ] {
        sink.set_behaviour(Behaviour::Status {
            code: 429,
            retry_after: Some(after),
        })
        .await
        .unwrap();
        let body = logs("svc", vec![log(1, 1, 1, "INFO", "x")]).encode_to_vec();
        let answer = post(&url, Some("application/x-protobuf"), None, body)
            .await
            .unwrap();
        assert_eq!(answer.status, 429);
        assert_eq!(answer.headers["retry-after"], expected);
    }
    let got = sink.snapshot();
    assert!(got.logs.is_empty());
    assert_eq!(got.counters.rejected, 2);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_status_that_is_not_an_error_is_refused() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let err = sink
        .set_behaviour(Behaviour::Status {
            code: 200,
            retry_after: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err, BehaviourError::NotAnErrorStatus(200));
    assert_eq!(sink.behaviour(), Behaviour::Accept);
    sink.shutdown().await;
}

#[tokio::test]
async fn hang_holds_a_request_until_the_behaviour_changes() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let pending = hold_a_request(&sink).await;
    // Held, so not answered and not recorded.
    let held = sink.snapshot();
    assert_eq!(held.counters.hanging, 1);
    assert!(held.traces.is_empty());
    assert!(held.attempts.is_empty());
    assert!(!pending.is_finished());

    sink.set_behaviour(Behaviour::Accept).await.unwrap();
    let status = outcome_of(pending).await.unwrap();
    assert_eq!(status, 200);
    let got = sink.snapshot();
    assert_eq!(got.span_count(), 2);
    assert_eq!(got.counters.hanging, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_held_request_is_answered_by_the_next_scripted_status() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let pending = hold_a_request(&sink).await;
    sink.set_behaviour(Behaviour::Status {
        code: 503,
        retry_after: None,
    })
    .await
    .unwrap();
    let status = outcome_of(pending).await.unwrap();
    assert_eq!(status, 503);
    assert!(sink.snapshot().traces.is_empty());
    sink.shutdown().await;
}

#[tokio::test]
async fn refuse_closes_the_port_and_accepting_again_reopens_the_same_port() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let addr = sink.local_addr();
    let url = format!("{}/v1/traces", sink.endpoint());
    assert_eq!(post_spans(&url).await.unwrap().status, 200);

    // An idle keep-alive connection opened before the change is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    sink.set_behaviour(Behaviour::Refuse).await.unwrap();
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert!(post_spans(&url).await.is_err());
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, tokio::io::AsyncReadExt::read(&mut idle, &mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    sink.set_behaviour(Behaviour::Accept).await.unwrap();
    assert_eq!(sink.local_addr(), addr);
    assert_eq!(post_spans(&url).await.unwrap().status, 200);
    let got = sink.snapshot();
    assert_eq!(got.counters.requests, 2);
    assert_eq!(got.span_count(), 4);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_held_request_is_cut_off_when_the_sink_refuses() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let pending = hold_a_request(&sink).await;
    sink.set_behaviour(Behaviour::Refuse).await.unwrap();
    let outcome = outcome_of(pending).await;
    assert!(outcome.is_err(), "{outcome:?}");
    let got = sink
        .wait_for(PATIENCE, |r| r.counters.hanging == 0)
        .await
        .unwrap();
    assert!(got.traces.is_empty());
    assert!(got.attempts.is_empty());
    sink.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_the_port_and_held_requests() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let addr = sink.local_addr();
    let pending = hold_a_request(&sink).await;
    sink.shutdown().await;
    let outcome = outcome_of(pending).await;
    assert!(outcome.is_err(), "{outcome:?}");
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn delay_answers_and_keeps_late_but_keeps_nothing_whose_client_gave_up() {
    let sink = sink::start(SinkConfig::default()).await.unwrap();
    let url = format!("{}/v1/traces", sink.endpoint());
    sink.set_behaviour(Behaviour::Delay(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(post_spans(&url).await.unwrap().status, 200);
    assert_eq!(sink.snapshot().span_count(), 2);

    // A client that closes the connection while the sink waits: nothing kept.
    sink.set_behaviour(Behaviour::Delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    let pending = tokio::spawn({
        let url = url.clone();
        async move { post_spans(&url).await.map(|a| a.status) }
    });
    // Wait until the request is in (its body read), then give up on it.
    sink.wait_for(PATIENCE, |r| r.counters.delayed == 1)
        .await
        .unwrap();
    pending.abort();
    let _ = pending.await;
    sink.wait_for(PATIENCE, |r| r.counters.delayed == 0)
        .await
        .unwrap();
    sink.set_behaviour(Behaviour::Accept).await.unwrap();
    assert_eq!(post_spans(&url).await.unwrap().status, 200);
    let got = sink.snapshot();
    assert_eq!(got.span_count(), 4, "the abandoned request was not kept");
    sink.shutdown().await;
}
