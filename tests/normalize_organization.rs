//! Organization audit log events (fixtures written from `../shared/spec/atlassian-org-audit-api.md`,
//! one per action family) normalized and checked field by field, and every emitted field
//! against the ECS 9.4.0 field list (`confluence.*` is ours).

use serde_json::Value;

use confluence_audit_forwarder::normalize::NormalizeOptions;
use confluence_audit_forwarder::normalize::organization::{
    DATASET, OrgDocument, event_id, normalize, normalize_or_error,
};

const CREATED: &str = "2026-11-21T08:00:00.000Z";

fn fixtures() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/organization/events.ndjson"
    ))
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn doc_of(raw: &Value) -> (OrgDocument, Value) {
    let d = normalize(raw, CREATED, &NormalizeOptions::default()).unwrap();
    let v = serde_json::from_slice(&d.doc).unwrap();
    (d, v)
}

fn by_action(action: &str) -> (OrgDocument, Value) {
    let raw = fixtures()
        .into_iter()
        .find(|f| f["attributes"]["action"] == action)
        .unwrap_or_else(|| panic!("no fixture for {action}"));
    doc_of(&raw)
}

#[test]
fn a_login_maps_user_source_geo_and_site() {
    let (d, doc) = by_action("user_logged_in_with_password");
    assert_eq!(d.source_id, "3c2d8e1a-7b4f-4a8e-9c1d-2e3f4a5b6c7d");
    assert_eq!(doc["event"]["id"], event_id(&d.source_id));
    assert_eq!(doc["@timestamp"], "2026-11-20T09:14:03.512Z");
    assert_eq!(doc["event"]["created"], CREATED);
    assert_eq!(doc["event"]["action"], "user_logged_in_with_password");
    assert_eq!(
        doc["event"]["category"],
        serde_json::json!(["authentication"])
    );
    assert_eq!(doc["event"]["type"], serde_json::json!(["start"]));
    assert_eq!(doc["event"]["outcome"], "success");
    assert_eq!(doc["event"]["dataset"], DATASET);
    assert_eq!(doc["data_stream"]["dataset"], DATASET);
    assert_eq!(doc["user"]["id"], "5b10ac8d82e05b22cc7d4ef5");
    assert_eq!(doc["user"]["full_name"], "Jane Admin");
    assert_eq!(doc["user"]["email"], "jane@example.com");
    assert_eq!(doc["source"]["ip"], "203.0.113.7");
    assert_eq!(doc["source"]["geo"]["country_iso_code"], "DE");
    assert_eq!(doc["source"]["geo"]["country_name"], "Germany");
    assert_eq!(doc["source"]["geo"]["city_name"], "Berlin");
    assert_eq!(doc["service"]["address"], "example.atlassian.net");
    assert_eq!(doc["cloud"]["instance"]["name"], "example");
    assert_eq!(doc["message"], "Jane Admin logged in");
    let raw = &doc["confluence"]["organization"];
    assert_eq!(raw["processed_at"], "2026-11-20T09:14:05.020Z");
    assert_eq!(raw["attributes"]["actor"]["auth"]["authType"], "password");
}

#[test]
fn each_action_family_is_categorized() {
    for (action, category, kind) in [
        ("api_token_used", "authentication", "info"),
        ("space_exported", "file", "access"),
        ("page_viewed", "web", "access"),
        ("user_added_to_group", "iam", "group"),
        ("authentication_policy_updated", "configuration", "change"),
    ] {
        let (d, doc) = by_action(action);
        assert!(d.known_action, "{action}");
        assert_eq!(doc["event"]["category"][0], category, "{action}");
        assert_eq!(doc["event"]["type"][0], kind, "{action}");
    }
    let (_, export) = by_action("space_exported");
    assert_eq!(
        export["url"]["full"],
        "https://example.atlassian.net/wiki/spaces/OPS"
    );
    assert_eq!(
        export["@timestamp"], "2026-11-20T07:30:00.000Z",
        "happened hours before processing"
    );
    let (_, group) = by_action("user_added_to_group");
    assert_eq!(group["group"]["name"], "confluence-admins");
    assert_eq!(group["source"]["ip"], "2001:db8::42");
    assert!(
        group.get("service").is_none(),
        "an organization-wide event has no site"
    );
}

