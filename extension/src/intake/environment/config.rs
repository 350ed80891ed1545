//! The sampler's variables: the RSS sample interval and when the TCP tables are read.

use std::time::Duration;

use crate::config::env::{ConfigError, Env, non_empty, whole_number};

/// The RSS sample interval, in milliseconds; 0 turns the samples off.
pub(crate) const SAMPLE_INTERVAL_VAR: &str = "CONTRAIL_RSS_SAMPLE_INTERVAL_MS";
/// One sample reads a `statm` per process (about 2 µs each); at 250 ms that is under
/// 0.01 ms of CPU per second of invocation, and an invocation of one second gets 4 samples.
pub(crate) const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
pub(super) const MAX_SAMPLE_INTERVAL_MS: u64 = 900_000;
/// Whether established connections are read from the TCP tables: `auto` (the default), `always`
/// or `off`.
pub(crate) const CONNECTIONS_VAR: &str = "CONTRAIL_CONNECTIONS";

/// The sampler's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentConfig {
    /// `None`: no RSS samples during invocations.
    pub sample_interval: Option<Duration>,
    /// When the TCP tables are read for the function's connections.
    pub connections: Connections,
}

/// `CONTRAIL_CONNECTIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connections {
    /// Read them until one reading costs more than 1 ms of CPU; then say so
    /// once and stop.
    #[default]
    Auto,
    /// Read them whatever they cost.
    Always,
    /// Never read them: no connection figures.
    Off,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        EnvironmentConfig {
            sample_interval: Some(DEFAULT_SAMPLE_INTERVAL),
            connections: Connections::Auto,
        }
    }
}

impl EnvironmentConfig {
    /// Read [`SAMPLE_INTERVAL_VAR`] and [`CONNECTIONS_VAR`]; a bad value is fatal (it changes
    /// what is collected).
    pub(crate) fn from_env(env: &dyn Env) -> Result<EnvironmentConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let sample_interval =
            match whole_number(env, SAMPLE_INTERVAL_VAR, 0, MAX_SAMPLE_INTERVAL_MS) {
                Ok(None) => Some(DEFAULT_SAMPLE_INTERVAL),
                Ok(Some(0)) => None,
                Ok(Some(ms)) => Some(Duration::from_millis(ms)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
        let connections = match non_empty(env, CONNECTIONS_VAR).as_deref() {
            None | Some("auto") => Connections::Auto,
            Some("always") => Connections::Always,
            Some("off") => Connections::Off,
            Some(other) => {
                errors.push(ConfigError::new(
                    CONNECTIONS_VAR,
                    other,
                    "expected auto, always or off",
                ));
                Connections::Auto
            }
        };
        if errors.is_empty() {
            Ok(EnvironmentConfig {
                sample_interval,
                connections,
            })
        } else {
            Err(errors)
        }
    }
}
