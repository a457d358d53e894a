//! The soak: one release agent against a real Mosquitto for a given number of minutes, with two sources
//! predicting steadily, broker outages, hostile inbound messages and the agent's memory sampled all along. At the
//! end it prints what was produced, received, duplicated and lost, and the memory figures, and fails when the
//! agent died, its memory grew beyond [`RSS_GROWTH_BOUND`], or a prediction was lost without a counter. `scripts/soak.sh` builds and runs it.
//!
//! Usage: `soak [MINUTES]` (default 10, at least 2).

mod config;
mod hostile;
mod ledger;
mod memory;

use anyhow::Context;
use hostile::{Attacker, Hostile};
use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::subscriber::Subscriber;
use ledger::{Account, Ledger};
use std::collections::BTreeMap;
use std::ops::Range;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Memory before this is start-up (models loading, first frames) and is not judged.
const WARM_UP: Duration = Duration::from_secs(30);
/// The first outage begins here, the next ones every [`OUTAGE_EVERY`], each for [`OUTAGE`].
const FIRST_OUTAGE: Duration = Duration::from_secs(60);
const OUTAGE_EVERY: Duration = Duration::from_secs(120);
const OUTAGE: Duration = Duration::from_secs(30);
/// No outage ends later than this before the end, so the agent has delivered its backlog when counted.
const QUIET_END: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const HOSTILE_EVERY: Duration = Duration::from_secs(15);
/// No hostile message this soon after a restart: the agent may not have reconnected and subscribed yet (its
/// backoff reaches 10 s), and a message nobody subscribed to reaches nobody.
const RECONNECT_GRACE: Duration = Duration::from_secs(15);
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// The most the agent's RSS may grow between the end of the warm-up and the end of the run.
const RSS_GROWTH_BOUND: u64 = 32 << 20;

fn main() -> anyhow::Result<ExitCode> {
    let minutes: f64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().with_context(|| format!("MINUTES must be a number, not {arg:?}"))?,
        None => 10.0,
    };
    anyhow::ensure!(minutes >= 2.0, "MINUTES must be at least 2 (warm-up, one outage, a quiet end)");
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let mut soak = Soak::start(duration)?;
    soak.run();
    Ok(soak.finish())
}

/// The outages of a run of `duration`: every one ends [`QUIET_END`] before the end or earlier.
fn outages(duration: Duration) -> Vec<Range<Duration>> {
    std::iter::successors(Some(FIRST_OUTAGE), |start| Some(*start + OUTAGE_EVERY))
        .map(|start| start..start + OUTAGE)
        .take_while(|outage| outage.end + QUIET_END <= duration)
        .collect()
}

struct Soak {
    duration: Duration,
    started: Instant,
    port: u16,
    broker: Option<Broker>,
    /// When the broker last started, into the run.
    broker_started: Duration,
    outages: Vec<Range<Duration>>,
    outages_done: usize,
    agent: Agent,
    subscriber: Subscriber,
    ledger: Ledger,
    attacker: Attacker,
    hostile_sent: BTreeMap<Hostile, u64>,
    hostile_failed: u64,
    memory: Vec<memory::Sample>,
    failures: Vec<String>,
}

impl Soak {
    fn start(duration: Duration) -> anyhow::Result<Soak> {
        let broker = Broker::start();
        let port = broker.port();
        let subscriber = Subscriber::connect(port, &format!("{}/#", config::prefix()));
        let agent = Agent::start(&config::agent(port));
        let outages = outages(duration);
        println!(
            "Soak: {:.1} min, agent pid {}, Mosquitto on 127.0.0.1:{port}, {} outage(s) of {} s, a hostile message \
             every {} s",
            duration.as_secs_f64() / 60.0,
            agent.pid(),
            outages.len(),
            OUTAGE.as_secs(),
            HOSTILE_EVERY.as_secs()
        );
        Ok(Soak {
            duration,
            started: Instant::now(),
            port,
            broker: Some(broker),
            broker_started: Duration::ZERO,
            outages,
            outages_done: 0,
            agent,
            subscriber,
            ledger: Ledger::default(),
            attacker: Attacker::new(port)?,
            hostile_sent: BTreeMap::new(),
            hostile_failed: 0,
            memory: Vec::new(),
            failures: Vec::new(),
        })
    }

