//! The SHUTDOWN phase, as Lambda runs it with external extensions: the runtime gets SIGTERM
//! and up to 300 ms, then SIGKILL; every extension that registered for SHUTDOWN gets the event
//! with the reason (`spindown`, or `timeout`/`failure` for a reset) and the deadline; whatever
//! still runs at the deadline is killed. Then the telemetry deliveries stop.
//!
//! On Lambda Managed Instances, as AWS's emulator for them does it
//! (`rapid/shutdown.go`), the runtime gets 600 ms, and the Telemetry API delivers what it
//! holds (up to 1 s) before SHUTDOWN goes to the extensions: there is no INVOKE to wait on
//! there, so an extension would otherwise exit before a batch still within its buffering
//! timeout reached it.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::environment::Environment;
use crate::config::InitType;
use crate::ids;
use crate::process;
use crate::state::Phase;

/// How long the runtime has between SIGTERM and SIGKILL.
const RUNTIME_GRACE: Duration = Duration::from_millis(300);
/// The same on Lambda Managed Instances.
const MANAGED_RUNTIME_GRACE: Duration = Duration::from_millis(600);
/// How long the Telemetry API may take to deliver what it holds before SHUTDOWN goes out, on
/// Lambda Managed Instances.
const MANAGED_TELEMETRY_FLUSH: Duration = Duration::from_secs(1);
/// How long the exit watchers may take to see the killed children go.
const SETTLE: Duration = Duration::from_secs(5);

impl Environment {
    /// Shuts the environment down for `reason` and waits until every child is gone.
    pub(super) async fn shutdown(&mut self, reason: &str) {
        self.thaw();
        self.sample_now();
        let start = Instant::now();
        let deadline = start + self.config.shutdown_timeout;
        let deadline_ms = ids::epoch_millis(OffsetDateTime::now_utc())
            + i64::try_from(self.config.shutdown_timeout.as_millis()).unwrap_or(2_000);
        self.shared.update(|state| state.phase = Phase::Shutdown);
        let managed = self.config.init_type == InitType::LambdaManagedInstances;
        // The runtime first: SIGTERM, then SIGKILL after its grace period.
        let runtime_pid = self.shared.lock().runtime.pid;
        if let Some(pid) = runtime_pid {
            process::signal_group(pid, Signal::SIGTERM);
            let grace = if managed {
                MANAGED_RUNTIME_GRACE
            } else {
                RUNTIME_GRACE
            };
            let runtime_deadline = (start + grace).min(deadline);
            let exited = self
                .shared
                .wait_until(Some(runtime_deadline), |state| {
                    state.runtime.exited.is_some().then_some(())
                })
                .await;
            if exited.is_none() {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
        if managed {
            self.shared.hub.flush(MANAGED_TELEMETRY_FLUSH).await;
        }
        // Then SHUTDOWN to every extension that registered for it.
        let targets: Vec<usize> = {
            let state = self.shared.lock();
            state
                .extensions
                .iter()
                .enumerate()
                .filter(|(_, e)| e.exited.is_none() && e.wants("SHUTDOWN"))
                .map(|(i, _)| i)
                .collect()
        };
        for &i in &targets {
            self.shared.deliver_to_extension(
                i,
                json!({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}),
            );
        }
        let _ = self
            .shared
            .wait_until(Some(deadline), |state| {
                targets
                    .iter()
                    .all(|&i| state.extensions[i].exited.is_some())
                    .then_some(())
            })
            .await;
        for group in self.process_groups() {
            process::signal_group(group, Signal::SIGKILL);
        }
        let settle = Instant::now() + SETTLE;
        for watcher in self.exit_watchers.drain(..) {
            let _ = tokio::time::timeout_at(settle, watcher).await;
        }
        // Wake anything still parked, then stop deliveries.
        self.shared.update(|state| {
            state.runtime.waiters.clear();
            state.runtime.restore_waiter = None;
            for e in &mut state.extensions {
                e.waiter = None;
            }
        });
        self.shared.hub.stop().await;
        self.stop_sampler();
    }
}
