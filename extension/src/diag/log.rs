//! Contrail's own diagnostics: one line per message on stderr, prefixed `contrail:`.
//!
//! Lambda sends an extension's stderr back to it as `extension` telemetry records, so a line
//! written per record would feed itself. Log at most once per event of the lifecycle, and use
//! [`Once`] or [`Every`] for anything that can repeat.
//!
//! The level comes from `CONTRAIL_LOG_LEVEL` (`off`, `error`, `warn`, `info`, `debug`; default
//! `warn`; [`Level::from_env`]) and is set once at start-up with [`set_level`]. A bad value only
//! affects Contrail's own diagnostics, so it is a warning, not a configuration error.
//!
//! Inside the crate: `diag::warn!("listener bound to {addr}")` (also `error!`, `info!`, `debug!`),
//! and for repeatable conditions a static `diag::Once` or `diag::Every`:
//! `static FULL: diag::Once = diag::Once::new(); FULL.warn(format_args!("queue full"));`

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::env::{ConfigError, Env, non_empty};

/// How much Contrail says about itself on stderr.
pub(crate) const LOG_LEVEL_VAR: &str = "CONTRAIL_LOG_LEVEL";

/// How much Contrail says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    /// The default when `CONTRAIL_LOG_LEVEL` is unset.
    pub(crate) const DEFAULT: Level = Level::Warn;

    /// Parse a level name, case-insensitively. `None` for anything else.
    pub(crate) fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Some(Level::Off),
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" | "trace" => Some(Level::Debug),
            _ => None,
        }
    }

    /// `CONTRAIL_LOG_LEVEL`, or the default; a value that is not a level is the default and
    /// comes back as a warning to print.
    pub(crate) fn from_env(env: &dyn Env) -> (Level, Option<ConfigError>) {
        let Some(v) = non_empty(env, LOG_LEVEL_VAR) else {
            return (Level::DEFAULT, None);
        };
        match Level::parse(&v) {
            Some(level) => (level, None),
            None => (
                Level::DEFAULT,
                Some(ConfigError::new(
                    LOG_LEVEL_VAR,
                    v,
                    "expected off, error, warn, info or debug; using warn",
                )),
            ),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            _ => Level::Debug,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::DEFAULT as u8);

/// Set the process-wide level.
pub(crate) fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The process-wide level.
pub(crate) fn level() -> Level {
    Level::from_u8(LEVEL.load(Ordering::Relaxed))
}

/// Whether a message at `level` would be written.
pub(crate) fn enabled(level: Level) -> bool {
    level != Level::Off && level <= self::level()
}

/// Write one line at `level`, if enabled: `contrail: LEVEL message`.
pub(crate) fn write(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "contrail: {} {}\n",
        level.as_str().to_ascii_uppercase(),
        args
    );
    // One write call per line so lines from different tasks never interleave. A failed write
    // to stderr has nowhere else to go.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[allow(unused_macros)]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::diag::write($crate::diag::Level::Error, format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::diag::write($crate::diag::Level::Warn, format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::diag::write($crate::diag::Level::Info, format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::diag::write($crate::diag::Level::Debug, format_args!($($arg)*)) };
}

// Path-scoped macros, re-exported by `diag`: `diag::warn!(...)` after `use crate::diag;`.
#[allow(unused_imports)]
pub(crate) use {log_debug as debug, log_error as error, log_info as info, log_warn as warn};

/// A warning written at most once per process, however often it is triggered.
#[derive(Debug)]
pub(crate) struct Once {
    done: AtomicBool,
}

impl Once {
    pub(crate) const fn new() -> Self {
        Once {
            done: AtomicBool::new(false),
        }
    }

    /// Write `args` as a warning the first time only. Returns whether it was written now.
    pub(crate) fn warn(&self, args: fmt::Arguments<'_>) -> bool {
        self.at(Level::Warn, args)
    }

