//! Which event a record is: the mapping tables of `ecs-mapping.md`.
//!
//! One `event.action` spelling across Cloud, Server and DC: DC records are recognised by
//! their i18n key (display strings are localised and change between versions), Cloud and
//! legacy records by their English summary, Soteri's events by their documented names (in
//! the action or, as some versions write it, the category). Anything else keeps a derived
//! action and is counted as unknown, never dropped.

use std::borrow::Cow;

use super::record::Fields;

/// How an action maps to ECS categorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub action: &'static str,
    pub category: &'static [&'static str],
    pub kind_type: &'static [&'static str],
    pub outcome: Option<&'static str>,
    pub soteri: Option<Soteri>,
}

/// What Soteri-specific fields an event gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Soteri {
    BuiltInRule,
    Setting,
    AppAdmin,
    CustomRule,
    Notification,
    Finding,
    Review,
    Scan,
    Export,
    DashboardExport,
    GlobalFalsePositives,
}

const SUCCESS: Option<&str> = Some("success");

macro_rules! m {
    ($action:literal, [$($c:literal),*], [$($t:literal),*], $outcome:expr) => {
        Mapping { action: $action, category: &[$($c),*], kind_type: &[$($t),*], outcome: $outcome, soteri: None }
    };
    ($action:literal, [$($c:literal),*], [$($t:literal),*], $outcome:expr, $s:ident) => {
        Mapping { action: $action, category: &[$($c),*], kind_type: &[$($t),*], outcome: $outcome, soteri: Some(Soteri::$s) }
    };
}

/// Soteri Security for Confluence: (documented event name, lowercase) → mapping.
static SOTERI: &[(&str, Mapping)] = &[
    (
        "scanning rule toggled",
        m!(
            "scanning-rule-toggled",
            ["configuration"],
            ["change"],
            SUCCESS,
            BuiltInRule
        ),
    ),
    (
        "global setting changed",
        m!(
            "global-setting-changed",
            ["configuration"],
            ["change"],
            SUCCESS,
            Setting
        ),
    ),
    (
        "app administrator setting changed",
        m!(
            "app-administrator-setting-changed",
            ["iam", "configuration"],
            ["change"],
            SUCCESS,
            AppAdmin
        ),
    ),
    (
        "custom scanning rule created",
        m!(
            "custom-scanning-rule-created",
            ["configuration"],
            ["creation"],
            SUCCESS,
            CustomRule
        ),
    ),
    (
        "custom scanning rule updated",
        m!(
            "custom-scanning-rule-updated",
            ["configuration"],
            ["change"],
            SUCCESS,
            CustomRule
        ),
    ),
    (
        "custom scanning rule deleted",
        m!(
            "custom-scanning-rule-deleted",
            ["configuration"],
            ["deletion"],
            SUCCESS,
            CustomRule
        ),
    ),
    (
        "notification email sent: potentially sensitive content",
        m!(
            "sensitive-content-notification-sent",
            ["email"],
            ["info"],
            SUCCESS,
            Notification
        ),
    ),
    (
        "user edit introduced potentially sensitive content",
        m!(
            "sensitive-content-introduced",
            ["file"],
            ["change"],
            None,
            Finding
        ),
    ),
    (
        "scan finding reviewed",
        m!(
            "scan-finding-reviewed",
            ["configuration"],
            ["creation"],
            SUCCESS,
            Review
        ),
    ),
    (
        "scan finding un-reviewed",
        m!(
            "scan-finding-unreviewed",
            ["configuration"],
            ["deletion"],
            SUCCESS,
            Review
        ),
    ),
    (
        "all scan findings un-reviewed",
        m!(
            "scan-findings-all-unreviewed",
            ["configuration"],
            ["deletion"],
            SUCCESS,
            Review
        ),
    ),
    (
        "content scan triggered",
        m!("content-scan-triggered", [], [], SUCCESS, Scan),
    ),
    (
        "space scan triggered",
        m!("space-scan-triggered", [], [], SUCCESS, Scan),
    ),
    (
        "whole instance scan triggered",
        m!("instance-scan-triggered", [], [], SUCCESS, Scan),
    ),
    (
        "scheduled scans canceled",
        m!("scheduled-scans-canceled", [], [], SUCCESS, Scan),
    ),
    (
        "dashboard overview exported",
        m!(
            "dashboard-overview-exported",
            ["file"],
            ["access"],
            SUCCESS,
            DashboardExport
        ),
    ),
    (
        "findings exported",
        m!("findings-exported", ["file"], ["access"], SUCCESS, Export),
    ),
    (
        "all findings exported",
        m!(
            "all-findings-exported",
            ["file"],
            ["access"],
            SUCCESS,
            Export
        ),
    ),
    (
        "false positives exported",
        m!(
            "false-positives-exported",
            ["file"],
            ["access"],
            SUCCESS,
            Export
        ),
    ),
    (
        "all false positives exported",
        m!(
            "all-false-positives-exported",
            ["file"],
            ["access"],
            SUCCESS,
            Export
        ),
    ),
    (
        "attachment scan information exported",
        m!(
            "attachment-scan-info-exported",
            ["file"],
            ["access"],
            SUCCESS,
            Export
        ),
    ),
    (
        "all attachment scan information exported",
        m!(
            "all-attachment-scan-info-exported",
            ["file"],
            ["access"],
            SUCCESS,
            Export
        ),
    ),
    (
        "globally reviewed false positives exported",
        m!(
            "global-false-positives-exported",
            ["file"],
            ["access"],
            SUCCESS,
            Export
        ),
    ),
    (
        "globally reviewed false positives changed",
        m!(
            "global-false-positives-changed",
            ["configuration"],
            ["change"],
            SUCCESS,
            GlobalFalsePositives
        ),
    ),
];

