//! The Lambda Extensions API (register, `next`, error reports) and the Telemetry API
//! subscription call, over plain HTTP to `AWS_LAMBDA_RUNTIME_API`. What a subscription asks for
//! is [`crate::intake::telemetry::subscription`].
//!
//! Two layers: request builders and response parsers free of I/O (unit-tested below), and a
//! thin [`Client`] that keeps one HTTP/1.1 connection to the (loopback) API. No call has a
//! client timeout: `next` blocks until the next event, and the process is frozen in between.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use crate::intake::telemetry::subscription::{Subscribed, Subscription};

pub(crate) const EXTENSION_NAME_HEADER: &str = "Lambda-Extension-Name";
pub(crate) const EXTENSION_ID_HEADER: &str = "Lambda-Extension-Identifier";
pub(crate) const ACCEPT_FEATURE_HEADER: &str = "Lambda-Extension-Accept-Feature";
pub(crate) const ERROR_TYPE_HEADER: &str = "Lambda-Extension-Function-Error-Type";

pub(crate) const REGISTER_PATH: &str = "/2020-01-01/extension/register";
pub(crate) const NEXT_PATH: &str = "/2020-01-01/extension/event/next";
pub(crate) const INIT_ERROR_PATH: &str = "/2020-01-01/extension/init/error";
pub(crate) const EXIT_ERROR_PATH: &str = "/2020-01-01/extension/exit/error";
pub(crate) const TELEMETRY_PATH: &str = "/2022-07-01/telemetry";

/// The largest response body Contrail reads from the API (events are a few hundred bytes).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// `host:port` of the Runtime/Extensions API, without scheme (`AWS_LAMBDA_RUNTIME_API`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuntimeApi(String);

impl RuntimeApi {
    /// Accept `host:port` (an `http://` prefix or a trailing `/` is tolerated and removed).
    pub(crate) fn parse(value: &str) -> Result<RuntimeApi, String> {
        let v = value.trim();
        let v = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
        if v.is_empty() {
            return Err("expected host:port".into());
        }
        if v.contains('/') || v.contains(char::is_whitespace) {
            return Err("expected host:port without a path".into());
        }
        let (host, port) = v
            .rsplit_once(':')
            .ok_or_else(|| "expected host:port (no port given)".to_owned())?;
        if host.is_empty() {
            return Err("expected host:port (no host given)".into());
        }
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{port:?} is not a port number"))?;
        Ok(RuntimeApi(v.to_owned()))
    }

    pub(crate) fn authority(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuntimeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identifier the register call returns; every later call carries it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ExtensionId(String);

impl ExtensionId {
    pub(crate) fn new(id: impl Into<String>) -> Self {
        ExtensionId(id.into())
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtensionId({})", self.0)
    }
}

/// The name an extension registers under: the file name of its executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtensionName(String);

impl ExtensionName {
    #[cfg(test)]
    pub(crate) fn new(name: impl Into<String>) -> Self {
        ExtensionName(name.into())
    }

    /// The file name of the running executable (`current_exe`, else `argv[0]`).
    pub(crate) fn of_current_exe() -> Option<ExtensionName> {
        let from_exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(|n| n.to_owned()));
        let from_argv = || {
            std::env::args_os().next().and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| n.to_owned())
            })
        };
        // current_exe resolves symlinks; Lambda checks the name the extension was started as,
        // so argv[0] wins when both exist and differ.
        from_argv()
            .or(from_exe)
            .filter(|n| !n.is_empty())
            .map(ExtensionName)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Events an extension can register for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum EventType {
    Invoke,
    Shutdown,
}

/// What the register call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) id: ExtensionId,
    pub(crate) function_name: String,
    pub(crate) function_version: String,
    pub(crate) handler: String,
    /// Present when `accountId` was accepted as a feature.
    pub(crate) account_id: Option<String>,
}

/// An INVOKE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvokeEvent {
    pub(crate) request_id: String,
    /// Unix epoch milliseconds by which the invocation must end.
    pub(crate) deadline_ms: u64,
    pub(crate) invoked_function_arn: String,
    /// The `X-Amzn-Trace-Id` header value, when tracing is active.
    pub(crate) xray_header: Option<String>,
}

