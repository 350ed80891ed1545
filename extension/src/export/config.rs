//! Export configuration from the environment: where and how each signal is sent, and the
//! buffer's bound. (When to flush is `lifecycle::policy`'s: `CONTRAIL_FLUSH*`.)
//!
//! | variable | default | accepted |
//! |---|---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | none: nothing is exported (see below) | `http://` or `https://` URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended to its path |
//! | `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` | from the base endpoint | `http(s)://` URL, used as is |
//! | `OTEL_EXPORTER_OTLP_[{SIGNAL}_]HEADERS` | none | `k=v,k2=v2`, values percent-decoded; the per-signal list replaces the general one |
//! | `OTEL_EXPORTER_OTLP_[{SIGNAL}_]TIMEOUT` | `10000` | milliseconds per request, `1` or more (a flush deadline still cuts it short) |
//! | `OTEL_EXPORTER_OTLP_[{SIGNAL}_]COMPRESSION` | `none` | `gzip`, `none` |
//! | `OTEL_EXPORTER_OTLP_[{SIGNAL}_]CERTIFICATE` | none | path of a PEM file of certificates to trust for `https` besides the public web roots |
//! | `OTEL_EXPORTER_OTLP_[{SIGNAL}_]PROTOCOL` | `http/protobuf` | `http/protobuf`, `http/json`; `grpc` is refused (no gRPC client in Contrail) |
//! | `CONTRAIL_BUFFER_MAX_BYTES` | `4194304` (4 MiB) | `65536`–`268435456` |
//!
//! SigV4, the CloudWatch Logs headers and `AWS_ENDPOINT_URL*` are `export::aws::config`'s; a
//! header value may name a Secrets Manager secret or an SSM parameter
//! (`export::aws::secrets::reference`).
//!
//! Each `OTEL_EXPORTER_OTLP_*` variable can also be given as `CONTRAIL_EXPORTER_OTLP_*` (same
//! suffix), which wins. In Lambda, prefer the `CONTRAIL_` names: a function's own OpenTelemetry
//! SDK reads the `OTEL_` names too and would export straight to the backend, making the function
//! wait for it, instead of to Contrail's receiver on localhost.
//!
//! Every bad variable is reported, not only the first ([`ExportConfig::from_env`] returns them
//! all). Header values never appear in errors: they usually hold credentials.
//!
//! With no endpoint at all, Contrail does not fall back to the OpenTelemetry default
//! `http://localhost:4318`: that is where Contrail's own local receiver listens, so it would
//! export to itself. An endpoint on a loopback address with port 4318 or 4317 (the OTLP/gRPC
//! receiver, and the gRPC SDKs' default) is refused for the same reason. A signal without an endpoint is dropped and counted (`no_endpoint`).

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::env::{ConfigError, Env, non_empty, percent_decode, whole_number};
use crate::export::aws;
use crate::export::aws::config::{Auth, EndpointLimits, Endpoints};
use crate::export::aws::credentials::Source;
use crate::export::aws::secrets::reference::{self, Piece, Reference};
use crate::pipeline::Signal;

pub(crate) const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub(crate) const HEADERS_VAR: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub(crate) const TIMEOUT_VAR: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub(crate) const COMPRESSION_VAR: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
pub(crate) const CERTIFICATE_VAR: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
pub(crate) const PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub(crate) const BUFFER_MAX_BYTES_VAR: &str = "CONTRAIL_BUFFER_MAX_BYTES";

/// Default per-request timeout (the OpenTelemetry default).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default buffer bound: 4 MiB.
pub const DEFAULT_BUFFER_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest export request body, before compression.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The default ports of Contrail's own local OTLP receivers: gRPC, HTTP.
pub(crate) const RECEIVER_PORTS: [u16; 2] = [4317, 4318];

/// How request bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `http/protobuf`: the entries as the buffer keeps them.
    #[default]
    HttpProtobuf,
    /// `http/json`: OTLP's JSON encoding.
    HttpJson,
}

