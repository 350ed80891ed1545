//! The function's AWS credentials, for SigV4.
//!
//! | source | when | variables |
//! |---|---|---|
//! | the environment | a normal function: Lambda gives extensions the execution role's keys | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` |
//! | the container credentials endpoint | SnapStart, where those keys are absent so that a restored snapshot never holds expired ones | `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) |
//!
//! The environment wins when it has both keys. The endpoint is asked with `GET`, the token
//! verbatim as `Authorization`, and answers `{"AccessKeyId", "SecretAccessKey", "Token",
//! "Expiration"}`; its URL must be `https`, or `http` to a loopback address or to the container
//! hosts AWS uses (`169.254.170.2`, `169.254.170.23`, `fd00:ec2::23`). Fetched credentials are
//! kept until [`REFRESH_BEFORE`] before they expire, and dropped at once after a SnapStart
//! restore or when a service says the security token is invalid or expired
//! ([`Provider::invalidate`]). Nothing is fetched before the first export or secret needs it, and
//! nothing runs on a timer: a frozen environment has no clock to keep.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HOST};
use http::{HeaderValue, Method, Request, Uri};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{Instant, timeout_at};

use crate::config::env::{ConfigError, Env, non_empty};
use crate::export::aws::client::{field, text};
use crate::export::aws::sigv4::Credentials;
use crate::export::body::Chunks;
use crate::export::conn::{Origin, Pool};
use crate::export::request::host_header;
use crate::intake::telemetry::time::parse_date_time;

pub(crate) const ACCESS_KEY_ID_VAR: &str = "AWS_ACCESS_KEY_ID";
pub(crate) const SECRET_ACCESS_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";
pub(crate) const SESSION_TOKEN_VAR: &str = "AWS_SESSION_TOKEN";
pub(crate) const CONTAINER_URI_VAR: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub(crate) const CONTAINER_TOKEN_VAR: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
pub(crate) const CONTAINER_TOKEN_FILE_VAR: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// Fetched credentials are replaced when less than this is left before they expire.
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The longest one call to the credentials endpoint may take.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The keys of the environment.
    Static(Credentials),
    /// The container credentials endpoint (SnapStart).
    Container { uri: Uri, token: Token },
    /// Neither: signing is impossible.
    Missing,
}

/// The container endpoint's authorization token, or the file it is read from at each fetch.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Value(String),
    File(String),
    None,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Value(_) => f.write_str("Token(<redacted>)"),
            Token::File(path) => write!(f, "TokenFile({path})"),
            Token::None => f.write_str("None"),
        }
    }
}

impl Source {
    /// Read the variables of the module table. Only a container URL that may not be used is an
    /// error.
    pub(crate) fn from_env(env: &dyn Env) -> Result<Source, ConfigError> {
        let key = non_empty(env, ACCESS_KEY_ID_VAR);
        let secret = non_empty(env, SECRET_ACCESS_KEY_VAR);
        if let (Some(access_key_id), Some(secret_access_key)) = (key, secret) {
            return Ok(Source::Static(Credentials {
                access_key_id,
                secret_access_key,
                session_token: non_empty(env, SESSION_TOKEN_VAR),
            }));
        }
        let Some(raw) = non_empty(env, CONTAINER_URI_VAR) else {
            return Ok(Source::Missing);
        };
        let uri = container_uri(&raw).map_err(|r| ConfigError::new(CONTAINER_URI_VAR, &raw, r))?;
        let token = match (
            non_empty(env, CONTAINER_TOKEN_FILE_VAR),
            env.var(CONTAINER_TOKEN_VAR)
                .filter(|t| !t.trim().is_empty()),
        ) {
            (Some(path), _) => Token::File(path),
            (None, Some(token)) => Token::Value(token.trim().to_owned()),
            (None, None) => Token::None,
        };
        Ok(Source::Container { uri, token })
    }
}

/// The container endpoint URL, if it is one the SDKs would use.
fn container_uri(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw.parse().map_err(|e| format!("not a URL ({e})"))?;
    let host = uri
        .host()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']');
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") => {
            let allowed = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| {
                    ip.is_loopback()
                        || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
                            .iter()
                            .any(|a| a.parse::<IpAddr>().ok() == Some(ip))
                });
            if allowed {
                Ok(uri)
            } else {
                Err("an http URL must name a loopback address or 169.254.170.2, 169.254.170.23 or fd00:ec2::23; use https otherwise".into())
            }
        }
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

/// Why no credentials are at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CredentialsError {
    #[error(
        "no AWS credentials: neither {ACCESS_KEY_ID_VAR}/{SECRET_ACCESS_KEY_VAR} nor {CONTAINER_URI_VAR} is set"
    )]
    Missing,
    /// The endpoint could not be reached or answered badly: worth trying again.
    #[error("the container credentials endpoint failed: {0}")]
    Fetch(String),
}

/// The credentials in use, fetched when needed. One per process, shared by the exporter and
/// the secrets resolver behind a `tokio::sync::Mutex`, so only one fetch runs at a time.
#[derive(Debug)]
pub(crate) struct Provider {
    source: Source,
    cached: Option<(Credentials, Option<SystemTime>)>,
    pool: Pool,
    /// Fetches from the container endpoint, for the tests and for diagnostics.
    pub(crate) fetches: u64,
}

