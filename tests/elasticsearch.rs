//! The Elasticsearch sink through the `Sink` trait, against a server that reproduces the
//! `_bulk` contract of an 8.x cluster (`es_server`): exactly once by `_id`, per-item and
//! whole-request faults, mapping errors, authentication, node failover, request splitting,
//! and `setup` (template, ILM policy, Kibana objects).

mod es_server;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use confluence_audit_forwarder::normalize::{self, Api, NormalizeOptions};
use confluence_audit_forwarder::simulate::{SimConfig, Simulator};
use confluence_audit_forwarder::sink::elasticsearch::{
    ElasticsearchConfig, ElasticsearchSink, setup,
};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};
use es_server::{EsOptions, EsServer};
use serde_json::{Value, json};

const DS: &str = "logs-confluence.audit-default";

/// `n` real documents: simulator records through the normalizer, as the poller makes them.
fn events(n: usize) -> Vec<QueuedEvent> {
    let sim = Simulator::new(SimConfig::default());
    let now = sim.now_ms();
    sim.seed_history(n, now - 3_600_000, now - 1_000);
    let mut occurrences = HashMap::new();
    let mut out = Vec::new();
    for (i, raw) in sim.ground_truth(Api::Auditing).iter().take(n).enumerate() {
        let r = normalize::parse_record(Api::Auditing, raw).unwrap();
        let k = occurrences
            .entry((r.timestamp_ms(), r.content_hash()))
            .or_insert(0u32);
        let mut doc = Vec::new();
        normalize::write_ecs(
            &r,
            *k,
            "2025-11-25T00:00:00.000Z",
            &NormalizeOptions::default(),
            &mut doc,
        )
        .unwrap();
        *k += 1;
        let v: Value = serde_json::from_slice(&doc).unwrap();
        out.push(QueuedEvent {
            seq: i as u64,
            enqueued_ms: 0,
            id: v["event"]["id"].as_str().unwrap().to_owned(),
            doc,
        });
    }
    assert_eq!(out.len(), n);
    out
}

fn config(extra: Value) -> ElasticsearchConfig {
    let mut base = json!({"request_timeout": "5s"});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    let cfg: ElasticsearchConfig = serde_json::from_value(base).unwrap();
    cfg.validate().unwrap();
    cfg
}

fn sink_for(server: &EsServer, extra: Value) -> ElasticsearchSink {
    let mut e = extra;
    if e.get("url").is_none() && e.get("urls").is_none() {
        e["url"] = json!(server.url);
    }
    ElasticsearchSink::new("es".into(), config(e)).unwrap()
}

fn ids_of(events: &[QueuedEvent]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e.id.clone()).or_default() += 1;
    }
    m
}

/// Deliver like the worker does: keep what must be retried, until nothing is left.
/// Panics on a rejection (none expected). Returns how many attempts it took.
async fn deliver_all(sink: &mut ElasticsearchSink, events: &[QueuedEvent]) -> usize {
    let mut pending: Vec<QueuedEvent> = events.to_vec();
    for attempt in 1..=200 {
        // On a whole-batch error everything stays pending.
        if let Ok(out) = sink.deliver(&pending).await {
            assert_eq!(out.results.len(), pending.len());
            let mut next = Vec::new();
            for (e, d) in pending.into_iter().zip(out.results) {
                match d {
                    Delivery::Delivered => {}
                    Delivery::Retry(_) => next.push(e),
                    Delivery::Rejected(r) => panic!("{} rejected: {r}", e.id),
                }
            }
            pending = next;
        }
        if pending.is_empty() {
            return attempt;
        }
    }
    panic!("{} events never delivered", pending.len());
}

