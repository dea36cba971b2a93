//! Issue 15, point 5: one audit event read from the DC audit log file and from the advanced
//! auditing API (`/rest/auditing/1.0/events`) gives the same `event.id` and the same ECS
//! document, apart from the fields that say where it was read.
//!
//! The shared fixtures hold no event in both shapes (they are different events), so each
//! file line is paired with the API entity that the spec says Confluence serves for it
//! (`auditType` → `type`, `{epochSecond, nano}` → an RFC 3339 time in milliseconds; spec
//! §4), and every kind the simulator knows is rendered in both shapes from one record.

use confluence_audit_forwarder::normalize::{Api, NormalizeOptions, parse_record, write_ecs};
use confluence_audit_forwarder::simulate::catalog::{self, KINDS};
use confluence_audit_forwarder::simulate::render;
use serde_json::Value;

fn normalized(api: Api, raw: &str) -> Value {
    let r = parse_record(api, raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let mut out = Vec::new();
    write_ecs(
        &r,
        0,
        "2026-11-25T00:00:00.000Z",
        &NormalizeOptions::default(),
        &mut out,
    )
    .unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// The API entity for a file line, as spec §4 describes the difference.
fn as_api_entity(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    let map = v.as_object_mut().unwrap();
    let kind = map.remove("auditType").unwrap();
    map.insert("type".into(), kind);
    let t = &map["timestamp"];
    let ns = t["epochSecond"].as_i64().unwrap() as i128 * 1_000_000_000
        + t["nano"].as_i64().unwrap() as i128;
    let when = time::OffsetDateTime::from_unix_timestamp_nanos(ns / 1_000_000 * 1_000_000).unwrap();
    let iso = when
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    map.insert("timestamp".into(), Value::String(iso));
    map.remove("version");
    v.to_string()
}

/// A document with the fields that name where it was read taken out.
fn without_origin(mut doc: Value) -> Value {
    doc["event"].as_object_mut().unwrap().remove("dataset");
    if let Some(audit) = doc["confluence"]["audit"].as_object_mut() {
        audit.remove("source");
    }
    doc
}

fn assert_same_event(file_line: &str, entity: &str) {
    let (from_file, from_api) = (
        normalized(Api::File, file_line),
        normalized(Api::Auditing, entity),
    );
    assert_eq!(
        from_file["event"]["id"], from_api["event"]["id"],
        "event.id of {file_line}"
    );
    assert_eq!(
        without_origin(from_file),
        without_origin(from_api),
        "the document of {file_line}"
    );
}

#[test]
fn fixture_file_lines_and_their_api_entities_give_the_same_event() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/api");
    let mut n = 0;
    for name in ["dc-audit-file.audit.log", "dc-audit-file-more.audit.log"] {
        for line in std::fs::read_to_string(dir.join(name)).unwrap().lines() {
            assert_same_event(line, &as_api_entity(line));
            n += 1;
        }
    }
    assert_eq!(n, 10);
}

#[test]
fn every_simulated_kind_gives_the_same_event_from_the_file_and_the_api() {
    for (i, _) in KINDS.iter().enumerate() {
        let record = catalog::example(i);
        let render_as = |api| {
            let mut raw = Vec::new();
            render::render(api, &record, "https://wiki.example.com", &mut raw);
            String::from_utf8(raw).unwrap()
        };
        assert_same_event(&render_as(Api::File), &render_as(Api::Auditing));
    }
}