impl Provider {
    pub(crate) fn new(source: Source) -> Provider {
        Provider {
            source,
            cached: None,
            pool: Pool::new(Vec::new()),
            fetches: 0,
        }
    }

    /// Credentials valid for at least [`REFRESH_BEFORE`], fetched by `deadline` if need be.
    pub(crate) async fn get(&mut self, deadline: Instant) -> Result<Credentials, CredentialsError> {
        let now = SystemTime::now();
        if let Some((creds, expires)) = &self.cached
            && expires.is_none_or(|at| at > now + REFRESH_BEFORE)
        {
            return Ok(creds.clone());
        }
        let (uri, token) = match &self.source {
            Source::Static(creds) => return Ok(creds.clone()),
            Source::Missing => return Err(CredentialsError::Missing),
            Source::Container { uri, token } => (uri.clone(), token.clone()),
        };
        let until = deadline.min(Instant::now() + FETCH_TIMEOUT);
        self.fetches += 1;
        let fetched = match timeout_at(until, fetch(&mut self.pool, &uri, &token)).await {
            Ok(result) => result,
            Err(_) => {
                self.pool.discard_broken();
                Err(CredentialsError::Fetch("no answer in time".into()))
            }
        };
        match fetched {
            Ok((creds, expires)) => {
                self.cached = Some((creds.clone(), expires));
                Ok(creds)
            }
            // Still-valid credentials beat none while the endpoint is failing.
            Err(e) => match &self.cached {
                Some((creds, expires)) if expires.is_none_or(|at| at > now) => Ok(creds.clone()),
                _ => Err(e),
            },
        }
    }

    /// Forget fetched credentials: after a SnapStart restore, or when a service refused them.
    pub(crate) fn invalidate(&mut self) {
        self.cached = None;
    }
}

/// The shared provider, locked. Boxed, like [`current`]: the exporter and the secrets resolver
/// share one copy of the lock's future instead of inlining it into each of their own.
pub(crate) fn lock(
    shared: &Mutex<Provider>,
) -> Pin<Box<dyn Future<Output = MutexGuard<'_, Provider>> + '_>> {
    Box::pin(shared.lock())
}

/// [`Provider::get`] on the shared provider, dropping fetched credentials first when
/// `invalidate`: the one place the exporter and the secrets resolver get credentials from.
pub(crate) fn current(
    shared: &Mutex<Provider>,
    deadline: Instant,
    invalidate: bool,
) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + '_>> {
    Box::pin(async move {
        let mut provider = lock(shared).await;
        if invalidate {
            provider.invalidate();
        }
        provider.get(deadline).await
    })
}

async fn fetch(
    pool: &mut Pool,
    uri: &Uri,
    token: &Token,
) -> Result<(Credentials, Option<SystemTime>), CredentialsError> {
    let fail = |m: String| CredentialsError::Fetch(m);
    let token = match token {
        Token::Value(t) => Some(t.clone()),
        Token::File(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read {CONTAINER_TOKEN_FILE_VAR}: {e}")))?
                .trim()
                .to_owned(),
        ),
        Token::None => None,
    };
    let origin = Origin::of(uri).ok_or_else(|| fail("the URL has no host".into()))?;
    let host = host_header(uri).ok_or_else(|| fail("the URL has no host".into()))?;
    let target = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let authorization = match token {
        Some(t) => Some(
            HeaderValue::from_str(&t)
                .map_err(|_| fail("the authorization token is not a valid header value".into()))?,
        ),
        None => None,
    };
    let make = || {
        let mut request = Request::new(Chunks::default());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = target.parse().unwrap_or_else(|_| Uri::from_static("/"));
        request.headers_mut().insert(HOST, host.clone());
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(a) = &authorization {
            request.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        request
    };
    let response = pool
        .send(&origin, &make)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status.is_success() {
        return Err(fail(format!(
            "HTTP {}: {}",
            response.status.as_u16(),
            crate::export::body::error_message(&response.headers, &response.body)
        )));
    }
    parse(&response.body)
}

/// The endpoint's JSON answer.
fn parse(body: &Bytes) -> Result<(Credentials, Option<SystemTime>), CredentialsError> {
    let c: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        CredentialsError::Fetch(format!("the answer is not the credentials JSON ({e})"))
    })?;
    let string = |name: &str| text(&c, name);
    let expires = match field(&c, "Expiration").and_then(serde_json::Value::as_str) {
        Some(s) => Some(
            parse_date_time(s)
                .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
                .ok_or_else(|| {
                    CredentialsError::Fetch(format!("Expiration {s:?} is not an RFC 3339 time"))
                })?,
        ),
        None => None,
    };
    let (access_key_id, secret_access_key) = (string("AccessKeyId"), string("SecretAccessKey"));
    if access_key_id.is_empty() || secret_access_key.is_empty() {
        return Err(CredentialsError::Fetch(
            "the answer has no AccessKeyId or SecretAccessKey".into(),
        ));
    }
    let token = string("Token");
    Ok((
        Credentials::new(
            access_key_id,
            secret_access_key,
            (!token.is_empty()).then_some(token),
        ),
        expires,
    ))
}

#[cfg(test)]
mod tests;
