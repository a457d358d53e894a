//! The fleet view as text: a table of every device, or one compact line per change. Pure: the time to measure
//! ages against is given.

use super::view::{Presence, Row};

const HEADERS: [&str; 7] = ["DEVICE", "STATE", "AGENT", "MODELS", "UPDATE", "ALERTS", "HEALTH"];

/// The table of `rows`, columns padded to their widest cell, with a line under each device that has problems.
pub fn table(rows: &[Row], now_ms: u64) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(|row| cells(row, now_ms)).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut text = line(&HEADERS.map(str::to_owned));
    for (row, cells) in rows.iter().zip(&cells) {
        text += &line(cells);
        for problem in &row.problems {
            text += &format!("  problem: {problem}\n");
        }
    }
    text
}

/// One line for a changed device: the table's cells, named.
pub fn line(row: &Row, now_ms: u64) -> String {
    let [device, state, agent, models, update, alerts, health] = cells(row, now_ms);
    let mut text =
        format!("{device}: {state}; agent {agent}; models {models}; update {update}; alerts {alerts}; health {health}");
    for problem in &row.problems {
        text += &format!("; problem: {problem}");
    }
    text
}

fn cells(row: &Row, now_ms: u64) -> [String; 7] {
    let dash = || "-".to_owned();
    let models: Vec<String> =
        row.models.iter().map(|model| format!("{}={}@{}", model.source, model.model, model.version)).collect();
    let update = row.update.as_ref().map(|update| {
        let mut text = format!("{} {}@{}", update.state.as_str(), update.model, update.version);
        if let Some(id) = &update.update_id {
            text += &format!(" ({id})");
        }
        if !update.state.is_final() && update.percent > 0.0 {
            text += &format!(" {:.0}%", update.percent);
        }
        if let Some(reason) = &update.reason {
            text += &format!(": {reason}");
        }
        text
    });
    let alerts: Vec<String> = row
        .alerts
        .iter()
        .map(|alert| format!("{}:{:?}({}) {}", alert.source, alert.kind, alert.subject, age(alert.since_ms, now_ms)))
        .collect();
    let health = row.health.as_ref().map(|health| {
        let mut text = format!(
            "{} cpu {:.1}% rss {} MiB errors {}",
            age(health.at_ms, now_ms),
            health.cpu_percent,
            health.rss_bytes >> 20,
            health.errors
        );
        if !health.conditions.is_empty() {
            text += &format!(" degraded: {}", health.conditions.join(","));
        }
        text
    });
    [
        row.device.clone(),
        state(row, now_ms),
        row.agent_version.clone().unwrap_or_else(dash),
        if models.is_empty() { dash() } else { models.join(" ") },
        update.unwrap_or_else(dash),
        if alerts.is_empty() { dash() } else { alerts.join(" ") },
        health.unwrap_or_else(dash),
    ]
}

/// `online since ...`, `offline since ...`; for the last will, which carries no time, the last health's time.
fn state(row: &Row, now_ms: u64) -> String {
    match (row.state, row.since_ms) {
        (Presence::Unknown, _) => "unknown (no status)".to_owned(),
        (Presence::Online, Some(since)) => format!("online since {}", at(since, now_ms)),
        (Presence::Offline, Some(since)) => format!("offline since {}", at(since, now_ms)),
        (Presence::Online, None) => "online, since unknown".to_owned(),
        (Presence::Offline, None) => match row.health.as_ref().filter(|health| health.at_ms > 0) {
            Some(health) => format!("offline, last health at {}", at(health.at_ms, now_ms)),
            None => "offline, since unknown".to_owned(),
        },
    }
}

/// `2026-12-05T06:30:01Z (12s ago)`.
fn at(unix_ms: u64, now_ms: u64) -> String {
    format!("{} ({})", utc(unix_ms), age(unix_ms, now_ms))
}

/// How long ago `unix_ms` was, in the largest unit that fits; `?` for an unknown (0) time.
fn age(unix_ms: u64, now_ms: u64) -> String {
    if unix_ms == 0 {
        return "? ago".to_owned();
    }
    let seconds = now_ms.saturating_sub(unix_ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// ISO 8601 UTC, to the second.
fn utc(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (days, time) = (seconds / 86400, seconds % 86400);
    let (year, month, day) = civil_date(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", time / 3600, time / 60 % 60, time % 60)
}

/// The proleptic Gregorian date `days` after 1970-01-01: counted in 400-year eras from 0000-03-01, whose
/// years end with February so that the leap day comes last.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ages() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_570_624_987), "2026-11-25T01:37:04Z");
        assert_eq!(utc(4_107_542_399_000), "2100-02-28T23:59:59Z");
        assert_eq!(age(1_000, 62_000), "1m ago");
        assert_eq!(age(1_000, 1_500), "0s ago");
        assert_eq!(age(0, 1_500), "? ago");
        assert_eq!(age(1_000, 1_000 + 3 * 86_400_000), "3d ago");
    }
}
