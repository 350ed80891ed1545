//! Where a request goes: the fleet's environments and the concurrency limit, as Lambda decides.
//!
//! A request goes to an idle environment if there is one (the one idle for the shortest time,
//! so that surplus environments age out), else a new environment starts for it, a cold start.
//! Either way only while the requests in flight (busy environments, and environments starting
//! for a request) stay under the function's limit: its reserved concurrency if it has one,
//! else the account's unreserved concurrency. A request above it is throttled and never
//! reaches a runtime. Environments idle longer than the idle timeout are shut down;
//! provisioned ones are kept.

use std::time::Duration;

use tokio::time::Instant;

/// Lambda's throttle reason when the function's reserved concurrency is used up.
pub const RESERVED_LIMIT: &str = "ReservedFunctionConcurrentInvocationLimitExceeded";
/// Lambda's throttle reason when the account's (unreserved) concurrency is used up.
pub const ACCOUNT_LIMIT: &str = "ConcurrentInvocationLimitExceeded";

/// What one environment of the pool is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Initializing ahead of requests (provisioned concurrency): not in flight.
    Warming,
    /// Initializing for the request that started it: in flight.
    Starting,
    /// Running an invocation: in flight.
    Busy,
    /// Frozen, waiting for a request, since then.
    Idle(Instant),
    /// Shutting down or gone.
    Retired,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// To this idle environment.
    Warm(usize),
    /// To a new environment (its index is the pool's next one).
    Cold,
    /// Refused, with Lambda's reason.
    Throttle(&'static str),
}

/// The environments and the limit they share.
#[derive(Debug)]
pub(crate) struct Pool {
    slots: Vec<Slot>,
    /// Provisioned environments are never shut down for being idle.
    provisioned: Vec<bool>,
    limit: u32,
    reason: &'static str,
}

impl Pool {
    /// A pool whose requests in flight may not exceed `reserved` (if set) or `account`.
    pub(crate) fn new(reserved: Option<u32>, account: u32) -> Pool {
        let (limit, reason) = match reserved {
            Some(r) if r <= account => (r, RESERVED_LIMIT),
            _ => (account, ACCOUNT_LIMIT),
        };
        Pool {
            slots: Vec::new(),
            provisioned: Vec::new(),
            limit,
            reason,
        }
    }

