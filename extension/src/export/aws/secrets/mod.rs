//! The secrets resolver: header values named by a Secrets Manager or SSM ARN
//! ([`reference`]), fetched with signed calls ([`api`]) by a task of their own.
//!
//! - Nothing is fetched before the first INVOKE (or the first flush, on Managed Instances):
//!   the fetch never adds to INIT, and it overlaps the first invocation. The first export that
//!   needs a value waits for it within its flush deadline ([`Secrets::lookup`] and
//!   [`Secrets::changed`]); meanwhile its data stays buffered.
//! - One pass asks for every value that is missing, batched per service and region
//!   (`BatchGetSecretValue` for several secrets, falling back to `GetSecretValue` each when the
//!   batch call itself is refused; `GetParameters` with decryption).
//! - Values are kept for the life of the process and fetched again (the old value serving
//!   until the new one comes) after a SnapStart restore and after a 401 or 403 from the
//!   backend ([`Secrets::refresh`]).
//! - A transient failure (throttling, 5xx, network) is retried with backoff, at most
//!   [`MAX_ATTEMPTS`] times per pass; a later export starts another pass. A permanent one (not
//!   found, access denied, no such JSON key) is reported once, in words that say what to
//!   change, counted (`contrail.secrets.failures`), and asked again at most every
//!   [`PERMANENT_RETRY`]; exports that need it are dropped as `secret_unavailable`.
//! - Values never reach a log line, an error or self-telemetry: messages name the ARN only.

pub(crate) mod api;
pub(crate) mod reference;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, timeout};

use crate::diag;
use crate::diag::Stats;
use crate::export::aws::client;
use crate::export::aws::config::Endpoints;
use crate::export::aws::credentials::{self, Provider};
use crate::export::aws::sigv4::Signer;
use crate::export::conn::Pool;
use api::{BATCH_PARAMETERS, BATCH_SECRETS, Call, Failure, Values};
use reference::{Piece, Reference, Service};

/// Attempts of one pass at transient failures.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// The first pause between attempts; it doubles.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// A value that failed permanently is asked again at most this often.
pub(crate) const PERMANENT_RETRY: Duration = Duration::from_secs(300);
/// The longest one call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What is known of one reference.
#[derive(Clone, PartialEq, Eq)]
enum State {
    Pending,
    /// The value is in the table beside the state.
    Ready,
    /// `permanent`: asking again will not help for a while.
    Failed {
        permanent: bool,
        message: String,
        at: Instant,
    },
}

/// What an export finds for a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Ready(String),
    Pending,
    /// A permanent failure, with its message (no value in it).
    Unavailable(String),
}

/// The values, shared by the exporter and the resolver task.
pub(crate) struct Secrets {
    /// Each reference once (a handful: small vectors cost less code than maps).
    table: Mutex<Vec<(Reference, State, Option<String>)>>,
    kick: Notify,
    refresh: AtomicBool,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<values hidden>)")
    }
}

impl Secrets {
    /// The resolver's shared state for `references` (none fetched yet).
    pub(crate) fn new(references: Vec<Reference>) -> Arc<Secrets> {
        let mut table: Vec<(Reference, State, Option<String>)> = Vec::new();
        for r in references {
            if !table.iter().any(|(known, _, _)| *known == r) {
                table.push((r, State::Pending, None));
            }
        }
        Arc::new(Secrets {
            table: Mutex::new(table),
            kick: Notify::new(),
            refresh: AtomicBool::new(false),
            changed: watch::channel(0).0,
        })
    }

    /// Start a pass if none is running (the first INVOKE, an export that lacks a value).
    pub(crate) fn fetch(&self) {
        self.kick.notify_one();
    }

    /// Fetch every value again (SnapStart restore; the backend refused the current ones).
    pub(crate) fn refresh(&self) {
        self.refresh.store(true, Ordering::Relaxed);
        self.kick.notify_one();
    }

    /// A receiver that changes whenever a pass has stored something.
    pub(crate) fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The header value `pieces` make, if every reference in it is ready.
    pub(crate) fn lookup(&self, pieces: &[Piece]) -> Lookup {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut pending = false;
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Secret(r) => match table.iter().find(|(known, _, _)| known == r) {
                    Some((_, _, Some(value))) => out.push_str(value),
                    Some((
                        _,
                        State::Failed {
                            permanent: true,
                            message,
                            ..
                        },
                        None,
                    )) => {
                        return Lookup::Unavailable(format!("{r}: {message}"));
                    }
                    _ => pending = true,
                },
            }
        }
        if pending {
            Lookup::Pending
        } else {
            Lookup::Ready(out)
        }
    }

    /// The references a pass should ask for now.
    fn due(&self, refresh: bool) -> Vec<Reference> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .filter(|(_, state, value)| match state {
                _ if refresh => true,
                State::Pending => true,
                State::Ready => value.is_none(),
                State::Failed {
                    permanent: false, ..
                } => true,
                State::Failed {
                    permanent: true,
                    at,
                    ..
                } => at.elapsed() >= PERMANENT_RETRY,
            })
            .map(|(r, _, _)| r.clone())
            .collect()
    }

    fn store(&self, reference: &Reference, state: State, value: Option<String>) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = table.iter_mut().find(|(known, _, _)| known == reference) {
            if value.is_some() {
                slot.2 = value;
            }
            // A permanent failure after a refresh means the old value is no longer valid.
            if matches!(
                state,
                State::Failed {
                    permanent: true,
                    ..
                }
            ) {
                slot.2 = None;
            }
            slot.1 = state;
        }
    }
}

