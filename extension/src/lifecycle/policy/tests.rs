//! The flush policy with a fake clock: every mode, every switch, the safety flush, pressure,
//! shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::{Duration, UNIX_EPOCH};

use crate::lifecycle::policy::{
    Action, Behaviour, FLUSH_BUDGET_VAR, FLUSH_INTERVAL_VAR, FLUSH_VAR, FlushMode, FlushPolicy,
    FlushSettings, HIGH_WATER, INVOKE_MARGIN, RUNTIME_DONE_WAIT_VAR, SHUTDOWN_MARGIN,
    instant_from_epoch_ms,
};
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_secs(20);
const BUDGET: Duration = Duration::from_millis(200);
/// The fill of an empty export buffer.
const EMPTY: f64 = 0.0;

/// A fake clock: an origin and an offset the test moves.
struct Clock {
    origin: Instant,
    now: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            now: Duration::ZERO,
        }
    }
    fn now(&self) -> Instant {
        self.origin + self.now
    }
    fn advance(&mut self, d: Duration) -> Instant {
        self.now += d;
        self.now()
    }
    fn at(&self, d: Duration) -> Instant {
        self.now() + d
    }
}

fn policy(mode: FlushMode) -> FlushPolicy {
    FlushPolicy::new(FlushSettings {
        mode,
        interval: INTERVAL,
        budget: BUDGET,
        ..FlushSettings::default()
    })
}

/// A policy whose wait for runtimeDone may last `wait` (`CONTRAIL_RUNTIME_DONE_WAIT_MS`), as
/// for functions that run longer than the default bound.
fn policy_waiting(mode: FlushMode, wait: Duration) -> FlushPolicy {
    FlushPolicy::new(FlushSettings {
        mode,
        interval: INTERVAL,
        budget: BUDGET,
        runtime_done_wait: wait,
    })
}

/// The action "flush, returning by `deadline`".
fn flush_by(deadline: Instant) -> Action {
    Action::FlushNow { deadline }
}

/// The action "wait for runtimeDone until `until`".
fn wait_until(until: Instant) -> Action {
    Action::WaitForRuntimeDone { until }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One invocation the way the lifecycle drives it: the runtime is done after `runs`, each flush
/// takes `flush_takes`. Returns the actions seen, in order.
fn invocation(
    p: &mut FlushPolicy,
    clock: &mut Clock,
    runs: Duration,
    timeout: Duration,
    flush_takes: Duration,
) -> Vec<Action> {
    let start = clock.now();
    let runtime_done_at = start + runs;
    let mut seen = Vec::new();
    let mut action = p.on_invoke(start, start + timeout, EMPTY);
    loop {
        seen.push(action);
        action = match action {
            Action::FlushNow { deadline } => {
                assert!(deadline <= start + timeout - INVOKE_MARGIN);
                assert!(deadline <= clock.now() + BUDGET);
                let now = clock.advance(flush_takes.min(deadline - clock.now()));
                p.on_flush_done(now, EMPTY)
            }
            Action::WaitForRuntimeDone { until } => {
                assert!(until > clock.now(), "a wait must end in the future");
                if runtime_done_at <= until {
                    let now = clock.advance(runtime_done_at.saturating_duration_since(clock.now()));
                    p.on_runtime_done(now)
                } else {
                    let now = clock.advance(until - clock.now());
                    p.on_timer(now)
                }
            }
            Action::CallNext => break,
        };
    }
    seen
}

fn flushes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::FlushNow { .. }))
        .count()
}

#[test]
fn end_mode_waits_for_runtime_done_then_flushes_within_the_budget() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let start = clock.now();
    let a = p.on_invoke(start, start + secs(3), EMPTY);
    assert_eq!(a, wait_until(start + secs(3) - INVOKE_MARGIN));
    let done = clock.advance(ms(40));
    assert_eq!(p.on_runtime_done(done), flush_by(done + BUDGET));
    let after = clock.advance(ms(15));
    assert_eq!(p.on_flush_done(after, EMPTY), Action::CallNext);
}

