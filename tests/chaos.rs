//! Fault injection: the forwarder killed again and again, a sink down for a while, a hostile
//! Confluence (429 storms, 500s, slow and truncated answers, ten thousand records in one
//! millisecond, a skewed clock), and a state directory that fills up. Each scenario checks
//! the exact multiset of delivered events against the simulator's ground truth.

mod common;
#[path = "syslog_support/mod.rs"]
mod syslog_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, diff, ids_in_file, run_once, scrape, source_toml,
    wait_until,
};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::{ArrivalMix, Fault, Faults, SimConfig};
use confluence_audit_forwarder::state::Store;
use rand::{Rng, SeedableRng};

const SIX_HOURS: Duration = Duration::from_secs(6 * 3600);

fn cursor(state: &std::path::Path, sinks: &[&str]) -> i64 {
    let names: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
    let store = Store::open(state, &names).unwrap();
    store.cursor("wiki").unwrap().expect("a cursor").cursor_ms
}

fn file_config(
    scratch: &Scratch,
    url: &str,
    api: Api,
    extra: &str,
    more_sinks: &str,
) -> std::path::PathBuf {
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n{more_sinks}\n[server]\nlisten = \"\"\n",
        source_toml("wiki", url, api.as_str(), extra),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ))
}

#[test]
fn twenty_sigkills_during_a_200k_backfill() {
    let c = Confluence::with_history_over(SimConfig::default(), 200_000, SIX_HOURS);
    let scratch = Scratch::new();
    let cfg = file_config(
        &scratch,
        &c.server.url(),
        Api::Auditing,
        "page_size = 1000",
        "",
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    for round in 0..20 {
        let daemon = DaemonProcess::start(&cfg, &scratch.path(&format!("run-{round}.log")));
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        daemon.kill9();
    }
    run_once(&cfg);
    let want = c.expected(Api::Auditing, cursor(&scratch.path("state"), &["archive"]));
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(want.values().sum::<usize>() >= 200_000);
    assert!(want == got, "{}", diff(&want, &got));
}

#[test]
fn a_dead_sink_neither_stops_the_others_nor_loses_its_own_events() {
    let c = Confluence::with_history_over(SimConfig::default(), 4_000, SIX_HOURS);
    let port = syslog_support::free_port();
    let scratch = Scratch::new();
    let metrics_port = syslog_support::free_port();
    let cfg = scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n[[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:{port}\"\npayload = \"json\"\nmax_backoff = \"300ms\"\n[server]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        source_toml("wiki", &c.server.url(), "legacy", "lag = \"1s\""),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ));
    let arrivals = {
        let _g = c.rt.enter();
        c.sim.start_arrivals(100.0, ArrivalMix::default())
    };
    // The SIEM is down when the forwarder starts.
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let pid = daemon.child.id();
    let rss = || -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .map(str::to_owned)
            })
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0.0)
            / 1024.0
    };
    wait_until(
        Duration::from_secs(60),
        "the file sink delivering while syslog is down",
        || ids_in_file(&scratch.path("events.ndjson")).len() >= 4_000,
    );
    let metrics = |name: &str| scrape(metrics_port, name).unwrap_or(f64::NAN);
    let rss_down_early = rss();
    std::thread::sleep(Duration::from_secs(3));
    // Its events wait on disk, not in memory.
    assert!(metrics("caf_sink_queue_events{sink=\"siem\"}") >= 4_000.0);
    assert!(metrics("caf_sink_failures_total{sink=\"siem\",kind=\"connect\"}") >= 1.0);
    let rss_down_late = rss();
    assert!(
        rss_down_late < rss_down_early + 16.0,
        "RSS grew while the sink was down: {rss_down_early:.1} -> {rss_down_late:.1} MiB"
    );

    // The SIEM comes back where the sink expects it: it catches up.
    let rsyslog = syslog_support::Rsyslog::start_on(syslog_support::Input::Tcp, port);
    drop(arrivals);
    std::thread::sleep(Duration::from_secs(2));
    let file_ids = || ids_in_file(&scratch.path("events.ndjson"));
    wait_until(Duration::from_secs(60), "syslog caught up", || {
        rsyslog.messages().len() >= file_ids().values().sum::<usize>()
    });
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let cur = cursor(&scratch.path("state"), &["archive", "siem"]);
    let want = c.expected(Api::Legacy, cur);
    let got_file = file_ids();
    assert!(want == got_file, "file: {}", diff(&want, &got_file));
    let mut got_syslog = BTreeMap::<String, usize>::new();
    for m in rsyslog.messages() {
        let doc: serde_json::Value = serde_json::from_str(m["msg"].as_str().unwrap()).unwrap();
        *got_syslog
            .entry(doc["event"]["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(want == got_syslog, "syslog: {}", diff(&want, &got_syslog));
}

#[test]
fn hostile_confluence_skewed_clock_and_a_crowded_millisecond() {
    for skew_ms in [120_000i64, -120_000] {
        let c = Confluence::with_history_over(
            SimConfig {
                page_cap: 500,
                skew_ms,
                ..SimConfig::default()
            },
            3_000,
            SIX_HOURS,
        );
        // Ten thousand different records in one millisecond.
        c.sim.insert_burst_same_ms(c.sim.now_ms() - 600_000, 10_000);
        c.sim.set_faults(Faults {
            rate_limit: 0.03,
            unavailable: 0.02,
            server_error: 0.03,
            truncate: 0.03,
            slow: 0.02,
            slow_by: Duration::from_millis(300),
            retry_after_secs: 1,
            // A 429 storm first.
            next: vec![Fault::RateLimit; 5],
            forbidden: false,
        });
        let arrivals = {
            let _g = c.rt.enter();
            c.sim.start_arrivals(
                100.0,
                ArrivalMix {
                    late: 0.2,
                    late_max_ms: 5_000,
                    twins: 0.05,
                    bursts: 0.05,
                },
            )
        };
        let scratch = Scratch::new();
        let cfg = file_config(
            &scratch,
            &c.server.url(),
            Api::Auditing,
            "page_size = 1000\nlag = \"2s\"\nrequest_timeout = \"5s\"",
            "",
        );
        let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
        std::thread::sleep(Duration::from_secs(8));
        drop(arrivals);
        std::thread::sleep(Duration::from_secs(4));
        let (status, _) = daemon.terminate();
        assert!(status.success());
        let out = run_once(&cfg);
        let cur = cursor(&scratch.path("state"), &["archive"]);
        let want = c.expected(Api::Auditing, cur);
        let got = ids_in_file(&scratch.path("events.ndjson"));
        assert!(
            want == got,
            "skew {skew_ms}: {}\n{}",
            diff(&want, &got),
            scratch.logs()
        );
        assert!(
            want.values().sum::<usize>() > 12_000,
            "skew {skew_ms}: only {} events up to the cursor {cur} (sim now {})\n{}",
            want.values().sum::<usize>(),
            c.sim.now_ms(),
            scratch.logs()
        );
        assert!(c.sim.fault_count() >= 5, "{}", c.sim.fault_count());
        // The daemon says what happened: its logs name each kind of fault it retried.
        let logs = format!(
            "{}{out}",
            std::fs::read_to_string(scratch.path("daemon.log")).unwrap()
        );
        for kind in ["http_429", "http_5xx"] {
            assert!(logs.contains(kind), "no {kind} in the logs");
        }
    }
}

/// Mount a small tmpfs for the state directory (needs root, as CI has).
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }

    fn remount(&self, options: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn state_directory_full_or_read_only_then_recovered() {
    let c = Confluence::with_history_over(SimConfig::default(), 20_000, SIX_HOURS);
    let scratch = Scratch::new();
    let disk = SmallDisk::mount(&scratch.path("state"), "3m");
    let cfg = file_config(&scratch, &c.server.url(), Api::Legacy, "", "");

    // Full: the daemon says so and stops, without corrupting anything.
    let daemon = DaemonProcess::start(&cfg, &scratch.path("full.log"));
    let mut daemon = daemon;
    let mut exited = None;
    wait_until(
        Duration::from_secs(60),
        "the daemon to stop on a full disk",
        || {
            exited = daemon.child.try_wait().unwrap();
            exited.is_some()
        },
    );
    assert!(!exited.unwrap().success());
    let log = std::fs::read_to_string(scratch.path("full.log")).unwrap();
    assert!(
        log.contains("state store") && (log.contains("No space left") || log.contains("space")),
        "{log}"
    );

    // Read-only: a clear error at start.
    disk.remount("ro");
    let out = Command::new(common::bin())
        .args(["once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("state") && stderr.contains("Read-only"),
        "{stderr}"
    );

    // Space returns: everything arrives, exactly once.
    disk.remount("rw,size=256m");
    run_once(&cfg);
    let want = c.expected(Api::Legacy, cursor(&scratch.path("state"), &["archive"]));
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(want.values().sum::<usize>() >= 20_000);
    assert!(want == got, "{}", diff(&want, &got));
}
