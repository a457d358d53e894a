//! One shutdown signal for every thread: set once (SIGTERM, SIGINT), waited on with a timeout so that
//! paced loops wake at once instead of finishing their sleep.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A latch that threads poll or wait on.
#[derive(Default)]
pub struct Shutdown {
    triggered: Mutex<bool>,
    changed: Condvar,
}

impl Shutdown {
    /// Sets the latch and wakes every waiter.
    pub fn trigger(&self) {
        *self.triggered.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        *self.triggered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout`; returns true when shutdown was triggered (at once, or while waiting).
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.triggered.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |triggered| !*triggered)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}
