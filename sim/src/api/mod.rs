//! The Runtime, Extensions and Telemetry APIs on one loopback address (`AWS_LAMBDA_RUNTIME_API`).

// Handlers return the platform's error answer as their `Err`: it is the response itself.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::InitType;
use crate::events;
use crate::state::{Env, Phase};
use crate::telemetry::{Event, parse_subscription};

/// Largest synchronous response a function may return (bytes).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// Which environment the APIs currently serve (a reset replaces it).
#[derive(Clone, Default)]
pub struct Current(Arc<Mutex<Option<Arc<Env>>>>);

impl Current {
    pub fn set(&self, env: Option<Arc<Env>>) {
        match self.0.lock() {
            Ok(mut g) => *g = env,
            Err(p) => *p.into_inner() = env,
        }
    }

    fn get(&self) -> Option<Arc<Env>> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Serves the APIs until the task is aborted.
pub fn serve(listener: TcpListener, current: Current) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let current = current.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let current = current.clone();
                    async move { Ok::<_, Infallible>(route(current, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .title_case_headers(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({"errorMessage": message, "errorType": error_type}),
    )
}

fn accepted() -> Resp {
    json_response(StatusCode::ACCEPTED, &json!({"status": "OK"}))
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    &format!("request body exceeds {limit} bytes"),
                ))
            } else {
                Err(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestFormat",
                    &format!("cannot read request body: {e}"),
                ))
            }
        }
    }
}

async fn route(current: Current, req: Request<Incoming>) -> Resp {
    let Some(env) = current.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the execution environment is not running",
        );
    };
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => runtime_next(env).await,
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "response"]) => {
            let id = (*id).to_owned();
            runtime_result(env, id, None, req).await
        }
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "error"]) => {
            let id = (*id).to_owned();
            let et = header(&req, "Lambda-Runtime-Function-Error-Type")
                .unwrap_or_else(|| "Runtime.Unknown".to_owned());
            runtime_result(env, id, Some(et), req).await
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            runtime_init_error(env, req).await
        }
        (Method::GET, ["2018-06-01", "runtime", "restore", "next"]) => restore_next(env).await,
        (Method::POST, ["2018-06-01", "runtime", "restore", "error"]) => {
            restore_error(env, req).await
        }
        (Method::POST, ["2020-01-01", "extension", "register"]) => register(env, req).await,
        (Method::GET, ["2020-01-01", "extension", "event", "next"]) => {
            extension_next(env, req).await
        }
        (Method::POST, ["2020-01-01", "extension", "init", "error"]) => {
            extension_error(env, req, true).await
        }
        (Method::POST, ["2020-01-01", "extension", "exit", "error"]) => {
            extension_error(env, req, false).await
        }
        (Method::PUT, ["2022-07-01", "telemetry"]) => subscribe(env, req).await,
        (_, ["2018-06-01", "runtime", ..])
        | (_, ["2020-01-01", "extension", ..])
        | (_, ["2022-07-01", "telemetry"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no API at {path}"),
        ),
    }
}

// ---------------------------------------------------------------- Runtime API

async fn runtime_next(env: Arc<Env>) -> Resp {
    let (tx, rx) = oneshot::channel();
    let ready = env.update(|st| {
        let now = Instant::now();
        st.rt.next_calls += 1;
        if st.rt.first_next_at.is_none() {
            st.rt.first_next_at = Some(now);
        }
        if let Some(d) = st.rt.pending.pop_front() {
            Some(d)
        } else {
            st.rt.waiters.push(tx);
            None
        }
    });
    let d = match ready {
        Some(d) => d,
        None => match rx.await {
            Ok(d) => d,
            Err(_) => {
                return error(
                    StatusCode::GONE,
                    "EnvironmentShutDown",
                    "the execution environment is shutting down",
                );
            }
        },
    };
    let mut r = Response::new(Full::new(d.body.clone()));
    let h = r.headers_mut();
    let pairs = [
        ("Lambda-Runtime-Aws-Request-Id", d.request_id.clone()),
        ("Lambda-Runtime-Deadline-Ms", d.deadline_ms.to_string()),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            env.info.function_arn.clone(),
        ),
        ("Lambda-Runtime-Trace-Id", d.trace_header.clone()),
        ("Content-Type", "application/json".to_owned()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Some(cc) = d.client_context.as_deref()
        && let Ok(v) = http::HeaderValue::from_str(cc)
    {
        h.insert("Lambda-Runtime-Client-Context", v);
    }
    if let Some(ci) = d.cognito_identity.as_deref()
        && let Ok(v) = http::HeaderValue::from_str(ci)
    {
        h.insert("Lambda-Runtime-Cognito-Identity", v);
    }
    r
}

async fn runtime_result(
    env: Arc<Env>,
    id: String,
    error_type: Option<String>,
    req: Request<Incoming>,
) -> Resp {
    let started = Instant::now();
    let started_wall = OffsetDateTime::now_utc();
    {
        let st = env.lock();
        match st.invocations.get(&id) {
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    &format!("no invocation with request id {id:?}"),
                );
            }
            Some(slot) if slot.outcome.is_some() => {
                return error(
                    StatusCode::FORBIDDEN,
                    "InvalidStateTransition",
                    &format!("invocation {id} already has a response"),
                );
            }
            Some(_) => {}
        }
    }
    let (body, error_type) = match read_body(req, MAX_RESPONSE_BYTES).await {
        Ok(b) => (b, error_type),
        Err(resp) if resp.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            record_outcome(
                &env,
                &id,
                Some("Function.ResponseSizeTooLarge".into()),
                started,
                started_wall,
                MAX_RESPONSE_BYTES,
            );
            return resp;
        }
        Err(resp) => return resp,
    };
    record_outcome(&env, &id, error_type, started, started_wall, body.len());
    accepted()
}

