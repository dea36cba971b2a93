//! `status`: where every source and sink stands, in one report — for a person (one row and a
//! verdict each, [`render`]) or a script (`--json`).
//!
//! The store answers what it keeps (cursors, queue depths, oldest queued entry, dead
//! letters) whether the daemon runs or not. What only a running daemon knows (last success
//! and error, failing since, events and deliveries today, gaps) comes from its memory
//! ([`Live`], sent over the control socket); while the daemon is stopped those fields are
//! `null` and the verdict says so — nothing is made up.

pub mod render;
pub mod today;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::{Config, SourceConfig};
use crate::normalize::Api;
use crate::source::paging::iso;
use crate::state::{StateError, Store};

/// Whether the report came from a running daemon or from the store alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    Running,
    /// Told to stop (or reloading): polling has stopped, sinks drain.
    Stopping,
    Stopped,
}

/// How a row is doing, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Not known while the daemon is stopped.
    Unknown,
    Warn,
    Fail,
}

/// A row's one-line verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub level: Level,
    pub text: String,
}

/// The whole report (`status --json` prints it as is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub daemon: DaemonState,
    /// When this report was made (RFC 3339).
    pub generated_at: String,
    /// Since when "today" counts (the later of midnight UTC and the daemon's start).
    pub counted_since: Option<String>,
    pub sources: Vec<SourceRow>,
    pub sinks: Vec<SinkRow>,
}

/// One source. Ages are seconds; `None` is unknown (or never happened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRow {
    pub name: String,
    pub api: String,
    /// Every record up to here is queued (RFC 3339); `None` before the first commit.
    pub cursor: Option<String>,
    /// How far the cursor is behind now.
    pub lag_seconds: Option<f64>,
    pub last_success_age_seconds: Option<f64>,
    pub last_error: Option<String>,
    /// Since when every poll cycle failed.
    pub last_error_age_seconds: Option<f64>,
    pub events_today: Option<u64>,
    /// Gaps (cursor older than the server's retention) since the daemon started.
    pub gaps: Option<u64>,
    pub verdict: Verdict,
}

/// One sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// "ready" or "failing" (every attempt failed since then); `None` while stopped.
    pub state: Option<String>,
    pub failing_for_seconds: Option<f64>,
    pub queued: u64,
    pub queued_bytes: u64,
    pub oldest_queued_age_seconds: Option<f64>,
    pub dead_letters: u64,
    pub delivered_today: Option<u64>,
    pub last_error: Option<String>,
    pub verdict: Verdict,
}

/// What a running daemon knows of a source beyond the store.
#[derive(Debug, Clone, Default)]
pub struct LiveSource {
    pub last_success_age_s: Option<f64>,
    pub last_error: Option<String>,
    pub failing_for_s: Option<f64>,
    pub events_today: u64,
    pub gaps: u64,
    /// Beyond this lag the source is behind: `lag` plus a few poll intervals.
    pub behind_after_s: f64,
}

/// What a running daemon knows of a sink beyond the store.
#[derive(Debug, Clone, Default)]
pub struct LiveSink {
    pub failing_for_s: Option<f64>,
    pub last_error: Option<String>,
    pub delivered_today: u64,
}

/// A running daemon's memory, by source and sink name.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub counted_since_ms: i64,
    pub sources: HashMap<String, LiveSource>,
    pub sinks: HashMap<String, LiveSink>,
}

/// The report for `cfg`: the store's facts, and the daemon's memory when it runs.
pub fn report(
    cfg: &Config,
    store: &Store,
    live: Option<&Live>,
) -> Result<StatusReport, StateError> {
    let now = now_ms();
    let age = |ms: i64| (now - ms).max(0) as f64 / 1000.0;
    let mut sources = Vec::new();
    for s in &cfg.source {
        let cursor_ms = position_ms(store, s)?;
        let live_row = live.map(|l| l.sources.get(&s.name).cloned().unwrap_or_default());
        let lag = cursor_ms.map(age);
        sources.push(SourceRow {
            name: s.name.clone(),
            api: s.api.as_str().to_owned(),
            cursor: cursor_ms.map(iso),
            lag_seconds: lag,
            last_success_age_seconds: live_row.as_ref().and_then(|l| l.last_success_age_s),
            last_error: live_row.as_ref().and_then(|l| l.last_error.clone()),
            last_error_age_seconds: live_row.as_ref().and_then(|l| l.failing_for_s),
            events_today: live_row.as_ref().map(|l| l.events_today),
            gaps: live_row.as_ref().map(|l| l.gaps),
            verdict: source_verdict(live_row.as_ref(), lag),
        });
    }
    let mut sinks = Vec::new();
    for s in &cfg.sink {
        let q = store.queue_stats(&s.name)?;
        let live_row = live.map(|l| l.sinks.get(&s.name).cloned().unwrap_or_default());
        let state = live_row.as_ref().map(|l| {
            if l.failing_for_s.is_some() {
                "failing"
            } else {
                "ready"
            }
            .to_owned()
        });
        let row = SinkRow {
            name: s.name.clone(),
            kind: s.kind.type_name().to_owned(),
            state,
            failing_for_seconds: live_row.as_ref().and_then(|l| l.failing_for_s),
            queued: q.events,
            queued_bytes: q.bytes,
            oldest_queued_age_seconds: q.oldest_enqueued_ms.map(age),
            dead_letters: q.dead_letters,
            delivered_today: live_row.as_ref().map(|l| l.delivered_today),
            last_error: live_row.as_ref().and_then(|l| l.last_error.clone()),
            verdict: Verdict {
                level: Level::Ok,
                text: String::new(),
            },
        };
        sinks.push(SinkRow {
            verdict: sink_verdict(&row, live.is_some()),
            ..row
        });
    }
    Ok(StatusReport {
        daemon: if live.is_some() {
            DaemonState::Running
        } else {
            DaemonState::Stopped
        },
        generated_at: iso(now),
        counted_since: live.map(|l| iso(l.counted_since_ms)),
        sources,
        sinks,
    })
}