#[tokio::test]
async fn every_event_is_created_once_and_a_repeat_is_a_409_that_counts_as_delivered() {
    let server = EsServer::start(EsOptions::default());
    let mut sink = sink_for(&server, json!({}));
    sink.open(None).await.unwrap();
    let evs = events(300);
    let out = sink.deliver(&evs).await.unwrap();
    assert!(out.results.iter().all(|d| *d == Delivery::Delivered));
    assert_eq!(server.ids(DS), ids_of(&evs));
    assert_eq!(server.is_data_stream(DS), Some(true));
    // The same batch again (a crash before the acknowledgement): nothing new, all delivered.
    let again = sink.deliver(&evs).await.unwrap();
    assert!(again.results.iter().all(|d| *d == Delivery::Delivered));
    assert_eq!(server.ids(DS), ids_of(&evs));
    let st = server.stats();
    assert_eq!(st.created, 300);
    assert_eq!(st.conflicts_409, 300);
    // The document is stored as the normalizer wrote it.
    let stored = server.doc(DS, &evs[0].id).unwrap();
    assert_eq!(
        stored,
        serde_json::from_slice::<Value>(&evs[0].doc).unwrap()
    );
}

#[tokio::test]
async fn gzip_is_on_the_wire_and_can_be_turned_off() {
    let server = EsServer::start(EsOptions::default());
    let evs = events(200);
    let mut sink = sink_for(&server, json!({}));
    sink.deliver(&evs[..100]).await.unwrap();
    let st = server.stats();
    assert_eq!(st.gzip_requests, 1);
    assert!(
        st.bulk_bytes_on_wire * 4 < st.bulk_bytes_decoded,
        "gzip should shrink audit JSON well: {} -> {}",
        st.bulk_bytes_decoded,
        st.bulk_bytes_on_wire
    );
    let mut plain = sink_for(&server, json!({"gzip": false}));
    plain.deliver(&evs[100..]).await.unwrap();
    let st = server.stats();
    assert_eq!(st.gzip_requests, 1, "the second sink sent plain bodies");
    assert_eq!(server.ids(DS), ids_of(&evs));
}

