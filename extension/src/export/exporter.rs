//! OTLP/HTTP export with deadline-bounded retries.
//!
//! [`Exporter::export`] sends one encoded request and retries it while the deadline allows:
//!
//! - what an answer means is [`retry`]'s (pure) classification: 429, 502, 503, 504 are
//!   retried, as are connection errors and a per-request timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`)
//!   that ends before the flush deadline; any other 4xx is a permanent refusal
//!   ([`ExportResult::Rejected`]), any other status a failure ([`ExportResult::Failed`]);
//! - delays follow [`retry::Backoff`]; a `Retry-After` (seconds or HTTP date) replaces the
//!   computed delay and is also remembered, so no later flush sends to that signal before it
//!   has passed;
//! - a retry is never started if its delay ends at or past the deadline: the result is then
//!   [`ExportResult::Deferred`] and the caller keeps the data;
//! - at the deadline an attempt in progress is abandoned ([`ExportResult::Abandoned`]) and its
//!   connection closed at once (see [`crate::export::conn`]), so nothing is left in flight when the
//!   environment freezes.
//!
//! Each attempt's request comes from [`RequestTemplate`] (origin-form target, `Host`,
//! the signal's headers).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep_until, timeout_at};

use crate::diag::Stats;
use crate::export::body::{self, Chunks};
use crate::export::config::{ExportConfig, SignalConfig};
use crate::export::conn::{Origin, Pool};
use crate::export::request::RequestTemplate;
use crate::export::retry::{self, Backoff, Class};
use crate::pipeline::Signal;

/// How one export request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExportResult {
    /// The backend took it; `rejected` records were refused (partial success).
    Delivered { rejected: u64, message: String },
    /// A 4xx other than 429: the backend will never take this data.
    Rejected { status: u16, message: String },
    /// A non-retryable failure (a 5xx other than 502/503/504, an unusable response).
    Failed { reason: String },
    /// Retryable failures until no further attempt fitted before the deadline; nothing is in
    /// flight.
    Deferred { reason: String },
    /// The deadline passed while an attempt was in progress; its connection was closed. The
    /// backend may or may not have received it.
    Abandoned,
}

