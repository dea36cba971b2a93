//! The four record shapes Confluence writes, read into one borrowed view.
//!
//! Legacy and Cloud `AuditRecord`s, DC advanced-auditing entities and DC audit-file lines
//! say the same things with different names. Each is deserialized with serde borrowing from
//! the raw text (no copies where the JSON has no escapes) and then seen through one
//! [`Record`] shape, so the mapping, the hash and the writer handle one thing.

use std::borrow::Cow;

use serde::Deserialize;

use super::{Api, NormalizeError};

type Text<'a> = Option<Cow<'a, str>>;

/// One audit record, whatever its shape.
#[derive(Debug, Clone, Default)]
pub struct Fields<'a> {
    pub ts_ms: i64,
    /// Nanoseconds within the millisecond (DC audit file only).
    pub sub_ms_nanos: u32,
    /// DC author id, legacy user key, Cloud account id.
    pub author_id: Text<'a>,
    /// Login name: legacy `username`, DC `?username=` of `author.uri`.
    pub author_username: Text<'a>,
    pub author_display: Text<'a>,
    pub author_type: Text<'a>,
    pub author_uri: Text<'a>,
    pub account_type: Text<'a>,
    pub external_collaborator: Option<bool>,
    pub source: Text<'a>,
    pub system: Text<'a>,
    pub method: Text<'a>,
    pub category: Text<'a>,
    pub category_key: Text<'a>,
    pub action: Text<'a>,
    pub action_key: Text<'a>,
    pub area: Text<'a>,
    pub level: Text<'a>,
    pub description: Text<'a>,
    pub sys_admin: Option<bool>,
    pub super_admin: Option<bool>,
    pub affected: Vec<Object<'a>>,
    pub changed: Vec<Change<'a>>,
    pub extra: Vec<Attribute<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object<'a> {
    pub name: Text<'a>,
    pub kind: Text<'a>,
    pub id: Text<'a>,
    pub uri: Text<'a>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change<'a> {
    pub key: Text<'a>,
    pub i18n_key: Text<'a>,
    pub from: Text<'a>,
    pub to: Text<'a>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub name: Text<'a>,
    pub name_i18n_key: Text<'a>,
    pub value: Text<'a>,
}

// ---- Legacy and Cloud AuditRecord ------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditRecord<'a> {
    #[serde(borrow, default)]
    author: Option<LegacyAuthor<'a>>,
    #[serde(borrow, default)]
    remote_address: Text<'a>,
    #[serde(default)]
    creation_date: Option<i64>,
    #[serde(borrow, default)]
    summary: Text<'a>,
    #[serde(borrow, default)]
    description: Text<'a>,
    #[serde(borrow, default)]
    category: Text<'a>,
    #[serde(default)]
    sys_admin: Option<bool>,
    #[serde(default)]
    super_admin: Option<bool>,
    #[serde(borrow, default)]
    affected_object: Option<LegacyObject<'a>>,
    #[serde(borrow, default)]
    changed_values: Option<Vec<LegacyChange<'a>>>,
    #[serde(borrow, default)]
    associated_objects: Option<Vec<LegacyObject<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyAuthor<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    display_name: Text<'a>,
    #[serde(borrow, default)]
    username: Text<'a>,
    #[serde(borrow, default)]
    user_key: Text<'a>,
    #[serde(borrow, default)]
    account_id: Text<'a>,
    #[serde(borrow, default)]
    account_type: Text<'a>,
    #[serde(default)]
    external_collaborator: Option<bool>,
    #[serde(default)]
    is_external_collaborator: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyObject<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    object_type: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyChange<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    old_value: Text<'a>,
    #[serde(borrow, default)]
    new_value: Text<'a>,
}

