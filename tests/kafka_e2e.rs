//! End to end through Kafka: simulator → daemon binary → Apache Kafka (`kafka_support`) → a
//! consumer here.
//! Compared with the simulator's ground truth as multisets of `event.id` (the message key):
//! nothing missing, duplicates only where a SIGKILL made them and none after deduplication
//! by key; a broker that is down when the daemon starts; a broker killed with -9 and started
//! again mid-backfill; alerts in `alerts_topic`.

mod common;
#[path = "kafka_support/mod.rs"]
mod kafka_support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, diff, expected_ids, free_port, ids_in_file, run_once,
    scrape, source_toml,
};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::{ArrivalMix, SimConfig};
use confluence_audit_forwarder::state::Store;
use kafka_support::{Broker, Received, keys, read_topic};

const API: Api = Api::Auditing;
const BATCH: usize = 200;

/// Daemon config: the simulator, a Kafka sink and a file sink ("archive") beside it.
fn config(scratch: &Scratch, url: &str, brokers: &str) -> std::path::PathBuf {
    config_toml(scratch, url, brokers, "", 5)
}

/// [`config`] with `/metrics` on a free port, and librdkafka's `linger.ms`; and the port.
fn config_with_metrics(
    scratch: &Scratch,
    url: &str,
    brokers: &str,
    linger_ms: u64,
) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    (config_toml(scratch, url, brokers, &listen, linger_ms), port)
}

/// The daemon's config file: `/metrics` on `listen` ("" for none).
fn config_toml(
    scratch: &Scratch,
    url: &str,
    brokers: &str,
    listen: &str,
    linger_ms: u64,
) -> std::path::PathBuf {
    scratch.config(&format!(
        r#"{source}
[state]
dir = "{state}"

[[sink]]
name = "archive"
type = "file"
path = "{file}"

[[sink]]
name = "kafka"
type = "kafka"
brokers = "{brokers}"
topic = "confluence-audit"
alerts_topic = "confluence-audit-alerts"
compression = "zstd"
create_topic = true
delivery_timeout = "3s"
batch_max_events = {BATCH}
max_backoff = "1s"
[sink.librdkafka]
"linger.ms" = "{linger_ms}"
"socket.keepalive.enable" = true

[server]
listen = "{listen}"
"#,
        source = source_toml("wiki", url, API.as_str(), ""),
        state = scratch.path("state").display(),
        file = scratch.path("events.ndjson").display(),
    ))
}

/// The cursor the daemon committed (the daemon must not be running).
fn cursor(scratch: &Scratch) -> i64 {
    let store = Store::open(
        &scratch.path("state"),
        &["archive".to_owned(), "kafka".to_owned()],
    )
    .unwrap();
    store.cursor("wiki").unwrap().expect("a cursor").cursor_ms
}

fn expected(c: &Confluence, scratch: &Scratch) -> BTreeMap<String, usize> {
    c.expected(API, cursor(scratch))
}

/// Both topics, and the keys of both together.
fn read_both(brokers: &str) -> (Vec<Received>, Vec<Received>, BTreeMap<String, usize>) {
    let events = read_topic(brokers, "confluence-audit");
    let alerts = read_topic(brokers, "confluence-audit-alerts");
    let mut all = keys(&events);
    for (k, n) in keys(&alerts) {
        *all.entry(k).or_default() += n;
    }
    (events, alerts, all)
}

