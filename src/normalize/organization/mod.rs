//! Organization audit log event → ECS: the mapping of `../shared/spec/atlassian-org-audit-api.md`
//! §3, a pure function like the rest of `normalize`.
//!
//! Kept apart from the Confluence record shapes because nothing is shared: the event has its
//! own stable `id` (no content hash is needed), its own times (`time` when it happened,
//! `processedAt` when the log got it) and a JSON:API envelope. The table of actions is in
//! [`actions`]; the field-by-field mapping is documented in `docs/ecs-mapping-organization.md`.
//!
//! `event.dataset` is `atlassian.organization_audit` (the per-site log's is
//! `confluence.audit`), so a user polling both logs tells them apart. Everything the event
//! holds is kept raw under `confluence.organization.*`.

pub mod actions;

use serde_json::{Map, Value, json};

use super::{Api, NormalizeError, NormalizeOptions, rfc3339};

/// `event.dataset` and `data_stream.dataset` of organization events.
pub const DATASET: &str = "atlassian.organization_audit";

/// One event made into a document.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgDocument {
    /// The event's own id, as sent (the dedupe key).
    pub source_id: String,
    /// `event.id`: the id hashed into the 32-hex-digit form of the other sources' ids.
    pub event_id: String,
    /// `attributes.processedAt`, epoch ms: the order of the stream.
    pub processed_ms: i64,
    /// `attributes.time`, epoch ms: when it happened.
    pub time_ms: i64,
    /// The action is in the [`actions`] table.
    pub known_action: bool,
    /// The ECS document.
    pub doc: Vec<u8>,
    /// Why the event could not be normalized: `doc` is then a `pipeline_error` document.
    pub error: Option<String>,
}

/// `event.id` of the organization event `id`: stable across re-reads, and never equal to
/// the id of a per-site record (the input is prefixed with the dataset).
pub fn event_id(id: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(DATASET.as_bytes());
    h.update(&[0]);
    h.update(id.as_bytes());
    hex::encode(&h.finalize().as_bytes()[..16])
}

fn invalid(path: &str, problem: impl Into<String>) -> NormalizeError {
    NormalizeError::Invalid {
        api: Api::Organization,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// A string member, or `None` when absent or null; any other type is an error naming it.
/// [`text`] of a member of `attributes`, errors naming the full path.
fn attr<'v>(attrs: &'v Value, path: &str) -> Result<Option<&'v str>, NormalizeError> {
    text(attrs, path).map_err(|e| match e {
        NormalizeError::Invalid { api, path, problem } => NormalizeError::Invalid {
            api,
            path: format!("attributes.{path}"),
            problem,
        },
        other => other,
    })
}

fn text<'v>(v: &'v Value, path: &str) -> Result<Option<&'v str>, NormalizeError> {
    let mut cur = v;
    for part in path.split('.') {
        match cur.get(part) {
            Some(Value::Null) | None => return Ok(None),
            Some(next) => cur = next,
        }
    }
    match cur {
        Value::String(s) => Ok(Some(s)),
        other => Err(invalid(path, format!("expected a string, got {other}"))),
    }
}

/// `attributes.processedAt`, which every event must have: it orders the stream.
fn processed_at(attrs: &Value) -> Result<i64, NormalizeError> {
    const PATH: &str = "attributes.processedAt";
    let t = attr(attrs, "processedAt")?.ok_or_else(|| invalid(PATH, "missing"))?;
    rfc3339::parse_ms(t, PATH)
}

