//! What the mapper can be told: how to treat the X-Ray context, metric temporality, bounds.

use crate::config::env::{ConfigError, Env, non_empty};
use crate::mapping::cost::CostConfig;

pub(crate) const XRAY_CONTEXT_VAR: &str = "CONTRAIL_XRAY_CONTEXT";
pub(crate) const TEMPORALITY_VAR: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
pub(crate) const MAX_PENDING_VAR: &str = "CONTRAIL_MAX_PENDING_INVOCATIONS";

/// How the invocation span relates to the X-Ray trace header Lambda gives each invocation.
/// See `docs/adr/0002-xray-context.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum XrayContext {
    /// Trace id = the header's `Root`, span id = its `Parent`: the function's own SDK spans
    /// (made under the same header) nest under the invocation span.
    #[default]
    Parent,
    /// A new trace per invocation, with a span link to the X-Ray context.
    Link,
    /// A new trace per invocation; the header is not used.
    Ignore,
}

/// Aggregation temporality of the metrics Contrail derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Temporality {
    #[default]
    Cumulative,
    /// Also chosen by `lowmemory`: every instrument Contrail has is a counter or a histogram,
    /// which the OpenTelemetry `lowmemory` preference exports as delta.
    Delta,
}

/// How the mapper treats the X-Ray context, which temporality its metrics have, and how much
/// it holds while records are missing.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    pub(crate) xray_context: XrayContext,
    pub(crate) temporality: Temporality,
    /// Invocations whose records are still being assembled, at most. The oldest is emitted
    /// (best effort) to make room.
    pub(crate) max_pending_invocations: usize,
    /// Log records held for one invocation whose trace context is not known yet, at most.
    /// Past it, records are emitted without trace context rather than held.
    pub(crate) max_held_logs: usize,
    /// Cost estimates: read apart by `CostConfig::from_env`, whose bad values only warn.
    pub(crate) cost: CostConfig,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            xray_context: XrayContext::Parent,
            temporality: Temporality::Cumulative,
            max_pending_invocations: 64,
            max_held_logs: 1024,
            cost: CostConfig::default(),
        }
    }
}

const MAX_PENDING_LIMIT: usize = 100_000;

impl MappingConfig {
    /// Read every variable; report every bad one.
    pub(crate) fn from_env(env: &dyn Env) -> Result<MappingConfig, Vec<ConfigError>> {
        let mut config = MappingConfig::default();
        let mut errors = Vec::new();
        if let Some(v) = non_empty(env, XRAY_CONTEXT_VAR) {
            match v.to_ascii_lowercase().as_str() {
                "parent" => config.xray_context = XrayContext::Parent,
                "link" => config.xray_context = XrayContext::Link,
                "ignore" => config.xray_context = XrayContext::Ignore,
                _ => errors.push(ConfigError::new(
                    XRAY_CONTEXT_VAR,
                    v,
                    "expected parent, link or ignore",
                )),
            }
        }
        if let Some(v) = non_empty(env, TEMPORALITY_VAR) {
            match v.to_ascii_lowercase().as_str() {
                "cumulative" => config.temporality = Temporality::Cumulative,
                "delta" | "lowmemory" => config.temporality = Temporality::Delta,
                _ => errors.push(ConfigError::new(
                    TEMPORALITY_VAR,
                    v,
                    "expected cumulative, delta or lowmemory",
                )),
            }
        }
        if let Some(v) = non_empty(env, MAX_PENDING_VAR) {
            match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PENDING_LIMIT).contains(&n) => config.max_pending_invocations = n,
                _ => errors.push(ConfigError::new(
                    MAX_PENDING_VAR,
                    v,
                    format!("expected a whole number from 1 to {MAX_PENDING_LIMIT}"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_unset_or_blank() {
        let env = [(XRAY_CONTEXT_VAR, "  ")];
        assert_eq!(MappingConfig::from_env(&env), Ok(MappingConfig::default()));
    }

    #[test]
    fn reads_every_variable_case_insensitively() {
        let env = [
            (XRAY_CONTEXT_VAR, "Link"),
            (TEMPORALITY_VAR, "LowMemory"),
            (MAX_PENDING_VAR, "8"),
        ];
        let c = MappingConfig::from_env(&env).unwrap();
        assert_eq!(c.xray_context, XrayContext::Link);
        assert_eq!(c.temporality, Temporality::Delta);
        assert_eq!(c.max_pending_invocations, 8);
        let env = [(XRAY_CONTEXT_VAR, "IGNORE"), (TEMPORALITY_VAR, "delta")];
        let c = MappingConfig::from_env(&env).unwrap();
        assert_eq!(c.xray_context, XrayContext::Ignore);
        assert_eq!(c.temporality, Temporality::Delta);
    }

    #[test]
    fn reports_every_bad_variable() {
        let env = [
            (XRAY_CONTEXT_VAR, "child"),
            (TEMPORALITY_VAR, "sometimes"),
            (MAX_PENDING_VAR, "0"),
        ];
        let errors = MappingConfig::from_env(&env).unwrap_err();
        let vars: Vec<_> = errors.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(vars, [XRAY_CONTEXT_VAR, TEMPORALITY_VAR, MAX_PENDING_VAR]);
        assert_eq!(
            errors[0].to_string(),
            "CONTRAIL_XRAY_CONTEXT=\"child\" is not valid: expected parent, link or ignore"
        );
        for bad in ["-1", "many", "100001"] {
            assert!(
                MappingConfig::from_env(&[(MAX_PENDING_VAR, bad)]).is_err(),
                "{bad}"
            );
        }
    }
}