#[test]
fn end_mode_flush_deadline_never_passes_the_invocation_deadline() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let start = clock.now();
    p.on_invoke(start, start + secs(1), EMPTY);
    let done = clock.advance(ms(850));
    assert_eq!(
        p.on_runtime_done(done),
        flush_by(start + secs(1) - INVOKE_MARGIN)
    );
}

#[test]
fn end_mode_gives_up_at_the_invocation_deadline_without_runtime_done() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let start = clock.now();
    let until = start + secs(2) - INVOKE_MARGIN;
    assert_eq!(
        p.on_invoke(start, start + secs(2), EMPTY),
        Action::WaitForRuntimeDone { until }
    );
    clock.advance(until - start);
    assert_eq!(p.on_timer(clock.now()), Action::CallNext);
}

#[test]
fn end_mode_without_runtime_done_flushes_at_invoke() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    p.set_runtime_done_available(false);
    let start = clock.now();
    assert_eq!(
        p.on_invoke(start, start + secs(3), EMPTY),
        flush_by(start + BUDGET)
    );
    assert_eq!(
        p.on_flush_done(clock.advance(ms(10)), EMPTY),
        Action::CallNext
    );
}

#[test]
fn long_invocation_gets_safety_flushes_while_it_runs() {
    let mut clock = Clock::new();
    let mut p = policy_waiting(FlushMode::End, secs(900));
    // A 65 s invocation (timeout 900 s): safety flushes at 20 s, 40 s, 60 s, then the end flush.
    let actions = invocation(&mut p, &mut clock, secs(65), secs(900), ms(10));
    assert_eq!(flushes(&actions), 4, "{actions:?}");
    let origin = clock.origin;
    let waits: Vec<Instant> = actions
        .iter()
        .filter_map(|a| match a {
            Action::WaitForRuntimeDone { until } => Some(*until),
            _ => None,
        })
        .collect();
    assert_eq!(waits[0], origin + secs(20));
    assert_eq!(actions.last(), Some(&Action::CallNext));
}

#[test]
fn periodic_mode_flushes_at_invoke_when_the_interval_passed_and_never_waits() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::Periodic);
    // First invocation: nothing flushed yet, so flush at its start.
    let start = clock.now();
    assert_eq!(
        p.on_invoke(start, start + secs(3), EMPTY),
        flush_by(start + BUDGET)
    );
    assert_eq!(
        p.on_flush_done(clock.advance(ms(30)), EMPTY),
        Action::CallNext
    );
    // Invocations every 2 s: no flush until 20 s have passed since the last one.
    let mut flushed_at = Vec::new();
    for _ in 0..15 {
        let now = clock.advance(secs(2));
        let actions = invocation(&mut p, &mut clock, ms(50), secs(3), ms(30));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::WaitForRuntimeDone { .. })),
            "periodic never waits for the runtime: {actions:?}"
        );
        if flushes(&actions) > 0 {
            flushed_at.push(now - start);
        }
    }
    assert_eq!(flushed_at, vec![Duration::from_millis(20_030)]);
}

#[test]
fn periodic_flush_is_cut_to_the_invocation_deadline() {
    let clock = Clock::new();
    let mut p = policy(FlushMode::Periodic);
    let start = clock.now();
    assert_eq!(
        p.on_invoke(start, clock.at(ms(150)), EMPTY),
        flush_by(start + ms(150) - INVOKE_MARGIN)
    );
}