/// Export latency observations, for self-telemetry.
pub(crate) trait LatencySink {
    fn observe_export(&mut self, signal: Signal, latency: Duration, outcome: &'static str);
}

impl LatencySink for () {
    fn observe_export(&mut self, _: Signal, _: Duration, _: &'static str) {}
}

/// Sends export requests. One per process; owns the kept-alive connections.
#[derive(Debug)]
pub(crate) struct Exporter {
    signals: [SignalConfig; 3],
    /// Where each signal goes and its request, when it has an endpoint.
    targets: [Option<(Origin, RequestTemplate)>; 3],
    pool: Pool,
    not_before: [Option<Instant>; 3],
    stats: Arc<Stats>,
    backoff: Backoff,
}

enum Attempt {
    Done(ExportResult),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Exporter {
    pub(crate) fn new(config: &ExportConfig, stats: Arc<Stats>) -> Self {
        let signals = [
            config.traces.clone(),
            config.metrics.clone(),
            config.logs.clone(),
        ];
        let targets = [0, 1, 2].map(|i| {
            let origin = signals[i].endpoint.as_ref().and_then(Origin::of)?;
            Some((origin, RequestTemplate::new(&signals[i])?))
        });
        // One TLS configuration serves every signal: it trusts the certificates any of them names.
        let mut extra_roots = Vec::new();
        for cert in signals.iter().flat_map(|s| &s.extra_roots) {
            if !extra_roots.contains(cert) {
                extra_roots.push(cert.clone());
            }
        }
        Exporter {
            signals,
            targets,
            pool: Pool::new(extra_roots),
            not_before: [None; 3],
            stats,
            backoff: Backoff::new(),
        }
    }

    pub(crate) fn config(&self, signal: Signal) -> &SignalConfig {
        &self.signals[signal.index()]
    }

    pub(crate) fn has_endpoint(&self, signal: Signal) -> bool {
        self.targets[signal.index()].is_some()
    }

    /// Send `body` (already encoded per the signal's protocol and compression), retrying while
    /// `deadline` allows. Returns by `deadline` (plus the time to close a connection).
    pub(crate) async fn export(
        &mut self,
        signal: Signal,
        body: Chunks,
        deadline: Instant,
        latency: &mut dyn LatencySink,
    ) -> ExportResult {
        let i = signal.index();
        let Some((origin, template)) = &self.targets[i] else {
            return ExportResult::Failed {
                reason: format!("no endpoint configured for {}", signal.as_str()),
            };
        };
        let timeout = self.signals[i].timeout;
        let mut failures: u32 = 0;
        loop {
            let now = Instant::now();
            if let Some(not_before) = self.not_before[i] {
                if not_before >= deadline {
                    return ExportResult::Deferred {
                        reason: "the backend asked to wait (Retry-After)".to_owned(),
                    };
                }
                if not_before > now {
                    sleep_until(not_before).await;
                }
                self.not_before[i] = None;
            }
            let now = Instant::now();
            if now >= deadline {
                return ExportResult::Deferred {
                    reason: "no time left before the flush deadline".to_owned(),
                };
            }
            let per_request = now + timeout;
            let attempt_deadline = per_request.min(deadline);
            Stats::add(&self.stats.export_attempts, 1);
            let started = Instant::now();
            let attempt = timeout_at(
                attempt_deadline,
                Self::attempt(&mut self.pool, signal, origin, template, &body),
            )
            .await;
            let elapsed = started.elapsed();
            let (reason, retry_after) = match attempt {
                Err(_) => {
                    // The attempt future was dropped mid-request: close its connection now.
                    self.pool.discard_broken();
                    Stats::add(&self.stats.export_abandoned, 1);
                    Stats::add(&self.stats.export_failures, 1);
                    latency.observe_export(signal, elapsed, "abandoned");
                    if attempt_deadline >= deadline {
                        return ExportResult::Abandoned;
                    }
                    (format!("no answer within {} ms", timeout.as_millis()), None)
                }
                Ok(Attempt::Done(result)) => {
                    let outcome = match &result {
                        ExportResult::Delivered { .. } => "ok",
                        _ => {
                            Stats::add(&self.stats.export_failures, 1);
                            "failed"
                        }
                    };
                    latency.observe_export(signal, elapsed, outcome);
                    return result;
                }
                Ok(Attempt::Retry {
                    reason,
                    retry_after,
                }) => {
                    Stats::add(&self.stats.export_failures, 1);
                    latency.observe_export(signal, elapsed, "retryable");
                    (reason, retry_after)
                }
            };
            let delay = match retry_after {
                Some(d) => d,
                None => self.backoff.delay(failures),
            };
            failures = failures.saturating_add(1);
            let next = Instant::now() + delay;
            if next >= deadline {
                if retry_after.is_some() {
                    self.not_before[i] = Some(next);
                }
                return ExportResult::Deferred { reason };
            }
            sleep_until(next).await;
        }
    }

    /// One round trip, and what its answer means ([`retry::classify`]).
    async fn attempt(
        pool: &mut Pool,
        signal: Signal,
        origin: &Origin,
        template: &RequestTemplate,
        body: &Chunks,
    ) -> Attempt {
        let make = || template.request(body.clone());
        let response = match pool.round_trip(origin, &make).await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: e.to_string(),
                    retry_after: None,
                };
            }
        };
        let status = response.status;
        let message = || body::error_message(&response.headers, &response.body);
        match retry::classify(status) {
            Class::Delivered => {
                let partial = body::partial_success(signal, &response.headers, &response.body);
                Attempt::Done(ExportResult::Delivered {
                    rejected: partial.rejected,
                    message: partial.message,
                })
            }
            Class::Retryable => Attempt::Retry {
                reason: format!("HTTP {}: {}", status.as_u16(), message()),
                retry_after: retry::retry_after(&response.headers, SystemTime::now()),
            },
            Class::Rejected => Attempt::Done(ExportResult::Rejected {
                status: status.as_u16(),
                message: message(),
            }),
            Class::Failed => Attempt::Done(ExportResult::Failed {
                reason: format!("HTTP {}: {}", status.as_u16(), message()),
            }),
        }
    }
}
