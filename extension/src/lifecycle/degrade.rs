//! The degraded path: after registration no internal failure may break the function.
//!
//! When a start-up step fails or a task ends or panics, Contrail says why once
//! ([`announce_degraded`], at the moment the failure is noticed) and continues in
//! [`idle_loop`], which keeps calling `next` and exits on `SHUTDOWN`. Before registration,
//! errors are reported to Lambda ([`report_error`]) and the process exits.

use tokio::sync::mpsc;

use crate::diag;
use crate::lambda_api::{ApiError, Client, ErrorPhase, ExtensionId, NextEvent};
use crate::lifecycle::{NEXT_ATTEMPTS, NEXT_RETRY_PAUSE};
use crate::pipeline::worker::WorkerGone;

/// Why the extension stopped doing its work; said once, then [`idle_loop`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Degraded {
    #[error("cannot bind the Telemetry API listener on {addr}: {source}")]
    ListenerBind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Telemetry API subscription failed: {0}")]
    Subscribe(ApiError),
    #[error("{0}")]
    Worker(WorkerGone),
    #[error("the {0} task stopped unexpectedly")]
    TaskEnded(&'static str),
    #[error("the lifecycle task panicked")]
    Panicked,
}

/// One failure channel for the tasks that run beside the loop: the first message degrades.
pub(crate) type FatalReceiver = mpsc::UnboundedReceiver<Degraded>;

static DEGRADED: diag::Once = diag::Once::new();

/// Say, once per process, that Contrail stopped working and why. Called where the failure is
/// noticed (so it is said at once, even while `next` blocks) and again by [`idle_loop`].
pub(crate) fn announce_degraded(reason: &dyn std::fmt::Display) {
    DEGRADED.at(
        diag::Level::Error,
        format_args!("telemetry is disabled for the life of this environment: {reason}"),
    );
}

/// Keep the function working without Contrail: call `next` until SHUTDOWN, then return.
///
/// Says `reason` once. Returns `Err` only when the Extensions API itself is unusable.
pub(crate) async fn idle_loop(
    client: &mut Client,
    id: &ExtensionId,
    reason: &dyn std::fmt::Display,
) -> Result<(), ApiError> {
    announce_degraded(reason);
    let mut failures = 0;
    loop {
        match client.next(id).await {
            Ok(NextEvent::Shutdown(_)) => return Ok(()),
            Ok(NextEvent::Invoke(_)) | Err(ApiError::Invalid { .. }) => failures = 0,
            Err(err) => {
                failures += 1;
                if failures >= NEXT_ATTEMPTS {
                    return Err(err);
                }
                tokio::time::sleep(NEXT_RETRY_PAUSE).await;
            }
        }
    }
}

/// Report a fatal error to Lambda before exiting (`init/error` during init).
pub(crate) async fn report_error(
    client: &mut Client,
    id: &ExtensionId,
    phase: ErrorPhase,
    error_type: &str,
    message: &str,
) {
    if let Err(err) = client.report_error(id, phase, error_type, message).await {
        diag::error!("reporting the error to Lambda failed: {err}");
    }
}