#[test]
fn adaptive_switches_sparse_to_frequent_to_sparse_with_hysteresis() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::Adaptive);
    // Sparse: one invocation a minute, each flushed at its end.
    for _ in 0..4 {
        clock.advance(secs(60));
        let actions = invocation(&mut p, &mut clock, ms(100), secs(3), ms(10));
        assert!(matches!(actions[0], Action::WaitForRuntimeDone { .. }));
        assert_eq!(flushes(&actions), 1);
        assert_eq!(p.behaviour(), Behaviour::End);
    }
    // Frequent: one every second. The average gap falls below interval / 2 after a few.
    let mut switched_after = None;
    for i in 0..30 {
        clock.advance(secs(1));
        invocation(&mut p, &mut clock, ms(100), secs(3), ms(10));
        if switched_after.is_none() && p.is_frequent() {
            switched_after = Some(i);
        }
    }
    let switched_after = switched_after.expect("never switched to periodic");
    assert!(switched_after >= 2, "switched too early: {switched_after}");
    assert_eq!(p.behaviour(), Behaviour::Periodic);
    // Inside the hysteresis band (gap between interval / 2 and interval): stays periodic.
    for _ in 0..10 {
        clock.advance(secs(14));
        invocation(&mut p, &mut clock, ms(100), secs(3), ms(10));
        assert!(p.is_frequent(), "left periodic inside the band");
    }
    // One long pause: back to end at once, and that invocation is flushed at its end.
    clock.advance(secs(600));
    let start = clock.now();
    let first = p.on_invoke(start, start + secs(3), EMPTY);
    assert!(!p.is_frequent());
    assert_eq!(first, wait_until(start + secs(3) - INVOKE_MARGIN));
}

#[test]
fn adaptive_periodic_invocations_cost_nothing_after_the_runtime() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::Adaptive);
    for _ in 0..10 {
        clock.advance(ms(500));
        invocation(&mut p, &mut clock, ms(20), secs(3), ms(10));
    }
    assert!(p.is_frequent());
    // A frequent invocation within the interval: call next at once, no flush, no wait.
    let start = clock.advance(ms(500));
    assert_eq!(p.on_invoke(start, start + secs(3), EMPTY), Action::CallNext);
}

#[test]
fn shutdown_flush_uses_the_event_deadline_minus_the_margin_in_every_mode() {
    for mode in [FlushMode::End, FlushMode::Periodic, FlushMode::Adaptive] {
        let mut clock = Clock::new();
        let mut p = policy(mode);
        invocation(&mut p, &mut clock, ms(50), secs(3), ms(10));
        let now = clock.advance(secs(5));
        assert_eq!(
            p.on_shutdown(now, now + ms(1_700)),
            flush_by(now + ms(1_700) - SHUTDOWN_MARGIN),
            "{mode:?}"
        );
    }
}

#[test]
fn runtime_done_without_an_invocation_is_harmless() {
    let clock = Clock::new();
    let mut p = policy(FlushMode::End);
    assert_eq!(p.on_runtime_done(clock.now()), Action::CallNext);
    assert_eq!(p.on_timer(clock.now()), Action::CallNext);
}

/// Drive `p` into periodic behaviour (adaptive, frequent invocations) with an empty buffer, and
/// past the first periodic flush.
fn frequent_adaptive(clock: &mut Clock) -> FlushPolicy {
    let mut p = policy(FlushMode::Adaptive);
    for _ in 0..10 {
        clock.advance(ms(500));
        invocation(&mut p, clock, ms(20), secs(3), ms(10));
    }
    assert!(p.is_frequent());
    p
}

#[test]
fn pressure_flushes_a_periodic_invocation_at_its_start_before_the_interval() {
    let mut clock = Clock::new();
    let mut p = frequent_adaptive(&mut clock);
    // Below the mark: nothing to do within the interval.
    let fill = HIGH_WATER / 2.0;
    let start = clock.advance(ms(500));
    assert_eq!(p.on_invoke(start, start + secs(3), fill), Action::CallNext);
    // At the mark: flush now, while the function runs, within the budget.
    let fill = HIGH_WATER;
    let start = clock.advance(ms(500));
    assert_eq!(
        p.on_invoke(start, start + secs(3), fill),
        flush_by(start + BUDGET)
    );
    // The flush emptied the buffer: call next, never wait for the runtime.
    let fill = EMPTY;
    let now = clock.advance(ms(15));
    assert_eq!(p.on_flush_done(now, fill), Action::CallNext);
    // And the next invocation, with little buffered, costs nothing again.
    let start = clock.advance(ms(500));
    assert_eq!(p.on_invoke(start, start + secs(3), fill), Action::CallNext);
}

