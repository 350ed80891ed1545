//! A flush's stop signal: fired when the runtime is done, so that a flush overlapping the
//! function's own work stops at the next piece boundary instead of costing it billed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Shared by the lifecycle (which fires it) and the flush (which looks at it between pieces,
/// and waits on it where a wait may be given up: a retry's pause, a probe).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cut(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    notify: Notify,
    /// Nobody will fire it: a flush no invocation waits for (Managed Instances' timer).
    never: bool,
}

impl Cut {
    pub(crate) fn new() -> Cut {
        Cut::default()
    }

    /// A cut nobody fires: the flush may probe a held backend, and need not go in pieces.
    pub(crate) fn never() -> Cut {
        Cut(Arc::new(Inner {
            never: true,
            ..Inner::default()
        }))
    }

    /// Whether it can fire at all.
    pub(crate) fn can_fire(&self) -> bool {
        !self.0.never
    }

    /// The runtime is done: stop at the next boundary.
    pub(crate) fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// Completes once fired (at once if it already was).
    pub(crate) async fn fired(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_fired() {
                return;
            }
            notified.await;
        }
    }
}

/// Completes when `cut` fires; never when there is none.
pub(crate) async fn fired(cut: Option<&Cut>) {
    match cut {
        Some(cut) => cut.fired().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_when_it_fires_before_or_after() {
        let cut = Cut::new();
        assert!(!cut.is_fired());
        let waiter = {
            let cut = cut.clone();
            tokio::spawn(async move { cut.fired().await })
        };
        tokio::task::yield_now().await;
        cut.fire();
        assert!(waiter.await.is_ok());
        assert!(cut.is_fired());
        // Already fired: at once.
        cut.fired().await;
    }
}
