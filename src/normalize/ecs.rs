//! The ECS document: every field of `ecs-mapping.md`, written straight from the borrowed
//! record with [`Json`] (no intermediate `Value`, no per-field copies), only fields that
//! ECS 9.4.0 defines or that live under `confluence.`.
//!
//! The work is split in two: first decide what each field holds (borrowing from the
//! record), then write them in one pass; a bad time is the only error, and it is found
//! before anything is written.

use std::borrow::Cow;
use std::net::IpAddr;

use super::action::{self, Mapping, Soteri};
use super::json::{Json, k};
use super::mask::{self, contains_ci};
use super::record::{Fields, Object};
use super::rfc3339;
use super::{EventMeta, NormalizeError, NormalizeOptions};

/// The ECS version every document declares.
pub const ECS_VERSION: &str = "9.4.0";

fn text<'f>(t: &'f Option<Cow<'_, str>>) -> Option<&'f str> {
    t.as_deref().filter(|s| !s.is_empty())
}

fn is_kind(o: &Object<'_>, kinds: &[&str]) -> bool {
    o.kind
        .as_deref()
        .is_some_and(|k| kinds.iter().any(|x| k.eq_ignore_ascii_case(x)))
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// A name that looks like a login (no spaces) rather than a display name.
fn looks_like_login(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

/// Details by (case-insensitive) attribute name: extra attributes first, then changed
/// values (new value first). Never a sensitive attribute while masking is on, so no ECS
/// field copies a secret that `confluence.audit.*` masks.
struct Details<'f, 'a> {
    f: &'f Fields<'a>,
    plaintext: bool,
}

impl<'f> Details<'f, '_> {
    fn usable(&self, name: &str, pred: &impl Fn(&str) -> bool) -> bool {
        pred(name) && (self.plaintext || !mask::is_sensitive_name(name))
    }

    fn find(&self, pred: impl Fn(&str) -> bool) -> Option<&'f str> {
        self.f
            .extra
            .iter()
            .find(|a| a.name.as_deref().is_some_and(|n| self.usable(n, &pred)))
            .and_then(|a| text(&a.value))
            .or_else(|| {
                self.f
                    .changed
                    .iter()
                    .find(|c| c.key.as_deref().is_some_and(|n| self.usable(n, &pred)))
                    .and_then(|c| text(&c.to).or(text(&c.from)))
            })
    }

    /// A changed value by exact (case-insensitive) key: its new value.
    fn changed_to(&self, key: &str) -> Option<&'f str> {
        self.f
            .changed
            .iter()
            .find(|c| {
                c.key
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(key))
            })
            .and_then(|c| text(&c.to))
    }
}

/// `user`, `user.target`, `user.changes`.
#[derive(Default)]
struct Person<'f> {
    id: Option<&'f str>,
    name: Option<&'f str>,
    full_name: Option<&'f str>,
    email: Option<&'f str>,
}

impl Person<'_> {
    fn is_empty(&self) -> bool {
        self.id.is_none() && self.name.is_none() && self.full_name.is_none() && self.email.is_none()
    }

    fn write_fields(&self, j: &mut Json<'_>) {
        j.field_opt(k!("id"), self.id);
        j.field_opt(k!("name"), self.name);
        j.field_opt(k!("full_name"), self.full_name);
        j.field_opt(k!("email"), self.email);
    }

    fn write(&self, j: &mut Json<'_>, key: &'static str) {
        if !self.is_empty() {
            j.object(key);
            self.write_fields(j);
            j.end_object();
        }
    }
}

/// The IPs in `source` (a proxy chain may give several, comma-separated).
fn ips(source: Option<&str>) -> impl Iterator<Item = &str> {
    source
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|p| p.parse::<IpAddr>().is_ok())
}

/// `http://user@wiki.example.com:8090/x` → `wiki.example.com` (IPv6 without brackets;
/// lowercased when written).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn extension(name: &str) -> Option<&str> {
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(ext)
}

