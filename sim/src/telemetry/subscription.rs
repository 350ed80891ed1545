//! Subscription requests: parsing and validating them as the platform does.

use std::net::SocketAddr;

use serde_json::Value;

use super::{SANDBOX_HOST, Schema, Stream};

/// Where a subscriber receives its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// HTTP POST of a JSON array to `path`, connecting to `addr` with `Host: host`.
    Http {
        host: String,
        addr: SocketAddr,
        path: String,
    },
    /// Newline-delimited JSON over TCP to `addr`, no acknowledgement.
    Tcp { addr: SocketAddr },
}

/// Validated buffering settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buffering {
    pub max_items: usize,
    pub max_bytes: usize,
    pub timeout_ms: u64,
}

/// What a `buffering` field may be, and what it is when absent.
struct Range {
    key: &'static str,
    default: u64,
    min: u64,
    max: u64,
}

const MAX_ITEMS: Range = Range {
    key: "maxItems",
    default: 1_000,
    min: 1_000,
    max: 10_000,
};
const MAX_BYTES: Range = Range {
    key: "maxBytes",
    default: 262_144,
    min: 262_144,
    max: 1_048_576,
};
const TIMEOUT_MS: Range = Range {
    key: "timeoutMs",
    default: 1_000,
    min: 25,
    max: 30_000,
};

impl Default for Buffering {
    fn default() -> Self {
        Buffering {
            max_items: MAX_ITEMS.default as usize,
            max_bytes: MAX_BYTES.default as usize,
            timeout_ms: TIMEOUT_MS.default,
        }
    }
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub schema: Schema,
    /// The streams chosen (`platform`, `function`, `extension`), each once.
    pub types: Vec<String>,
    pub buffering: Buffering,
    pub destination: Destination,
}

/// Why a subscription request was refused: the platform answers 400 `ValidationError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ValidationError(pub String);

type Object = serde_json::Map<String, Value>;

/// Validates a subscription body as the platform does.
pub(crate) fn parse_subscription(
    body: &[u8],
    managed_instances: bool,
) -> Result<Subscription, ValidationError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ValidationError(format!("request body is not valid JSON: {e}")))?;
    let request = value
        .as_object()
        .ok_or_else(|| ValidationError("request body must be a JSON object".into()))?;
    Ok(Subscription {
        schema: parse_schema(request, managed_instances)?,
        types: parse_types(request)?,
        buffering: parse_buffering(request)?,
        destination: parse_destination(request)?,
    })
}

/// `schemaVersion`: one of the three; Lambda Managed Instances accept only 2025-01-29.
fn parse_schema(request: &Object, managed_instances: bool) -> Result<Schema, ValidationError> {
    let given = request
        .get("schemaVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| ValidationError("schemaVersion is required".into()))?;
    let schema = Schema::parse(given).ok_or_else(|| {
        ValidationError(format!(
            "schemaVersion {given:?} is not supported: use 2025-01-29, 2022-12-13 or 2022-07-01"
        ))
    })?;
    if managed_instances && schema != Schema::V20250129 {
        return Err(ValidationError(format!(
            "schemaVersion {given:?} is not supported on Lambda Managed Instances: use 2025-01-29"
        )));
    }
    Ok(schema)
}

/// `types`: a non-empty array of stream names (repeats are ignored).
fn parse_types(request: &Object) -> Result<Vec<String>, ValidationError> {
    let given = request
        .get("types")
        .and_then(Value::as_array)
        .filter(|types| !types.is_empty())
        .ok_or_else(|| ValidationError("types must be a non-empty array".into()))?;
    let mut types = Vec::new();
    for t in given {
        let name = t.as_str().unwrap_or_default();
        if Stream::parse(name).is_none() {
            return Err(ValidationError(format!(
                "types: {t} is not one of platform, function, extension"
            )));
        }
        if !types.iter().any(|known: &String| known == name) {
            types.push(name.to_owned());
        }
    }
    Ok(types)
}

/// `buffering`: optional, and each of its fields within Lambda's range.
fn parse_buffering(request: &Object) -> Result<Buffering, ValidationError> {
    match request.get("buffering") {
        None | Some(Value::Null) => Ok(Buffering::default()),
        Some(Value::Object(b)) => Ok(Buffering {
            max_items: usize::try_from(bounded(b, &MAX_ITEMS)?)
                .unwrap_or(MAX_ITEMS.default as usize),
            max_bytes: usize::try_from(bounded(b, &MAX_BYTES)?)
                .unwrap_or(MAX_BYTES.default as usize),
            timeout_ms: bounded(b, &TIMEOUT_MS)?,
        }),
        Some(other) => Err(ValidationError(format!(
            "buffering must be an object, got {other}"
        ))),
    }
}

fn bounded(buffering: &Object, range: &Range) -> Result<u64, ValidationError> {
    let Range {
        key,
        default,
        min,
        max,
    } = *range;
    match buffering.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ValidationError(format!(
                "buffering.{key} must be an integer between {min} and {max}, got {v}"
            ))),
        },
    }
}

