//! What operators rely on: `/metrics` counts what was really delivered, `/readyz` follows the
//! source's health, and SIGTERM with a slow sink stops within the drain bound without losing
//! an event.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Confluence, DaemonProcess, Scratch, expected_ids, free_port, http_get as get, ids_in_file,
    metric, source_toml, wait_until,
};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::{Faults, SimConfig};
use confluence_audit_forwarder::state::Store;

#[test]
fn metrics_match_what_was_delivered_and_readyz_follows_the_source() {
    let c = Confluence::with_history(SimConfig::default(), 1500);
    let (sim, server) = (&c.sim, &c.server);
    let scratch = Scratch::new();
    let port = free_port();
    let cfg = scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        source_toml("wiki", &server.url(), "legacy", "lag = \"1s\""),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ));
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(60), "everything delivered", || {
        ids_in_file(&scratch.path("events.ndjson"))
            .values()
            .sum::<usize>()
            >= 1500
    });
    assert_eq!(get(&format!("{base}/healthz")).0, 200);
    wait_until(Duration::from_secs(20), "ready", || {
        get(&format!("{base}/readyz")).0 == 200
    });

    // Counters against the file, once the queue is empty.
    let mut text = String::new();
    wait_until(Duration::from_secs(20), "queue drained in metrics", || {
        text = get(&format!("{base}/metrics")).1;
        metric(&text, "caf_sink_queue_events{sink=\"archive\"}") == Some(0.0)
    });
    let delivered = ids_in_file(&scratch.path("events.ndjson"))
        .values()
        .sum::<usize>() as f64;
    assert_eq!(
        metric(&text, "caf_sink_delivered_total{sink=\"archive\"}"),
        Some(delivered),
        "{text}"
    );
    assert_eq!(
        metric(&text, "caf_source_events_total{source=\"wiki\"}"),
        Some(delivered),
        "{text}"
    );
    assert!(metric(&text, "caf_source_records_read_total{source=\"wiki\"}").unwrap() >= delivered);
    assert!(metric(&text, "caf_source_polls_total{source=\"wiki\"}").unwrap() >= 1.0);
    assert!(
        metric(
            &text,
            "caf_source_cursor_timestamp_seconds{source=\"wiki\"}"
        )
        .unwrap()
            > 1.7e9
    );
    let lag = metric(&text, "caf_source_lag_seconds{source=\"wiki\"}").unwrap();
    assert!((0.0..3700.0).contains(&lag), "lag {lag}");
    assert_eq!(
        metric(&text, "caf_sink_dead_letters{sink=\"archive\"}"),
        Some(0.0)
    );

    // The source starts failing (the account lost its permission): unready, with the reason.
    sim.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    let logs = || scratch.logs();
    let started = Instant::now();
    while get(&format!("{base}/readyz")).0 != 503 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never unready: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = get(&format!("{base}/readyz")).1;
    assert!(body.contains("wiki") && body.contains("403"), "{body}");
    let text = get(&format!("{base}/metrics")).1;
    assert!(
        metric(
            &text,
            "caf_source_errors_total{source=\"wiki\",kind=\"auth\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        get(&format!("{base}/healthz")).0,
        200,
        "a failing source is not a dead process"
    );

    // Fixed: ready again.
    sim.set_faults(Faults::default());
    wait_until(Duration::from_secs(20), "ready again", || {
        get(&format!("{base}/readyz")).0 == 200
    });
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

/// A TCP syslog receiver that does not read until told to: the sink's writes block once
/// the socket buffers are full, as with a SIEM that stalls.
fn stalled_receiver() -> (u16, Arc<AtomicBool>, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let go = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (go2, sink) = (go.clone(), received.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (go, sink) = (go2.clone(), sink.clone());
            std::thread::spawn(move || {
                while !go.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut buf = Vec::new();
                let _ = conn.read_to_end(&mut buf);
                sink.lock().unwrap().extend_from_slice(&buf);
            });
        }
    });
    (port, go, received)
}

#[test]
fn sigterm_with_a_slow_sink_stops_within_the_bound_and_loses_nothing() {
    let c = Confluence::with_history(SimConfig::default(), 15_000);
    let (sim, server) = (&c.sim, &c.server);
    let (port, go, received) = stalled_receiver();
    let scratch = Scratch::new();
    let cfg = scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:{port}\"\nframing = \"lf\"\npayload = \"json\"\nbatch_max_events = 200\n[server]\nlisten = \"\"\n",
        source_toml("wiki", &server.url(), "legacy", ""),
        scratch.path("state").display(),
    ));
    let daemon = DaemonProcess::start_with(
        &cfg,
        &scratch.path("daemon.log"),
        &["--drain-timeout", "2s"],
    );
    // Everything is read from Confluence and queued; the sink is stuck on a full socket.
    wait_until(Duration::from_secs(60), "the backfill queued", || {
        scratch.logs().contains("poll cycle done") || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::metadata(scratch.path("state/state.redb")).is_ok_and(|m| m.len() > 10_000_000)
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let (status, took) = daemon.terminate();
    assert!(status.success(), "exit status {status}\n{}", scratch.logs());
    // Drains for at most 2 s, then stops: well within any service manager's stop timeout.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(started.elapsed() >= took);
    assert!(
        scratch.logs().contains("drain timeout reached"),
        "{}",
        scratch.logs()
    );

    // What the receiver got once it read its socket, plus what is still queued, is every
    // event: nothing lost.
    go.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let text = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
    let mut got = std::collections::BTreeMap::<String, usize>::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let start = line.find("{\"@timestamp\"").expect("a JSON payload");
        match serde_json::from_str::<serde_json::Value>(&line[start..]) {
            Ok(doc) => {
                *got.entry(doc["event"]["id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            // Stopping mid-write can tear the last message; it was never acknowledged, so
            // it is still queued and will be sent whole.
            Err(e) => assert_eq!(i, lines.len() - 1, "torn message before the end: {e}"),
        }
    }
    let store = Store::open(&scratch.path("state"), &["siem".to_owned()]).unwrap();
    let queued = store.peek("siem", None, usize::MAX, usize::MAX).unwrap();
    assert!(
        !queued.is_empty(),
        "the stalled sink should still have had work queued"
    );
    for e in &queued {
        got.entry(e.id.clone()).or_default();
    }
    let cursor = store.cursor("wiki").unwrap().unwrap().cursor_ms;
    let truth = sim.ground_truth_between(Api::Legacy, i64::MIN, cursor);
    let want = expected_ids(Api::Legacy, truth.iter().map(String::as_str));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events lost: {:?}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(5)]
    );
}
