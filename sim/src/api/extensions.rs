//! The Extensions API, what an extension calls: `register` during INIT (with the name of its
//! executable, before the runtime starts), `event/next` (parked until an INVOKE or SHUTDOWN
//! event), and `init/error` or `exit/error`, after which no call of it succeeds.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Resp, accepted, error, header, json_response, read_body};
use crate::config::InitType;
use crate::events;
use crate::state::{EnvState, Phase};
use crate::telemetry::Event;

pub(super) fn find_extension(
    environment: &EnvState,
    req: &Request<Incoming>,
) -> Result<usize, Resp> {
    let Some(id) = header(req, "Lambda-Extension-Identifier") else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Extension.MissingExtensionIdentifier",
            "missing Lambda-Extension-Identifier header",
        ));
    };
    let state = environment.lock();
    state
        .extensions
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

pub(super) async fn register(environment: Arc<EnvState>, req: Request<Incoming>) -> Resp {
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
    let managed = environment.info.init_type == InitType::LambdaManagedInstances;
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
    let result = environment.update(|state| {
        if !state.registration_open {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Extension.RegistrationClosed",
                &format!("{name}: registration is closed (the runtime has started)"),
            ));
        }
        let slot = state.extensions.iter_mut().find(|e| e.name == name);
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
    environment.hub.publish(Event::platform(
        OffsetDateTime::now_utc(),
        "platform.extension",
        events::extension(&name, "Ready", &events),
    ));
    let mut body = json!({
        "functionName": environment.info.function_name,
        "functionVersion": environment.info.function_version,
        "handler": environment.info.handler,
    });
    if features.split(',').any(|f| f.trim() == "accountId") {
        body["accountId"] = json!(environment.info.account_id);
    }
    let mut r = json_response(StatusCode::OK, &body);
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        r.headers_mut().insert("Lambda-Extension-Identifier", v);
    }
    r
}

pub(super) async fn extension_next(environment: Arc<EnvState>, req: Request<Incoming>) -> Resp {
    let index = match find_extension(&environment, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let (tx, rx) = oneshot::channel();
    let ready = environment.update(|state| {
        let Some(extension) = state.extensions.get_mut(index) else {
            return Err(());
        };
        if extension.error_type.is_some() {
            return Err(());
        }
        let now = Instant::now();
        extension.last_next_at = Some(now);
        if extension.first_next_at.is_none() {
            extension.first_next_at = Some(now);
            extension.cpu_to_first_next_ms = environment
                .cpu
                .precise_ms(&extension.leaf())
                .map(|ms| ms - extension.cpu_at_exec_ms.unwrap_or(0.0));
        }
        match extension.pending.pop_front() {
            Some(e) => Ok(Some(e)),
            None => {
                extension.waiter = Some(tx);
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

pub(super) async fn extension_error(
    environment: Arc<EnvState>,
    req: Request<Incoming>,
    init: bool,
) -> Resp {
    let index = match find_extension(&environment, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some(error_type) = header(&req, "Lambda-Extension-Function-Error-Type") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Extension.MissingHeader",
            "missing Lambda-Extension-Function-Error-Type header",
        );
    };
    let _ = read_body(req, 1024 * 1024).await;
    let ok = environment.update(|state| {
        if init && state.phase != Phase::Init {
            return false;
        }
        if let Some(extension) = state.extensions.get_mut(index) {
            extension.error_type = Some(error_type.clone());
            extension.waiter = None;
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