/// [`common::wait_until`], with the daemon's logs when it times out.
fn wait_for(scratch: &Scratch, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\nlogs:\n{}",
            scratch.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stop the daemon (SIGTERM, a clean exit), then run it once: whatever the poller queued
/// since (its own searches) goes out too.
fn stop_then_drain(daemon: DaemonProcess, cfg: &std::path::Path, scratch: &Scratch) {
    let (status, _) = daemon.terminate();
    assert!(
        status.success(),
        "daemon exit: {status}\n{}",
        scratch.logs()
    );
    run_once(cfg);
}

/// The simulator's history as it is now, as event ids.
fn history(c: &Confluence) -> BTreeMap<String, usize> {
    expected_ids(API, c.sim.ground_truth(API).iter().map(String::as_str))
}

fn deduped(m: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    m.keys().map(|k| (k.clone(), 1)).collect()
}

/// Keys match `event.id`, headers match the document, alerts are where they belong.
fn check_messages(events: &[Received], alerts: &[Received]) {
    for (m, topic_is_alerts) in events
        .iter()
        .map(|m| (m, false))
        .chain(alerts.iter().map(|m| (m, true)))
    {
        let doc = m.json();
        assert_eq!(doc["event"]["id"], m.key.as_str(), "key is event.id");
        for field in ["kind", "action", "dataset"] {
            assert_eq!(
                doc["event"][field].as_str(),
                m.headers.get(&format!("event.{field}")).map(String::as_str),
                "header event.{field} of {}",
                m.key
            );
        }
        assert_eq!(
            doc["event"]["kind"] == "alert",
            topic_is_alerts,
            "{} is in the wrong topic",
            m.key
        );
    }
}

#[test]
fn every_event_arrives_once_keyed_and_alerts_in_their_topic() {
    let c = Confluence::with_history(SimConfig::default(), 3000);
    let scratch = Scratch::new();
    let Some(broker) = Broker::start(scratch.dir.path()) else {
        return;
    };
    let cfg = config(&scratch, &c.url, &broker.address());
    run_once(&cfg);

    let want = expected(&c, &scratch);
    assert!(want.values().sum::<usize>() >= 3000);
    let (events, alerts, got) = read_both(&broker.address());
    assert!(
        want == got,
        "{}\nlogs:\n{}",
        diff(&want, &got),
        scratch.logs()
    );
    check_messages(&events, &alerts);
    // The simulator writes Soteri findings; the normalizer makes them alerts.
    let file = std::fs::read_to_string(scratch.path("events.ndjson")).unwrap();
    let alerts_in_file = file
        .lines()
        .filter(|l| l.contains("\"kind\":\"alert\""))
        .count();
    assert!(
        !alerts.is_empty(),
        "the simulator's Soteri findings are alerts"
    );
    assert_eq!(alerts.len(), alerts_in_file);
}

#[test]
fn broker_down_at_start_events_wait_and_arrive_when_it_is_up() {
    let c = Confluence::with_history(SimConfig::default(), 2000);
    let scratch = Scratch::new();
    let Some(mut broker) = Broker::start(scratch.dir.path()) else {
        return;
    };
    broker.down();
    let (cfg, port) = config_with_metrics(&scratch, &c.url, &broker.address(), 5);
    // The history as it is now; the poller's own searches add records as it runs.
    let history = history(&c);
    let contains_history =
        |got: &BTreeMap<String, usize>| history.keys().all(|k| got.contains_key(k));
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));

    // The other sink goes on: the whole history reaches the file while Kafka is down.
    wait_for(
        &scratch,
        Duration::from_secs(60),
        "the file sink to get the history",
        || contains_history(&ids_in_file(&scratch.path("events.ndjson"))),
    );
    // Several delivery timeouts pass with the broker down; nothing may be dropped.
    std::thread::sleep(Duration::from_secs(4));

    broker.up();
    // Counted by the daemon, not read from the topic: the poller's own searches keep the
    // producer busy, and a consumer racing a producer may never see the end of a partition.
    let history_size = history.values().sum::<usize>() as f64;
    wait_for(
        &scratch,
        Duration::from_secs(240),
        "the history delivered to Kafka",
        || scrape(port, "caf_sink_delivered_total{sink=\"kafka\"}").unwrap_or(0.0) >= history_size,
    );
    stop_then_drain(daemon, &cfg, &scratch);

    let want = expected(&c, &scratch);
    let (events, alerts, got) = read_both(&broker.address());
    // Nothing was delivered while the broker was down, and nothing crashed: exactly once.
    assert!(
        want == got,
        "{}\nlogs:\n{}",
        diff(&want, &got),
        scratch.logs()
    );
    check_messages(&events, &alerts);
    let logs = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    assert!(
        logs.contains("sink not ready") || logs.contains("delivery failed"),
        "the dead broker was never reported:\n{}",
        scratch.logs()
    );
}

