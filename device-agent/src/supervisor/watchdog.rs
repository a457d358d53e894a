//! systemd's service notifications (`sd_notify`): READY=1 once the agent serves, WATCHDOG=1 while it is alive,
//! STOPPING=1 when it shuts down. Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call
//! does nothing; without `WATCHDOG_USEC` (no `WatchdogSec=`) nothing is pinged.

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

/// The notifications of this process to its service manager.
#[derive(Debug)]
pub struct Watchdog {
    /// Half the watchdog timeout, as systemd advises; `None` without a watchdog.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Watchdog {
    /// The watchdog systemd set up for this process, if any.
    pub fn from_env() -> Watchdog {
        Watchdog { ping_every: sd_notify::watchdog_enabled().map(|timeout| timeout / 2), last_ping: None }
    }

    /// How often it pings; `None` without a watchdog.
    pub fn ping_every(&self) -> Option<Duration> {
        self.ping_every
    }

    /// The agent serves.
    pub fn ready(&self) {
        notify(NotifyState::Ready);
    }

    /// The agent is alive: pings when half the timeout has passed since the last ping.
    pub fn alive(&mut self, now: Instant) {
        let Some(every) = self.ping_every else { return };
        if self.last_ping.is_none_or(|last| now.saturating_duration_since(last) >= every) {
            notify(NotifyState::Watchdog);
            self.last_ping = Some(now);
        }
    }

    /// The agent shuts down.
    pub fn stopping(&self) {
        notify(NotifyState::Stopping);
    }
}

fn notify(state: NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(&[state]) {
        log::warn!("Notifying the service manager failed: {error}.");
    }
}
