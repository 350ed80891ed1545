//! The circuit breaker of one export endpoint: what Contrail has learnt about the backend, and
//! whether an export may spend the function's time on it. Pure: every call is given `now`.
//!
//! States and thresholds are in `docs/adr/0014-export-circuit-breaker.md`.
//!
//! ```text
//!            a flush could not finish inside its budget          backoff passed
//!   Closed ───────────────────────────────────────────▶ Open ─────────────────▶ HalfOpen
//!     ▲         (kept data: retryable answers, no answer,        ▲                  │
//!     │          Retry-After past the deadline)                  │ probe failed     │
//!     │                                                          │ or no answer     │
//!     │                                                          └──────────────────┤
//!     └──────────────────────────────── probe answered inside the budget ───────────┘
//! ```
//!
//! - **Closed**: exports run as they always have (end-of-invocation flushes included).
//! - **Open**: no data is sent to the endpoint until `retry_at`, except in the final flush at
//!   `SHUTDOWN`; the lifecycle stops flushing after the runtime is done. Data stays buffered
//!   under the buffer's bound.
//! - **HalfOpen** (`now >= retry_at`): the next flush that overlaps the function's own work
//!   sends one probe, an export request with no data (nothing to lose if it is cut, nothing to
//!   duplicate), in a single attempt. Answered inside the budget: Closed, and the same flush
//!   goes on with the data. Refused, failed or unanswered: Open again, the backoff doubled
//!   (from [`BACKOFF_START`] to [`BACKOFF_MAX`]), and never shorter than a `Retry-After`. Cut
//!   because the runtime was done first: after waiting more than twice the endpoint's usual
//!   round trip (or with none known), open again with the backoff doubled, since every probe
//!   like it costs an invocation its wait for `platform.runtimeDone`; cut sooner, still
//!   half-open (nothing was learnt).

use std::time::Duration;

use tokio::time::Instant;

/// The first wait before a probe, after the breaker opens.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(250);
/// The longest wait between two probes: a probe costs one small request while the function
/// runs, so a recovered backend is found within this long.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Weight of the newest round trip in the moving average.
pub(crate) const RTT_WEIGHT: f64 = 0.25;

/// The breaker's state as self-telemetry reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of the `contrail.export.breaker.state` gauge.
    pub(crate) fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// How one export attempt (a request and its answer) ended, for the health estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// An answer that is not worth retrying (2xx, or a refusal): the backend is up.
    Answered,
    /// An answer that asks to retry (429, 502–504) or a connection error.
    Failed,
    /// No answer before the attempt's deadline.
    TimedOut,
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Answered (not retryable) after `rtt`.
    Answered { rtt: Duration },
    /// Refused, failed, or asked to wait (`retry_after`).
    Failed { retry_after: Option<Duration> },
    /// No answer by its deadline.
    NoAnswer,
    /// Given up after `waited` because the runtime was done first.
    Cut { waited: Duration },
}

/// Counts and round trips of one endpoint, since start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Health {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) timeouts: u64,
    /// Moving average of the round trips of answered attempts.
    pub(crate) rtt: Option<Duration>,
    /// Times the breaker opened.
    pub(crate) trips: u64,
    /// Probes sent, and those answered.
    pub(crate) probes: u64,
    pub(crate) probes_answered: u64,
}

/// One endpoint's breaker. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    budget: Duration,
    /// `Some` while open: when the next probe may go, and the backoff that led there.
    open: Option<(Instant, Duration)>,
    health: Health,
}

impl Breaker {
    /// A closed breaker for an endpoint whose flushes have `budget` each.
    pub(crate) fn new(budget: Duration) -> Breaker {
        Breaker {
            budget,
            open: None,
            health: Health::default(),
        }
    }

    /// What an export may do now: closed, send the data; half-open, send a probe first, and
    /// the data only if it is answered; open, keep the data and send nothing.
    pub(crate) fn state(&self, now: Instant) -> State {
        match self.open {
            None => State::Closed,
            Some((at, _)) if now >= at => State::HalfOpen,
            Some(_) => State::Open,
        }
    }

    /// Whether exports to the endpoint are held (open or half-open): the end-of-invocation
    /// flush is then not worth the function's time.
    pub(crate) fn is_held(&self) -> bool {
        self.open.is_some()
    }

    pub(crate) fn health(&self) -> Health {
        self.health
    }

