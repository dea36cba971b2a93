//! The operator commands against the real binary and the simulator: `status` of a running
//! daemon (through the control socket) and of a stopped one (from the store), as text and
//! JSON; `replay` of a range on a stopped and on a running daemon — queued exactly once
//! more for the chosen sinks only, tagged, with the cursor and the dedupe counts untouched —
//! and the ranges it refuses.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, bin, diff, expected_ids, free_port, ids_in_file, run_once,
    source_toml, wait_until,
};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::SimConfig;
use confluence_audit_forwarder::source::paging::iso;
use confluence_audit_forwarder::state::{FileSliceCommit, OrgPosition, Store};

fn command(args: &[&str], config: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run the command")
}

fn status_json(config: &Path) -> (Output, serde_json::Value) {
    let out = command(&["status", "--json"], config);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn row<'a>(report: &'a serde_json::Value, section: &str, name: &str) -> &'a serde_json::Value {
    report[section]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no {section} row {name:?} in {report:#}"))
}

/// `event.id`s of the documents tagged `confluence.audit.replayed: true`, with counts.
fn replayed_ids(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let f = std::fs::File::open(path).expect("open sink file");
    for line in BufReader::new(f).lines() {
        let doc: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if doc["confluence"]["audit"]["replayed"] == true {
            *out.entry(doc["event"]["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    out
}

fn total(ids: &BTreeMap<String, usize>) -> usize {
    ids.values().sum()
}

/// Two file sinks, `a` and `b`, and one source `wiki`.
fn two_file_sinks(scratch: &Scratch, source: &str, extra: &str) -> PathBuf {
    scratch.config(&format!(
        "{source}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"a\"\ntype = \"file\"\npath = \"{}\"\n[[sink]]\nname = \"b\"\ntype = \"file\"\npath = \"{}\"\n[server]\nlisten = \"\"\n{extra}",
        scratch.path("state").display(),
        scratch.path("a.ndjson").display(),
        scratch.path("b.ndjson").display(),
    ))
}

#[test]
fn status_of_a_running_daemon_then_of_the_stopped_one() {
    let c = Confluence::with_history(SimConfig::default(), 800);
    let scratch = Scratch::new();
    let dead_port = free_port();
    let cfg = scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n[[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:{dead_port}\"\nmax_backoff = \"200ms\"\n[server]\nlisten = \"\"\n",
        source_toml("wiki", &c.url, "legacy", ""),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ));
    // The syslog sink never drains: stop without waiting for it.
    let daemon = DaemonProcess::start_with(
        &cfg,
        &scratch.path("daemon.log"),
        &["--drain-timeout", "5s"],
    );
    wait_until(
        Duration::from_secs(60),
        "the file sink has everything",
        || total(&ids_in_file(&scratch.path("events.ndjson"))) >= 800,
    );
    let socket = scratch.path("state").join("control.sock");
    let meta = std::fs::metadata(&socket).expect("the control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let mut report = serde_json::Value::Null;
    wait_until(Duration::from_secs(30), "status shows the delivery", || {
        report = status_json(&cfg).1;
        row(&report, "sinks", "archive")["delivered_today"] == 800
    });
    let (out, report) = status_json(&cfg);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing sink fails the status"
    );
    assert_eq!(report["daemon"], "running");
    let wiki = row(&report, "sources", "wiki");
    assert_eq!(wiki["api"], "legacy");
    assert_eq!(wiki["events_today"], 800);
    assert_eq!(wiki["gaps"], 0);
    assert!(wiki["cursor"].is_string() && wiki["last_success_age_seconds"].is_number());
    assert_eq!(wiki["verdict"]["level"], "ok", "{wiki:#}");
    let archive = row(&report, "sinks", "archive");
    assert_eq!(archive["state"], "ready");
    assert_eq!(archive["queued"], 0);
    assert_eq!(archive["verdict"]["level"], "ok");
    let siem = row(&report, "sinks", "siem");
    assert_eq!(siem["state"], "failing", "{siem:#}");
    assert_eq!(siem["queued"], 800);
    assert_eq!(siem["delivered_today"], 0);
    assert!(siem["oldest_queued_age_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        siem["last_error"].as_str().unwrap().contains("127.0.0.1"),
        "{siem:#}"
    );
    assert_eq!(siem["verdict"]["level"], "fail");

    // Text, not a terminal: plain columns, the verdict level and text at the end.
    let text = String::from_utf8(command(&["status"], &cfg).stdout).unwrap();
    assert!(text.starts_with("daemon running"), "{text}");
    assert!(!text.contains('\x1b'), "no colour off a terminal: {text:?}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {text}"))
            .to_owned()
    };
    assert!(line("siem").contains("FAIL failing for"), "{text}");
    assert!(line("archive").contains(" ok delivering"), "{text}");
    assert!(line("wiki").contains(" ok polling"), "{text}");

    // SIGTERM: while the sinks drain (siem never does, for 5 s) the daemon says it is
    // stopping, and refuses a replay.
    let mut daemon = daemon;
    let pid = daemon.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_until(Duration::from_secs(5), "status: stopping", || {
        status_json(&cfg).1["daemon"] == "stopping"
    });
    let out = command(
        &[
            "replay", "--source", "wiki", "--from", "-1h", "--to", "-30m",
        ],
        &cfg,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the daemon is stopping"), "{stderr}");
    assert!(daemon.child.wait().unwrap().success());
    assert!(!socket.exists(), "the socket file is removed on stop");

    // Stopped: the store's facts, and nothing that only the daemon knew.
    let (out, report) = status_json(&cfg);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["daemon"], "stopped");
    let wiki = row(&report, "sources", "wiki");
    assert!(wiki["cursor"].is_string());
    assert!(wiki["events_today"].is_null() && wiki["last_error"].is_null());
    assert_eq!(wiki["verdict"]["level"], "unknown");
    let siem = row(&report, "sinks", "siem");
    assert_eq!(siem["queued"], 800);
    assert!(siem["state"].is_null() && siem["delivered_today"].is_null());
    assert!(siem["oldest_queued_age_seconds"].as_f64().unwrap() > 0.0);
    let text = String::from_utf8(command(&["status"], &cfg).stdout).unwrap();
    assert!(text.starts_with("daemon stopped"), "{text}");
    assert!(text.contains("800 queued for the next start"), "{text}");
}

/// [`wait_until`], with the daemon's logs when it times out.
fn wait_or_show_logs(scratch: &Scratch, what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}: {}", scratch.logs());
}

/// A daemon over 100 records and two file sinks, its control socket up: (simulator,
/// scratch, config, daemon, socket).
fn daemon_with_socket() -> (Confluence, Scratch, PathBuf, DaemonProcess, PathBuf) {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let scratch = Scratch::new();
    let cfg = two_file_sinks(&scratch, &source_toml("wiki", &c.url, "legacy", ""), "");
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let socket = scratch.path("state").join("control.sock");
    wait_or_show_logs(&scratch, "the control socket", || socket.exists());
    (c, scratch, cfg, daemon, socket)
}

#[test]
fn a_stale_socket_from_a_crash_is_replaced_and_status_falls_back_to_the_store() {
    let (_c, scratch, cfg, daemon, socket) = daemon_with_socket();
    daemon.kill9();
    assert!(socket.exists(), "SIGKILL leaves the socket file behind");
    // Nobody answers on it: status reads the store.
    let (out, report) = status_json(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["daemon"], "stopped");
    // A new daemon replaces it and answers. (Status is not asked before: while no daemon
    // answers it reads the store, and a daemon starting in that instant finds it locked.)
    let stale = std::fs::metadata(&socket).unwrap().ino();
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    wait_or_show_logs(&scratch, "a new socket", || {
        std::fs::metadata(&socket).is_ok_and(|m| m.ino() != stale)
    });
    wait_or_show_logs(&scratch, "the new daemon answering", || {
        status_json(&cfg).1["daemon"] == "running"
    });
    // A second daemon on the same state dir is refused by the store lock and leaves the
    // first one's socket alone.
    let second = command(&["run"], &cfg);
    assert!(!second.status.success());
    assert_eq!(
        status_json(&cfg).1["daemon"],
        "running",
        "{}",
        scratch.logs()
    );
    drop(daemon);
}

/// `replay --source wiki --from … --to … --sink <sink>`, asserted to succeed: its stderr and
/// the `event.id`s the range holds by the simulator's ground truth.
fn replay_ok(
    cfg: &Path,
    c: &Confluence,
    api: Api,
    (from, to): (i64, i64),
    sink: &str,
) -> (String, BTreeMap<String, usize>) {
    let (from_s, to_s) = (iso(from), iso(to));
    let args = [
        "replay", "--source", "wiki", "--from", &from_s, "--to", &to_s, "--sink", sink,
    ];
    let out = command(&args, cfg);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let truth = c.sim.ground_truth_between(api, from, to);
    let range = expected_ids(api, truth.iter().map(String::as_str));
    assert!(total(&range) > 100, "the range holds records");
    (stderr, range)
}

/// `before` with every id of `range` once more.
fn plus(
    before: &BTreeMap<String, usize>,
    range: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    let mut out = before.clone();
    for (id, n) in range {
        *out.entry(id.clone()).or_default() += n;
    }
    out
}

#[test]
fn after_a_reload_the_new_daemon_answers_on_the_socket() {
    let (_c, scratch, cfg, daemon, _socket) = daemon_with_socket();
    let pid = daemon.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The old server removes its socket before the new daemon binds its own, which stays.
    wait_or_show_logs(&scratch, "the reload", || {
        std::fs::read_to_string(scratch.path("daemon.log"))
            .is_ok_and(|log| log.matches("control socket ready").count() == 2)
    });
    wait_or_show_logs(&scratch, "the reloaded daemon answering", || {
        status_json(&cfg).1["daemon"] == "running"
    });
    drop(daemon);
}

#[test]
fn replay_on_a_stopped_daemon_queues_the_range_once_for_the_chosen_sink() {
    let c = Confluence::with_history(SimConfig::default(), 1000);
    let scratch = Scratch::new();
    let cfg = two_file_sinks(&scratch, &source_toml("wiki", &c.url, "legacy", ""), "");
    run_once(&cfg);
    let before_a = ids_in_file(&scratch.path("a.ndjson"));
    assert_eq!(total(&before_a), 1000);
    let (cursor, seen) = cursor_and_seen(&scratch.path("state"));

    let now = c.sim.now_ms();
    let window = (now - 40 * 60_000, now - 20 * 60_000);
    let (stderr, range) = replay_ok(&cfg, &c, Api::Legacy, window, "a");
    assert!(
        stderr.contains(&format!(
            "{} documents queued for sink(s) a;",
            total(&range)
        )),
        "{stderr}"
    );
    assert_eq!(
        cursor_and_seen(&scratch.path("state")),
        (cursor, seen),
        "cursor and dedupe counts untouched"
    );

    run_once(&cfg);
    let replayed = replayed_ids(&scratch.path("a.ndjson"));
    assert_eq!(replayed, range, "{}", diff(&range, &replayed));
    let expected_a = plus(&before_a, &range);
    let after_a = ids_in_file(&scratch.path("a.ndjson"));
    assert_eq!(after_a, expected_a, "{}", diff(&expected_a, &after_a));
    assert_eq!(
        ids_in_file(&scratch.path("b.ndjson")),
        before_a,
        "sink b is not replayed to"
    );
}

/// The source's cursor and every seen-count row of normal polling.
fn cursor_and_seen(dir: &Path) -> (String, Vec<(i64, [u8; 16], u32)>) {
    let store = Store::open(dir, &["a".into(), "b".into()]).expect("open the store");
    let cursor = format!("{:?}", store.cursor("wiki").unwrap());
    let seen = store.seen_counts("wiki", i64::MIN, i64::MAX).unwrap();
    let mut rows: Vec<_> = seen.into_iter().map(|((ms, h), n)| (ms, h.0, n)).collect();
    rows.sort();
    (cursor, rows)
}

#[test]
fn replay_on_a_running_daemon_goes_through_the_control_socket() {
    let c = Confluence::with_history(SimConfig::default(), 1000);
    let scratch = Scratch::new();
    let cfg = two_file_sinks(&scratch, &source_toml("wiki", &c.url, "cloud", ""), "");
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    wait_until(
        Duration::from_secs(60),
        "both sinks have everything",
        || {
            total(&ids_in_file(&scratch.path("a.ndjson"))) >= 1000
                && total(&ids_in_file(&scratch.path("b.ndjson"))) >= 1000
        },
    );
    let before = ids_in_file(&scratch.path("b.ndjson"));
    let now = c.sim.now_ms();
    let window = (now - 50 * 60_000, now - 30 * 60_000);
    let (stderr, range) = replay_ok(&cfg, &c, Api::Cloud, window, "b");
    assert!(stderr.contains("the daemon is delivering them"), "{stderr}");
    wait_until(Duration::from_secs(30), "the replay delivered", || {
        total(&ids_in_file(&scratch.path("b.ndjson"))) >= 1000 + total(&range)
    });
    let replayed = replayed_ids(&scratch.path("b.ndjson"));
    assert_eq!(replayed, range, "{}", diff(&range, &replayed));
    assert!(
        replayed_ids(&scratch.path("a.ndjson")).is_empty(),
        "sink a is not replayed to"
    );
    // Normal polling's counts are untouched: nothing new was polled. The sink counts the
    // replayed deliveries (once its acknowledgement is in).
    let mut report = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(10),
        "delivered_today counts the replay",
        || {
            report = status_json(&cfg).1;
            row(&report, "sinks", "b")["delivered_today"] == 1000 + total(&range)
        },
    );
    assert_eq!(
        row(&report, "sources", "wiki")["events_today"],
        1000,
        "{report:#}"
    );
    let expected_b = plus(&before, &range);
    assert_eq!(ids_in_file(&scratch.path("b.ndjson")), expected_b);

    // Refusals come back through the socket too.
    let out = command(
        &[
            "replay", "--source", "wiki", "--from", "-1h", "--to", "-30m", "--sink", "x",
        ],
        &cfg,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no sink named \"x\" (configured sinks: a, b)"),
        "{stderr}"
    );
    drop(daemon);
}