// ---- DC entity (REST and audit file) ---------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entity<'a, T> {
    #[serde(default = "Option::default")]
    timestamp: Option<T>,
    #[serde(borrow, default)]
    author: Option<EntityAuthor<'a>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<EntityType<'a>>,
    #[serde(borrow, default)]
    audit_type: Option<EntityType<'a>>,
    #[serde(borrow, default)]
    affected_objects: Option<Vec<EntityObject<'a>>>,
    #[serde(borrow, default)]
    changed_values: Option<Vec<EntityChange<'a>>>,
    #[serde(borrow, default)]
    extra_attributes: Option<Vec<EntityAttribute<'a>>>,
    #[serde(borrow, default)]
    source: Text<'a>,
    #[serde(borrow, default)]
    system: Text<'a>,
    #[serde(borrow, default)]
    method: Text<'a>,
}

#[derive(Deserialize)]
struct FileTimestamp {
    #[serde(rename = "epochSecond")]
    epoch_second: i64,
    #[serde(default)]
    nano: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityAuthor<'a> {
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    uri: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityType<'a> {
    #[serde(borrow, default)]
    category: Text<'a>,
    #[serde(borrow, default, rename = "categoryI18nKey")]
    category_key: Text<'a>,
    #[serde(borrow, default)]
    action: Text<'a>,
    #[serde(borrow, default, rename = "actionI18nKey")]
    action_key: Text<'a>,
    #[serde(borrow, default)]
    area: Text<'a>,
    #[serde(borrow, default)]
    level: Text<'a>,
}

#[derive(Deserialize)]
struct EntityObject<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    uri: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityChange<'a> {
    #[serde(borrow, default)]
    key: Text<'a>,
    #[serde(borrow, default, rename = "i18nKey")]
    i18n_key: Text<'a>,
    #[serde(borrow, default)]
    from: Text<'a>,
    #[serde(borrow, default)]
    to: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityAttribute<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default, rename = "nameI18nKey")]
    name_i18n_key: Text<'a>,
    #[serde(borrow, default)]
    value: Text<'a>,
}

/// Parse `raw` as a record of shape `api`.
pub fn parse(api: Api, raw: &str) -> Result<Fields<'_>, NormalizeError> {
    match api {
        Api::Legacy | Api::Cloud => {
            let r: AuditRecord<'_> = from_str(api, raw)?;
            from_audit_record(r)
        }
        Api::Auditing => {
            let e: Entity<'_, Cow<'_, str>> = from_str(api, raw)?;
            let ts = e.timestamp.as_deref().ok_or(NormalizeError::Field {
                field: "timestamp",
                problem: "missing".into(),
            })?;
            let ts_ms = parse_iso_ms(ts)?;
            Ok(from_entity(e, ts_ms, 0))
        }
        Api::File => {
            let e: Entity<'_, FileTimestamp> = from_str(api, raw)?;
            let ts = e.timestamp.as_ref().ok_or(NormalizeError::Field {
                field: "timestamp",
                problem: "missing".into(),
            })?;
            if !(0..1_000_000_000).contains(&ts.nano) {
                return Err(NormalizeError::Field {
                    field: "timestamp.nano",
                    problem: format!("{} is not within 0..1000000000", ts.nano),
                });
            }
            // Seconds plus nanoseconds: nano 54000000 is .054, not .540.
            let ts_ms = ts
                .epoch_second
                .checked_mul(1000)
                .and_then(|ms| ms.checked_add(ts.nano / 1_000_000))
                .ok_or(NormalizeError::Field {
                    field: "timestamp.epochSecond",
                    problem: "out of range".into(),
                })?;
            let sub = (ts.nano % 1_000_000) as u32;
            Ok(from_entity(e, ts_ms, sub))
        }
    }
}

/// Deserialize, and on failure say which field was wrong (a second, slower pass that only
/// runs for bad input).
fn from_str<'a, T: Deserialize<'a>>(api: Api, raw: &'a str) -> Result<T, NormalizeError> {
    serde_json::from_str(raw).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            return NormalizeError::Json(e);
        }
        let mut de = serde_json::Deserializer::from_str(raw);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(pe) => NormalizeError::Invalid {
                api,
                path: pe.path().to_string(),
                problem: pe.inner().to_string(),
            },
            Ok(_) => NormalizeError::Json(e),
        }
    })
}

