//! The `_bulk` contract, asserted alike against the in-repo imitation (`tests/es_server/`,
//! kept for fault injection), a real OpenSearch 2.19 (tests/servers/opensearch.sh) and a real
//! Elasticsearch 8.19 (tests/servers/elasticsearch.sh; its integ-test zip has no data streams,
//! so it gets the index half only): if the imitation drifts from a real cluster on a behaviour
//! the sink relies on, this fails.
//!
//! Shared behaviours checked, with the same raw HTTP requests: the target created on first
//! write from the matching index template (a data stream when the template says so);
//! per-item status inside a 200 with `errors: true`; 409 `version_conflict_engine_exception`
//! on a duplicate `create` (in the same request and in a later one); in a data stream only
//! `create`, and `@timestamp` required; a mapping error as a 400 item naming the field and its
//! type; a body must end with a newline. The one known difference is the mapping error's
//! type: Elasticsearch 8 (and the imitation) say `document_parsing_exception`, OpenSearch
//! `mapper_parsing_exception`.

mod es_server;
mod real_servers;

use es_server::{EsOptions, EsServer};
use real_servers::{RealServer, http};
use serde_json::{Value, json};

#[test]
fn the_imitation_keeps_the_bulk_contract() {
    let es = EsServer::start(EsOptions::default());
    contract(&es.url, Target::DataStream);
    contract(&es.url, Target::Index);
}

#[test]
fn real_opensearch_keeps_the_bulk_contract() {
    let Some(server) = RealServer::start("opensearch", "bulk_contract") else {
        return;
    };
    contract(&server.url, Target::DataStream);
    contract(&server.url, Target::Index);
}

#[test]
fn real_elasticsearch_keeps_the_bulk_contract_for_indices() {
    let Some(server) = RealServer::start("elasticsearch", "bulk_contract") else {
        return;
    };
    contract(&server.url, Target::Index);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    DataStream,
    Index,
}

const TS: &str = "2025-11-25T10:00:00.000Z";

fn bulk(url: &str, target: &str, lines: &[Value]) -> (u16, Value) {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    http("POST", &format!("{url}/{target}/_bulk"), Some(&body))
}

fn statuses(resp: &Value) -> Vec<(String, u64)> {
    resp["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {resp}"))
        .iter()
        .map(|i| {
            let (op, item) = i.as_object().unwrap().iter().next().unwrap();
            (op.clone(), item["status"].as_u64().unwrap())
        })
        .collect()
}

fn item(resp: &Value, n: usize) -> &Value {
    resp["items"][n]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
}

fn contract(url: &str, target: Target) {
    let data_stream = target == Target::DataStream;
    let kind = if data_stream { "ds" } else { "ix" };
    let mut template = json!({
        "index_patterns": [format!("caf-contract-{kind}-*")], "priority": 500,
        "template": {"mappings": {"properties": {
            "@timestamp": {"type": "date"}, "n": {"type": "long"}, "s": {"type": "keyword"}
        }}}
    });
    if data_stream {
        template["data_stream"] = json!({});
    }
    let (status, body) = http(
        "PUT",
        &format!("{url}/_index_template/caf-contract-{kind}"),
        Some(&template.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let ds = &format!("caf-contract-{kind}-a");
    let (status, resp) = bulk(
        url,
        ds,
        &[
            json!({"create": {"_id": "1"}}),
            json!({"@timestamp": TS, "n": 1, "s": "one"}),
            json!({"create": {"_id": "2"}}),
            json!({"@timestamp": TS, "n": "not a number"}),
            json!({"index": {"_id": "3"}}),
            json!({"@timestamp": TS, "n": 3}),
            json!({"create": {"_id": "1"}}),
            json!({"@timestamp": TS, "n": 1, "s": "one again"}),
            json!({"create": {"_id": "4"}}),
            json!({"n": 4}),
        ],
    );
    // Per-item answers inside a 200. In a data stream, `index` and a document without
    // `@timestamp` are refused; in an index both are fine.
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["errors"], true);
    let (index_op, no_timestamp) = if data_stream { (400, 400) } else { (201, 201) };
    assert_eq!(
        statuses(&resp),
        [
            ("create".into(), 201),
            ("create".into(), 400),
            ("index".into(), index_op),
            ("create".into(), 409),
            ("create".into(), no_timestamp)
        ],
        "{resp}"
    );
    for (n, id) in ["1", "2", "3", "1", "4"].iter().enumerate() {
        assert_eq!(item(&resp, n)["_id"], *id, "{resp}");
    }
    // The first write created the target; in a data stream, items land in a backing index.
    let created = item(&resp, 0);
    let index = created["_index"].as_str().unwrap();
    if data_stream {
        assert!(index.starts_with(&format!(".ds-{ds}-")), "{created}");
    } else {
        assert_eq!(index, ds, "{created}");
    }
    assert_eq!(created["result"], "created");
    // A mapping error names the field and its type.
    let mapping = &item(&resp, 1)["error"];
    let error_type = mapping["type"].as_str().unwrap();
    assert!(
        error_type == "mapper_parsing_exception" || error_type == "document_parsing_exception",
        "{mapping}"
    );
    assert!(
        mapping["reason"]
            .as_str()
            .unwrap()
            .contains("failed to parse field [n] of type [long] in document with id '2'"),
        "{mapping}"
    );
    // A duplicate `create` in the same request.
    let dup = &item(&resp, 3)["error"];
    assert_eq!(dup["type"], "version_conflict_engine_exception", "{dup}");
    assert!(
        dup["reason"]
            .as_str()
            .unwrap()
            .starts_with("[1]: version conflict, document already exists"),
        "{dup}"
    );
    if data_stream {
        // Only `create` in a data stream, and `@timestamp` required.
        let index_refused = &item(&resp, 2)["error"];
        assert_eq!(index_refused["type"], "illegal_argument_exception");
        assert_eq!(
            index_refused["reason"],
            "only write ops with an op_type of create are allowed in data streams"
        );
        let no_ts = &item(&resp, 4)["error"];
        assert!(no_ts.to_string().contains("@timestamp"), "{no_ts}");
        // The stream came from the template.
        let (status, stream) = http("GET", &format!("{url}/_data_stream/{ds}"), None);
        assert_eq!(status, 200, "{stream}");
        assert_eq!(stream["data_streams"][0]["template"], "caf-contract-ds");
    }

    // A duplicate `create` in a later request: 409 again.
    let (status, again) = bulk(
        url,
        ds,
        &[
            json!({"create": {"_id": "1"}}),
            json!({"@timestamp": TS, "n": 1}),
            json!({"create": {"_id": "5"}}),
            json!({"@timestamp": TS, "n": 5}),
        ],
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        statuses(&again),
        [("create".into(), 409), ("create".into(), 201)],
        "{again}"
    );

    // A body must end with a newline: the whole request is refused.
    let body = format!(
        "{}\n{}",
        json!({"create": {"_id": "6"}}),
        json!({"@timestamp": TS, "n": 6})
    );
    let (status, refused) = http("POST", &format!("{url}/{ds}/_bulk"), Some(&body));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(
        refused["error"]["type"], "illegal_argument_exception",
        "{refused}"
    );
    assert!(
        refused["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("must be terminated by a newline"),
        "{refused}"
    );
}