#[test]
fn an_unknown_action_from_a_system_actor_is_forwarded_generically() {
    let (d, doc) = by_action("app_data_access_requested");
    assert!(!d.known_action);
    assert_eq!(doc["event"]["action"], "app_data_access_requested");
    assert_eq!(doc["event"]["type"], serde_json::json!(["info"]));
    assert!(doc["user"].get("email").is_none());
    assert_eq!(doc["user"]["effective"]["id"], "5b10ac8d82e05b22cc7d4ef5");
    assert!(doc.get("source").is_none());
}

#[test]
fn a_bad_field_is_named() {
    let mut raw = fixtures().remove(0);
    raw["attributes"]["location"]["ip"] = "not-an-ip".into();
    let e = normalize(&raw, CREATED, &NormalizeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("attributes.location.ip"), "{e}");
    raw["attributes"]["processedAt"] = 5.into();
    let e = normalize(&raw, CREATED, &NormalizeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("processedAt"), "{e}");
}

#[test]
fn every_field_is_ecs_9_4() {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/spec/ecs-9.4.0-fields.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let fields = spec["fields"].as_object().unwrap();
    let allowed = |field: &str, v: &Value| {
        fields[field]["allowed_values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| &a["name"] == v)
    };
    for raw in fixtures() {
        let (_, doc) = doc_of(&raw);
        let mut leaves = Vec::new();
        collect("", &doc, &mut leaves);
        for (path, v) in leaves {
            if path.starts_with("confluence.") {
                continue;
            }
            let def = fields
                .get(&path)
                .unwrap_or_else(|| panic!("{path}: not an ECS 9.4.0 field"));
            if matches!(def["type"].as_str(), Some("ip")) {
                assert!(
                    v.as_str().unwrap().parse::<std::net::IpAddr>().is_ok(),
                    "{path}"
                );
            }
        }
        assert!(allowed("event.kind", &doc["event"]["kind"]));
        for c in doc["event"]["category"].as_array().unwrap() {
            assert!(allowed("event.category", c), "{c}");
        }
        for t in doc["event"]["type"].as_array().unwrap() {
            assert!(allowed("event.type", t), "{t}");
        }
    }
}

/// Every leaf (arrays count as one field) with its dotted path.
fn collect(path: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect(&p, child, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push((path.to_owned(), item.clone()));
            }
        }
        leaf => out.push((path.to_owned(), leaf.clone())),
    }
}

#[test]
fn an_event_that_cannot_be_normalized_becomes_a_pipeline_error_in_order() {
    let opts = NormalizeOptions::default();
    let mut raw = fixtures().remove(0);
    raw["attributes"]["location"]["ip"] = "not-an-ip".into();
    let d = normalize_or_error(&raw, CREATED, &opts, 0);
    let doc: serde_json::Value = serde_json::from_slice(&d.doc).unwrap();
    assert_eq!(doc["event"]["kind"], "pipeline_error");
    assert_eq!(
        d.source_id,
        raw["id"].as_str().unwrap(),
        "deduplicated by its id"
    );
    assert_eq!(
        doc["event"]["id"],
        event_id(raw["id"].as_str().unwrap()).as_str()
    );
    assert!(
        d.error
            .as_deref()
            .unwrap()
            .contains("attributes.location.ip")
    );
    let processed = d.processed_ms;
    assert!(processed > 0, "its own processedAt is its position");

    // Without id or processedAt: a stable hash, and the position before it.
    let broken = serde_json::json!({"attributes": {"action": "page_viewed"}});
    let a = normalize_or_error(&broken, CREATED, &opts, 42);
    let b = normalize_or_error(&broken, "2030-01-01T00:00:00.000Z", &opts, 42);
    assert!(a.source_id.starts_with("unidentified:"), "{}", a.source_id);
    assert_eq!(a.source_id, b.source_id, "a re-read is the same event");
    assert_eq!(a.processed_ms, 42);
    let fine = fixtures().remove(0);
    assert!(normalize_or_error(&fine, CREATED, &opts, 0).error.is_none());
}