#[tokio::test]
async fn test_server_keeps_the_bulk_contract() {
    // The rules the sink relies on, checked against the server itself, so that the other
    // tests mean something.
    let server = EsServer::start(EsOptions::default());
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(format!("{}/{DS}/_bulk", server.url))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let r = post("{\"create\":{\"_id\":\"a\"}}\n{\"@timestamp\":\"2025-11-25T00:00:00Z\"}")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("terminated by a newline"));
    let r: Value = post("{\"index\":{\"_id\":\"a\"}}\n{\"@timestamp\":\"2025-11-25T00:00:00Z\"}\n")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["errors"], true);
    assert_eq!(r["items"][0]["index"]["status"], 400);
    assert!(
        r["items"][0]["index"]["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("op_type of create")
    );
    let r: Value = post("{\"create\":{\"_id\":\"a\"}}\n{\"message\":\"no timestamp\"}\n")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"][0]["create"]["status"], 400);
    let body = "{\"create\":{\"_id\":\"a\"}}\n{\"@timestamp\":\"2025-11-25T00:00:00Z\"}\n{\"create\":{\"_id\":\"a\"}}\n{\"@timestamp\":\"2025-11-25T00:00:00Z\"}\n";
    let r: Value = post(body).await.unwrap().json().await.unwrap();
    assert_eq!(r["items"][0]["create"]["status"], 201);
    assert_eq!(r["items"][0]["create"]["result"], "created");
    assert_eq!(r["items"][1]["create"]["status"], 409);
    assert_eq!(
        r["items"][1]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
}

#[tokio::test]
async fn per_item_429_and_503_are_retried_until_every_event_is_in_once() {
    let server = EsServer::start(EsOptions::default());
    server.faults(|f| {
        f.item_429 = 0.3;
        f.item_503 = 0.1;
    });
    let mut sink = sink_for(&server, json!({}));
    let evs = events(500);
    let attempts = deliver_all(&mut sink, &evs).await;
    assert!(attempts > 1, "faults must have forced retries");
    let st = server.stats();
    assert!(st.injected_429 > 50 && st.injected_503 > 10, "{st:?}");
    assert_eq!(server.ids(DS), ids_of(&evs));
    assert_eq!(st.created, 500);
}

#[tokio::test]
async fn whole_request_429_is_a_batch_error_with_the_servers_retry_after() {
    let server = EsServer::start(EsOptions::default());
    server.faults(|f| {
        f.whole_429 = 1;
        f.retry_after_secs = 7;
    });
    let mut sink = sink_for(&server, json!({}));
    let evs = events(20);
    let e = sink.deliver(&evs).await.unwrap_err();
    assert_eq!(e.kind, "http_429");
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(e.reason.contains("es_rejected_execution_exception"), "{e}");
    assert!(server.ids(DS).is_empty());
    sink.deliver(&evs).await.unwrap();
    assert_eq!(server.ids(DS), ids_of(&evs));
}

#[tokio::test]
async fn an_outage_fails_open_and_delivery_then_both_recover() {
    let server = EsServer::start(EsOptions::default());
    server.faults(|f| f.outage = true);
    let mut sink = sink_for(&server, json!({}));
    let e = sink.open(None).await.unwrap_err();
    assert_eq!(e.kind, "http_5xx");
    assert!(e.reason.contains("503"), "{e}");
    let evs = events(30);
    let e = sink.deliver(&evs).await.unwrap_err();
    assert_eq!(e.kind, "http_5xx");
    server.faults(|f| f.outage = false);
    sink.open(None).await.unwrap();
    sink.deliver(&evs).await.unwrap();
    assert_eq!(server.ids(DS), ids_of(&evs));
}

#[tokio::test]
async fn a_lost_response_is_retried_and_the_duplicates_are_409s() {
    let server = EsServer::start(EsOptions::default());
    server.faults(|f| f.lose_responses = 1);
    let mut sink = sink_for(&server, json!({}));
    let evs = events(100);
    let e = sink.deliver(&evs).await.unwrap_err();
    assert_eq!(e.kind, "http_5xx");
    assert!(e.reason.contains("502"), "{e}");
    // Indexed, but the sink could not know: the retry finds every one already there.
    assert_eq!(server.ids(DS), ids_of(&evs));
    let out = sink.deliver(&evs).await.unwrap();
    assert!(out.results.iter().all(|d| *d == Delivery::Delivered));
    assert_eq!(server.stats().conflicts_409, 100);
    assert_eq!(server.ids(DS), ids_of(&evs));
}

#[tokio::test]
async fn mapping_errors_are_rejected_with_elasticsearchs_reason_and_the_rest_delivered() {
    let server = EsServer::start(EsOptions::default());
    let mut sink = sink_for(&server, json!({"install_template": true}));
    sink.open(None).await.unwrap();
    let mut evs = events(10);
    let mut bad_ip: Value = serde_json::from_slice(&evs[3].doc).unwrap();
    bad_ip["source"]["ip"] = json!("not-an-ip");
    evs[3].doc = serde_json::to_vec(&bad_ip).unwrap();
    let mut bad_bool: Value = serde_json::from_slice(&evs[6].doc).unwrap();
    bad_bool["confluence"]["audit"]["sys_admin"] = json!("maybe");
    evs[6].doc = serde_json::to_vec(&bad_bool).unwrap();
    let out = sink.deliver(&evs).await.unwrap();
    for (i, d) in out.results.iter().enumerate() {
        match (i, d) {
            (3, Delivery::Rejected(r)) => {
                assert!(r.contains("400 document_parsing_exception"), "{r}");
                assert!(r.contains("[source.ip] of type [ip]"), "{r}");
                assert!(r.contains("not an IP string literal"), "{r}");
            }
            (6, Delivery::Rejected(r)) => {
                assert!(
                    r.contains("[confluence.audit.sys_admin] of type [boolean]"),
                    "{r}"
                )
            }
            (3 | 6, other) => panic!("{i}: {other:?}"),
            (_, d) => assert_eq!(*d, Delivery::Delivered, "{i}"),
        }
    }
    assert_eq!(server.ids(DS).len(), 8);
    assert_eq!(
        server.stream_template(DS).as_deref(),
        Some("logs-confluence.audit")
    );
}

#[tokio::test]
async fn documents_that_cannot_be_sent_are_rejected_without_breaking_the_batch() {
    let server = EsServer::start(EsOptions::default());
    let mut sink = sink_for(&server, json!({}));
    let mut evs = events(5);
    evs[2].doc = b"{\"message\":\"two\nlines\"}".to_vec();
    let out = sink.deliver(&evs).await.unwrap();
    assert!(matches!(&out.results[2], Delivery::Rejected(r) if r.contains("one line")));
    assert_eq!(server.ids(DS).len(), 4);
}

#[tokio::test]
async fn credentials_are_checked_at_open_and_say_what_is_wrong() {
    let key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    let server = EsServer::start(EsOptions {
        auth: Some(format!("ApiKey {key}")),
        ..Default::default()
    });
    let mut wrong = sink_for(
        &server,
        json!({"auth": {"type": "api_key", "api_key": "d3Jvbmc6a2V5"}}),
    );
    let e = wrong.open(None).await.unwrap_err();
    assert_eq!(e.kind, "auth");
    assert!(e.reason.contains("401"), "{e}");
    assert!(!e.reason.contains(key), "{e}");
    let e = wrong.deliver(&events(3)).await.unwrap_err();
    assert_eq!(e.kind, "auth");

    let mut right = sink_for(
        &server,
        json!({"auth": {"type": "api_key", "api_key": "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"}}),
    );
    right.open(None).await.unwrap();
    let evs = events(3);
    right.deliver(&evs).await.unwrap();
    assert_eq!(server.ids(DS), ids_of(&evs));

    let read_only = EsServer::start(EsOptions {
        auth: Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==".into()),
        deny_write: true,
        ..Default::default()
    });
    let mut sink = sink_for(
        &read_only,
        json!({"auth": {"type": "basic", "username": "elastic", "password": "changeme"}}),
    );
    let e = sink.open(None).await.unwrap_err();
    assert_eq!(e.kind, "auth");
    assert!(e.reason.contains("create_doc"), "{e}");
    assert!(e.reason.contains(DS), "{e}");
    // Items refused for lack of privileges wait for an operator; they are not dead-lettered.
    let out = sink.deliver(&events(2)).await.unwrap();
    assert!(
        out.results
            .iter()
            .all(|d| matches!(d, Delivery::Retry(r) if r.contains("403")))
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut sink = ElasticsearchSink::new(
        "es".into(),
        config(json!({"url": format!("http://127.0.0.1:{port}")})),
    )
    .unwrap();
    let e = sink.open(None).await.unwrap_err();
    assert_eq!(e.kind, "connect", "{e}");
    assert!(e.reason.contains("127.0.0.1"), "{e}");
}

#[tokio::test]
async fn a_dead_node_in_the_pool_is_skipped() {
    let server = EsServer::start(EsOptions::default());
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut sink = sink_for(&server, json!({"urls": [dead, server.url]}));
    sink.open(None).await.unwrap();
    let evs = events(50);
    for chunk in evs.chunks(10) {
        let out = sink.deliver(chunk).await.unwrap();
        assert!(out.results.iter().all(|d| *d == Delivery::Delivered));
    }
    assert_eq!(server.ids(DS), ids_of(&evs));
}

#[tokio::test]
async fn concurrency_splits_a_batch_into_parallel_requests() {
    let server = EsServer::start(EsOptions::default());
    let mut sink = sink_for(&server, json!({"concurrency": 4}));
    let evs = events(400);
    let out = sink.deliver(&evs).await.unwrap();
    assert!(out.results.iter().all(|d| *d == Delivery::Delivered));
    assert_eq!(server.stats().bulk_requests, 4);
    assert_eq!(server.ids(DS), ids_of(&evs));
    // A small batch is not worth splitting.
    let before = server.stats().bulk_requests;
    sink.deliver(&events(420)[400..]).await.unwrap();
    assert_eq!(server.stats().bulk_requests, before + 1);
}

#[tokio::test]
async fn a_413_halves_the_request_and_only_an_oversized_document_is_rejected() {
    let server = EsServer::start(EsOptions::default());
    let mut sink = sink_for(&server, json!({"gzip": false}));
    let mut evs = events(16);
    let one = evs[0].doc.len() + 100;
    server.faults(|f| f.max_request_bytes = one * 5);
    let mut huge: Value = serde_json::from_slice(&evs[9].doc).unwrap();
    huge["message"] = json!("x".repeat(one * 6));
    evs[9].doc = serde_json::to_vec(&huge).unwrap();
    let out = sink.deliver(&evs).await.unwrap();
    for (i, d) in out.results.iter().enumerate() {
        if i == 9 {
            assert!(
                matches!(d, Delivery::Rejected(r) if r.contains("413")),
                "{d:?}"
            );
        } else {
            assert_eq!(*d, Delivery::Delivered, "{i}");
        }
    }
    assert_eq!(server.ids(DS).len(), 15);
}

#[tokio::test]
async fn setup_installs_template_policy_and_dashboards() {
    let server = EsServer::start(EsOptions::default());
    let cfg = config(json!({"url": server.url, "kibana_url": server.url}));
    let (client, _) =
        confluence_audit_forwarder::sink::elasticsearch::client::build_client(&cfg).unwrap();
    let kibana = setup::KibanaTarget::from_config(&cfg).unwrap().unwrap();
    let report = setup::install(&client, &cfg, Some(&kibana)).await.unwrap();
    assert!(report.iter().any(|l| l.contains("Kibana")), "{report:?}");
    let t = server.template("logs-confluence.audit").unwrap();
    assert_eq!(t["index_patterns"], json!(["logs-confluence.audit-*"]));
    assert_eq!(
        t["template"]["settings"]["index.lifecycle.name"],
        "confluence-audit"
    );
    assert!(server.ilm_policy("confluence-audit").is_some());
    let objects = server.kibana_objects();
    let titles: Vec<&str> = objects
        .iter()
        .filter(|o| o["type"] == "dashboard")
        .map(|o| o["attributes"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Soteri findings", "Confluence admin activity"]);
    let data_view = objects
        .iter()
        .find(|o| o["type"] == "index-pattern")
        .unwrap();
    assert_eq!(data_view["attributes"]["title"], "logs-confluence.audit-*");

    // A data stream elsewhere gets a template of its own; an index gets no data stream.
    let other = config(json!({"url": server.url, "data_stream": "logs-audit-prod"}));
    let (name, t) = setup::template_for(&other).unwrap();
    assert_eq!(name, "confluence-audit-logs-audit-prod");
    assert_eq!(t["index_patterns"], json!(["logs-audit-prod"]));
    let index = config(json!({"url": server.url, "index": "confluence-audit"}));
    let (_, t) = setup::template_for(&index).unwrap();
    assert!(t.get("data_stream").is_none());
    setup::install(&client, &index, None).await.unwrap();
    let mut sink = sink_for(&server, json!({"index": "confluence-audit"}));
    sink.deliver(&events(5)).await.unwrap();
    assert_eq!(server.is_data_stream("confluence-audit"), Some(false));
}

#[tokio::test]
async fn kibana_import_reports_broken_references() {
    // The server's import check is what vouches for the shipped NDJSON: make sure it bites.
    let server = EsServer::start(EsOptions::default());
    let http = reqwest::Client::new();
    let ndjson = r#"{"type":"dashboard","id":"d","attributes":{"title":"x"},"references":[{"type":"visualization","id":"missing","name":"panel_0"}]}"#;
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.ndjson\"\r\nContent-Type: application/ndjson\r\n\r\n{ndjson}\n\r\n--b--\r\n"
    );
    let r: Value = http
        .post(format!(
            "{}/api/saved_objects/_import?overwrite=true",
            server.url
        ))
        .header("kbn-xsrf", "true")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["success"], false);
    assert_eq!(r["errors"][0]["error"]["type"], "missing_references");
}
