//! The operator commands `status` and `replay`: through the control socket when the daemon
//! runs (its store is locked), on the store directly when it is stopped.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};

use super::{init_logging, open_store, runtime};
use crate::clock::now_ms;
use crate::config::{Config, StartAt};
use crate::control::client::connect;
use crate::control::protocol::{Reply, Request};
use crate::metrics::Metrics;
use crate::source::paging::iso;
use crate::source::replay::{ReplayDeps, ReplayProgress, ReplayReport, replaying_source};
use crate::status::{self, Level, StatusReport, render};

/// `status`: print the report; exit 1 when a row's verdict is a failure.
pub fn status(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let report = match connect(&cfg.state.dir)? {
        Some(daemon) => match daemon.request(&Request::Status, |_| {})? {
            Reply::Status(r) => r,
            Reply::Error(e) => bail!("the running daemon could not report its status: {e}"),
            other => bail!("the running daemon answered {other:?} to a status request"),
        },
        None => {
            let store = open_store(&cfg)?;
            status::report(&cfg, &store, None)?
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", render::human(&report, out.is_terminal()))?;
    }
    Ok(if worst(&report) == Level::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn worst(report: &StatusReport) -> Level {
    let sources = report.sources.iter().map(|s| s.verdict.level);
    let sinks = report.sinks.iter().map(|s| s.verdict.level);
    sources.chain(sinks).max().unwrap_or(Level::Ok)
}

/// What `replay` was asked for.
pub struct ReplayArgs<'a> {
    pub config: &'a Path,
    pub source: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub sinks: &'a [String],
}

/// `replay`: re-read a range and queue it again for the chosen sinks.
pub fn replay(args: ReplayArgs<'_>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(args.config)?;
    init_logging(cfg.log.format, "warn");
    let now = now_ms();
    let from_ms = parse_time("--from", args.from, now)?;
    let to_ms = parse_time("--to", args.to, now)?;
    let meter = Arc::new(Mutex::new(Meter::new(std::io::stderr().is_terminal())));
    let running = connect(&cfg.state.dir)?;
    let daemon_runs = running.is_some();
    let report = match running {
        Some(daemon) => {
            let request = Request::Replay {
                source: args.source.to_owned(),
                from_ms,
                to_ms,
                sinks: args.sinks.to_vec(),
            };
            match daemon.request(&request, |r| {
                if let Reply::Progress(p) = r {
                    meter.lock().expect("meter lock").show(p);
                }
            })? {
                Reply::Replayed(r) => r,
                Reply::Error(e) => bail!("{e}"),
                other => bail!("the running daemon answered {other:?} to a replay request"),
            }
        }
        None => replay_here(&cfg, &args, (from_ms, to_ms), meter.clone())?,
    };
    meter.lock().expect("meter lock").finish();
    let p = report.progress;
    eprintln!(
        "replayed source {:?} from {} to {}: {} records read, {} documents queued for sink(s) {}; {}",
        args.source,
        iso(p.from_ms),
        iso(p.to_ms),
        p.records_read,
        p.queued,
        report.sinks.join(", "),
        if daemon_runs {
            "the daemon is delivering them"
        } else {
            "they are delivered when the daemon starts"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A stopped daemon: open the store and replay in this process.
fn replay_here(
    cfg: &Config,
    args: &ReplayArgs<'_>,
    (from_ms, to_ms): (i64, i64),
    meter: Arc<Mutex<Meter>>,
) -> anyhow::Result<ReplayReport> {
    let store = open_store(cfg)?;
    let deps = ReplayDeps {
        store,
        metrics: Arc::new(Metrics::new()),
        queued: Arc::default(),
    };
    let hook = Box::new(move |p: &ReplayProgress| meter.lock().expect("meter lock").show(p));
    let source = replaying_source(cfg, args.source, args.sinks, deps, hook)?;
    let report = runtime()?.block_on(source.replay_range(from_ms, to_ms))?;
    Ok(report)
}

/// `--from`/`--to`: an RFC 3339 time or a negative duration ("-24h": that long ago).
fn parse_time(flag: &str, value: &str, now_ms: i64) -> anyhow::Result<i64> {
    match value.parse::<StartAt>() {
        Ok(StartAt::Time(ms)) => Ok(ms),
        Ok(StartAt::Ago(d)) => Ok(now_ms - d.as_millis() as i64),
        Ok(StartAt::Beginning | StartAt::End) => {
            bail!("{flag} {value:?}: give a time (RFC 3339, or \"-24h\" for 24 hours ago)")
        }
        Err(e) => Err(anyhow::anyhow!(e)).context(flag.to_owned()),
    }
}

/// Replay progress on a terminal: one line rewritten in place, with rate and ETA.
struct Meter {
    terminal: bool,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl Meter {
    fn new(terminal: bool) -> Meter {
        Meter {
            terminal,
            started: Instant::now(),
            last_drawn: None,
        }
    }

    fn show(&mut self, p: &ReplayProgress) {
        if !self.terminal
            || self
                .last_drawn
                .is_some_and(|t| t.elapsed().as_millis() < 200)
        {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let span = (p.to_ms - p.from_ms + 1).max(1) as f64;
        let done = ((p.done_to_ms - p.from_ms + 1) as f64 / span).clamp(0.0, 1.0);
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let eta = if done > 0.0 {
            render::age(elapsed / done * (1.0 - done))
        } else {
            "?".into()
        };
        eprint!(
            "\r\x1b[Kreplay: {:5.1}%  up to {}  {} queued  {:.0}/s  ETA {eta}",
            done * 100.0,
            iso(p.done_to_ms.max(p.from_ms)),
            p.queued,
            p.queued as f64 / elapsed,
        );
    }

    fn finish(&mut self) {
        if self.terminal && self.last_drawn.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_rfc3339_or_ago_and_errors_name_the_flag() {
        let now = 1_764_043_200_000;
        assert_eq!(
            parse_time("--from", "2025-11-25T04:00:00Z", now).unwrap(),
            1_764_043_200_000
        );
        assert_eq!(parse_time("--to", "-1h", now).unwrap(), now - 3_600_000);
        let e = format!("{:#}", parse_time("--from", "yesterday", now).unwrap_err());
        assert!(e.starts_with("--from"), "{e}");
        let e = format!("{:#}", parse_time("--to", "beginning", now).unwrap_err());
        assert!(e.starts_with("--to"), "{e}");
    }
}
