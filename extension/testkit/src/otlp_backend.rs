//! A scripted OTLP/HTTP backend on 127.0.0.1:0 for export tests.
//!
//! Each request takes the next scripted [`Reply`] (then [`Reply::Ok`] forever). Every request is
//! recorded with its headers and decoded body, so tests can check what arrived, and how often.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the backend answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    /// Status, extra headers, body.
    Status(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Read the request, never answer (until the test ends).
    Hang,
}

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    /// The body after gzip decoding.
    pub body: Vec<u8>,
    /// What the backend answered (0: never).
    pub answered: u16,
    /// When the request arrived.
    pub at: std::time::Instant,
    pub traces: Option<ExportTraceServiceRequest>,
    pub metrics: Option<ExportMetricsServiceRequest>,
    pub logs: Option<ExportLogsServiceRequest>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode(path: &str, headers: &http::HeaderMap, body: &[u8]) -> Received {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut r = Received {
        path: path.to_owned(),
        headers: headers.clone(),
        body: body.to_vec(),
        answered: 0,
        at: std::time::Instant::now(),
        traces: None,
        metrics: None,
        logs: None,
    };
    if path.ends_with("/v1/traces") {
        r.traces = if json {
            serde_json::from_slice(body).ok()
        } else {
            ExportTraceServiceRequest::decode(body).ok()
        };
    } else if path.ends_with("/v1/metrics") {
        r.metrics = if json {
            serde_json::from_slice(body).ok()
        } else {
            ExportMetricsServiceRequest::decode(body).ok()
        };
    } else if path.ends_with("/v1/logs") {
        r.logs = if json {
            serde_json::from_slice(body).ok()
        } else {
            ExportLogsServiceRequest::decode(body).ok()
        };
    }
    r
}

impl Backend {
    pub async fn start(script: Vec<Reply>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::serve(listener, script)
    }

    /// Serve on a given address (to bring a "down" backend up on the port it had).
    pub async fn start_at(addr: SocketAddr, script: Vec<Reply>) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Backend::serve(listener, script)
    }

    fn serve(listener: TcpListener, script: Vec<Reply>) -> Backend {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            received: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Span ids of every trace request the backend answered with 2xx.
    pub fn accepted_span_ids(&self) -> Vec<Vec<u8>> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter_map(|r| r.traces)
            .flat_map(|t| t.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .map(|s| s.span_id)
            .collect()
    }

    /// Every metric in requests answered with 2xx.
    pub fn accepted_metrics(&self) -> Vec<Metric> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter_map(|r| r.metrics)
            .flat_map(|m| m.resource_metrics)
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
            .collect()
    }

    /// Names of every metric in requests answered with 2xx.
    pub fn accepted_metric_names(&self) -> Vec<String> {
        self.accepted_metrics()
            .into_iter()
            .map(|m| m.name)
            .collect()
    }

    /// Every log record in requests answered with 2xx.
    pub fn accepted_log_records(&self) -> Vec<LogRecord> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter_map(|r| r.logs)
            .flat_map(|l| l.resource_logs)
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records)
            .collect()
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let raw = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    };
    let mut received = decode(&path, &headers, &body);
    let reply = state
        .lock()
        .unwrap()
        .script
        .pop_front()
        .unwrap_or(Reply::Ok);
    let (status, extra, reply_body) = match reply {
        Reply::Ok => (200, Vec::new(), Vec::new()),
        Reply::Status(s, h, b) => (s, h, b),
        Reply::Hang => {
            state.lock().unwrap().received.push(received);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Response::new(Full::new(Bytes::new()));
        }
    };
    received.answered = status;
    state.lock().unwrap().received.push(received);
    let mut response = Response::new(Full::new(Bytes::from(reply_body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in extra {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}
