//! What a fleet run measured: every request (the timeline), every environment (cold start,
//! invocations, utilization, idle gaps), the throttles, and the environments' own run report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{RunReport, Summary};

/// One request of the load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestRecord {
    /// When it arrived, from the start of the load (ms).
    pub at_ms: f64,
    /// The environment that ran it (none when throttled or its environment failed to start).
    pub environment: Option<u32>,
    /// It waited for a new environment's init.
    pub cold: bool,
    /// `success`, `error`, `timeout`, `failure`, or `throttled`.
    pub outcome: String,
    /// The Invoke API's status: 429 when throttled (`TooManyRequestsException`), else 200
    /// (a function error is a 200 with `X-Amz-Function-Error` on Lambda).
    pub status_code: u16,
    /// The function's `errorType` (of its invocation, or of its environment's failed init:
    /// `Runtime.ExitError`, the runtime's own type), or the throttle's `Reason`.
    pub error_type: Option<String>,
    /// From arrival to the runtime's answer (ms): init (if cold) plus the runtime's part of
    /// the invocation (the extensions' time after it is not the caller's); 0 when throttled.
    pub latency_ms: f64,
}

/// One execution environment of the fleet.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct EnvironmentReport {
    /// Its index (`environment` of requests, invocations and extensions).
    pub index: u32,
    /// `on-demand` or `provisioned-concurrency`.
    pub initialization_type: String,
    /// The `faas.instance` its telemetry carries (`AWS_LAMBDA_LOG_STREAM_NAME`'s instance).
    pub instance_id: String,
    /// When it was created, from the start of the load (ms; negative for provisioned ones).
    pub created_at_ms: f64,
    /// Its init phase (ms), if it finished.
    pub init_ms: Option<f64>,
    /// Invocations it ran.
    pub invocations: u32,
    /// Time spent in invocations (ms).
    pub busy_ms: f64,
    /// From creation to the start of its shutdown (ms).
    pub lifetime_ms: f64,
    /// `busy_ms / lifetime_ms`.
    pub utilization: f64,
    /// The gaps between the end of an invocation and the start of the next (ms).
    pub idle_gaps: Option<Summary>,
    /// Why it ended: `spindown` (idle timeout or end of the run), `timeout`, `failure`.
    pub shutdown_reason: String,
    /// It was initialized and never invoked.
    pub never_invoked: bool,
    /// Why it could not start or failed its init, if it did.
    pub error: Option<String>,
}

/// Everything a fleet run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FleetReport {
    /// The load profile, as given.
    pub load: String,
    /// The concurrency limit requests met: the reserved concurrency, else the account's.
    pub concurrency_limit: u32,
    /// The throttle reason above the limit.
    pub limit_reason: String,
    /// Environments initialized ahead of the load.
    pub provisioned_concurrency: u32,
    /// The most environments this machine runs at this memory size (or fewer, when
    /// `max_environments` asked for fewer).
    pub machine_limit: u32,
    /// Requests sent.
    pub requests: u64,
    /// Requests throttled, by reason.
    pub throttled: BTreeMap<String, u64>,
    /// Requests that started a new environment.
    pub cold_starts: u64,
    /// The most requests in flight at once (busy environments and those starting for a
    /// request), as the dispatcher counted them.
    pub peak_in_flight: u32,
    /// Every request, by arrival.
    pub timeline: Vec<RequestRecord>,
    /// Every environment, by index.
    pub environments: Vec<EnvironmentReport>,
    /// The environments' extensions, runtimes, invocations and resources, as a single run
    /// reports them.
    pub run: RunReport,
}

impl FleetReport {
    /// Requests throttled, all reasons.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.values().sum()
    }

    /// The report as text: the totals, then one line per environment.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let answered: Vec<&RequestRecord> = self
            .timeline
            .iter()
            .filter(|r| r.outcome != "throttled")
            .collect();
        let latency: Vec<f64> = answered.iter().map(|r| r.latency_ms).collect();
        let errors = answered.iter().filter(|r| r.outcome != "success").count();
        let _ = writeln!(
            s,
            "== contrail-sim scale: {} ({} MB), load {}",
            self.run.function_name, self.run.memory_size_mb, self.load
        );
        let _ = writeln!(s, "resources: {}", self.run.resources.summary);
        let _ = writeln!(
            s,
            "limit: {} concurrent ({}), {} provisioned; this machine runs at most {} environments",
            self.concurrency_limit,
            self.limit_reason,
            self.provisioned_concurrency,
            self.machine_limit
        );
        let _ = writeln!(
            s,
            "requests: {} sent, {} answered ({} with an error), {} throttled, {} cold starts, peak {} in flight",
            self.requests,
            answered.len(),
            errors,
            self.throttled_total(),
            self.cold_starts,
            self.peak_in_flight
        );
        for (reason, n) in &self.throttled {
            let _ = writeln!(
                s,
                "  throttled {n}: 429 TooManyRequestsException ({reason})"
            );
        }
        if let Some(l) = Summary::of(&latency) {
            let _ = writeln!(
                s,
                "latency:  median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.median, l.p99, l.max
            );
        }
        let _ = writeln!(
            s,
            "{:>4}  {:<24}  {:>9}  {:>7}  {:>10}  {:>11}  {:>6}  ended",
            "env", "type", "init", "invokes", "busy", "lifetime", "util"
        );
        for e in &self.environments {
            let _ = writeln!(
                s,
                "{:>4}  {:<24}  {:>9}  {:>7}  {:>7.1} ms  {:>8.1} ms  {:>5.1}%  {}{}{}",
                e.index,
                e.initialization_type,
                e.init_ms.map_or("-".to_owned(), |m| format!("{m:.1} ms")),
                e.invocations,
                e.busy_ms,
                e.lifetime_ms,
                e.utilization * 100.0,
                e.shutdown_reason,
                if e.never_invoked {
                    " (never invoked)"
                } else {
                    ""
                },
                e.error
                    .as_ref()
                    .map_or(String::new(), |why| format!(": {why}"))
            );
        }
        s
    }
}

/// The throttles of a timeline, by reason.
pub(crate) fn throttles(timeline: &[RequestRecord]) -> BTreeMap<String, u64> {
    let mut by_reason = BTreeMap::new();
    for r in timeline.iter().filter(|r| r.outcome == "throttled") {
        *by_reason
            .entry(r.error_type.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    by_reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(at_ms: f64, latency_ms: f64, outcome: &str) -> RequestRecord {
        RequestRecord {
            at_ms,
            environment: Some(0),
            cold: false,
            outcome: outcome.into(),
            status_code: if outcome == "throttled" { 429 } else { 200 },
            error_type: (outcome == "throttled").then(|| "Reason".to_owned()),
            latency_ms,
        }
    }

    #[test]
    fn throttles_are_counted_by_reason() {
        let mut timeline = vec![
            request(0.0, 10.0, "success"),
            request(6.0, 0.0, "throttled"),
            request(7.0, 0.0, "throttled"),
        ];
        timeline[2].error_type = Some("Other".into());
        let by = throttles(&timeline);
        assert_eq!((by.get("Reason"), by.get("Other")), (Some(&1), Some(&1)));
        assert_eq!(by.len(), 2);
    }
}