/// `destination`: HTTP or TCP, to the sandbox host (or loopback) on a port other than 9001.
fn parse_destination(request: &Object) -> Result<Destination, ValidationError> {
    let destination = request
        .get("destination")
        .and_then(Value::as_object)
        .ok_or_else(|| ValidationError("destination is required".into()))?;
    let protocol = destination
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("");
    let uri = destination
        .get("URI")
        .and_then(Value::as_str)
        .ok_or_else(|| ValidationError("destination.URI is required".into()))?;
    match protocol {
        "HTTP" => parse_http_destination(uri),
        "TCP" => parse_tcp_destination(uri),
        other => Err(ValidationError(format!(
            "destination.protocol {other:?} is not supported: use HTTP or TCP"
        ))),
    }
}

/// The loopback address a destination host stands for: the sandbox host name, `localhost`,
/// or a loopback (or unspecified) IP address.
fn resolve_host(host: &str, port: u16, uri: &str) -> Result<SocketAddr, ValidationError> {
    if port == 9001 {
        return Err(ValidationError(format!(
            "destination {uri:?}: port 9001 is reserved"
        )));
    }
    if port == 0 {
        return Err(ValidationError(format!(
            "destination {uri:?}: a port is required"
        )));
    }
    let ip = match host {
        SANDBOX_HOST | "localhost" => Some(std::net::Ipv4Addr::LOCALHOST.into()),
        h => h.parse::<std::net::IpAddr>().ok(),
    };
    match ip {
        Some(ip) if ip.is_loopback() || ip.is_unspecified() => Ok(SocketAddr::new(ip, port)),
        _ => Err(ValidationError(format!(
            "destination {uri:?}: host must be {SANDBOX_HOST} (or a loopback address)"
        ))),
    }
}

fn split_host_port(authority: &str, uri: &str) -> Result<(String, u16), ValidationError> {
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| ValidationError(format!("destination {uri:?}: a port is required")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ValidationError(format!("destination {uri:?}: bad port {port:?}")))?;
    Ok((host.to_owned(), port))
}

fn parse_http_destination(uri: &str) -> Result<Destination, ValidationError> {
    let rest = uri.strip_prefix("http://").ok_or_else(|| {
        ValidationError(format!(
            "destination {uri:?}: an HTTP destination must start with http://"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority, uri)?;
    let addr = resolve_host(&host, port, uri)?;
    Ok(Destination::Http {
        host: authority.to_owned(),
        addr,
        path: path.to_owned(),
    })
}

fn parse_tcp_destination(uri: &str) -> Result<Destination, ValidationError> {
    let authority = uri.strip_prefix("tcp://").unwrap_or(uri);
    let authority = authority.trim_end_matches('/');
    let (host, port) = split_host_port(authority, uri)?;
    let addr = resolve_host(&host, port, uri)?;
    Ok(Destination::Tcp { addr })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn accepts_a_valid_subscription_and_resolves_the_sandbox_host() {
        let s = parse_subscription(
            &body(
                json!({"schemaVersion":"2022-12-13","types":["platform","function"],
                "buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":25},
                "destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8123/t"}}),
            ),
            false,
        )
        .unwrap();
        assert_eq!(s.schema, Schema::V20221213);
        assert_eq!(s.buffering.timeout_ms, 25);
        match s.destination {
            Destination::Http { addr, path, .. } => {
                assert_eq!(addr, "127.0.0.1:8123".parse().unwrap());
                assert_eq!(path, "/t");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_what_the_platform_refuses() {
        let cases = [
            json!({"schemaVersion":"2021-01-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platfrom"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":[],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxItems":999},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxBytes":1048577},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":24},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:9001"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://example.com:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"UDP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"https://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"]}),
        ];
        for c in cases {
            assert!(parse_subscription(&body(c.clone()), false).is_err(), "{c}");
        }
        let ok = json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}});
        assert!(parse_subscription(&body(ok.clone()), true).is_err());
        assert!(parse_subscription(&body(ok), false).is_ok());
    }
}
