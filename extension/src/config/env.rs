//! Where configuration comes from: the process environment in production, a map in tests.

use std::collections::HashMap;

/// A source of environment variables.
pub trait Env {
    /// The value of `name`, if set (blank or not).
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// One variable whose value Contrail cannot use.
///
/// Displays as `NAME=value is not valid: reason`, the form used in `init/error` messages and
/// in the warning Contrail prints when it falls back to a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) var: String,
    pub(crate) value: String,
    pub(crate) reason: String,
}

impl ConfigError {
    pub(crate) fn new(
        var: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            var: var.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: {}",
            self.var, self.value, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// A variable that is set to something other than blank.
pub(crate) fn non_empty(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A variable that must be a whole number from `min` to `max`; `Ok(None)` when it is not set.
pub(crate) fn whole_number(
    env: &dyn Env,
    var: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = non_empty(env, var) else {
        return Ok(None);
    };
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::new(
            var,
            v,
            format!("expected a whole number from {min} to {max}"),
        )),
    }
}

/// Percent-decode a value of a `k=v,k2=v2` list (`OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_HEADERS`), as the OpenTelemetry specification asks.
pub(crate) fn percent_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&c, tail)) = rest.split_first() {
        if c == b'%' {
            let (hi, lo) = match tail {
                [hi, lo, ..] => (hex_digit(*hi), hex_digit(*lo)),
                _ => (None, None),
            };
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err("a `%` is not followed by two hexadecimal digits");
            };
            out.push(hi << 4 | lo);
            rest = tail.get(2..).unwrap_or_default();
        } else {
            out.push(c);
            rest = tail;
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc").as_deref(), Ok(&b"a b,c"[..]));
        assert_eq!(percent_decode("plain").as_deref(), Ok(&b"plain"[..]));
        for bad in ["%", "%2", "%zz", "%+1", "x%-1"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }
}