/// A SHUTDOWN event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShutdownEvent {
    /// `spindown`, `timeout`, `failure` (case varies): kept as sent.
    pub(crate) reason: String,
    /// Unix epoch milliseconds by which the extension must have exited.
    pub(crate) deadline_ms: u64,
}

/// What `next` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NextEvent {
    Invoke(InvokeEvent),
    Shutdown(ShutdownEvent),
}

/// Everything a call to the API can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("cannot connect to the Lambda API at {api}: {source}")]
    Connect {
        api: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP error talking to the Lambda API: {0}")]
    Http(#[from] hyper::Error),
    #[error("reading the Lambda API response: {0}")]
    Body(String),
    #[error("{call} answered {status}: {body}")]
    Status {
        call: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("{call} answered with an unusable response: {reason}")]
    Invalid { call: &'static str, reason: String },
    #[error("building the {call} request: {source}")]
    Request {
        call: &'static str,
        #[source]
        source: http::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Request builders: pure.

fn request(
    call: &'static str,
    api: &RuntimeApi,
    method: Method,
    path: &str,
    id: Option<&ExtensionId>,
    body: Bytes,
) -> Result<http::request::Builder, ApiError> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, api.authority());
    if let Some(id) = id {
        let value = HeaderValue::from_str(id.as_str()).map_err(|e| ApiError::Request {
            call,
            source: e.into(),
        })?;
        b = b.header(EXTENSION_ID_HEADER, value);
    }
    if !body.is_empty() {
        b = b
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
    }
    Ok(b)
}

fn finish(
    call: &'static str,
    b: http::request::Builder,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, ApiError> {
    b.body(Full::new(body))
        .map_err(|source| ApiError::Request { call, source })
}

/// `POST /2020-01-01/extension/register`.
pub(crate) fn register_request(
    api: &RuntimeApi,
    name: &ExtensionName,
    events: &[EventType],
    accept_account_id: bool,
) -> Result<Request<Full<Bytes>>, ApiError> {
    const CALL: &str = "register";
    let body = Bytes::from(serde_json::json!({ "events": events }).to_string());
    let name = HeaderValue::from_str(name.as_str()).map_err(|e| ApiError::Request {
        call: CALL,
        source: e.into(),
    })?;
    let mut b = request(CALL, api, Method::POST, REGISTER_PATH, None, body.clone())?
        .header(EXTENSION_NAME_HEADER, name);
    if accept_account_id {
        b = b.header(ACCEPT_FEATURE_HEADER, "accountId");
    }
    finish(CALL, b, body)
}

/// `GET /2020-01-01/extension/event/next`.
pub(crate) fn next_request(
    api: &RuntimeApi,
    id: &ExtensionId,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let b = request("next", api, Method::GET, NEXT_PATH, Some(id), Bytes::new())?;
    finish("next", b, Bytes::new())
}

/// `PUT /2022-07-01/telemetry`.
pub(crate) fn subscribe_request(
    api: &RuntimeApi,
    id: &ExtensionId,
    subscription: &Subscription,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let body = Bytes::from(subscription.body().to_string());
    let b = request(
        "subscribe",
        api,
        Method::PUT,
        TELEMETRY_PATH,
        Some(id),
        body.clone(),
    )?;
    finish("subscribe", b, body)
}

/// Which error-reporting call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorPhase {
    /// `init/error`: Lambda fails the init and reports the error type.
    Init,
    /// `exit/error`: reported before exiting during invoke or shutdown. Contrail never exits
    /// on purpose after registration (it degrades to the idle loop), so only tests build it.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "part of the API; no path of the extension exits with an error"
        )
    )]
    Exit,
}

/// `POST /2020-01-01/extension/{init,exit}/error`, with an `errorMessage` body and the
/// `Lambda-Extension-Function-Error-Type` header (e.g. `Extension.ConfigInvalid`).
pub(crate) fn error_request(
    api: &RuntimeApi,
    id: &ExtensionId,
    phase: ErrorPhase,
    error_type: &str,
    message: &str,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let (call, path) = match phase {
        ErrorPhase::Init => ("init/error", INIT_ERROR_PATH),
        ErrorPhase::Exit => ("exit/error", EXIT_ERROR_PATH),
    };
    let body = Bytes::from(
        serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        })
        .to_string(),
    );
    let error_type = HeaderValue::from_str(error_type).map_err(|e| ApiError::Request {
        call,
        source: e.into(),
    })?;
    let b = request(call, api, Method::POST, path, Some(id), body.clone())?
        .header(ERROR_TYPE_HEADER, error_type);
    finish(call, b, body)
}

