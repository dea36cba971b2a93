//! The ECS document: every field of `ecs-mapping.md`, written straight from the borrowed
//! record with serde (no intermediate `Value`), only fields that ECS 9.4.0 defines or that
//! live under `confluence.`.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;

use super::action::{self, Mapping, Soteri};
use super::mask;
use super::record::{Attribute, Change, Fields, Object};
use super::{EventMeta, NormalizeError, NormalizeOptions};

type S<'a> = Cow<'a, str>;

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    message: String,
    event: Event<'a>,
    #[serde(skip_serializing_if = "User::is_empty")]
    user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Group<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<Service<'a>>,
    observer: Observer,
    related: Related,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<Rule<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Url<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    confluence: Confluence<'a>,
    data_stream: DataStream<'a>,
    ecs: Ecs,
}

#[derive(Serialize)]
struct Event<'a> {
    id: &'a str,
    created: &'a str,
    kind: &'static str,
    module: &'static str,
    dataset: &'static str,
    provider: &'static str,
    action: S<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    category: &'static [&'static str],
    #[serde(rename = "type", skip_serializing_if = "<[_]>::is_empty")]
    kind_type: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<S<'a>>,
}

#[derive(Serialize, Default)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<S<'a>>,
    #[serde(skip_serializing_if = "UserRef::is_empty")]
    target: UserRef<'a>,
    #[serde(skip_serializing_if = "UserRef::is_empty")]
    changes: UserRef<'a>,
}

impl User<'_> {
    fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.name.is_none()
            && self.full_name.is_none()
            && self.target.is_empty()
            && self.changes.is_empty()
    }
}

#[derive(Serialize, Default, Clone)]
struct UserRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<S<'a>>,
}

impl UserRef<'_> {
    fn is_empty(&self) -> bool {
        self.id.is_none() && self.name.is_none() && self.full_name.is_none() && self.email.is_none()
    }
}

#[derive(Serialize)]
struct Group<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<S<'a>>,
    name: S<'a>,
}

#[derive(Serialize)]
struct Source {
    ip: IpAddr,
    address: String,
}

#[derive(Serialize)]
struct Service<'a> {
    address: S<'a>,
}

#[derive(Serialize)]
struct Observer {
    vendor: &'static str,
    product: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize, Default)]
struct Related {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
}

#[derive(Serialize, Default)]
struct Rule<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ruleset: Option<&'static str>,
}

#[derive(Serialize)]
struct Url<'a> {
    full: S<'a>,
}

#[derive(Serialize, Default)]
struct File<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extension: Option<String>,
}

#[derive(Serialize)]
struct Confluence<'a> {
    audit: Audit<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    space: Option<Space<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Content<'a>>,
}

#[derive(Serialize)]
struct Audit<'a> {
    #[serde(rename = "type")]
    kind: AuditType<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sys_admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    super_admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_collaborator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    affected_objects: Vec<ObjectOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed_values: Vec<ChangeOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_attributes: Vec<AttributeOut<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    self_generated: bool,
}

#[derive(Serialize)]
struct AuditType<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category_i18n_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_i18n_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    area: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
}

#[derive(Serialize)]
struct ObjectOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<&'a str>,
}

#[derive(Serialize)]
struct ChangeOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    i18n_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<S<'a>>,
}

#[derive(Serialize)]
struct AttributeOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_i18n_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<S<'a>>,
}

#[derive(Serialize, Default)]
struct Space<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<S<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<S<'a>>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<S<'a>>,
    #[serde(rename = "type")]
    kind: S<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<S<'a>>,
}

#[derive(Serialize)]
struct DataStream<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dataset: &'static str,
    namespace: &'a str,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

/// The ECS version every document declares.
pub const ECS_VERSION: &str = "9.4.0";

fn text<'a>(t: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    t.as_deref().filter(|s| !s.is_empty())
}

fn owned<'a>(t: &'a Option<Cow<'_, str>>) -> Option<S<'a>> {
    text(t).map(Cow::Borrowed)
}

fn is_kind(o: &Object<'_>, kinds: &[&str]) -> bool {
    o.kind
        .as_deref()
        .is_some_and(|k| kinds.iter().any(|x| k.eq_ignore_ascii_case(x)))
}

/// Changed value or extra attribute by (case-insensitive) name fragment: new value first.
fn detail<'a>(f: &'a Fields<'_>, pred: impl Fn(&str) -> bool) -> Option<&'a str> {
    f.extra
        .iter()
        .find(|a| {
            a.name
                .as_deref()
                .is_some_and(|n| pred(&n.to_ascii_lowercase()))
        })
        .and_then(|a| text(&a.value))
        .or_else(|| {
            f.changed
                .iter()
                .find(|c| {
                    c.key
                        .as_deref()
                        .is_some_and(|n| pred(&n.to_ascii_lowercase()))
                })
                .and_then(|c| text(&c.to).or(text(&c.from)))
        })
}

