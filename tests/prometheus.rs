//! The alert rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/confluence-audit-forwarder.json`): checked and unit-tested with
//! `promtool`, then loaded into a real Prometheus (Debian's `prometheus`) that scrapes a
//! running daemon — the source-failing alert fires when the simulator stops and clears when
//! it is back, a failed reload fires its alert, the sink-failing and backlog alerts fire when
//! a sink's receiver dies (and clear when it is back), the credentials alert fires on a 403,
//! and every dashboard query answers with data.

mod common;
#[path = "prometheus_support/mod.rs"]
mod prometheus_support;
#[path = "syslog_support/mod.rs"]
mod syslog_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, free_port, http_get, scrape, source_toml, wait_until,
};
use confluence_audit_forwarder::simulate::{ArrivalMix, Faults, SimConfig};
use prometheus_support::Prometheus;
use syslog_support::{Input, Rsyslog};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// `promtool ARGS…`, panicking with its output when it fails.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("run promtool (Debian package `prometheus`; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_alert_rules() {
    let rules = deploy("prometheus/alerts.yml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let tests = deploy("prometheus/alerts.test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// alerts.yml as the test's Prometheus loads it: every `for:` 1s and the backlog's 600 s 3 s,
/// so that a test reaches them; the expressions are the file's. Each change must find its text.
fn rules_for_the_test() -> String {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).expect("alerts.yml");
    let backlog = "caf_sink_queue_oldest_age_seconds > 600";
    assert_eq!(text.matches(backlog).count(), 1, "the backlog rule changed");
    let text = text.replace(backlog, "caf_sink_queue_oldest_age_seconds > 3");
    let mut shortened = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => {
                shortened += 1;
                format!("{}for: 1s", &l[..l.len() - l.trim_start().len()])
            }
            None => l.to_owned(),
        })
        .collect();
    assert!(shortened >= 4, "only {shortened} `for:` found");
    lines.join("\n") + "\n"
}

/// A daemon polling `url` every 200 ms, with a file sink and the sinks in `sinks` (TOML),
/// serving `/metrics` on `port`.
fn daemon_config(scratch: &Scratch, url: &str, sinks: &str, port: u16) -> PathBuf {
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n{sinks}\n[server]\nlisten = \"127.0.0.1:{port}\"\nsink_failure_grace = \"2s\"\n",
        source_toml("wiki", url, "legacy", "lag = \"1s\""),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ))
}