/// DC i18n keys (without `audit.logging.summary.` where they have it) → mapping.
static BY_KEY: &[(&str, Mapping)] = &[
    (
        "login.success",
        m!("user-login", ["authentication"], ["start"], SUCCESS),
    ),
    (
        "login.failed",
        m!("user-login", ["authentication"], ["info"], Some("failure")),
    ),
    (
        "user.logout",
        m!("user-logout", ["authentication"], ["end"], SUCCESS),
    ),
    (
        "sudo.auth.successful",
        m!("admin-sudo-start", ["authentication"], ["start"], SUCCESS),
    ),
    (
        "sudo.logout",
        m!("admin-sudo-end", ["authentication"], ["end"], SUCCESS),
    ),
    (
        "user.created",
        m!("user-created", ["iam"], ["user", "creation"], SUCCESS),
    ),
    (
        "user.deleted",
        m!("user-deleted", ["iam"], ["user", "deletion"], SUCCESS),
    ),
    (
        "user.renamed",
        m!("user-renamed", ["iam"], ["user", "change"], SUCCESS),
    ),
    (
        "user.updated",
        m!("user-updated", ["iam"], ["user", "change"], SUCCESS),
    ),
    (
        "user.password.changed",
        m!(
            "user-password-changed",
            ["iam"],
            ["user", "change"],
            SUCCESS
        ),
    ),
    (
        "group.created",
        m!("group-created", ["iam"], ["group", "creation"], SUCCESS),
    ),
    (
        "group.deleted",
        m!("group-deleted", ["iam"], ["group", "deletion"], SUCCESS),
    ),
    (
        "group.membership.added",
        m!("group-member-added", ["iam"], ["group", "change"], SUCCESS),
    ),
    (
        "group.membership.removed",
        m!(
            "group-member-removed",
            ["iam"],
            ["group", "change"],
            SUCCESS
        ),
    ),
    (
        "global.permission.added",
        m!(
            "global-permission-added",
            ["iam", "configuration"],
            ["creation"],
            SUCCESS
        ),
    ),
    (
        "global.permission.removed",
        m!(
            "global-permission-removed",
            ["iam", "configuration"],
            ["deletion"],
            SUCCESS
        ),
    ),
    (
        "space.permission.added",
        m!(
            "space-permission-added",
            ["iam", "configuration"],
            ["creation"],
            SUCCESS
        ),
    ),
    (
        "space.permission.removed",
        m!(
            "space-permission-removed",
            ["iam", "configuration"],
            ["deletion"],
            SUCCESS
        ),
    ),
    (
        "global.settings.edited",
        m!(
            "global-settings-changed",
            ["configuration"],
            ["change"],
            SUCCESS
        ),
    ),
    (
        "atlassian.audit.event.action.audit.config.updated",
        m!(
            "audit-config-changed",
            ["configuration"],
            ["change"],
            SUCCESS
        ),
    ),
    (
        "space.created",
        m!("space-created", ["configuration"], ["creation"], SUCCESS),
    ),
    (
        "space.removed",
        m!("space-deleted", ["configuration"], ["deletion"], SUCCESS),
    ),
    (
        "space.config.updated",
        m!("space-updated", ["configuration"], ["change"], SUCCESS),
    ),
    (
        "space.export",
        m!("space-exported", ["file"], ["access"], SUCCESS),
    ),
    (
        "page.created",
        m!("page-created", ["file"], ["creation"], SUCCESS),
    ),
    (
        "page.deleted",
        m!("page-deleted", ["file"], ["deletion"], SUCCESS),
    ),
    (
        "personal.access.token.created",
        m!(
            "access-token-created",
            ["iam"],
            ["admin", "creation"],
            SUCCESS
        ),
    ),
    (
        "personal.access.token.deleted",
        m!(
            "access-token-deleted",
            ["iam"],
            ["admin", "deletion"],
            SUCCESS
        ),
    ),
    (
        "plugin.installed",
        m!("app-installed", ["package"], ["installation"], SUCCESS),
    ),
    (
        "plugin.enabled",
        m!("app-enabled", ["package"], ["change"], SUCCESS),
    ),
    (
        "plugin.disabled",
        m!("app-disabled", ["package"], ["change"], SUCCESS),
    ),
    (
        "plugin.uninstalled",
        m!("app-uninstalled", ["package"], ["deletion"], SUCCESS),
    ),
    (
        "atlassian.audit.event.action.audit.search",
        m!("audit-log-searched", ["configuration"], ["access"], SUCCESS),
    ),
];

