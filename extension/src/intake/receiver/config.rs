//! The receiver's configuration, read from the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::config::env::{ConfigError, Env, non_empty};

/// Where the OTLP/HTTP receiver listens: `host:port` with an IP address or `localhost`, or `off`.
pub(crate) const ENDPOINT_VAR: &str = "CONTRAIL_RECEIVER_ENDPOINT";
/// Where the OTLP/gRPC receiver listens, in the same form.
pub(crate) const GRPC_ENDPOINT_VAR: &str = "CONTRAIL_RECEIVER_GRPC_ENDPOINT";
/// The largest request accepted, in bytes, before and after gzip decompression: an OTLP/HTTP
/// body, or the one message of an OTLP/gRPC call.
pub(crate) const MAX_BODY_BYTES_VAR: &str = "CONTRAIL_RECEIVER_MAX_BODY_BYTES";
/// The bytes both receivers may hold at once for the requests they read, decode and have
/// queued (ADR 0015).
pub(crate) const MAX_PENDING_BYTES_VAR: &str = "CONTRAIL_RECEIVER_MAX_PENDING_BYTES";
/// The connections each receiver keeps open at once.
pub(crate) const MAX_CONNECTIONS_VAR: &str = "CONTRAIL_RECEIVER_MAX_CONNECTIONS";
/// How long a connection may wait without a request in progress: its first bytes, a
/// request's headers, the next request of a kept-alive connection, the next gRPC call.
pub(crate) const IDLE_TIMEOUT_VAR: &str = "CONTRAIL_RECEIVER_IDLE_TIMEOUT_MS";

/// The OpenTelemetry SDKs' default OTLP/HTTP endpoint, on loopback only.
pub(crate) const DEFAULT_ENDPOINT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4318);
/// The OpenTelemetry SDKs' default OTLP/gRPC endpoint, on loopback only.
pub(crate) const DEFAULT_GRPC_ENDPOINT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4317);
/// 4 MiB: a batch of 512 spans with many attributes is well under 1 MiB.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// 64: an SDK keeps one or a few connections per exporter.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// 30 s: longer than the SDKs' batch schedule (5 s), so a kept-alive connection is rarely
/// closed between two exports of a busy function.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request has to deliver its body (OTLP/HTTP) or message (OTLP/gRPC) once its
/// headers have arrived: the SDKs' default export timeout, after which the client gave up.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

const MIN_MAX_BODY_BYTES: usize = 1024;
const MAX_MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;
const MAX_MAX_CONNECTIONS: usize = 4096;
const MIN_IDLE_TIMEOUT_MS: u64 = 100;
const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;
const MAX_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const OFF_WORDS: [&str; 4] = ["off", "none", "false", "disabled"];

