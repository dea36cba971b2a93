//! `status` for a person: a table per section. On a terminal each row is followed by its
//! verdict in colour; otherwise plain whitespace-separated columns (the verdict's level as
//! a column, its text last), easy to `grep` and `awk`.

use std::fmt::Write;

use anstyle::{AnsiColor, Style};

use super::{DaemonState, Level, SinkRow, SourceRow, StatusReport};

/// A duration in seconds, short: `42s`, `12m`, `3h05m`, `2d04h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn opt_age(seconds: Option<f64>) -> String {
    seconds.map(age).unwrap_or_else(|| "-".into())
}

fn opt_count(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

fn style(level: Level) -> Style {
    let colour = match level {
        Level::Ok => AnsiColor::Green,
        Level::Unknown => AnsiColor::Cyan,
        Level::Warn => AnsiColor::Yellow,
        Level::Fail => AnsiColor::Red,
    };
    Style::new().fg_color(Some(colour.into())).bold()
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Unknown => "unknown",
        Level::Warn => "warn",
        Level::Fail => "FAIL",
    }
}

/// The report as text; `colour`: a terminal (colour, a verdict line under each row).
pub fn human(report: &StatusReport, colour: bool) -> String {
    let mut out = String::new();
    let daemon = match report.daemon {
        DaemonState::Running => format!(
            "daemon running; today counts since {}",
            report.counted_since.as_deref().unwrap_or("-")
        ),
        DaemonState::Stopping => format!(
            "daemon stopping: polling has stopped, sinks are draining; today counts since {}",
            report.counted_since.as_deref().unwrap_or("-")
        ),
        DaemonState::Stopped => {
            "daemon stopped: read from the state store; last success, errors, today's counts and gaps are known only while it runs".to_owned()
        }
    };
    let _ = writeln!(out, "{daemon} (at {})", report.generated_at);
    let _ = writeln!(out);
    let source_rows: Vec<(Vec<String>, Level, &str)> = report
        .sources
        .iter()
        .map(|s| {
            let cells = source_cells(s, report.daemon != DaemonState::Stopped);
            (cells, s.verdict.level, s.verdict.text.as_str())
        })
        .collect();
    table(
        &mut out,
        &[
            "SOURCE",
            "API",
            "CURSOR",
            "LAG",
            "LAST OK",
            "ERROR FOR",
            "EVENTS TODAY",
            "GAPS",
        ],
        &source_rows,
        colour,
    );
    let _ = writeln!(out);
    let sink_rows: Vec<(Vec<String>, Level, &str)> = report
        .sinks
        .iter()
        .map(|s| (sink_cells(s), s.verdict.level, s.verdict.text.as_str()))
        .collect();
    table(
        &mut out,
        &[
            "SINK",
            "TYPE",
            "STATE",
            "FAILING FOR",
            "QUEUED",
            "OLDEST",
            "DEAD",
            "DELIVERED TODAY",
        ],
        &sink_rows,
        colour,
    );
    out
}

/// `running`: a missing last success means "never" rather than "unknown".
fn source_cells(s: &SourceRow, running: bool) -> Vec<String> {
    let never = if running { "never" } else { "-" };
    vec![
        s.name.clone(),
        s.api.clone(),
        s.cursor.clone().unwrap_or_else(|| "-".into()),
        opt_age(s.lag_seconds),
        s.last_success_age_seconds
            .map(age)
            .unwrap_or_else(|| never.into()),
        opt_age(s.last_error_age_seconds),
        opt_count(s.events_today),
        opt_count(s.gaps),
    ]
}

fn sink_cells(s: &SinkRow) -> Vec<String> {
    vec![
        s.name.clone(),
        s.kind.clone(),
        s.state.clone().unwrap_or_else(|| "-".into()),
        opt_age(s.failing_for_seconds),
        s.queued.to_string(),
        opt_age(s.oldest_queued_age_seconds),
        s.dead_letters.to_string(),
        opt_count(s.delivered_today),
    ]
}

/// Aligned columns; each row followed by its verdict (terminal) or ending with it (plain).
fn table(out: &mut String, head: &[&str], rows: &[(Vec<String>, Level, &str)], colour: bool) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for (cells, _, _) in rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let head_line = line(&mut head.iter().copied());
    if colour {
        let _ = writeln!(out, "{}", head_line.trim_end());
    } else {
        let _ = writeln!(out, "{head_line}  VERDICT");
    }
    for (cells, level, text) in rows {
        let row = line(&mut cells.iter().map(String::as_str));
        if colour {
            let st = style(*level);
            let _ = writeln!(out, "{}", row.trim_end());
            let _ = writeln!(out, "  {st}{}{st:#} {text}", level_word(*level));
        } else {
            let _ = writeln!(out, "{row}  {} {text}", level_word(*level));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, report_for_tests};
    use super::*;

    #[test]
    fn a_terminal_gets_colour_and_a_verdict_line_plain_output_gets_columns() {
        let mut report = report_for_tests();
        report.sinks[0].verdict = Verdict {
            level: Level::Fail,
            text: "failing for 2m00s: connect refused".into(),
        };
        let plain = human(&report, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        let row = plain.lines().find(|l| l.starts_with("siem")).unwrap();
        assert!(
            row.ends_with("FAIL failing for 2m00s: connect refused"),
            "{plain}"
        );
        assert!(
            plain
                .lines()
                .any(|l| l.starts_with("SINK") && l.ends_with("VERDICT"))
        );

        let tty = human(&report, true);
        let lines: Vec<&str> = tty.lines().collect();
        let at = lines.iter().position(|l| l.starts_with("siem")).unwrap();
        assert_eq!(
            lines[at + 1],
            "  \x1b[1m\x1b[31mFAIL\x1b[0m failing for 2m00s: connect refused"
        );
        // Never polled while running is "never"; while stopped it is unknown.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("wiki") && l.contains(" never "))
        );
        report.daemon = DaemonState::Stopped;
        let stopped = human(&report, false);
        assert!(!stopped.contains("never"), "{stopped}");
    }

    #[test]
    fn ages_are_short_and_exact() {
        assert_eq!(age(0.4), "0s");
        assert_eq!(age(59.0), "59s");
        assert_eq!(age(61.0), "1m01s");
        assert_eq!(age(3_600.0 * 3.0 + 300.0), "3h05m");
        assert_eq!(age(86_400.0 * 2.0 + 3_600.0 * 4.0), "2d04h");
    }
}