    /// Until the end, or until the agent dies.
    fn run(&mut self) {
        let (mut next_sample, mut next_hostile, mut next_progress) = (Duration::ZERO, HOSTILE_EVERY, PROGRESS_EVERY);
        while self.elapsed() < self.duration {
            self.pump(Duration::from_millis(200));
            if let Some(status) = self.agent.wait_timeout(Duration::ZERO) {
                self.failures.push(format!("the agent died at {:.0} s: {status}", self.elapsed().as_secs_f64()));
                return;
            }
            let now = self.elapsed();
            if now >= next_sample {
                self.sample_memory();
                next_sample += SAMPLE_EVERY;
            }
            self.drive_outages(now);
            if now >= next_hostile {
                self.attack();
                next_hostile += HOSTILE_EVERY;
            }
            if now >= next_progress {
                self.progress();
                next_progress += PROGRESS_EVERY;
            }
        }
    }

    /// Stops or restarts the broker as the schedule says; the restarted one listens on the same port.
    fn drive_outages(&mut self, now: Duration) {
        let Some(outage) = self.outages.get(self.outages_done) else { return };
        if self.broker.is_some() && outage.contains(&now) {
            println!("[{:>4.0} s] broker stopped", now.as_secs_f64());
            if let Some(broker) = self.broker.take() {
                broker.stop();
            }
        } else if self.broker.is_none() && now >= outage.end {
            self.broker = Some(Broker::start_on(self.port, &["allow_anonymous true"]));
            self.broker_started = self.elapsed();
            self.outages_done += 1;
            println!("[{:>4.0} s] broker restarted", self.elapsed().as_secs_f64());
        }
    }

    /// The next hostile message, unless the broker is down or only just back.
    fn attack(&mut self) {
        if self.broker.is_none() || self.elapsed() < self.broker_started + RECONNECT_GRACE {
            return;
        }
        match self.attacker.next() {
            Ok(hostile) => *self.hostile_sent.entry(hostile).or_default() += 1,
            Err(error) => {
                println!("[{:>4.0} s] {error:#}", self.elapsed().as_secs_f64());
                self.hostile_failed += 1;
            }
        }
    }

    fn sample_memory(&mut self) {
        if let Some(sample) = memory::sample(self.agent.pid(), self.elapsed()) {
            self.memory.push(sample);
        }
    }

    fn progress(&self) {
        let rss = self.memory.last().map_or(0.0, |s| s.rss_bytes as f64 / (1024.0 * 1024.0));
        println!(
            "[{:>4.0} s] RSS {rss:.1} MiB, {} predictions received, {} outage(s) done, reconnects {}",
            self.elapsed().as_secs_f64(),
            self.ledger.predictions(),
            self.outages_done,
            self.ledger.health_counter("mqtt_reconnects")
        );
    }