#[test]
fn pressure_flushes_at_the_start_of_an_end_invocation_and_still_flushes_at_its_end() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let fill = 0.9;
    let start = clock.now();
    assert_eq!(
        p.on_invoke(start, start + secs(3), fill),
        flush_by(start + BUDGET)
    );
    let fill = EMPTY;
    let now = clock.advance(ms(10));
    let Action::WaitForRuntimeDone { .. } = p.on_flush_done(now, fill) else {
        panic!("end mode must still wait for runtimeDone");
    };
    let now = clock.advance(ms(50));
    assert_eq!(p.on_runtime_done(now), flush_by(now + BUDGET));
    let now = clock.advance(ms(10));
    assert_eq!(p.on_flush_done(now, fill), Action::CallNext);
}

#[test]
fn pressure_during_a_long_invocation_flushes_while_it_runs() {
    let mut clock = Clock::new();
    let mut p = policy_waiting(FlushMode::End, secs(900));
    let start = clock.now();
    let Action::WaitForRuntimeDone { until } = p.on_invoke(start, start + secs(900), EMPTY) else {
        panic!("end mode waits");
    };
    assert_eq!(until, start + INTERVAL);
    // A wake-up below the mark changes nothing.
    let fill = HIGH_WATER / 2.0;
    let now = clock.advance(secs(1));
    assert_eq!(
        p.on_pressure(now, fill),
        Action::WaitForRuntimeDone { until }
    );
    // At the mark: flush now, long before the safety interval.
    let fill = HIGH_WATER;
    let now = clock.advance(secs(1));
    assert_eq!(p.on_pressure(now, fill), flush_by(now + BUDGET));
    let fill = EMPTY;
    let now = clock.advance(ms(10));
    let Action::WaitForRuntimeDone { until } = p.on_flush_done(now, fill) else {
        panic!("still waiting for the runtime");
    };
    // The safety interval restarts from the pressure flush.
    assert_eq!(until, now - ms(10) + INTERVAL);
    let now = clock.advance(secs(5));
    assert_eq!(p.on_runtime_done(now), flush_by(now + BUDGET));
}

#[test]
fn pressure_flushes_pause_for_an_interval_when_they_cannot_relieve_the_buffer() {
    let mut clock = Clock::new();
    let mut p = frequent_adaptive(&mut clock);
    let fill = 0.8;
    let start = clock.advance(ms(500));
    assert!(matches!(
        p.on_invoke(start, start + secs(3), fill),
        Action::FlushNow { .. }
    ));
    // The backend is down: the buffer is as full as before.
    let now = clock.advance(BUDGET);
    assert_eq!(p.on_flush_done(now, fill), Action::CallNext);
    assert!(!p.under_pressure(now, fill));
    // Frequent invocations within the interval no longer pay for a flush...
    for _ in 0..5 {
        let start = clock.advance(ms(500));
        assert_eq!(p.on_invoke(start, start + secs(3), fill), Action::CallNext);
    }
    // ...until the interval has passed.
    clock.advance(INTERVAL);
    let start = clock.advance(ms(500));
    assert!(matches!(
        p.on_invoke(start, start + secs(3), fill),
        Action::FlushNow { .. }
    ));
}

#[test]
fn a_pressure_wake_up_outside_an_end_wait_changes_nothing() {
    let clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let fill = 1.0;
    // No invocation running.
    assert_eq!(p.on_pressure(clock.now(), fill), Action::CallNext);
}

#[test]
fn epoch_deadline_converts_relative_to_now() {
    let now = Instant::now();
    let wall = UNIX_EPOCH + ms(1_000_000);
    assert_eq!(instant_from_epoch_ms(1_003_000, wall, now), now + ms(3_000));
    assert_eq!(instant_from_epoch_ms(999_000, wall, now), now);
}

#[test]
fn shutdown_keeps_the_margin_and_never_goes_backwards() {
    let now = Instant::now();
    let mut p = FlushPolicy::new(FlushSettings::default());
    assert_eq!(
        p.on_shutdown(now, now + ms(1_700)),
        flush_by(now + ms(1_500))
    );
    assert_eq!(p.on_shutdown(now, now + ms(50)), flush_by(now));
}

#[test]
fn flush_settings_default_to_adaptive() {
    let none: [(&str, &str); 0] = [];
    let settings = FlushSettings::from_env(&none).unwrap();
    assert_eq!(settings, FlushSettings::default());
    assert_eq!(settings.mode, FlushMode::Adaptive);
}

