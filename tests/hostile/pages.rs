//! Hostile pages: what a response says (windows, paging, records).
//!
//! Each test puts the [`HostileServer`] in front of the faithful simulator, breaks one rule
//! of what a page must say, and checks what a user would see: the slice fails loudly (the
//! error counted under its kind, `/readyz` unready, `once` ending non-zero in bounded time)
//! and no event is invented or doubled — every `event.id` the file sink received is one the
//! simulator's ground truth has, no more often than it has it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use confluence_audit_forwarder::normalize::{self, Api};
use confluence_audit_forwarder::simulate::SimConfig;
use confluence_audit_forwarder::simulate::catalog::{Author, Object, Record};
use confluence_audit_forwarder::state::Store;

use super::common::{
    Confluence, DaemonProcess, Scratch, diff, expected_ids, free_port, http_get, ids_in_file,
    run_once, scrape, source_toml, wait_until,
};
use super::server::{Behaviour, HostileServer, Req, Resp, RespBody, on_request, on_response};
use super::transport::harness::{once, peak_rss_kib};

fn config(scratch: &Scratch, url: &str, api: Api, extra: &str, port: Option<u16>) -> PathBuf {
    let listen = port.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default();
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n[server]\nlisten = \"{listen}\"\n",
        source_toml("wiki", url, api.as_str(), extra),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ))
}

/// Nothing invented, nothing doubled: every delivered `event.id` is in `want`, at most as
/// often.
fn assert_nothing_fresh(want: &BTreeMap<String, usize>, got: &BTreeMap<String, usize>, logs: &str) {
    let fresh: Vec<_> = got
        .iter()
        .filter(|(id, n)| want.get(*id).copied().unwrap_or(0) < **n)
        .collect();
    assert!(
        fresh.is_empty(),
        "{} event.ids not in the ground truth or doubled: {:?}\nlogs:\n{logs}",
        fresh.len(),
        &fresh[..fresh.len().min(5)]
    );
}

fn errors_metric(kind: &str) -> String {
    format!("caf_source_errors_total{{source=\"wiki\",kind=\"{kind}\"}}")
}

/// A misbehaviour the forwarder must refuse: with `run`, the slice fails poll after poll
/// (counted as `kind`, `/readyz` unready naming `says`) and nothing fresh is delivered;
/// `once` ends non-zero in bounded time saying `says`.
fn assert_refused<B: Behaviour>(
    c: &Confluence,
    api: Api,
    extra: &str,
    make: impl Fn() -> B,
    kind: &str,
    says: &str,
) {
    let hostile = HostileServer::start(&c.url, make());
    let scratch = Scratch::new();
    let port = free_port();
    let cfg = config(&scratch, &hostile.url, api, extra, Some(port));
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let metric = errors_metric(kind);
    wait_until(Duration::from_secs(60), &metric, || {
        scrape(port, &metric).unwrap_or(0.0) >= 2.0
    });
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/readyz"));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(says), "/readyz: {body}");
    daemon.kill9();
    let want = c.expected(api, i64::MAX);
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert_nothing_fresh(&want, &got, &scratch.logs());

    let hostile = HostileServer::start(&c.url, make());
    let scratch = Scratch::new();
    let cfg = config(&scratch, &hostile.url, api, extra, None);
    let (status, log) = once(&cfg, &["--drain-timeout", "20s"], Duration::from_secs(90));
    assert!(
        !status.success(),
        "once succeeded against a misbehaving server:\n{log}"
    );
    assert!(log.contains(says), "once does not say {says:?}:\n{log}");
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert_nothing_fresh(&c.expected(api, i64::MAX), &got, &log);
}

fn ignore_dates(api: Api) -> impl Behaviour {
    on_request(move |r: &mut Req| {
        match api {
            Api::Auditing => {
                r.drop_param("from");
                r.drop_param("to");
            }
            _ => {
                r.drop_param("startDate");
                r.drop_param("endDate");
            }
        }
        None
    })
}

#[test]
fn a_legacy_server_that_ignores_the_date_filter_fails_the_slice() {
    let c = Confluence::with_history(SimConfig::default(), 19);
    // The first window starts half an hour ago: older records sent anyway are out of it.
    let extra = "start_at = \"-30m\"\npage_size = 5";
    assert_refused(
        &c,
        Api::Legacy,
        extra,
        || ignore_dates(Api::Legacy),
        "out_of_window",
        "ignores startDate/endDate",
    );
}

