//! End to end: Confluence simulator → daemon binary → Elasticsearch test server. Every event
//! is indexed exactly once through per-item 429/503s, whole-request 429s with `Retry-After`,
//! lost responses and repeated SIGKILLs; permanent mapping rejections land in the dead-letter
//! queue with Elasticsearch's reason, and `dlq replay` delivers them once the mapping is fixed.

mod common;
mod es_server;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Confluence, DaemonProcess, Scratch, diff, expected_ids, run_once, source_toml};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::SimConfig;
use confluence_audit_forwarder::state::Store;
use es_server::{EsOptions, EsServer};
use rand::{Rng, SeedableRng};

const DS: &str = "logs-confluence.audit-default";

fn config(scratch: &Scratch, confluence: &str, es: &str, extra_sink: &str) -> std::path::PathBuf {
    // Small slices: a backfill is committed (and delivered) in parts, so kills land mid-run.
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"{es}\"\nbatch_max_events = 100\nmax_backoff = \"300ms\"\n{extra_sink}\n\n[server]\nlisten = \"\"\n",
        source_toml("wiki", confluence, "auditing", "slice_max_records = 300"),
        scratch.path("state").display(),
    ))
}

/// What Elasticsearch must hold: every record up to the committed cursor.
fn expected(c: &Confluence, scratch: &Scratch) -> BTreeMap<String, usize> {
    let store = Store::open(&scratch.path("state"), &["es".to_owned()]).unwrap();
    let cursor = store.cursor("wiki").unwrap().expect("a cursor").cursor_ms;
    drop(store);
    let truth = c.sim.ground_truth_between(Api::Auditing, i64::MIN, cursor);
    expected_ids(Api::Auditing, truth.iter().map(String::as_str))
}

#[test]
fn every_event_is_indexed_exactly_once_through_faults_and_sigkills() {
    let c = Confluence::with_history(SimConfig::default(), 3000);
    let es = EsServer::start(EsOptions::default());
    es.faults(|f| {
        f.item_429 = 0.15;
        f.item_503 = 0.05;
        f.whole_429 = 3;
        f.retry_after_secs = 1;
        f.lose_responses = 3;
        f.bulk_delay_ms = 20;
    });
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, &es.url, "install_template = true");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..4 {
        let daemon = DaemonProcess::start(&cfg, &scratch.path(&format!("daemon-{round}.log")));
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2500)));
        daemon.kill9();
    }
    let mid = es.stats();
    run_once(&cfg);
    let want = expected(&c, &scratch);
    let got = es.ids(DS);
    assert!(
        want == got,
        "{}\nlogs:\n{}",
        diff(&want, &got),
        scratch.logs()
    );
    let st = es.stats();
    assert_eq!(
        st.created as usize,
        want.values().sum::<usize>(),
        "each event created exactly once"
    );
    assert!(want.values().sum::<usize>() >= 3000);
    // The faults really happened, and a lost response was repaired by a 409, not a double.
    assert_eq!(st.lost_responses, 3, "{st:?}");
    assert_eq!(st.whole_429, 3, "{st:?}");
    assert!(st.injected_429 > 0 && st.injected_503 > 0, "{st:?}");
    assert!(st.conflicts_409 > 0, "{st:?}");
    assert!(
        mid.created > 0,
        "the SIGKILLs should have hit a daemon that was delivering: {mid:?}"
    );
    assert_eq!(
        es.stream_template(DS).as_deref(),
        Some("logs-confluence.audit")
    );
}

