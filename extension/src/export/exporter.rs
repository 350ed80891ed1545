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
//! the signal's headers), then, per attempt and so after any freeze:
//!
//! - headers whose values name a secret get their values ([`Secrets::lookup`]); an attempt
//!   waits for a value not fetched yet until the deadline (then [`ExportResult::Deferred`]),
//!   and a value that cannot be had drops the data as `secret_unavailable`. A 401 or 403
//!   answer to a request with such headers fetches them again and retries once;
//! - a signal with `AUTH=sigv4` is signed over the exact bytes sent (after gzip) with
//!   credentials valid at that moment; a refusal of AWS's endpoints is read by
//!   [`refusal::classify`]: refused credentials are fetched again and the request retried once,
//!   and the other causes drop the data under their own reason with advice, once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep_until, timeout_at};

use http::{HeaderName, HeaderValue};

use crate::diag::{DropReason, ExportFault, Stats};
use crate::export::aws::config::Auth;
use crate::export::aws::credentials::Provider;
use crate::export::aws::secrets::Secrets;
use crate::export::aws::sigv4::{Signer, sha256_hex};
use crate::export::body::{self, Chunks};
use crate::export::breaker::Probe;
use crate::export::config::{ExportConfig, SignalConfig};
use crate::export::conn::{Origin, Pool};
use crate::export::cut::{self, Cut};
use crate::export::failure;
use crate::export::request::RequestTemplate;
use crate::export::retry::{self, Backoff, Class};
use crate::pipeline::Signal;

mod signed;

/// How one export request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExportResult {
    /// The backend took it; `rejected` records were refused (partial success).
    Delivered { rejected: u64, message: String },
    /// A 4xx other than 429: the backend will never take this data. `reason` is the drop
    /// reason; `advice`, for a refusal with a known cause, what to do about it.
    Rejected {
        status: u16,
        message: String,
        reason: DropReason,
        advice: Option<String>,
    },
    /// A non-retryable failure (a 5xx other than 502/503/504, an unusable response).
    Failed { reason: String },
    /// Retryable failures until no further attempt fitted before the deadline; nothing is in
    /// flight.
    Deferred { reason: String },
    /// The deadline passed while an attempt was in progress; its connection was closed. The
    /// backend may or may not have received it.
    Abandoned,
}

/// How one export request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered with success.
    Ok,
    /// Answered with a refusal that is not retried.
    Failed,
    /// Answered with a retryable status, or the connection failed.
    Retryable,
    /// No answer by its deadline: given up.
    Abandoned,
    /// A probe given up because the runtime was done first: it tells nothing of the backend.
    Cut,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Retryable => "retryable",
            Outcome::Abandoned => "abandoned",
            Outcome::Cut => "cut",
        }
    }
}

/// Export latency observations, for self-telemetry.
pub(crate) trait LatencySink {
    fn observe_export(&mut self, signal: Signal, latency: Duration, outcome: Outcome);
}

impl LatencySink for () {
    fn observe_export(&mut self, _: Signal, _: Duration, _: Outcome) {}
}

/// Sends export requests. One per process; owns the kept-alive connections.
#[derive(Debug)]
pub(crate) struct Exporter {
    signals: [SignalConfig; 3],
    /// Where each signal goes and its request, when it has an endpoint.
    targets: [Option<(Origin, RequestTemplate)>; 3],
    /// The signer of each signal with `AUTH=sigv4`.
    signers: [Option<Signer>; 3],
    pool: Pool,
    not_before: [Option<Instant>; 3],
    stats: Arc<Stats>,
    backoff: Backoff,
    credentials: Arc<tokio::sync::Mutex<Provider>>,
    secrets: Option<Arc<Secrets>>,
    /// A SnapStart restore was seen: fetched credentials are dropped before the next signature.
    restored: bool,
}

enum Attempt {
    Done(ExportResult),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// What one request came to ([`Exporter::send_once`]).
enum Sent {
    /// Answered after `rtt`.
    Answer(Attempt, Duration),
    /// No answer by the attempt's deadline.
    NoAnswer,
    /// The runtime was done first, after this long in flight.
    Cut(Duration),
}

/// What the headers of an attempt could not get.
enum Missing {
    /// A value or credentials are not there yet, or failed transiently: worth waiting.
    NotYet(String),
    /// The data cannot be sent.
    Never(ExportResult),
}

/// What one export has fetched again after a refusal: each at most once per export.
#[derive(Default)]
struct Refreshed {
    credentials: bool,
    secrets: bool,
}

/// The headers one attempt adds to its template: secret values and the signature.
type Extra = Vec<(HeaderName, HeaderValue)>;

impl Exporter {
    pub(crate) fn new(
        config: &ExportConfig,
        stats: Arc<Stats>,
        credentials: Arc<tokio::sync::Mutex<Provider>>,
        secrets: Option<Arc<Secrets>>,
    ) -> Self {
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
        let signers = [0, 1, 2].map(|i| match &signals[i].auth {
            Auth::SigV4 { region, service } => Some(Signer::new(region, service)),
            Auth::None => None,
        });
        Exporter {
            signals,
            targets,
            signers,
            pool: Pool::new(extra_roots),
            not_before: [None; 3],
            stats,
            backoff: Backoff::new(),
            credentials,
            secrets,
            restored: false,
        }
    }

