//! One record, four shapes: how the legacy and Cloud `AuditRecord`, the DC advanced-auditing
//! entity and the DC audit-file line each write the same event.
//!
//! Rendering is deterministic — the same record always gives the same bytes — because the
//! poller's count-aware deduplication depends on a re-fetched record being identical.

use serde::Serialize;

use super::catalog::{Object, Record};
use crate::normalize::Api;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditRecord<'a> {
    author: LegacyAuthor<'a>,
    remote_address: &'a str,
    creation_date: i64,
    summary: &'a str,
    description: &'a str,
    category: &'a str,
    sys_admin: bool,
    super_admin: bool,
    affected_object: LegacyObject,
    changed_values: Vec<LegacyChange<'a>>,
    associated_objects: Vec<LegacyObject>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyAuthor<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    display_name: &'a str,
    operations: Option<()>,
    is_external_collaborator: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    account_type: &'static str,
    public_name: &'a str,
    external_collaborator: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyObject {
    name: String,
    object_type: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyChange<'a> {
    name: &'a str,
    old_value: &'a str,
    new_value: &'a str,
    hidden_old_value: &'static str,
    hidden_new_value: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entity<'a> {
    timestamp: String,
    author: EntityAuthor<'a>,
    #[serde(rename = "type")]
    kind: EntityType<'a>,
    affected_objects: Vec<EntityObject<'a>>,
    changed_values: Vec<EntityChange<'a>>,
    source: &'a str,
    system: &'a str,
    method: &'static str,
    extra_attributes: Vec<EntityAttribute<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntityAuthor<'a> {
    name: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_uri: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntityType<'a> {
    category_i18n_key: &'a str,
    category: &'a str,
    action_i18n_key: &'a str,
    action: &'a str,
    area: &'a str,
    level: &'static str,
}

#[derive(Serialize)]
struct EntityObject<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uri: &'a str,
    id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntityChange<'a> {
    key: &'a str,
    i18n_key: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    from: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    to: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntityAttribute<'a> {
    name_i18n_key: &'a str,
    name: &'a str,
    value: &'a str,
}

/// Render `r` as the record `api` returns, appending to `out`.
pub fn render(api: Api, r: &Record, base: &str, out: &mut Vec<u8>) {
    match api {
        Api::Legacy | Api::Cloud => audit_record(api, r, out),
        Api::Auditing => entity(r, base, out),
        Api::File => file_line(r, base, out),
        // Organization events are another store's (simulate::organization).
        Api::Organization => {}
    }
}

fn audit_record(api: Api, r: &Record, out: &mut Vec<u8>) {
    let cloud = api == Api::Cloud;
    let object = |o: &Object| LegacyObject {
        // Cloud group names carry a directory suffix.
        name: if cloud && o.kind == "Group" {
            format!("{}:{}", o.name, super::catalog::uuid_of(&o.name))
        } else {
            o.name.clone()
        },
        object_type: o.kind.clone(),
    };
    let system = r.author.username == "system";
    // Nobody to name: the system, or an anonymous caller.
    let nobody = system || r.author.username == "anonymous";
    let mut changed: Vec<LegacyChange<'_>> = r
        .changed
        .iter()
        .map(|c| LegacyChange {
            name: &c.key,
            old_value: &c.from,
            new_value: &c.to,
            hidden_old_value: "",
            hidden_new_value: "",
        })
        .collect();
    // AuditRecord has no extra attributes: apps put their details in changed values.
    changed.extend(r.extra.iter().map(|a| LegacyChange {
        name: &a.name,
        old_value: "",
        new_value: &a.value,
        hidden_old_value: "",
        hidden_new_value: "",
    }));
    let rec = AuditRecord {
        author: LegacyAuthor {
            kind: "user",
            display_name: if system {
                "System"
            } else {
                &r.author.display_name
            },
            operations: None,
            is_external_collaborator: false,
            username: (!cloud && !nobody).then_some(r.author.username.as_str()),
            user_key: (!cloud && !nobody).then_some(r.author.id.as_str()),
            account_id: (!nobody).then_some(r.author.id.as_str()),
            account_type: if cloud && !nobody { "atlassian" } else { "" },
            public_name: if nobody {
                "Unknown user"
            } else {
                &r.author.display_name
            },
            external_collaborator: false,
        },
        remote_address: &r.source_ip,
        creation_date: r.ts_ms,
        summary: &r.action,
        description: "",
        category: &r.category,
        sys_admin: false,
        super_admin: false,
        affected_object: r.affected.first().map(object).unwrap_or(LegacyObject {
            name: String::new(),
            object_type: String::new(),
        }),
        changed_values: changed,
        associated_objects: r.affected.iter().skip(1).map(object).collect(),
    };
    serde_json::to_writer(out, &rec).expect("writing JSON to a Vec");
}