impl Protocol {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "application/x-protobuf",
            Protocol::HttpJson => "application/json",
        }
    }
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No `Content-Encoding`.
    #[default]
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// Where and how one signal is exported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignalConfig {
    /// The full URL requests are POSTed to; `None` when no endpoint is configured.
    pub(crate) endpoint: Option<Uri>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) timeout: Duration,
    pub(crate) compression: Compression,
    pub(crate) protocol: Protocol,
    /// Certificates to trust for `https` besides the public web roots
    /// (`OTEL_EXPORTER_OTLP_[{SIGNAL}_]CERTIFICATE`: a private CA, a self-signed collector).
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    /// SigV4 or nothing.
    pub(crate) auth: Auth,
    /// Headers whose values name secrets, resolved at send time.
    pub(crate) secret_headers: Vec<(HeaderName, Vec<Piece>)>,
    /// What one request may carry.
    pub(crate) limits: EndpointLimits,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            endpoint: None,
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            compression: Compression::None,
            protocol: Protocol::HttpProtobuf,
            extra_roots: Vec::new(),
            auth: Auth::None,
            secret_headers: Vec::new(),
            limits: EndpointLimits::DEFAULT,
        }
    }
}

/// Everything delivery needs: the exporter of each signal and the buffer's bound.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportConfig {
    pub(crate) traces: SignalConfig,
    pub(crate) metrics: SignalConfig,
    pub(crate) logs: SignalConfig,
    pub(crate) buffer_max_bytes: usize,
    pub(crate) batch_max_bytes: usize,
    /// The function's credentials, for SigV4 and the secrets.
    pub(crate) credentials: Source,
    /// Where Secrets Manager and SSM are reached.
    pub(crate) endpoints: Endpoints,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            traces: SignalConfig::default(),
            metrics: SignalConfig::default(),
            logs: SignalConfig::default(),
            buffer_max_bytes: DEFAULT_BUFFER_MAX_BYTES,
            batch_max_bytes: MAX_REQUEST_BYTES,
            credentials: Source::Missing,
            endpoints: Endpoints::default(),
        }
    }
}

/// An exporter variable and the name it was read from. `CONTRAIL_EXPORTER_OTLP_*` wins over
/// `OTEL_EXPORTER_OTLP_*`: in a function that has its own OpenTelemetry SDK, the `OTEL_` names
/// also steer that SDK, which must keep exporting to Contrail's receiver on localhost rather
/// than to the backend.
fn exporter_var(env: &dyn Env, otel_name: &str) -> Option<(String, String)> {
    let own = otel_name.replacen("OTEL_", "CONTRAIL_", 1);
    non_empty(env, &own)
        .map(|v| (own, v))
        .or_else(|| non_empty(env, otel_name).map(|v| (otel_name.to_owned(), v)))
}

fn signal_var(signal: Signal, suffix: &str) -> String {
    let s = match signal {
        Signal::Traces => "TRACES",
        Signal::Metrics => "METRICS",
        Signal::Logs => "LOGS",
    };
    format!("OTEL_EXPORTER_OTLP_{s}_{suffix}")
}

