//! The Runtime API, what the runtime calls in each phase: `init/error` during INIT,
//! `restore/next` and `restore/error` for a SnapStart RESTORE, and per INVOKE
//! `invocation/next` (parked until the lifecycle dispatches a request) and the invocation's
//! `response` or `error` (at most one, at most 6 MB).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{MAX_RESPONSE_BYTES, Resp, accepted, error, header, read_body};
use crate::config::InitType;
use crate::state::{EnvState, Phase};

pub(super) async fn runtime_next(environment: Arc<EnvState>) -> Resp {
    let (tx, rx) = oneshot::channel();
    let ready = environment.update(|state| {
        let now = Instant::now();
        if state.runtime.first_next_at.is_none() {
            state.runtime.first_next_at = Some(now);
        }
        if let Some(dispatch) = state.runtime.pending.pop_front() {
            Some(dispatch)
        } else {
            state.runtime.waiters.push(tx);
            None
        }
    });
    let dispatch = match ready {
        Some(dispatch) => dispatch,
        None => match rx.await {
            Ok(dispatch) => dispatch,
            Err(_) => {
                return error(
                    StatusCode::GONE,
                    "EnvironmentShutDown",
                    "the execution environment is shutting down",
                );
            }
        },
    };
    let mut r = Response::new(Full::new(dispatch.body.clone()));
    let h = r.headers_mut();
    let pairs = [
        ("Lambda-Runtime-Aws-Request-Id", dispatch.request_id.clone()),
        (
            "Lambda-Runtime-Deadline-Ms",
            dispatch.deadline_ms.to_string(),
        ),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            environment.info.function_arn.clone(),
        ),
        ("Lambda-Runtime-Trace-Id", dispatch.trace_header.clone()),
        ("Content-Type", "application/json".to_owned()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Some(client_context) = dispatch.client_context.as_deref()
        && let Ok(v) = http::HeaderValue::from_str(client_context)
    {
        h.insert("Lambda-Runtime-Client-Context", v);
    }
    if let Some(cognito_identity) = dispatch.cognito_identity.as_deref()
        && let Ok(v) = http::HeaderValue::from_str(cognito_identity)
    {
        h.insert("Lambda-Runtime-Cognito-Identity", v);
    }
    r
}

pub(super) async fn runtime_result(
    environment: Arc<EnvState>,
    id: String,
    error_type: Option<String>,
    req: Request<Incoming>,
) -> Resp {
    let started = Instant::now();
    let started_wall = OffsetDateTime::now_utc();
    {
        let state = environment.lock();
        match state.invocations.get(&id) {
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
                &environment,
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
    record_outcome(
        &environment,
        &id,
        error_type,
        started,
        started_wall,
        body.len(),
    );
    accepted()
}

fn record_outcome(
    environment: &EnvState,
    id: &str,
    error_type: Option<String>,
    started: Instant,
    started_wall: OffsetDateTime,
    bytes: usize,
) {
    environment.update(|state| {
        if let Some(slot) = state.invocations.get_mut(id)
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

pub(super) async fn runtime_init_error(environment: Arc<EnvState>, req: Request<Incoming>) -> Resp {
    let error_type = header(&req, "Lambda-Runtime-Function-Error-Type")
        .unwrap_or_else(|| "Runtime.Unknown".to_owned());
    let _ = read_body(req, MAX_RESPONSE_BYTES).await;
    let ok = environment.update(|state| {
        if state.phase == Phase::Init {
            state.runtime.init_error = Some(error_type);
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

pub(super) async fn restore_next(environment: Arc<EnvState>) -> Resp {
    if environment.info.init_type != InitType::SnapStart {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "restore/next is only available to SnapStart functions",
        );
    }
    let (tx, rx) = oneshot::channel();
    environment.update(|state| {
        state.runtime.restore_next_at = Some(Instant::now());
        state.runtime.restore_waiter = Some(tx);
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

pub(super) async fn restore_error(environment: Arc<EnvState>, req: Request<Incoming>) -> Resp {
    let error_type = header(&req, "Lambda-Runtime-Function-Error-Type")
        .unwrap_or_else(|| "Runtime.Unknown".to_owned());
    let _ = read_body(req, MAX_RESPONSE_BYTES).await;
    environment.update(|state| state.runtime.restore_error = Some(error_type));
    accepted()
}
