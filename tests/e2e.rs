//! End to end, for each API: simulator → daemon binary → file sink, compared with the
//! simulator's ground truth as multisets of `event.id` — no record missing, none twice —
//! through the traps (same-millisecond records, identical twins, late commits, inserts while
//! paging, a silent page-size cap), API faults, restarts, and SIGKILLs mid-window.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, assert_file_holds_exactly, expected_ids, free_port,
    ids_in_file, run_once, scrape, source_toml, wait_until,
};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::{ArrivalMix, Fault, Faults, SimAuth, SimConfig};
use confluence_audit_forwarder::state::Store;
use rand::{Rng, SeedableRng};

fn api_name(api: Api) -> &'static str {
    api.as_str()
}

fn config(scratch: &Scratch, url: &str, api: Api, extra: &str) -> std::path::PathBuf {
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n[server]\nlisten = \"\"\n",
        source_toml("wiki", url, api_name(api), extra),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ))
}

/// The cursor the daemon committed (the daemon must not be running).
fn cursor(scratch: &Scratch) -> i64 {
    let store = Store::open(&scratch.path("state"), &["archive".to_owned()]).unwrap();
    store.cursor("wiki").unwrap().expect("a cursor").cursor_ms
}

/// What the file must hold: every record up to the cursor, as the API renders it.
fn expected(c: &Confluence, api: Api, scratch: &Scratch) -> BTreeMap<String, usize> {
    let truth = c.sim.ground_truth_between(api, i64::MIN, cursor(scratch));
    expected_ids(api, truth.iter().map(String::as_str))
}

fn assert_exact(c: &Confluence, api: Api, scratch: &Scratch) -> usize {
    let want = expected(c, api, scratch);
    assert_file_holds_exactly(&want, scratch, &format!("{api:?}"))
}

fn small_pages() -> SimConfig {
    SimConfig {
        // Below the configured page_size (100): the server caps silently.
        page_cap: 40,
        ..SimConfig::default()
    }
}

#[test]
fn backfill_is_exact_for_every_api() {
    for api in [Api::Legacy, Api::Cloud, Api::Auditing] {
        let c = Confluence::with_history(small_pages(), 2500);
        // Traps on top of the seeded twins and bursts.
        let t = c.sim.now_ms() - 600_000;
        c.sim.insert_twins(t, 3);
        c.sim.insert_burst_same_ms(t + 1, 120);
        let scratch = Scratch::new();
        // A slice holds at most 300 records: the backfill is cut and queued in parts.
        let cfg = config(&scratch, &c.url, api, "slice_max_records = 300");
        run_once(&cfg);
        let n = assert_exact(&c, api, &scratch);
        assert!(n >= 2500, "{api:?}: only {n} events");
    }
}

#[test]
fn late_commits_and_inserts_while_paging_are_caught_once() {
    for api in [Api::Legacy, Api::Auditing] {
        let c = Confluence::with_history(small_pages(), 1500);
        let scratch = Scratch::new();
        let cfg = config(&scratch, &c.url, api, "lag = \"1s\"");
        let arrivals = {
            let _guard = c.rt.enter();
            c.sim.start_arrivals(
                150.0,
                ArrivalMix {
                    twins: 0.05,
                    // Committed up to 4 s late: later than `lag`, within `overlap`.
                    late: 0.3,
                    late_max_ms: 4000,
                    bursts: 0.05,
                },
            )
        };
        let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
        std::thread::sleep(Duration::from_secs(4));
        drop(arrivals);
        std::thread::sleep(Duration::from_millis(1500));
        let (status, _) = daemon.terminate();
        assert!(
            status.success(),
            "daemon exit: {status}\n{}",
            scratch.logs()
        );
        // The last records (and late ones) are picked up by one more cycle.
        std::thread::sleep(Duration::from_millis(1200));
        run_once(&cfg);
        assert_exact(&c, api, &scratch);
    }
}

#[test]
fn api_faults_neither_lose_nor_double() {
    for api in [Api::Cloud, Api::Auditing] {
        let c = Confluence::with_history(small_pages(), 1500);
        c.sim.set_faults(Faults {
            rate_limit: 0.1,
            unavailable: 0.05,
            server_error: 0.1,
            truncate: 0.1,
            slow: 0.05,
            slow_by: Duration::from_millis(300),
            retry_after_secs: 0,
            next: vec![Fault::RateLimit, Fault::Truncate, Fault::ServerError],
            forbidden: false,
        });
        let scratch = Scratch::new();
        let cfg = config(&scratch, &c.url, api, "request_timeout = \"5s\"");
        let out = run_once(&cfg);
        assert!(
            c.sim.fault_count() >= 3,
            "faults served: {}",
            c.sim.fault_count()
        );
        assert_exact(&c, api, &scratch);
        assert!(out.contains("records read"), "{out}");
    }
}

