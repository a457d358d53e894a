//! `fleet list`: the shell around [`FleetView`]: subscribes to the retained messages of a prefix or a group,
//! collects them, prints the table (or JSON lines) and, with `--watch`, a line per change until interrupted
//! (Ctrl-C ends it by its default action: there is nothing to clean up).

use super::render;
use super::view::{FleetView, Row, Scope, device_filters};
use crate::push::{Broker, BrokerArgs, Inbound, check_name, client_id, unix_time_ms};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Health reports carry a list per source and camera: room for large agents. A larger message is refused by
/// the link and reported in its log.
const MAX_PACKET: usize = 4 << 20;
/// The quiet after the last retained message that ends the collection before `--wait`: the broker sends what it
/// retains at once on subscribing.
const SILENCE: Duration = Duration::from_millis(300);
/// How long a `--watch` waits for the broker before looking again (nothing else to do in between).
const WATCH_POLL: Duration = Duration::from_secs(3600);

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// List every device under this topic prefix, one topic level below it (`devices/` lists `devices/<id>`).
    #[arg(long, value_name = "PREFIX", default_value = "devices/", conflicts_with = "group")]
    pub prefix: String,
    /// List the members of this group instead, each on the prefix its membership names.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// One JSON object per device per line (see docs/fleets.md), instead of a table.
    #[arg(long)]
    pub json: bool,
    /// After the list, stay subscribed and print a line per change (JSON with --json) until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Seconds to collect the retained messages (less when they stop coming first).
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: u64,
}

pub fn main(args: &ListArgs) -> Result<ExitCode> {
    let scope = scope(args)?;
    let mut broker = Broker::connect(&args.broker, &client_id(), MAX_PACKET)?;
    for filter in scope.filters() {
        broker.subscribe(&filter)?;
    }
    let mut view = FleetView::new(scope.clone());
    collect(&mut broker, &mut view, Duration::from_secs(args.wait))?;
    let rows = view.rows();
    let mut out = std::io::stdout().lock();
    if args.json {
        for row in &rows {
            writeln!(out, "{}", json(row)?)?;
        }
    } else {
        write!(out, "{}", render::table(&rows, unix_time_ms()))?;
    }
    out.flush()?;
    if args.watch {
        watch(&mut broker, &mut view, args.json, &mut out)?;
    }
    broker.close();
    // An empty fleet is worth a failure: a wrong prefix, group or broker looks just like it.
    if rows.is_empty() {
        bail!("no device {} within {} s", describe(&scope), args.wait);
    }
    Ok(ExitCode::SUCCESS)
}

fn scope(args: &ListArgs) -> Result<Scope> {
    Ok(match &args.group {
        Some(group) => {
            check_name("--group", group)?;
            Scope::Group(group.clone())
        }
        None => {
            if args.prefix.contains(['+', '#']) {
                bail!("--prefix {:?}: MQTT wildcards are not allowed", args.prefix);
            }
            // `devices` means the devices under it, as `devices/` does.
            let mut prefix = args.prefix.clone();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            Scope::Prefix(prefix)
        }
    })
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Prefix(prefix) => format!("under {prefix:?}"),
        Scope::Group(group) => format!("in group {group}"),
    }
}

/// Takes what the broker delivers until `wait` passes or a [`SILENCE`] after the last message.
fn collect(broker: &mut Broker, view: &mut FleetView, wait: Duration) -> Result<()> {
    let end = Instant::now() + wait;
    let mut quiet_from = None;
    loop {
        let deadline = quiet_from.map_or(end, |at: Instant| end.min(at + SILENCE));
        let Some(inbound) = broker.recv(deadline.saturating_duration_since(Instant::now())) else { return Ok(()) };
        if let Inbound::Message { topic, payload, .. } = inbound {
            take(broker, view, &topic, &payload)?;
            quiet_from = Some(Instant::now());
        }
    }
}

/// Prints a line for every change, until the process is interrupted.
fn watch(broker: &mut Broker, view: &mut FleetView, json_lines: bool, out: &mut impl Write) -> Result<()> {
    loop {
        let Some(Inbound::Message { topic, payload, .. }) = broker.recv(WATCH_POLL) else { continue };
        if let Some(row) = take(broker, view, &topic, &payload)? {
            let line = if json_lines { json(&row)? } else { render::line(&row, unix_time_ms()) };
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    }
}

/// Feeds one message to the view, following a group's members as they join and leave; the changed row.
fn take(broker: &mut Broker, view: &mut FleetView, topic: &str, payload: &[u8]) -> Result<Option<Row>> {
    let observed = view.observe(topic, payload);
    if let Some(prefix) = &observed.joined {
        for filter in device_filters(prefix) {
            broker.subscribe(&filter)?;
        }
    }
    if let Some(prefix) = &observed.left {
        log::info!("{prefix} left the group.");
        for filter in device_filters(prefix) {
            broker.unsubscribe(&filter)?;
        }
    }
    Ok(observed.changed)
}

fn json(row: &Row) -> Result<String> {
    serde_json::to_string(row).context("writing a row as JSON")
}
