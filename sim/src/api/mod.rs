//! The Runtime, Extensions and Telemetry APIs on one loopback address (`AWS_LAMBDA_RUNTIME_API`),
//! answering as Lambda does, for the environment that runs now ([`Current`]: a reset replaces
//! it).
//!
//! | API | paths | file |
//! |---|---|---|
//! | Runtime | `/2018-06-01/runtime/{invocation/next, invocation/ID/response, invocation/ID/error, init/error, restore/next, restore/error}` | `runtime` |
//! | Extensions | `/2020-01-01/extension/{register, event/next, init/error, exit/error}` | `extensions` |
//! | Telemetry | `PUT /2022-07-01/telemetry` | `telemetry` |
//! | container credentials (SnapStart) | `GET /2021-04-23/credentials` | `credentials` |
//!
//! This file holds the listener, the router and the answers they share (JSON bodies, the
//! platform's `{errorMessage, errorType}` errors, bounded request bodies).

// Handlers return the platform's error answer as their `Err`: it is the response itself.
#![allow(clippy::result_large_err)]

mod credentials;
mod extensions;
mod runtime;
mod telemetry;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::state::EnvState;

use extensions::{extension_error, extension_next, register};
use runtime::{restore_error, restore_next, runtime_init_error, runtime_next, runtime_result};
use telemetry::subscribe;

/// Largest synchronous response a function may return (bytes).
pub(crate) const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// Which environment the APIs currently serve (a reset replaces it).
#[derive(Clone, Default)]
pub(crate) struct Current(Arc<Mutex<Option<Arc<EnvState>>>>);

impl Current {
    pub(crate) fn set(&self, environment: Option<Arc<EnvState>>) {
        match self.0.lock() {
            Ok(mut g) => *g = environment,
            Err(p) => *p.into_inner() = environment,
        }
    }

    fn get(&self) -> Option<Arc<EnvState>> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Serves the APIs until the task is aborted.
pub(crate) fn serve(listener: TcpListener, current: Current) -> tokio::task::JoinHandle<()> {
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
    let Some(environment) = current.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the execution environment is not running",
        );
    };
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => {
            runtime_next(environment).await
        }
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "response"]) => {
            let id = (*id).to_owned();
            runtime_result(environment, id, None, req).await
        }
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "error"]) => {
            let id = (*id).to_owned();
            let error_type = header(&req, "Lambda-Runtime-Function-Error-Type")
                .unwrap_or_else(|| "Runtime.Unknown".to_owned());
            runtime_result(environment, id, Some(error_type), req).await
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            runtime_init_error(environment, req).await
        }
        (Method::GET, ["2018-06-01", "runtime", "restore", "next"]) => {
            restore_next(environment).await
        }
        (Method::POST, ["2018-06-01", "runtime", "restore", "error"]) => {
            restore_error(environment, req).await
        }
        (Method::POST, ["2020-01-01", "extension", "register"]) => register(environment, req).await,
        (Method::GET, ["2020-01-01", "extension", "event", "next"]) => {
            extension_next(environment, req).await
        }
        (Method::POST, ["2020-01-01", "extension", "init", "error"]) => {
            extension_error(environment, req, true).await
        }
        (Method::POST, ["2020-01-01", "extension", "exit", "error"]) => {
            extension_error(environment, req, false).await
        }
        (Method::PUT, ["2022-07-01", "telemetry"]) => subscribe(environment, req).await,
        (Method::GET, ["2021-04-23", "credentials"]) => credentials::serve(&environment, &req),
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
