//! When to flush: a pure state machine over an injected clock.
//!
//! The policy never reads a clock and never sleeps. The lifecycle loop passes `now` into every
//! call and does what the returned [`Action`] says; tests pass a fake `now`. Every deadline the
//! policy hands out is computed once from the event's deadline and the configured budget, never
//! re-created in a loop.
//!
//! # Driving it
//!
//! ```text
//! on INVOKE (deadline from the event's deadlineMs, see `instant_from_epoch_ms`):
//!     let mut action = policy.on_invoke(now(), invoke_deadline, buffer_fill());
//!     loop {
//!         action = match action {
//!             Action::FlushNow { deadline } => {
//!                 flush(deadline).await;                 // returns by `deadline`
//!                 policy.on_flush_done(now(), buffer_fill())
//!             }
//!             Action::WaitForRuntimeDone { until } => select! {
//!                 _ = runtime_done_for_this_request => policy.on_runtime_done(now()),
//!                 _ = logs_dropped_reported         => policy.on_logs_dropped(now()),
//!                 _ = sleep_until(until)             => policy.on_timer(now()),
//!                 _ = buffer_at_high_water           => policy.on_pressure(now(), buffer_fill()),
//!             },
//!             Action::CallNext => break,
//!         }
//!     }
//!     GET /event/next
//! on SHUTDOWN: Action::FlushNow { deadline } = policy.on_shutdown(now(), shutdown_deadline);
//!     flush(deadline).await; exit
//! ```
//!
//! A `platform.runtimeDone` that arrives while a flush runs is kept (a `watch` or a flag) and
//! reported with `on_runtime_done` after `on_flush_done`; the policy tolerates it at any time.
//!
//! # Modes
//!
//! - [`FlushMode::End`]: wait for this request's `platform.runtimeDone`, then flush within the
//!   budget, then call `next`. A long invocation gets a safety flush each time `interval` has
//!   passed since the last flush, while the function still runs. The wait ends early when
//!   Lambda reports dropped records (runtimeDone may be one of them), and never lasts longer
//!   than `runtime_done_wait` after `INVOKE`: then the end flush runs as if runtimeDone had
//!   come, whatever the invocation's timeout.
//! - [`FlushMode::Periodic`]: at the start of an invocation, flush if `interval` has passed since
//!   the last flush. The export overlaps the function's own work; Contrail calls `next` as soon as
//!   that flush has returned (never later than the budget), without waiting for the runtime.
//! - [`FlushMode::Adaptive`]: behaves as `End` while invocations are sparse and as `Periodic`
//!   while they are frequent, judged from an exponentially weighted moving average (EWMA) of the
//!   gaps between invocation starts, with hysteresis: it switches to periodic when the average
//!   gap falls to `interval / 2` (after [`MIN_GAPS_FOR_PERIODIC`] gaps), and back to end when the
//!   average gap reaches `interval`.
//!
//! Every mode ends with a flush inside the SHUTDOWN deadline minus [`SHUTDOWN_MARGIN`].
//!
//! # A held backend, and flushes cut when the runtime is done
//!
//! While an export endpoint's circuit breaker holds its data ([`FlushPolicy::set_backend_held`],
//! `crate::export::breaker`, ADR 0014), every invocation starts with a flush while the function
//! runs (the breaker probes in it when its backoff has passed) and none waits for
//! `platform.runtimeDone`. A flush issued before the lifecycle knows the runtime is done is cut
//! when it learns it (the lifecycle's business, not the policy's): it reports
//! [`FlushPolicy::on_flush_cut`] instead of `on_flush_done`, which does not pause pressure
//! flushes.
//!
//! # Pressure
//!
//! In every mode, when the export buffer is at least [`HIGH_WATER`] full (every decision that
//! can start a flush is passed the buffer's fill), the policy flushes at the next free opportunity
//! instead of waiting for the interval: at the start of the next invocation (overlapping the
//! function's own work, as periodic does), or during a long invocation while it waits for
//! `platform.runtimeDone` ([`FlushPolicy::on_pressure`]). If a pressure flush leaves the buffer
//! still above the mark (the backend is slow or down), pressure flushes pause for one interval,
//! so a dead backend costs no more than it did without them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::env::{ConfigError, Env, non_empty, whole_number};