/// How the local receiver runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReceiverConfig {
    /// The address to listen on for OTLP/HTTP; `None` when that receiver is turned off.
    pub(crate) endpoint: Option<SocketAddr>,
    /// The address to listen on for OTLP/gRPC; `None` when that receiver is turned off.
    pub(crate) grpc_endpoint: Option<SocketAddr>,
    /// The largest body (or gRPC message) accepted, compressed or decompressed.
    pub(crate) max_body_bytes: usize,
    /// The bytes both receivers hold at once for requests being read, decoded or queued;
    /// never less than [`pending_floor`] of `max_body_bytes`.
    pub(crate) max_pending_bytes: usize,
    /// The connections each receiver keeps open at once; more are refused.
    pub(crate) max_connections: usize,
    /// How long a connection may wait without a request in progress before it is closed.
    pub(crate) idle_timeout: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            endpoint: Some(DEFAULT_ENDPOINT),
            grpc_endpoint: Some(DEFAULT_GRPC_ENDPOINT),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_pending_bytes: pending_floor(DEFAULT_MAX_BODY_BYTES),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl ReceiverConfig {
    /// Read the configuration, reporting every variable that is set to an unusable value.
    pub(crate) fn from_env(env: &dyn Env) -> Result<ReceiverConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut config = ReceiverConfig::default();

        if let Some(value) = non_empty(env, ENDPOINT_VAR) {
            match parse_endpoint(&value, DEFAULT_ENDPOINT.port()) {
                Ok(endpoint) => config.endpoint = endpoint,
                Err(reason) => errors.push(ConfigError::new(ENDPOINT_VAR, value, reason)),
            }
        }
        let grpc_value = non_empty(env, GRPC_ENDPOINT_VAR);
        if let Some(value) = &grpc_value {
            match parse_endpoint(value, DEFAULT_GRPC_ENDPOINT.port()) {
                Ok(endpoint) => config.grpc_endpoint = endpoint,
                Err(reason) => errors.push(ConfigError::new(GRPC_ENDPOINT_VAR, value, reason)),
            }
        }
        if same_port(config.endpoint, config.grpc_endpoint) {
            // Name the variable that moved one onto the other.
            let (var, value, other) = match grpc_value {
                Some(value) => (GRPC_ENDPOINT_VAR, value, ENDPOINT_VAR),
                None => (
                    ENDPOINT_VAR,
                    non_empty(env, ENDPOINT_VAR).unwrap_or_default(),
                    GRPC_ENDPOINT_VAR,
                ),
            };
            errors.push(ConfigError::new(
                var,
                value,
                format!("the other receiver ({other}) listens on that port: give each its own, or turn one off"),
            ));
        }
        if let Some(value) = non_empty(env, MAX_BODY_BYTES_VAR) {
            match parse_max_body(&value) {
                Ok(bytes) => config.max_body_bytes = bytes,
                Err(reason) => errors.push(ConfigError::new(MAX_BODY_BYTES_VAR, value, reason)),
            }
        }
        // By default the bound follows the largest request: one of any allowed size fits.
        config.max_pending_bytes = pending_floor(config.max_body_bytes);
        if let Some(value) = non_empty(env, MAX_PENDING_BYTES_VAR) {
            match parse_max_pending(&value, config.max_body_bytes) {
                Ok(bytes) => config.max_pending_bytes = bytes,
                Err(reason) => errors.push(ConfigError::new(MAX_PENDING_BYTES_VAR, value, reason)),
            }
        }
        if let Some(value) = non_empty(env, MAX_CONNECTIONS_VAR) {
            match parse_in_range(&value, 1, MAX_MAX_CONNECTIONS as u64, "connections") {
                Ok(n) => config.max_connections = n as usize,
                Err(reason) => errors.push(ConfigError::new(MAX_CONNECTIONS_VAR, value, reason)),
            }
        }
        if let Some(value) = non_empty(env, IDLE_TIMEOUT_VAR) {
            match parse_in_range(
                &value,
                MIN_IDLE_TIMEOUT_MS,
                MAX_IDLE_TIMEOUT_MS,
                "milliseconds",
            ) {
                Ok(ms) => config.idle_timeout = Duration::from_millis(ms),
                Err(reason) => errors.push(ConfigError::new(IDLE_TIMEOUT_VAR, value, reason)),
            }
        }

        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

/// Whether two endpoints would take the same port (port 0 picks a free one each time).
fn same_port(a: Option<SocketAddr>, b: Option<SocketAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.port() != 0 && a.port() == b.port() && overlap(a, b),
        _ => false,
    }
}

/// Whether binding both addresses would collide: the same IP, or either one unspecified.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

/// `host:port` or an off word; `example_port` is the one error messages suggest.
fn parse_endpoint(value: &str, example_port: u16) -> Result<Option<SocketAddr>, String> {
    if OFF_WORDS.iter().any(|w| value.eq_ignore_ascii_case(w)) {
        return Ok(None);
    }
    if value.contains("://") {
        return Err(format!(
            "expected host:port without a scheme, e.g. 127.0.0.1:{example_port}, or off"
        ));
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, e.g. 127.0.0.1:{example_port}, or off"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    if host.eq_ignore_ascii_case("localhost") {
        Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)))
    } else {
        Err(format!(
            "host {host:?} is not an IP address or localhost (use [::1]:PORT for IPv6)"
        ))
    }
}

fn parse_max_body(value: &str) -> Result<usize, String> {
    let bytes: usize = value
        .parse()
        .map_err(|_| "expected a whole number of bytes".to_owned())?;
    if (MIN_MAX_BODY_BYTES..=MAX_MAX_BODY_BYTES).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "expected {MIN_MAX_BODY_BYTES} to {MAX_MAX_BODY_BYTES} bytes"
        ))
    }
}

/// The least byte bound that lets one request of the largest size in alone: a gzip body is
/// held compressed while it inflates, so its two copies (each at most the cap) are held at once.
fn pending_floor(max_body: usize) -> usize {
    max_body.saturating_mul(2)
}

fn parse_max_pending(value: &str, max_body: usize) -> Result<usize, String> {
    let min = pending_floor(max_body);
    let max = MAX_MAX_PENDING_BYTES.max(min);
    match value.parse::<usize>() {
        Ok(bytes) if (min..=max).contains(&bytes) => Ok(bytes),
        _ => Err(format!(
            "expected a whole number of bytes from {min} (twice {MAX_BODY_BYTES_VAR}, so that the largest request fits with its inflated copy) to {max}"
        )),
    }
}

fn parse_in_range(value: &str, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number of {unit} from {min} to {max}"
        )),
    }
}
