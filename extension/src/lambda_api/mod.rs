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
use http_body_util::{BodyExt, Full, Limited};
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

// ---------------------------------------------------------------------------------------------
// The client.

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1.1 connection to the Lambda API, reopened when it closes.
pub(crate) struct Client {
    api: RuntimeApi,
    conn: Option<Sender>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("api", &self.api).finish()
    }
}

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Client {
    pub(crate) fn new(api: RuntimeApi) -> Self {
        Client { api, conn: None }
    }

    async fn connect(&self) -> Result<Sender, ApiError> {
        let stream = tokio::net::TcpStream::connect(self.api.authority())
            .await
            .map_err(|source| ApiError::Connect {
                api: self.api.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            // The connection ends when the API closes it; the next call reconnects.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send one request and read the whole response.
    pub(crate) async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, ApiError> {
        let reused = match self.conn.take() {
            Some(mut s) => s.ready().await.ok().map(|()| s),
            None => None,
        };
        let mut sender = match reused {
            Some(s) => s,
            None => {
                let mut s = self.connect().await?;
                s.ready().await?;
                s
            }
        };
        let response = sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ApiError::Body(e.to_string()))?
            .to_bytes();
        self.conn = Some(sender);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub(crate) async fn register(
        &mut self,
        name: &ExtensionName,
        events: &[EventType],
    ) -> Result<Registration, ApiError> {
        let reply = self
            .send(register_request(&self.api, name, events, true)?)
            .await?;
        parse_register(reply.status, &reply.headers, &reply.body)
    }

    /// Block until the next event. No timeout: see the module documentation.
    pub(crate) async fn next(&mut self, id: &ExtensionId) -> Result<NextEvent, ApiError> {
        let reply = self.send(next_request(&self.api, id)?).await?;
        parse_next(reply.status, &reply.body)
    }

    pub(crate) async fn subscribe(
        &mut self,
        id: &ExtensionId,
        subscription: &Subscription,
    ) -> Result<Subscribed, ApiError> {
        let reply = self
            .send(subscribe_request(&self.api, id, subscription)?)
            .await?;
        parse_subscribe(reply.status, &reply.body)
    }

    /// Report an error to Lambda (`init/error` or `exit/error`). After it no other call works.
    pub(crate) async fn report_error(
        &mut self,
        id: &ExtensionId,
        phase: ErrorPhase,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let call = match phase {
            ErrorPhase::Init => "init/error",
            ErrorPhase::Exit => "exit/error",
        };
        let reply = self
            .send(error_request(&self.api, id, phase, error_type, message)?)
            .await?;
        check_status(call, reply.status, &reply.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::telemetry::subscription::{Buffering, SchemaVersion, TelemetryType};

    fn api() -> RuntimeApi {
        RuntimeApi::parse("127.0.0.1:9001").unwrap()
    }

    async fn body_json(req: Request<Full<Bytes>>) -> serde_json::Value {
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn runtime_api_accepts_host_port_only() {
        assert_eq!(api().authority(), "127.0.0.1:9001");
        assert_eq!(
            RuntimeApi::parse("http://localhost:9001/")
                .unwrap()
                .authority(),
            "localhost:9001"
        );
        assert!(RuntimeApi::parse("").is_err());
        assert!(RuntimeApi::parse("localhost").is_err());
        assert!(RuntimeApi::parse(":9001").is_err());
        assert!(RuntimeApi::parse("localhost:http").is_err());
        assert!(RuntimeApi::parse("localhost:9001/path").is_err());
        assert!(RuntimeApi::parse("localhost:0").is_err());
    }

    #[tokio::test]
    async fn register_request_carries_name_feature_and_events() {
        let req = register_request(
            &api(),
            &ExtensionName::new("contrail"),
            &[EventType::Invoke, EventType::Shutdown],
            true,
        )
        .unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), REGISTER_PATH);
        assert_eq!(req.headers()[header::HOST], "127.0.0.1:9001");
        assert_eq!(req.headers()[EXTENSION_NAME_HEADER], "contrail");
        assert_eq!(req.headers()[ACCEPT_FEATURE_HEADER], "accountId");
        assert!(req.headers().get(EXTENSION_ID_HEADER).is_none());
        assert_eq!(
            body_json(req).await,
            serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]})
        );
    }

    #[tokio::test]
    async fn register_request_for_shutdown_only() {
        let req = register_request(
            &api(),
            &ExtensionName::new("x"),
            &[EventType::Shutdown],
            false,
        )
        .unwrap();
        assert!(req.headers().get(ACCEPT_FEATURE_HEADER).is_none());
        assert_eq!(
            body_json(req).await,
            serde_json::json!({"events": ["SHUTDOWN"]})
        );
    }

    #[test]
    fn register_request_rejects_a_name_that_is_not_a_header_value() {
        let err = register_request(&api(), &ExtensionName::new("bad\nname"), &[], true);
        assert!(matches!(err, Err(ApiError::Request { .. })));
    }

    #[test]
    fn next_request_is_a_get_with_the_identifier() {
        let req = next_request(&api(), &ExtensionId::new("abc-123")).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), NEXT_PATH);
        assert_eq!(req.headers()[EXTENSION_ID_HEADER], "abc-123");
        assert!(req.headers().get(header::CONTENT_TYPE).is_none());
    }

    #[tokio::test]
    async fn subscribe_request_body() {
        let sub = Subscription {
            schema: SchemaVersion::V2022_12_13,
            port: 4243,
            types: TelemetryType::ALL.to_vec(),
            buffering: Buffering {
                max_items: 1000,
                max_bytes: 262_144,
                timeout_ms: 25,
            },
        };
        let req = subscribe_request(&api(), &ExtensionId::new("id"), &sub).unwrap();
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.uri(), TELEMETRY_PATH);
        assert_eq!(req.headers()[EXTENSION_ID_HEADER], "id");
        assert_eq!(
            body_json(req).await,
            serde_json::json!({
                "schemaVersion": "2022-12-13",
                "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/"},
                "types": ["platform", "function", "extension"],
                "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
            })
        );
    }

    #[tokio::test]
    async fn error_request_sets_the_error_type() {
        let req = error_request(
            &api(),
            &ExtensionId::new("id"),
            ErrorPhase::Init,
            "Extension.ConfigInvalid",
            "X=\"1\" is not valid: no",
        )
        .unwrap();
        assert_eq!(req.uri(), INIT_ERROR_PATH);
        assert_eq!(req.headers()[ERROR_TYPE_HEADER], "Extension.ConfigInvalid");
        let body = body_json(req).await;
        assert_eq!(body["errorMessage"], "X=\"1\" is not valid: no");
        assert_eq!(body["errorType"], "Extension.ConfigInvalid");
        let exit = error_request(
            &api(),
            &ExtensionId::new("id"),
            ErrorPhase::Exit,
            "Extension.Crash",
            "m",
        )
        .unwrap();
        assert_eq!(exit.uri(), EXIT_ERROR_PATH);
    }

    #[test]
    fn parses_registration() {
        let mut headers = HeaderMap::new();
        headers.insert(EXTENSION_ID_HEADER, HeaderValue::from_static("ext-1"));
        let body = br#"{"functionName":"f","functionVersion":"$LATEST","handler":"h.main","accountId":"123456789012"}"#;
        let reg = parse_register(StatusCode::OK, &headers, body).unwrap();
        assert_eq!(reg.id.as_str(), "ext-1");
        assert_eq!(reg.function_name, "f");
        assert_eq!(reg.function_version, "$LATEST");
        assert_eq!(reg.handler, "h.main");
        assert_eq!(reg.account_id.as_deref(), Some("123456789012"));

        let reg = parse_register(StatusCode::OK, &headers, b"").unwrap();
        assert_eq!(reg.account_id, None);
    }

    #[test]
    fn registration_without_identifier_or_with_error_status_fails() {
        let err = parse_register(StatusCode::OK, &HeaderMap::new(), b"{}").unwrap_err();
        assert!(err.to_string().contains(EXTENSION_ID_HEADER), "{err}");
        let err = parse_register(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"errorType":"Extension.InvalidExtensionName"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::Status { status, .. } if status == StatusCode::FORBIDDEN));
        assert!(err.to_string().contains("InvalidExtensionName"), "{err}");
    }

    #[test]
    fn parses_invoke() {
        let body = br#"{"eventType":"INVOKE","deadlineMs":1700000003000,"requestId":"r-1",
            "invokedFunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:f",
            "tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}}"#;
        let ev = parse_next(StatusCode::OK, body).unwrap();
        assert_eq!(
            ev,
            NextEvent::Invoke(InvokeEvent {
                request_id: "r-1".into(),
                deadline_ms: 1_700_000_003_000,
                invoked_function_arn: "arn:aws:lambda:eu-west-1:123456789012:function:f".into(),
                xray_header: Some(
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                        .into()
                ),
            })
        );
    }

    #[test]
    fn parses_invoke_without_tracing() {
        let body =
            br#"{"eventType":"INVOKE","deadlineMs":5,"requestId":"r","invokedFunctionArn":"a"}"#;
        let NextEvent::Invoke(ev) = parse_next(StatusCode::OK, body).unwrap() else {
            panic!("not an invoke");
        };
        assert_eq!(ev.xray_header, None);
    }

    #[test]
    fn parses_shutdown() {
        let body =
            br#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1700000002000}"#;
        assert_eq!(
            parse_next(StatusCode::OK, body).unwrap(),
            NextEvent::Shutdown(ShutdownEvent {
                reason: "spindown".into(),
                deadline_ms: 1_700_000_002_000
            })
        );
    }

    #[test]
    fn rejects_bad_events() {
        for body in [
            &br#"{"eventType":"RESTART","deadlineMs":1}"#[..],
            br#"{"eventType":"INVOKE","requestId":"r"}"#,
            br#"{"eventType":"INVOKE","deadlineMs":1}"#,
            b"not json",
        ] {
            assert!(
                matches!(
                    parse_next(StatusCode::OK, body),
                    Err(ApiError::Invalid { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_next(StatusCode::INTERNAL_SERVER_ERROR, b"boom"),
            Err(ApiError::Status { .. })
        ));
    }

    #[test]
    fn subscription_outcomes() {
        assert_eq!(
            parse_subscribe(StatusCode::OK, b"OK").unwrap(),
            Subscribed::Yes
        );
        assert_eq!(
            parse_subscribe(
                StatusCode::ACCEPTED,
                br#"{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}"#
            )
            .unwrap(),
            Subscribed::NotSupported
        );
        let err = parse_subscribe(
            StatusCode::BAD_REQUEST,
            br#"{"errorType":"ValidationError"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("400"), "{err}");
        assert!(err.to_string().contains("ValidationError"), "{err}");
    }
}
