//! One shutdown signal for every thread: set once (SIGTERM, SIGINT), waited on with a timeout so that
//! paced loops wake at once instead of finishing their sleep. A thread blocked elsewhere (reading a watched
//! directory's events) registers a hook that unblocks it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Unblocks a thread that does not wait on the latch itself.
type Hook = Box<dyn FnOnce() + Send>;

/// A latch that threads poll or wait on.
#[derive(Default)]
pub struct Shutdown {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    triggered: bool,
    hooks: Vec<Hook>,
}

impl Shutdown {
    /// Sets the latch, wakes every waiter and runs the hooks.
    pub fn trigger(&self) {
        let hooks = {
            let mut state = self.lock();
            state.triggered = true;
            std::mem::take(&mut state.hooks)
        };
        self.changed.notify_all();
        hooks.into_iter().for_each(|hook| hook());
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        self.lock().triggered
    }

    /// Runs `hook` when shutdown is triggered (at once if it already was).
    pub fn on_trigger(&self, hook: impl FnOnce() + Send + 'static) {
        let mut state = self.lock();
        if state.triggered {
            drop(state);
            hook();
        } else {
            state.hooks.push(Box::new(hook));
        }
    }

    /// Waits up to `timeout`; returns true when shutdown was triggered (at once, or while waiting).
    pub fn wait(&self, timeout: Duration) -> bool {
        let (state, _) = self
            .changed
            .wait_timeout_while(self.lock(), timeout, |state| !state.triggered)
            .unwrap_or_else(|p| p.into_inner());
        state.triggered
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn hooks_run_once_on_trigger_or_at_once_after_it() {
        let shutdown = Shutdown::default();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        shutdown.on_trigger(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 0);
        shutdown.trigger();
        shutdown.trigger();
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        let counter = ran.clone();
        shutdown.on_trigger(move || {
            counter.fetch_add(10, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 11);
        assert!(shutdown.wait(Duration::from_secs(30)), "a triggered latch does not wait");
    }
}