/// A name that looks like a login (no spaces) rather than a display name.
fn looks_like_login(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

/// Write the document for `f` (`id` is its `event.id`).
#[allow(clippy::too_many_arguments)]
pub fn write(
    f: &Fields<'_>,
    raw: &str,
    id: &str,
    created: &str,
    opts: &NormalizeOptions,
    out: &mut Vec<u8>,
) -> Result<EventMeta, NormalizeError> {
    let resolved = action::resolve(f);
    let mapping: Option<&Mapping> = resolved.mapping;
    let soteri = mapping.and_then(|m| m.soteri);
    let is_soteri = soteri.is_some() || action::is_soteri_category(f);
    let alert = soteri == Some(Soteri::Finding) && !opts.findings_as_events;
    let self_generated = mapping.is_some_and(|m| m.action == "audit-log-searched");
    let plaintext = opts.forward_secrets_plaintext;

    // --- who ---
    let anonymous = text(&f.author_id) == Some("-2");
    let mut user = User {
        id: owned(&f.author_id),
        name: owned(&f.author_username),
        full_name: owned(&f.author_display),
        ..User::default()
    };
    if anonymous && user.full_name.is_none() {
        user.full_name = Some(Cow::Borrowed("Anonymous"));
    }

    // --- what it touched ---
    let users: Vec<&Object<'_>> = f
        .affected
        .iter()
        .filter(|o| is_kind(o, &["User"]))
        .collect();
    let group_obj = f.affected.iter().find(|o| is_kind(o, &["Group"]));
    let space_obj = f.affected.iter().find(|o| is_kind(o, &["Space"]));
    let content_obj = f.affected.iter().find(|o| {
        is_kind(
            o,
            &["Page", "BlogPost", "Blog post", "Attachment", "Comment"],
        )
    });

    let user_mgmt = mapping.is_some_and(|m| {
        m.category.contains(&"iam") || matches!(soteri, Some(Soteri::Notification))
    });
    if user_mgmt {
        if let Some(o) = users.first() {
            let name = text(&o.name);
            user.target.id = owned(&o.id);
            match name {
                Some(n) if looks_like_login(n) => user.target.name = Some(Cow::Borrowed(n)),
                Some(n) => user.target.full_name = Some(Cow::Borrowed(n)),
                None => {}
            }
        }
        let changed = |key: &str| {
            f.changed
                .iter()
                .find(|c| {
                    c.key
                        .as_deref()
                        .is_some_and(|k| k.eq_ignore_ascii_case(key))
                })
                .and_then(|c| text(&c.to))
        };
        if let Some(v) = changed("Username") {
            user.changes.name = Some(Cow::Borrowed(v));
            user.target.name = Some(Cow::Borrowed(v));
        }
        if let Some(v) = changed("Display name").or_else(|| changed("Full name")) {
            user.changes.full_name = Some(Cow::Borrowed(v));
            user.target.full_name = Some(Cow::Borrowed(v));
        }
        if let Some(v) = changed("Email") {
            user.changes.email = Some(Cow::Borrowed(v));
            user.target.email = Some(Cow::Borrowed(v));
        }
        if soteri == Some(Soteri::Notification)
            && let Some(r) = detail(f, |n| n.contains("recipient") || n.contains("email"))
        {
            if r.contains('@') {
                user.target.email = Some(Cow::Borrowed(r));
            } else if user.target.name.is_none() {
                user.target.name = Some(Cow::Borrowed(r));
            }
        }
    }
    let group = if user_mgmt || matches!(soteri, Some(Soteri::AppAdmin)) {
        group_obj
            .and_then(|g| {
                text(&g.name).map(|n| Group {
                    id: owned(&g.id),
                    name: Cow::Borrowed(n),
                })
            })
            .or_else(|| {
                detail(f, |n| n == "group" || n.ends_with(" group")).map(|n| Group {
                    id: None,
                    name: Cow::Borrowed(n),
                })
            })
    } else {
        None
    };

    // --- Soteri details ---
    let rule = match soteri {
        Some(
            Soteri::BuiltInRule
            | Soteri::CustomRule
            | Soteri::Notification
            | Soteri::Finding
            | Soteri::Review,
        ) => {
            let name = detail(f, |n| {
                n.contains("rule")
                    && !n.contains("id")
                    && !n.contains("regex")
                    && !n.contains("expression")
            });
            let rid = detail(f, |n| n.contains("rule") && n.contains("id"));
            let ruleset = match soteri {
                Some(Soteri::BuiltInRule) => Some("built-in"),
                Some(Soteri::CustomRule) => Some("custom"),
                _ => None,
            };
            (name.is_some() || rid.is_some() || ruleset.is_some()).then(|| Rule {
                id: rid.map(Cow::Borrowed),
                name: name.map(Cow::Borrowed),
                ruleset,
            })
        }
        _ => None,
    };
    let url = match soteri {
        Some(Soteri::Notification | Soteri::Finding) => {
            detail(f, |n| n.contains("url") || n.contains("link"))
                .filter(|v| v.starts_with("http"))
                .or_else(|| content_obj.and_then(|o| text(&o.uri)))
                .map(|u| Url {
                    full: Cow::Borrowed(u),
                })
        }
        _ => None,
    };
    let file = match soteri {
        Some(Soteri::Finding) => {
            detail(f, |n| n.contains("attachment") || n.contains("file")).map(|name| File {
                extension: extension(name),
                name: Some(Cow::Borrowed(name)),
            })
        }
        Some(Soteri::DashboardExport) => Some(File {
            name: None,
            extension: Some("csv".into()),
        }),
        _ => None,
    };

    // --- where ---
    let space = space_obj
        .map(|o| Space {
            key: text(&o.uri)
                .and_then(|u| u.split("/display/").nth(1))
                .map(|k| k.split(['/', '?']).next().unwrap_or(k))
                .filter(|k| !k.is_empty())
                .map(Cow::Borrowed)
                .or_else(|| {
                    f.changed
                        .iter()
                        .find(|c| {
                            c.key.as_deref().is_some_and(|k| {
                                k.eq_ignore_ascii_case("Space key")
                                    || k.eq_ignore_ascii_case("Space")
                            })
                        })
                        .and_then(|c| text(&c.to))
                        .map(Cow::Borrowed)
                }),
            name: owned(&o.name),
            id: owned(&o.id),
        })
        .or_else(|| {
            detail(f, |n| n == "space key" || n == "space").map(|k| Space {
                key: Some(Cow::Borrowed(k)),
                ..Space::default()
            })
        });
    let content = content_obj.map(|o| Content {
        id: owned(&o.id),
        kind: Cow::Owned(o.kind.as_deref().unwrap_or("page").to_ascii_lowercase()),
        title: owned(&o.name),
    });

    // --- network ---
    let source_ip: Option<IpAddr> = text(&f.source).and_then(|s| {
        s.split(',')
            .map(str::trim)
            .find_map(|p| p.parse::<IpAddr>().ok())
    });
    let host = text(&f.system).and_then(host_of);

    let mut related = Related::default();
    for u in [&user.name, &user.target.name, &user.changes.name]
        .into_iter()
        .flatten()
    {
        if !related.user.iter().any(|x| x == u.as_ref()) {
            related.user.push(u.to_string());
        }
    }
    if related.user.is_empty()
        && let Some(n) = &user.full_name
    {
        related.user.push(n.to_string());
    }
    if let Some(ip) = source_ip {
        related.ip.push(ip);
    }
    if let Some(h) = &host {
        related.hosts.push(h.clone());
    }

    // --- raw, in one shape for every API ---
    let affected_objects = f
        .affected
        .iter()
        .map(|o| ObjectOut {
            name: text(&o.name),
            kind: text(&o.kind),
            id: text(&o.id),
            uri: text(&o.uri),
        })
        .collect();
    let changed_values = f
        .changed
        .iter()
        .map(|c: &Change<'_>| {
            let key = c.key.as_deref();
            ChangeOut {
                key: text(&c.key),
                i18n_key: text(&c.i18n_key),
                from: c.from.clone().map(|v| mask::apply(key, v, plaintext)),
                to: c.to.clone().map(|v| mask::apply(key, v, plaintext)),
            }
        })
        .collect();
    let extra_attributes = f
        .extra
        .iter()
        .map(|a: &Attribute<'_>| AttributeOut {
            name: text(&a.name),
            name_i18n_key: text(&a.name_i18n_key),
            value: a
                .value
                .clone()
                .map(|v| mask::apply(a.name.as_deref(), v, plaintext)),
        })
        .collect();

    let message = message(
        f,
        &user,
        &resolved.action,
        content_obj,
        space_obj,
        group_obj,
        &users,
    );
    let original = opts
        .include_original
        .then(|| masked_original(f, raw, plaintext));

    let doc = Doc {
        timestamp: timestamp(f.ts_ms, f.sub_ms_nanos)?,
        message,
        event: Event {
            id,
            created,
            kind: if alert { "alert" } else { "event" },
            module: "confluence",
            dataset: "confluence.audit",
            provider: if is_soteri {
                "soteri-security-for-confluence"
            } else {
                "confluence"
            },
            action: resolved.action.clone(),
            category: mapping.map_or(&[], |m| m.category),
            kind_type: mapping.map_or(&["info"], |m| m.kind_type),
            outcome: mapping.and_then(|m| m.outcome),
            original,
        },
        user,
        group,
        source: source_ip.map(|ip| Source {
            ip,
            address: ip.to_string(),
        }),
        service: owned(&f.system).map(|a| Service { address: a }),
        observer: Observer {
            vendor: "Atlassian",
            product: "Confluence",
            kind: "audit",
        },
        related,
        rule,
        url,
        file,
        confluence: Confluence {
            audit: Audit {
                kind: AuditType {
                    category: text(&f.category),
                    action: text(&f.action),
                    category_i18n_key: text(&f.category_key),
                    action_i18n_key: text(&f.action_key),
                    area: text(&f.area),
                    level: text(&f.level),
                },
                method: text(&f.method),
                description: text(&f.description),
                sys_admin: f.sys_admin,
                super_admin: f.super_admin,
                external_collaborator: f.external_collaborator,
                author_type: text(&f.author_type),
                affected_objects,
                changed_values,
                extra_attributes,
                self_generated,
            },
            space,
            content,
        },
        data_stream: DataStream {
            kind: "logs",
            dataset: "confluence.audit",
            namespace: &opts.namespace,
        },
        ecs: Ecs {
            version: ECS_VERSION,
        },
    };
    serde_json::to_writer(&mut *out, &doc)?;
    Ok(EventMeta {
        known_action: mapping.is_some(),
        alert,
        soteri: is_soteri,
        self_generated,
    })
}

