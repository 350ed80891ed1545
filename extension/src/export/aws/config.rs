//! The AWS side of export configuration: SigV4 per signal, CloudWatch Logs' group and stream,
//! the limits of AWS's OTLP endpoints, and where AWS APIs are reached.
//!
//! | variable | default | accepted |
//! |---|---|---|
//! | `CONTRAIL_EXPORTER_OTLP_[{SIGNAL}_]AUTH` | `none` | `none`, `sigv4` (sign every request with the function's credentials); the per-signal one wins |
//! | `CONTRAIL_EXPORTER_OTLP_[{SIGNAL}_]SIGV4_REGION` | the endpoint host's region (`SERVICE.REGION.amazonaws.com[.cn]`), else `AWS_REGION` | a region name |
//! | `CONTRAIL_EXPORTER_OTLP_[{SIGNAL}_]SIGV4_SERVICE` | the endpoint host's first label (`xray`, `logs`, `monitoring`) | a SigV4 service name; required when the host does not tell |
//! | `CONTRAIL_CLOUDWATCH_LOG_GROUP` | `/aws/lambda/` + `AWS_LAMBDA_FUNCTION_NAME` | a log group name (`[.-_/#A-Za-z0-9]`, 1–512) |
//! | `CONTRAIL_CLOUDWATCH_LOG_STREAM` | `contrail` | a log stream name (no `:` or `*`, 1–512) |
//! | `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_SSM` | AWS's public endpoints | `http(s)://` URL (the AWS SDKs' variables: a VPC endpoint, or a local emulator) |
//!
//! The group and stream go into `x-aws-log-group` and `x-aws-log-stream` of the logs requests
//! when the logs signal is signed for the `logs` service (a header of those names in
//! `…_HEADERS` wins). CloudWatch Logs writes only to a group and stream that exist.
//!
//! Requests to a signed `xray`, `logs` or `monitoring` endpoint keep to that endpoint's limits
//! ([`EndpointLimits`]): a larger batch is split, never sent whole to be refused.

use http::Uri;

use crate::config::REGION_VAR;
use crate::config::env::{ConfigError, Env, non_empty};
use crate::export::config::MAX_REQUEST_BYTES;
use crate::pipeline::Signal;

pub(crate) const AUTH_VAR: &str = "CONTRAIL_EXPORTER_OTLP_AUTH";
pub(crate) const SIGV4_REGION_VAR: &str = "CONTRAIL_EXPORTER_OTLP_SIGV4_REGION";
pub(crate) const SIGV4_SERVICE_VAR: &str = "CONTRAIL_EXPORTER_OTLP_SIGV4_SERVICE";
pub(crate) const LOG_GROUP_VAR: &str = "CONTRAIL_CLOUDWATCH_LOG_GROUP";
pub(crate) const LOG_STREAM_VAR: &str = "CONTRAIL_CLOUDWATCH_LOG_STREAM";
pub(crate) const ENDPOINT_URL_VAR: &str = "AWS_ENDPOINT_URL";
pub(crate) const ENDPOINT_URL_SECRETS_MANAGER_VAR: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
pub(crate) const ENDPOINT_URL_SSM_VAR: &str = "AWS_ENDPOINT_URL_SSM";
pub(crate) const FUNCTION_NAME_VAR: &str = "AWS_LAMBDA_FUNCTION_NAME";

/// The default log stream.
pub(crate) const DEFAULT_LOG_STREAM: &str = "contrail";

/// How a signal's requests are authenticated (besides any configured header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    SigV4 {
        region: String,
        service: String,
    },
}

impl Auth {
    /// The SigV4 service, when signed.
    pub(crate) fn service(&self) -> Option<&str> {
        match self {
            Auth::None => None,
            Auth::SigV4 { service, .. } => Some(service),
        }
    }
}

/// What one request to a signal's endpoint may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointLimits {
    /// Encoded bytes before compression.
    pub(crate) bytes: usize,
    /// Spans, log records or data points.
    pub(crate) records: u64,
}

impl EndpointLimits {
    /// Contrail's own limits: [`MAX_REQUEST_BYTES`], any number of records.
    pub(crate) const DEFAULT: EndpointLimits = EndpointLimits {
        bytes: MAX_REQUEST_BYTES,
        records: u64::MAX,
    };

    /// The documented limits of AWS's OTLP endpoints, by SigV4 service: X-Ray 10,000 spans and
    /// 5 MB, CloudWatch Logs 10,000 log events and 1 MB, CloudWatch metrics 1,000 data points
    /// and 1 MB (taken as 10^6 bytes); each capped at [`MAX_REQUEST_BYTES`].
    pub(crate) fn of_service(service: Option<&str>) -> EndpointLimits {
        let (bytes, records) = match service {
            Some("xray") => (MAX_REQUEST_BYTES, 10_000),
            Some("logs") => (MAX_REQUEST_BYTES, 10_000),
            Some("monitoring") => (1_000_000, 1_000),
            _ => return EndpointLimits::DEFAULT,
        };
        EndpointLimits {
            bytes: bytes.min(MAX_REQUEST_BYTES),
            records,
        }
    }
}

/// `SERVICE.REGION.amazonaws.com` or `.amazonaws.com.cn`: the service and region it names.
pub(crate) fn service_and_region(host: &str) -> Option<(&str, &str)> {
    let host = host.trim_end_matches('.');
    let lower_ok = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
    if !lower_ok {
        return None;
    }
    let mut labels = host.split('.');
    let service = labels.next()?;
    let region = labels.next()?;
    if region == "amazonaws" || service.is_empty() || region.is_empty() {
        return None;
    }
    Some((service, region))
}

fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "TRACES",
        Signal::Metrics => "METRICS",
        Signal::Logs => "LOGS",
    }
}

/// `CONTRAIL_EXPORTER_OTLP_{SIGNAL}_{suffix}`, else `CONTRAIL_EXPORTER_OTLP_{suffix}`.
fn contrail_var(env: &dyn Env, signal: Signal, general: &str) -> Option<(String, String)> {
    let suffix = general.trim_start_matches("CONTRAIL_EXPORTER_OTLP_");
    let own = format!("CONTRAIL_EXPORTER_OTLP_{}_{suffix}", signal_name(signal));
    non_empty(env, &own)
        .map(|v| (own, v))
        .or_else(|| non_empty(env, general).map(|v| (general.to_owned(), v)))
}

/// The authentication of `signal`, whose endpoint is `endpoint`.
pub(crate) fn auth(
    env: &dyn Env,
    signal: Signal,
    endpoint: Option<&Uri>,
    errors: &mut Vec<ConfigError>,
) -> Auth {
    let Some((var, value)) = contrail_var(env, signal, AUTH_VAR) else {
        return Auth::None;
    };
    match value.to_ascii_lowercase().as_str() {
        "none" => return Auth::None,
        "sigv4" => {}
        _ => {
            errors.push(ConfigError::new(var, value, "expected none or sigv4"));
            return Auth::None;
        }
    }
    let from_host = endpoint
        .and_then(Uri::host)
        .and_then(service_and_region)
        .map(|(s, r)| (s.to_owned(), r.to_owned()));
    let region = contrail_var(env, signal, SIGV4_REGION_VAR)
        .map(|(_, v)| v)
        .or_else(|| from_host.as_ref().map(|(_, r)| r.clone()))
        .or_else(|| non_empty(env, REGION_VAR));
    let service = contrail_var(env, signal, SIGV4_SERVICE_VAR)
        .map(|(_, v)| v)
        .or_else(|| from_host.as_ref().map(|(s, _)| s.clone()));
    match (region, service) {
        (Some(region), Some(service)) => Auth::SigV4 { region, service },
        (region, service) => {
            let mut missing = Vec::new();
            if region.is_none() {
                missing.push(format!(
                    "the region (set {SIGV4_REGION_VAR} or {REGION_VAR})"
                ));
            }
            if service.is_none() {
                missing.push(format!(
                    "the service (set {SIGV4_SERVICE_VAR}: xray, logs or monitoring)"
                ));
            }
            errors.push(ConfigError::new(
                var,
                value,
                format!("the endpoint host does not name {}", missing.join(" nor ")),
            ));
            Auth::None
        }
    }
}

/// `x-aws-log-group` and `x-aws-log-stream` for a logs signal signed for `logs`.
pub(crate) fn log_headers(env: &dyn Env, errors: &mut Vec<ConfigError>) -> [(String, String); 2] {
    let group = non_empty(env, LOG_GROUP_VAR).unwrap_or_else(|| {
        format!(
            "/aws/lambda/{}",
            non_empty(env, FUNCTION_NAME_VAR).unwrap_or_else(|| "unknown".into())
        )
    });
    let valid_group = (1..=512).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
    if !valid_group {
        errors.push(ConfigError::new(
            LOG_GROUP_VAR,
            &group,
            "a log group name has 1 to 512 of the characters a-z A-Z 0-9 . _ - / #",
        ));
    }
    let stream = non_empty(env, LOG_STREAM_VAR).unwrap_or_else(|| DEFAULT_LOG_STREAM.into());
    let valid_stream = (1..=512).contains(&stream.len())
        && !stream.contains([':', '*'])
        && http::HeaderValue::from_str(&stream).is_ok();
    if !valid_stream {
        errors.push(ConfigError::new(
            LOG_STREAM_VAR,
            &stream,
            "a log stream name has 1 to 512 characters, none of them : or *",
        ));
    }
    [
        ("x-aws-log-group".to_owned(), group),
        ("x-aws-log-stream".to_owned(), stream),
    ]
}

/// Where AWS APIs other than the OTLP endpoints are reached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Endpoints {
    all: Option<Uri>,
    secrets_manager: Option<Uri>,
    ssm: Option<Uri>,
}

impl Endpoints {
    pub(crate) fn from_env(env: &dyn Env, errors: &mut Vec<ConfigError>) -> Endpoints {
        let mut read = |var: &str| {
            let value = non_empty(env, var)?;
            match value.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http") | Some("https"))
                        && uri.host().is_some() =>
                {
                    Some(uri)
                }
                _ => {
                    errors.push(ConfigError::new(
                        var,
                        value,
                        "expected an http:// or https:// URL",
                    ));
                    None
                }
            }
        };
        Endpoints {
            all: read(ENDPOINT_URL_VAR),
            secrets_manager: read(ENDPOINT_URL_SECRETS_MANAGER_VAR),
            ssm: read(ENDPOINT_URL_SSM_VAR),
        }
    }

    /// The URL of `service` (`secretsmanager` or `ssm`) in `region` of `partition`.
    pub(crate) fn url(&self, service: &str, region: &str, partition: &str) -> Uri {
        let own = match service {
            "secretsmanager" => self.secrets_manager.as_ref(),
            "ssm" => self.ssm.as_ref(),
            _ => None,
        };
        if let Some(uri) = own.or(self.all.as_ref()) {
            return uri.clone();
        }
        let suffix = if partition == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{service}.{region}.{suffix}/")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("https://invalid/"))
    }
}

#[cfg(test)]
mod tests;
