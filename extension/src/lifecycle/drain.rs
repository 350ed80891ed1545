//! At `SHUTDOWN`: how long to keep receiving what Lambda still delivers before the final flush.
//!
//! Lambda delivers records after `SHUTDOWN` has reached the extensions: the last invocation's
//! `platform.report` (produced once every extension had called `next`), the lines the runtime
//! wrote while it shut down (it gets `SIGTERM` first), other extensions' lines. Each comes one
//! buffering window (`CONTRAIL_TELEMETRY_TIMEOUT_MS`) after it was produced. The drain lasts
//! until the stream is quiet, no delivery for one window plus [`DELIVERY_SLACK`], and the last
//! invocation's report (if one is expected) has come or Lambda reported drops; or until its
//! deadline, whichever is first. A pure state machine over instants the caller passes in.

use std::time::Duration;

use tokio::time::Instant;

/// How long after its buffering window closed a batch may still take to arrive: Lambda sends
/// it on loopback, but the environment has just been thawed for `SHUTDOWN`.
pub(crate) const DELIVERY_SLACK: Duration = Duration::from_millis(50);

/// The drain's state. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drain {
    /// The stream counts as quiet after this long without a delivery.
    quiet: Duration,
    /// The drain ends by then whatever arrives: the final flush needs the rest.
    until: Instant,
    /// Quiet from then on, unless something arrives first.
    quiet_at: Instant,
    /// The last invocation's `platform.report` is still expected.
    awaiting_report: bool,
}

impl Drain {
    /// A drain starting at `now` (when `SHUTDOWN` arrived) for a stream batched over
    /// `buffering` windows, ending by `until` at the latest.
    pub(crate) fn new(
        now: Instant,
        buffering: Duration,
        until: Instant,
        awaiting_report: bool,
    ) -> Drain {
        let quiet = buffering + DELIVERY_SLACK;
        Drain {
            quiet,
            until,
            quiet_at: now + quiet,
            awaiting_report,
        }
    }

    /// A delivery arrived at `now`: the stream is not quiet yet.
    pub(crate) fn delivered(&mut self, now: Instant) {
        self.quiet_at = now + self.quiet;
    }

    /// The last invocation's report came, or Lambda reported dropped records (it may have been
    /// one of them), or it cannot come any more.
    pub(crate) fn report_settled(&mut self) {
        self.awaiting_report = false;
    }

    /// When to look again, or `None` when the drain is over at `now`.
    pub(crate) fn next_wake(&self, now: Instant) -> Option<Instant> {
        if now >= self.until {
            return None;
        }
        if now < self.quiet_at {
            return Some(self.quiet_at.min(self.until));
        }
        // Quiet: over, unless the report is still to come (it may, until the deadline).
        self.awaiting_report.then_some(self.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ends_once_quiet_for_one_window_and_the_slack() {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, ms(25), t0 + ms(900), false);
        assert_eq!(d.next_wake(t0), Some(t0 + ms(75)));
        // A batch at 30 ms, another at 90 ms: quiet from 165 ms.
        d.delivered(t0 + ms(30));
        assert_eq!(d.next_wake(t0 + ms(75)), Some(t0 + ms(105)));
        d.delivered(t0 + ms(90));
        assert_eq!(d.next_wake(t0 + ms(105)), Some(t0 + ms(165)));
        assert_eq!(d.next_wake(t0 + ms(165)), None);
    }

    #[test]
    fn waits_for_the_last_report_while_quiet_but_never_past_its_deadline() {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, ms(25), t0 + ms(900), true);
        assert_eq!(d.next_wake(t0 + ms(75)), Some(t0 + ms(900)));
        d.delivered(t0 + ms(400));
        d.report_settled();
        assert_eq!(d.next_wake(t0 + ms(400)), Some(t0 + ms(475)));
        assert_eq!(d.next_wake(t0 + ms(475)), None);

        // A report that never comes: over at the deadline.
        let d = Drain::new(t0, ms(25), t0 + ms(900), true);
        assert_eq!(d.next_wake(t0 + ms(900)), None);
    }

    #[test]
    fn a_stream_that_never_goes_quiet_is_cut_at_the_deadline() {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, ms(1_000), t0 + ms(600), false);
        assert_eq!(d.next_wake(t0), Some(t0 + ms(600)));
        d.delivered(t0 + ms(590));
        assert_eq!(d.next_wake(t0 + ms(600)), None);
    }
}