/// `event.original`, with matched sensitive text masked like everywhere else.
fn masked_original<'a>(f: &Fields<'_>, raw: &'a str, plaintext: bool) -> S<'a> {
    if plaintext {
        return Cow::Borrowed(raw);
    }
    let mut out = Cow::Borrowed(raw);
    let values = f
        .extra
        .iter()
        .filter(|a| a.name.as_deref().is_some_and(mask::is_sensitive_name))
        .filter_map(|a| a.value.as_deref())
        .chain(
            f.changed
                .iter()
                .filter(|c| c.key.as_deref().is_some_and(mask::is_sensitive_name))
                .flat_map(|c| [c.from.as_deref(), c.to.as_deref()])
                .flatten(),
        );
    for v in values.filter(|v| !v.is_empty()) {
        // The value as it appears inside the JSON text.
        let quoted = serde_json::to_string(v).expect("string serializes");
        let inner = &quoted[1..quoted.len() - 1];
        let masked = serde_json::to_string(&mask::mask(v)).expect("string serializes");
        out = Cow::Owned(out.replace(inner, &masked[1..masked.len() - 1]));
    }
    out
}

/// `http://user@wiki.example.com:8090/x` → `wiki.example.com` (IPv6 without brackets).
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn extension(name: &str) -> Option<String> {
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| ext.to_ascii_lowercase())
}

