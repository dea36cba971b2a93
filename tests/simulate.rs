//! The Confluence audit API simulator over real HTTP: the behaviour the forwarder's tests
//! rely on it to copy — ordering, inclusive bounds, silent page caps, `_links.next`, DC
//! keyset paging and its self-events, auth, faults, twins, ground truth, determinism.

use std::collections::BTreeSet;
use std::time::Duration;

use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::catalog::{self, KINDS, SOTERI_KINDS};
use confluence_audit_forwarder::simulate::{
    ArrivalMix, Fault, Faults, SimAuth, SimConfig, SimServer, Simulator,
};
use serde_json::Value;
use serde_json::value::RawValue;

const T0: i64 = 1_764_043_200_000;

async fn start(cfg: SimConfig) -> (Simulator, SimServer) {
    let sim = Simulator::new(cfg);
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (sim, server)
}

fn capped(page_cap: usize) -> SimConfig {
    SimConfig {
        page_cap,
        ..SimConfig::default()
    }
}

/// A page as the server sent it: the envelope parsed, every record as its exact bytes.
struct Page {
    envelope: Value,
    records: Vec<String>,
    headers: reqwest::header::HeaderMap,
}

async fn get(url: &str) -> Page {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow, alias = "entities")]
        results: Vec<&'a RawValue>,
    }
    let raw: Raw = serde_json::from_str(&text).unwrap();
    Page {
        envelope: serde_json::from_str(&text).unwrap(),
        records: raw.results.iter().map(|r| r.get().to_owned()).collect(),
        headers,
    }
}

fn creation_date(record: &str) -> i64 {
    serde_json::from_str::<Value>(record).unwrap()["creationDate"]
        .as_i64()
        .unwrap()
}

fn path(api: Api) -> &'static str {
    match api {
        Api::Cloud => "/wiki/rest/api/audit",
        _ => "/rest/api/audit",
    }
}