/// The flush mode: `end`, `periodic` or `adaptive`.
pub(crate) const FLUSH_VAR: &str = "CONTRAIL_FLUSH";
/// Milliseconds between periodic flushes, and between safety flushes of a long invocation.
pub(crate) const FLUSH_INTERVAL_VAR: &str = "CONTRAIL_FLUSH_INTERVAL_MS";
/// Milliseconds one flush may take during an invocation.
pub(crate) const FLUSH_BUDGET_VAR: &str = "CONTRAIL_FLUSH_BUDGET_MS";
/// Milliseconds after `INVOKE` the end-of-invocation wait for `platform.runtimeDone` may last.
pub(crate) const RUNTIME_DONE_WAIT_VAR: &str = "CONTRAIL_RUNTIME_DONE_WAIT_MS";

/// Time kept between the end of Contrail's work and an invocation's deadline.
pub(crate) const INVOKE_MARGIN: Duration = Duration::from_millis(100);
/// Time kept between the final flush and the SHUTDOWN deadline, to exit cleanly.
pub(crate) const SHUTDOWN_MARGIN: Duration = Duration::from_millis(200);
/// Weight of the newest gap in the moving average of inter-invocation gaps.
pub(crate) const EWMA_WEIGHT: f64 = 0.25;
/// Gaps observed before adaptive mode may leave `End` for `Periodic`.
pub(crate) const MIN_GAPS_FOR_PERIODIC: u32 = 3;

/// Fill level (buffered bytes ÷ the buffer's bound) from which the buffer is flushed at the
/// next free opportunity, whatever the mode. With the default 4 MiB bound that is 1 MiB, one
/// full export request: the rest of the bound is for a backend that is slow or down.
pub(crate) const HIGH_WATER: f64 = 0.25;

/// Default for `CONTRAIL_FLUSH_INTERVAL_MS`.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(20);
/// Default for `CONTRAIL_FLUSH_BUDGET_MS`.
pub(crate) const DEFAULT_BUDGET: Duration = Duration::from_millis(200);
/// Default for `CONTRAIL_RUNTIME_DONE_WAIT_MS`: longer than nearly every request/response
/// invocation (API Gateway gives up on an integration after 29 s, most invocations take well
/// under a second), so their end-of-invocation flush is unaffected, while a runtimeDone that
/// Lambda lost costs at most this much billed time instead of up to the 15-minute timeout.
pub(crate) const DEFAULT_RUNTIME_DONE_WAIT: Duration = Duration::from_secs(10);

/// `CONTRAIL_FLUSH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FlushMode {
    End,
    Periodic,
    #[default]
    Adaptive,
}

impl FlushMode {}

/// What the policy needs from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlushSettings {
    pub(crate) mode: FlushMode,
    /// `CONTRAIL_FLUSH_INTERVAL_MS`: the periodic interval, and the safety flush interval of a
    /// long invocation.
    pub(crate) interval: Duration,
    /// `CONTRAIL_FLUSH_BUDGET_MS`: the longest one flush may take during an invocation.
    pub(crate) budget: Duration,
    /// `CONTRAIL_RUNTIME_DONE_WAIT_MS`: the longest the end-of-invocation wait for
    /// `platform.runtimeDone` lasts, counted from `INVOKE`.
    pub(crate) runtime_done_wait: Duration,
}

impl Default for FlushSettings {
    fn default() -> Self {
        FlushSettings {
            mode: FlushMode::Adaptive,
            interval: DEFAULT_INTERVAL,
            budget: DEFAULT_BUDGET,
            runtime_done_wait: DEFAULT_RUNTIME_DONE_WAIT,
        }
    }
}