/// Wait until the alert `name` for `key=value` is in `state` (None: not active).
fn wait_for_alert(p: &Prometheus, name: &str, key: &str, value: &str, state: Option<&str>) {
    let what = format!("{name}{{{key}={value:?}}} to be {state:?}");
    let mut last = None;
    let limit = Duration::from_secs(240);
    let started = std::time::Instant::now();
    loop {
        let now = p.alert_state(name, key, value);
        if now.as_deref() == state {
            return;
        }
        if now != last {
            eprintln!("{what}: now {now:?}");
            last = now;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// SIGHUP with a file that does not load (a misspelt key): the daemon keeps running on its
/// configuration, and the reload alert fires.
fn a_failed_reload_fires_its_alert(prom: &Prometheus, daemon: &DaemonProcess, cfg: &Path) {
    let text = std::fs::read_to_string(cfg).expect("read config");
    std::fs::write(
        cfg,
        text.replace("[[sink]]", "[[sink]]\nbatch_max_event = 5"),
    )
    .expect("write config");
    let status = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    wait_for_alert(
        prom,
        "ConfluenceAuditConfigReloadFailed",
        "job",
        "caf",
        Some("firing"),
    );
}

#[test]
fn source_failing_alert_fires_when_confluence_stops_and_clears_when_it_is_back() {
    let port = free_port();
    let Some(prom) = Prometheus::start(&format!("127.0.0.1:{port}"), &rules_for_the_test()) else {
        return;
    };
    let Confluence {
        sim, server, rt, ..
    } = Confluence::with_history(SimConfig::default(), 300);
    let addr = server.addr;
    let scratch = Scratch::new();
    let cfg = daemon_config(&scratch, &server.url(), "", port);
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    wait_until(
        Duration::from_secs(60),
        "Prometheus sees the source up",
        || prom.value("caf_source_up{job=\"caf\",source=\"wiki\"}") == Some(1.0),
    );
    assert_eq!(
        prom.alert_state("ConfluenceAuditSourceFailing", "source", "wiki"),
        None
    );

    a_failed_reload_fires_its_alert(&prom, &daemon, &cfg);

    // Confluence goes away: the alert becomes pending, then firing (`for:` shortened). Connection
    // errors are retried inside the poll cycle, so caf_source_up (like /readyz) turns 0 once no
    // cycle succeeded for three poll intervals plus a minute.
    rt.block_on(server.shutdown());
    wait_for_alert(
        &prom,
        "ConfluenceAuditSourceFailing",
        "source",
        "wiki",
        Some("firing"),
    );
    assert_eq!(
        prom.value("caf_source_up{source=\"wiki\"}"),
        Some(0.0),
        "{}",
        scratch.logs()
    );
    assert!(
        prom.value("sum(caf_source_errors_total{source=\"wiki\",kind=\"connect\"})")
            .is_some_and(|n| n >= 1.0),
        "the failed polls are counted as connect errors: {}",
        scratch.logs()
    );

    // Back on the same address: the alert clears.
    let _server = rt
        .block_on(sim.serve(addr))
        .expect("serve the simulator again");
    wait_for_alert(
        &prom,
        "ConfluenceAuditSourceFailing",
        "source",
        "wiki",
        None,
    );
    assert_eq!(prom.value("caf_source_up{source=\"wiki\"}"), Some(1.0));
}

/// The account loses its permission for a moment: the credentials alert fires (and the
/// source errors of kind `auth` exist for the dashboard); then the source is up again.
fn the_credentials_alert_fires_on_a_403(c: &Confluence, prom: &Prometheus) {
    c.sim.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    wait_for_alert(
        prom,
        "ConfluenceAuditCredentialsRejected",
        "source",
        "wiki",
        Some("firing"),
    );
    c.sim.set_faults(Faults::default());
    wait_until(Duration::from_secs(60), "the source up again", || {
        prom.value("caf_source_up{source=\"wiki\"}") == Some(1.0)
    });
}

#[test]
fn a_dead_sink_fires_backlog_and_failing_alerts_and_every_dashboard_query_answers() {
    let port = free_port();
    let Some(prom) = Prometheus::start(&format!("127.0.0.1:{port}"), &rules_for_the_test()) else {
        return;
    };
    let c = Confluence::with_history(SimConfig::default(), 300);
    let arrivals = {
        let _g = c.rt.enter();
        c.sim.start_arrivals(20.0, ArrivalMix::default())
    };
    let syslog_port = syslog_support::free_port();
    let mut rsyslog = Rsyslog::start_on(Input::Tcp, syslog_port);
    let scratch = Scratch::new();
    let siem = format!(
        "[[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:{syslog_port}\"\npayload = \"json\"\nmax_backoff = \"300ms\"\n"
    );
    let cfg = daemon_config(&scratch, &c.url, &siem, port);
    let _daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    rsyslog.wait_for("the history delivered to rsyslog", |m| m.len() >= 300);
    wait_until(Duration::from_secs(60), "Prometheus sees the sink", || {
        prom.value("caf_sink_failing_seconds{sink=\"siem\"}") == Some(0.0)
    });
    assert_eq!(
        prom.alert_state("ConfluenceAuditSinkBacklog", "sink", "siem"),
        None
    );

    // The receiver dies; new events keep arriving and wait in the sink's queue.
    rsyslog.kill();
    wait_for_alert(
        &prom,
        "ConfluenceAuditSinkFailing",
        "sink",
        "siem",
        Some("firing"),
    );
    wait_for_alert(
        &prom,
        "ConfluenceAuditSinkBacklog",
        "sink",
        "siem",
        Some("firing"),
    );
    assert!(
        prom.value("caf_sink_queue_events{sink=\"siem\"}")
            .is_some_and(|n| n > 0.0),
        "{}",
        scratch.logs()
    );
    assert_eq!(
        prom.alert_state("ConfluenceAuditSinkBacklog", "sink", "archive"),
        None,
        "the file sink beside it delivers"
    );

    the_credentials_alert_fires_on_a_403(&c, &prom);

    // Errors of both kinds have happened: every dashboard query has data.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/confluence-audit-forwarder.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    prometheus_support::dashboard::check_every_query(&prom, &dashboard, "wiki", "siem");

    // The receiver is back where the sink expects it: the sink catches up, the alerts clear.
    drop(arrivals);
    let _rsyslog = Rsyslog::start_on(Input::Tcp, syslog_port);
    wait_for_alert(&prom, "ConfluenceAuditSinkFailing", "sink", "siem", None);
    wait_for_alert(&prom, "ConfluenceAuditSinkBacklog", "sink", "siem", None);
}

/// The three metrics `readiness_metrics` exports follow `/readyz`, scraped directly (no
/// Prometheus needed): the source up, then down at once on a 403 (a permanent error); a sink
/// whose receiver never answers failing for longer and longer; the configured grace.
#[test]
fn readiness_metrics_say_what_readyz_says() {
    let c = Confluence::with_history(SimConfig::default(), 50);
    let closed_port = syslog_support::free_port();
    let scratch = Scratch::new();
    let port = free_port();
    let dead = format!(
        "[[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:{closed_port}\"\nmax_backoff = \"300ms\"\n"
    );
    let cfg = daemon_config(&scratch, &c.url, &dead, port);
    let _daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let m = |name: &str| scrape(port, name);
    wait_until(Duration::from_secs(60), "the source up", || {
        m("caf_source_up{source=\"wiki\"}") == Some(1.0)
    });
    assert_eq!(m("caf_sink_failure_grace_seconds"), Some(2.0));
    assert_eq!(m("caf_sink_failing_seconds{sink=\"archive\"}"), Some(0.0));
    let mut first = 0.0;
    wait_until(Duration::from_secs(60), "the dead sink failing", || {
        first = m("caf_sink_failing_seconds{sink=\"siem\"}").unwrap_or(0.0);
        first > 0.0
    });
    wait_until(
        Duration::from_secs(60),
        "the dead sink failing longer",
        || m("caf_sink_failing_seconds{sink=\"siem\"}").is_some_and(|s| s > first),
    );
    wait_until(Duration::from_secs(60), "/readyz naming the sink", || {
        http_get(&format!("http://127.0.0.1:{port}/readyz"))
            .1
            .contains("sink \\\"siem\\\"")
    });

    c.sim.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    wait_until(Duration::from_secs(60), "the source down on a 403", || {
        m("caf_source_up{source=\"wiki\"}") == Some(0.0)
    });
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/readyz"));
    assert_eq!(status, 503);
    assert!(body.contains("wiki") && body.contains("403"), "{body}");
}

/// Every `caf_*` name in the rules, their unit tests and the dashboard is one the daemon
/// registers (`src/metrics.rs`, prefix `caf_`; a counter's samples end in `_total`, a
/// histogram's in `_bucket`, `_sum`, `_count`): a misspelt name would make a rule or panel
/// silently empty, and promtool's unit tests would not notice, since they feed the same name.
#[test]
fn every_metric_the_rules_and_the_dashboard_name_is_registered() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"))
            .expect("src/metrics.rs");
    let registered: Vec<String> = source
        .split("r.register(")
        .skip(1)
        .filter_map(|call| call.split('"').nth(1))
        .map(|name| format!("caf_{name}"))
        .collect();
    assert!(registered.len() >= 25, "{registered:?}");
    let known = |name: &str| {
        registered.iter().any(|r| {
            ["", "_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{r}{suffix}"))
        })
    };
    for file in [
        "prometheus/alerts.yml",
        "prometheus/alerts.test.yml",
        "grafana/confluence-audit-forwarder.json",
    ] {
        let text = std::fs::read_to_string(deploy(file)).expect(file);
        let names: std::collections::BTreeSet<&str> = text
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .filter(|w| w.starts_with("caf_") && !w.ends_with('_'))
            .collect();
        assert!(names.len() >= 8, "{file}: {names:?}");
        let unknown: Vec<_> = names.into_iter().filter(|n| !known(n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the daemon does not register: {unknown:?}"
        );
    }
}
