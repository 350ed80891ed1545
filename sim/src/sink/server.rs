//! The HTTP side of the sink: listener, scripted behaviour, request handling.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::decode::{Body, DecodeError, Encoding, Format, decode_request};
use super::received::{Attempt, Received};
use super::render::render;
use super::{Behaviour, MAX_BODY_BYTES, Signal, SinkConfig};

/// Pause before trying again to listen after a failed bind.
const RELISTEN_PAUSE: Duration = Duration::from_millis(50);
/// How long [`SinkHandle::set_behaviour`] waits for the listener to follow a change.
const BEHAVIOUR_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the sink and returns once it is listening.
///
/// Fails if the address cannot be bound or the JSON lines file cannot be created.
pub async fn start(config: SinkConfig) -> std::io::Result<SinkHandle> {
    let listener = TcpListener::bind(config.addr).await?;
    let local_addr = listener.local_addr()?;
    let jsonl = match &config.jsonl_path {
        Some(path) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot create JSON lines file {}: {e}", path.display()),
                    )
                })?,
        )),
        None => None,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(Received::default()),
        version: watch::Sender::new(0),
        behaviour: watch::Sender::new(Behaviour::Accept),
        shutdown: watch::Sender::new(false),
        listening: watch::Sender::new(true),
        jsonl,
        max_stored_bytes: config.max_stored_bytes,
    });
    let accept_task = tokio::spawn(accept_loop(Arc::clone(&shared), listener, local_addr));
    Ok(SinkHandle {
        shared,
        local_addr,
        accept_task: Some(accept_task),
    })
}

/// A running sink. Dropping it stops the sink (without waiting); prefer [`SinkHandle::shutdown`].
#[derive(Debug)]
pub struct SinkHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_task: Option<JoinHandle<()>>,
}

/// [`SinkHandle::wait_for`] gave up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("waited {timeout:?} for the OTLP sink and the condition was not met; it holds {summary}")]
pub struct WaitTimeout {
    /// How long it waited.
    pub timeout: Duration,
    /// What the sink held then ([`Received::summary`]).
    pub summary: String,
}

/// [`SinkHandle::set_behaviour`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BehaviourError {
    /// [`Behaviour::Status`] with a status outside 300-599.
    #[error("scripted status {0} is not an error status: use a code from 300 to 599")]
    NotAnErrorStatus(u16),
    /// The listener did not follow in time (it could not listen again on its port).
    #[error(
        "the sink did not apply the behaviour within {timeout:?} (last listen error: {last_listen_error:?})"
    )]
    NotApplied {
        /// How long it waited.
        timeout: Duration,
        /// Why listening failed, the last time.
        last_listen_error: Option<String>,
    },
}

impl SinkHandle {
    /// Base URL of the sink, e.g. `http://127.0.0.1:4318` (append `/v1/traces` etc.).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The address the sink listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A copy of everything received so far.
    pub fn snapshot(&self) -> Received {
        self.shared.lock().clone()
    }

    /// What was received, rendered for a person (see [`super::render()`]).
    pub fn render_text(&self) -> String {
        render(&self.shared.lock())
    }