fn record_outcome(
    env: &Env,
    id: &str,
    error_type: Option<String>,
    started: Instant,
    started_wall: OffsetDateTime,
    bytes: usize,
) {
    env.update(|st| {
        if let Some(slot) = st.invocations.get_mut(id)
            && slot.outcome.is_none()
        {
            slot.outcome = Some(crate::state::Outcome {
                error_type,
                started,
                started_wall,
                finished: Instant::now(),
                bytes,
            });
        }
    });
}

async fn runtime_init_error(env: Arc<Env>, req: Request<Incoming>) -> Resp {
    let et = header(&req, "Lambda-Runtime-Function-Error-Type")
        .unwrap_or_else(|| "Runtime.Unknown".to_owned());
    let _ = read_body(req, MAX_RESPONSE_BYTES).await;
    let ok = env.update(|st| {
        if st.phase == Phase::Init {
            st.rt.init_error = Some(et);
            true
        } else {
            false
        }
    });
    if ok {
        accepted()
    } else {
        error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init/error is only accepted during init",
        )
    }
}

async fn restore_next(env: Arc<Env>) -> Resp {
    if env.info.init_type != InitType::SnapStart {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "restore/next is only available to SnapStart functions",
        );
    }
    let (tx, rx) = oneshot::channel();
    env.update(|st| {
        st.rt.restore_next_at = Some(Instant::now());
        st.rt.restore_waiter = Some(tx);
    });
    match rx.await {
        Ok(()) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => error(
            StatusCode::GONE,
            "EnvironmentShutDown",
            "the execution environment is shutting down",
        ),
    }
}

async fn restore_error(env: Arc<Env>, req: Request<Incoming>) -> Resp {
    let et = header(&req, "Lambda-Runtime-Function-Error-Type")
        .unwrap_or_else(|| "Runtime.Unknown".to_owned());
    let _ = read_body(req, MAX_RESPONSE_BYTES).await;
    env.update(|st| st.rt.restore_error = Some(et));
    accepted()
}

// ---------------------------------------------------------------- Extensions API

fn find_ext(env: &Env, req: &Request<Incoming>) -> Result<usize, Resp> {
    let Some(id) = header(req, "Lambda-Extension-Identifier") else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Extension.MissingExtensionIdentifier",
            "missing Lambda-Extension-Identifier header",
        ));
    };
    let st = env.lock();
    st.exts
        .iter()
        .position(|e| e.id.as_deref() == Some(id.as_str()))
        .ok_or_else(|| {
            error(
                StatusCode::FORBIDDEN,
                "Extension.UnknownExtensionIdentifier",
                &format!("unknown extension identifier {id:?}"),
            )
        })
}

