//! What a Confluence instance writes to its audit log: the event kinds (Soteri's 24 and the
//! common Confluence ones), the people, spaces and pages they involve, and a seeded
//! generator that turns a compact stored event back into its full record.
//!
//! Stored events are a few integers; details are derived from them deterministically, so a
//! million-record store stays small and every re-fetch renders byte-identical records.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One kind of audit event.
pub struct Kind {
    pub category: &'static str,
    pub category_key: &'static str,
    pub action: &'static str,
    pub action_key: &'static str,
    pub area: &'static str,
    pub detail: Detail,
}

/// Which details an event of a kind carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    None,
    Rule,
    CustomRule,
    Setting,
    AppAdmin,
    Notification,
    Finding,
    Review,
    Space,
    Content,
    Export,
    GlobalFalsePositives,
    UserCreated,
    User,
    Group,
    Membership,
    GlobalPermission,
    SpacePermission,
    Page,
    App,
    Login,
}

const SOTERI: &str = "Soteri Security for Confluence";
const SOTERI_KEY: &str = "soteri.security.audit.category";

macro_rules! soteri {
    ($action:literal, $key:literal, $detail:ident) => {
        Kind {
            category: SOTERI,
            category_key: SOTERI_KEY,
            action: $action,
            action_key: concat!("soteri.security.audit.action.", $key),
            area: "ECOSYSTEM",
            detail: Detail::$detail,
        }
    };
}

macro_rules! confluence {
    ($cat:literal, $catkey:literal, $action:literal, $key:literal, $area:literal, $detail:ident) => {
        Kind {
            category: $cat,
            category_key: concat!("audit.logging.category.", $catkey),
            action: $action,
            action_key: concat!("audit.logging.summary.", $key),
            area: $area,
            detail: Detail::$detail,
        }
    };
}