#[test]
fn replay_refuses_what_it_cannot_do_and_says_why() {
    let sim_cfg = SimConfig {
        retention: (1, "HOURS"),
        ..SimConfig::default()
    };
    let c = Confluence::with_history_over(sim_cfg, 200, Duration::from_secs(1800));
    let scratch = Scratch::new();
    let cfg = two_file_sinks(&scratch, &source_toml("wiki", &c.url, "legacy", ""), "");
    let replay = |from: &str, to: &str, more: &[&str]| {
        let mut args = vec!["replay", "--source", "wiki", "--from", from, "--to", to];
        args.extend_from_slice(more);
        let out = command(&args, &cfg);
        assert!(
            !out.status.success(),
            "replay {from}..{to} {more:?} was not refused"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = replay("-20m", "-10m", &[]);
    assert!(e.contains("no state store here"), "{e}");
    run_once(&cfg);
    let e = replay("-3h", "-10m", &[]);
    assert!(
        e.contains("beyond the audit log's retention (1 HOURS"),
        "{e}"
    );
    let e = replay("-20m", "-10m", &["--sink", "c"]);
    assert!(
        e.contains("no sink named \"c\" (configured sinks: a, b)"),
        "{e}"
    );
    let e = replay("-10m", "-20m", &[]);
    assert!(e.contains("is after --to"), "{e}");
    let e = replay("-20m", "+1h", &[]);
    assert!(e.contains("--to"), "{e}");
    let ahead = iso(c.sim.now_ms() + 3_600_000);
    let e = replay("-20m", &ahead, &[]);
    assert!(e.contains("is after its cursor"), "{e}");
    let out = command(
        &[
            "replay", "--source", "nope", "--from", "-20m", "--to", "-10m",
        ],
        &cfg,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("no source named \"nope\" (configured sources: wiki)"),
        "{e}"
    );
}

#[test]
fn status_shows_where_file_and_organization_sources_stand() {
    let scratch = Scratch::new();
    let logs = scratch.path("audit");
    std::fs::create_dir_all(&logs).unwrap();
    let sources = format!(
        "[[source]]\nname = \"files\"\napi = \"file\"\npaths = [\"{}/*.audit.log\"]\n\
         [[source]]\nname = \"org\"\napi = \"organization\"\norg_id = \"1a2b3c4d\"\n\
         [source.auth]\ntype = \"bearer\"\ntoken = \"k\"\n",
        logs.display()
    );
    let config = two_file_sinks(&scratch, &sources, "");
    let (file_ms, processed_ms) = (1_764_043_200_123, 1_764_050_000_456);
    {
        let store = Store::open(&scratch.path("state"), &["a".into(), "b".into()]).unwrap();
        let slice = FileSliceCommit {
            newest_ms: Some(file_ms),
            ..FileSliceCommit::default()
        };
        store.commit_file_slice("files", &slice).unwrap();
        let pos = OrgPosition::starting_at(processed_ms);
        store.commit_org_page("org", &[], &pos).unwrap();
    }
    let (_, report) = status_json(&config);
    assert_eq!(report["daemon"], "stopped", "{report:#}");
    let org = row(&report, "sources", "org");
    assert_eq!(org["api"], "organization");
    assert_eq!(
        org["cursor"],
        iso(processed_ms),
        "the newest processedAt queued"
    );
    assert!(org["lag_seconds"].as_f64().unwrap() > 0.0);
    let files = row(&report, "sources", "files");
    assert_eq!(files["api"], "file");
    assert_eq!(
        files["cursor"],
        iso(file_ms),
        "the newest record time queued"
    );
}