#[test]
fn a_dc_server_that_ignores_from_and_to_fails_the_slice() {
    let c = Confluence::with_history(SimConfig::default(), 19);
    let extra = "start_at = \"-30m\"\npage_size = 5";
    assert_refused(
        &c,
        Api::Auditing,
        extra,
        || ignore_dates(Api::Auditing),
        "out_of_window",
        "ignores `from`/`to`",
    );
}

#[test]
fn a_dc_cursor_cycle_fails_the_slice() {
    let c = Confluence::with_history(SimConfig::default(), 9);
    // Page 1 → A, page 2 (at A) → B, page 3 (at B) → A again.
    let cycle = || {
        let first: Arc<Mutex<Option<String>>> = Arc::default();
        on_response(move |req: &Req, resp: &mut Resp| {
            let Some(mut page) = resp.body_json() else {
                return;
            };
            let next = page["pagingInfo"]["nextPageCursor"]
                .as_str()
                .map(str::to_owned);
            let mut first = first.lock().unwrap();
            match req.param("pageCursor") {
                None => *first = next,
                Some(at) if Some(at) != first.as_deref() => {
                    if let Some(a) = first.clone() {
                        page["pagingInfo"]["nextPageCursor"] = a.into();
                        page["pagingInfo"]["lastPage"] = false.into();
                        resp.set_body_json(&page);
                    }
                }
                Some(_) => {}
            }
        })
    };
    assert_refused(
        &c,
        Api::Auditing,
        "page_size = 2",
        cycle,
        "paging",
        "cursors cycle",
    );
}

#[test]
fn a_dc_server_that_ignores_the_cursor_fails_the_slice() {
    let c = Confluence::with_history(SimConfig::default(), 9);
    let ignore = || {
        on_request(|r: &mut Req| {
            r.drop_param("pageCursor");
            None
        })
    };
    assert_refused(
        &c,
        Api::Auditing,
        "page_size = 2",
        ignore,
        "paging",
        "ignores `pageCursor`",
    );
}

#[test]
fn a_legacy_server_that_ignores_the_offset_fails_the_slice() {
    let c = Confluence::with_history(SimConfig::default(), 30);
    // A millisecond fuller than a page: walked by offset, which the server ignores.
    c.sim.insert_burst_same_ms(c.sim.now_ms() - 2_000, 25);
    let ignore = || {
        on_request(|r: &mut Req| {
            r.drop_param("start");
            None
        })
    };
    assert_refused(
        &c,
        Api::Legacy,
        "page_size = 10",
        ignore,
        "paging",
        "ignores `start`",
    );
}

#[test]
fn a_legacy_server_that_ignores_the_offset_but_echoes_it_fails_the_slice() {
    let c = Confluence::with_history(SimConfig::default(), 30);
    c.sim.insert_burst_same_ms(c.sim.now_ms() - 2_000, 25);
    // The page claims the offset asked for, but lists the records of offset 0 again.
    let lying = || super::server::Hooks {
        request: |r: &mut Req| {
            if let Some(asked) = r.param("start").map(str::to_owned) {
                r.drop_param("start");
                r.set_param("asked", &asked);
            }
            None
        },
        response: |req: &Req, resp: &mut Resp| {
            if let (Some(asked), Some(mut page)) = (req.param("asked"), resp.body_json()) {
                page["start"] = asked.parse::<u64>().unwrap_or(0).into();
                resp.set_body_json(&page);
            }
        },
    };
    assert_refused(
        &c,
        Api::Legacy,
        "page_size = 10",
        lying,
        "paging",
        "lists the same records as an earlier one",
    );
}

fn lines_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// The bound the README states for this case.
const CROWDED_MS_PEAK_RSS: u64 = 192 << 20;

