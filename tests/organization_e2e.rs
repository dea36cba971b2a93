//! The organization audit log end to end: simulator (`events-stream`) → daemon binary →
//! file sink, compared with the simulator's events by `event.id` — every one exactly once —
//! through late-processed events, a stale cursor, a missing cursor, 429 storms and SIGKILLs
//! mid-backfill. Requests are paced (50 a minute at most), so these tests keep to a few
//! dozen pages.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, assert_file_holds_exactly, bin, diff, ids_in_file,
    run_once, run_once_failing, wait_until,
};
use confluence_audit_forwarder::config::StartAt;
use confluence_audit_forwarder::normalize::organization::event_id;
use confluence_audit_forwarder::simulate::organization::OrgFaults;
use confluence_audit_forwarder::simulate::{SimAuth, SimConfig};
use confluence_audit_forwarder::source::paging::iso;
use confluence_audit_forwarder::state::Store;

const KEY: &str = "org-api-key-sim";
const DAY_MS: i64 = 86_400_000;

fn org_sim() -> Confluence {
    Confluence::start(SimConfig {
        auth: SimAuth::Bearer(KEY.into()),
        ..SimConfig::default()
    })
}

fn config(scratch: &Scratch, url: &str, token: &str, extra: &str) -> PathBuf {
    scratch.config(&format!(
        r#"[[source]]
name = "org"
api = "organization"
url = "{url}"
org_id = "1a2b3c4d-0000-4000-8000-000000000001"
poll_interval = "300ms"
start_at = "beginning"
overlap = "10m"
requests_per_minute = 50
max_backoff = "2s"
{extra}
[source.auth]
type = "bearer"
token = "{token}"

[state]
dir = "{state}"

[[sink]]
name = "archive"
type = "file"
path = "{out}"

[server]
listen = ""
"#,
        state = scratch.path("state").display(),
        out = scratch.path("events.ndjson").display(),
    ))
}

fn expected(c: &Confluence) -> BTreeMap<String, usize> {
    c.sim
        .org()
        .ids()
        .iter()
        .map(|id| (event_id(id), 1))
        .collect()
}

fn assert_exact(c: &Confluence, scratch: &Scratch) -> usize {
    assert_file_holds_exactly(&expected(c), scratch, "organization")
}

#[test]
fn backfill_and_late_processed_events_through_429_storms_are_exact() {
    let c = org_sim();
    let now = c.sim.now_ms();
    c.sim.org().seed(900, now - 170 * DAY_MS, now - 1_000);
    c.sim.org().set_faults(OrgFaults {
        storm: 4,
        storm_retry_after_secs: 1,
        ..OrgFaults::default()
    });
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, KEY, "page_size = 200");
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 900);
    assert_eq!(c.sim.org().counts().rate_limited, 4, "the storm was served");

    // Processed now, happened hours ago: behind any event-time window, not behind the cursor.
    let processed = c.sim.now_ms();
    for i in 0..40 {
        c.sim.org().insert(processed + i, 3 * 3_600_000 + i);
    }
    c.sim.org().set_faults(OrgFaults {
        storm: 3,
        storm_retry_after_secs: 1,
        ..OrgFaults::default()
    });
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 940);
    let late = ids_in_file_docs(&scratch)
        .into_iter()
        .filter(|d| {
            let ts = d["@timestamp"].as_str().unwrap().to_owned();
            let processed = d["confluence"]["organization"]["processed_at"]
                .as_str()
                .unwrap();
            ts.as_str() < processed
        })
        .count();
    assert!(late >= 40, "late events keep their own time: {late}");
    assert_eq!(
        c.sim.org().counts().rate_limited,
        7,
        "pacing kept every other request under the limit"
    );
}

fn ids_in_file_docs(scratch: &Scratch) -> Vec<serde_json::Value> {
    std::fs::read_to_string(scratch.path("events.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_stale_cursor_and_a_missing_cursor_fall_back_to_processed_at_without_loss() {
    let c = org_sim();
    let now = c.sim.now_ms();
    c.sim.org().seed(300, now - 2 * DAY_MS, now - 1_000);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, KEY, "page_size = 100");
    run_once(&cfg);
    assert_exact(&c, &scratch);

    // Every cursor is refused from now on: the stored one, and each page's.
    c.sim.org().set_faults(OrgFaults {
        cursor_ttl_ms: Some(0),
        ..OrgFaults::default()
    });
    let t = c.sim.now_ms();
    for i in 0..250 {
        c.sim.org().insert(t + i, 20_000);
    }
    let stderr = run_once(&cfg);
    assert!(c.sim.org().counts().stale_cursors >= 1);
    assert!(stderr.contains("refused the stored cursor"), "{stderr}");
    assert_eq!(assert_exact(&c, &scratch), 550);

    // No cursor at all (`"next": null`): from the last processedAt, by id.
    c.sim.org().set_faults(OrgFaults {
        omit_cursor: true,
        ..OrgFaults::default()
    });
    let t = c.sim.now_ms();
    for i in 0..230 {
        c.sim.org().insert(t + i / 3, 1_000);
    }
    run_once(&cfg);
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 780);
}

#[test]
fn sigkill_mid_backfill_neither_loses_nor_doubles() {
    let c = org_sim();
    let now = c.sim.now_ms();
    c.sim.org().seed(1_200, now - 90 * DAY_MS, now - 1_000);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, KEY, "page_size = 100");
    for round in 1..=2 {
        let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
        wait_until(Duration::from_secs(60), "a few pages delivered", || {
            ids_in_file(&scratch.path("events.ndjson")).len() >= 300 * round
        });
        daemon.kill9();
    }
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 1_200);
}