    /// Write `args` at `level` the first time only. Returns whether this call was the first.
    pub(crate) fn at(&self, level: Level, args: fmt::Arguments<'_>) -> bool {
        if self.done.swap(true, Ordering::Relaxed) {
            return false;
        }
        write(level, args);
        true
    }
}

impl Default for Once {
    fn default() -> Self {
        Once::new()
    }
}

/// A warning written at most once per interval; the calls suppressed in between are counted
/// and reported with the next line (`(N similar messages suppressed)`).
#[derive(Debug)]
pub(crate) struct Every {
    interval: Duration,
    /// When the last line was written.
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Every {
    pub(crate) const fn new(interval: Duration) -> Self {
        Every {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Write `args` as a warning unless one was written less than the interval ago.
    /// Returns whether it was written.
    pub(crate) fn warn(&self, args: fmt::Arguments<'_>) -> bool {
        self.warn_at(Instant::now(), args)
    }

    /// [`Every::warn`] with an explicit clock reading, for tests.
    pub(crate) fn warn_at(&self, now: Instant, args: fmt::Arguments<'_>) -> bool {
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = match *last {
                None => true,
                Some(at) => now.saturating_duration_since(at) >= self.interval,
            };
            if !due {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *last = Some(now);
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if suppressed > 0 {
            write(
                Level::Warn,
                format_args!("{args} ({suppressed} similar messages suppressed)"),
            );
        } else {
            write(Level::Warn, args);
        }
        true
    }

    #[cfg(test)]
    /// How many calls were suppressed since the last written line.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_level_names() {
        assert_eq!(Level::parse("DEBUG"), Some(Level::Debug));
        assert_eq!(Level::parse(" warn "), Some(Level::Warn));
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("off"), Some(Level::Off));
        assert_eq!(Level::parse("error"), Some(Level::Error));
        assert_eq!(Level::parse("info"), Some(Level::Info));
        assert_eq!(Level::parse("verbose"), None);
        assert_eq!(Level::parse(""), None);
    }

    #[test]
    fn the_level_comes_from_the_environment_and_defaults_to_warn() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(Level::from_env(&none), (Level::Warn, None));
        assert_eq!(
            Level::from_env(&[(LOG_LEVEL_VAR, "debug")]),
            (Level::Debug, None)
        );
    }

    #[test]
    fn a_bad_log_level_is_a_warning_not_an_error() {
        let env = [(LOG_LEVEL_VAR, "loud")];
        let (level, warning) = Level::from_env(&env);
        assert_eq!(level, Level::Warn);
        assert_eq!(warning.map(|w| w.var), Some(LOG_LEVEL_VAR.to_owned()));
    }

    #[test]
    fn levels_order_from_quiet_to_loud() {
        assert!(Level::Error < Level::Warn && Level::Warn < Level::Info);
        assert!(Level::Info < Level::Debug);
    }

    #[test]
    fn macros_are_usable_by_path() {
        set_level(Level::Warn);
        crate::diag::warn!("a warning with {}", "arguments");
        crate::diag::debug!("not written at warn");
        assert!(enabled(Level::Error) && enabled(Level::Warn) && !enabled(Level::Info));
    }

    #[test]
    fn once_writes_only_the_first_time() {
        let once = Once::new();
        assert!(once.warn(format_args!("first")));
        assert!(!once.warn(format_args!("second")));
        assert!(!once.at(Level::Error, format_args!("third")));
    }

    #[test]
    fn every_suppresses_within_the_interval_and_counts() {
        let every = Every::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(every.warn_at(t0, format_args!("a")));
        assert!(!every.warn_at(t0 + Duration::from_secs(1), format_args!("b")));
        assert!(!every.warn_at(t0 + Duration::from_secs(9), format_args!("c")));
        assert_eq!(every.suppressed(), 2);
        assert!(every.warn_at(t0 + Duration::from_secs(10), format_args!("d")));
        assert_eq!(every.suppressed(), 0);
    }
}