/// Write the document for `f` (`raw` its text, `id` its `event.id`) to `out`. Also says
/// where in `out` the id went (see [`super::patch_event_id`]).
pub fn write(
    f: &Fields<'_>,
    raw: &str,
    id: &str,
    created: &str,
    opts: &NormalizeOptions,
    out: &mut Vec<u8>,
) -> Result<(EventMeta, usize), NormalizeError> {
    let timestamp = rfc3339::format(f.ts_ms, f.sub_ms_nanos)?;
    let resolved = action::resolve(f);
    let mapping: Option<&Mapping> = resolved.mapping;
    let soteri = mapping.and_then(|m| m.soteri);
    let is_soteri = soteri.is_some() || action::is_soteri_category(f);
    let alert = soteri == Some(Soteri::Finding) && !opts.findings_as_events;
    let self_generated = mapping.is_some_and(|m| m.action == "audit-log-searched");
    let plaintext = opts.forward_secrets_plaintext;
    let details = Details { f, plaintext };

    // --- who ---
    let anonymous = text(&f.author_id) == Some("-2");
    let user = Person {
        id: text(&f.author_id),
        name: text(&f.author_username),
        full_name: text(&f.author_display).or(anonymous.then_some("Anonymous")),
        email: None,
    };

    // --- what it touched ---
    let mut users = f.affected.iter().filter(|o| is_kind(o, &["User"]));
    let first_user = users.next();
    let group_obj = f.affected.iter().find(|o| is_kind(o, &["Group"]));
    let space_obj = f.affected.iter().find(|o| is_kind(o, &["Space"]));
    let content_obj = f.affected.iter().find(|o| {
        is_kind(
            o,
            &["Page", "BlogPost", "Blog post", "Attachment", "Comment"],
        )
    });

    let mut target = Person::default();
    let mut changes = Person::default();
    let user_mgmt = mapping.is_some_and(|m| {
        m.category.contains(&"iam") || matches!(soteri, Some(Soteri::Notification))
    });
    if user_mgmt {
        if let Some(o) = first_user {
            target.id = text(&o.id);
            match text(&o.name) {
                Some(n) if looks_like_login(n) => target.name = Some(n),
                Some(n) => target.full_name = Some(n),
                None => {}
            }
        }
        if let Some(v) = details.changed_to("Username") {
            changes.name = Some(v);
            target.name = Some(v);
        }
        if let Some(v) = details
            .changed_to("Display name")
            .or_else(|| details.changed_to("Full name"))
        {
            changes.full_name = Some(v);
            target.full_name = Some(v);
        }
        if let Some(v) = details.changed_to("Email") {
            changes.email = Some(v);
            target.email = Some(v);
        }
        if soteri == Some(Soteri::Notification)
            && let Some(r) =
                details.find(|n| contains_ci(n, "recipient") || contains_ci(n, "email"))
        {
            if r.contains('@') {
                target.email = Some(r);
            } else if target.name.is_none() {
                target.name = Some(r);
            }
        }
    }
    let group: Option<(Option<&str>, &str)> =
        if user_mgmt || matches!(soteri, Some(Soteri::AppAdmin)) {
            group_obj
                .and_then(|g| text(&g.name).map(|n| (text(&g.id), n)))
                .or_else(|| {
                    details
                        .find(|n| n.eq_ignore_ascii_case("group") || ends_with_ci(n, " group"))
                        .map(|n| (None, n))
                })
        } else {
            None
        };

    // --- Soteri details ---
    let rule: Option<(Option<&str>, Option<&str>, Option<&'static str>)> = match soteri {
        Some(
            Soteri::BuiltInRule
            | Soteri::CustomRule
            | Soteri::Notification
            | Soteri::Finding
            | Soteri::Review,
        ) => {
            let name = details.find(|n| {
                contains_ci(n, "rule")
                    && !contains_ci(n, "id")
                    && !contains_ci(n, "regex")
                    && !contains_ci(n, "expression")
            });
            let rid = details.find(|n| contains_ci(n, "rule") && contains_ci(n, "id"));
            let ruleset = match soteri {
                Some(Soteri::BuiltInRule) => Some("built-in"),
                Some(Soteri::CustomRule) => Some("custom"),
                _ => None,
            };
            (name.is_some() || rid.is_some() || ruleset.is_some()).then_some((rid, name, ruleset))
        }
        _ => None,
    };
    let url: Option<&str> = match soteri {
        Some(Soteri::Notification | Soteri::Finding) => details
            .find(|n| contains_ci(n, "url") || contains_ci(n, "link"))
            .filter(|v| v.starts_with("http"))
            .or_else(|| content_obj.and_then(|o| text(&o.uri))),
        _ => None,
    };
    // (file.name, file.extension)
    let file: Option<(Option<&str>, Option<&str>)> = match soteri {
        Some(Soteri::Finding) => details
            .find(|n| contains_ci(n, "attachment") || contains_ci(n, "file"))
            .map(|name| (Some(name), extension(name))),
        Some(Soteri::DashboardExport) => Some((None, Some("csv"))),
        _ => None,
    };

    // --- where ---
    let space: Option<(Option<&str>, Option<&str>, Option<&str>)> = space_obj
        .map(|o| {
            let key = text(&o.uri)
                .and_then(|u| u.split("/display/").nth(1))
                .map(|k| k.split(['/', '?', '#']).next().unwrap_or(k))
                .filter(|k| !k.is_empty())
                .or_else(|| {
                    details
                        .changed_to("Space key")
                        .or_else(|| details.changed_to("Space"))
                });
            (key, text(&o.name), text(&o.id))
        })
        .or_else(|| {
            details
                .find(|n| n.eq_ignore_ascii_case("space key") || n.eq_ignore_ascii_case("space"))
                .map(|k| (Some(k), None, None))
        });

    // --- network ---
    let source = text(&f.source);
    let source_ip = ips(source).next();
    let system = text(&f.system);
    let host = system.and_then(host_of);

    // --- every user name in the record ---
    let mut related_users: [&str; 3] = [""; 3];
    let mut n_users = 0;
    for u in [user.name.or(user.full_name), target.name, changes.name]
        .into_iter()
        .flatten()
    {
        if !related_users[..n_users].contains(&u) {
            related_users[n_users] = u;
            n_users += 1;
        }
    }

    // --- write ---
    // Documents run to about twice the record; one reservation instead of regrowing.
    out.reserve(raw.len() * 2 + 768);
    let mut j = Json::new(out, raw);
    j.begin_object();
    j.field(k!("@timestamp"), timestamp.as_str());

    j.key(k!("message"));
    j.begin_str();
    j.part(
        user.name
            .or(user.full_name)
            .or(user.id)
            .unwrap_or("someone"),
    );
    j.part(": ");
    match text(&f.action) {
        Some(a) => j.part(a),
        None => {
            for (i, word) in resolved.action.split('-').enumerate() {
                if i > 0 {
                    j.part(" ");
                }
                j.part(word);
            }
        }
    }
    let mut first = true;
    for o in first_user
        .into_iter()
        .chain(users)
        .chain(group_obj)
        .chain(content_obj)
        .chain(space_obj)
    {
        if let (Some(kind), Some(name)) = (text(&o.kind), text(&o.name)) {
            j.part(if first { " (" } else { ", " });
            first = false;
            j.part_lower(kind);
            j.part(" \"");
            j.part(name);
            j.part("\"");
        }
    }
    if !first {
        j.part(")");
    }
    j.end_str();

    j.object(k!("event"));
    j.key(k!("id"));
    // After the opening quote: the id is 32 hex digits, copied as they are.
    let id_at = j.written() + 1;
    j.str(id);
    j.field(k!("created"), created);
    j.field_static(k!("kind"), if alert { "alert" } else { "event" });
    j.members(r#""module":"confluence","dataset":"confluence.audit""#);
    j.field_static(
        k!("provider"),
        if is_soteri {
            "soteri-security-for-confluence"
        } else {
            "confluence"
        },
    );
    j.field(k!("action"), &resolved.action);
    j.field_list(k!("category"), mapping.map_or(&[], |m| m.category));
    j.field_list(k!("type"), mapping.map_or(&["info"], |m| m.kind_type));
    if let Some(o) = mapping.and_then(|m| m.outcome) {
        j.field_static(k!("outcome"), o);
    }
    if opts.include_original {
        j.key(k!("original"));
        j.str_escaped(&masked_original(f, raw, plaintext));
    }
    j.end_object();

    if !user.is_empty() || !target.is_empty() || !changes.is_empty() {
        j.object(k!("user"));
        user.write_fields(&mut j);
        target.write(&mut j, k!("target"));
        changes.write(&mut j, k!("changes"));
        j.end_object();
    }
    if let Some((gid, name)) = group {
        j.object(k!("group"));
        j.field_opt(k!("id"), gid);
        j.field(k!("name"), name);
        j.end_object();
    }
    if let Some(ip) = source_ip {
        j.object(k!("source"));
        j.field(k!("ip"), ip);
        j.field(k!("address"), ip);
        j.end_object();
    }
    if let Some(s) = system {
        j.object(k!("service"));
        j.field(k!("address"), s);
        j.end_object();
    }
    j.members(r#""observer":{"vendor":"Atlassian","product":"Confluence","type":"audit"}"#);

    j.object(k!("related"));
    j.field_list(k!("user"), &related_users[..n_users]);
    if source_ip.is_some() {
        j.array(k!("ip"));
        for (i, ip) in ips(source).enumerate() {
            if !ips(source).take(i).any(|earlier| earlier == ip) {
                j.str(ip);
            }
        }
        j.end_array();
    }
    if let Some(h) = host {
        j.array(k!("hosts"));
        j.str_lower(h);
        j.end_array();
    }
    j.end_object();

    if let Some((rid, name, ruleset)) = rule {
        j.object(k!("rule"));
        j.field_opt(k!("id"), rid);
        j.field_opt(k!("name"), name);
        if let Some(r) = ruleset {
            j.field_static(k!("ruleset"), r);
        }
        j.end_object();
    }
    if let Some(u) = url {
        j.object(k!("url"));
        j.field(k!("full"), u);
        j.end_object();
    }
    if let Some((name, ext)) = file {
        j.object(k!("file"));
        j.field_opt(k!("name"), name);
        if let Some(e) = ext {
            j.key(k!("extension"));
            j.str_lower(e);
        }
        j.end_object();
    }

    j.object(k!("confluence"));
    j.object(k!("audit"));
    j.object(k!("type"));
    j.field_opt(k!("category"), text(&f.category));
    j.field_opt(k!("action"), text(&f.action));
    j.field_opt(k!("category_i18n_key"), text(&f.category_key));
    j.field_opt(k!("action_i18n_key"), text(&f.action_key));
    j.field_opt(k!("area"), text(&f.area));
    j.field_opt(k!("level"), text(&f.level));
    j.end_object();
    j.field_opt(k!("method"), text(&f.method));
    j.field_opt(k!("description"), text(&f.description));
    j.field_bool(k!("sys_admin"), f.sys_admin);
    j.field_bool(k!("super_admin"), f.super_admin);
    j.field_bool(k!("external_collaborator"), f.external_collaborator);
    j.field_opt(k!("author_type"), text(&f.author_type));
    if !f.affected.is_empty() {
        j.array(k!("affected_objects"));
        for o in &f.affected {
            j.begin_object();
            j.field_opt(k!("name"), text(&o.name));
            j.field_opt(k!("type"), text(&o.kind));
            j.field_opt(k!("id"), text(&o.id));
            j.field_opt(k!("uri"), text(&o.uri));
            j.end_object();
        }
        j.end_array();
    }
    if !f.changed.is_empty() {
        j.array(k!("changed_values"));
        for c in &f.changed {
            let plain = plaintext || !c.key.as_deref().is_some_and(mask::is_sensitive_name);
            j.begin_object();
            j.field_opt(k!("key"), text(&c.key));
            j.field_opt(k!("i18n_key"), text(&c.i18n_key));
            for (k, v) in [(k!("from"), &c.from), (k!("to"), &c.to)] {
                match v.as_deref() {
                    Some(v) if plain || v.is_empty() => j.field(k, v),
                    Some(v) => j.field(k, &mask::mask(v)),
                    None => {}
                }
            }
            j.end_object();
        }
        j.end_array();
    }
    if !f.extra.is_empty() {
        j.array(k!("extra_attributes"));
        for a in &f.extra {
            j.begin_object();
            j.field_opt(k!("name"), text(&a.name));
            j.field_opt(k!("name_i18n_key"), text(&a.name_i18n_key));
            if let Some(v) = a.value.as_deref() {
                j.field(k!("value"), &mask::apply(a.name.as_deref(), v, plaintext));
            }
            j.end_object();
        }
        j.end_array();
    }
    if self_generated {
        j.key(k!("self_generated"));
        j.bool(true);
    }
    j.end_object(); // audit
    if let Some((key, name, sid)) = space {
        j.object(k!("space"));
        j.field_opt(k!("key"), key);
        j.field_opt(k!("name"), name);
        j.field_opt(k!("id"), sid);
        j.end_object();
    }
    if let Some(o) = content_obj {
        j.object(k!("content"));
        j.field_opt(k!("id"), text(&o.id));
        j.key(k!("type"));
        j.str_lower(o.kind.as_deref().unwrap_or("page"));
        j.field_opt(k!("title"), text(&o.name));
        j.end_object();
    }
    j.end_object(); // confluence

    j.object(k!("data_stream"));
    j.members(r#""type":"logs","dataset":"confluence.audit""#);
    j.field(k!("namespace"), &opts.namespace);
    j.end_object();
    j.object(k!("ecs"));
    j.field_static(k!("version"), ECS_VERSION);
    j.end_object();
    j.end_object();

    let meta = EventMeta {
        known_action: mapping.is_some(),
        alert,
        soteri: is_soteri,
        self_generated,
    };
    Ok((meta, id_at))
}

/// `event.original`, with matched sensitive text masked like everywhere else. The record is
/// re-serialized with every string equal to a sensitive value masked, so no escaping
/// variant of the raw text can carry the secret through.
fn masked_original<'r>(f: &Fields<'_>, raw: &'r str, plaintext: bool) -> Cow<'r, str> {
    let sensitive: Vec<&str> = if plaintext {
        Vec::new()
    } else {
        f.extra
            .iter()
            .filter(|a| a.name.as_deref().is_some_and(mask::is_sensitive_name))
            .filter_map(|a| a.value.as_deref())
            .chain(
                f.changed
                    .iter()
                    .filter(|c| c.key.as_deref().is_some_and(mask::is_sensitive_name))
                    .flat_map(|c| [c.from.as_deref(), c.to.as_deref()])
                    .flatten(),
            )
            .filter(|v| !v.is_empty())
            .collect()
    };
    if sensitive.is_empty() {
        return Cow::Borrowed(raw);
    }
    fn walk(v: &mut serde_json::Value, sensitive: &[&str]) {
        match v {
            serde_json::Value::String(s) if sensitive.contains(&s.as_str()) => {
                *s = mask::mask(s);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, sensitive)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| walk(i, sensitive)),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(mut v) => {
            walk(&mut v, &sensitive);
            Cow::Owned(v.to_string())
        }
        // It parsed as a record, so it is JSON; should that ever fail, forward nothing.
        Err(_) => Cow::Borrowed(""),
    }
}