#[test]
fn mapping_rejections_go_to_the_dead_letter_queue_and_replay_delivers_them() {
    let c = Confluence::with_history(SimConfig::default(), 600);
    // A cluster whose mapping disagrees with us on one field (e.g. an old template):
    // every document that has it is rejected for good.
    let es = EsServer::start(EsOptions {
        mapping_overrides: vec![("user.full_name".into(), "long".into())],
        ..Default::default()
    });
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, &es.url, "");
    let out = run_once(&cfg);
    let want = expected(&c, &scratch);
    let indexed = es.ids(DS);
    let total: usize = want.values().sum();
    assert!(indexed.len() < total, "some events must have been rejected");

    let letters = common::dead_letters(&cfg, "es");
    assert_eq!(
        indexed.len() + letters.len(),
        total,
        "every event is either indexed or dead-lettered: {out}"
    );
    for l in &letters {
        let reason = l["reason"].as_str().unwrap();
        assert!(
            reason.contains("document_parsing_exception")
                && reason.contains("[user.full_name] of type [long]"),
            "{reason}"
        );
        assert!(!indexed.contains_key(l["id"].as_str().unwrap()));
        assert_eq!(l["sink"], "es");
    }

    // The operator fixes the mapping, replays, and the daemon delivers the rest.
    es.set_mapping(DS, "user.full_name", "keyword");
    common::dlq_replay(&cfg, "es", letters.len());
    run_once(&cfg);
    // The second run also read what happened since (the poller's own audit searches).
    let want = expected(&c, &scratch);
    let got = es.ids(DS);
    assert!(want == got, "{}", diff(&want, &got));
    let store = Store::open(&scratch.path("state"), &["es".to_owned()]).unwrap();
    assert_eq!(store.queue_stats("es").unwrap().dead_letters, 0);
}

#[test]
fn a_cluster_that_is_down_at_start_only_delays_delivery() {
    let c = Confluence::with_history(SimConfig::default(), 200);
    let es = EsServer::start(EsOptions::default());
    es.faults(|f| f.outage = true);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, &es.url, "");
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    common::wait_until(Duration::from_secs(30), "the health check to fail", || {
        scratch.logs().contains("Elasticsearch health check failed")
    });
    assert!(es.ids(DS).is_empty());
    es.faults(|f| f.outage = false);
    common::wait_until(Duration::from_secs(30), "delivery after recovery", || {
        es.ids(DS).len() >= 200
    });
    let (status, _) = daemon.terminate();
    assert!(status.success());
    // A window the source committed while the sink was finishing its drain stays queued
    // for the next start (not lost): that start is this `once`.
    run_once(&cfg);
    let want = expected(&c, &scratch);
    let got = es.ids(DS);
    assert!(want == got, "{}", diff(&want, &got));
    assert!(
        scratch.logs().contains("master_not_discovered_exception"),
        "the log says why: {}",
        scratch.logs()
    );
}

#[test]
fn setup_subcommand_installs_everything_and_names_what_it_did() {
    let es = EsServer::start(EsOptions {
        auth: Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==".into()),
        ..Default::default()
    });
    let scratch = Scratch::new();
    std::fs::write(scratch.path("password"), "changeme\n").unwrap();
    let cfg = config(
        &scratch,
        "http://127.0.0.1:9",
        &es.url,
        &format!(
            "kibana_url = \"{}\"\n[sink.auth]\ntype = \"basic\"\nusername = \"elastic\"\npassword_file = \"{}\"",
            es.url,
            scratch.path("password").display()
        ),
    );
    let out = std::process::Command::new(common::bin())
        .args(["setup", "elasticsearch", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "installed ILM policy \"confluence-audit\"",
        "installed index template \"logs-confluence.audit\"",
        "imported 20 Kibana saved objects",
    ] {
        assert!(stdout.contains(line), "{line:?} missing in:\n{stdout}");
    }
    assert!(!stdout.contains("changeme") && !stderr.contains("changeme"));
    assert!(es.template("logs-confluence.audit").is_some());
    assert_eq!(es.kibana_objects().len(), 20);

    // Wrong sink name: a clear error, nothing installed elsewhere.
    let out = std::process::Command::new(common::bin())
        .args(["setup", "elasticsearch", "--sink", "nope", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no elasticsearch sink named \"nope\""));
}