    #[cfg(test)]
    /// When the next probe may go, while open.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.open.map(|(at, _)| at)
    }

    /// One export attempt ended after `elapsed`.
    pub(crate) fn observe(&mut self, attempt: Attempt, elapsed: Duration) {
        match attempt {
            Attempt::Answered => {
                self.health.successes += 1;
                self.health.rtt = Some(match self.health.rtt {
                    None => elapsed,
                    Some(avg) => avg.mul_f64(1.0 - RTT_WEIGHT) + elapsed.mul_f64(RTT_WEIGHT),
                });
            }
            Attempt::Failed => self.health.failures += 1,
            Attempt::TimedOut => self.health.timeouts += 1,
        }
    }

    /// A flush sent the endpoint's data and finished inside its budget (what is left, if
    /// anything, was left because the flush was stopped, not because the backend failed).
    /// Round trips slower than the budget on average open the breaker all the same. While
    /// open, only the final flush sends data: that it went through closes the breaker.
    pub(crate) fn on_finished(&mut self, now: Instant) {
        if self.open.is_some() {
            self.open = None;
            return;
        }
        if self.health.rtt.is_some_and(|rtt| rtt > self.budget) {
            self.trip(now, None);
        }
    }

    /// A flush could not finish the endpoint's data inside its budget (answers that ask to
    /// retry, no answer, or a `Retry-After` ending `retry_after` from `now`): one such flush
    /// opens the breaker, since the next would cost the function as much.
    pub(crate) fn on_unfinished(&mut self, now: Instant, retry_after: Option<Duration>) {
        if self.open.is_none() {
            self.trip(now, retry_after);
        }
    }

    /// A probe sent while half-open ended.
    pub(crate) fn on_probe(&mut self, now: Instant, probe: Probe) {
        if let Probe::Cut { waited } = probe
            && self.health.rtt.is_some_and(|rtt| waited <= rtt * 2)
        {
            // Too soon to tell: the next flush probes again.
            return;
        }
        self.health.probes += 1;
        let backoff = self.open.map_or(BACKOFF_START, |(_, b)| b);
        match probe {
            Probe::Answered { rtt } if rtt <= self.budget => {
                self.health.probes_answered += 1;
                self.open = None;
            }
            Probe::Answered { .. } => {
                self.health.probes_answered += 1;
                self.reopen(now, backoff.saturating_mul(2), None);
            }
            // No answer in twice the usual round trip (cut), or by the deadline: the next
            // probe like it would cost another invocation its wait.
            Probe::NoAnswer | Probe::Cut { .. } => {
                self.reopen(now, backoff.saturating_mul(2), None)
            }
            Probe::Failed { retry_after } => {
                self.reopen(now, backoff.saturating_mul(2), retry_after);
            }
        }
    }

    fn trip(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.health.trips += 1;
        self.reopen(now, BACKOFF_START, retry_after);
    }

    fn reopen(&mut self, now: Instant, backoff: Duration, retry_after: Option<Duration>) {
        let backoff = backoff.min(BACKOFF_MAX);
        let wait = retry_after.map_or(backoff, |r| r.max(backoff));
        self.open = Some((now + wait, backoff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_flush_that_cannot_finish_opens_it_and_holds_exports_until_the_backoff() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BUDGET);
        assert_eq!(b.state(t0), State::Closed);
        b.on_finished(t0);
        assert_eq!(b.state(t0), State::Closed);

        b.on_unfinished(t0, None);
        assert_eq!(b.state(t0), State::Open);
        assert!(b.is_held());
        assert_eq!(b.state(t0 + BACKOFF_START - ms(1)), State::Open);
        assert_eq!(b.state(t0 + BACKOFF_START), State::HalfOpen);
        assert_eq!(b.health().trips, 1);
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_its_cap_and_an_answer_closes_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BUDGET);
        b.on_unfinished(t0, None);
        let mut now = t0 + BACKOFF_START;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert_eq!(b.state(now), State::HalfOpen);
            b.on_probe(now, Probe::Failed { retry_after: None });
            let at = b.retry_at().unwrap_or(now);
            waits.push(at - now);
            assert_eq!(b.state(at - ms(1)), State::Open);
            now = at;
        }
        assert_eq!(
            waits,
            [500, 1000, 2000, 2000, 2000, 2000, 2000, 2000]
                .map(ms)
                .to_vec()
        );
        b.on_probe(now, Probe::Answered { rtt: ms(3) });
        assert_eq!(b.state(now), State::Closed);
        assert!(!b.is_held());
        let h = b.health();
        assert_eq!((h.probes, h.probes_answered, h.trips), (9, 1, 1));

        // Closed again, a new outage starts from the first backoff.
        b.on_unfinished(now, None);
        assert_eq!(b.retry_at(), Some(now + BACKOFF_START));
    }

    #[test]
    fn retry_after_sets_the_earliest_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BUDGET);
        b.on_unfinished(t0, Some(Duration::from_secs(3)));
        assert_eq!(b.retry_at(), Some(t0 + Duration::from_secs(3)));
        let t1 = t0 + Duration::from_secs(3);
        b.on_probe(
            t1,
            Probe::Failed {
                retry_after: Some(Duration::from_secs(2)),
            },
        );
        assert_eq!(b.retry_at(), Some(t1 + Duration::from_secs(2)));
        // A Retry-After shorter than the backoff does not shorten it.
        let t2 = t1 + Duration::from_secs(2);
        b.on_probe(
            t2,
            Probe::Failed {
                retry_after: Some(ms(10)),
            },
        );
        assert_eq!(b.retry_at(), Some(t2 + ms(1000)));
    }

    #[test]
    fn a_probe_slower_than_the_budget_or_unanswered_keeps_it_open() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BUDGET);
        b.on_unfinished(t0, None);
        let t1 = t0 + BACKOFF_START;
        b.on_probe(t1, Probe::Answered { rtt: ms(300) });
        assert_eq!(b.state(t1), State::Open);
        assert_eq!(b.retry_at(), Some(t1 + ms(500)));
        let t2 = t1 + ms(500);
        b.on_probe(t2, Probe::NoAnswer);
        assert_eq!(b.retry_at(), Some(t2 + ms(1000)));
        assert_eq!(b.health().probes_answered, 1);
    }

    #[test]
    fn a_cut_probe_backs_off_only_when_it_waited_past_twice_the_usual_round_trip() {
        let t0 = Instant::now();
        // No round trip known: any cut probe waited too long.
        let mut b = Breaker::new(BUDGET);
        b.on_unfinished(t0, None);
        let t1 = t0 + BACKOFF_START;
        b.on_probe(t1, Probe::Cut { waited: ms(1) });
        assert_eq!(b.retry_at(), Some(t1 + ms(500)));
        assert_eq!((b.health().probes, b.health().probes_answered), (1, 0));

        // A backend that answered in 10 ms.
        let mut b = Breaker::new(BUDGET);
        b.observe(Attempt::Answered, ms(10));
        b.on_unfinished(t0, None);
        let before = b.health();
        // Cut after 20 ms: too soon to tell; still half-open, nothing counted.
        b.on_probe(t1, Probe::Cut { waited: ms(20) });
        assert_eq!(b.state(t1), State::HalfOpen);
        assert_eq!(b.health(), before);
        // Cut after 21 ms: the backend is slower than it was; the backoff doubles.
        b.on_probe(t1, Probe::Cut { waited: ms(21) });
        assert_eq!(b.retry_at(), Some(t1 + ms(500)));
        assert_eq!(b.health().probes, before.probes + 1);
        assert_eq!(
            (b.health().failures, b.health().timeouts),
            (before.failures, before.timeouts)
        );
    }

    #[test]
    fn round_trips_slower_than_the_budget_on_average_open_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BUDGET);
        for _ in 0..3 {
            b.observe(Attempt::Answered, ms(20));
        }
        b.on_finished(t0);
        assert_eq!(b.state(t0), State::Closed);
        for _ in 0..10 {
            b.observe(Attempt::Answered, ms(400));
        }
        let rtt = b.health().rtt.unwrap_or_default();
        assert!(rtt > BUDGET, "{rtt:?}");
        b.on_finished(t0);
        assert_eq!(b.state(t0), State::Open);
    }

    #[test]
    fn the_health_estimate_counts_every_kind_of_attempt() {
        let mut b = Breaker::new(BUDGET);
        b.observe(Attempt::Answered, ms(10));
        b.observe(Attempt::Answered, ms(30));
        b.observe(Attempt::Failed, ms(1));
        b.observe(Attempt::TimedOut, ms(200));
        let h = b.health();
        assert_eq!((h.successes, h.failures, h.timeouts), (2, 1, 1));
        // 0.75 × 10 + 0.25 × 30
        assert_eq!(h.rtt, Some(ms(15)));
    }

    #[test]
    fn while_open_a_failure_changes_nothing_and_data_that_went_through_closes_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BUDGET);
        b.on_unfinished(t0, None);
        let at = b.retry_at();
        b.on_unfinished(t0 + ms(10), Some(Duration::from_secs(30)));
        assert_eq!(b.retry_at(), at);
        assert_eq!(b.health().trips, 1);
        // The final flush sends whatever the breaker says; its data was taken.
        b.on_finished(t0 + ms(20));
        assert_eq!(b.state(t0 + ms(20)), State::Closed);
    }
}