/// Every kind the generator writes. The first 24 are Soteri's.
pub static KINDS: &[Kind] = &[
    soteri!("Scanning rule toggled", "rule.toggled", Rule),
    soteri!("Global setting changed", "setting.changed", Setting),
    soteri!(
        "App administrator setting changed",
        "admin.setting.changed",
        AppAdmin
    ),
    soteri!(
        "Custom scanning rule created",
        "custom.rule.created",
        CustomRule
    ),
    soteri!(
        "Custom scanning rule updated",
        "custom.rule.updated",
        CustomRule
    ),
    soteri!(
        "Custom scanning rule deleted",
        "custom.rule.deleted",
        CustomRule
    ),
    soteri!(
        "Notification email sent: potentially sensitive content",
        "notification.sent",
        Notification
    ),
    soteri!(
        "User edit introduced potentially sensitive content",
        "sensitive.content.introduced",
        Finding
    ),
    soteri!("Scan finding reviewed", "finding.reviewed", Review),
    soteri!("Scan finding un-reviewed", "finding.unreviewed", Review),
    soteri!(
        "All scan findings un-reviewed",
        "findings.all.unreviewed",
        Space
    ),
    soteri!("Content scan triggered", "scan.content", Content),
    soteri!("Space scan triggered", "scan.space", Space),
    soteri!("Whole instance scan triggered", "scan.instance", None),
    soteri!("Scheduled scans canceled", "scan.scheduled.canceled", None),
    soteri!("Dashboard overview exported", "export.dashboard", Export),
    soteri!("Findings exported", "export.findings", Space),
    soteri!("All findings exported", "export.findings.all", Export),
    soteri!("False positives exported", "export.false.positives", Space),
    soteri!(
        "All false positives exported",
        "export.false.positives.all",
        Export
    ),
    soteri!(
        "Attachment scan information exported",
        "export.attachments",
        Space
    ),
    soteri!(
        "All attachment scan information exported",
        "export.attachments.all",
        Export
    ),
    soteri!(
        "Globally reviewed false positives exported",
        "export.global.false.positives",
        Export
    ),
    soteri!(
        "Globally reviewed false positives changed",
        "global.false.positives.changed",
        GlobalFalsePositives
    ),
    confluence!(
        "Security",
        "security",
        "User login successful",
        "login.success",
        "SECURITY",
        Login
    ),
    confluence!(
        "Security",
        "security",
        "User login failed",
        "login.failed",
        "SECURITY",
        Login
    ),
    confluence!(
        "Users and groups",
        "user.management",
        "User created",
        "user.created",
        "USER_MANAGEMENT",
        UserCreated
    ),
    confluence!(
        "Users and groups",
        "user.management",
        "User deleted",
        "user.deleted",
        "USER_MANAGEMENT",
        User
    ),
    confluence!(
        "Users and groups",
        "user.management",
        "User renamed",
        "user.renamed",
        "USER_MANAGEMENT",
        User
    ),
    confluence!(
        "Users and groups",
        "user.management",
        "Group created",
        "group.created",
        "USER_MANAGEMENT",
        Group
    ),
    confluence!(
        "Users and groups",
        "user.management",
        "User added to group",
        "group.membership.added",
        "USER_MANAGEMENT",
        Membership
    ),
    confluence!(
        "Users and groups",
        "user.management",
        "User removed from group",
        "group.membership.removed",
        "USER_MANAGEMENT",
        Membership
    ),
    confluence!(
        "Permissions",
        "permissions",
        "Global permission added",
        "global.permission.added",
        "PERMISSIONS",
        GlobalPermission
    ),
    confluence!(
        "Permissions",
        "permissions",
        "Space permission added",
        "space.permission.added",
        "PERMISSIONS",
        SpacePermission
    ),
    confluence!(
        "Permissions",
        "permissions",
        "Space permission removed",
        "space.permission.removed",
        "PERMISSIONS",
        SpacePermission
    ),
    confluence!(
        "Spaces",
        "spaces",
        "Space created",
        "space.created",
        "LOCAL_CONFIG_AND_ADMINISTRATION",
        Space
    ),
    confluence!(
        "Spaces",
        "spaces",
        "Space configuration updated",
        "space.config.updated",
        "LOCAL_CONFIG_AND_ADMINISTRATION",
        Space
    ),
    confluence!(
        "Pages",
        "pages",
        "Page created",
        "page.created",
        "END_USER_ACTIVITY",
        Page
    ),
    confluence!(
        "Pages",
        "pages",
        "Page deleted",
        "page.deleted",
        "END_USER_ACTIVITY",
        Page
    ),
    confluence!(
        "Apps",
        "plugins",
        "App enabled",
        "plugin.enabled",
        "GLOBAL_CONFIG_AND_ADMINISTRATION",
        App
    ),
    confluence!(
        "Apps",
        "plugins",
        "App installed",
        "plugin.installed",
        "GLOBAL_CONFIG_AND_ADMINISTRATION",
        App
    ),
    confluence!(
        "Global Administration",
        "admin",
        "Global settings changed",
        "global.settings.edited",
        "GLOBAL_CONFIG_AND_ADMINISTRATION",
        Setting
    ),
];

/// How many leading [`KINDS`] are Soteri's.
pub const SOTERI_KINDS: usize = 24;

pub const USERS: &[(&str, &str)] = &[
    ("jadmin", "Jane Admin"),
    ("mkowalski", "Marta Kowalski"),
    ("tnguyen", "Thanh Nguyen"),
    ("ookafor", "Obinna Okafor"),
    ("lfischer", "Lena Fischer"),
    ("rsantos", "Rafael Santos"),
    ("asharma", "Anika Sharma"),
    ("psvensson", "Per Svensson"),
    ("ymori", "Yuki Mori"),
    ("cdubois", "Claire Dubois"),
];

