//! A fake Lambda Extensions API (register, next, telemetry subscription, error reports) on
//! `127.0.0.1:0`, and a way to run the real `contrail` binary against it.
// A test fake: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use contrail_testkit::http::send;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const EXTENSION_ID: &str = "6f1ee4c9-0c8a-4a16-9a8a-5e1b1f5c1a01";

/// Hang guard for waits in tests: far longer than anything should take.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct Script {
    pub subscribe_status: u16,
    pub subscribe_body: String,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            subscribe_status: 200,
            subscribe_body: "OK".into(),
        }
    }
}

impl Script {
    pub fn not_supported() -> Self {
        Script {
            subscribe_status: 202,
            subscribe_body: r#"{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}"#.into(),
        }
    }
    pub fn subscribe_fails() -> Self {
        Script {
            subscribe_status: 500,
            subscribe_body: r#"{"errorMessage":"internal","errorType":"ServiceException"}"#.into(),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    events: VecDeque<serde_json::Value>,
}

pub struct FakeLambda {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    script: Script,
}

pub const REGISTER: &str = "/2020-01-01/extension/register";
pub const NEXT: &str = "/2020-01-01/extension/event/next";
pub const SUBSCRIBE: &str = "/2022-07-01/telemetry";
pub const INIT_ERROR: &str = "/2020-01-01/extension/init/error";

impl FakeLambda {
    pub async fn start(script: Script) -> FakeLambda {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeLambda {
            addr,
            state: Arc::default(),
            changed: Arc::new(Notify::new()),
            script,
        };
        let state = fake.state.clone();
        let changed = fake.changed.clone();
        let script = fake.script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let changed = changed.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(req, state.clone(), changed.clone(), script.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        fake
    }

    /// Queue an event for a `next` call (pending or future).
    pub fn push_event(&self, event: serde_json::Value) {
        self.state.lock().unwrap().events.push_back(event);
        self.changed.notify_waiters();
    }

    pub fn push_invoke(&self, request_id: &str, deadline_in: Duration) {
        self.push_event(serde_json::json!({
            "eventType": "INVOKE",
            "deadlineMs": epoch_ms_in(deadline_in),
            "requestId": request_id,
            "invokedFunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:fn",
            "tracing": {"type": "X-Amzn-Trace-Id",
                        "value": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
        }));
    }

    /// Queue a SHUTDOWN; returns its deadline (epoch ms).
    pub fn push_shutdown(&self, deadline_in: Duration) -> u64 {
        let deadline = epoch_ms_in(deadline_in);
        self.push_event(serde_json::json!({
            "eventType": "SHUTDOWN",
            "shutdownReason": "spindown",
            "deadlineMs": deadline,
        }));
        deadline
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Wait until `n` requests to `path` have arrived; panics after [`PATIENCE`].
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Recorded> {
        let give_up = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.changed.notified();
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(give_up, notified).await.is_err() {
                panic!(
                    "waited for {n} request(s) to {path}; got {}; all requests: {:?}",
                    got.len(),
                    self.requests()
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

pub fn epoch_ms_in(d: Duration) -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + d).as_millis() as u64
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("Content-Type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    script: Script,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    state.lock().unwrap().requests.push(Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body,
        at: Instant::now(),
    });
    changed.notify_waiters();

    let response = match (parts.method.as_str(), path.as_str()) {
        ("POST", REGISTER) => Response::builder()
            .status(200)
            .header("Lambda-Extension-Identifier", EXTENSION_ID)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"functionName":"fn","functionVersion":"$LATEST","handler":"index.handler","accountId":"123456789012"}"#,
            )))
            .unwrap(),
        ("PUT", SUBSCRIBE) => reply(script.subscribe_status, script.subscribe_body.clone()),
        ("GET", NEXT) => loop {
            let notified = changed.notified();
            let event = state.lock().unwrap().events.pop_front();
            if let Some(event) = event {
                break reply(200, event.to_string());
            }
            notified.await;
        },
        ("POST", p) if p.ends_with("/error") => reply(202, r#"{"status":"OK"}"#),
        _ => reply(404, r#"{"errorType":"NotFound"}"#),
    };
    Ok(response)
}

/// Spawn, retrying while the executable is still "text file busy" (only after a copy).
fn spawn_retrying_busy(cmd: &mut Command) -> Child {
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot start the extension: {e}"),
        }
    }
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// The real binary, copied into a fresh folder under the given file name, running.
pub struct Extension {
    pub child: Child,
    dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Extension {
    /// Start the binary named `name`, with only the given environment (plus the API address).
    pub fn spawn(fake: &FakeLambda, name: &str, env: &[(&str, &str)]) -> Extension {
        // Under cargo's target folder: the same file system as the binary, so it can be linked.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "contrail-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join(name);
        // A hard link, not a copy: a copy is open for writing for a moment, and a child forked
        // by a parallel test at that moment would make exec fail with "text file busy".
        if std::fs::hard_link(env!("CARGO_BIN_EXE_contrail"), &exe).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_contrail"), &exe).unwrap();
        }
        let mut cmd = Command::new(&exe);
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", fake.addr.to_string())
            .env("CONTRAIL_RECEIVER_ENDPOINT", "127.0.0.1:0")
            .env("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = spawn_retrying_busy(&mut cmd);
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Extension {
            child,
            dir,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for the process to exit. Like Lambda, kill it at `kill_at` (epoch ms) if it is
    /// still running then; a killed process has no exit code.
    /// Once it returns, [`Extension::stderr`] holds everything the process wrote.
    pub async fn wait_exit(&mut self, kill_at_epoch_ms: u64) -> ExitStatus {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if epoch_ms_in(Duration::ZERO) >= kill_at_epoch_ms {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Extension {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Once the extension has subscribed and called `next` for the first time: the port of its
/// Telemetry API listener.
pub async fn listening(fake: &FakeLambda) -> u16 {
    let subscribe = fake.wait_for(SUBSCRIBE, 1).await.remove(0);
    let port = destination_port(&subscribe.json());
    fake.wait_for(NEXT, 1).await;
    port
}

/// The port of a subscription's `http://sandbox.localdomain:PORT/` destination.
pub fn destination_port(subscription: &serde_json::Value) -> u16 {
    let uri = subscription["destination"]["URI"].as_str().unwrap();
    uri.trim_start_matches("http://sandbox.localdomain:")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// POST a Telemetry API batch to the extension's listener on this host; returns the status.
pub async fn post_json(port: u16, body: &'static str) -> u16 {
    post(port, "/", body).await
}

/// POST a JSON body to `127.0.0.1:port` at `path`; returns the status.
pub async fn post(port: u16, path: &str, body: &'static str) -> u16 {
    let host = format!("sandbox.localdomain:{port}");
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    send(addr, "POST", path, &headers, body)
        .await
        .status
        .as_u16()
}
