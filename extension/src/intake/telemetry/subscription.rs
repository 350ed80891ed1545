//! The Telemetry API subscription: what Contrail subscribes to, and its variables.
//!
//! | variable | default | allowed | when the value is not valid |
//! |---|---|---|---|
//! | `CONTRAIL_TELEMETRY_PORT` | `0` (an ephemeral port chosen by the system) | `0`, or `1024`–`65535` except `9001` | fatal (`init/error`) |
//! | `CONTRAIL_TELEMETRY_TYPES` | `platform,function,extension` | a comma-separated subset of those three, at least one | fatal |
//! | `CONTRAIL_TELEMETRY_MAX_ITEMS` | `1000` | `1000`–`10000` (the Telemetry API's limits) | fatal |
//! | `CONTRAIL_TELEMETRY_MAX_BYTES` | `262144` | `262144`–`1048576` | fatal |
//! | `CONTRAIL_TELEMETRY_TIMEOUT_MS` | `25` | `25`–`30000` | fatal |
//!
//! The request itself is built and its answer read by [`crate::lambda_api`]
//! (`subscribe_request`, `parse_subscribe`).

use serde::Serialize;

use crate::config::env::{ConfigError, Env, non_empty, whole_number};

/// Port the listener binds.
pub(crate) const TELEMETRY_PORT_VAR: &str = "CONTRAIL_TELEMETRY_PORT";
/// Streams subscribed to.
pub(crate) const TELEMETRY_TYPES_VAR: &str = "CONTRAIL_TELEMETRY_TYPES";
/// `buffering.maxItems`.
pub(crate) const TELEMETRY_MAX_ITEMS_VAR: &str = "CONTRAIL_TELEMETRY_MAX_ITEMS";
/// `buffering.maxBytes`.
pub(crate) const TELEMETRY_MAX_BYTES_VAR: &str = "CONTRAIL_TELEMETRY_MAX_BYTES";
/// `buffering.timeoutMs`.
pub(crate) const TELEMETRY_TIMEOUT_MS_VAR: &str = "CONTRAIL_TELEMETRY_TIMEOUT_MS";

/// The port Lambda reserves; a telemetry listener must not use it.
pub(crate) const RESERVED_PORT: u16 = 9001;

/// The buffering Contrail asks for unless told otherwise: a small timeout is what makes
/// `platform.runtimeDone` arrive quickly.
pub(crate) const DEFAULT_BUFFERING: Buffering = Buffering {
    max_items: 1000,
    max_bytes: 262_144,
    timeout_ms: 25,
};
const MAX_ITEMS_RANGE: (u64, u64) = (1000, 10_000);
const MAX_BYTES_RANGE: (u64, u64) = (262_144, 1_048_576);
const TIMEOUT_MS_RANGE: (u64, u64) = (25, 30_000);

/// Telemetry API schema versions Contrail can subscribe with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaVersion {
    /// The classic schema.
    V2022_12_13,
    /// Required on Lambda Managed Instances.
    V2025_01_29,
}

impl SchemaVersion {
    /// The `schemaVersion` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SchemaVersion::V2022_12_13 => "2022-12-13",
            SchemaVersion::V2025_01_29 => "2025-01-29",
        }
    }
}

/// Telemetry stream types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TelemetryType {
    /// `platform.*` records: the lifecycle of the environment and each invocation.
    Platform,
    /// What the function writes.
    Function,
    /// What extensions write.
    Extension,
}

impl TelemetryType {
    /// Every stream, the default subscription.
    pub(crate) const ALL: [TelemetryType; 3] = [
        TelemetryType::Platform,
        TelemetryType::Function,
        TelemetryType::Extension,
    ];

    /// Parse a stream name, case-insensitively.
    pub(crate) fn parse(s: &str) -> Option<TelemetryType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "platform" => Some(TelemetryType::Platform),
            "function" => Some(TelemetryType::Function),
            "extension" => Some(TelemetryType::Extension),
            _ => None,
        }
    }
}

/// Telemetry API buffering (limits checked by [`TelemetryConfig::from_env`], not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Buffering {
    /// Records Lambda batches at most.
    pub(crate) max_items: u32,
    /// Bytes Lambda batches at most.
    pub(crate) max_bytes: u32,
    /// How long Lambda batches at most.
    pub(crate) timeout_ms: u32,
}

/// What to subscribe to and where Lambda should send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The schema the records are written in.
    pub(crate) schema: SchemaVersion,
    /// Port of the listener; the destination is `http://sandbox.localdomain:PORT/`.
    pub(crate) port: u16,
    /// The streams.
    pub(crate) types: Vec<TelemetryType>,
    /// How Lambda batches the records.
    pub(crate) buffering: Buffering,
}

impl Subscription {
    /// Where Lambda sends the records.
    pub(crate) fn destination_uri(&self) -> String {
        format!("http://sandbox.localdomain:{}/", self.port)
    }

    /// The JSON body of the subscription request.
    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "schemaVersion": self.schema.as_str(),
            "destination": {"protocol": "HTTP", "URI": self.destination_uri()},
            "types": self.types,
            "buffering": self.buffering,
        })
    }
}

/// How the Telemetry API answered the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subscribed {
    /// Records will come.
    Yes,
    /// 202 `Telemetry.NotSupported` (Runtime Interface Emulator, `sam local`): no telemetry.
    NotSupported,
}