pub const SPACES: &[(&str, &str, u32)] = &[
    ("SC", "Service Catalogue", 98_306),
    ("ENG", "Engineering", 98_307),
    ("HR", "People Operations", 98_308),
    ("FIN", "Finance", 98_309),
    ("SEC", "Security", 98_310),
    ("OPS", "Operations Runbooks", 98_311),
];

pub const PAGES: &[&str] = &[
    "Onboarding checklist",
    "AWS account inventory",
    "Quarterly close 2026-Q3",
    "Incident 4711 post-mortem",
    "Database credentials (old)",
    "Vendor contracts",
    "On-call rota",
    "API keys for staging",
];

pub const RULES: &[&str] = &[
    "AWS Access Key",
    "Credit Card Number",
    "IBAN",
    "Private Key",
    "Password in text",
    "Slack Token",
    "US Social Security Number",
];

pub const GROUPS: &[&str] = &[
    "confluence-users",
    "confluence-administrators",
    "soteri-admins",
    "finance-team",
    "site-admins",
];

const SECRETS: &[&str] = &[
    "AKIAIOSFODNN7EXAMPLE",
    "4111 1111 1111 1111",
    "DE89370400440532013000",
    "-----BEGIN RSA PRIVATE KEY-----",
    "password=Winter2026!",
    "xoxb-1234-5678-abcdefghijkl",
    "078-05-1120",
];

/// [`Compact::user`] of an event the system wrote (Cloud: `displayName: "System"`, no
/// account id; DC: author id `-1`).
pub const SYSTEM_USER: u16 = u16::MAX;
/// [`Compact::user`] of an anonymous event (a failed login of an unknown user; DC author id
/// `-2`).
pub const ANONYMOUS_USER: u16 = u16::MAX - 1;

/// A stored event: a few integers; everything else is derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compact {
    pub kind: u16,
    pub user: u16,
    pub ip: u16,
    /// Seeds the remaining details (space, page, rule, values).
    pub detail_seed: u32,
}

/// Draw a compact event; `kind` forces one.
pub fn draw(rng: &mut StdRng, kind: Option<usize>) -> Compact {
    let kind = kind.unwrap_or_else(|| {
        // Soteri events are a good share of what this forwarder is for.
        if rng.random_bool(0.4) {
            rng.random_range(0..SOTERI_KINDS)
        } else {
            rng.random_range(SOTERI_KINDS..KINDS.len())
        }
    });
    let user = rng.random_range(0..USERS.len()) as u16;
    // Some events have no person behind them: group sync and app updates are the system's,
    // failed logins of unknown names are anonymous.
    let user = match KINDS[kind].action_key {
        "audit.logging.summary.login.failed" if rng.random_bool(0.3) => ANONYMOUS_USER,
        "audit.logging.summary.group.membership.added"
        | "audit.logging.summary.group.created"
        | "audit.logging.summary.plugin.enabled"
        | "audit.logging.summary.plugin.installed"
            if rng.random_bool(0.25) =>
        {
            SYSTEM_USER
        }
        _ => user,
    };
    Compact {
        kind: kind as u16,
        user,
        ip: rng.random_range(1..250),
        detail_seed: rng.random(),
    }
}

/// A full record, independent of the API that will render it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts_ms: i64,
    pub author: Author,
    pub source_ip: String,
    pub category: String,
    pub category_key: String,
    pub action: String,
    pub action_key: String,
    pub area: String,
    pub affected: Vec<Object>,
    pub changed: Vec<Change>,
    pub extra: Vec<Attribute>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    /// DC user key / Cloud account id.
    pub id: String,
    pub username: String,
    pub display_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub kind: String,
    pub id: String,
    pub uri: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub key: String,
    pub value: String,
}

/// Expand a compact event. `base` is the instance's base URL (for object URIs).
/// One fixed record of `KINDS[kind]` (user, IP and details chosen from the index): the
/// tests' example of each kind.
pub fn example(kind: usize) -> Record {
    let c = Compact {
        kind: kind as u16,
        user: (kind % USERS.len()) as u16,
        ip: 7,
        detail_seed: 1000 + kind as u32,
    };
    expand(1_764_043_200_123, c, "https://wiki.example.com")
}