/// The resolver task: waits for [`Secrets::fetch`], runs a pass, and waits again. It never
/// ends.
pub(crate) async fn run(
    secrets: Arc<Secrets>,
    credentials: Arc<tokio::sync::Mutex<Provider>>,
    endpoints: Endpoints,
    stats: Arc<Stats>,
) {
    let mut resolver = Resolver {
        secrets,
        credentials,
        endpoints,
        stats,
        pool: Pool::new(Vec::new()),
        signers: Vec::new(),
        warned: Vec::new(),
    };
    loop {
        resolver.secrets.kick.notified().await;
        let refresh = resolver.secrets.refresh.swap(false, Ordering::Relaxed);
        resolver.pass(refresh).await;
    }
}

static TRANSIENT: diag::Every = diag::Every::new(Duration::from_secs(60));

struct Resolver {
    secrets: Arc<Secrets>,
    credentials: Arc<tokio::sync::Mutex<Provider>>,
    endpoints: Endpoints,
    stats: Arc<Stats>,
    pool: Pool,
    signers: Vec<(Service, Signer)>,
    /// References whose permanent failure was reported.
    warned: Vec<Reference>,
}

/// The calls that ask for `references`: per service and region, batched, each ARN once.
fn plan(references: &[Reference]) -> Vec<(Service, String, String, Call)> {
    // (service, region, partition) → ARNs, in the order first seen.
    let mut groups: Vec<(Service, &str, &str, Vec<String>)> = Vec::new();
    for r in references {
        let key = (r.service, r.region.as_str(), r.partition.as_str());
        let i = match groups.iter().position(|g| (g.0, g.1, g.2) == key) {
            Some(i) => i,
            None => {
                groups.push((key.0, key.1, key.2, Vec::new()));
                groups.len() - 1
            }
        };
        let group = &mut groups[i].3;
        if !group.contains(&r.arn) {
            group.push(r.arn.clone());
        }
    }
    let mut calls = Vec::new();
    for (service, region, partition, arns) in groups {
        let size = match service {
            Service::SecretsManager => BATCH_SECRETS,
            Service::Ssm => BATCH_PARAMETERS,
        };
        for chunk in arns.chunks(size) {
            let call = match (service, chunk) {
                (Service::SecretsManager, [one]) => Call::GetSecretValue(one.clone()),
                (Service::SecretsManager, many) => Call::BatchGetSecretValue(many.to_vec()),
                (Service::Ssm, many) => Call::GetParameters(many.to_vec()),
            };
            calls.push((service, region.to_owned(), partition.to_owned(), call));
        }
    }
    calls
}

impl Resolver {
    async fn pass(&mut self, refresh: bool) {
        let mut pause = FIRST_PAUSE;
        let mut first = true;
        for attempt in 1..=MAX_ATTEMPTS {
            let due = self.secrets.due(refresh && first);
            first = false;
            if due.is_empty() {
                return;
            }
            let mut transient = false;
            for (service, region, partition, call) in plan(&due) {
                for (arn, result) in self.perform(service, &region, &partition, call).await {
                    transient |=
                        matches!(result, Err(Failure::Transient(_) | Failure::Credentials(_)));
                    for r in due.iter().filter(|r| r.arn == arn) {
                        self.record(r, result.clone());
                    }
                }
            }
            self.secrets.changed.send_modify(|g| *g += 1);
            if !transient || attempt == MAX_ATTEMPTS {
                return;
            }
            sleep(pause).await;
            pause *= 2;
        }
    }

    /// One call (or, for a refused batch, one call per secret).
    async fn perform(
        &mut self,
        service: Service,
        region: &str,
        partition: &str,
        call: Call,
    ) -> Values {
        let result = self.send(service, region, partition, &call).await;
        match (result, &call) {
            (Err(Failure::Permanent { code, .. }), Call::BatchGetSecretValue(arns))
                if code.starts_with("AccessDenied") =>
            {
                // The role may allow GetSecretValue without BatchGetSecretValue.
                let mut out = Vec::new();
                for arn in arns {
                    let single = Call::GetSecretValue(arn.clone());
                    out.extend(match self.send(service, region, partition, &single).await {
                        Ok(values) => values,
                        Err(f) => vec![(arn.clone(), Err(f))],
                    });
                }
                out
            }
            (Ok(values), _) => values,
            (Err(f), call) => call
                .arns()
                .into_iter()
                .map(|a| (a, Err(f.clone())))
                .collect(),
        }
    }