/// Normalize one element of `data`. `created` is `event.created` (RFC 3339).
pub fn normalize(
    raw: &Value,
    created: &str,
    opts: &NormalizeOptions,
) -> Result<OrgDocument, NormalizeError> {
    if !raw.is_object() {
        return Err(invalid("", "an event is a JSON object"));
    }
    let id = text(raw, "id")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("id", "missing: every event has a stable id"))?;
    let attrs = raw
        .get("attributes")
        .filter(|a| a.is_object())
        .ok_or_else(|| invalid("attributes", "missing or not an object"))?;
    let processed_ms = processed_at(attrs)?;
    let time_ms = match attr(attrs, "time")? {
        Some(t) => rfc3339::parse_ms(t, "attributes.time")?,
        None => processed_ms,
    };
    let action = attr(attrs, "action")?.unwrap_or("unknown");
    let mapping = actions::lookup(action);
    let event_id = event_id(id);

    let mut doc = Map::new();
    doc.insert("@timestamp".into(), iso(time_ms).into());
    let mut event = json!({
        "id": event_id,
        "created": created,
        "kind": "event",
        "module": "atlassian",
        "dataset": DATASET,
        "provider": "atlassian-organization",
        "action": action,
        "category": mapping.map_or(&[][..], |m| m.category),
        "type": mapping.map_or(&["info"][..], |m| m.kind_type),
    });
    if let Some(o) = mapping.and_then(|m| m.outcome) {
        event["outcome"] = o.into();
    }
    if opts.include_original {
        event["original"] = raw.to_string().into();
    }
    doc.insert("event".into(), event);
    if let Some(m) = text(raw, "message.content")? {
        doc.insert("message".into(), m.into());
    }
    actor(attrs, &mut doc)?;
    location(attrs, &mut doc)?;
    context(attrs, &mut doc)?;
    site(attrs, &mut doc)?;
    doc.insert(
        "observer".into(),
        json!({"vendor": "Atlassian", "product": "Atlassian Guard", "type": "audit"}),
    );
    doc.insert(
        "data_stream".into(),
        json!({"type": "logs", "dataset": DATASET, "namespace": opts.namespace}),
    );
    doc.insert("ecs".into(), json!({"version": "9.4.0"}));
    let mut raw_ns = json!({
        "event_id": id,
        "processed_at": iso(processed_ms),
        "attributes": attrs,
    });
    if let Some(m) = raw.get("message").filter(|m| !m.is_null()) {
        raw_ns["message"] = m.clone();
    }
    doc.insert("confluence".into(), json!({ "organization": raw_ns }));
    Ok(OrgDocument {
        source_id: id.to_owned(),
        event_id,
        processed_ms,
        time_ms,
        known_action: mapping.is_some(),
        doc: serde_json::to_vec(&Value::Object(doc)).expect("a document serializes"),
        error: None,
    })
}

/// [`normalize`], or — for an event it cannot normalize — an `event.kind: pipeline_error`
/// document carrying the event as sent and the reason, so that one broken event neither stops
/// the source for good nor is lost.
///
/// Its dedupe key is the event's `id` when it has one, else `unidentified:` and a hash of its
/// JSON (the same for a re-read of the same event). Its position is its `processedAt` when that
/// parses, else `floor_ms`: the `processedAt` of the event before it, so the stream's order and
/// the stored position never move back.
pub fn normalize_or_error(
    raw: &Value,
    created: &str,
    opts: &NormalizeOptions,
    floor_ms: i64,
) -> OrgDocument {
    let error = match normalize(raw, created, opts) {
        Ok(doc) => return doc,
        Err(e) => e.to_string(),
    };
    let source_id = match raw.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            let hash = blake3::hash(raw.to_string().as_bytes());
            format!("unidentified:{}", hex::encode(&hash.as_bytes()[..16]))
        }
    };
    let processed_ms = raw
        .get("attributes")
        .map_or(Err(invalid("attributes", "missing")), processed_at)
        .map_or(floor_ms, |ms| ms.max(floor_ms));
    let event_id = event_id(&source_id);
    let doc = json!({
        "@timestamp": iso(processed_ms),
        "ecs": {"version": "9.4.0"},
        "event": {
            "id": event_id,
            "kind": "pipeline_error",
            "created": created,
            "module": "atlassian",
            "dataset": DATASET,
            "original": raw.to_string(),
        },
        "error": {"message": error, "type": "organization_event_parse"},
        "tags": ["organization_parse_failure"],
        "data_stream": {"type": "logs", "dataset": DATASET, "namespace": opts.namespace},
    });
    OrgDocument {
        source_id,
        event_id,
        processed_ms,
        time_ms: processed_ms,
        known_action: true,
        doc: serde_json::to_vec(&doc).expect("a document serializes"),
        error: Some(error),
    }
}