/// Cloud and legacy summaries (lowercase) → the DC key they mean.
static BY_SUMMARY: &[(&str, &str)] = &[
    ("user login successful", "login.success"),
    ("user login failed", "login.failed"),
    ("user logged out", "user.logout"),
    ("user created", "user.created"),
    ("user deleted", "user.deleted"),
    ("user renamed", "user.renamed"),
    ("user details updated", "user.updated"),
    ("user password changed", "user.password.changed"),
    ("group created", "group.created"),
    ("group deleted", "group.deleted"),
    ("user added to group", "group.membership.added"),
    ("user removed from group", "group.membership.removed"),
    ("global permission added", "global.permission.added"),
    ("global permission removed", "global.permission.removed"),
    ("space permission added", "space.permission.added"),
    ("space permission removed", "space.permission.removed"),
    ("global settings changed", "global.settings.edited"),
    (
        "audit log configuration updated",
        "atlassian.audit.event.action.audit.config.updated",
    ),
    ("space created", "space.created"),
    ("space deleted", "space.removed"),
    ("space removed", "space.removed"),
    ("space configuration updated", "space.config.updated"),
    ("space exported", "space.export"),
    ("space export", "space.export"),
    ("page created", "page.created"),
    ("page deleted", "page.deleted"),
    (
        "personal access token created",
        "personal.access.token.created",
    ),
    (
        "personal access token deleted",
        "personal.access.token.deleted",
    ),
    ("app installed", "plugin.installed"),
    ("app enabled", "plugin.enabled"),
    ("app disabled", "plugin.disabled"),
    ("app uninstalled", "plugin.uninstalled"),
    (
        "audit log search performed",
        "atlassian.audit.event.action.audit.search",
    ),
];

const DC_PREFIX: &str = "audit.logging.summary.";

/// The record's action, and its mapping when the tables know it.
pub struct Resolved<'a> {
    pub action: Cow<'a, str>,
    pub mapping: Option<&'static Mapping>,
}

pub fn resolve<'a>(f: &'a Fields<'_>) -> Resolved<'a> {
    if let Some(m) = soteri(f) {
        return Resolved {
            action: Cow::Borrowed(m.action),
            mapping: Some(m),
        };
    }
    if let Some(key) = f.action_key.as_deref().filter(|k| !k.is_empty()) {
        let short = key.strip_prefix(DC_PREFIX).unwrap_or(key);
        if let Some((_, m)) = BY_KEY.iter().find(|(k, _)| *k == short) {
            return Resolved {
                action: Cow::Borrowed(m.action),
                mapping: Some(m),
            };
        }
        return Resolved {
            action: Cow::Owned(short.replace('.', "-")),
            mapping: None,
        };
    }
    let summary = f.action.as_deref().unwrap_or("");
    if let Some(m) = BY_SUMMARY
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(summary.trim()))
        .and_then(|(_, key)| BY_KEY.iter().find(|(k, _)| k == key))
        .map(|(_, m)| m)
    {
        return Resolved {
            action: Cow::Borrowed(m.action),
            mapping: Some(m),
        };
    }
    Resolved {
        action: Cow::Owned(kebab(summary)),
        mapping: None,
    }
}

/// Soteri's events: by name in the action, or in the category.
fn soteri(f: &Fields<'_>) -> Option<&'static Mapping> {
    let find = |name: &str| {
        let name = name.trim();
        SOTERI
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, m)| m)
    };
    f.action
        .as_deref()
        .and_then(find)
        .or_else(|| f.category.as_deref().and_then(find))
}

/// Whether the record comes from the Soteri app (its category), even when the action is one
/// the tables do not know yet.
pub fn is_soteri_category(f: &Fields<'_>) -> bool {
    f.category.as_deref().is_some_and(|c| {
        c.trim()
            .eq_ignore_ascii_case("Soteri Security for Confluence")
    })
}

/// "Space logo uploaded" → "space-logo-uploaded".
pub fn kebab(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

/// Every action name the tables can produce (for tests of the mapping).
pub fn known_actions() -> impl Iterator<Item = &'static Mapping> {
    SOTERI
        .iter()
        .map(|(_, m)| m)
        .chain(BY_KEY.iter().map(|(_, m)| m))
}

/// Soteri's 24 documented event names.
pub fn soteri_names() -> impl Iterator<Item = &'static str> {
    SOTERI.iter().map(|(n, _)| *n)
}
