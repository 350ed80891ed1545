//! OTLP/HTTP export with deadline-bounded retries.
//!
//! [`Exporter::export`] sends one encoded request and retries it while the deadline allows:
//!
//! - retried: 429, 502, 503, 504, connection errors, and a per-request timeout
//!   (`OTEL_EXPORTER_OTLP_TIMEOUT`) that ends before the flush deadline; delays grow
//!   exponentially from [`BACKOFF_START`] to [`BACKOFF_MAX`] with jitter (a random delay in
//!   the upper half of the step); a `Retry-After` (seconds or HTTP date) replaces the computed
//!   delay and is also remembered, so no later flush sends to that signal before it has passed;
//! - never retried: any other status. 4xx is a permanent refusal ([`ExportResult::Rejected`]),
//!   other 5xx a failure ([`ExportResult::Failed`]);
//! - a retry is never started if its delay ends at or past the deadline: the result is then
//!   [`ExportResult::Deferred`] and the caller keeps the data;
//! - at the deadline an attempt in progress is abandoned ([`ExportResult::Abandoned`]) and its
//!   connection closed at once (see [`conn`]), so nothing is left in flight when the
//!   environment freezes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, StatusCode};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::diag::stats::Stats;
use crate::export::body::{self, Chunks};
use crate::export::config::{Compression, ExportConfig, SignalConfig};
use crate::export::conn::{Origin, Pool};
use crate::pipeline::Signal;

/// First retry delay.
pub const BACKOFF_START: Duration = Duration::from_millis(25);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How one export request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportResult {
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
pub trait LatencySink {
    fn observe_export(&mut self, signal: Signal, latency: Duration, outcome: &'static str);
}

impl LatencySink for () {
    fn observe_export(&mut self, _: Signal, _: Duration, _: &'static str) {}
}

/// Sends export requests. One per process; owns the kept-alive connections.
#[derive(Debug)]
pub struct Exporter {
    signals: [SignalConfig; 3],
    origins: [Option<Origin>; 3],
    pool: Pool,
    not_before: [Option<Instant>; 3],
    stats: Arc<Stats>,
    random: RandomState,
    draws: u64,
}

enum Attempt {
    Done(ExportResult),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Exporter {
    pub fn new(config: &ExportConfig, stats: Arc<Stats>) -> Self {
        let signals = [
            config.traces.clone(),
            config.metrics.clone(),
            config.logs.clone(),
        ];
        let origins = [0, 1, 2].map(|i| signals[i].endpoint.as_ref().and_then(Origin::of));
        // One TLS configuration serves every signal: it trusts the certificates any of them names.
        let mut extra_roots = Vec::new();
        for cert in signals.iter().flat_map(|s| &s.extra_roots) {
            if !extra_roots.contains(cert) {
                extra_roots.push(cert.clone());
            }
        }
        Exporter {
            signals,
            origins,
            pool: Pool::new(extra_roots),
            not_before: [None; 3],
            stats,
            random: RandomState::new(),
            draws: 0,
        }
    }

    pub fn config(&self, signal: Signal) -> &SignalConfig {
        &self.signals[signal.index()]
    }

    pub fn has_endpoint(&self, signal: Signal) -> bool {
        self.origins[signal.index()].is_some()
    }

    /// Send `body` (already encoded per the signal's protocol and compression), retrying while
    /// `deadline` allows. Returns by `deadline` (plus the time to close a connection).
    pub async fn export(
        &mut self,
        signal: Signal,
        body: Chunks,
        deadline: Instant,
        latency: &mut dyn LatencySink,
    ) -> ExportResult {
        let i = signal.index();
        let Some(origin) = self.origins[i].clone() else {
            return ExportResult::Failed {
                reason: format!("no endpoint configured for {}", signal.as_str()),
            };
        };
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
            let per_request = now + self.signals[i].timeout;
            let attempt_deadline = per_request.min(deadline);
            Stats::add(&self.stats.export_attempts, 1);
            let started = Instant::now();
            let attempt = timeout_at(attempt_deadline, self.attempt(signal, &origin, &body)).await;
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
                    (
                        format!(
                            "no answer within {} ms",
                            self.signals[i].timeout.as_millis()
                        ),
                        None,
                    )
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
                None => self.backoff(failures),
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

    async fn attempt(&mut self, signal: Signal, origin: &Origin, body: &Chunks) -> Attempt {
        let config = &self.signals[signal.index()];
        let Some(uri) = config.endpoint.clone() else {
            return Attempt::Done(ExportResult::Failed {
                reason: "no endpoint".to_owned(),
            });
        };
        let headers = config.headers.clone();
        let protocol = config.protocol;
        let compression = config.compression;
        let make = move || {
            let mut request = Request::new(body.clone());
            *request.method_mut() = Method::POST;
            *request.uri_mut() = uri.clone();
            let h = request.headers_mut();
            if let Some(host) = uri.authority().and_then(|a| a.as_str().parse().ok()) {
                h.insert(http::header::HOST, host);
            }
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(protocol.content_type()),
            );
            if compression == Compression::Gzip {
                h.insert(
                    http::header::CONTENT_ENCODING,
                    http::HeaderValue::from_static("gzip"),
                );
            }
            h.insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(concat!("contrail/", env!("CARGO_PKG_VERSION"))),
            );
            for (name, value) in &headers {
                h.insert(name.clone(), value.clone());
            }
            request
        };
        let response = match self.pool.round_trip(origin, &make).await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: e.to_string(),
                    retry_after: None,
                };
            }
        };
        let status = response.status;
        if status.is_success() {
            let partial = body::partial_success(signal, &response.headers, &response.body);
            return Attempt::Done(ExportResult::Delivered {
                rejected: partial.rejected,
                message: partial.message,
            });
        }
        let message = body::error_message(&response.headers, &response.body);
        match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry {
                reason: format!("HTTP {}: {message}", status.as_u16()),
                retry_after: body::retry_after(&response.headers, SystemTime::now()),
            },
            s if s.is_client_error() => Attempt::Done(ExportResult::Rejected {
                status: s.as_u16(),
                message,
            }),
            s => Attempt::Done(ExportResult::Failed {
                reason: format!("HTTP {}: {message}", s.as_u16()),
            }),
        }
    }

    /// The delay before retry number `failures` (0-based): exponential, capped, jittered into
    /// its upper half.
    fn backoff(&mut self, failures: u32) -> Duration {
        let step = BACKOFF_START
            .saturating_mul(1u32 << failures.min(16))
            .min(BACKOFF_MAX);
        self.draws = self.draws.wrapping_add(1);
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.draws);
        let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        step.mul_f64(0.5 + 0.5 * fraction)
    }
}