#[test]
fn every_bad_flush_variable_is_reported() {
    let env = [
        (FLUSH_VAR, "sometimes"),
        (FLUSH_INTERVAL_VAR, "5"),
        (FLUSH_BUDGET_VAR, "abc"),
        (RUNTIME_DONE_WAIT_VAR, "99"),
    ];
    let errors = FlushSettings::from_env(&env).unwrap_err();
    let vars: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(
        vars,
        [
            FLUSH_VAR,
            FLUSH_INTERVAL_VAR,
            FLUSH_BUDGET_VAR,
            RUNTIME_DONE_WAIT_VAR
        ]
    );
    let env = [(RUNTIME_DONE_WAIT_VAR, "900000")];
    let settings = FlushSettings::from_env(&env).unwrap();
    assert_eq!(settings.runtime_done_wait, secs(900));
    assert!(FlushSettings::from_env(&[(RUNTIME_DONE_WAIT_VAR, "900001")]).is_err());
}

#[test]
fn a_drop_reported_while_waiting_ends_the_wait_with_the_end_flush() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let deadline = clock.at(secs(900));
    let first = p.on_invoke(clock.now(), deadline, EMPTY);
    assert!(
        matches!(first, Action::WaitForRuntimeDone { .. }),
        "{first:?}"
    );
    let at = clock.advance(ms(300));
    assert_eq!(p.on_logs_dropped(at), flush_by(at + BUDGET));
    assert_eq!(
        p.on_flush_done(clock.advance(ms(20)), EMPTY),
        Action::CallNext
    );
    // runtimeDone coming after all changes nothing.
    assert_eq!(p.on_runtime_done(clock.advance(ms(5))), Action::CallNext);
}

/// The wait for a runtimeDone that never comes is bounded whatever the invocation's timeout:
/// at the bound the end flush runs and the loop calls next, however far the deadline.
#[test]
fn the_wait_for_runtime_done_never_exceeds_its_bound() {
    const BOUND: Duration = Duration::from_secs(10);
    let mut clock = Clock::new();
    let mut p = FlushPolicy::new(FlushSettings {
        mode: FlushMode::End,
        ..FlushSettings::default()
    });
    let started = clock.now();
    // A 15-minute timeout.
    let deadline = clock.at(secs(900));
    let Action::WaitForRuntimeDone { until } = p.on_invoke(started, deadline, EMPTY) else {
        panic!("waits for runtimeDone")
    };
    assert_eq!(until, started + BOUND);
    let at = clock.advance(BOUND);
    let Action::FlushNow { deadline: flush_by } = p.on_timer(at) else {
        panic!("flushes at the bound")
    };
    assert!(flush_by <= at + FlushSettings::default().budget);
    assert_eq!(
        p.on_flush_done(clock.advance(ms(30)), EMPTY),
        Action::CallNext
    );
}

/// A long invocation under a raised bound gets its safety flushes until the bound, then the
/// end flush; under the default bound it gets the end flush at the bound (10 s), before the
/// first safety flush would be due, and the loop calls next while the function still runs.
#[test]
fn a_long_invocation_stops_waiting_at_the_bound_after_its_safety_flushes() {
    let mut clock = Clock::new();
    let mut p = policy_waiting(FlushMode::End, secs(45));
    let actions = invocation(&mut p, &mut clock, secs(65), secs(900), ms(10));
    // Safety flushes at 20 s and 40 s, the end flush at 45 s.
    assert_eq!(flushes(&actions), 3, "{actions:?}");
    assert_eq!(actions.last(), Some(&Action::CallNext));
    assert!(clock.now() < clock.origin + secs(46), "{actions:?}");

    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let actions = invocation(&mut p, &mut clock, secs(65), secs(900), ms(10));
    assert_eq!(flushes(&actions), 1, "{actions:?}");
    assert!(clock.now() < clock.origin + secs(11), "{actions:?}");
}