impl FlushSettings {
    /// Read the flush variables; report every bad one (all are fatal).
    ///
    /// | variable | default | accepted |
    /// |---|---|---|
    /// | `CONTRAIL_FLUSH` | `adaptive` | `end`, `periodic`, `adaptive` |
    /// | `CONTRAIL_FLUSH_INTERVAL_MS` | `20000` | `100`–`3600000` |
    /// | `CONTRAIL_FLUSH_BUDGET_MS` | `200` | `10`–`60000` |
    /// | `CONTRAIL_RUNTIME_DONE_WAIT_MS` | `10000` | `100`–`900000` |
    pub(crate) fn from_env(env: &dyn Env) -> Result<FlushSettings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mode = match non_empty(env, FLUSH_VAR) {
            None => FlushMode::default(),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "end" => FlushMode::End,
                "periodic" => FlushMode::Periodic,
                "adaptive" => FlushMode::Adaptive,
                _ => {
                    errors.push(ConfigError::new(
                        FLUSH_VAR,
                        v,
                        "expected end, periodic or adaptive",
                    ));
                    FlushMode::default()
                }
            },
        };
        let mut millis = |var: &str, min: u64, max: u64, default: Duration| match whole_number(
            env, var, min, max,
        ) {
            Ok(n) => n.map_or(default, Duration::from_millis),
            Err(e) => {
                errors.push(e);
                default
            }
        };
        let interval = millis(FLUSH_INTERVAL_VAR, 100, 3_600_000, DEFAULT_INTERVAL);
        let budget = millis(FLUSH_BUDGET_VAR, 10, 60_000, DEFAULT_BUDGET);
        let runtime_done_wait = millis(
            RUNTIME_DONE_WAIT_VAR,
            100,
            900_000,
            DEFAULT_RUNTIME_DONE_WAIT,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(FlushSettings {
            mode,
            interval,
            budget,
            runtime_done_wait,
        })
    }
}

/// What the lifecycle loop must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Flush now; the flush must return by `deadline`.
    FlushNow { deadline: Instant },
    /// Wait for this request's `platform.runtimeDone`, or until `until`, whichever comes first.
    WaitForRuntimeDone { until: Instant },
    /// Contrail is done with this invocation: call `next`.
    CallNext,
}

/// The two behaviours an invocation can get (adaptive picks one per invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    End,
    Periodic,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    behaviour: Behaviour,
    started: Instant,
    /// `next` must be called by then: the invocation deadline minus [`INVOKE_MARGIN`].
    call_next_by: Instant,
    /// The wait for `platform.runtimeDone` ends by then, whether it came or not: the start
    /// plus `runtime_done_wait`, at the latest `call_next_by`.
    stop_waiting_at: Instant,
    /// The wait for `platform.runtimeDone` is over: it came, or Lambda reported dropped
    /// records (it may have been one of them).
    done_waiting: bool,
    end_flush_issued: bool,
}

/// The flush policy. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct FlushPolicy {
    settings: FlushSettings,
    runtime_done_available: bool,
    last_flush: Option<Instant>,
    last_invoke: Option<Instant>,
    ewma_gap: Option<Duration>,
    gaps: u32,
    frequent: bool,
    current: Option<Current>,
    /// Whether the flush in progress was asked for because of pressure alone.
    pressure_flush: bool,
    /// Pressure flushes are paused until then (the last one could not relieve the buffer).
    pressure_paused_until: Option<Instant>,
    /// An export endpoint's circuit breaker holds its data: flushing after the runtime is done
    /// would cost the function time for nothing.
    backend_held: bool,
}

impl FlushPolicy {
    pub(crate) fn new(settings: FlushSettings) -> Self {
        FlushPolicy {
            settings,
            runtime_done_available: true,
            last_flush: None,
            last_invoke: None,
            ewma_gap: None,
            gaps: 0,
            frequent: false,
            current: None,
            pressure_flush: false,
            pressure_paused_until: None,
            backend_held: false,
        }
    }

    /// Tell the policy whether an export endpoint's circuit breaker holds its data
    /// (`crate::export::breaker`). While it does, no invocation waits for
    /// `platform.runtimeDone` to flush: each one starts with a flush that overlaps the
    /// function's own work (where the breaker probes the backend when its backoff has passed)
    /// and calls `next` when it returns.
    pub(crate) fn set_backend_held(&mut self, held: bool) {
        self.backend_held = held;
    }

    /// Whether a buffer `fill` full (held bytes ÷ bound) calls for a pressure flush at `now`.
    pub(crate) fn under_pressure(&self, now: Instant, fill: f64) -> bool {
        fill >= HIGH_WATER && self.pressure_paused_until.is_none_or(|until| now >= until)
    }

    /// Tell the policy whether `platform.runtimeDone` will ever arrive (false when the
    /// Telemetry API subscription was refused, as under RIE). Without it, `End` cannot know when
    /// the function is done, so it flushes at the start of every invocation instead of waiting.
    pub(crate) fn set_runtime_done_available(&mut self, available: bool) {
        self.runtime_done_available = available;
    }