#[test]
fn a_millisecond_larger_than_a_slice_is_queued_in_parts() {
    let c = Confluence::start(SimConfig::default());
    // A minute old, outside later windows' overlap: one poll reads it.
    let ms = c.sim.now_ms() - 60_000;
    c.sim.seed_history(200_000, ms, ms);
    let scratch = Scratch::new();
    let port = free_port();
    let cfg = config(
        &scratch,
        &c.url,
        Api::Legacy,
        "page_size = 1000\nslice_max_records = 5000\noverlap = \"1s\"",
        Some(port),
    );
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let file = scratch.path("events.ndjson");
    wait_until(
        Duration::from_secs(600),
        "200,000 events in the file",
        || lines_in(&file) >= 200_000,
    );
    let peak = peak_rss_kib(daemon.child.id()) * 1024;
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{}", scratch.logs());
    let want = c.expected(Api::Legacy, i64::MAX);
    let got = ids_in_file(&file);
    assert!(want == got, "{}\n{}", diff(&want, &got), scratch.logs());
    assert!(
        peak < CROWDED_MS_PEAK_RSS,
        "peak RSS {} MiB, over the stated {} MiB",
        peak >> 20,
        CROWDED_MS_PEAK_RSS >> 20
    );
    eprintln!(
        "200,000 records in one millisecond: peak RSS {} MiB",
        peak >> 20
    );
}

/// Replace `from` by `to` in a response body.
fn patch(resp: &mut Resp, from: &[u8], to: &[u8]) {
    if let RespBody::Bytes(b) = &mut resp.body
        && let Some(at) = b.windows(from.len()).position(|w| w == from)
    {
        b.splice(at..at + from.len(), to.iter().copied());
    }
}

fn record(ts_ms: i64, action: &str, action_key: &str, category: &str, page: &str) -> Record {
    Record {
        ts_ms,
        author: Author {
            id: "8a7f8a7f".into(),
            username: "jadmin".into(),
            display_name: "Jane Admin".into(),
        },
        source_ip: "10.1.2.3".into(),
        category: category.into(),
        category_key: String::new(),
        action: action.into(),
        action_key: action_key.into(),
        area: String::new(),
        affected: vec![Object {
            name: page.into(),
            kind: "Page".into(),
            id: "98306".into(),
            uri: String::new(),
        }],
        changed: Vec::new(),
        extra: Vec::new(),
    }
}

#[test]
fn a_record_that_is_not_utf8_is_forwarded_as_an_error_and_the_page_goes_on() {
    let c = Confluence::with_history(SimConfig::default(), 300);
    let t = c.sim.now_ms() - 1_200_000;
    c.sim
        .insert_record(record(t, "POISON-HERE", "", "Pages", "Home"));
    let hostile = HostileServer::start(
        &c.url,
        on_response(|_: &Req, resp: &mut Resp| patch(resp, b"POISON-HERE", b"POISON-\xff\xfeRE")),
    );
    let scratch = Scratch::new();
    let cfg = config(&scratch, &hostile.url, Api::Legacy, "page_size = 50", None);
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let file = scratch.path("events.ndjson");
    wait_until(Duration::from_secs(60), "the history delivered", || {
        lines_in(&file) >= 301
    });
    // The source keeps moving: records written after the poisoned page arrive too.
    let later = c.sim.now_ms();
    for i in 0..5 {
        c.sim.insert_random(later + i, None);
    }
    wait_until(Duration::from_secs(60), "later records delivered", || {
        lines_in(&file) >= 306
    });
    std::thread::sleep(Duration::from_secs(1)); // a few more polls re-read the overlap
    daemon.kill9();

    let truth = c.sim.ground_truth(Api::Legacy);
    let (poison, rest): (Vec<_>, Vec<_>) = truth.iter().partition(|r| r.contains("POISON-HERE"));
    let want = expected_ids(Api::Legacy, rest.iter().map(|s| s.as_str()));
    let mut got = BTreeMap::new();
    let mut errors = Vec::new();
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        if doc["event"]["kind"] == "pipeline_error" {
            errors.push(doc);
        } else {
            *got.entry(doc["event"]["id"].as_str().unwrap().to_owned())
                .or_insert(0usize) += 1;
        }
    }
    assert!(want == got, "{}\n{}", diff(&want, &got), scratch.logs());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            errors[0]["confluence"]["audit"]["original_base64"]
                .as_str()
                .expect("original_base64"),
        )
        .unwrap();
    let mut expected_raw = poison[0].as_bytes().to_vec();
    let at = expected_raw
        .windows(11)
        .position(|w| w == b"POISON-HERE")
        .unwrap();
    expected_raw.splice(at..at + 11, b"POISON-\xff\xfeRE".iter().copied());
    assert_eq!(raw, expected_raw, "the raw bytes are recoverable");
    assert_eq!(errors[0]["@timestamp"], normalize_iso(t));
}