    /// Waits until `pred` holds for what was received, at most `timeout`, and returns a copy of
    /// what was received at that moment. `pred` runs with the sink's state locked: it must not
    /// call back into the sink.
    pub async fn wait_for<F>(&self, timeout: Duration, mut pred: F) -> Result<Received, WaitTimeout>
    where
        F: FnMut(&Received) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.version.subscribe();
        loop {
            changes.borrow_and_update();
            {
                let state = self.shared.lock();
                if pred(&state) {
                    return Ok(state.clone());
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let state = self.shared.lock();
                    if pred(&state) {
                        return Ok(state.clone());
                    }
                    return Err(WaitTimeout {
                        timeout,
                        summary: state.summary(),
                    });
                }
            }
        }
    }

    /// Waits until at least `n` spans have arrived.
    pub async fn wait_for_spans(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Received, WaitTimeout> {
        self.wait_for(timeout, |r| r.span_count() >= n).await
    }

    /// Changes how the sink answers from now on. Requests held by [`Behaviour::Hang`] are
    /// answered according to the new behaviour. Returns once the change is in effect: after a
    /// change to [`Behaviour::Refuse`] connecting is refused, after a change away from it the
    /// sink listens again on the same port.
    pub async fn set_behaviour(&self, behaviour: Behaviour) -> Result<(), BehaviourError> {
        if let Behaviour::Status { code, .. } = behaviour {
            if !(300..=599).contains(&code) {
                return Err(BehaviourError::NotAnErrorStatus(code));
            }
        }
        let listen = behaviour != Behaviour::Refuse;
        self.shared.behaviour.send_replace(behaviour);
        let mut listening = self.shared.listening.subscribe();
        let applied = tokio::time::timeout(
            BEHAVIOUR_TIMEOUT,
            listening.wait_for(|state| *state == listen),
        )
        .await;
        match applied {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(BehaviourError::NotApplied {
                timeout: BEHAVIOUR_TIMEOUT,
                last_listen_error: self.shared.lock().counters.last_listen_error.clone(),
            }),
        }
    }

    /// How the sink answers now.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.behaviour.borrow().clone()
    }

    /// Stops listening, closes every connection (held requests are never answered) and waits
    /// for the listener task to end.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.accept_task.take() {
            // The task only ends by returning; a panic in it has nothing left to clean up.
            let _ = task.await;
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<Received>,
    /// Bumped after every change of `state`.
    version: watch::Sender<u64>,
    behaviour: watch::Sender<Behaviour>,
    shutdown: watch::Sender<bool>,
    /// Whether the listener is open (follows `behaviour`, see [`accept_loop`]).
    listening: watch::Sender<bool>,
    jsonl: Option<Mutex<File>>,
    max_stored_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update<R>(&self, f: impl FnOnce(&mut Received) -> R) -> R {
        let out = f(&mut self.lock());
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Appends one line to the JSON lines file, if there is one; failures are counted.
    fn write_jsonl(&self, body: &Body, received_unix_nano: u64) {
        let Some(file) = &self.jsonl else {
            return;
        };
        let result = body
            .to_json()
            .map_err(std::io::Error::from)
            .and_then(|request| {
                let line = serde_json::json!({
                    "signal": body.signal().as_str(),
                    "received_unix_nano": received_unix_nano,
                    "request": request,
                });
                let mut text = serde_json::to_string(&line)?;
                text.push('\n');
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                file.write_all(text.as_bytes())?;
                file.flush()
            });
        if let Err(e) = result {
            self.update(|r| {
                r.counters.jsonl_errors += 1;
                r.counters.last_jsonl_error = Some(e.to_string());
            });
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    let mut behaviour_rx = shared.behaviour.subscribe();
    let mut shutdown_rx = shared.shutdown.subscribe();
    loop {
        if *shutdown_rx.borrow_and_update() {
            return;
        }
        let refuse = matches!(*behaviour_rx.borrow_and_update(), Behaviour::Refuse);
        if refuse {
            listener = None;
            shared.listening.send_replace(false);
        } else if listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    shared.listening.send_replace(true);
                }
                Err(e) => {
                    shared.update(|r| {
                        r.counters.listen_errors += 1;
                        r.counters.last_listen_error =
                            Some(format!("cannot listen on {addr}: {e}"));
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(RELISTEN_PAUSE) => {}
                        _ = shutdown_rx.changed() => {}
                    }
                    continue;
                }
            }
        }
        match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_connection(Arc::clone(&shared), stream));
                    }
                    Err(_) => {
                        // Out of file descriptors or a connection reset before accept:
                        // pause briefly rather than spin.
                        tokio::time::sleep(RELISTEN_PAUSE).await;
                    }
                },
                changed = behaviour_rx.changed() => if changed.is_err() { return },
                changed = shutdown_rx.changed() => if changed.is_err() { return },
            },
            None => tokio::select! {
                changed = behaviour_rx.changed() => if changed.is_err() { return },
                changed = shutdown_rx.changed() => if changed.is_err() { return },
            },
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let mut behaviour_rx = shared.behaviour.subscribe();
    let mut shutdown_rx = shared.shutdown.subscribe();
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |req| handle(Arc::clone(&service_shared), req));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // Dropping the connection future closes the socket.
    tokio::select! {
        _ = connection => {}
        _ = behaviour_rx.wait_for(|b| matches!(b, Behaviour::Refuse)) => {}
        _ = shutdown_rx.wait_for(|down| *down) => {}
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

type HttpResponse = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let Some(signal) = Signal::from_path(req.uri().path()) else {
        let message = format!(
            "no such path {:?}: OTLP/HTTP paths are /v1/traces, /v1/metrics and /v1/logs",
            req.uri().path()
        );
        return Ok(bad_request(
            &shared,
            None,
            StatusCode::NOT_FOUND,
            None,
            message,
        ));
    };
    if req.method() != Method::POST {
        let message = format!("method {} not allowed: use POST", req.method());
        let mut response = bad_request(
            &shared,
            Some(signal),
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            message,
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(response);
    }
    let format = match req.headers().get(CONTENT_TYPE).map(|v| v.to_str()) {
        None => {
            let message =
                "missing Content-Type: expected application/x-protobuf or application/json";
            return Ok(bad_request(
                &shared,
                Some(signal),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                message.to_owned(),
            ));
        }
        Some(Err(_)) => Err(DecodeError::UnsupportedContentType(
            "(not visible ASCII)".to_owned(),
        )),
        Some(Ok(value)) => Format::from_content_type(value),
    };
    let encoding = match req.headers().get(CONTENT_ENCODING).map(|v| v.to_str()) {
        None => Ok(Encoding::Identity),
        Some(Err(_)) => Err(DecodeError::UnsupportedEncoding(
            "(not visible ASCII)".to_owned(),
        )),
        Some(Ok(value)) => Encoding::from_header(Some(value)),
    };
    let (format, encoding) = match (format, encoding) {
        (Ok(f), Ok(e)) => (f, e),
        (Err(e), _) | (Ok(_), Err(e)) => {
            return Ok(bad_request(
                &shared,
                Some(signal),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                e.to_string(),
            ));
        }
    };
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let (status, message) = if e.downcast_ref::<LengthLimitError>().is_some() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                (StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
            };
            return Ok(bad_request(
                &shared,
                Some(signal),
                status,
                Some(format),
                message,
            ));
        }
    };

    let behaviour = settle_behaviour(&shared).await;
    let decoded = decode_request(signal, format, encoding, &bytes);
    match behaviour {
        Behaviour::Hang | Behaviour::Refuse => {
            // The connection is being closed (or the sink is shutting down): never answer.
            std::future::pending::<()>().await;
            Ok(plain(StatusCode::SERVICE_UNAVAILABLE, String::new()))
        }
        Behaviour::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let items = decoded.as_ref().ok().map(Body::item_count);
            shared.update(|r| {
                r.counters.rejected += 1;
                r.record_attempt(Attempt {
                    unix_nano: now_unix_nano(),
                    signal: Some(signal),
                    status: status.as_u16(),
                    items,
                });
            });
            let mut response = rpc_status(status, format, format!("scripted answer {code}"));
            if let Some(after) = retry_after {
                let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
        Behaviour::Accept => match decoded {
            Err(e) => {
                let status = match e {
                    DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Ok(bad_request(
                    &shared,
                    Some(signal),
                    status,
                    Some(format),
                    e.to_string(),
                ))
            }
            Ok(body) => {
                let received = now_unix_nano();
                shared.write_jsonl(&body, received);
                let items = body.item_count();
                shared.update(|r| {
                    r.store(body, bytes.len(), shared.max_stored_bytes);
                    r.record_attempt(Attempt {
                        unix_nano: received,
                        signal: Some(signal),
                        status: 200,
                        items: Some(items),
                    });
                });
                Ok(success(format))
            }
        },
    }
}

/// Counts a request held by [`Behaviour::Hang`] for as long as it lives.
struct HangGuard<'a>(&'a Shared);