    /// One call, behind a boxed future: `pass` and `perform` share one copy of it.
    fn send<'a>(
        &'a mut self,
        service: Service,
        region: &'a str,
        partition: &'a str,
        call: &'a Call,
    ) -> Pin<Box<dyn Future<Output = Result<Values, Failure>> + 'a>> {
        Box::pin(self.send_inner(service, region, partition, call))
    }

    async fn send_inner(
        &mut self,
        service: Service,
        region: &str,
        partition: &str,
        call: &Call,
    ) -> Result<Values, Failure> {
        let credentials =
            credentials::current(&self.credentials, Instant::now() + CALL_TIMEOUT, false)
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
        let endpoint = self.endpoints.url(service.name(), region, partition);
        let i = match self
            .signers
            .iter()
            .position(|(s, signer)| *s == service && signer.region == region)
        {
            Some(i) => i,
            None => {
                self.signers
                    .push((service, Signer::new(region, service.name())));
                self.signers.len() - 1
            }
        };
        let signer = &mut self.signers[i].1;
        let sent = timeout(
            CALL_TIMEOUT,
            client::call(
                &mut self.pool,
                signer,
                &credentials,
                &endpoint,
                call.target(),
                call.body(),
            ),
        )
        .await;
        let response = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Failure::Transient(format!("{endpoint}: {e}"))),
            Err(_) => {
                self.pool.discard_broken();
                return Err(Failure::Transient(format!("{endpoint}: no answer in time")));
            }
        };
        if response.status.is_success() {
            return api::parse_success(call, &response.body);
        }
        let (code, message) = api::error_code(&response.body);
        let failure = api::classify(response.status.as_u16(), &code, &message);
        if matches!(failure, Failure::Credentials(_)) {
            credentials::lock(&self.credentials).await.invalidate();
        }
        Err(failure)
    }

    fn record(&mut self, reference: &Reference, result: Result<String, Failure>) {
        let mut value = None;
        let state = match result.and_then(|raw| {
            reference::extract(reference, &raw).map_err(|message| Failure::Permanent {
                code: "JsonKey".into(),
                message,
            })
        }) {
            Ok(v) => {
                self.warned.retain(|r| r != reference);
                value = Some(v);
                State::Ready
            }
            Err(Failure::Permanent { code, message }) => {
                Stats::add(&self.stats.secret_failures, 1);
                if !self.warned.contains(reference) {
                    self.warned.push(reference.clone());
                    diag::warn!(
                        "cannot read {reference}: {code}: {message}; {}. Exports that need it are dropped and counted as secret_unavailable",
                        hint(reference, &code)
                    );
                }
                State::Failed {
                    permanent: true,
                    message: format!("{code}: {message}"),
                    at: Instant::now(),
                }
            }
            Err(Failure::Transient(message) | Failure::Credentials(message)) => {
                Stats::add(&self.stats.secret_failures, 1);
                TRANSIENT.warn(format_args!(
                    "fetching {reference} failed, will retry: {message}"
                ));
                State::Failed {
                    permanent: false,
                    message,
                    at: Instant::now(),
                }
            }
        };
        self.secrets.store(reference, state, value);
    }
}

/// What to change, for a permanent failure.
fn hint(reference: &Reference, code: &str) -> String {
    let (service, actions) = match reference.service {
        Service::SecretsManager => (
            "Secrets Manager",
            "secretsmanager:GetSecretValue (and secretsmanager:BatchGetSecretValue when several secrets are used)",
        ),
        Service::Ssm => ("Parameter Store", "ssm:GetParameters"),
    };
    match code {
        c if c.starts_with("AccessDenied") => format!(
            "allow {actions} on it in the function's execution role (and kms:Decrypt when it is encrypted with a customer managed key)"
        ),
        "ResourceNotFoundException" | "ParameterNotFound" | "Missing" => format!(
            "check the ARN: {service} has nothing by that name in {} of that account",
            reference.region
        ),
        "DecryptionFailure" | "InvalidKeyId" => {
            "allow kms:Decrypt on the key that encrypts it".to_owned()
        }
        "JsonKey" => "store the secret as a JSON object with that top-level key, or drop `#KEY` to use the whole secret".to_owned(),
        _ => format!("check the ARN and that the execution role may read it ({actions})"),
    }
}

#[cfg(test)]
mod tests;