#[test]
fn restart_resumes_from_the_stored_cursor() {
    let api = Api::Legacy;
    let c = Confluence::with_history(small_pages(), 800);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, api, "overlap = \"2s\"");
    run_once(&cfg);
    let first = assert_exact(&c, api, &scratch);
    let cursor_before = cursor(&scratch);
    let now = c.sim.now_ms();
    for i in 0..50 {
        c.sim.insert_random(now - 1000 + i, None);
    }
    std::thread::sleep(Duration::from_millis(100));
    let out = run_once(&cfg);
    let second = assert_exact(&c, api, &scratch);
    assert_eq!(second, first + 50);
    assert!(cursor(&scratch) > cursor_before);
    // Only the new window was read, not the history again.
    let read: u64 = out
        .split("once: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(read < 200, "second run read {read} records: {out}");
}

#[test]
fn sigkill_mid_window_repeatedly_then_restart() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for api in [Api::Legacy, Api::Auditing] {
        let c = Confluence::with_history(small_pages(), 12_000);
        let scratch = Scratch::new();
        let cfg = config(&scratch, &c.url, api, "slice_max_records = 400");
        for round in 0..6 {
            let daemon = DaemonProcess::start(&cfg, &scratch.path(&format!("daemon-{round}.log")));
            std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
            daemon.kill9();
        }
        run_once(&cfg);
        assert_exact(&c, api, &scratch);
    }
}

#[test]
fn bad_credentials_fail_loudly_and_move_nothing() {
    let c = Confluence::with_history(
        SimConfig {
            auth: SimAuth::Basic {
                username: "svc-audit".into(),
                password: "right".into(),
            },
            ..SimConfig::default()
        },
        100,
    );
    let scratch = Scratch::new();
    let cfg = config(
        &scratch,
        &c.url,
        Api::Cloud,
        "[source.auth]\ntype = \"basic\"\nusername = \"svc-audit\"\npassword = \"wrong\"",
    );
    let out = std::process::Command::new(common::bin())
        .args(["once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("source \"wiki\"") && stderr.contains("HTTP 401"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "the password leaked: {stderr}");
    assert!(ids_in_file(&scratch.path("events.ndjson")).is_empty());
    let store = Store::open(&scratch.path("state"), &["archive".to_owned()]).unwrap();
    assert!(!store.cursor("wiki").unwrap().unwrap().started);
}

#[test]
fn a_cursor_older_than_retention_is_reported_as_a_gap() {
    let c = Confluence::with_history(
        SimConfig {
            retention: (1, "DAYS"),
            ..SimConfig::default()
        },
        50,
    );
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, Api::Legacy, "");
    let first = run_once(&cfg);
    assert!(!first.contains("GAP"), "{first}");
    // The forwarder was away for two days.
    {
        let store = Store::open(&scratch.path("state"), &["archive".to_owned()]).unwrap();
        let mut state = store.cursor("wiki").unwrap().unwrap();
        assert!(state.caught_up);
        state.cursor_ms = c.sim.now_ms() - 2 * 86_400_000;
        store.init_cursor("wiki", state).unwrap();
    }
    let second = run_once(&cfg);
    assert!(second.contains("GAP"), "{second}");
}

/// DC's advanced auditing audits every query: a poller reads the searches it caused. They are
/// counted apart (so that the "reads but queues nothing" alert leaves them out), queued by
/// default, and dropped with `forward_self_generated = false`.
#[test]
fn the_searches_polling_causes_are_counted_and_forwarded_only_when_asked() {
    for forward in [false, true] {
        let c = Confluence::with_history(SimConfig::default(), 50);
        let scratch = Scratch::new();
        let port = free_port();
        let cfg = scratch.config(&format!(
            "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
            source_toml(
                "wiki",
                &c.url,
                "auditing",
                &format!("forward_self_generated = {forward}"),
            ),
            scratch.path("state").display(),
            scratch.path("events.ndjson").display(),
        ));
        let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
        let metric = |name: &str| scrape(port, &format!("{name}{{source=\"wiki\"}}"));
        wait_until(
            Duration::from_secs(60),
            "the daemon reading the searches it caused",
            || metric("caf_source_self_generated_read_total").unwrap_or(0.0) >= 5.0,
        );
        let queued = metric("caf_source_self_generated_queued_total").unwrap();
        drop(daemon);
        let text = std::fs::read_to_string(scratch.path("events.ndjson")).unwrap();
        let searches = text
            .lines()
            .filter(|l| l.contains("\"action\":\"audit-log-searched\""))
            .count() as f64;
        if forward {
            assert!(queued >= 1.0, "{queued} searches queued");
            assert!(
                searches >= queued,
                "{searches} in the file, {queued} queued"
            );
        } else {
            assert_eq!((queued, searches), (0.0, 0.0), "dropped when asked");
        }
        assert!(ids_in_file(&scratch.path("events.ndjson")).len() >= 50);
    }
}