// ---------------------------------------------------------------------------------------------
// Response parsers: pure.

fn body_text(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 512 {
        let cut: String = s.chars().take(512).collect();
        format!("{cut}…")
    } else {
        s.to_owned()
    }
}

fn check_status(call: &'static str, status: StatusCode, body: &[u8]) -> Result<(), ApiError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(ApiError::Status {
            call,
            status,
            body: body_text(body),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    #[serde(default)]
    function_name: String,
    #[serde(default)]
    function_version: String,
    #[serde(default)]
    handler: String,
    #[serde(default)]
    account_id: Option<String>,
}

/// Parse the register response.
pub(crate) fn parse_register(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Registration, ApiError> {
    const CALL: &str = "register";
    check_status(CALL, status, body)?;
    let id = headers
        .get(EXTENSION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::Invalid {
            call: CALL,
            reason: format!("no {EXTENSION_ID_HEADER} header"),
        })?;
    let parsed: RegisterBody = if body.iter().all(u8::is_ascii_whitespace) {
        RegisterBody {
            function_name: String::new(),
            function_version: String::new(),
            handler: String::new(),
            account_id: None,
        }
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::Invalid {
            call: CALL,
            reason: format!("body is not the expected JSON: {e}"),
        })?
    };
    Ok(Registration {
        id: ExtensionId::new(id),
        function_name: parsed.function_name,
        function_version: parsed.function_version,
        handler: parsed.handler,
        account_id: parsed.account_id.filter(|a| !a.is_empty()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NextBody {
    event_type: String,
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    invoked_function_arn: Option<String>,
    #[serde(default)]
    tracing: Option<TracingBody>,
    #[serde(default)]
    shutdown_reason: Option<String>,
}

#[derive(Deserialize)]
struct TracingBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// Parse the `next` response.
pub(crate) fn parse_next(status: StatusCode, body: &[u8]) -> Result<NextEvent, ApiError> {
    const CALL: &str = "next";
    check_status(CALL, status, body)?;
    let invalid = |reason: String| ApiError::Invalid { call: CALL, reason };
    let parsed: NextBody = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("body is not an event: {e}: {}", body_text(body))))?;
    let deadline_ms = parsed
        .deadline_ms
        .ok_or_else(|| invalid(format!("{} event without deadlineMs", parsed.event_type)))?;
    match parsed.event_type.to_ascii_uppercase().as_str() {
        "INVOKE" => {
            let request_id = parsed
                .request_id
                .filter(|r| !r.is_empty())
                .ok_or_else(|| invalid("INVOKE event without requestId".into()))?;
            let xray_header = parsed
                .tracing
                .filter(|t| {
                    t.kind
                        .as_deref()
                        .is_none_or(|k| k.eq_ignore_ascii_case("X-Amzn-Trace-Id"))
                })
                .and_then(|t| t.value)
                .filter(|v| !v.is_empty());
            Ok(NextEvent::Invoke(InvokeEvent {
                request_id,
                deadline_ms,
                invoked_function_arn: parsed.invoked_function_arn.unwrap_or_default(),
                xray_header,
            }))
        }
        "SHUTDOWN" => Ok(NextEvent::Shutdown(ShutdownEvent {
            reason: parsed.shutdown_reason.unwrap_or_default(),
            deadline_ms,
        })),
        other => Err(invalid(format!("unknown event type {other:?}"))),
    }
}

/// Parse the subscription response: 2xx is subscribed, except 202 with `Telemetry.NotSupported`.
pub(crate) fn parse_subscribe(status: StatusCode, body: &[u8]) -> Result<Subscribed, ApiError> {
    check_status("subscribe", status, body)?;
    if status == StatusCode::ACCEPTED && String::from_utf8_lossy(body).contains("NotSupported") {
        return Ok(Subscribed::NotSupported);
    }
    Ok(Subscribed::Yes)
}

mod client;
pub(crate) use client::Client;

#[cfg(test)]
mod tests;
