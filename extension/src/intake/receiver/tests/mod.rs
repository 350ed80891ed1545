//! What the receiver tests share: a receiver on 127.0.0.1:0 and a plain HTTP/1.1 client.

#![allow(dead_code)]

mod config;
mod handler;
mod resource;
mod sdk;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::diag::Stats;
use crate::intake::receiver::{ReceiverConfig, serve_with_shutdown};
use crate::pipeline::{Intake, intake_queue};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    pub intake: mpsc::Receiver<Intake>,
    pub stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stop the receiver and wait until it has closed every connection.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }

    /// Take the intake queue's receiving end, e.g. to drain it from another task.
    pub fn take_intake(&mut self) -> mpsc::Receiver<Intake> {
        std::mem::replace(&mut self.intake, mpsc::channel(1).1)
    }
}

/// A receiver on an ephemeral loopback port with an intake queue of `capacity` units.
pub async fn start(capacity: usize, max_body_bytes: usize) -> Running {
    let stats = Arc::new(Stats::default());
    let (sender, intake) = intake_queue(capacity, stats.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ReceiverConfig {
        endpoint: Some(addr),
        max_body_bytes,
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(listener, sender, config, async move {
        let _ = stop_rx.await;
    }));
    Running {
        addr,
        intake,
        stats,
        stop: Some(stop_tx),
        task,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request on a new connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .send_request(request.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// POST `body` with `content_type`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Answer {
    send(addr, "POST", path, &[("content-type", content_type)], body).await
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The repository's root (the workspace).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