/// Walk `startDate..=endDate` by offsets, as far as `_links.next` says.
async fn walk_offsets(
    server: &SimServer,
    api: Api,
    from: i64,
    to: i64,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let page = get(&format!(
            "{}{}?startDate={from}&endDate={to}&start={start}&limit={limit}",
            server.url(),
            path(api)
        ))
        .await;
        let n = page.records.len();
        assert_eq!(page.envelope["size"], n, "size is the page's count");
        out.extend(page.records);
        start += n;
        if page.envelope["_links"].get("next").is_none() {
            return out;
        }
        assert!(n > 0, "next on an empty page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_come_newest_first_within_inclusive_bounds() {
    let (sim, server) = start(SimConfig::default()).await;
    for i in 0..10 {
        sim.insert_random(T0 + i * 10, None);
    }
    // Two different records in the bound milliseconds.
    sim.insert_burst_same_ms(T0 + 20, 2);
    sim.insert_burst_same_ms(T0 + 70, 2);
    for api in [Api::Legacy, Api::Cloud] {
        let page = get(&format!(
            "{}{}?startDate={}&endDate={}",
            server.url(),
            path(api),
            T0 + 20,
            T0 + 70
        ))
        .await;
        let dates: Vec<i64> = page.records.iter().map(|r| creation_date(r)).collect();
        assert_eq!(
            dates,
            [70, 70, 70, 60, 50, 40, 30, 20, 20, 20].map(|d| T0 + d),
            "{api:?}"
        );
        // Ties: the newest insertion first — the exact reverse of the ground truth.
        let mut truth = sim.ground_truth_between(api, T0 + 20, T0 + 70);
        truth.reverse();
        assert_eq!(page.records, truth, "{api:?}");
        assert!(page.envelope["_links"].get("next").is_none());
    }
    // Legacy also takes ISO-8601 bounds, with the same meaning.
    let iso = get(&format!(
        "{}/rest/api/audit?startDate=2025-11-25T04%3A00%3A00.020Z&endDate=2025-11-25T04%3A00%3A00.070Z",
        server.url()
    ))
    .await;
    assert_eq!(iso.records.len(), 10);
    // Cloud does not.
    let resp = reqwest::get(format!(
        "{}/wiki/rest/api/audit?startDate=2025-11-25T04%3A00%3A00.020Z",
        server.url()
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cap_is_silent_and_next_marks_exactly_the_pages_with_more() {
    let (sim, server) = start(capped(7)).await;
    sim.seed_history(30, T0, T0 + 5_000);
    for api in [Api::Legacy, Api::Cloud] {
        let first = get(&format!("{}{}?limit=100", server.url(), path(api))).await;
        assert_eq!(first.envelope["limit"], 7, "the effective limit");
        assert_eq!(first.envelope["start"], 0);
        assert_eq!(first.records.len(), 7);
        let next = first.envelope["_links"]["next"].as_str().unwrap();
        assert!(next.contains("start=7"), "{next}");
        let links = &first.envelope["_links"];
        assert!(links["self"].as_str().unwrap().ends_with("/rest/api/audit"));
        assert_eq!(
            links["context"],
            if api == Api::Cloud { "/wiki" } else { "" }
        );
        // 30 = 4 full pages and 2: the fifth page is the last.
        let last = get(&format!("{}{}?limit=100&start=28", server.url(), path(api))).await;
        assert_eq!(last.records.len(), 2);
        assert!(last.envelope["_links"].get("next").is_none());
        let exact = get(&format!("{}{}?limit=100&start=23", server.url(), path(api))).await;
        assert_eq!(exact.records.len(), 7);
        assert!(
            exact.envelope["_links"].get("next").is_none(),
            "nothing after 30"
        );
        let past = get(&format!("{}{}?start=99", server.url(), path(api))).await;
        assert!(past.records.is_empty());
        assert_eq!(past.envelope["size"], 0);
    }
    let dc = get(&format!(
        "{}/rest/auditing/1.0/events?limit=100000",
        server.url()
    ))
    .await;
    assert_eq!(dc.records.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_walks_equal_the_ground_truth_byte_for_byte() {
    let (sim, server) = start(capped(50)).await;
    sim.seed_history(1_000, T0, T0 + 60_000);
    sim.insert_twins(T0 + 30_000, 3);
    sim.insert_burst_same_ms(T0 + 30_001, 120);
    for api in [Api::Legacy, Api::Cloud] {
        let mut walked = walk_offsets(&server, api, T0, T0 + 60_000, 1000).await;
        walked.reverse();
        assert_eq!(walked.len(), 1_123);
        assert_eq!(walked, sim.ground_truth(api), "{api:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_while_paging_shift_offsets() {
    let (sim, server) = start(capped(10)).await;
    sim.seed_history(25, T0, T0 + 1_000);
    let url = format!(
        "{}/rest/api/audit?startDate={T0}&endDate={}",
        server.url(),
        T0 + 10_000
    );
    let first = get(&format!("{url}&start=0")).await;
    // A record commits late, inside the window, newer than everything read.
    sim.insert_random(T0 + 5_000, None);
    let second = get(&format!("{url}&start=10")).await;
    assert_eq!(
        second.records[0], first.records[9],
        "the boundary record comes again on the next page"
    );
}

/// Walk the DC API by `pageCursor` (comma encoded), checking each `pagingInfo`.
async fn walk_cursor(
    server: &SimServer,
    from: &str,
    to: &str,
    limit: usize,
    after_each_page: &dyn Fn(),
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/rest/auditing/1.0/events?from={from}&to={to}&limit={limit}",
            server.url()
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&pageCursor={}", c.replace(',', "%2C")));
        }
        let page = get(&url).await;
        let info = page.envelope["pagingInfo"].as_object().unwrap();
        let n = page.records.len();
        assert_eq!(info["size"], n);
        assert!(n <= limit);
        out.extend(page.records);
        after_each_page();
        if info["lastPage"] == true {
            let keys: BTreeSet<&str> = info.keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["lastPage", "size"]));
            return out;
        }
        let next = info["nextPageCursor"].as_str().unwrap().to_owned();
        assert_eq!(info["nextPageOffset"], 0);
        let link = info["nextPageLink"].as_str().unwrap();
        // The effective limit (a full page's size), the cursor, offset 0; the instance's
        // base URL, not the address we reached it at.
        assert!(
            link.ends_with(&format!(
                "/rest/auditing/1.0/events?offset=0&limit={n}&pageCursor={next}"
            )),
            "{link}"
        );
        assert!(
            link.starts_with("http://confluence.sim.internal:8090/"),
            "{link}"
        );
        assert!(!link.contains("from=") && !link.contains("to="), "{link}");
        cursor = Some(next);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc_keyset_paging_reads_every_record_once() {
    let (sim, server) = start(capped(40)).await;
    sim.seed_history(1_000, T0, T0 + 60_000);
    sim.insert_twins(T0 + 30_000, 2);
    sim.insert_burst_same_ms(T0 + 30_000, 150);
    let truth = sim.ground_truth_between(Api::Auditing, T0, T0 + 60_000);
    // 2025-11-25T04:00:00Z is T0.
    let (from, to) = (
        "2025-11-25T04%3A00%3A00.000Z",
        "2025-11-25T04%3A01%3A00.000Z",
    );
    let mut walked = walk_cursor(&server, from, to, 1000, &|| {}).await;
    walked.reverse();
    assert_eq!(walked.len(), 1_152);
    assert_eq!(walked, truth);
    // Records committed inside the window, newer than the cursor, while paging: a cursor
    // walk neither repeats nor shifts (it misses them, as the real API does).
    let mut walked = walk_cursor(&server, from, to, 40, &|| {
        sim.insert_random(T0 + 60_000, None)
    })
    .await;
    walked.reverse();
    assert_eq!(walked, truth);
    assert_eq!(
        sim.ground_truth_between(Api::Auditing, T0, T0 + 60_000)
            .len(),
        1_152 + 29,
        "one insert per page of 40"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_page_link_forgets_the_window() {
    let (sim, server) = start(capped(5)).await;
    sim.seed_history(20, T0, T0 + 20_000);
    let page = get(&format!(
        "{}/rest/auditing/1.0/events?from=2025-11-25T04%3A00%3A10.000Z",
        server.url()
    ))
    .await;
    let link = page.envelope["pagingInfo"]["nextPageLink"]
        .as_str()
        .unwrap();
    let path = &link[link.find("/rest/").unwrap()..];
    // Followed blindly, the link walks past `from` into older records.
    let mut url = format!("{}{path}", server.url());
    let mut oldest = i64::MAX;
    loop {
        let p = get(&url).await;
        for r in &p.records {
            let v: Value = serde_json::from_str(r).unwrap();
            let ts = v["timestamp"].as_str().unwrap();
            let ms =
                time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                    .unwrap()
                    .unix_timestamp_nanos()
                    / 1_000_000;
            oldest = oldest.min(ms as i64);
        }
        match p.envelope["pagingInfo"]["nextPageLink"].as_str() {
            Some(l) => url = format!("{}{}", server.url(), &l[l.find("/rest/").unwrap()..]),
            None => break,
        }
    }
    assert!(oldest < T0 + 10_000, "oldest {oldest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dc_query_writes_a_search_event_seen_everywhere() {
    let (sim, server) = start(SimConfig {
        auth: SimAuth::Basic {
            username: "auditor".into(),
            password: "pw".into(),
        },
        ..SimConfig::default()
    })
    .await;
    sim.seed_history(10, T0, T0 + 1_000);
    let client = reqwest::Client::new();
    let before = sim.len();
    for _ in 0..3 {
        let resp = client
            .get(format!(
                "{}/rest/auditing/1.0/events?from=2025-11-25T04%3A00%3A00.000Z&limit=4",
                server.url()
            ))
            .basic_auth("auditor", Some("pw"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(sim.len(), before + 3);
    // A legacy query does not audit itself.
    let resp = client
        .get(format!("{}/rest/api/audit", server.url()))
        .basic_auth("auditor", Some("pw"))
        .send()
        .await
        .unwrap();
    let legacy: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(sim.len(), before + 3);
    // The newest legacy records are the three searches.
    for r in &legacy["results"].as_array().unwrap()[..3] {
        assert_eq!(r["summary"], "Audit Log search performed");
        assert_eq!(r["author"]["username"], "auditor");
    }
    let now = sim.now_ms();
    let truth = sim.ground_truth_between(Api::Auditing, now - 60_000, now);
    assert_eq!(truth.len(), 3);
    let e: Value = serde_json::from_str(&truth[0]).unwrap();
    assert_eq!(
        e["type"]["actionI18nKey"],
        "atlassian.audit.event.action.audit.search"
    );
    assert_eq!(e["type"]["category"], "Auditing");
    let attrs: Vec<(&str, &str)> = e["extraAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["value"].as_str().unwrap()))
        .collect();
    assert_eq!(attrs[0].0, "ID Range");
    assert!(attrs[0].1.contains(" - "), "{attrs:?}");
    assert_eq!(attrs[1].0, "Query");
    assert!(attrs[1].1.contains("2025-11-25T04:00:00.000Z"), "{attrs:?}");
    assert_eq!(attrs[2], ("Results returned", "4"));
    assert_eq!(attrs[3].0, "Timestamp Range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_enforced() {
    for auth in [
        SimAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        },
        SimAuth::Bearer("pat-123".into()),
    ] {
        let (sim, server) = start(SimConfig {
            auth: auth.clone(),
            ..SimConfig::default()
        })
        .await;
        sim.seed_history(5, T0, T0 + 10);
        let client = reqwest::Client::new();
        for p in [
            "/rest/api/audit",
            "/wiki/rest/api/audit",
            "/rest/auditing/1.0/events",
        ] {
            let url = format!("{}{p}", server.url());
            let none = client.get(&url).send().await.unwrap();
            assert_eq!(none.status(), 401, "{p}");
            let body: Value = serde_json::from_str(&none.text().await.unwrap()).unwrap();
            assert_eq!(body["statusCode"], 401);
            let wrong = client
                .get(&url)
                .basic_auth("u", Some("x"))
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401);
            let right = match &auth {
                SimAuth::Basic { .. } => client.get(&url).basic_auth("u", Some("p")),
                _ => client.get(&url).bearer_auth("pat-123"),
            };
            assert_eq!(right.send().await.unwrap().status(), 200, "{p}");
        }
        // Unauthenticated DC queries write no self-event.
        assert_eq!(sim.len(), 5 + 1);
        sim.set_faults(Faults {
            forbidden: true,
            ..Faults::default()
        });
        let url = format!("{}/rest/api/audit", server.url());
        let right = match &auth {
            SimAuth::Basic { .. } => client.get(&url).basic_auth("u", Some("p")),
            _ => client.get(&url).bearer_auth("pat-123"),
        };
        assert_eq!(right.send().await.unwrap().status(), 403);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_rate_limit_fail_and_cut_bodies() {
    let (sim, server) = start(SimConfig::default()).await;
    sim.seed_history(200, T0, T0 + 10_000);
    let url = format!("{}/rest/api/audit", server.url());
    sim.set_faults(Faults {
        retry_after_secs: 7,
        next: vec![
            Fault::RateLimit,
            Fault::Unavailable,
            Fault::ServerError,
            Fault::Truncate,
            Fault::CutConnection,
        ],
        ..Faults::default()
    });
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 500);
    // Truncated: a clean HTTP exchange, broken JSON.
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("{\"results\":["));
    assert!(serde_json::from_str::<Value>(&body).is_err());
    // Cut: the body cannot even be read to its announced end.
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err());
    // Then back to normal.
    let ok = reqwest::get(&url).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(serde_json::from_str::<Value>(&ok.text().await.unwrap()).is_ok());
    assert_eq!(sim.fault_count(), 5);
    assert_eq!(sim.request_count(), 6);

    // "The next N requests".
    sim.set_faults(Faults::next_n(Fault::ServerError, 2));
    for want in [500, 500, 200] {
        assert_eq!(reqwest::get(&url).await.unwrap().status(), want);
    }

    // Probabilities, and slow answers.
    sim.set_faults(Faults {
        rate_limit: 0.5,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let mut limited = 0;
    for _ in 0..100 {
        if reqwest::get(&url).await.unwrap().status() == 429 {
            limited += 1;
        }
    }
    assert!((25..75).contains(&limited), "{limited} of 100 at p = 0.5");
    sim.set_faults(Faults {
        slow: 1.0,
        slow_by: Duration::from_millis(300),
        ..Faults::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_are_byte_identical_on_every_api() {
    let (sim, server) = start(SimConfig::default()).await;
    sim.insert_twins(T0, 2);
    sim.insert_random(T0 + 1, None);
    for api in [Api::Legacy, Api::Cloud] {
        let page = get(&format!("{}{}", server.url(), path(api))).await;
        assert_eq!(page.records.len(), 3);
        assert_eq!(page.records[1], page.records[2], "{api:?}");
        assert_ne!(page.records[0], page.records[1]);
    }
    let page = get(&format!(
        "{}/rest/auditing/1.0/events?to=2025-11-25T04%3A00%3A00.001Z",
        server.url()
    ))
    .await;
    assert_eq!(page.records.len(), 3);
    assert_eq!(page.records[1], page.records[2]);
    // Re-fetches are identical too.
    let again = get(&format!(
        "{}/rest/auditing/1.0/events?to=2025-11-25T04%3A00%3A00.001Z",
        server.url()
    ))
    .await;
    assert_eq!(page.records, again.records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_date_header_follows_the_skewed_clock() {
    let (sim, server) = start(SimConfig {
        skew_ms: -3_600_000,
        ..SimConfig::default()
    })
    .await;
    let page = get(&format!("{}/rest/api/audit", server.url())).await;
    let date = page.headers["date"].to_str().unwrap();
    let served = httpdate::parse_http_date(date).unwrap();
    let real = std::time::SystemTime::now();
    let behind = real.duration_since(served).unwrap();
    assert!(
        behind > Duration::from_secs(3590) && behind < Duration::from_secs(3610),
        "{date}"
    );
    let now = confluence_audit_forwarder::source::now_ms();
    assert!((sim.now_ms() - (now - 3_600_000)).abs() < 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_served() {
    let (_sim, server) = start(SimConfig {
        retention: (30, "DAYS"),
        ..SimConfig::default()
    })
    .await;
    for p in [
        "/rest/api/audit/retention",
        "/wiki/rest/api/audit/retention",
    ] {
        let v = reqwest::get(format!("{}{p}", server.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&v).unwrap();
        assert_eq!(v, serde_json::json!({"number": 30, "units": "DAYS"}));
    }
}

#[test]
fn same_seed_same_data_and_every_soteri_event() {
    let history = |seed| {
        let sim = Simulator::new(SimConfig {
            seed,
            ..SimConfig::default()
        });
        sim.seed_history(3_000, T0, T0 + 3_600_000);
        sim
    };
    let a = history(9);
    let b = history(9);
    for api in [Api::Legacy, Api::Cloud, Api::Auditing, Api::File] {
        assert_eq!(a.ground_truth(api), b.ground_truth(api), "{api:?}");
    }
    assert_ne!(
        a.ground_truth(Api::Legacy),
        history(10).ground_truth(Api::Legacy)
    );

    let entities: Vec<Value> = a
        .ground_truth(Api::Auditing)
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    for kind in &KINDS[..SOTERI_KINDS] {
        let n = entities
            .iter()
            .filter(|e| e["type"]["action"] == kind.action)
            .inspect(|e| assert_eq!(e["type"]["category"], "Soteri Security for Confluence"))
            .count();
        assert!(n > 0, "no {:?}", kind.action);
    }
    // Even a history of 24 holds them all.
    let small = Simulator::new(SimConfig::default());
    small.seed_history(SOTERI_KINDS, T0, T0 + 1_000);
    let actions: BTreeSet<String> = small
        .ground_truth(Api::Legacy)
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r).unwrap()["summary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions.len(), SOTERI_KINDS);
    // Findings carry what a SIEM needs.
    let finding = entities
        .iter()
        .find(|e| e["type"]["action"] == "User edit introduced potentially sensitive content")
        .unwrap();
    let names: Vec<&str> = finding["extraAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for want in ["Rule name", "Matched text", "Content URL"] {
        assert!(names.contains(&want), "{names:?}");
    }
    // Byte-identical twins and same-millisecond records exist in seeded history.
    let truth = a.ground_truth(Api::Auditing);
    assert!(truth.windows(2).any(|w| w[0] == w[1]), "no twins");
    let dates: Vec<i64> = a
        .ground_truth(Api::Legacy)
        .iter()
        .map(|r| creation_date(r))
        .collect();
    assert!(dates.windows(2).filter(|w| w[0] == w[1]).count() > 10);
}

#[test]
fn cloud_and_dc_authors_differ_as_the_real_apis_do() {
    let sim = Simulator::new(SimConfig::default());
    sim.seed_history(3_000, T0, T0 + 3_600_000);
    let cloud: Vec<Value> = sim
        .ground_truth(Api::Cloud)
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    for r in &cloud {
        let a = &r["author"];
        assert!(
            a.get("username").is_none() && a.get("userKey").is_none(),
            "{a}"
        );
        if a["displayName"] == "System" {
            assert!(a.get("accountId").is_none(), "{a}");
        }
    }
    assert!(cloud.iter().any(|r| r["author"]["displayName"] == "System"));
    let group = cloud
        .iter()
        .find(|r| r["affectedObject"]["objectType"] == "Group")
        .unwrap();
    let name = group["affectedObject"]["name"].as_str().unwrap();
    let (_, uuid) = name.split_once(':').unwrap();
    assert_eq!(uuid.len(), 36, "{name}");
    let legacy: Vec<Value> = sim
        .ground_truth(Api::Legacy)
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert!(legacy.iter().any(|r| r["author"]["username"].is_string()));
    let dc: Vec<Value> = sim
        .ground_truth(Api::Auditing)
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let anonymous = dc.iter().find(|e| e["author"]["id"] == "-2").unwrap();
    assert_eq!(
        anonymous["author"],
        serde_json::json!({"name": "Anonymous", "id": "-2"})
    );
}

#[test]
fn file_lines_have_the_audit_file_shape() {
    let sim = Simulator::new(SimConfig::default());
    sim.insert_random(1_637_625_013_054, Some(0));
    let line = sim.ground_truth(Api::File).pop().unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["version"], "1.0");
    assert_eq!(
        v["timestamp"],
        serde_json::json!({"epochSecond": 1_637_625_013i64, "nano": 54_000_000})
    );
    assert_eq!(v["auditType"]["action"], "Scanning rule toggled");
    assert!(v.get("type").is_none());
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // The text itself has sorted keys (not just the parsed map).
    assert!(line.starts_with("{\"affectedObjects\":"), "{line}");
    let record = catalog::expand(
        1_637_625_013_054,
        catalog::Compact {
            kind: 0,
            user: 0,
            ip: 1,
            detail_seed: 5,
        },
        "http://wiki",
    );
    let direct =
        confluence_audit_forwarder::simulate::render::render_file_line(&record, "http://wiki");
    assert!(direct.ends_with("\"version\":\"1.0\"}"), "{direct}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_flow_until_dropped() {
    let sim = Simulator::new(SimConfig::default());
    let start = sim.now_ms();
    let arrivals = sim.start_arrivals(
        200.0,
        ArrivalMix {
            twins: 0.1,
            late: 0.2,
            late_max_ms: 10_000,
            bursts: 0.1,
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(arrivals);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = sim.len();
    assert!(n >= 50, "only {n} arrivals in 0.5 s at 200/s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sim.len(),
        n,
        "arrivals continued after the handle was dropped"
    );
    // Late commits are stamped in the past.
    let late = sim
        .ground_truth_between(Api::Legacy, i64::MIN, start - 1)
        .len();
    assert!(late > 0, "no late commits");
}

/// `cargo test --release --test simulate -- --ignored --nocapture`: a backfill-sized store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million records: run in release"]
async fn a_million_records_page_fast() {
    let (sim, server) = start(SimConfig::default()).await;
    let rss_kb = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<i64>().ok()
            })
            .unwrap_or(0)
    };
    let before = rss_kb();
    let t = std::time::Instant::now();
    sim.seed_history(1_000_000, T0 - 30 * 86_400_000, T0);
    println!(
        "seeded 1M records in {:?}; resident memory grew by {} MB",
        t.elapsed(),
        (rss_kb() - before) / 1024
    );
    let client = reqwest::Client::new();
    for (label, q) in [
        (
            "legacy newest page",
            "/rest/api/audit?limit=1000".to_owned(),
        ),
        (
            "legacy offset 990000",
            "/rest/api/audit?limit=1000&start=990000".to_owned(),
        ),
        (
            "cloud mid window",
            format!(
                "/wiki/rest/api/audit?startDate={}&endDate={}&limit=1000&start=5000",
                T0 - 20 * 86_400_000,
                T0 - 10 * 86_400_000
            ),
        ),
        (
            "dc cursor page",
            format!(
                "/rest/auditing/1.0/events?limit=1000&pageCursor={},500000",
                T0 - 15 * 86_400_000
            ),
        ),
    ] {
        let t = std::time::Instant::now();
        let body = client
            .get(format!("{}{q}", server.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        println!("{label}: {} bytes in {:?}", body.len(), t.elapsed());
        assert!(t.elapsed() < Duration::from_millis(500), "{label}");
    }
}