impl ExportConfig {
    pub(crate) fn signal(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    #[cfg(test)]
    /// Whether at least one signal has somewhere to go.
    pub(crate) fn has_endpoint(&self) -> bool {
        Signal::ALL
            .iter()
            .any(|s| self.signal(*s).endpoint.is_some())
    }

    /// Every secret reference of every signal's headers (repeats are merged by the resolver).
    pub(crate) fn secret_references(&self) -> Vec<Reference> {
        [&self.traces, &self.metrics, &self.logs]
            .iter()
            .flat_map(|s| &s.secret_headers)
            .flat_map(|(_, pieces)| pieces)
            .filter_map(|p| match p {
                Piece::Secret(r) => Some(r.clone()),
                Piece::Text(_) => None,
            })
            .collect()
    }

    /// Read every variable in the module table; report every bad one.
    pub(crate) fn from_env(env: &dyn Env) -> Result<ExportConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let base_endpoint = exporter_var(env, ENDPOINT_VAR)
            .and_then(|(var, v)| parse_endpoint(&var, &v).map_err(|e| errors.push(e)).ok());
        let base_headers = exporter_var(env, HEADERS_VAR)
            .and_then(|(var, v)| parse_headers(&var, &v).map_err(|e| errors.push(e)).ok());
        let base_timeout = exporter_var(env, TIMEOUT_VAR)
            .and_then(|(var, v)| parse_timeout(&var, &v).map_err(|e| errors.push(e)).ok());
        let base_compression = exporter_var(env, COMPRESSION_VAR)
            .and_then(|(var, v)| parse_compression(&var, &v).map_err(|e| errors.push(e)).ok());
        let base_roots = exporter_var(env, CERTIFICATE_VAR)
            .and_then(|(var, v)| parse_certificate(&var, &v).map_err(|e| errors.push(e)).ok());
        let base_protocol = exporter_var(env, PROTOCOL_VAR)
            .and_then(|(var, v)| parse_protocol(&var, &v).map_err(|e| errors.push(e)).ok());

        let mut signal_config = |signal: Signal| -> SignalConfig {
            let endpoint = match exporter_var(env, &signal_var(signal, "ENDPOINT")) {
                Some((var, v)) => parse_endpoint(&var, &v).map_err(|e| errors.push(e)).ok(),
                None => base_endpoint
                    .as_ref()
                    .map(|base| append_signal_path(base, signal)),
            };
            let headers = exporter_var(env, &signal_var(signal, "HEADERS"))
                .and_then(|(var, v)| parse_headers(&var, &v).map_err(|e| errors.push(e)).ok())
                .or_else(|| base_headers.clone())
                .unwrap_or_default();
            let timeout = exporter_var(env, &signal_var(signal, "TIMEOUT"))
                .and_then(|(var, v)| parse_timeout(&var, &v).map_err(|e| errors.push(e)).ok())
                .or(base_timeout)
                .unwrap_or(DEFAULT_TIMEOUT);
            let compression = exporter_var(env, &signal_var(signal, "COMPRESSION"))
                .and_then(|(var, v)| parse_compression(&var, &v).map_err(|e| errors.push(e)).ok())
                .or(base_compression)
                .unwrap_or_default();
            let protocol = exporter_var(env, &signal_var(signal, "PROTOCOL"))
                .and_then(|(var, v)| parse_protocol(&var, &v).map_err(|e| errors.push(e)).ok())
                .or(base_protocol)
                .unwrap_or_default();
            let extra_roots = exporter_var(env, &signal_var(signal, "CERTIFICATE"))
                .and_then(|(var, v)| parse_certificate(&var, &v).map_err(|e| errors.push(e)).ok())
                .or_else(|| base_roots.clone())
                .unwrap_or_default();
            let auth = aws::config::auth(env, signal, endpoint.as_ref(), &mut errors);
            let mut headers = headers;
            if signal == Signal::Logs && auth.service() == Some("logs") {
                for (name, value) in aws::config::log_headers(env, &mut errors) {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) && !headers.iter().any(|(n, _)| *n == name)
                    {
                        headers.push((name, value));
                    }
                }
            }
            let secret_headers = take_secret_headers(signal, &mut headers, &mut errors);
            SignalConfig {
                endpoint,
                headers,
                timeout,
                compression,
                protocol,
                extra_roots,
                limits: EndpointLimits::of_service(auth.service()),
                auth,
                secret_headers,
            }
        };
        let traces = signal_config(Signal::Traces);
        let metrics = signal_config(Signal::Metrics);
        let logs = signal_config(Signal::Logs);

        let buffer_max_bytes = match whole_number(env, BUFFER_MAX_BYTES_VAR, 65_536, 268_435_456) {
            Ok(n) => n.map_or(DEFAULT_BUFFER_MAX_BYTES, |n| n as usize),
            Err(e) => {
                errors.push(e);
                DEFAULT_BUFFER_MAX_BYTES
            }
        };

