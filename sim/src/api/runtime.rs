//! The Runtime API: `invocation/next`, responses and errors, init and restore calls.

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
use crate::state::{Env, Phase};

pub(super) async fn runtime_next(env: Arc<Env>) -> Resp {
    let (tx, rx) = oneshot::channel();
    let ready = env.update(|st| {
        let now = Instant::now();
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

pub(super) async fn runtime_result(
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

pub(super) async fn runtime_init_error(env: Arc<Env>, req: Request<Incoming>) -> Resp {
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

pub(super) async fn restore_next(env: Arc<Env>) -> Resp {
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

pub(super) async fn restore_error(env: Arc<Env>, req: Request<Incoming>) -> Resp {
    let et = header(&req, "Lambda-Runtime-Function-Error-Type")
        .unwrap_or_else(|| "Runtime.Unknown".to_owned());
    let _ = read_body(req, MAX_RESPONSE_BYTES).await;
    env.update(|st| st.rt.restore_error = Some(et));
    accepted()
}