#[test]
fn a_broken_event_is_forwarded_as_a_pipeline_error_and_the_source_goes_on() {
    let c = org_sim();
    let now = c.sim.now_ms();
    c.sim.org().seed(300, now - DAY_MS, now - 60_000);
    let ids = c.sim.org().ids();
    let (bad_ip, bad_time) = (ids[40].clone(), ids[210].clone());
    assert!(c.sim.org().tamper(&bad_ip, |e| {
        e["attributes"]["location"] = serde_json::json!({"ip": "not-an-ip"});
    }));
    assert!(c.sim.org().tamper(&bad_time, |e| {
        e["attributes"]["time"] = 1_700_000_000.into();
    }));
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, KEY, "page_size = 100");
    let log = run_once(&cfg);
    assert!(
        log.contains("pipeline_error"),
        "each broken event is logged: {log}"
    );
    c.sim.org().seed(50, now - 50_000, now - 1_000);
    run_once(&cfg);
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 350, "nothing lost or doubled");
    let docs = ids_in_file_docs(&scratch);
    let errors: Vec<_> = docs
        .iter()
        .filter(|d| d["event"]["kind"] == "pipeline_error")
        .collect();
    assert_eq!(errors.len(), 2, "only the two broken events");
    for (id, field) in [
        (&bad_ip, "attributes.location.ip"),
        (&bad_time, "attributes.time"),
    ] {
        let doc = errors
            .iter()
            .find(|d| d["event"]["id"] == event_id(id).as_str())
            .unwrap_or_else(|| panic!("no pipeline_error for {id}"));
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
        let original: serde_json::Value =
            serde_json::from_str(doc["event"]["original"].as_str().unwrap()).unwrap();
        assert_eq!(original["id"], id.as_str(), "the event as sent");
        assert_eq!(doc["event"]["dataset"], "atlassian.organization_audit");
    }
}

/// The stored position of source `org`, as JSON (cursor, processedAt, recent ids).
fn stored_position(scratch: &Scratch) -> String {
    let store = Store::open(&scratch.path("state"), &["archive".into()]).expect("open the store");
    let pos = store.org_position("org").unwrap().expect("a position");
    format!("{:?} {} {:?}", pos.cursor, pos.processed_ms, pos.recent)
}

#[test]
fn replay_queues_a_processed_at_range_once_more_tagged_and_leaves_the_position() {
    let c = org_sim();
    let now = c.sim.now_ms();
    c.sim.org().seed(400, now - 2 * DAY_MS, now - 60_000);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, KEY, "page_size = 50");
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 400);
    let position = stored_position(&scratch);

    let (from, to) = (now - 36 * 3_600_000, now - 12 * 3_600_000);
    let in_range: BTreeMap<String, usize> = c
        .sim
        .org()
        .events()
        .iter()
        .filter(|e| {
            let at = e["attributes"]["processedAt"].as_str().unwrap();
            let ms = chrono_ms(at);
            (from..=to).contains(&ms)
        })
        .map(|e| (event_id(e["id"].as_str().unwrap()), 1))
        .collect();
    assert!(in_range.len() > 100, "the range holds events");
    let out = replay(&cfg, &iso(from), &iso(to));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stored_position(&scratch),
        position,
        "the position is untouched"
    );

    run_once(&cfg);
    let docs = ids_in_file_docs(&scratch);
    let mut replayed = BTreeMap::new();
    for d in docs
        .iter()
        .filter(|d| d["confluence"]["audit"]["replayed"] == true)
    {
        *replayed
            .entry(d["event"]["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert!(replayed == in_range, "{}", diff(&in_range, &replayed));
    assert_eq!(
        docs.len(),
        400 + in_range.len(),
        "nothing else was queued again"
    );

    let ahead = replay(&cfg, "-1h", &iso(now + 3_600_000));
    let stderr = String::from_utf8_lossy(&ahead.stderr);
    assert!(
        !ahead.status.success() && stderr.contains("still to be polled"),
        "{stderr}"
    );
    let old = replay(&cfg, "-200d", &iso(from));
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(
        !old.status.success() && stderr.contains("180 days"),
        "{stderr}"
    );
}

/// `replay` of source `org` into every sink.
fn replay(cfg: &std::path::Path, from: &str, to: &str) -> std::process::Output {
    Command::new(bin())
        .args(["replay", "--config"])
        .arg(cfg)
        .args(["--source", "org", "--from", from, "--to", to])
        .output()
        .unwrap()
}

fn chrono_ms(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<StartAt>()
        .map(|s| match s {
            StartAt::Time(ms) => ms,
            other => panic!("{rfc3339}: {other:?}"),
        })
        .unwrap()
}

#[test]
fn a_refused_key_says_it_is_expired_or_lacks_the_scope() {
    let c = org_sim();
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, "revoked-key", "");
    let stderr = run_once_failing(&cfg);
    assert!(stderr.contains("read:events:admin"), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(
        !stderr.contains("revoked-key"),
        "the key is never shown: {stderr}"
    );
}

#[test]
fn an_oversized_page_fails_the_cycle_and_loses_nothing() {
    let c = org_sim();
    let now = c.sim.now_ms();
    c.sim.org().seed(150, now - DAY_MS, now - 1_000);
    let scratch = Scratch::new();
    let capped = config(
        &scratch,
        &c.url,
        KEY,
        "page_size = 100\nmax_response_bytes = 4096",
    );
    let stderr = run_once_failing(&capped);
    assert!(stderr.contains("max_response_bytes"), "{stderr}");
    assert!(ids_in_file(&scratch.path("events.ndjson")).is_empty());
    let cfg = config(&scratch, &c.url, KEY, "page_size = 100");
    run_once(&cfg);
    assert_eq!(assert_exact(&c, &scratch), 150);
}