#[test]
fn sigkill_mid_run_and_restart_lose_nothing() {
    let c = Confluence::with_history(SimConfig::default(), 6000);
    let scratch = Scratch::new();
    let Some(broker) = Broker::start(scratch.dir.path()) else {
        return;
    };
    let cfg = config(&scratch, &c.url, &broker.address());
    let arrivals = {
        let _guard = c.rt.enter();
        c.sim.start_arrivals(
            200.0,
            ArrivalMix {
                twins: 0.05,
                late: 0.0,
                late_max_ms: 0,
                bursts: 0.05,
            },
        )
    };
    let kills = 5;
    for round in 0..kills {
        let daemon = DaemonProcess::start(&cfg, &scratch.path(&format!("daemon-{round}.log")));
        std::thread::sleep(Duration::from_millis(400 + 300 * round as u64));
        daemon.kill9();
    }
    drop(arrivals);
    std::thread::sleep(Duration::from_millis(200));
    run_once(&cfg);

    let want = expected(&c, &scratch);
    let (events, alerts, got) = read_both(&broker.address());
    assert!(
        deduped(&want) == deduped(&got),
        "after dedupe by key: {}\nlogs:\n{}",
        diff(&deduped(&want), &deduped(&got)),
        scratch.logs()
    );
    assert!(want.values().all(|&n| n == 1), "event ids are unique");
    // A kill can only repeat what was produced but not yet acknowledged: at most one
    // batch per kill.
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= kills * BATCH,
        "{duplicates} duplicates from {kills} kills of batches of {BATCH}"
    );
    check_messages(&events, &alerts);
    // The file sink beside it is exact (it is exactly-once across crashes).
    assert_eq!(ids_in_file(&scratch.path("events.ndjson")), want);
}

#[test]
fn broker_kill9_and_restart_mid_backfill_every_event_once_by_key() {
    let c = Confluence::with_history(SimConfig::default(), 12_000);
    let scratch = Scratch::new();
    let Some(mut broker) = Broker::start(scratch.dir.path()) else {
        return;
    };
    // linger.ms = 100: a batch of 200 takes at least 100 ms, so the backfill into Kafka takes
    // several seconds and the kill lands in the middle of it.
    let (cfg, port) = config_with_metrics(&scratch, &c.url, &broker.address(), 100);
    let history = history(&c);
    let history_size = history.values().sum::<usize>() as f64;
    let delivered = || scrape(port, "caf_sink_delivered_total{sink=\"kafka\"}").unwrap_or(0.0);
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    wait_for(
        &scratch,
        Duration::from_secs(120),
        "the first batches in Kafka",
        || delivered() >= 1000.0,
    );
    let at_kill = delivered();
    broker.down();
    // A few delivery timeouts with the broker gone, then it comes back with its log.
    std::thread::sleep(Duration::from_secs(4));
    broker.up();
    wait_for(
        &scratch,
        Duration::from_secs(300),
        "the history delivered to Kafka after the restart",
        || delivered() >= history_size,
    );
    stop_then_drain(daemon, &cfg, &scratch);
    eprintln!("broker killed with {at_kill} of {history_size} history events delivered");

    let want = expected(&c, &scratch);
    let (events, alerts, got) = read_both(&broker.address());
    assert!(want.values().all(|&n| n == 1), "event ids are unique");
    assert!(
        deduped(&want) == deduped(&got),
        "after dedupe by key: {}\nlogs:\n{}",
        diff(&deduped(&want), &deduped(&got)),
        scratch.logs()
    );
    // A batch in flight when the broker died may have been written before the kill and sent
    // again after it: at most the batches the producer had in flight, never more.
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!("{duplicates} duplicates after the broker's kill -9");
    assert!(
        duplicates <= 5 * BATCH,
        "{duplicates} duplicates from one broker kill"
    );
    check_messages(&events, &alerts);
    let logs = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    assert!(
        logs.contains("delivery failed"),
        "the kill was never felt (was the backfill already over?):\n{}",
        scratch.logs()
    );
    // The file sink beside it never noticed.
    assert_eq!(ids_in_file(&scratch.path("events.ndjson")), want);
}
