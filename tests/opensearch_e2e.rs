//! End to end against a real OpenSearch 2.19 (tests/servers/opensearch.sh, the integ-test
//! distribution from Maven Central): Confluence simulator → daemon binary (`type =
//! "opensearch"`) → a data stream created from the shipped `deploy/opensearch` template.
//!
//! One test, so that the server starts once for this binary (nextest runs each test in a
//! process of its own); its steps are independent data streams on that one cluster:
//! - `setup opensearch` installs the template (and reports that this distribution has no ISM);
//! - every record is indexed exactly once by `_id` through repeated SIGKILLs;
//! - a mapping conflict goes to the dead-letter queue with OpenSearch's own reason, and
//!   `dlq replay` delivers it once the mapping is fixed (template corrected, data stream
//!   rolled over).

mod common;
mod real_servers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{Confluence, DaemonProcess, Scratch, diff, expected_ids, run_once, source_toml};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::SimConfig;
use confluence_audit_forwarder::state::Store;
use rand::{Rng, SeedableRng};
use real_servers::{RealServer, http};
use serde_json::{Value, json};

const DS: &str = "logs-confluence.audit-default";

fn config(scratch: &Scratch, confluence: &str, os: &str, extra_sink: &str) -> PathBuf {
    // Small slices: a backfill is committed (and delivered) in parts, so kills land mid-run.
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"os\"\ntype = \"opensearch\"\nurl = \"{os}\"\nbatch_max_events = 100\nmax_backoff = \"300ms\"\n{extra_sink}\n\n[server]\nlisten = \"\"\n",
        source_toml("wiki", confluence, "auditing", "slice_max_records = 300"),
        scratch.path("state").display(),
    ))
}

/// What OpenSearch must hold: every record up to the committed cursor.
fn expected(c: &Confluence, scratch: &Scratch) -> BTreeMap<String, usize> {
    let store = Store::open(&scratch.path("state"), &["os".to_owned()]).unwrap();
    let cursor = store.cursor("wiki").unwrap().expect("a cursor").cursor_ms;
    drop(store);
    let truth = c.sim.ground_truth_between(Api::Auditing, i64::MIN, cursor);
    expected_ids(Api::Auditing, truth.iter().map(String::as_str))
}