        let credentials = Source::from_env(env)
            .map_err(|e| errors.push(e))
            .unwrap_or(Source::Missing);
        let endpoints = Endpoints::from_env(env, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ExportConfig {
            traces,
            metrics,
            logs,
            buffer_max_bytes,
            batch_max_bytes: MAX_REQUEST_BYTES.min(buffer_max_bytes),
            credentials,
            endpoints,
        })
    }
}

fn parse_endpoint(var: &str, value: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = value
        .parse()
        .map_err(|e| ConfigError::new(var, value, format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ConfigError::new(
                var,
                value,
                "expected a URL starting with http:// or https://",
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(ConfigError::new(var, value, "the URL has no host"));
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback() || ip.is_unspecified())
            .unwrap_or(false);
    if loopback && RECEIVER_PORTS.contains(&port) {
        return Err(ConfigError::new(
            var,
            value,
            format!(
                "Contrail's own OTLP receiver listens on port {port} of this host; exporting there would loop"
            ),
        ));
    }
    Ok(uri)
}

/// `base` + `/v1/{signal}`, keeping the base's path and query.
pub(crate) fn append_signal_path(base: &Uri, signal: Signal) -> Uri {
    let path = base.path().trim_end_matches('/');
    let mut pq = format!("{path}/v1/{}", signal.as_str());
    if let Some(q) = base.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = base.clone().into_parts();
    match PathAndQuery::try_from(pq) {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return base.clone(),
    }
    Uri::from_parts(parts).unwrap_or_else(|_| base.clone())
}

fn redacted(value: &str) -> String {
    value
        .split(',')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{}=<redacted>", k.trim()),
            None => pair.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_headers(var: &str, value: &str) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let bad = |reason: String| ConfigError::new(var, redacted(value), reason);
    let mut out = Vec::new();
    for pair in value.split(',') {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(bad(format!(
                "expected key=value pairs separated by commas; `{}` has no `=`",
                pair.trim()
            )));
        };
        let k = percent_decode(k.trim()).map_err(|e| bad(e.to_owned()))?;
        let v = percent_decode(v.trim()).map_err(|e| bad(e.to_owned()))?;
        let name = HeaderName::from_bytes(&k).map_err(|_| {
            bad(format!(
                "`{}` is not a valid header name",
                String::from_utf8_lossy(&k)
            ))
        })?;
        let value = HeaderValue::from_bytes(&v)
            .map_err(|_| bad(format!("the value of `{name}` is not a valid header value")))?;
        out.push((name, value));
    }
    Ok(out)
}

/// Move the headers whose values name a secret out of `headers`, parsed.
fn take_secret_headers(
    signal: Signal,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(HeaderName, Vec<Piece>)> {
    let mut out = Vec::new();
    headers.retain(|(name, value)| {
        let Ok(text) = value.to_str() else {
            return true;
        };
        if !text.contains("${arn:") {
            return true;
        }
        match reference::parse_value(text) {
            Ok(pieces) => out.push((name.clone(), pieces)),
            Err(reason) => errors.push(ConfigError::new(
                format!(
                    "{} ({name})",
                    signal_var(signal, "HEADERS").replacen("OTEL_", "CONTRAIL_", 1)
                ),
                "<redacted>",
                reason,
            )),
        }
        false
    });
    out
}

/// The PEM certificates in the file `path` (read once, at start-up, only when the variable is
/// set).
fn parse_certificate(var: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad = |reason: String| ConfigError::new(var, path, reason);
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read the file: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("the file holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

fn parse_timeout(var: &str, value: &str) -> Result<Duration, ConfigError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
        _ => Err(ConfigError::new(
            var,
            value,
            "expected a whole number of milliseconds, 1 or more",
        )),
    }
}

fn parse_compression(var: &str, value: &str) -> Result<Compression, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err(ConfigError::new(var, value, "expected gzip or none")),
    }
}

fn parse_protocol(var: &str, value: &str) -> Result<Protocol, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Err(ConfigError::new(
            var,
            value,
            "gRPC export is not supported; use http/protobuf (port 4318 on most backends)",
        )),
        _ => Err(ConfigError::new(
            var,
            value,
            "expected http/protobuf or http/json",
        )),
    }
}

#[cfg(test)]
mod tests;