/// `2021-11-22T23:43:22.054Z`; nanosecond digits only when the record has them.
pub fn timestamp(ts_ms: i64, sub_ms_nanos: u32) -> Result<String, NormalizeError> {
    let nanos = ts_ms as i128 * 1_000_000 + sub_ms_nanos as i128;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| {
        NormalizeError::Field {
            field: "timestamp",
            problem: format!("{ts_ms} ms is out of range ({e})"),
        }
    })?;
    let fmt = if sub_ms_nanos == 0 {
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        )
    } else {
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        )
    };
    t.format(&fmt).map_err(|e| NormalizeError::Field {
        field: "timestamp",
        problem: e.to_string(),
    })
}

/// One readable line: who did what to what.
fn message(
    f: &Fields<'_>,
    user: &User<'_>,
    action: &str,
    content: Option<&Object<'_>>,
    space: Option<&Object<'_>>,
    group: Option<&Object<'_>>,
    users: &[&Object<'_>],
) -> String {
    let who = user
        .name
        .as_deref()
        .or(user.full_name.as_deref())
        .or(user.id.as_deref())
        .unwrap_or("someone");
    let what = text(&f.action)
        .map(|a| a.to_string())
        .unwrap_or_else(|| action.replace('-', " "));
    let mut msg = format!("{who}: {what}");
    let mut objects: Vec<String> = Vec::new();
    for o in users
        .iter()
        .copied()
        .chain(group)
        .chain(content)
        .chain(space)
    {
        if let (Some(kind), Some(name)) = (text(&o.kind), text(&o.name)) {
            objects.push(format!("{} \"{name}\"", kind.to_ascii_lowercase()));
        }
    }
    if !objects.is_empty() {
        msg.push_str(" (");
        msg.push_str(&objects.join(", "));
        msg.push(')');
    }
    msg
}