    /// Records what arrives within `time`.
    fn pump(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Some(message) = self.subscriber.next(deadline.saturating_duration_since(Instant::now())) {
            self.ledger.record(&config::prefix(), &message);
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Takes a fresh health report, stops the agent with SIGTERM (it drains and delivers what it holds), collects
    /// the last messages, prints the tables and says whether the soak passed.
    fn finish(mut self) -> ExitCode {
        let ran = self.elapsed();
        let alive = self.failures.is_empty();
        if alive {
            self.sample_memory();
            let reports = self.ledger.health_reports();
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.ledger.health_reports() == reports && Instant::now() < deadline {
                self.pump(Duration::from_millis(200));
            }
        }
        let (status, log) = self.agent.terminate(Duration::from_secs(30));
        if alive && !status.success() {
            self.failures.push(format!("the agent exited with {status} after SIGTERM"));
        }
        let drain_until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < drain_until {
            while let Some(message) = self.subscriber.next(Duration::from_millis(200)) {
                self.ledger.record(&config::prefix(), &message);
            }
        }

        println!("\nSoak of {:.1} min ({:.0} s)", ran.as_secs_f64() / 60.0, ran.as_secs_f64());
        println!("\nPredictions (sequence numbers per source):");
        Account::print_header();
        let mut uncounted = 0;
        for source in config::STEADY_SOURCES {
            let account = self.ledger.account(source);
            account.print(source);
            uncounted += account.uncounted;
        }
        // The spool counts its drops for the device, not per source; what it still held at exit goes out at
        // the next start.
        let spool_dropped = self.ledger.spool_counter("dropped_predictions");
        let spooled = self.ledger.spool_counter("records");
        println!("  spool: {spool_dropped} predictions dropped (all sources), {spooled} records still spooled at exit");
        if uncounted > spool_dropped + spooled {
            self.failures.push(format!(
                "{uncounted} predictions lost without a counter (spool dropped {spool_dropped}, still spooled {spooled})"
            ));
        }
        println!(
            "  ¹ frames_ok of the last health report, taken before SIGTERM; the agent's drain adds a few. Counted \
             drops:\n    health's dropped + predictions_unpublished. Lost uncounted: sequence numbers neither received \
             (as a\n    prediction or an error event) nor counted."
        );
        println!("\nLink:");
        println!("  {:<34} {}", "broker outages", self.outages_done);
        println!("  {:<34} {}", "reconnects (health)", self.ledger.health_counter("mqtt_reconnects"));
        println!("  {:<34} {}", "health reports received", self.ledger.health_reports());
        println!("  {:<34} {}", "health reports unpublished", self.ledger.health_counter("health_unpublished"));
        println!("\nHostile messages sent (and what the agent made of them):");
        for (hostile, sent) in &self.hostile_sent {
            println!("  {:<34} {sent}", hostile.name());
        }
        println!("  {:<34} {}", "publishes that failed", self.hostile_failed);
        println!("  {:<34} {}", "oversize skipped (mqtt_oversized)", self.ledger.health_counter("mqtt_oversized"));
        for source in [config::FRAMES_SOURCE, config::SENSOR_SOURCE, "update"] {
            println!("  {:<34} {}", format!("error events on errors/{source}"), self.ledger.errors(source));
        }
        match memory::Summary::of(&self.memory, WARM_UP) {
            Some(summary) => {
                summary.print();
                if summary.growth_bytes() > RSS_GROWTH_BOUND as i64 {
                    self.failures.push(format!(
                        "RSS grew by {:.1} MiB after the warm-up, over the bound of {} MiB",
                        summary.growth_bytes() as f64 / (1024.0 * 1024.0),
                        RSS_GROWTH_BOUND >> 20
                    ));
                }
            }
            None => self.failures.push("too few memory samples after the warm-up".to_owned()),
        }

        if self.failures.is_empty() {
            println!("\nSoak passed: the agent ran throughout, RSS growth within {} MiB.", RSS_GROWTH_BOUND >> 20);
            ExitCode::SUCCESS
        } else {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            println!("\nAgent log, last lines:");
            for line in tail.iter().rev() {
                println!("  {line}");
            }
            for failure in &self.failures {
                println!("FAILED: {failure}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_leave_a_quiet_end() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let starts = |d| outages(d).iter().map(|o| o.start.as_secs()).collect::<Vec<_>>();
        assert_eq!(starts(minutes(4)), [60, 180]);
        assert_eq!(starts(minutes(10)), [60, 180, 300, 420, 540]);
        assert_eq!(starts(minutes(2)), [60], "the shortest run still has one");
        assert!(outages(Duration::from_secs(119)).is_empty());
    }
}
