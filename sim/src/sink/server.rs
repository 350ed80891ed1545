//! The HTTP side of the sink: the listener (closed and opened again as the behaviour asks),
//! one task per connection, and each request's handling: path, method, content type and
//! encoding, body, then the scripted behaviour decides the answer.

use std::convert::Infallible;
use std::fs::File;
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::decode::{Body, DecodeError, Encoding, Format, decode_request};
use super::received::{Attempt, Received, instance_of};
use super::response::{plain, rpc_status, success};
use super::{Behaviour, MAX_BODY_BYTES, Signal};

/// Pause before trying again to listen after a failed bind.
const RELISTEN_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<Received>,
    /// Bumped after every change of `state`.
    pub(super) version: watch::Sender<u64>,
    pub(super) behaviour: watch::Sender<Behaviour>,
    pub(super) shutdown: watch::Sender<bool>,
    /// Whether the listener is open (follows `behaviour`, see [`accept_loop`]).
    pub(super) listening: watch::Sender<bool>,
    pub(super) jsonl: Option<Mutex<File>>,
    pub(super) max_stored_bytes: usize,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Received> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update<R>(&self, f: impl FnOnce(&mut Received) -> R) -> R {
        let out = f(&mut self.lock());
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    pub(super) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Appends one line to the JSON lines file, if there is one; failures are counted.
    pub(super) fn write_jsonl(&self, body: &Body, received_unix_nano: u64) {
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

pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
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
    let peer = stream.peer_addr().ok();
    let service = service_fn(move |req| handle(Arc::clone(&service_shared), peer, req));
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

pub(super) type HttpResponse = Response<Full<Bytes>>;

async fn handle(
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    req: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let Some(signal) = Signal::from_path(req.uri().path()) else {
        let message = format!(
            "no such path {:?}: OTLP/HTTP paths are /v1/traces, /v1/metrics and /v1/logs",
            req.uri().path()
        );
        return Ok(bad_request(
            &shared,
            peer,
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
            peer,
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
                peer,
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
                peer,
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
                peer,
                Some(signal),
                status,
                Some(format),
                message,
            ));
        }
    };

    let mut behaviour = settle_behaviour(&shared).await;
    if let Behaviour::Delay(delay) = behaviour {
        // Dropped with the connection if the client goes away first.
        let _waiting = DelayGuard::new(&shared);
        tokio::time::sleep(delay).await;
        behaviour = Behaviour::Accept;
    }
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
            let instance = decoded.as_ref().ok().and_then(instance_of);
            shared.update(|r| {
                r.counters.rejected += 1;
                r.record_attempt(Attempt {
                    unix_nano: now_unix_nano(),
                    signal: Some(signal),
                    status: status.as_u16(),
                    items,
                    peer,
                    instance,
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
        Behaviour::Accept | Behaviour::Delay(_) => match decoded {
            Err(e) => {
                let status = match e {
                    DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Ok(bad_request(
                    &shared,
                    peer,
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
                let instance = instance_of(&body);
                shared.update(|r| {
                    r.store(body, bytes.len(), shared.max_stored_bytes);
                    r.record_attempt(Attempt {
                        unix_nano: received,
                        signal: Some(signal),
                        status: 200,
                        items: Some(items),
                        peer,
                        instance,
                    });
                });
                Ok(success(format))
            }
        },
    }
}

/// Counts a request waiting under [`Behaviour::Delay`] for as long as it waits.
struct DelayGuard<'a>(&'a Shared);

impl<'a> DelayGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.update(|r| r.counters.delayed += 1);
        DelayGuard(shared)
    }
}

impl Drop for DelayGuard<'_> {
    fn drop(&mut self) {
        self.0
            .update(|r| r.counters.delayed = r.counters.delayed.saturating_sub(1));
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
    peer: Option<SocketAddr>,
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
            peer,
            instance: None,
        });
    });
    match format {
        Some(format) => rpc_status(status, format, message),
        None => plain(status, message),
    }
}