impl<'a> HangGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.update(|r| r.counters.hanging += 1);
        HangGuard(shared)
    }
}

impl Drop for HangGuard<'_> {
    fn drop(&mut self) {
        self.0
            .update(|r| r.counters.hanging = r.counters.hanging.saturating_sub(1));
    }
}

/// The behaviour to answer with: waits while it is [`Behaviour::Hang`]. Returns `Hang` only if
/// the sink shut down meanwhile.
async fn settle_behaviour(shared: &Shared) -> Behaviour {
    let mut rx = shared.behaviour.subscribe();
    let mut shutdown_rx = shared.shutdown.subscribe();
    let mut guard = None;
    loop {
        let behaviour = rx.borrow_and_update().clone();
        if behaviour != Behaviour::Hang || shared.is_shut_down() {
            drop(guard);
            return behaviour;
        }
        if guard.is_none() {
            guard = Some(HangGuard::new(shared));
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Behaviour::Hang },
            _ = shutdown_rx.wait_for(|down| *down) => return Behaviour::Hang,
        }
    }
}

fn bad_request(
    shared: &Shared,
    signal: Option<Signal>,
    status: StatusCode,
    format: Option<Format>,
    message: String,
) -> HttpResponse {
    shared.update(|r| {
        r.counters.bad_requests += 1;
        r.record_attempt(Attempt {
            unix_nano: now_unix_nano(),
            signal,
            status: status.as_u16(),
            items: None,
        });
    });
    match format {
        Some(format) => rpc_status(status, format, message),
        None => plain(status, message),
    }
}

fn plain(status: StatusCode, message: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An empty `Export*ServiceResponse`: no bytes in protobuf, `{}` in JSON.
fn success(format: Format) -> HttpResponse {
    let body = match format {
        Format::Protobuf => Bytes::new(),
        Format::Json => Bytes::from_static(b"{}"),
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// `google.rpc.Status`, the body OTLP/HTTP servers answer errors with.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => 3,        // INVALID_ARGUMENT
        404 => 5,        // NOT_FOUND
        413 => 11,       // OUT_OF_RANGE
        429 => 8,        // RESOURCE_EXHAUSTED
        502..=504 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

fn rpc_status(status: StatusCode, format: Format, message: String) -> HttpResponse {
    let rpc = RpcStatus {
        code: grpc_code(status),
        message,
    };
    let body = match format {
        Format::Protobuf => Bytes::from(rpc.encode_to_vec()),
        Format::Json => {
            Bytes::from(serde_json::json!({ "code": rpc.code, "message": rpc.message }).to_string())
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}
