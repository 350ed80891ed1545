//! Shutdown: SIGTERM to the runtime, SHUTDOWN to the extensions, SIGKILL at the deadline.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::environment::Environment;
use crate::ids;
use crate::process;
use crate::state::Phase;

impl Environment<'_> {
    pub(super) async fn shutdown(&mut self, reason: &str) {
        self.thaw();
        self.sample_now();
        let start = Instant::now();
        let deadline = start + self.cfg.shutdown_timeout;
        let deadline_ms = ids::epoch_millis(OffsetDateTime::now_utc())
            + i64::try_from(self.cfg.shutdown_timeout.as_millis()).unwrap_or(2_000);
        self.env.update(|st| st.phase = Phase::Shutdown);
        // The runtime first: SIGTERM, then SIGKILL after 300 ms.
        if let Some(pid) = self.rt_pid {
            process::signal_group(pid, Signal::SIGTERM);
            let rt_deadline = (start + Duration::from_millis(300)).min(deadline);
            let exited = self
                .env
                .wait_until(Some(rt_deadline), |st| st.rt.exited.is_some().then_some(()))
                .await;
            if exited.is_none() {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
        // Then SHUTDOWN to every extension that registered for it.
        let targets: Vec<usize> = {
            let st = self.env.lock();
            st.exts
                .iter()
                .enumerate()
                .filter(|(_, e)| e.exited.is_none() && e.wants("SHUTDOWN"))
                .map(|(i, _)| i)
                .collect()
        };
        for &i in &targets {
            self.env.deliver_to_extension(
                i,
                json!({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}),
            );
        }
        let _ = self
            .env
            .wait_until(Some(deadline), |st| {
                targets
                    .iter()
                    .all(|&i| st.exts[i].exited.is_some())
                    .then_some(())
            })
            .await;
        for pg in self.all_pgids() {
            process::signal_group(pg, Signal::SIGKILL);
        }
        let settle = Instant::now() + Duration::from_secs(5);
        for w in self.waiters.drain(..) {
            let _ = tokio::time::timeout_at(settle, w).await;
        }
        // Wake anything still parked, then stop deliveries.
        self.env.update(|st| {
            st.rt.waiters.clear();
            st.rt.restore_waiter = None;
            for e in &mut st.exts {
                e.waiter = None;
            }
        });
        self.env.hub.stop().await;
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
    }
}