/// The Telemetry API subscription, apart from the port actually bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TelemetryConfig {
    /// Port to bind the listener on (0: ephemeral).
    pub(crate) port: u16,
    /// The streams to subscribe to.
    pub(crate) types: Vec<TelemetryType>,
    /// How Lambda should batch the records.
    pub(crate) buffering: Buffering,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            port: 0,
            types: TelemetryType::ALL.to_vec(),
            buffering: DEFAULT_BUFFERING,
        }
    }
}

impl TelemetryConfig {
    /// Read every variable in the module table; report every bad one (all are fatal).
    pub(crate) fn from_env(env: &dyn Env) -> Result<TelemetryConfig, Vec<ConfigError>> {
        let mut config = TelemetryConfig::default();
        let mut errors = Vec::new();

        if let Some(v) = non_empty(env, TELEMETRY_PORT_VAR) {
            match parse_port(&v) {
                Ok(port) => config.port = port,
                Err(reason) => errors.push(ConfigError::new(TELEMETRY_PORT_VAR, v, reason)),
            }
        }

        if let Some(v) = non_empty(env, TELEMETRY_TYPES_VAR) {
            match parse_types(&v) {
                Ok(types) => config.types = types,
                Err(reason) => errors.push(ConfigError::new(TELEMETRY_TYPES_VAR, v, reason)),
            }
        }

        let b = &mut config.buffering;
        for (var, (min, max), slot) in [
            (TELEMETRY_MAX_ITEMS_VAR, MAX_ITEMS_RANGE, &mut b.max_items),
            (TELEMETRY_MAX_BYTES_VAR, MAX_BYTES_RANGE, &mut b.max_bytes),
            (
                TELEMETRY_TIMEOUT_MS_VAR,
                TIMEOUT_MS_RANGE,
                &mut b.timeout_ms,
            ),
        ] {
            match whole_number(env, var, min, max) {
                Ok(Some(n)) => *slot = u32::try_from(n).unwrap_or(u32::MAX),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }

        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

fn parse_port(v: &str) -> Result<u16, String> {
    let port: u16 = v
        .parse()
        .map_err(|_| "expected a port number: 0 (any free port) or 1024 to 65535".to_owned())?;
    if port == RESERVED_PORT {
        return Err(format!("port {RESERVED_PORT} is reserved by Lambda"));
    }
    if port != 0 && port < 1024 {
        return Err("expected 0 (any free port) or 1024 to 65535".into());
    }
    Ok(port)
}

fn parse_types(v: &str) -> Result<Vec<TelemetryType>, String> {
    let mut types = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let t = TelemetryType::parse(item).ok_or_else(|| {
            format!("{item:?} is not a telemetry type; expected platform, function, extension")
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        return Err("expected at least one of platform, function, extension".into());
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_nothing_is_set() {
        let none: [(&str, &str); 0] = [];
        let config = TelemetryConfig::from_env(&none).unwrap();
        assert_eq!(config, TelemetryConfig::default());
        assert_eq!(config.buffering, DEFAULT_BUFFERING);
        assert_eq!(config.types.len(), 3);
    }

    #[test]
    fn reads_valid_values() {
        let env = [
            (TELEMETRY_PORT_VAR, "4243"),
            (TELEMETRY_TYPES_VAR, "platform, function,platform"),
            (TELEMETRY_MAX_ITEMS_VAR, "10000"),
            (TELEMETRY_MAX_BYTES_VAR, "1048576"),
            (TELEMETRY_TIMEOUT_MS_VAR, "30000"),
        ];
        let c = TelemetryConfig::from_env(&env).unwrap();
        assert_eq!(c.port, 4243);
        assert_eq!(
            c.types,
            vec![TelemetryType::Platform, TelemetryType::Function]
        );
        assert_eq!(
            c.buffering,
            Buffering {
                max_items: 10_000,
                max_bytes: 1_048_576,
                timeout_ms: 30_000
            }
        );
    }

    #[test]
    fn reports_every_bad_variable() {
        let env = [
            (TELEMETRY_PORT_VAR, "9001"),
            (TELEMETRY_TYPES_VAR, "platform,metrics"),
            (TELEMETRY_MAX_ITEMS_VAR, "999"),
            (TELEMETRY_MAX_BYTES_VAR, "lots"),
            (TELEMETRY_TIMEOUT_MS_VAR, "24"),
        ];
        let errors = TelemetryConfig::from_env(&env).unwrap_err();
        let vars: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            vec![
                TELEMETRY_PORT_VAR,
                TELEMETRY_TYPES_VAR,
                TELEMETRY_MAX_ITEMS_VAR,
                TELEMETRY_MAX_BYTES_VAR,
                TELEMETRY_TIMEOUT_MS_VAR
            ]
        );
        assert_eq!(
            errors[4].to_string(),
            "CONTRAIL_TELEMETRY_TIMEOUT_MS=\"24\" is not valid: expected a whole number from 25 to 30000"
        );
        assert!(errors[0].reason.contains("reserved"), "{}", errors[0]);
        assert!(errors[1].reason.contains("\"metrics\""), "{}", errors[1]);
    }

    #[test]
    fn port_limits() {
        for bad in ["80", "1023", "65536", "-1", "x", "9001"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_port("0"), Ok(0));
        assert_eq!(parse_port("1024"), Ok(1024));
        assert_eq!(parse_port("65535"), Ok(65535));
    }

    #[test]
    fn empty_type_list_is_an_error() {
        assert!(parse_types(" , ").is_err());
    }
}