    /// Whether the policy counts on `platform.runtimeDone` arriving.
    pub(crate) fn runtime_done_available(&self) -> bool {
        self.runtime_done_available
    }

    #[cfg(test)]
    /// Whether adaptive mode currently considers invocations frequent.
    pub(crate) fn is_frequent(&self) -> bool {
        self.frequent
    }

    /// The behaviour the next invocation would get.
    pub(crate) fn behaviour(&self) -> Behaviour {
        match self.settings.mode {
            FlushMode::End => Behaviour::End,
            FlushMode::Periodic => Behaviour::Periodic,
            FlushMode::Adaptive if self.frequent => Behaviour::Periodic,
            FlushMode::Adaptive => Behaviour::End,
        }
    }

    /// An INVOKE event arrived at `now`; the invocation must be over by `invoke_deadline`; the
    /// export buffer is `fill` full.
    pub(crate) fn on_invoke(
        &mut self,
        now: Instant,
        invoke_deadline: Instant,
        fill: f64,
    ) -> Action {
        self.observe_gap(now);
        let call_next_by = invoke_deadline
            .checked_sub(INVOKE_MARGIN)
            .unwrap_or(now)
            .max(now);
        let behaviour = self.behaviour();
        self.current = Some(Current {
            behaviour,
            started: now,
            call_next_by,
            stop_waiting_at: (now + self.settings.runtime_done_wait).min(call_next_by),
            done_waiting: false,
            end_flush_issued: false,
        });
        match behaviour {
            // Whatever the mode: the only flush worth having is one while the function runs.
            // (Without runtimeDone, `End` flushes at the start anyway, below.)
            _ if self.backend_held
                && now < call_next_by
                && (behaviour == Behaviour::Periodic || self.runtime_done_available) =>
            {
                self.issue_flush(now, call_next_by)
            }
            Behaviour::Periodic => {
                if self.periodic_due(now) {
                    self.issue_flush(now, call_next_by)
                } else if self.under_pressure(now, fill) {
                    self.issue_pressure_flush(now, call_next_by)
                } else {
                    self.finish()
                }
            }
            Behaviour::End if !self.runtime_done_available => {
                if let Some(current) = self.current.as_mut() {
                    current.end_flush_issued = true;
                }
                self.issue_flush(now, call_next_by)
            }
            // Flushed while the function starts; the usual end-of-invocation flush follows.
            Behaviour::End if self.under_pressure(now, fill) && now < call_next_by => {
                self.issue_pressure_flush(now, call_next_by)
            }
            Behaviour::End => self.end_step(now),
        }
    }

    /// The buffer, now `fill` full, reached [`HIGH_WATER`] while the lifecycle waits for
    /// `platform.runtimeDone`: flush now if that is free, else go on as before.
    pub(crate) fn on_pressure(&mut self, now: Instant, fill: f64) -> Action {
        match self.current {
            Some(current)
                if current.behaviour == Behaviour::End
                    && !current.done_waiting
                    && !current.end_flush_issued
                    && now < current.call_next_by
                    && self.under_pressure(now, fill) =>
            {
                self.issue_pressure_flush(now, current.call_next_by)
            }
            _ => self.step(now),
        }
    }

    /// This request's `platform.runtimeDone` arrived.
    pub(crate) fn on_runtime_done(&mut self, now: Instant) -> Action {
        self.stop_waiting(now)
    }

    /// Lambda reported dropped records (`platform.logsDropped`) while the lifecycle waited for
    /// `platform.runtimeDone`: it may have been one of them, so the wait ends as if it had come.
    pub(crate) fn on_logs_dropped(&mut self, now: Instant) -> Action {
        self.stop_waiting(now)
    }

    fn stop_waiting(&mut self, now: Instant) -> Action {
        match self.current.as_mut() {
            Some(current) => {
                current.done_waiting = true;
                self.step(now)
            }
            None => Action::CallNext,
        }
    }

