//! The Telemetry API's two destination protocols: HTTP, a POST of a JSON array per batch
//! (answered, so a failure is retried), and TCP, newline-delimited JSON on one connection (no
//! acknowledgement).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Destination;

/// The HTTP client every subscriber of an environment shares.
pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that keeps connections to subscribers open between batches.
pub(super) fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build_http()
}

/// A batch of rendered records as `destination` receives it: a JSON array for HTTP, one
/// record per line for TCP.
pub(super) fn frame(destination: &Destination, records: &[Vec<u8>]) -> Vec<u8> {
    let size = records.iter().map(|r| r.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    match destination {
        Destination::Http { .. } => {
            body.push(b'[');
            for (i, record) in records.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(record);
            }
            body.push(b']');
        }
        Destination::Tcp { .. } => {
            for record in records {
                body.extend_from_slice(record);
                body.push(b'\n');
            }
        }
    }
    body
}

/// POSTs `body` to `path` on `addr` with `Host: host`; true if answered with a 2xx.
pub(super) async fn post(
    client: HttpClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
    body: Vec<u8>,
) -> bool {
    let uri = format!("http://{addr}{path}");
    let req = match http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
    {
        Ok(r) => r,
        Err(_) => return false,
    };
    match tokio::time::timeout(POST_TIMEOUT, client.request(req)).await {
        Ok(Ok(resp)) => {
            let ok = resp.status().is_success();
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            ok
        }
        _ => false,
    }
}

/// Writes `body` on `conn`, connecting to `addr` first if there is no connection; a failed
/// write drops the connection so that the next attempt connects again.
pub(super) async fn send_tcp(conn: &mut Option<TcpStream>, addr: SocketAddr, body: &[u8]) -> bool {
    if conn.is_none() {
        match TcpStream::connect(addr).await {
            Ok(s) => *conn = Some(s),
            Err(_) => return false,
        }
    }
    let Some(stream) = conn.as_mut() else {
        return false;
    };
    match stream.write_all(body).await {
        Ok(()) => true,
        Err(_) => {
            *conn = None;
            false
        }
    }
}
