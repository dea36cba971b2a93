//! Fault injection: the forwarder killed again and again, each kind of sink down for a while
//! (rsyslog stopped, Elasticsearch answering 503, the Kafka broker stopped), a hostile
//! Confluence (429 storms, 500s, slow and truncated answers, ten thousand records in one
//! millisecond, a skewed clock), and a state directory that fills up. Each scenario checks
//! the multiset of delivered events against the simulator's ground truth.

mod common;
#[path = "es_server/mod.rs"]
mod es_server;
#[path = "kafka_support/mod.rs"]
mod kafka_support;
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
use es_server::{EsOptions, EsServer};
use kafka_support::{Broker, keys, read_topic};
use rand::{Rng, SeedableRng};

/// The data stream the Elasticsearch sink writes by default.
const DS: &str = "logs-confluence.audit-default";

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

/// Resident memory of a process, MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0.0)
        / 1024.0
}

#[test]
fn twenty_sigkills_during_a_200k_backfill() {
    let c = Confluence::with_history_over(SimConfig::default(), 200_000, SIX_HOURS);
    let es = EsServer::start(EsOptions {
        keep_documents: false,
        ..EsOptions::default()
    });
    let scratch = Scratch::new();
    let cfg = file_config(
        &scratch,
        &c.server.url(),
        Api::Auditing,
        "page_size = 1000",
        &format!(
            "[[sink]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"{}\"\nmax_backoff = \"300ms\"\n",
            es.url
        ),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    // Spread the kills over the backfill: round k waits until the file holds about k/22 of
    // it (documents are over 1 KB), then kills at a random moment after that.
    let file_len = || {
        std::fs::metadata(scratch.path("events.ndjson"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    for round in 0..20u64 {
        let daemon = DaemonProcess::start(&cfg, &scratch.path(&format!("run-{round}.log")));
        let share = (round + 1) * 200_000 / 22 * 1_000;
        wait_until(
            Duration::from_secs(120),
            &format!("round {round}: the backfill reaching {share} bytes"),
            || file_len() >= share,
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        daemon.kill9();
    }
    let mid = es.stats();
    run_once(&cfg);
    let want = c.expected(
        Api::Auditing,
        cursor(&scratch.path("state"), &["archive", "es"]),
    );
    let total = want.values().sum::<usize>();
    assert!(total >= 200_000);
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(want == got, "file: {}", diff(&want, &got));
    // Elasticsearch: every event once; a re-sent one after a kill is a 409, not a copy.
    let got = es.ids(DS);
    assert!(want == got, "elasticsearch: {}", diff(&want, &got));
    assert_eq!(
        es.stats().created as usize,
        total,
        "each event created once"
    );
    assert!(mid.created > 0, "the kills hit a daemon that was indexing");
}

#[test]
fn elasticsearch_503_and_kafka_broker_down_the_others_deliver_and_each_catches_up() {
    let c = Confluence::with_history_over(SimConfig::default(), 4_000, SIX_HOURS);
    let scratch = Scratch::new();
    let es = EsServer::start(EsOptions::default());
    es.faults(|f| f.outage = true);
    let Some(mut broker) = Broker::start(scratch.dir.path()) else {
        return;
    };
    broker.down();
    let metrics_port = common::free_port();
    let cfg = scratch.config(&format!(
        r#"{source}
[state]
dir = "{state}"
[[sink]]
name = "archive"
type = "file"
path = "{file}"
[[sink]]
name = "es"
type = "elasticsearch"
url = "{es}"
max_backoff = "500ms"
[[sink]]
name = "kafka"
type = "kafka"
brokers = "{brokers}"
topic = "audit"
create_topic = true
delivery_timeout = "2s"
max_backoff = "500ms"
[server]
listen = "127.0.0.1:{metrics_port}"
"#,
        source = source_toml("wiki", &c.url, "legacy", "lag = \"1s\""),
        state = scratch.path("state").display(),
        file = scratch.path("events.ndjson").display(),
        es = es.url,
        brokers = broker.address(),
    ));
    let arrivals = {
        let _g = c.rt.enter();
        c.sim.start_arrivals(100.0, ArrivalMix::default())
    };
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let pid = daemon.child.id();
    let metric = |name: &str| scrape(metrics_port, name).unwrap_or(f64::NAN);
    let file_ids = || ids_in_file(&scratch.path("events.ndjson"));

    // Both down: the file sink delivers the history and what keeps arriving.
    wait_until(Duration::from_secs(60), "the file sink delivering", || {
        file_ids().len() >= 4_000
    });
    let rss_early = rss_mib(pid);
    std::thread::sleep(Duration::from_secs(3));
    let in_file = file_ids().len();
    assert!(in_file > 4_000, "arrivals kept flowing to the file");
    // The two down sinks' events wait on disk, counted, not in memory.
    for sink in ["es", "kafka"] {
        let queued = metric(&format!("caf_sink_queue_events{{sink=\"{sink}\"}}"));
        assert!(
            queued >= 4_000.0,
            "{sink} queue {queued}\n{}",
            scratch.logs()
        );
    }
    // Said so, in the metrics too.
    assert!(metric("caf_sink_failures_total{sink=\"es\",kind=\"http_5xx\"}") >= 1.0);
    assert!(es.stats().outage_503 >= 1);
    assert!(es.ids(DS).is_empty());
    let rss_late = rss_mib(pid);
    assert!(
        rss_late < rss_early + 16.0,
        "RSS grew while two sinks were down: {rss_early:.1} -> {rss_late:.1} MiB"
    );

    // Elasticsearch recovers: it catches up while the broker is still down.
    es.faults(|f| f.outage = false);
    wait_until(Duration::from_secs(60), "Elasticsearch caught up", || {
        es.ids(DS).len() >= in_file
    });
    // Kafka's queue still holds all of it (the gauge is sampled at each attempt to reach the
    // broker, a couple of seconds apart while it is down).
    wait_until(
        Duration::from_secs(30),
        "the Kafka queue gauge counting everything in the file",
        || metric("caf_sink_queue_events{sink=\"kafka\"}") >= in_file as f64,
    );

    // The broker comes back: Kafka catches up too.
    broker.up();
    wait_until(Duration::from_secs(240), "Kafka caught up", || {
        metric("caf_sink_delivered_total{sink=\"kafka\"}") >= in_file as f64
    });
    drop(arrivals);
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{}", scratch.logs());
    // Whatever was queued at the stop goes out too.
    run_once(&cfg);

    let cur = cursor(&scratch.path("state"), &["archive", "es", "kafka"]);
    let want = c.expected(Api::Legacy, cur);
    let got = file_ids();
    assert!(want == got, "file: {}", diff(&want, &got));
    let got = es.ids(DS);
    assert!(want == got, "elasticsearch: {}", diff(&want, &got));
    assert_eq!(
        es.stats().created as usize,
        want.values().sum::<usize>(),
        "each event created once in Elasticsearch"
    );
    // Kafka is at least once, deduplicable by key: every event, no stranger.
    let got: BTreeMap<String, usize> = keys(&read_topic(&broker.address(), "audit"))
        .into_keys()
        .map(|k| (k, 1))
        .collect();
    let want_keys: BTreeMap<String, usize> = want.keys().map(|k| (k.clone(), 1)).collect();
    assert!(want_keys == got, "kafka: {}", diff(&want_keys, &got));
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
        let metrics_port = common::free_port();
        let toml = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            toml.replace(
                "listen = \"\"",
                &format!("listen = \"127.0.0.1:{metrics_port}\""),
            ),
        )
        .unwrap();
        let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
        std::thread::sleep(Duration::from_secs(8));
        drop(arrivals);
        std::thread::sleep(Duration::from_secs(4));
        // The daemon's own metrics say what happened.
        let metric = |name: &str| scrape(metrics_port, name).unwrap_or(0.0);
        for kind in ["http_429", "http_5xx"] {
            let n = metric(&format!(
                "caf_source_errors_total{{source=\"wiki\",kind=\"{kind}\"}}"
            ));
            assert!(
                n >= 1.0,
                "skew {skew_ms}: caf_source_errors_total {kind} = {n}"
            );
        }
        // Faults cost retries, not events: some were queued meanwhile.
        assert!(metric("caf_source_events_total{source=\"wiki\"}") >= 1.0);
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
        // And its logs name each kind of fault it retried.
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
