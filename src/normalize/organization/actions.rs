//! The categorization table of the organization audit log's common actions.
//!
//! Keys are kept exactly as the API sends them (snake_case). Only the spec's example
//! (`user_logged_in_with_password`) is attested; the rest follow Atlassian's "Audit log
//! activities" page in the API's spelling and are unverified. An action not listed here is
//! forwarded with a generic categorization (`event.type: info`) and counted
//! (`caf_source_unknown_actions_total`), never dropped.

/// What ECS says about one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgAction {
    pub key: &'static str,
    pub category: &'static [&'static str],
    pub kind_type: &'static [&'static str],
    pub outcome: Option<&'static str>,
}

const fn a(
    key: &'static str,
    category: &'static [&'static str],
    kind_type: &'static [&'static str],
    outcome: Option<&'static str>,
) -> OrgAction {
    OrgAction {
        key,
        category,
        kind_type,
        outcome,
    }
}

const AUTH: &[&str] = &["authentication"];
const IAM: &[&str] = &["iam"];
const FILE: &[&str] = &["file"];
const WEB: &[&str] = &["web"];
const CONFIG: &[&str] = &["configuration"];
const OK: Option<&str> = Some("success");

/// The table, by family: logins/logouts, API tokens, exports, views and edits, access
/// changes, security policies and organization settings.
pub const ACTIONS: &[OrgAction] = &[
    // Logins and logouts.
    a("user_logged_in_with_password", AUTH, &["start"], OK),
    a("user_logged_in_with_sso", AUTH, &["start"], OK),
    a("user_logged_in_with_google", AUTH, &["start"], OK),
    a(
        "user_logged_in_with_two_step_verification",
        AUTH,
        &["start"],
        OK,
    ),
    a("user_login_failed", AUTH, &["start"], Some("failure")),
    a("user_logged_out", AUTH, &["end"], OK),
    // API tokens.
    a("api_token_created", IAM, &["creation"], OK),
    a("api_token_revoked", IAM, &["deletion"], OK),
    a("api_token_used", AUTH, &["info"], OK),
    a("user_authenticated_with_api_token", AUTH, &["start"], OK),
    // Exports.
    a("page_exported", FILE, &["access"], OK),
    a("space_exported", FILE, &["access"], OK),
    a("site_exported", FILE, &["access"], OK),
    // Page views and edits.
    a("page_viewed", WEB, &["access"], OK),
    a("page_created", FILE, &["creation"], OK),
    a("page_updated", FILE, &["change"], OK),
    a("page_deleted", FILE, &["deletion"], OK),
    // Users, groups and product access.
    a("user_invited", IAM, &["user", "creation"], OK),
    a("user_created", IAM, &["user", "creation"], OK),
    a("user_deactivated", IAM, &["user", "change"], OK),
    a("user_reactivated", IAM, &["user", "change"], OK),
    a("user_deleted", IAM, &["user", "deletion"], OK),
    a("user_added_to_group", IAM, &["group", "change"], OK),
    a("user_removed_from_group", IAM, &["group", "change"], OK),
    a("group_created", IAM, &["group", "creation"], OK),
    a("group_deleted", IAM, &["group", "deletion"], OK),
    a("product_access_granted", IAM, &["user", "change"], OK),
    a("product_access_revoked", IAM, &["user", "change"], OK),
    a("admin_role_granted", IAM, &["admin", "change"], OK),
    a("admin_role_revoked", IAM, &["admin", "change"], OK),
    // Security policies and organization settings.
    a("authentication_policy_updated", CONFIG, &["change"], OK),
    a("password_policy_updated", CONFIG, &["change"], OK),
    a("data_security_policy_updated", CONFIG, &["change"], OK),
    a("ip_allowlist_updated", CONFIG, &["change"], OK),
    a("two_step_verification_enforced", CONFIG, &["change"], OK),
    a("organization_setting_updated", CONFIG, &["change"], OK),
    a("domain_verified", CONFIG, &["creation"], OK),
];

/// The table's entry for `key`, if it has one.
pub fn lookup(key: &str) -> Option<&'static OrgAction> {
    ACTIONS.iter().find(|a| a.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once() {
        for (i, a) in ACTIONS.iter().enumerate() {
            assert!(
                ACTIONS[i + 1..].iter().all(|b| b.key != a.key),
                "{} listed twice",
                a.key
            );
        }
        assert_eq!(lookup("page_exported").unwrap().category, FILE);
        assert_eq!(lookup("no_such_action"), None);
    }
}
