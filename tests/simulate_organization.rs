//! The simulated organization audit log answers as `../shared/spec/atlassian-org-audit-api.md`
//! says the real one does: Bearer auth, `processedAt` order with events that happened
//! earlier, the JSON:API envelope, a cursor on the last page (or none, on demand), a stale
//! cursor refused with 400, and 429 with `Retry-After` over 50 requests a minute.

use serde_json::Value;

use confluence_audit_forwarder::simulate::organization::OrgFaults;
use confluence_audit_forwarder::simulate::{SimAuth, SimConfig, Simulator};

const KEY: &str = "sim-org-key";

async fn serve() -> (Simulator, String, reqwest::Client) {
    let sim = Simulator::new(SimConfig {
        auth: SimAuth::Bearer(KEY.into()),
        ..SimConfig::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("{}/admin/v1/orgs/o1/events-stream", server.url());
    std::mem::forget(server); // served for the rest of the test process
    (sim, url, reqwest::Client::new())
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, String)],
) -> (u16, Option<String>, Value) {
    let r = client
        .get(url)
        .query(query)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap())
}

#[tokio::test]
async fn pages_in_processing_order_with_a_cursor_on_the_last_page_too() {
    let (sim, url, client) = serve().await;
    let now = sim.now_ms();
    sim.org().seed(30, now - 3_600_000, now);
    let unauthorized = client.get(&url).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    let (status, _, first) = get(
        &client,
        &url,
        &[("from", "0".into()), ("limit", "20".into())],
    )
    .await;
    assert_eq!(status, 200);
    let data = first["data"].as_array().unwrap();
    assert_eq!(data.len(), 20);
    let processed: Vec<&str> = data
        .iter()
        .map(|e| e["attributes"]["processedAt"].as_str().unwrap())
        .collect();
    assert!(
        processed.windows(2).all(|w| w[0] <= w[1]),
        "processedAt order"
    );
    assert!(
        data.iter()
            .all(|e| e["attributes"]["time"].as_str().unwrap()
                < e["attributes"]["processedAt"].as_str().unwrap()),
        "every event happened before it was processed"
    );
    let cursor = first["meta"]["next"].as_str().unwrap().to_owned();
    let (_, _, last) = get(&client, &url, &[("cursor", cursor), ("limit", "20".into())]).await;
    assert_eq!(last["data"].as_array().unwrap().len(), 10);
    let after_last = last["meta"]["next"]
        .as_str()
        .expect("a cursor on the last page")
        .to_owned();
    let id = sim.org().insert(sim.now_ms() + 1, 7_200_000);
    let (_, _, next) = get(&client, &url, &[("cursor", after_last.clone())]).await;
    assert_eq!(
        next["data"][0]["id"],
        id.as_str(),
        "the last page's cursor continues"
    );

    sim.org().set_faults(OrgFaults {
        cursor_ttl_ms: Some(0),
        omit_cursor: true,
        ..OrgFaults::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, _, _) = get(&client, &url, &[("cursor", after_last)]).await;
    assert_eq!(status, 400, "a stale cursor is refused");
    let (_, _, page) = get(&client, &url, &[("from", "0".into())]).await;
    assert!(page["meta"]["next"].is_null());
    assert_eq!(sim.org().counts().stale_cursors, 1);
}

#[tokio::test]
async fn more_than_fifty_requests_a_minute_get_429_with_retry_after() {
    let (_sim, url, client) = serve().await;
    for i in 0..50 {
        let (status, _, _) = get(&client, &url, &[("from", "0".into())]).await;
        assert_eq!(status, 200, "request {i}");
    }
    let (status, retry, _) = get(&client, &url, &[("from", "0".into())]).await;
    assert_eq!(status, 429);
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}