    pub(crate) fn config(&self, signal: Signal) -> &SignalConfig {
        &self.signals[signal.index()]
    }

    /// Where `signal`'s requests go, when it has an endpoint.
    pub(crate) fn origin(&self, signal: Signal) -> Option<&Origin> {
        self.targets[signal.index()].as_ref().map(|(o, _)| o)
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
        self.export_until(signal, body, deadline, None, latency)
            .await
    }

    /// Like [`Exporter::export`], and no retry is waited for once `cut` has fired (the
    /// runtime is done): the data is then kept ([`ExportResult::Deferred`]). An attempt in
    /// flight is not cut: its answer comes within one round trip, and cutting it could make
    /// the backend receive its data twice (ADR 0004).
    pub(crate) async fn export_until(
        &mut self,
        signal: Signal,
        body: Chunks,
        deadline: Instant,
        cut: Option<&Cut>,
        latency: &mut dyn LatencySink,
    ) -> ExportResult {
        let i = signal.index();
        if self.targets[i].is_none() {
            return ExportResult::Failed {
                reason: format!("no endpoint configured for {}", signal.as_str()),
            };
        }
        let timeout = self.signals[i].timeout;
        let mut failures: u32 = 0;
        // The signature covers the exact bytes sent: hashed once, signed per attempt.
        let payload_sha256 = self.signers[i]
            .is_some()
            .then(|| sha256_hex(body.iter().map(|c| c.as_ref())));
        // Each at most once per export: fetch the credentials, or the secret values, again
        // after a refusal.
        let mut refreshed = Refreshed::default();
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
            let extra = match self
                .extra_headers(i, payload_sha256.as_deref(), deadline)
                .await
            {
                Ok(extra) => extra,
                Err(Missing::Never(result)) => return result,
                Err(Missing::NotYet(reason)) => return ExportResult::Deferred { reason },
            };
            let Some(sent) = self
                .send_once(signal, &body, &extra, attempt_deadline, None, latency)
                .await
            else {
                return ExportResult::Failed {
                    reason: format!("no endpoint configured for {}", signal.as_str()),
                };
            };
            let (reason, retry_after) = match sent {
                Sent::NoAnswer if attempt_deadline >= deadline => return ExportResult::Abandoned,
                Sent::NoAnswer => (format!("no answer within {} ms", timeout.as_millis()), None),
                // Not asked for here (a request with data is never cut); kept, not retried.
                Sent::Cut(_) => {
                    return ExportResult::Deferred {
                        reason: "the runtime was done".to_owned(),
                    };
                }
                Sent::Answer(Attempt::Done(result @ ExportResult::Rejected { .. }), _)
                    if self.signers[i].is_some() || self.secrets.is_some() =>
                {
                    match self
                        .after_refusal(i, result, deadline, &mut refreshed)
                        .await
                    {
                        Some(result) => return result,
                        None => continue,
                    }
                }
                Sent::Answer(Attempt::Done(result), _) => return result,
                Sent::Answer(
                    Attempt::Retry {
                        reason,
                        retry_after,
                    },
                    _,
                ) => (reason, retry_after),
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
            tokio::select! {
                () = sleep_until(next) => {}
                () = cut::fired(cut) => {
                    if retry_after.is_some() {
                        self.not_before[i] = Some(next);
                    }
                    return ExportResult::Deferred { reason };
                }
            }
        }
    }

    /// When signal's next request may go, if the backend asked to wait (`Retry-After`).
    pub(crate) fn not_before(&self, signal: Signal) -> Option<Instant> {
        self.not_before[signal.index()]
    }

    /// One attempt with `body` (a request without data), given up at `deadline` or when `cut`
    /// fires: what the breaker learns about the backend. Never retried. `None` when it was not
    /// sent (a `Retry-After` not passed yet, the deadline or the cut already come, the secret
    /// values not fetched yet): then there is nothing to learn.
    pub(crate) async fn probe(
        &mut self,
        signal: Signal,
        body: Chunks,
        deadline: Instant,
        cut: Option<&Cut>,
        latency: &mut dyn LatencySink,
    ) -> Option<Probe> {
        let i = signal.index();
        let now = Instant::now();
        if let Some(not_before) = self.not_before[i] {
            if not_before > now {
                return None;
            }
            self.not_before[i] = None;
        }
        if now >= deadline || cut.is_some_and(Cut::is_fired) {
            return None;
        }
        let payload_sha256 = self.signers[i]
            .is_some()
            .then(|| sha256_hex(body.iter().map(|c| c.as_ref())));
        let extra = match self
            .extra_headers(i, payload_sha256.as_deref(), deadline)
            .await
        {
            Ok(extra) => extra,
            Err(Missing::Never(_)) => return Some(Probe::Failed { retry_after: None }),
            Err(Missing::NotYet(_)) => return None,
        };
        let attempt_deadline = (Instant::now() + self.signals[i].timeout).min(deadline);
        let Some(sent) = self
            .send_once(signal, &body, &extra, attempt_deadline, cut, latency)
            .await
        else {
            return Some(Probe::Failed { retry_after: None });
        };
        match sent {
            Sent::Cut(waited) => Some(Probe::Cut { waited }),
            Sent::NoAnswer => Some(Probe::NoAnswer),
            Sent::Answer(Attempt::Retry { retry_after, .. }, _) => {
                if let Some(d) = retry_after {
                    self.not_before[i] = Some(Instant::now() + d);
                }
                Some(Probe::Failed { retry_after })
            }
            Sent::Answer(Attempt::Done(_), rtt) => Some(Probe::Answered { rtt }),
        }
    }

