//! The gRPC wire format without sockets: message framing, statuses in headers, the body.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use http::header::HeaderMap;
use http_body_util::BodyExt;
use prost::Message;

use super::*;

fn framed(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[test]
fn a_message_is_assembled_whatever_the_chunk_boundaries() {
    let message = b"an export request".to_vec();
    let wire = framed(false, &message);
    for split in [1, 2, 4, 5, 6, wire.len() - 1] {
        let mut assembler = Assembler::new(1024);
        let first = assembler.push(&wire[..split]).unwrap();
        let second = assembler.push(&wire[split..]).unwrap();
        // The prefix is reported once, by the push that completed it.
        let prefix = Prefix {
            compressed: false,
            len: message.len(),
        };
        assert_eq!(
            [first, second],
            if split < 5 {
                [None, Some(prefix)]
            } else {
                [Some(prefix), None]
            },
            "split at {split}"
        );
        assert_eq!(
            assembler.finish().unwrap(),
            (false, Bytes::from(message.clone()))
        );
    }
}

#[test]
fn the_compressed_flag_and_an_empty_message_are_read() {
    let mut assembler = Assembler::new(16);
    assembler.push(&framed(true, b"gz")).unwrap();
    assert_eq!(
        assembler.finish().unwrap(),
        (true, Bytes::from_static(b"gz"))
    );

    let mut empty = Assembler::new(16);
    assert_eq!(
        empty.push(&framed(false, b"")).unwrap(),
        Some(Prefix {
            compressed: false,
            len: 0
        })
    );
    assert_eq!(empty.finish().unwrap(), (false, Bytes::new()));
}

#[test]
fn anything_but_exactly_one_whole_message_is_named() {
    assert_eq!(Assembler::new(16).finish(), Err(Framing::NoMessage));

    let mut two = Assembler::new(16);
    let mut wire = framed(false, b"one");
    wire.extend_from_slice(&framed(false, b"two"));
    assert_eq!(two.push(&wire), Err(Framing::SecondMessage));

    let mut short_prefix = Assembler::new(16);
    short_prefix.push(&[0, 0, 0]).unwrap();
    assert_eq!(
        short_prefix.finish(),
        Err(Framing::Truncated { have: 3, want: 5 })
    );

    let mut short_message = Assembler::new(16);
    short_message
        .push(&framed(false, b"twelve bytes")[..9])
        .unwrap();
    assert_eq!(
        short_message.finish(),
        Err(Framing::Truncated { have: 4, want: 12 })
    );

    assert_eq!(
        Assembler::new(16).push(&[2, 0, 0, 0, 1, 0]),
        Err(Framing::BadFlag(2))
    );
}

#[test]
fn a_declared_length_over_the_cap_is_refused_before_any_of_it_is_held() {
    let mut assembler = Assembler::new(1000);
    assert_eq!(
        assembler.push(&[0, 0, 0, 0x03, 0xE9]),
        Err(Framing::TooLarge { len: 1001 })
    );
    let mut at_cap = Assembler::new(1000);
    assert!(at_cap.push(&[0, 0, 0, 0x03, 0xE8]).is_ok());
}

#[test]
fn grpc_message_is_percent_encoded_outside_printable_ascii_and_for_percent() {
    assert_eq!(percent_encode("plain text: ok!"), "plain text: ok!");
    assert_eq!(percent_encode("100%"), "100%25");
    assert_eq!(percent_encode("line\nbreak"), "line%0Abreak");
    assert_eq!(percent_encode("größe"), "gr%C3%B6%C3%9Fe");
}

#[test]
fn a_status_is_written_as_grpc_status_and_message() {
    let mut headers = HeaderMap::new();
    Status::new(Code::InvalidArgument, "bad 100%").write_to(&mut headers);
    assert_eq!(headers[GRPC_STATUS], "3");
    assert_eq!(headers[GRPC_MESSAGE], "bad 100%25");
    assert!(headers.get(RETRY_INFO).is_none());
    assert!(headers.get(STATUS_DETAILS).is_none());

    let mut ok = HeaderMap::new();
    Status::new(Code::Ok, "").write_to(&mut ok);
    assert_eq!(ok[GRPC_STATUS], "0");
    assert!(ok.get(GRPC_MESSAGE).is_none());
}

#[test]
fn a_retry_delay_travels_as_retry_info_in_both_places_clients_read_it() {
    let mut headers = HeaderMap::new();
    Status {
        code: Code::ResourceExhausted,
        message: "busy".into(),
        retry_after: Some(Duration::from_millis(1500)),
    }
    .write_to(&mut headers);
    assert_eq!(headers[GRPC_STATUS], "8");
    let decode = |name: &str| {
        STANDARD_NO_PAD
            .decode(headers[name].to_str().unwrap())
            .unwrap()
    };
    let want = ProtoDuration {
        seconds: 1,
        nanos: 500_000_000,
    };
    let retry = RetryInfo::decode(decode(RETRY_INFO).as_slice()).unwrap();
    assert_eq!(retry.retry_delay, Some(want.clone()));
    let status = RpcStatus::decode(decode(STATUS_DETAILS).as_slice()).unwrap();
    assert_eq!(status.code, 8);
    assert_eq!(status.message, "busy");
    assert_eq!(status.details.len(), 1);
    assert_eq!(
        status.details[0].type_url,
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    let inner = RetryInfo::decode(status.details[0].value.as_slice()).unwrap();
    assert_eq!(inner.retry_delay, Some(want));
}

#[test]
fn a_response_message_gets_an_uncompressed_length_prefix() {
    assert_eq!(frame(b"abc").as_ref(), &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
    assert_eq!(frame(b"").as_ref(), &[0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn the_reply_body_yields_its_data_then_its_trailers_and_empty_ends_at_once() {
    assert!(Reply::empty().is_end_stream());
    assert!(Reply::empty().size_hint().exact().is_none());

    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, "0".parse().unwrap());
    let mut reply = Reply::new(Bytes::from_static(b"data"), Some(trailers.clone()));
    assert!(!reply.is_end_stream());
    assert!(
        reply.size_hint().exact().is_none(),
        "no content-length on gRPC"
    );
    let data = reply.frame().await.unwrap().unwrap();
    assert_eq!(data.into_data().unwrap(), Bytes::from_static(b"data"));
    let last = reply.frame().await.unwrap().unwrap();
    assert_eq!(last.into_trailers().unwrap(), trailers);
    assert!(reply.frame().await.is_none());
    assert!(reply.is_end_stream());
}