#[test]
fn while_the_backend_is_held_an_end_invocation_flushes_only_while_it_runs() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    p.set_backend_held(true);
    for _ in 0..3 {
        let start = clock.advance(secs(60));
        // The flush that may probe the backend goes while the function starts...
        assert_eq!(
            p.on_invoke(start, start + secs(3), EMPTY),
            flush_by(start + BUDGET)
        );
        // ...and with the backend still held, nothing waits for runtimeDone.
        let now = clock.advance(ms(2));
        assert_eq!(p.on_flush_done(now, EMPTY), Action::CallNext);
    }
}

#[test]
fn once_the_probe_closes_the_breaker_the_end_flush_comes_back_in_the_same_invocation() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    p.set_backend_held(true);
    let start = clock.now();
    assert_eq!(
        p.on_invoke(start, start + secs(3), EMPTY),
        flush_by(start + BUDGET)
    );
    p.set_backend_held(false);
    let now = clock.advance(ms(3));
    assert_eq!(
        p.on_flush_done(now, EMPTY),
        wait_until(start + secs(3) - INVOKE_MARGIN)
    );
    let done = clock.advance(ms(40));
    assert_eq!(p.on_runtime_done(done), flush_by(done + BUDGET));
    assert_eq!(
        p.on_flush_done(clock.advance(ms(2)), EMPTY),
        Action::CallNext
    );
}

#[test]
fn while_the_backend_is_held_every_periodic_invocation_starts_with_a_flush() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::Periodic);
    let start = clock.now();
    assert!(matches!(
        p.on_invoke(start, start + secs(3), EMPTY),
        Action::FlushNow { .. }
    ));
    assert_eq!(
        p.on_flush_done(clock.advance(ms(2)), EMPTY),
        Action::CallNext
    );
    // Within the interval: no flush while the backend is healthy...
    let start = clock.advance(ms(100));
    assert_eq!(p.on_invoke(start, start + secs(3), EMPTY), Action::CallNext);
    // ...one at every start while it is held (the breaker decides whether it probes).
    p.set_backend_held(true);
    for _ in 0..3 {
        let start = clock.advance(ms(100));
        assert_eq!(
            p.on_invoke(start, start + secs(3), EMPTY),
            flush_by(start + BUDGET)
        );
        assert_eq!(
            p.on_flush_done(clock.advance(ms(1)), EMPTY),
            Action::CallNext
        );
    }
}

#[test]
fn a_pressure_flush_cut_because_the_runtime_is_done_does_not_pause_pressure() {
    let mut clock = Clock::new();
    let mut p = frequent_adaptive(&mut clock);
    let fill = 0.8;
    for _ in 0..5 {
        let start = clock.advance(ms(500));
        assert!(matches!(
            p.on_invoke(start, start + secs(3), fill),
            Action::FlushNow { .. }
        ));
        // Stopped at a piece boundary, the buffer still above the mark: the next start
        // flushes again.
        let now = clock.advance(ms(30));
        assert_eq!(p.on_flush_cut(now), Action::CallNext);
        assert!(p.under_pressure(now, fill));
    }
}

#[test]
fn a_flush_cut_in_end_mode_still_leads_to_the_end_flush() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    let start = clock.now();
    let fill = 0.8;
    assert_eq!(
        p.on_invoke(start, start + secs(3), fill),
        flush_by(start + BUDGET)
    );
    let now = clock.advance(ms(20));
    assert_eq!(
        p.on_flush_cut(now),
        wait_until(start + secs(3) - INVOKE_MARGIN)
    );
    assert_eq!(p.on_runtime_done(now), flush_by(now + BUDGET));
}

#[test]
fn without_runtime_done_a_probe_that_closes_the_breaker_does_not_start_a_wait() {
    let mut clock = Clock::new();
    let mut p = policy(FlushMode::End);
    p.set_runtime_done_available(false);
    p.set_backend_held(true);
    let start = clock.now();
    assert_eq!(
        p.on_invoke(start, start + secs(3), EMPTY),
        flush_by(start + BUDGET)
    );
    // The probe in that flush closed the breaker: nothing to wait for, the flush was it.
    p.set_backend_held(false);
    assert_eq!(
        p.on_flush_done(clock.advance(ms(3)), EMPTY),
        Action::CallNext
    );
}