fn normalize_iso(ms: i64) -> String {
    confluence_audit_forwarder::source::paging::iso(ms)
}

#[test]
fn self_generated_events_are_recognised_by_their_type_not_their_text() {
    const KEY: &str = "atlassian.audit.event.action.audit.search";
    for api in [Api::Legacy, Api::Cloud, Api::Auditing] {
        let c = Confluence::with_history(SimConfig::default(), 50);
        let t = c.sim.now_ms() - 600_000;
        // A real search event, and a page someone titled with the action key.
        c.sim
            .insert_record(record(t, "Audit Log search performed", KEY, "Auditing", ""));
        c.sim
            .insert_record(record(t + 1, "Page created", "page.created", "Pages", KEY));
        let scratch = Scratch::new();
        let cfg = config(
            &scratch,
            &c.url,
            api,
            "forward_self_generated = false",
            None,
        );
        run_once(&cfg);
        let cursor = {
            let store = Store::open(&scratch.path("state"), &["archive".to_owned()]).unwrap();
            store.cursor("wiki").unwrap().expect("a cursor").cursor_ms
        };
        let truth = c.sim.ground_truth_between(api, i64::MIN, cursor);
        let kept: Vec<&str> = truth
            .iter()
            .map(String::as_str)
            .filter(|r| !normalize::parse_record(api, r).unwrap().is_self_generated())
            .collect();
        assert!(
            kept.iter().any(|r| r.contains(KEY)),
            "{api:?}: the impostor is in the truth"
        );
        assert!(kept.len() < truth.len(), "{api:?}: a real one is too");
        let want = expected_ids(api, kept);
        let got = ids_in_file(&scratch.path("events.ndjson"));
        assert!(
            want == got,
            "{api:?}: {}\n{}",
            diff(&want, &got),
            scratch.logs()
        );
    }
}

#[test]
fn a_backfill_from_the_beginning_costs_what_the_data_costs() {
    let c = Confluence::with_history_over(SimConfig::default(), 3000, Duration::from_secs(86_400));
    let scratch = Scratch::new();
    // Slices of at most 1000 records: the newest part is queued first, then 56 empty years
    // are crossed oldest first before the rest of the day.
    let cfg = config(
        &scratch,
        &c.url,
        Api::Legacy,
        "page_size = 1000\nslice_max_records = 1000",
        None,
    );
    run_once(&cfg);
    let requests = c.sim.request_count();
    let want = c.expected(Api::Legacy, i64::MAX);
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(want == got, "{}\n{}", diff(&want, &got), scratch.logs());
    assert!(requests <= 40, "{requests} requests for 3,000 records");
}

#[test]
fn source_gauges_exist_from_the_first_poll() {
    let c = Confluence::start(SimConfig::default());
    // Nothing ever commits: every answer is a 503.
    let hostile = HostileServer::start(
        &c.url,
        on_request(|_: &mut Req| Some(Resp::new(503, "down for maintenance"))),
    );
    let scratch = Scratch::new();
    let port = free_port();
    let cfg = config(
        &scratch,
        &hostile.url,
        Api::Legacy,
        "start_at = \"-2h\"",
        Some(port),
    );
    let _daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let cursor = "caf_source_cursor_timestamp_seconds{source=\"wiki\"}";
    wait_until(Duration::from_secs(30), cursor, || {
        scrape(port, cursor).is_some()
    });
    let now_s = confluence_audit_forwarder::source::now_ms() as f64 / 1000.0;
    let at = scrape(port, cursor).unwrap();
    assert!((now_s - 7200.0 - at).abs() < 120.0, "cursor gauge {at}");
    let lag = scrape(port, "caf_source_lag_seconds{source=\"wiki\"}").expect("lag gauge");
    assert!((lag - 7200.0).abs() < 120.0, "lag gauge {lag}");
    assert!(
        scrape(
            port,
            "caf_source_newest_record_timestamp_seconds{source=\"wiki\"}"
        )
        .is_some()
    );
}