/// `user.*` from `actor`, `user.effective.*` from `onBehalfOf`, `related.user`.
fn actor(attrs: &Value, doc: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let mut user = Map::new();
    for (field, path) in [
        ("id", "actor.id"),
        ("full_name", "actor.name"),
        ("email", "actor.email"),
    ] {
        if let Some(v) = attr(attrs, path)? {
            user.insert(field.into(), v.into());
        }
    }
    if let Some(name) = user.get("full_name").cloned() {
        user.insert("name".into(), name);
    }
    let mut related: Vec<Value> = ["id", "email"]
        .iter()
        .filter_map(|k| user.get(*k).cloned())
        .collect();
    if let Some(on_behalf) = attr(attrs, "onBehalfOf.id")? {
        user.insert("effective".into(), json!({ "id": on_behalf }));
        related.push(on_behalf.into());
    }
    if !user.is_empty() {
        doc.insert("user".into(), Value::Object(user));
    }
    if !related.is_empty() {
        doc.insert("related".into(), json!({ "user": related }));
    }
    Ok(())
}

/// `source.ip` and `source.geo.*` from `location`.
fn location(attrs: &Value, doc: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let mut source = Map::new();
    if let Some(ip) = attr(attrs, "location.ip")? {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "attributes.location.ip",
                format!("{ip:?} is not an IP address"),
            ));
        }
        source.insert("ip".into(), ip.into());
        source.insert("address".into(), ip.into());
        let related = doc
            .entry("related")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("related is an object");
        related.insert("ip".into(), json!([ip]));
    }
    let mut geo = Map::new();
    for (field, path) in [
        ("country_iso_code", "location.geo"),
        ("country_name", "location.countryName"),
        ("region_name", "location.regionName"),
        ("city_name", "location.city"),
    ] {
        if let Some(v) = attr(attrs, path)? {
            geo.insert(field.into(), v.into());
        }
    }
    if !geo.is_empty() {
        source.insert("geo".into(), Value::Object(geo));
    }
    if !source.is_empty() {
        doc.insert("source".into(), Value::Object(source));
    }
    Ok(())
}

/// The entries of a `context`/`container` list; anything but an array is an error.
fn entries<'v>(attrs: &'v Value, key: &str) -> Result<&'v [Value], NormalizeError> {
    match attrs.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(invalid(
            &format!("attributes.{key}"),
            format!("expected a list, got {other}"),
        )),
    }
}

/// `url.full` from the first context link; `group.*` from a group context.
fn context(attrs: &Value, doc: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let items = entries(attrs, "context")?;
    if let Some(link) = items
        .iter()
        .find_map(|c| c.pointer("/links/alt").and_then(Value::as_str))
    {
        doc.insert("url".into(), json!({ "full": link }));
    }
    if let Some(g) = items.iter().find(|c| c["type"] == "group") {
        let mut group = Map::new();
        if let Some(id) = g["id"].as_str() {
            group.insert("id".into(), id.into());
        }
        if let Some(name) = g.pointer("/attributes/name").and_then(Value::as_str) {
            group.insert("name".into(), name.into());
        }
        if !group.is_empty() {
            doc.insert("group".into(), Value::Object(group));
        }
    }
    Ok(())
}

/// `service.*`/`cloud.*` from the container site; `organization`-wide events have none.
fn site(attrs: &Value, doc: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let items = entries(attrs, "container")?;
    let Some(site) = items.iter().find(|c| c["type"] == "sites") else {
        return Ok(());
    };
    let host = site
        .pointer("/attributes/siteHostName")
        .and_then(Value::as_str);
    let name = site.pointer("/attributes/siteName").and_then(Value::as_str);
    let mut service = json!({ "type": "confluence" });
    if let Some(h) = host {
        service["address"] = h.into();
    }
    if let Some(n) = name.or(host) {
        service["name"] = n.into();
    }
    doc.insert("service".into(), service);
    let mut cloud = json!({ "provider": "atlassian" });
    if let Some(id) = site["id"].as_str() {
        cloud["instance"] = json!({ "id": id });
    }
    if let Some(n) = name.or(host) {
        cloud["instance"]["name"] = n.into();
    }
    doc.insert("cloud".into(), cloud);
    Ok(())
}

fn iso(ms: i64) -> String {
    crate::source::paging::iso(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_hex_and_differ_by_event() {
        assert_eq!(event_id("a"), event_id("a"));
        assert_ne!(event_id("a"), event_id("b"));
        assert_eq!(event_id("a").len(), 32);
    }

    #[test]
    fn a_missing_processed_at_names_the_field() {
        let raw = json!({"id": "x", "attributes": {"time": "2026-11-20T09:14:03.512Z"}});
        let e = normalize(&raw, "2026-11-20T09:15:00Z", &NormalizeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("processedAt"), "{e}");
    }
}
