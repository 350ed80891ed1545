//! A gRPC client for tests: one unary call over HTTP/2 with prior knowledge, its whole answer
//! back, the status read from the trailers or from a Trailers-Only answer's headers.

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// The path of OTLP's trace `Export`.
pub const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The path of OTLP's metrics `Export`.
pub const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// The path of OTLP's logs `Export`.
pub const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// An answer, read whole.
#[derive(Debug)]
pub struct GrpcAnswer {
    /// The HTTP status (200 for every gRPC answer).
    pub http: StatusCode,
    pub headers: HeaderMap,
    /// The DATA the answer carried, length prefixes included.
    pub data: Bytes,
    /// The trailers; `None` for a Trailers-Only answer.
    pub trailers: Option<HeaderMap>,
}

impl GrpcAnswer {
    fn field(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
            .map(|v| v.to_str().unwrap())
    }

    /// `grpc-status`, from the trailers or a Trailers-Only answer.
    pub fn status(&self) -> Option<u16> {
        self.field("grpc-status").map(|s| s.parse().unwrap())
    }

    /// `grpc-message`, still percent-encoded.
    pub fn message(&self) -> &str {
        self.field("grpc-message").unwrap_or("")
    }

    /// A binary (`-bin`) metadata value, decoded.
    pub fn binary(&self, name: &str) -> Option<Vec<u8>> {
        self.field(name).map(|text| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text.trim_end_matches('='))
                .unwrap()
        })
    }

    /// The one response message, without its prefix.
    pub fn response(&self) -> Bytes {
        let (compressed, message) = unframe(&self.data);
        assert!(!compressed, "the receiver does not compress its answers");
        message
    }
}

/// `message` behind a gRPC length prefix, flagged compressed or not.
pub fn framed(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The one length-prefixed message of `data`.
pub fn unframe(data: &[u8]) -> (bool, Bytes) {
    assert!(data.len() >= 5, "no message in {data:?}");
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    assert_eq!(data.len(), 5 + len, "exactly one message");
    (data[0] == 1, Bytes::copy_from_slice(&data[5..]))
}

/// A unary OTLP call: `POST path` with `content-type: application/grpc`, `te: trailers` and
/// `headers` (each replaces one of the same name), and `body` as the request's DATA.
pub async fn call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> GrpcAnswer {
    call_with_body(addr, "POST", path, headers, Full::new(body.into())).await
}

/// A call whose request body is any `Body`, for streams that stall or never end.
pub async fn call_with_body<B>(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: B,
) -> GrpcAnswer
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::connect(addr)
        .await
        .call(method, path, headers, body)
        .await
}

/// One HTTP/2 connection for many calls; clones share it, for calls at the same time.
#[derive(Clone)]
pub struct Client<B> {
    addr: SocketAddr,
    send: hyper::client::conn::http2::SendRequest<B>,
}

impl<B> Client<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Connect to `addr` with HTTP/2 prior knowledge.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        Client { addr, send }
    }

    /// One call with `content-type: application/grpc`, `te: trailers` and `headers` (each
    /// replaces one of the same name).
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: B,
    ) -> GrpcAnswer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let response = self.send.send_request(request).await.unwrap();
        let http = response.status();
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        GrpcAnswer {
            http,
            headers,
            data: collected.to_bytes(),
            trailers,
        }
    }
}

/// A request body the test feeds chunk by chunk; it ends when the sender is dropped.
pub struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

/// A body for [`call_with_body`] and the sender that feeds it.
pub fn fed() -> (tokio::sync::mpsc::Sender<Bytes>, Fed) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    (tx, Fed(rx))
}

impl Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}
