//! The bytes the local receivers hold for the requests they are reading, decoding and have
//! queued, against one bound shared by both receivers (ADR 0015).
//!
//! A request takes its bytes from the [`IntakeBudget`] before it reads them (the declared
//! length, or chunk by chunk); the [`Held`] it gets travels with the decoded payload through
//! the intake queue and gives the bytes back when the worker has mapped the payload (and the
//! payload is dropped). So the memory of receiver requests in Contrail, whatever the number of
//! connections and calls, follows the bound, not the number of requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bound on the bytes of receiver requests in memory, and what is held now.
#[derive(Debug)]
pub(crate) struct IntakeBudget {
    max: usize,
    used: AtomicUsize,
}

impl IntakeBudget {
    /// A budget of `max` bytes, shared by everything that holds a clone of the `Arc`.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(IntakeBudget {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// The bound, in bytes.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Bytes held right now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A holding of nothing yet, to [`Held::grow`].
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        Held {
            budget: Some(self.clone()),
            n: 0,
        }
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }
}

/// Bytes held for one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Option<Arc<IntakeBudget>>,
    n: usize,
}

impl Held {
    /// Holding nothing, against no budget (a payload made by a test).
    pub(crate) fn nothing() -> Self {
        Held { budget: None, n: 0 }
    }

    /// Hold `n` more bytes; `false` (holding what it held before) if that would pass the bound.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        match &self.budget {
            None => true,
            Some(budget) if budget.take(n) => {
                self.n += n;
                true
            }
            Some(_) => false,
        }
    }

    /// Give back all but `keep` bytes (after the compressed copy of a body is dropped).
    pub(crate) fn shrink_to(&mut self, keep: usize) {
        if let Some(budget) = &self.budget
            && keep < self.n
        {
            budget.used.fetch_sub(self.n - keep, Ordering::Relaxed);
            self.n = keep;
        }
    }

    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.n
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

/// A copy of a queued unit holds nothing: the bytes are the original's, and go back once.
impl Clone for Held {
    fn clone(&self) -> Self {
        Held::nothing()
    }
}

/// Holdings are bookkeeping, not content: two units with the same records are equal.
impl PartialEq for Held {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_share_the_bound_and_give_their_bytes_back() {
        let budget = IntakeBudget::new(100);
        let mut a = budget.hold();
        let mut b = budget.hold();
        assert!(a.grow(60));
        assert!(!b.grow(41), "past the bound");
        assert_eq!(b.bytes(), 0);
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        a.shrink_to(10);
        assert_eq!(budget.used(), 50);
        drop(a);
        assert_eq!(budget.used(), 40);
        let copy = b.clone();
        drop(b);
        assert_eq!(budget.used(), 0);
        drop(copy);
        assert_eq!(budget.used(), 0, "a copy gives back nothing");
    }
}
