//! Against a real cluster — the one test of this sink that may skip: it runs only when
//! `ES_URL` is set (with `ES_API_KEY`, or `ES_USERNAME` and `ES_PASSWORD`; `ES_CA_FILE` or
//! `ES_INSECURE=1` for self-signed TLS), and otherwise prints that it was skipped.
//!
//! It installs the shipped template and an ILM policy under test names, writes real documents
//! into a fresh data stream, writes them again (every one must come back as delivered by 409,
//! none indexed twice), checks that a mapping error is rejected with Elasticsearch's reason,
//! counts, and removes what it created.

use std::collections::HashMap;

use confluence_audit_forwarder::normalize::{self, Api, NormalizeOptions};
use confluence_audit_forwarder::simulate::{SimConfig, Simulator};
use confluence_audit_forwarder::sink::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use serde_json::{Value, json};

fn events(n: usize) -> Vec<QueuedEvent> {
    let sim = Simulator::new(SimConfig::default());
    let now = sim.now_ms();
    sim.seed_history(n, now - 3_600_000, now - 1_000);
    let mut occurrences = HashMap::new();
    sim.ground_truth(Api::Auditing)
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, raw)| {
            let r = normalize::parse_record(Api::Auditing, raw).unwrap();
            let k = occurrences
                .entry((r.timestamp_ms(), r.content_hash()))
                .or_insert(0u32);
            let mut doc = Vec::new();
            let opts = NormalizeOptions::default();
            normalize::write_ecs(&r, *k, "2025-11-25T00:00:00.000Z", &opts, &mut doc).unwrap();
            let id = normalize::event_id(&r.content_hash(), *k);
            *k += 1;
            QueuedEvent {
                seq: i as u64,
                enqueued_ms: 0,
                id,
                doc,
            }
        })
        .collect()
}

async fn call(sink: &ElasticsearchSink, method: Method, path: &str) -> (u16, Value) {
    let r = sink
        .client()
        .send(
            method,
            path,
            HeaderMap::new(),
            None::<&()>,
            None::<String>,
            None,
        )
        .await
        .unwrap();
    let status = r.status_code().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn live_cluster_round_trip_or_skipped_without_es_url() {
    let Ok(url) = std::env::var("ES_URL") else {
        eprintln!(
            "SKIPPED: set ES_URL (and ES_API_KEY or ES_USERNAME/ES_PASSWORD) to run against a real cluster"
        );
        return;
    };
    let suffix = format!("{:08x}", rand::random::<u32>());
    let ds = format!("logs-caftest.audit-{suffix}");
    let mut cfg = json!({
        "url": url, "data_stream": ds, "install_template": true,
        "ilm_policy": format!("caf-test-{suffix}"), "request_timeout": "30s",
    });
    if std::env::var("ES_API_KEY").is_ok() {
        cfg["auth"] = json!({"type": "api_key", "api_key_env": "ES_API_KEY"});
    } else if let Ok(user) = std::env::var("ES_USERNAME") {
        cfg["auth"] = json!({"type": "basic", "username": user, "password_env": "ES_PASSWORD"});
    }
    if let Ok(ca) = std::env::var("ES_CA_FILE") {
        cfg["tls"] = json!({"ca_file": ca});
    } else if std::env::var("ES_INSECURE").is_ok_and(|v| v == "1") {
        cfg["tls"] = json!({"insecure_skip_verify": true});
    }
    let cfg: ElasticsearchConfig = serde_json::from_value(cfg).unwrap();
    cfg.validate().unwrap();
    let mut sink = ElasticsearchSink::new("live".into(), cfg).unwrap();
    sink.open(None)
        .await
        .expect("health check and template install");

    let evs = events(50);
    let out = sink.deliver(&evs).await.unwrap();
    assert!(
        out.results.iter().all(|d| *d == Delivery::Delivered),
        "{:?}",
        out.results
    );
    let again = sink.deliver(&evs).await.unwrap();
    assert!(
        again.results.iter().all(|d| *d == Delivery::Delivered),
        "a repeat is delivered by 409: {:?}",
        again.results
    );
    let mut bad: Value = serde_json::from_slice(&evs[0].doc).unwrap();
    bad["source"]["ip"] = json!("not-an-ip");
    let bad = QueuedEvent {
        seq: 99,
        enqueued_ms: 0,
        id: format!("bad-{suffix}"),
        doc: serde_json::to_vec(&bad).unwrap(),
    };
    let out = sink.deliver(&[bad]).await.unwrap();
    match &out.results[0] {
        Delivery::Rejected(r) => assert!(
            r.contains("parsing_exception") && r.contains("source.ip"),
            "{r}"
        ),
        other => panic!("a mapping error must be rejected: {other:?}"),
    }

    call(&sink, Method::Post, &format!("/{ds}/_refresh")).await;
    let (status, count) = call(&sink, Method::Get, &format!("/{ds}/_count")).await;
    let (_, stream) = call(&sink, Method::Get, &format!("/_data_stream/{ds}")).await;
    // Clean up before asserting, so a failure leaves nothing behind.
    call(&sink, Method::Delete, &format!("/_data_stream/{ds}")).await;
    call(
        &sink,
        Method::Delete,
        &format!("/_index_template/confluence-audit-{ds}"),
    )
    .await;
    call(
        &sink,
        Method::Delete,
        &format!("/_ilm/policy/caf-test-{suffix}"),
    )
    .await;
    assert_eq!(status, 200, "{count}");
    assert_eq!(count["count"], 50, "each event exactly once");
    assert_eq!(
        stream["data_streams"][0]["template"],
        format!("confluence-audit-{ds}")
    );
}
