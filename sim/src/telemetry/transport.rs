//! Transports: an HTTP POST of a JSON array, or newline-delimited JSON over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::AsyncWriteExt;

const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn post(
    client: Client<HttpConnector, Full<Bytes>>,
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

pub(super) async fn send_tcp(
    conn: &mut Option<tokio::net::TcpStream>,
    addr: SocketAddr,
    body: &[u8],
) -> bool {
    if conn.is_none() {
        match tokio::net::TcpStream::connect(addr).await {
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