fn entity(r: &Record, base: &str, out: &mut Vec<u8>) {
    let anonymous = r.author.username == "anonymous";
    let system = r.author.username == "system";
    let e = Entity {
        timestamp: crate::source::paging::iso(r.ts_ms),
        author: EntityAuthor {
            name: &r.author.display_name,
            // Anonymous authors are `{"id":"-2","name":"Anonymous"}` and nothing else.
            kind: match (anonymous, system) {
                (true, _) => None,
                (_, true) => Some("system"),
                _ => Some("user"),
            },
            id: if anonymous { "-2" } else { &r.author.id },
            uri: (!anonymous && !system).then(|| {
                format!(
                    "{base}/admin/users/viewuser.action?username={}",
                    r.author.username
                )
            }),
            avatar_uri: (!anonymous && !system).then_some(""),
        },
        kind: EntityType {
            category_i18n_key: &r.category_key,
            category: &r.category,
            action_i18n_key: &r.action_key,
            action: &r.action,
            area: &r.area,
            level: "BASE",
        },
        affected_objects: r
            .affected
            .iter()
            .map(|o| EntityObject {
                name: &o.name,
                kind: &o.kind,
                uri: &o.uri,
                id: &o.id,
            })
            .collect(),
        changed_values: r
            .changed
            .iter()
            .map(|c| EntityChange {
                key: &c.key,
                i18n_key: &c.key,
                from: &c.from,
                to: &c.to,
            })
            .collect(),
        source: &r.source_ip,
        system: base,
        method: "Browser",
        extra_attributes: r
            .extra
            .iter()
            .map(|a| EntityAttribute {
                name_i18n_key: &a.key,
                name: &a.name,
                value: &a.value,
            })
            .collect(),
    };
    serde_json::to_writer(out, &e).expect("writing JSON to a Vec");
}

/// `r` as one line of a DC audit log file (no newline).
pub fn render_file_line(r: &Record, base: &str) -> String {
    let mut out = Vec::new();
    file_line(r, base, &mut out);
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The DC audit-file line: sorted keys, `auditType`, `{epochSecond, nano}`.
fn file_line(r: &Record, base: &str, out: &mut Vec<u8>) {
    let mut v = Vec::new();
    entity(r, base, &mut v);
    let mut value: serde_json::Value = serde_json::from_slice(&v).expect("own JSON");
    let map = value.as_object_mut().expect("object");
    let kind = map.remove("type").expect("type");
    map.insert("auditType".into(), kind);
    map.insert(
        "timestamp".into(),
        serde_json::json!({
            "epochSecond": r.ts_ms.div_euclid(1000),
            "nano": r.ts_ms.rem_euclid(1000) * 1_000_000,
        }),
    );
    map.insert("version".into(), "1.0".into());
    serde_json::to_writer(out, &sorted(value)).expect("writing JSON to a Vec");
}

/// Keys sorted at every level, whatever map serde_json was built with.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
