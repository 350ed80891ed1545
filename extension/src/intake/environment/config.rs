//! The sampler's variables: the RSS sample interval and when the TCP tables are read.

use std::time::Duration;

use crate::config::env::{ConfigError, Env, non_empty, whole_number};
use crate::config::memory_size_mb;

/// The RSS sample interval, in milliseconds; 0 turns the samples off.
pub(crate) const SAMPLE_INTERVAL_VAR: &str = "CONTRAIL_RSS_SAMPLE_INTERVAL_MS";
/// One sample reads a `statm` per process (about 2 µs each); at 250 ms that is under
/// 0.01 ms of CPU per second of invocation, and an invocation of one second gets 4 samples.
pub(crate) const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
pub(super) const MAX_SAMPLE_INTERVAL_MS: u64 = 900_000;
/// Whether established connections are read from the TCP tables: `auto` (the default), `always`
/// or `off`.
pub(crate) const CONNECTIONS_VAR: &str = "CONTRAIL_CONNECTIONS";
/// In `auto`, a reading of the TCP tables may cost the function at most this much of its own
/// time. The kernel walks a connection hash table sized by the machine's memory for each
/// reading: about a thousand buckets in a 128 MB Lambda environment, 262,144 on a 24 GB host
/// running the emulator.
const TABLE_TIME_LIMIT: Duration = Duration::from_millis(1);
/// The memory at which Lambda gives a function one whole vCPU.
const ONE_VCPU_MB: u64 = 1_769;

/// The sampler's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentConfig {
    /// `None`: no RSS samples during invocations.
    pub sample_interval: Option<Duration>,
    /// When the TCP tables are read for the function's connections.
    pub connections: Connections,
    /// In [`Connections::Auto`], the CPU one reading of the TCP tables may cost Contrail
    /// before the readings stop: 1 ms of the function's time at its CPU share, memory ÷
    /// 1,769 MB of one vCPU (72 µs at 128 MB; 1 ms from 1,769 MB up, and by default).
    pub table_cpu_limit: Duration,
}

/// What a reading of the TCP tables may cost Contrail in `auto`: [`TABLE_TIME_LIMIT`] of the
/// function's time at its CPU share, memory ÷ 1,769 MB of one vCPU (Contrail's CPU comes out
/// of that share): 72 µs at 128 MB, 1 ms from 1,769 MB up and when the memory is not known.
pub(crate) fn table_cpu_limit(memory_mb: Option<u64>) -> Duration {
    match memory_mb {
        Some(mb) if mb < ONE_VCPU_MB => TABLE_TIME_LIMIT * mb as u32 / ONE_VCPU_MB as u32,
        _ => TABLE_TIME_LIMIT,
    }
}

/// `CONTRAIL_CONNECTIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connections {
    /// Read them until one reading costs more than
    /// [`EnvironmentConfig::table_cpu_limit`] of CPU; then say so once and stop.
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
            table_cpu_limit: TABLE_TIME_LIMIT,
        }
    }
}

impl EnvironmentConfig {
    /// Read [`SAMPLE_INTERVAL_VAR`] and [`CONNECTIONS_VAR`]; a bad value is fatal (it changes
    /// what is collected). The function's memory sets the table limit; a bad value of it is
    /// the resource's error to report, and leaves the limit at its default here.
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
            let memory_mb = memory_size_mb(env)
                .and_then(Result::ok)
                .and_then(|mb| u64::try_from(mb).ok());
            Ok(EnvironmentConfig {
                sample_interval,
                connections,
                table_cpu_limit: table_cpu_limit(memory_mb),
            })
        } else {
            Err(errors)
        }
    }
}
