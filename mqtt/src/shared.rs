//! State shared by the link thread and its handles, and the one signal the thread gives: "something happened"
//! (a packet in or out, a connection change, the end), which every wait of a handle sleeps on.

use crate::Route;
use crate::state::AckLedger;
use rumqttc::QoS;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A retained message the link publishes on every connect.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) payload: Vec<u8>,
}

/// How the thread should end, once asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A Disconnect is queued: end when it goes out (or at once while the broker is away).
    AfterDisconnect,
    /// End at the next event, sending nothing more.
    Now,
}

#[derive(Default)]
pub(crate) struct Shared {
    connected: AtomicBool,
    /// Set by shutdown before it disconnects: later publishes would queue behind the Disconnect.
    closing: AtomicBool,
    /// Set when the thread ends.
    closed: AtomicBool,
    reconnects: AtomicU64,
    pub(crate) ledger: AckLedger,
    /// The inbound routes: given at start, added to by [`crate::MqttHandle::subscribe`], subscribed again on
    /// every ConnAck.
    pub(crate) routes: Mutex<Vec<Route>>,
    /// One entry per publish in rumqttc's request queue, in queue order: its token when tracked (see
    /// [`crate::state::Tracker`]). Handles push and queue under this lock, so both orders agree.
    pub(crate) queued: Mutex<VecDeque<Option<u64>>>,
    /// Retained messages published again after every ConnAck ([`crate::MqttHandle::retain_on_connect`]), one
    /// per topic.
    pub(crate) kept: Mutex<Vec<Kept>>,
    /// Why the last connection attempt failed; cleared on connect.
    last_error: Mutex<Option<String>>,
    /// Failed attempts since the last connect: once there are as many as brokers, every one has failed.
    failures: AtomicU64,
    stop: Mutex<Option<Stop>>,
    stop_requested: Condvar,
    /// Counts what the thread handled; waits sleep until it changes.
    events: Mutex<u64>,
    progressed: Condvar,
}

/// Locks `mutex`, ignoring poison: every value behind these locks is valid at any instant.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        if connected {
            *lock(&self.last_error) = None;
            self.failures.store(0, Ordering::SeqCst);
        }
    }

    pub(crate) fn connection_failed(&self, error: String) {
        self.connected.store(false, Ordering::SeqCst);
        *lock(&self.last_error) = Some(error);
        self.failures.fetch_add(1, Ordering::SeqCst);
    }

    /// Why the last attempt failed, once at least `attempts` attempts in a row have.
    pub(crate) fn failure_after(&self, attempts: u64) -> Option<String> {
        if self.failures.load(Ordering::SeqCst) < attempts {
            return None;
        }
        lock(&self.last_error).clone()
    }

    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::SeqCst)
    }

    pub(crate) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst) || self.is_closed()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The thread has ended.
    pub(crate) fn close(&self) {
        self.connected.store(false, Ordering::SeqCst);
        self.closed.store(true, Ordering::SeqCst);
        self.progress();
    }

    /// Asks the thread to end; `Now` overrides `AfterDisconnect`, never the reverse.
    pub(crate) fn request_stop(&self, stop: Stop) {
        let mut current = lock(&self.stop);
        if *current != Some(Stop::Now) {
            *current = Some(stop);
        }
        self.stop_requested.notify_all();
    }

    pub(crate) fn stop(&self) -> Option<Stop> {
        *lock(&self.stop)
    }

    /// Sleeps for `delay` unless a stop is (or gets) requested; true when one is.
    pub(crate) fn sleep_unless_stopped(&self, delay: Duration) -> bool {
        let stop = lock(&self.stop);
        let (stop, _) = self
            .stop_requested
            .wait_timeout_while(stop, delay, |stop| stop.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        stop.is_some()
    }

    /// What the thread has handled so far.
    pub(crate) fn events(&self) -> u64 {
        *lock(&self.events)
    }

    /// Wakes the waits: the thread handled something. Call it after updating the state it changed.
    pub(crate) fn progress(&self) {
        *lock(&self.events) += 1;
        self.progressed.notify_all();
    }

    /// Waits until `done` holds or `deadline` passes, checking again whenever the thread handled something;
    /// whether `done` held. `done` must not wait on the thread itself.
    pub(crate) fn wait_until(&self, deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
        let mut events = lock(&self.events);
        loop {
            // Checked under the lock: an event between the check and the wait would otherwise be missed.
            if done() {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            let seen = *events;
            events = self
                .progressed
                .wait_timeout_while(events, left, |events| *events == seen)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
