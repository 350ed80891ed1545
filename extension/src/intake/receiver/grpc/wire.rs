//! The gRPC wire format of one unary call, as far as the receiver needs it: the request's one
//! length-prefixed message, the status codes it answers with, how a status travels in
//! headers or trailers (`grpc-status`, a percent-encoded `grpc-message`, `RetryInfo`), and the
//! response body. Pure: no I/O (`grpc/PROTOCOL-HTTP2.md`, `doc/compression.md`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::header::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use prost::Message;

use crate::pipeline::otlp::{ProtoAny, RpcStatus};

/// The content type of gRPC with protobuf messages (`application/grpc+proto` is the same).
pub(super) const CONTENT_TYPE: &str = "application/grpc";
/// The message encodings the receiver reads, as `grpc-accept-encoding` lists them.
pub(super) const ACCEPT_ENCODING: &str = "identity,gzip";

pub(super) const GRPC_STATUS: &str = "grpc-status";
pub(super) const GRPC_MESSAGE: &str = "grpc-message";
pub(super) const GRPC_ENCODING: &str = "grpc-encoding";
pub(super) const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";
/// A serialized `google.rpc.Status` with its details: where gRPC libraries look for them.
pub(super) const STATUS_DETAILS: &str = "grpc-status-details-bin";
/// A serialized `google.rpc.RetryInfo` alone: where the Python OTLP exporter looks for it.
pub(super) const RETRY_INFO: &str = "google.rpc.retryinfo-bin";
const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The length prefix of a message: a compressed flag and a 4-byte big-endian length.
const PREFIX_LEN: usize = 5;

/// The status codes the receiver answers with (`grpc/include/grpc/impl/codegen/status.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Code {
    Ok = 0,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
}

impl Code {
    pub(super) fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Unimplemented => "UNIMPLEMENTED",
        }
    }
}

/// A call that did not succeed: its code, the reason for a person, and when a retry may
/// succeed (sent as `RetryInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Status {
    pub(super) code: Code,
    pub(super) message: String,
    pub(super) retry_after: Option<Duration>,
}

impl Status {
    pub(super) fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The status as header fields: `grpc-status`, `grpc-message`, and with a retry delay
    /// `grpc-status-details-bin` and `google.rpc.retryinfo-bin`.
    pub(super) fn write_to(&self, headers: &mut HeaderMap) {
        headers.insert(GRPC_STATUS, HeaderValue::from(self.code as u16));
        if !self.message.is_empty()
            && let Ok(value) = HeaderValue::try_from(percent_encode(&self.message))
        {
            headers.insert(GRPC_MESSAGE, value);
        }
        if let Some(delay) = self.retry_after {
            let retry = RetryInfo {
                retry_delay: Some(ProtoDuration {
                    seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
                }),
            }
            .encode_to_vec();
            let details = RpcStatus {
                code: self.code as i32,
                message: self.message.clone(),
                details: vec![ProtoAny {
                    type_url: RETRY_INFO_TYPE.to_owned(),
                    value: retry.clone(),
                }],
            }
            .encode_to_vec();
            for (name, bytes) in [(STATUS_DETAILS, details), (RETRY_INFO, retry)] {
                if let Ok(value) = HeaderValue::try_from(STANDARD_NO_PAD.encode(bytes)) {
                    headers.insert(name, value);
                }
            }
        }
    }
}

/// `grpc-message` encoding: UTF-8, then every byte outside `0x20..=0x7E`, and `%`, as `%XX`.
pub(super) fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7E).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub(super) retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub(super) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(super) nanos: i32,
}

/// Why the request's bytes are not exactly one acceptable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Framing {
    /// The stream ended without any message.
    NoMessage,
    /// More bytes after the first message: a unary call carries exactly one.
    SecondMessage,
    /// The stream ended inside the message.
    Truncated { have: usize, want: usize },
    /// The compressed flag is neither 0 nor 1.
    BadFlag(u8),
    /// The declared length is over the cap.
    TooLarge { len: usize },
}

/// A message's length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefix {
    pub(super) compressed: bool,
    pub(super) len: usize,
}

/// Collects the one message of a request from its DATA chunks, whatever their boundaries.
#[derive(Debug)]
pub(super) struct Assembler {
    max: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_have: usize,
    declared: Option<Prefix>,
    message: BytesMut,
}

impl Assembler {
    /// An assembler refusing messages declared longer than `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Assembler {
            max,
            prefix: [0; PREFIX_LEN],
            prefix_have: 0,
            declared: None,
            message: BytesMut::new(),
        }
    }

    /// Take one chunk. Returns the prefix when this chunk completed it (once per message),
    /// so the caller can account for the declared length before more arrives.
    pub(super) fn push(&mut self, mut chunk: &[u8]) -> Result<Option<Prefix>, Framing> {
        let mut completed = None;
        if self.declared.is_none() {
            let take = (PREFIX_LEN - self.prefix_have).min(chunk.len());
            self.prefix[self.prefix_have..self.prefix_have + take].copy_from_slice(&chunk[..take]);
            self.prefix_have += take;
            chunk = &chunk[take..];
            if self.prefix_have < PREFIX_LEN {
                return Ok(None);
            }
            let prefix = parse_prefix(&self.prefix, self.max)?;
            // Grow with what arrives rather than trusting the declared length up front.
            self.message.reserve(prefix.len.min(64 * 1024));
            self.declared = Some(prefix);
            completed = Some(prefix);
        }
        let want = self.declared.map_or(0, |p| p.len);
        if self.message.len() + chunk.len() > want {
            return Err(Framing::SecondMessage);
        }
        self.message.extend_from_slice(chunk);
        Ok(completed)
    }

    /// The stream ended: the message and whether it is compressed.
    pub(super) fn finish(self) -> Result<(bool, Bytes), Framing> {
        match self.declared {
            None if self.prefix_have == 0 => Err(Framing::NoMessage),
            None => Err(Framing::Truncated {
                have: self.prefix_have,
                want: PREFIX_LEN,
            }),
            Some(p) if self.message.len() < p.len => Err(Framing::Truncated {
                have: self.message.len(),
                want: p.len,
            }),
            Some(p) => Ok((p.compressed, self.message.freeze())),
        }
    }
}

fn parse_prefix(prefix: &[u8; PREFIX_LEN], max: usize) -> Result<Prefix, Framing> {
    let compressed = match prefix[0] {
        0 => false,
        1 => true,
        other => return Err(Framing::BadFlag(other)),
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > max {
        return Err(Framing::TooLarge { len });
    }
    Ok(Prefix { compressed, len })
}

/// `message` with an uncompressed length prefix, as a response's DATA.
pub(super) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out.freeze()
}

/// A response body: at most one DATA chunk, then at most one trailers block. Empty, it ends
/// the stream with the response headers (a Trailers-Only answer).
#[derive(Debug, Default)]
pub(super) struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Reply {
    /// Nothing after the headers.
    pub(super) fn empty() -> Self {
        Reply::default()
    }

    /// `data`, then `trailers` if any.
    pub(super) fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Reply {
            data: Some(data),
            trailers,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    /// Unknown on purpose: an exact hint would make hyper add a `content-length`, which a
    /// gRPC response does not carry.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests;