    /// The concurrency limit.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Starting | Slot::Busy))
            .count() as u32
    }

    /// The throttle reason above the limit.
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }

    /// Environments initializing ahead of requests.
    pub(crate) fn warming(&self) -> u32 {
        self.slots.iter().filter(|s| **s == Slot::Warming).count() as u32
    }

    /// Environments not retired.
    #[cfg(test)]
    fn live(&self) -> u32 {
        self.slots.iter().filter(|s| **s != Slot::Retired).count() as u32
    }

    /// Adds an environment initializing ahead of requests; returns its index.
    pub(crate) fn add_provisioned(&mut self) -> usize {
        self.slots.push(Slot::Warming);
        self.provisioned.push(true);
        self.slots.len() - 1
    }

    /// Decides where a request arriving now goes, and marks the environment busy (or adds
    /// the starting one).
    pub(crate) fn route(&mut self) -> Route {
        if self.in_flight() >= self.limit {
            return Route::Throttle(self.reason);
        }
        match self.most_recent_idle() {
            Some(i) => {
                self.slots[i] = Slot::Busy;
                Route::Warm(i)
            }
            None => {
                self.slots.push(Slot::Starting);
                self.provisioned.push(false);
                Route::Cold
            }
        }
    }

    /// The request that made `i`, the last environment and still to start, goes to an idle
    /// environment instead, if one has come since: `i` is forgotten and the idle one (as
    /// [`Pool::route`] picks it) is marked busy and returned.
    pub(crate) fn reroute_warm(&mut self, i: usize) -> Option<usize> {
        if i + 1 != self.slots.len() || self.slots[i] != Slot::Starting {
            return None;
        }
        let warm = self.most_recent_idle()?;
        self.slots.pop();
        self.provisioned.pop();
        self.slots[warm] = Slot::Busy;
        Some(warm)
    }

    /// The environment idle for the shortest time, if any is idle.
    fn most_recent_idle(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Idle(since) => Some((i, *since)),
                _ => None,
            })
            .max_by_key(|(_, since)| *since)
            .map(|(i, _)| i)
    }

    /// Environment `i` finished its init (a provisioned one) or an invocation: idle now.
    pub(crate) fn idle(&mut self, i: usize, now: Instant) {
        if let Some(s) = self.slots.get_mut(i) {
            if *s != Slot::Retired {
                *s = Slot::Idle(now);
            }
        }
    }

    /// Environment `i` is shutting down (a reset, a failed init, the end of the run).
    pub(crate) fn retire(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot::Retired;
        }
    }

    /// The on-demand environments idle for `timeout` or longer at `now`, retired.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<usize> {
        let mut expired = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Slot::Idle(since) = *s {
                if !self.provisioned[i] && now.saturating_duration_since(since) >= timeout {
                    *s = Slot::Retired;
                    expired.push(i);
                }
            }
        }
        expired
    }

    /// When the next on-demand environment becomes due to expire, if any is idle.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.slots
            .iter()
            .zip(&self.provisioned)
            .filter_map(|(s, p)| match s {
                Slot::Idle(since) if !p => since.checked_add(timeout),
                _ => None,
            })
            .min()
    }

    /// Every environment not yet retired, retired (the end of the run).
    pub(crate) fn retire_all(&mut self) -> Vec<usize> {
        let mut all = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if *s != Slot::Retired {
                *s = Slot::Retired;
                all.push(i);
            }
        }
        all
    }

    /// What environment `i` is doing.
    #[cfg(test)]
    fn slot(&self, i: usize) -> Slot {
        self.slots[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_takes_an_idle_environment_before_starting_one() {
        let mut pool = Pool::new(None, 10);
        assert_eq!(pool.route(), Route::Cold);
        assert_eq!(pool.route(), Route::Cold);
        let t = Instant::now();
        pool.idle(0, t);
        pool.idle(1, t + Duration::from_millis(5));
        // The most recently idle one.
        assert_eq!(pool.route(), Route::Warm(1));
        assert_eq!(pool.route(), Route::Warm(0));
        assert_eq!(pool.route(), Route::Cold);
        assert_eq!(pool.in_flight(), 3);
    }

    #[test]
    fn requests_over_the_limit_are_throttled_with_the_limit_s_reason() {
        let mut reserved = Pool::new(Some(2), 1000);
        assert_eq!(reserved.limit(), 2);
        assert_eq!(reserved.route(), Route::Cold);
        assert_eq!(reserved.route(), Route::Cold);
        assert_eq!(reserved.route(), Route::Throttle(RESERVED_LIMIT));
        // A finished request frees its share: the next goes warm.
        reserved.idle(0, Instant::now());
        assert_eq!(reserved.route(), Route::Warm(0));

        let mut account = Pool::new(None, 1);
        account.route();
        assert_eq!(account.route(), Route::Throttle(ACCOUNT_LIMIT));
        // A reserved concurrency above the account's is capped by the account.
        assert_eq!(Pool::new(Some(5), 3).limit(), 3);
    }

    #[test]
    fn idle_environments_count_against_nothing_and_expire_unless_provisioned() {
        let mut pool = Pool::new(Some(1), 1000);
        let p = pool.add_provisioned();
        assert_eq!(pool.in_flight(), 0, "warming is not in flight");
        let t = Instant::now();
        pool.idle(p, t);
        assert_eq!(pool.route(), Route::Warm(p));
        pool.idle(p, t);
        let timeout = Duration::from_secs(1);
        assert_eq!(pool.next_expiry(timeout), None);
        assert!(pool.expire(t + timeout * 10, timeout).is_empty());

        let mut pool = Pool::new(None, 1000);
        pool.route();
        pool.route();
        pool.idle(0, t);
        pool.idle(1, t + Duration::from_millis(300));
        assert_eq!(pool.next_expiry(timeout), Some(t + timeout));
        assert_eq!(pool.expire(t + Duration::from_millis(1100), timeout), [0]);
        assert_eq!(pool.slot(0), Slot::Retired);
        assert_eq!(pool.live(), 1);
        assert_eq!(pool.route(), Route::Warm(1));
        assert_eq!(pool.retire_all(), [1]);
        assert_eq!(pool.live(), 0);
    }

    #[test]
    fn a_pending_cold_start_goes_to_an_environment_idle_since() {
        let mut pool = Pool::new(None, 10);
        assert_eq!(pool.route(), Route::Cold);
        assert_eq!(pool.route(), Route::Cold);
        // Nothing idle yet: the second start stays.
        assert_eq!(pool.reroute_warm(1), None);
        pool.idle(0, Instant::now());
        assert_eq!(pool.reroute_warm(0), None, "only the last, still starting");
        assert_eq!(pool.reroute_warm(1), Some(0));
        assert_eq!(pool.in_flight(), 1);
        // Nothing idle now: the next one starts, in the place of the forgotten one.
        assert_eq!(pool.route(), Route::Cold);
        assert_eq!(pool.in_flight(), 2);
    }

    #[test]
    fn a_retired_environment_is_never_made_idle_again() {
        let mut pool = Pool::new(None, 10);
        pool.route();
        pool.retire(0);
        pool.idle(0, Instant::now());
        assert_eq!(pool.slot(0), Slot::Retired);
        assert_eq!(pool.route(), Route::Cold);
    }
}