async fn register(env: Arc<Env>, req: Request<Incoming>) -> Resp {
    let name = header(&req, "Lambda-Extension-Name").unwrap_or_default();
    let features = header(&req, "Lambda-Extension-Accept-Feature").unwrap_or_default();
    if name.is_empty() {
        return error(
            StatusCode::FORBIDDEN,
            "Extension.InvalidExtensionName",
            "empty Lambda-Extension-Name header",
        );
    }
    let body = match read_body(req, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let events: Vec<String> = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("events").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .map(|e| e.as_str().unwrap_or_default().to_owned())
                .collect(),
            None => {
                return error(
                    StatusCode::FORBIDDEN,
                    "InvalidRequestFormat",
                    "body must be {\"events\": [...]}",
                );
            }
        },
        Err(e) => {
            return error(
                StatusCode::FORBIDDEN,
                "InvalidRequestFormat",
                &format!("body is not valid JSON: {e}"),
            );
        }
    };
    let managed = env.info.init_type == InitType::LambdaManagedInstances;
    for e in &events {
        let valid = match e.as_str() {
            "SHUTDOWN" => true,
            "INVOKE" => !managed,
            _ => false,
        };
        if !valid {
            let msg = if e == "INVOKE" {
                format!("{name}: INVOKE cannot be registered on Lambda Managed Instances")
            } else {
                format!("{name}: unknown event {e:?}: use INVOKE or SHUTDOWN")
            };
            return error(StatusCode::FORBIDDEN, "Extension.InvalidEventType", &msg);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let result = env.update(|st| {
        if !st.registration_open {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Extension.RegistrationClosed",
                &format!("{name}: registration is closed (the runtime has started)"),
            ));
        }
        let slot = st.exts.iter_mut().find(|e| e.name == name);
        match slot {
            None => Err(error(
                StatusCode::FORBIDDEN,
                "Extension.InvalidExtensionName",
                &format!(
                    "{name:?} is not the file name of an extension executable in this environment"
                ),
            )),
            Some(slot) if slot.id.is_some() => Err(error(
                StatusCode::FORBIDDEN,
                "Extension.AlreadyRegistered",
                &format!("{name} is already registered"),
            )),
            Some(slot) => {
                slot.id = Some(id.clone());
                slot.events = events.clone();
                slot.registered_at = Some(Instant::now());
                Ok(())
            }
        }
    });
    if let Err(r) = result {
        return r;
    }
    env.hub.publish(Event::platform(
        OffsetDateTime::now_utc(),
        "platform.extension",
        events::extension(&name, "Ready", &events),
    ));
    let mut body = json!({
        "functionName": env.info.function_name,
        "functionVersion": env.info.function_version,
        "handler": env.info.handler,
    });
    if features.split(',').any(|f| f.trim() == "accountId") {
        body["accountId"] = json!(env.info.account_id);
    }
    let mut r = json_response(StatusCode::OK, &body);
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        r.headers_mut().insert("Lambda-Extension-Identifier", v);
    }
    r
}

async fn extension_next(env: Arc<Env>, req: Request<Incoming>) -> Resp {
    let idx = match find_ext(&env, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let (tx, rx) = oneshot::channel();
    let ready = env.update(|st| {
        let Some(ext) = st.exts.get_mut(idx) else {
            return Err(());
        };
        if ext.error_type.is_some() {
            return Err(());
        }
        let now = Instant::now();
        ext.next_calls += 1;
        ext.last_next_at = Some(now);
        if ext.first_next_at.is_none() {
            ext.first_next_at = Some(now);
        }
        match ext.pending.pop_front() {
            Some(e) => Ok(Some(e)),
            None => {
                ext.waiter = Some(tx);
                Ok(None)
            }
        }
    });
    let event = match ready {
        Err(()) => {
            return error(
                StatusCode::FORBIDDEN,
                "Extension.InvalidExtensionState",
                "the extension reported an error and may make no further calls",
            );
        }
        Ok(Some(e)) => e,
        Ok(None) => match rx.await {
            Ok(e) => e,
            Err(_) => {
                return error(
                    StatusCode::GONE,
                    "EnvironmentShutDown",
                    "the execution environment is shutting down",
                );
            }
        },
    };
    let mut r = json_response(StatusCode::OK, &event);
    if let Ok(v) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut()
            .insert("Lambda-Extension-Event-Identifier", v);
    }
    r
}

async fn extension_error(env: Arc<Env>, req: Request<Incoming>, init: bool) -> Resp {
    let idx = match find_ext(&env, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some(et) = header(&req, "Lambda-Extension-Function-Error-Type") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Extension.MissingHeader",
            "missing Lambda-Extension-Function-Error-Type header",
        );
    };
    let _ = read_body(req, 1024 * 1024).await;
    let ok = env.update(|st| {
        if init && st.phase != Phase::Init {
            return false;
        }
        if let Some(ext) = st.exts.get_mut(idx) {
            ext.error_type = Some(et.clone());
            ext.waiter = None;
        }
        true
    });
    if !ok {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init/error is only accepted during init",
        );
    }
    accepted()
}

// ---------------------------------------------------------------- Telemetry API

async fn subscribe(env: Arc<Env>, req: Request<Incoming>) -> Resp {
    let idx = match find_ext(&env, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let body = match read_body(req, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let managed = env.info.init_type == InitType::LambdaManagedInstances;
    let sub = match parse_subscription(&body, managed) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ValidationError", &e.0),
    };
    if let Some(required) = env.info.required_schema
        && sub.schema != required
    {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            &format!(
                "schemaVersion {} is not accepted here: use {}",
                sub.schema.as_str(),
                required.as_str()
            ),
        );
    }
    let name = env.update(|st| {
        let ext = &mut st.exts[idx];
        ext.subscribed = Some(sub.schema);
        ext.name.clone()
    });
    let types = sub.types.clone();
    env.hub.subscribe(&name, sub);
    env.hub.publish(Event::platform(
        OffsetDateTime::now_utc(),
        "platform.telemetrySubscription",
        events::telemetry_subscription(&name, "Subscribed", &types),
    ));
    let mut r = Response::new(Full::new(Bytes::from_static(b"OK")));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}
