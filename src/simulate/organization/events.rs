//! Realistic organization audit events for a Confluence-heavy organization, drawn from a
//! seeded generator: logins (password, SSO, failures), API-token use, page and space
//! exports, page views and edits, group and product-access changes, policy changes and the
//! odd action the forwarder does not know. Most events are processed within seconds of
//! happening, some minutes to hours later (the trap of a log ordered by processing time).

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::source::paging::iso;

/// The organization's one Confluence site.
pub const SITE_HOST: &str = "acme-sim.atlassian.net";
const SITE_ID: &str = "a436116f-02ce-4520-8fbb-7301462a1674";

/// (action key, display name, weight, what the event carries)
const KINDS: &[(&str, &str, u32, Shape)] = &[
    (
        "user_logged_in_with_password",
        "User logged in with password",
        20,
        Shape::Login,
    ),
    (
        "user_logged_in_with_sso",
        "User logged in with SSO",
        15,
        Shape::Login,
    ),
    ("user_login_failed", "User login failed", 4, Shape::Login),
    ("user_logged_out", "User logged out", 6, Shape::Login),
    ("api_token_created", "API token created", 2, Shape::Token),
    ("api_token_revoked", "API token revoked", 1, Shape::Token),
    ("api_token_used", "API token used", 10, Shape::Token),
    ("page_exported", "Page exported", 5, Shape::Page),
    ("space_exported", "Space exported", 2, Shape::Space),
    ("page_viewed", "Page viewed", 25, Shape::Page),
    ("page_updated", "Page updated", 8, Shape::Page),
    (
        "user_added_to_group",
        "User added to group",
        2,
        Shape::Group,
    ),
    (
        "user_removed_from_group",
        "User removed from group",
        1,
        Shape::Group,
    ),
    (
        "product_access_granted",
        "Product access granted",
        1,
        Shape::Access,
    ),
    (
        "authentication_policy_updated",
        "Authentication policy updated",
        1,
        Shape::Policy,
    ),
    (
        "organization_setting_updated",
        "Organization setting updated",
        1,
        Shape::Policy,
    ),
    (
        "app_data_access_requested",
        "App requested data access",
        1,
        Shape::Policy,
    ),
];

#[derive(Debug, Clone, Copy)]
enum Shape {
    Login,
    Token,
    Page,
    Space,
    Group,
    Access,
    Policy,
}

const PEOPLE: &[(&str, &str, &str)] = &[
    (
        "5b10ac8d82e05b22cc7d4ef5",
        "Jane Admin",
        "jane@acme.example",
    ),
    (
        "6c21bd9e93f16c33dd8e5f06",
        "Omar Writer",
        "omar@acme.example",
    ),
    ("7d32cea0a4027d44ee9f6017", "Li Reviewer", "li@acme.example"),
    (
        "8e43dfb1b5138e55ffa07128",
        "Ana Security",
        "ana@acme.example",
    ),
];

const PLACES: &[(&str, &str, &str, &str, &str)] = &[
    ("203.0.113.7", "DE", "Germany", "Berlin", "Berlin"),
    (
        "198.51.100.23",
        "US",
        "United States",
        "California",
        "San Francisco",
    ),
    ("192.0.2.146", "GB", "United Kingdom", "England", "London"),
];

/// The action keys and display names `/event-actions` lists.
pub fn actions() -> impl Iterator<Item = (&'static str, &'static str)> {
    KINDS.iter().map(|(k, d, _, _)| (*k, *d))
}

/// One event's `data` element: `id`, processed at `processed_ms`, happened `delay_ms` before.
pub fn event(rng: &mut StdRng, id: &str, org_id: &str, processed_ms: i64, delay_ms: i64) -> Value {
    let total: u32 = KINDS.iter().map(|k| k.2).sum();
    let mut pick = rng.random_range(0..total);
    let &(action, display, _, shape) = KINDS
        .iter()
        .find(|k| {
            let hit = pick < k.2;
            pick = pick.saturating_sub(k.2);
            hit
        })
        .expect("weights cover the range");
    let (actor_id, name, email) = PEOPLE[rng.random_range(0..PEOPLE.len())];
    let (ip, geo, country, region, city) = PLACES[rng.random_range(0..PLACES.len())];
    let page = rng.random_range(100_000..999_999);
    let token = format!("tok-{}", rng.random_range(1000..9999));
    let context = match shape {
        Shape::Page => json!([{"id": page.to_string(), "type": "page",
            "attributes": {"title": format!("Runbook {page}"), "spaceKey": "OPS"},
            "links": {"alt": format!("https://{SITE_HOST}/wiki/spaces/OPS/pages/{page}")}}]),
        Shape::Space => {
            json!([{"id": "98305", "type": "space", "attributes": {"key": "OPS", "name": "Operations"},
            "links": {"alt": format!("https://{SITE_HOST}/wiki/spaces/OPS")}}])
        }
        Shape::Token => {
            json!([{"id": token, "type": "api-token", "attributes": {"label": "ci-export"}}])
        }
        Shape::Group => json!([{"id": "e1a9c3f0-5d2b-4c8e-9f1a-2b3c4d5e6f70", "type": "group",
            "attributes": {"name": "confluence-admins"}},
            {"id": PEOPLE[1].0, "type": "user", "attributes": {"name": PEOPLE[1].1}}]),
        Shape::Access => {
            json!([{"id": "confluence", "type": "products", "attributes": {"name": "Confluence"}}])
        }
        Shape::Login | Shape::Policy => json!([]),
    };
    let auth = match shape {
        Shape::Token => {
            json!({"authType": "api-token", "tokenId": token, "tokenLabel": "ci-export"})
        }
        _ => json!({"authType": "password", "tokenId": null, "tokenLabel": null}),
    };
    let container = match shape {
        Shape::Policy => json!([]),
        _ => json!([{"id": SITE_ID, "type": "sites",
            "attributes": {"siteHostName": SITE_HOST, "siteName": "acme-sim"}}]),
    };
    let mut attributes = json!({
        "time": iso(processed_ms - delay_ms),
        "processedAt": iso(processed_ms),
        "action": action,
        "actor": {"id": actor_id, "name": name, "email": email, "auth": auth,
            "links": {"self": format!("https://api.atlassian.com/users/{actor_id}/manage/profile")}},
        "onBehalfOf": null,
        "context": context,
        "container": container,
    });
    // A few events come from a system actor, with no email and no location.
    if rng.random_bool(0.9) {
        attributes["location"] = json!({"ip": ip, "geo": geo, "countryName": country,
            "regionName": region, "city": city});
    } else {
        attributes["actor"] = json!({"id": "system", "name": "Atlassian", "auth": null});
    }
    json!({
        "id": id,
        "type": "events",
        "attributes": attributes,
        "message": {"content": format!("{name}: {display}"), "format": "simple"},
        "links": {"self": format!("https://api.atlassian.com/admin/v1/orgs/{org_id}/events/{id}")},
    })
}

/// How long after happening an event is processed: seconds mostly, sometimes much later.
pub fn processing_delay(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..100) {
        0..=89 => rng.random_range(200..5_000),
        90..=97 => rng.random_range(60_000..1_800_000),
        _ => rng.random_range(3_600_000..6 * 3_600_000),
    }
}
