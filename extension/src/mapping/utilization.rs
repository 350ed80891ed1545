//! Environment utilization: how much of an execution environment's life was spent running
//! invocations. Pure bookkeeping over record times; the mapper reports it at each flush that
//! happens anyway and at SHUTDOWN (never from a timer).
//!
//! - The environment's life starts at `platform.initStart` (a SnapStart restore: at
//!   `platform.restoreStart`; the init records of a restored environment describe the
//!   snapshot's creation) and lasts until the moment of the report: frozen time counts, as it
//!   would for a container that stays up.
//! - Busy time is the union of the invoke phases: each from its `platform.start` for the
//!   report's `durationMs` (which holds the extensions' time after the response). Init is not
//!   busy time: a container has its own start-up. Overlapping phases (Managed Instances)
//!   count once, in whatever order their reports arrive: the last [`STRETCHES_KEPT`] busy
//!   stretches are kept to subtract the overlap; a report overlapping only older ones counts
//!   whole.
//! - An idle gap is the time from the end of the previous invoke phase (or of init) to the start
//!   of the next, as the reports arrive: with overlapping invocations (Managed Instances) a
//!   late report of an earlier invocation gives no gap.
//! - An environment that shuts down without an invocation had an init that was never used.

/// Busy stretches kept to count overlapping invocations once.
pub(super) const STRETCHES_KEPT: usize = 32;

/// What is known of one environment's life so far.
#[derive(Debug, Default, Clone)]
pub(super) struct Utilization {
    start_ns: Option<u64>,
    /// The end of the last invoke phase, or of init before the first: where idle time starts.
    idle_since_ns: Option<u64>,
    busy_ns: u64,
    /// The latest busy stretches, disjoint and by start: `(start, end)` in nanoseconds.
    stretches: Vec<(u64, u64)>,
    invocations: u64,
    /// Something happened since [`Utilization::take_changed`] was last called.
    changed: bool,
}

/// The figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Snapshot {
    pub(super) lifetime_s: f64,
    pub(super) busy_s: f64,
    /// Busy time ÷ lifetime, from 0 to 1.
    pub(super) utilization: f64,
    pub(super) invocations: u64,
}

impl Utilization {
    /// The environment started at `t` (its init or restore began). A later start replaces an
    /// earlier one: a SnapStart restore replaces the snapshot's init.
    pub(super) fn started(&mut self, t: u64) {
        self.changed = true;
        self.start_ns = Some(t);
        self.idle_since_ns = None;
    }

    /// The start, if none is known yet (the first invocation of an environment whose init
    /// records were not seen).
    pub(super) fn started_by(&mut self, t: u64) {
        if self.start_ns.is_none() {
            self.changed = true;
            self.start_ns = Some(t);
        }
    }

    /// Init (or the restore) ended at `t`: idle time runs from here to the first invocation.
    pub(super) fn ready(&mut self, t: u64) {
        if self.invocations == 0 {
            self.idle_since_ns = Some(t);
        }
    }

    /// An invoke phase from `start_ns` for `duration_ns`. Returns the idle gap before it in
    /// nanoseconds, when it started after the previous one ended.
    pub(super) fn invocation(&mut self, start_ns: u64, duration_ns: u64) -> Option<u64> {
        self.started_by(start_ns);
        let end = start_ns.saturating_add(duration_ns);
        self.invocations += 1;
        self.changed = true;
        let gap = match self.idle_since_ns {
            Some(idle) if start_ns >= idle => Some(start_ns - idle),
            _ => None,
        };
        let busy = self.cover(start_ns, end);
        self.busy_ns = self.busy_ns.saturating_add(busy);
        self.idle_since_ns = Some(self.idle_since_ns.map_or(end, |i| i.max(end)));
        gap
    }

    /// Add `[start, end)` to the busy stretches; returns the nanoseconds no stretch covered.
    fn cover(&mut self, start: u64, end: u64) -> u64 {
        let mut new = end - start;
        let (mut from, mut to) = (start, end);
        self.stretches.retain(|&(s, e)| {
            if e < start || s > end {
                return true;
            }
            new -= e.min(end).saturating_sub(s.max(start));
            (from, to) = (from.min(s), to.max(e));
            false
        });
        let at = self.stretches.partition_point(|&(s, _)| s < from);
        self.stretches.insert(at, (from, to));
        if self.stretches.len() > STRETCHES_KEPT {
            self.stretches.remove(0);
        }
        new
    }

    /// The figures at `now_ns`; `None` before the environment's start is known.
    pub(super) fn at(&self, now_ns: u64) -> Option<Snapshot> {
        let start = self.start_ns?;
        let lifetime = now_ns.saturating_sub(start);
        let busy = self.busy_ns.min(lifetime);
        let utilization = if lifetime == 0 {
            0.0
        } else {
            busy as f64 / lifetime as f64
        };
        Some(Snapshot {
            lifetime_s: lifetime as f64 / 1e9,
            busy_s: busy as f64 / 1e9,
            utilization,
            invocations: self.invocations,
        })
    }