/// Every `_id` in the data stream (all its backing indices), with how often it occurs.
fn ids(os: &str, ds: &str) -> BTreeMap<String, usize> {
    http("POST", &format!("{os}/{ds}/_refresh"), None);
    let (status, body) = http(
        "POST",
        &format!("{os}/{ds}/_search"),
        Some(r#"{"size": 10000, "_source": false, "query": {"match_all": {}}}"#),
    );
    if status == 404 {
        return BTreeMap::new();
    }
    assert_eq!(status, 200, "{body}");
    let hits = body["hits"]["hits"].as_array().expect("hits");
    assert!(hits.len() < 10000, "more documents than one search returns");
    let mut out = BTreeMap::new();
    for h in hits {
        *out.entry(h["_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    out
}

fn cli(args: &[&str], cfg: &PathBuf) -> (bool, String, String) {
    let out = std::process::Command::new(common::bin())
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn opensearch_data_stream_end_to_end() {
    let Some(server) = RealServer::start("opensearch", "opensearch_e2e") else {
        return;
    };
    let os = server.url.clone();
    let (_, info) = http("GET", &os, None);
    assert_eq!(info["version"]["distribution"], "opensearch", "{info}");
    assert!(
        info["version"]["number"]
            .as_str()
            .unwrap()
            .starts_with("2.19."),
        "{info}"
    );
    setup_installs_the_shipped_template(&os);
    exactly_once_through_sigkills(&os);
    mapping_conflicts_are_dead_lettered_and_replayed(&os);
}

fn setup_installs_the_shipped_template(os: &str) {
    let scratch = Scratch::new();
    let cfg = config(&scratch, "http://127.0.0.1:9", os, "");
    let (ok, stdout, stderr) = cli(&["setup", "opensearch"], &cfg);
    assert!(ok, "{stdout}\n{stderr}");
    for line in [
        "installed index template \"logs-confluence.audit\"",
        // The integ-test distribution is the core alone: no ISM plugin.
        "ISM is not installed on this cluster",
    ] {
        assert!(stdout.contains(line), "{line:?} missing in:\n{stdout}");
    }
    let (status, t) = http(
        "GET",
        &format!("{os}/_index_template/logs-confluence.audit"),
        None,
    );
    assert_eq!(status, 200, "{t}");
    let shipped: Value =
        serde_json::from_str(include_str!("../deploy/opensearch/index-template.json")).unwrap();
    let installed = &t["index_templates"][0]["index_template"];
    assert_eq!(installed["index_patterns"], shipped["index_patterns"]);
    assert_eq!(
        installed["template"]["mappings"]["properties"]["source"],
        shipped["template"]["mappings"]["properties"]["source"]
    );

    let (ok, _, stderr) = cli(&["setup", "opensearch", "--sink", "nope"], &cfg);
    assert!(!ok);
    assert!(
        stderr.contains("no opensearch sink named \"nope\""),
        "{stderr}"
    );
}

fn exactly_once_through_sigkills(os: &str) {
    let c = Confluence::with_history(SimConfig::default(), 3000);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, os, "install_template = true");
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for round in 0..4 {
        let daemon = DaemonProcess::start(&cfg, &scratch.path(&format!("daemon-{round}.log")));
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2500)));
        daemon.kill9();
    }
    run_once(&cfg);
    let want = expected(&c, &scratch);
    let got = ids(os, DS);
    assert!(
        want == got,
        "{}\nlogs:\n{}",
        diff(&want, &got),
        scratch.logs()
    );
    assert!(want.values().sum::<usize>() >= 3000);
    assert!(got.values().all(|n| *n == 1), "an _id twice");
    // The data stream was created from the shipped template, by OpenSearch itself.
    let (status, stream) = http("GET", &format!("{os}/_data_stream/{DS}"), None);
    assert_eq!(status, 200, "{stream}");
    assert_eq!(
        stream["data_streams"][0]["template"],
        "logs-confluence.audit"
    );
    let (_, mapping) = http("GET", &format!("{os}/{DS}/_mapping"), None);
    let backing = mapping.as_object().unwrap().values().next().unwrap();
    assert_eq!(
        backing["mappings"]["properties"]["source"]["properties"]["ip"]["type"],
        "ip"
    );
    let store = Store::open(&scratch.path("state"), &["os".to_owned()]).unwrap();
    assert_eq!(store.queue_stats("os").unwrap().dead_letters, 0);
}

fn mapping_conflicts_are_dead_lettered_and_replayed(os: &str) {
    let ds = "logs-confluence.audit-conflict";
    // A cluster whose mapping disagrees with us on one field (an old template of the
    // operator's, at a higher priority than ours): every document that has it is rejected.
    // `dynamic: false`, so that no guessed mapping of another field rejects anything else.
    let conflicting = json!({
        "index_patterns": [ds], "data_stream": {}, "priority": 300,
        "template": {"mappings": {"dynamic": false, "properties": {
            "user": {"properties": {"full_name": {"type": "long"}}}
        }}}
    });
    let (status, body) = http(
        "PUT",
        &format!("{os}/_index_template/caf-test-conflict"),
        Some(&conflicting.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let c = Confluence::with_history(SimConfig::default(), 600);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, os, &format!("data_stream = \"{ds}\""));
    let out = run_once(&cfg);
    let want = expected(&c, &scratch);
    let total: usize = want.values().sum();
    let indexed = ids(os, ds);
    assert!(indexed.len() < total, "some events must have been rejected");

    let letters = common::dead_letters(&cfg, "os");
    assert_eq!(
        indexed.len() + letters.len(),
        total,
        "every event is either indexed or dead-lettered: {out}"
    );
    for l in &letters {
        let reason = l["reason"].as_str().unwrap();
        // OpenSearch's own words (Elasticsearch 8 says document_parsing_exception).
        assert!(
            reason.contains("mapper_parsing_exception")
                && reason.contains("failed to parse field [user.full_name] of type [long]"),
            "{reason}"
        );
        assert!(!indexed.contains_key(l["id"].as_str().unwrap()));
    }

    // The operator fixes the mapping (a template in use by a data stream cannot be removed,
    // but it can be corrected) and rolls the data stream over, so that its new write index
    // takes the corrected mapping. Then replays.
    let mut fixed = conflicting.clone();
    fixed["template"]["mappings"]["properties"]["user"]["properties"]["full_name"]["type"] =
        json!("keyword");
    let (status, body) = http(
        "PUT",
        &format!("{os}/_index_template/caf-test-conflict"),
        Some(&fixed.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http("POST", &format!("{os}/{ds}/_rollover"), None);
    assert_eq!(status, 200, "{body}");
    common::dlq_replay(&cfg, "os", letters.len());
    run_once(&cfg);
    let want = expected(&c, &scratch);
    let got = ids(os, ds);
    assert!(want == got, "{}", diff(&want, &got));
    assert!(got.values().all(|n| *n == 1), "an _id twice");
    let store = Store::open(&scratch.path("state"), &["os".to_owned()]).unwrap();
    assert_eq!(store.queue_stats("os").unwrap().dead_letters, 0);
}
