//! The exporter's AWS side: the secret values a request's headers take, the credentials of a
//! signed request, and what follows a refusal of either.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use tokio::time::{Instant, timeout_at};

use http::{HeaderName, HeaderValue};

use crate::diag::DropReason;
use crate::export::aws::client::signed_headers_of;
use crate::export::aws::credentials::{self, CredentialsError};
use crate::export::aws::refusal::{self, Refusal};
use crate::export::aws::secrets::reference::Piece;
use crate::export::aws::secrets::{Lookup, Secrets};

use super::{ExportResult, Exporter, Extra, Missing, Refreshed};

impl Exporter {
    /// Start fetching the secret values, if any are used (at the first INVOKE).
    pub(crate) fn prefetch(&self) {
        if let Some(secrets) = &self.secrets {
            secrets.fetch();
        }
    }

    /// A SnapStart restore: credentials and secret values are fetched again.
    pub(crate) fn restored(&mut self) {
        match self.credentials.try_lock() {
            Ok(mut provider) => provider.invalidate(),
            // A fetch is running: drop its result before the next signature.
            Err(_) => self.restored = true,
        }
        if let Some(secrets) = &self.secrets {
            secrets.refresh();
        }
    }

    /// `(x-aws-log-group, x-aws-log-stream)` of signal `i`'s requests.
    pub(super) fn log_target(&self, i: usize) -> Option<(&str, &str)> {
        let headers = &self.signals[i].headers;
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .and_then(|(_, v)| v.to_str().ok())
        };
        Some((get("x-aws-log-group")?, get("x-aws-log-stream")?))
    }

    /// What follows a refusal of signal `i`'s attempt (`result`, a `Rejected`) when it is
    /// signed or uses secret values: `None` to try again at once (the secret values or the
    /// credentials were fetched again), or what the export returns. Boxed: the export loop
    /// carries none of these waits for the signals that need neither.
    pub(super) fn after_refusal<'a>(
        &'a mut self,
        i: usize,
        result: ExportResult,
        deadline: Instant,
        refreshed: &'a mut Refreshed,
    ) -> Pin<Box<dyn Future<Output = Option<ExportResult>> + 'a>> {
        Box::pin(async move {
            let ExportResult::Rejected {
                status,
                message,
                reason,
                advice,
            } = result
            else {
                return Some(result);
            };
            if matches!(status, 401 | 403)
                && !refreshed.secrets
                && !self.signals[i].secret_headers.is_empty()
                && let Some(secrets) = &self.secrets
            {
                // The backend refused the key: it may have been rotated.
                refreshed.secrets = true;
                let mut changed = secrets.changed();
                changed.mark_unchanged();
                secrets.refresh();
                if timeout_at(deadline, changed.changed()).await.is_err() {
                    return Some(ExportResult::Deferred {
                        reason: format!(
                            "HTTP {status} ({message}); fetching the secret values again"
                        ),
                    });
                }
                return None;
            }
            if self.signers[i].is_some() {
                match refusal::classify(status, &message) {
                    Some(Refusal::CredentialsRefused) if !refreshed.credentials => {
                        refreshed.credentials = true;
                        credentials::lock(&self.credentials).await.invalidate();
                        return None;
                    }
                    Some(cause) => {
                        let service = self.signals[i].auth.service().unwrap_or_default();
                        return Some(ExportResult::Rejected {
                            status,
                            advice: Some(cause.advice(service, self.log_target(i))),
                            reason: cause.reason(),
                            message,
                        });
                    }
                    None => {}
                }
            }
            Some(ExportResult::Rejected {
                status,
                message,
                reason,
                advice,
            })
        })
    }

    /// The secret values of signal `i`, waiting for them until `deadline`.
    pub(super) async fn secret_values(
        &self,
        i: usize,
        deadline: Instant,
    ) -> Result<Extra, Missing> {
        let wanted = &self.signals[i].secret_headers;
        let Some(secrets) = &self.secrets else {
            return Ok(Vec::new());
        };
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut changed = secrets.changed();
        let mut kicked = false;
        loop {
            changed.mark_unchanged();
            match lookup_all(secrets, wanted) {
                Ok(values) => return Ok(values),
                Err(Lookup::Unavailable(message)) => {
                    return Err(Missing::Never(ExportResult::Rejected {
                        status: 0,
                        advice: None,
                        reason: DropReason::SecretUnavailable,
                        message: format!("a header value cannot be read from {message}"),
                    }));
                }
                Err(_) => {
                    if !kicked {
                        secrets.fetch();
                        kicked = true;
                    }
                    if timeout_at(deadline, changed.changed()).await.is_err() {
                        return Err(Missing::NotYet(
                            "the secret values of its headers are not fetched yet".to_owned(),
                        ));
                    }
                }
            }
        }
    }

    /// The headers signal `i`'s next attempt adds: secret values, then the signature. Boxed:
    /// the export loop stays small for the signals that need none of it.
    pub(super) fn extra_headers<'a>(
        &'a mut self,
        i: usize,
        payload_sha256: Option<&'a str>,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = Result<Extra, Missing>> + 'a>> {
        Box::pin(self.extra_headers_inner(i, payload_sha256, deadline))
    }

    pub(super) async fn extra_headers_inner(
        &mut self,
        i: usize,
        payload_sha256: Option<&str>,
        deadline: Instant,
    ) -> Result<Extra, Missing> {
        let mut extra = self.secret_values(i, deadline).await?;
        let Some(payload_sha256) = payload_sha256 else {
            return Ok(extra);
        };
        let restored = std::mem::take(&mut self.restored);
        let fetched = credentials::current(&self.credentials, deadline, restored).await;
        let credentials = match fetched {
            Ok(c) => c,
            Err(e @ CredentialsError::Missing) => {
                return Err(Missing::Never(ExportResult::Failed {
                    reason: e.to_string(),
                }));
            }
            Err(e) => return Err(Missing::NotYet(e.to_string())),
        };
        let (Some((_, template)), Some(signer)) = (&self.targets[i], self.signers[i].as_mut())
        else {
            return Ok(extra);
        };
        // The template's headers as sent, but for the ones this attempt replaces.
        let mut signed_headers: Vec<(&str, &str)> = template
            .headers()
            .iter()
            .filter(|(name, _)| *name != http::header::USER_AGENT)
            .filter(|(name, _)| !extra.iter().any(|(n, _)| n == *name))
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let extra_text: Vec<(String, String)> = extra
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        signed_headers.extend(extra_text.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let signed = signer.sign(
            &credentials,
            SystemTime::now(),
            "POST",
            template.target(),
            &signed_headers,
            payload_sha256,
        );
        extra.extend(signed_headers_of(&signed));
        Ok(extra)
    }
}

/// Every header of `wanted` with its value, or the first thing missing.
pub(super) fn lookup_all(
    secrets: &Secrets,
    wanted: &[(HeaderName, Vec<Piece>)],
) -> Result<Extra, Lookup> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut pending = false;
    for (name, pieces) in wanted {
        match secrets.lookup(pieces) {
            Lookup::Ready(value) => match HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    out.push((name.clone(), v));
                }
                Err(_) => {
                    return Err(Lookup::Unavailable(format!(
                        "the secret of header `{name}` (its value is not a valid header value)"
                    )));
                }
            },
            unavailable @ Lookup::Unavailable(_) => return Err(unavailable),
            Lookup::Pending => pending = true,
        }
    }
    if pending {
        Err(Lookup::Pending)
    } else {
        Ok(out)
    }
}