pub fn expand(ts_ms: i64, c: Compact, base: &str) -> Record {
    let kind = &KINDS[c.kind as usize];
    let mut rng = StdRng::seed_from_u64(c.detail_seed as u64 ^ ((c.kind as u64) << 40));
    let (username, display) = match c.user {
        SYSTEM_USER => ("system", "System"),
        ANONYMOUS_USER => ("anonymous", "Anonymous"),
        u => USERS[u as usize % USERS.len()],
    };
    let pick = |rng: &mut StdRng, n: usize| rng.random_range(0..n);
    let (space_key, space_name, space_id) = SPACES[pick(&mut rng, SPACES.len())];
    let page = PAGES[pick(&mut rng, PAGES.len())];
    let page_id = 1_000_000 + rng.random_range(0..90_000u32);
    let rule = RULES[pick(&mut rng, RULES.len())];
    let (other_user, other_display) = USERS[pick(&mut rng, USERS.len())];
    let group = GROUPS[pick(&mut rng, GROUPS.len())];
    let space_obj = Object {
        name: space_name.into(),
        kind: "Space".into(),
        id: space_id.to_string(),
        uri: format!("{base}/display/{space_key}"),
    };
    let page_obj = Object {
        name: page.into(),
        kind: "Page".into(),
        id: page_id.to_string(),
        uri: format!("{base}/pages/viewpage.action?pageId={page_id}"),
    };
    let user_obj = |name: &str, full: &str| Object {
        name: full.into(),
        kind: "User".into(),
        id: user_key(name),
        uri: format!("{base}/admin/users/viewuser.action?username={name}"),
    };
    let group_obj = Object {
        name: group.into(),
        kind: "Group".into(),
        id: group.into(),
        uri: format!("{base}/admin/users/domembersofgroupsearch.action?membersOfGroupTerm={group}"),
    };
    let attr = |name: &str, key: &str, value: String| Attribute {
        name: name.into(),
        key: format!("soteri.security.audit.attribute.{key}"),
        value,
    };
    let change = |key: &str, from: &str, to: &str| Change {
        key: key.into(),
        from: from.into(),
        to: to.into(),
    };
    let mut affected = Vec::new();
    let mut changed = Vec::new();
    let mut extra = Vec::new();
    match kind.detail {
        Detail::None => {}
        Detail::Rule => {
            let on = rng.random_bool(0.5);
            extra.push(attr("Rule name", "rule.name", rule.into()));
            changed.push(change(
                "Enabled",
                if on { "false" } else { "true" },
                if on { "true" } else { "false" },
            ));
        }
        Detail::CustomRule => {
            extra.push(attr("Rule name", "rule.name", format!("{rule} (custom)")));
            extra.push(attr(
                "Rule ID",
                "rule.id",
                format!("cr-{}", rng.random_range(100..999)),
            ));
            changed.push(change(
                "Regular expression",
                "",
                r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            ));
        }
        Detail::Setting => {
            let (setting, from, to) = [
                ("Auto scan", "false", "true"),
                ("Notify content authors", "true", "false"),
                ("Site title", "Confluence", "Confluence Prod"),
                ("Scan attachments", "false", "true"),
            ][pick(&mut rng, 4)];
            changed.push(change(setting, from, to));
        }
        Detail::AppAdmin => {
            if rng.random_bool(0.5) {
                affected.push(group_obj);
                changed.push(change("App administrator group", "", group));
            } else {
                affected.push(user_obj(other_user, other_display));
                changed.push(change("App administrator", "", other_user));
            }
        }
        Detail::Notification => {
            affected.push(user_obj(other_user, other_display));
            affected.push(page_obj.clone());
            extra.push(attr(
                "Recipient",
                "recipient",
                format!("{other_user}@example.com"),
            ));
            extra.push(attr("Rule name", "rule.name", rule.into()));
            extra.push(attr("Content URL", "content.url", page_obj.uri.clone()));
        }
        Detail::Finding => {
            let attachment = rng.random_bool(0.3);
            affected.push(page_obj.clone());
            affected.push(space_obj);
            extra.push(attr("Rule name", "rule.name", rule.into()));
            extra.push(attr(
                "Matched text",
                "matched.text",
                SECRETS[pick(&mut rng, SECRETS.len())].into(),
            ));
            extra.push(attr("Content URL", "content.url", page_obj.uri.clone()));
            if attachment {
                extra.push(attr(
                    "Attachment",
                    "attachment.name",
                    "export-2026.xlsx".into(),
                ));
            }
        }
        Detail::Review => {
            affected.push(page_obj);
            affected.push(space_obj);
            extra.push(attr("Rule name", "rule.name", rule.into()));
            extra.push(attr(
                "Finding ID",
                "finding.id",
                rng.random_range(10_000..99_999u32).to_string(),
            ));
        }
        Detail::Space => affected.push(space_obj),
        Detail::Content => {
            affected.push(page_obj);
            affected.push(space_obj);
        }
        Detail::Export => extra.push(attr("Format", "format", "CSV".into())),
        Detail::GlobalFalsePositives => {
            let before = rng.random_range(0..40u32);
            changed.push(change(
                "Globally reviewed false positives",
                &before.to_string(),
                &(before + 1).to_string(),
            ));
        }
        Detail::UserCreated => {
            affected.push(user_obj(other_user, other_display));
            changed.push(change("Username", "", other_user));
            changed.push(change("Display name", "", other_display));
            changed.push(change("Email", "", &format!("{other_user}@example.com")));
            changed.push(change("Active", "", "Yes"));
        }
        Detail::User => affected.push(user_obj(other_user, other_display)),
        Detail::Group => affected.push(group_obj),
        Detail::Membership => {
            affected.push(group_obj);
            affected.push(user_obj(other_user, other_display));
        }
        Detail::GlobalPermission => {
            affected.push(group_obj);
            changed.push(change("Group", "", group));
            changed.push(change("Type", "", "ADMINISTRATECONFLUENCE"));
        }
        Detail::SpacePermission => {
            affected.push(group_obj);
            affected.push(space_obj);
            changed.push(change("Group", "", group));
            changed.push(change("Space", "", space_key));
            changed.push(change("Type", "", "SETPAGEPERMISSIONS"));
        }
        Detail::Page => {
            affected.push(page_obj);
            affected.push(space_obj);
        }
        Detail::App => affected.push(Object {
            name: "Soteri Security for Confluence".into(),
            kind: "App".into(),
            id: "com.soteri.security.confluence".into(),
            uri: String::new(),
        }),
        Detail::Login => {}
    }
    Record {
        ts_ms,
        author: Author {
            id: match c.user {
                SYSTEM_USER => "-1".into(),
                ANONYMOUS_USER => "-2".into(),
                _ => user_key(username),
            },
            username: username.into(),
            display_name: display.into(),
        },
        source_ip: format!("10.20.{}.{}", c.ip / 100, c.ip),
        category: kind.category.into(),
        category_key: kind.category_key.into(),
        action: kind.action.into(),
        action_key: kind.action_key.into(),
        area: kind.area.into(),
        affected,
        changed,
        extra,
    }
}

/// A stable 32-hex user key / account id per username.
pub fn user_key(username: &str) -> String {
    let h = blake3::hash(username.as_bytes());
    hex::encode(&h.as_bytes()[..16])
}

/// A stable UUID-shaped id for `name` (Cloud group directory suffixes).
pub fn uuid_of(name: &str) -> String {
    let h = hex::encode(&blake3::hash(name.as_bytes()).as_bytes()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