/// Where a source stands in the store: the cursor (REST and file sources: every record up
/// to it is queued), or an organization source's newest `processedAt` queued.
fn position_ms(store: &Store, s: &SourceConfig) -> Result<Option<i64>, StateError> {
    if s.api == Api::Organization {
        return Ok(store.org_position(&s.name)?.map(|p| p.processed_ms));
    }
    Ok(store
        .cursor(&s.name)?
        .filter(|c| c.started)
        .map(|c| c.cursor_ms))
}

fn verdict(level: Level, text: impl Into<String>) -> Verdict {
    Verdict {
        level,
        text: text.into(),
    }
}

fn source_verdict(live: Option<&LiveSource>, lag: Option<f64>) -> Verdict {
    let Some(l) = live else {
        return verdict(
            Level::Unknown,
            "daemon stopped: the cursor is what the store holds; polling resumes there on start",
        );
    };
    if let Some(e) = &l.last_error {
        let since = l.failing_for_s.map(render::age).unwrap_or_default();
        return verdict(Level::Fail, format!("failing for {since}: {e}"));
    }
    if l.last_success_age_s.is_none() {
        return verdict(Level::Warn, "no poll cycle has finished yet");
    }
    if let Some(lag) = lag
        && lag > l.behind_after_s
    {
        return verdict(
            Level::Warn,
            format!("behind: the cursor is {} old", render::age(lag)),
        );
    }
    if l.gaps > 0 {
        return verdict(
            Level::Warn,
            format!(
                "{} gap(s): records older than the retention may be lost",
                l.gaps
            ),
        );
    }
    verdict(Level::Ok, "polling")
}

fn sink_verdict(row: &SinkRow, running: bool) -> Verdict {
    if let (Some(e), Some(f)) = (&row.last_error, row.failing_for_seconds) {
        return verdict(Level::Fail, format!("failing for {}: {e}", render::age(f)));
    }
    if row.dead_letters > 0 {
        return verdict(
            Level::Warn,
            format!("{} dead letter(s): see `dlq list`", row.dead_letters),
        );
    }
    if !running {
        return verdict(
            Level::Unknown,
            format!("daemon stopped: {} queued for the next start", row.queued),
        );
    }
    verdict(Level::Ok, "delivering")
}

/// A running daemon's report with one never-polled source and one sink, for render tests.
#[cfg(test)]
fn report_for_tests() -> StatusReport {
    let ok = Verdict {
        level: Level::Ok,
        text: "ok".into(),
    };
    StatusReport {
        daemon: DaemonState::Running,
        generated_at: "2026-12-02T22:00:00.000Z".into(),
        counted_since: Some("2026-12-02T00:00:30.000Z".into()),
        sources: vec![SourceRow {
            name: "wiki".into(),
            api: "cloud".into(),
            cursor: None,
            lag_seconds: None,
            last_success_age_seconds: None,
            last_error: None,
            last_error_age_seconds: None,
            events_today: Some(0),
            gaps: Some(0),
            verdict: ok.clone(),
        }],
        sinks: vec![SinkRow {
            name: "siem".into(),
            kind: "syslog".into(),
            state: Some("failing".into()),
            failing_for_seconds: Some(120.0),
            queued: 12,
            queued_bytes: 3400,
            oldest_queued_age_seconds: Some(130.0),
            dead_letters: 0,
            delivered_today: Some(0),
            last_error: Some("connect refused".into()),
            verdict: ok,
        }],
    }
}