    /// Whether anything happened since the last call: a flush with nothing new reports
    /// nothing (with delta temporality, an idle flush exports nothing at all).
    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Whether the environment started and has run no invocation.
    pub(super) fn unused(&self) -> bool {
        self.start_ns.is_some() && self.invocations == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    #[test]
    fn a_scripted_schedule_comes_out_as_computed_by_hand() {
        // Init 0–400 ms; then busy 100 ms, idle 900 ms, busy 250 ms, idle 4,750 ms, busy
        // 1,000 ms; observed at 10 s.
        let mut u = Utilization::default();
        u.started(0);
        u.ready(400 * MS);
        assert!(u.take_changed());
        assert!(!u.take_changed());
        assert_eq!(u.invocation(400 * MS, 100 * MS), Some(0));
        assert!(u.take_changed());
        assert_eq!(u.invocation(1_400 * MS, 250 * MS), Some(900 * MS));
        assert_eq!(u.invocation(6_400 * MS, 1_000 * MS), Some(4_750 * MS));
        let s = u.at(10 * S).unwrap();
        // Busy 100 + 250 + 1,000 = 1,350 ms of a 10,000 ms life: 13.5 %.
        assert_eq!(s.invocations, 3);
        assert!((s.busy_s - 1.35).abs() < 1e-12);
        assert!((s.lifetime_s - 10.0).abs() < 1e-12);
        assert!((s.utilization - 0.135).abs() < 1e-12);
        // The same environment at 20 s, idle since 7.4 s: 6.75 %.
        assert!((u.at(20 * S).unwrap().utilization - 0.0675).abs() < 1e-12);
    }

    #[test]
    fn a_busy_environment_is_near_one_and_never_above() {
        let mut u = Utilization::default();
        u.started(0);
        u.ready(10 * MS);
        for i in 0..10 {
            u.invocation(10 * MS + i * 100 * MS, 100 * MS);
        }
        let s = u.at(1_010 * MS).unwrap();
        assert!((s.utilization - 1_000.0 / 1_010.0).abs() < 1e-12);
        // Overlapping invocations (Managed Instances) count their union once.
        let mut u = Utilization::default();
        u.started(0);
        assert_eq!(u.invocation(0, 100 * MS), None);
        assert_eq!(u.invocation(50 * MS, 100 * MS), None);
        let s = u.at(150 * MS).unwrap();
        assert!((s.busy_s - 0.15).abs() < 1e-12);
        assert!((s.utilization - 1.0).abs() < 1e-12);
    }

    #[test]
    fn overlapping_invocations_count_once_whatever_order_their_reports_come_in() {
        // A runs 0–1,000 ms; B (100–200) and C (300–1,200) run beside it. Reports come as
        // the invocations end: B, then A, then C. The union is 0–1,200 ms.
        let mut u = Utilization::default();
        u.started(0);
        u.invocation(100 * MS, 100 * MS);
        u.invocation(0, 1_000 * MS);
        u.invocation(300 * MS, 900 * MS);
        assert!((u.at(2 * S).unwrap().busy_s - 1.2).abs() < 1e-12);
        // D (1,500–1,600) leaves a gap; E (1,100–1,550) bridges it.
        u.invocation(1_500 * MS, 100 * MS);
        u.invocation(1_100 * MS, 450 * MS);
        assert!((u.at(2 * S).unwrap().busy_s - 1.6).abs() < 1e-12);
        assert_eq!(u.stretches, vec![(0, 1_600 * MS)]);
    }

    #[test]
    fn the_stretches_kept_are_bounded() {
        let mut u = Utilization::default();
        for i in 0..10 * STRETCHES_KEPT as u64 {
            u.invocation(i * S, MS);
        }
        assert_eq!(u.stretches.len(), STRETCHES_KEPT);
        assert!((u.at(10_000 * S).unwrap().busy_s - 0.32).abs() < 1e-9);
        // A report overlapping only a forgotten stretch counts whole.
        u.invocation(0, MS);
        assert!((u.at(10_000 * S).unwrap().busy_s - 0.321).abs() < 1e-9);
    }

    #[test]
    fn an_environment_without_invocations_has_unused_init() {
        let mut u = Utilization::default();
        assert!(!u.unused(), "nothing started yet");
        assert_eq!(u.at(5 * S), None);
        u.started(S);
        u.ready(2 * S);
        assert!(u.unused());
        let s = u.at(61 * S).unwrap();
        assert_eq!((s.invocations, s.busy_s, s.utilization), (0, 0.0, 0.0));
        assert!((s.lifetime_s - 60.0).abs() < 1e-12);
        u.invocation(3 * S, MS);
        assert!(!u.unused());
    }

    #[test]
    fn a_restore_restarts_the_life_and_unknown_starts_come_from_the_first_invocation() {
        let mut u = Utilization::default();
        u.started(0);
        u.started(100 * S);
        u.ready(100 * S + 200 * MS);
        assert_eq!(u.invocation(100 * S + 300 * MS, 100 * MS), Some(100 * MS));
        assert!((u.at(101 * S).unwrap().lifetime_s - 1.0).abs() < 1e-12);
        let mut u = Utilization::default();
        assert_eq!(u.invocation(5 * S, S), None);
        let s = u.at(7 * S).unwrap();
        assert!((s.utilization - 0.5).abs() < 1e-12);
    }
}