    /// One request to `signal`'s endpoint, given up at `attempt_deadline` or when `cut` fires
    /// (a request with data is never cut: the backend may have taken it, ADR 0004). Counted
    /// and observed here, whatever came of it; `None` when the signal has no endpoint.
    async fn send_once(
        &mut self,
        signal: Signal,
        body: &Chunks,
        extra: &Extra,
        attempt_deadline: Instant,
        cut: Option<&Cut>,
        latency: &mut dyn LatencySink,
    ) -> Option<Sent> {
        let (origin, template) = self.targets[signal.index()].as_ref()?;
        Stats::add(&self.stats.export_attempts, 1);
        let started = Instant::now();
        let attempt = tokio::select! {
            a = timeout_at(
                attempt_deadline,
                Self::attempt(&mut self.pool, &self.stats, signal, origin, template, body, extra),
            ) => Some(a),
            () = cut::fired(cut) => None,
        };
        let elapsed = started.elapsed();
        let (sent, outcome) = match attempt {
            None => {
                self.pool.discard_broken();
                (Sent::Cut(elapsed), Outcome::Cut)
            }
            Some(Err(_)) => {
                // The attempt future was dropped mid-request: name where it stalled, and
                // close its connection now.
                let fault = failure::stalled(self.pool.stage());
                failure::note(
                    &self.stats,
                    fault,
                    &format_args!("no answer within {} ms", elapsed.as_millis()),
                );
                self.pool.discard_broken();
                Stats::add(&self.stats.export_abandoned, 1);
                (Sent::NoAnswer, Outcome::Abandoned)
            }
            Some(Ok(attempt)) => {
                let outcome = match &attempt {
                    Attempt::Done(ExportResult::Delivered { .. }) => Outcome::Ok,
                    Attempt::Done(_) => Outcome::Failed,
                    Attempt::Retry { .. } => Outcome::Retryable,
                };
                (Sent::Answer(attempt, elapsed), outcome)
            }
        };
        if !matches!(outcome, Outcome::Ok | Outcome::Cut) {
            Stats::add(&self.stats.export_failures, 1);
        }
        latency.observe_export(signal, elapsed, outcome);
        Some(sent)
    }

    /// One round trip, and what its answer means ([`retry::classify`]).
    async fn attempt(
        pool: &mut Pool,
        stats: &Stats,
        signal: Signal,
        origin: &Origin,
        template: &RequestTemplate,
        body: &Chunks,
        extra: &Extra,
    ) -> Attempt {
        let make = || {
            let mut request = template.request(body.clone());
            for (name, value) in extra {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            request
        };
        let response = match pool.send(origin, &make).await {
            Ok(r) => r,
            Err(e) => {
                failure::note(stats, failure::of(&e, pool.stage()), &e);
                return Attempt::Retry {
                    reason: e.to_string(),
                    retry_after: None,
                };
            }
        };
        let status = response.status;
        if response.truncated {
            failure::note(
                stats,
                ExportFault::ResponseTooLarge,
                &format_args!("HTTP {}", status.as_u16()),
            );
        }
        let message = || body::error_message(&response.headers, &response.body);
        match retry::classify(status) {
            Class::Delivered => {
                let partial = body::partial_success(signal, &response.headers, &response.body);
                Attempt::Done(ExportResult::Delivered {
                    rejected: partial.rejected,
                    message: partial.message,
                })
            }
            Class::Retryable => {
                let retry_after = retry::retry_after(&response.headers, SystemTime::now());
                if failure::invalid_retry_after(&response.headers, retry_after) {
                    let value = response.headers.get(http::header::RETRY_AFTER);
                    failure::note(
                        stats,
                        ExportFault::InvalidRetryAfter,
                        &format_args!("HTTP {}, Retry-After {value:?}", status.as_u16()),
                    );
                }
                Attempt::Retry {
                    reason: format!("HTTP {}: {}", status.as_u16(), message()),
                    retry_after,
                }
            }
            Class::Rejected => Attempt::Done(ExportResult::Rejected {
                status: status.as_u16(),
                message: message(),
                reason: DropReason::Rejected,
                advice: None,
            }),
            Class::Failed => Attempt::Done(ExportResult::Failed {
                reason: format!("HTTP {}: {}", status.as_u16(), message()),
            }),
        }
    }
}