    /// The `until` of a [`Action::WaitForRuntimeDone`] passed.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Action {
        self.step(now)
    }

    /// A flush the policy asked for has returned, leaving the buffer `fill` full.
    pub(crate) fn on_flush_done(&mut self, now: Instant, fill: f64) -> Action {
        if std::mem::take(&mut self.pressure_flush) && fill >= HIGH_WATER {
            // The flush could not relieve the buffer: do not try again on every invocation.
            self.pressure_paused_until = Some(now + self.settings.interval);
        }
        self.step(now)
    }

    /// A flush that overlapped the function's work was stopped because the runtime is done,
    /// not because the backend could not keep up: what it left is for the next flush, and
    /// pressure flushes are not paused.
    pub(crate) fn on_flush_cut(&mut self, now: Instant) -> Action {
        self.pressure_flush = false;
        self.step(now)
    }

    /// A SHUTDOWN event arrived: one last flush, using the whole window but the margin.
    pub(crate) fn on_shutdown(&mut self, now: Instant, shutdown_deadline: Instant) -> Action {
        self.current = None;
        self.last_flush = Some(now);
        let deadline = shutdown_deadline
            .checked_sub(SHUTDOWN_MARGIN)
            .unwrap_or(now)
            .max(now);
        Action::FlushNow { deadline }
    }

    fn step(&mut self, now: Instant) -> Action {
        match self.current {
            None => Action::CallNext,
            Some(current) => match current.behaviour {
                Behaviour::Periodic => self.finish(),
                Behaviour::End if current.end_flush_issued => self.finish(),
                Behaviour::End => self.end_step(now),
            },
        }
    }

    fn end_step(&mut self, now: Instant) -> Action {
        let Some(current) = self.current else {
            return Action::CallNext;
        };
        if now >= current.call_next_by || self.backend_held {
            // No time left, or the backend cannot take a flush inside the budget: what is
            // buffered waits for the next flush.
            return self.finish();
        }
        if current.done_waiting || now >= current.stop_waiting_at {
            // runtimeDone came, or it was waited for as long as it may be: the end flush.
            if let Some(c) = self.current.as_mut() {
                c.done_waiting = true;
                c.end_flush_issued = true;
            }
            return self.issue_flush(now, current.call_next_by);
        }
        let since = self
            .last_flush
            .unwrap_or(current.started)
            .max(current.started);
        let safety_at = since + self.settings.interval;
        if now >= safety_at {
            return self.issue_flush(now, current.call_next_by);
        }
        Action::WaitForRuntimeDone {
            until: safety_at.min(current.stop_waiting_at),
        }
    }

    fn periodic_due(&self, now: Instant) -> bool {
        match self.last_flush {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.settings.interval,
        }
    }

    fn issue_pressure_flush(&mut self, now: Instant, call_next_by: Instant) -> Action {
        let action = self.issue_flush(now, call_next_by);
        self.pressure_flush = true;
        action
    }

    fn issue_flush(&mut self, now: Instant, call_next_by: Instant) -> Action {
        self.pressure_flush = false;
        self.last_flush = Some(now);
        Action::FlushNow {
            deadline: (now + self.settings.budget).min(call_next_by),
        }
    }

    fn finish(&mut self) -> Action {
        self.current = None;
        Action::CallNext
    }

    fn observe_gap(&mut self, now: Instant) {
        if let Some(previous) = self.last_invoke {
            let gap = now.saturating_duration_since(previous);
            let average = match self.ewma_gap {
                None => gap,
                Some(avg) => avg.mul_f64(1.0 - EWMA_WEIGHT) + gap.mul_f64(EWMA_WEIGHT),
            };
            self.ewma_gap = Some(average);
            self.gaps = self.gaps.saturating_add(1);
            if self.frequent {
                if average >= self.settings.interval {
                    self.frequent = false;
                }
            } else if self.gaps >= MIN_GAPS_FOR_PERIODIC && average <= self.settings.interval / 2 {
                self.frequent = true;
            }
        }
        self.last_invoke = Some(now);
    }
}

/// Convert an event's `deadlineMs` (milliseconds since the Unix epoch) to an [`Instant`],
/// given the wall clock and the monotonic clock read at the same moment. A deadline in the past
/// gives `now`.
pub(crate) fn instant_from_epoch_ms(
    deadline_ms: u64,
    wall_now: SystemTime,
    now: Instant,
) -> Instant {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    match deadline.duration_since(wall_now) {
        Ok(remaining) => now + remaining,
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests;
