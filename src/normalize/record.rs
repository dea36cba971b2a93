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

/// A JSON string, borrowed from the raw text unless it has escapes. serde's own
/// `Option<Cow<str>>` always copies (only a bare `Cow` field borrows), which made every
/// string of every record an allocation.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `deserialize_with` for every optional string field: `null` or absent is `None`.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
    Ok(Option::<Str<'de>>::deserialize(d)?.map(|s| s.0))
}

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

/// An affected object; deserialized as the DC entity spells it (`type`), legacy records
/// are converted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Object<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    pub name: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text", rename = "type")]
    pub kind: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub id: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub uri: Text<'a>,
}

/// A changed value, as the DC entity spells it (legacy `name/oldValue/newValue` converted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Change<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    pub key: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text", rename = "i18nKey")]
    pub i18n_key: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub from: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub to: Text<'a>,
}

/// An extra attribute (DC only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Attribute<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    pub name: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text", rename = "nameI18nKey")]
    pub name_i18n_key: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub value: Text<'a>,
}

// ---- Legacy and Cloud AuditRecord ------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditRecord<'a> {
    #[serde(borrow, default)]
    author: Option<LegacyAuthor<'a>>,
    #[serde(borrow, default, deserialize_with = "text")]
    remote_address: Text<'a>,
    #[serde(default)]
    creation_date: Option<i64>,
    #[serde(borrow, default, deserialize_with = "text")]
    summary: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    description: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
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
    #[serde(borrow, default, deserialize_with = "text", rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    display_name: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    username: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    user_key: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    account_id: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    account_type: Text<'a>,
    #[serde(default)]
    external_collaborator: Option<bool>,
    #[serde(default)]
    is_external_collaborator: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyObject<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    name: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    object_type: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyChange<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    name: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    old_value: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
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
    affected_objects: Option<Vec<Object<'a>>>,
    #[serde(borrow, default)]
    changed_values: Option<Vec<Change<'a>>>,
    #[serde(borrow, default)]
    extra_attributes: Option<Vec<Attribute<'a>>>,
    #[serde(borrow, default, deserialize_with = "text")]
    source: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    system: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
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
    #[serde(borrow, default, deserialize_with = "text")]
    id: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    name: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text", rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    uri: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityType<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    category: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text", rename = "categoryI18nKey")]
    category_key: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    action: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text", rename = "actionI18nKey")]
    action_key: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    area: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    level: Text<'a>,
}

/// Parse `raw` as a record of shape `api`.
pub fn parse(api: Api, raw: &str) -> Result<Fields<'_>, NormalizeError> {
    match api {
        Api::Legacy | Api::Cloud => {
            let r: AuditRecord<'_> = from_str(api, raw)?;
            from_audit_record(r)
        }
        Api::Auditing => {
            let e: Entity<'_, Str<'_>> = from_str(api, raw)?;
            let ts = e
                .timestamp
                .as_ref()
                .map(|s| s.0.as_ref())
                .ok_or(NormalizeError::Field {
                    field: "timestamp",
                    problem: "missing".into(),
                })?;
            let ts_ms = super::rfc3339::parse_ms(ts, "timestamp")?;
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
        Api::Organization => Err(NormalizeError::Invalid {
            api,
            path: String::new(),
            problem: "organization audit log events are not read by `normalize` (only by an `api = \"organization\"` source)".into(),
        }),
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
        // Cloud still sends the deprecated `username`, set to the account id: not a name.
        f.author_username = a
            .username
            .filter(|u| a.account_id.as_deref() != Some(u.as_ref()));
        f.author_id = a.account_id.filter(|s| !s.is_empty()).or(a.user_key);
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
        f.author_username = match &a.uri {
            Some(Cow::Borrowed(uri)) => username_from_uri(uri),
            Some(Cow::Owned(uri)) => username_from_uri(uri).map(|u| Cow::Owned(u.into_owned())),
            None => None,
        };
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
    // Already in the one shape: moved, not copied.
    f.affected = e.affected_objects.unwrap_or_default();
    f.changed = e.changed_values.unwrap_or_default();
    f.extra = e.extra_attributes.unwrap_or_default();
    f
}

/// `http://wiki/admin/users/viewuser.action?username=jadmin` → `jadmin`.
/// Plain values (the usual case) are sliced out; encoded ones are decoded.
fn username_from_uri(uri: &str) -> Option<Cow<'_, str>> {
    let query = uri.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("username="))?;
    if value.bytes().any(|b| b == b'%' || b == b'+') {
        return url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "username")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty());
    }
    (!value.is_empty()).then_some(Cow::Borrowed(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_borrow_unless_escaped() {
        let raw = r#"{"timestamp":"2025-11-25T04:00:00.123Z","author":{"name":"Jane","id":"J\u0061ne"},"affectedObjects":[{"name":"Home","type":"Page"}]}"#;
        let f = parse(Api::Auditing, raw).unwrap();
        assert!(matches!(f.author_display, Some(Cow::Borrowed("Jane"))));
        assert!(matches!(&f.author_id, Some(Cow::Owned(s)) if s == "Jane"));
        assert!(matches!(f.affected[0].name, Some(Cow::Borrowed("Home"))));
        let legacy = r#"{"creationDate":1,"summary":"User created","author":{"username":null}}"#;
        let f = parse(Api::Legacy, legacy).unwrap();
        assert!(matches!(f.action, Some(Cow::Borrowed("User created"))));
        assert!(f.author_username.is_none());
    }

    #[test]
    fn username_from_the_author_uri() {
        let u = |s| username_from_uri(s).map(Cow::into_owned);
        assert_eq!(
            u("http://w/viewuser.action?username=jadmin").as_deref(),
            Some("jadmin")
        );
        assert_eq!(
            u("http://w/v?x=1&username=j%40x+y#top").as_deref(),
            Some("j@x y")
        );
        assert_eq!(u("http://w/v?x=1&username=jo#top").as_deref(), Some("jo"));
        assert_eq!(u("http://w/v?ausername=no"), None);
        assert_eq!(u("http://w/v?username="), None);
        assert_eq!(u("http://w/v"), None);
    }
}