fn parse_iso_ms(s: &str) -> Result<i64, NormalizeError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| NormalizeError::Field {
            field: "timestamp",
            problem: format!("{s:?} is not an ISO-8601 time ({e})"),
        })?;
    Ok((t.unix_timestamp_nanos().div_euclid(1_000_000)) as i64)
}

fn from_audit_record(r: AuditRecord<'_>) -> Result<Fields<'_>, NormalizeError> {
    fn object(o: LegacyObject<'_>) -> Object<'_> {
        Object {
            name: o.name,
            kind: o.object_type,
            id: None,
            uri: None,
        }
    }
    let ts_ms = r.creation_date.ok_or(NormalizeError::Field {
        field: "creationDate",
        problem: "missing".into(),
    })?;
    let mut f = Fields {
        ts_ms,
        source: r.remote_address,
        category: r.category,
        action: r.summary,
        description: r.description,
        sys_admin: r.sys_admin,
        super_admin: r.super_admin,
        ..Fields::default()
    };
    if let Some(a) = r.author {
        f.author_id = a.account_id.filter(|s| !s.is_empty()).or(a.user_key);
        f.author_username = a.username;
        f.author_display = a.display_name;
        f.author_type = a.kind;
        f.account_type = a.account_type;
        f.external_collaborator = a.is_external_collaborator.or(a.external_collaborator);
    }
    // An empty `affectedObject` ({"name":"","objectType":""}) means none.
    if let Some(o) = r.affected_object.filter(|o| {
        o.name.as_deref().is_some_and(|s| !s.is_empty())
            || o.object_type.as_deref().is_some_and(|s| !s.is_empty())
    }) {
        f.affected.push(object(o));
    }
    f.affected
        .extend(r.associated_objects.into_iter().flatten().map(object));
    f.changed = r
        .changed_values
        .into_iter()
        .flatten()
        .map(|c| Change {
            key: c.name,
            i18n_key: None,
            from: c.old_value,
            to: c.new_value,
        })
        .collect();
    Ok(f)
}

fn from_entity<'a, T>(e: Entity<'a, T>, ts_ms: i64, sub_ms_nanos: u32) -> Fields<'a> {
    let mut f = Fields {
        ts_ms,
        sub_ms_nanos,
        source: e.source,
        system: e.system,
        method: e.method,
        ..Fields::default()
    };
    if let Some(a) = e.author {
        f.author_username = a
            .uri
            .as_deref()
            .and_then(username_from_uri)
            .map(|u| Cow::Owned(u.into_owned()));
        f.author_id = a.id;
        f.author_display = a.name;
        f.author_type = a.kind;
        f.author_uri = a.uri;
    }
    if let Some(t) = e.kind.or(e.audit_type) {
        f.category = t.category;
        f.category_key = t.category_key;
        f.action = t.action;
        f.action_key = t.action_key;
        f.area = t.area;
        f.level = t.level;
    }
    f.affected = e
        .affected_objects
        .into_iter()
        .flatten()
        .map(|o| Object {
            name: o.name,
            kind: o.kind,
            id: o.id,
            uri: o.uri,
        })
        .collect();
    f.changed = e
        .changed_values
        .into_iter()
        .flatten()
        .map(|c| Change {
            key: c.key,
            i18n_key: c.i18n_key,
            from: c.from,
            to: c.to,
        })
        .collect();
    f.extra = e
        .extra_attributes
        .into_iter()
        .flatten()
        .map(|a| Attribute {
            name: a.name,
            name_i18n_key: a.name_i18n_key,
            value: a.value,
        })
        .collect();
    f
}

/// `http://wiki/admin/users/viewuser.action?username=jadmin` → `jadmin`.
fn username_from_uri(uri: &str) -> Option<Cow<'_, str>> {
    let query = uri.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "username")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}
