//! The normalizer against real records (`../shared/fixtures`) and the mapping spec, field by
//! field, and every emitted field against the ECS 9.4.0 field list.

use std::collections::BTreeMap;
use std::path::PathBuf;

use confluence_audit_forwarder::normalize::{
    self, Api, NormalizeError, NormalizeOptions, action, parse_record, split_input, write_ecs,
};
use confluence_audit_forwarder::simulate::catalog::{self, KINDS, SOTERI_KINDS};
use confluence_audit_forwarder::simulate::render;
use serde_json::Value;

fn shared(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(shared(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn normalize_with(api: Api, raw: &str, opts: &NormalizeOptions) -> Value {
    let r = parse_record(api, raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let mut out = Vec::new();
    write_ecs(&r, 0, "2026-11-25T00:00:00.000Z", opts, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn normalize(api: Api, raw: &str) -> Value {
    normalize_with(api, raw, &NormalizeOptions::default())
}

/// `doc["a"]["b"]` by dotted path; numeric segments index arrays (`x.0.name`). Absent is
/// `Null`, so `json!(null)` expects a field not to be there.
fn at<'a>(doc: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(doc, |v, k| match k.parse::<usize>() {
        Ok(i) if v.is_array() => &v[i],
        _ => &v[k],
    })
}

fn check(doc: &Value, expected: &[(&str, Value)]) {
    for (path, want) in expected {
        assert_eq!(at(doc, path), want, "{path} in {doc:#}");
    }
}

use serde_json::json;

const API_FILES: &[(&str, Api)] = &[
    ("cloud-audit-start0.json", Api::Cloud),
    ("cloud-audit-start2.json", Api::Cloud),
    ("cloud-records.ndjson", Api::Cloud),
    ("dc-audit-file.audit.log", Api::File),
    ("dc-audit-file-more.audit.log", Api::File),
    ("dc-auditing-entities.ndjson", Api::Auditing),
    ("dc-auditing-events-page1.json", Api::Auditing),
    ("dc-auditing-events-page2-last.json", Api::Auditing),
];

/// Every record in `../shared/fixtures/api/` (pages split with `split_input`): file name,
/// index in the file, API, raw record.
fn api_fixtures_named() -> Vec<(&'static str, usize, Api, String)> {
    let mut out = Vec::new();
    for (file, api) in API_FILES {
        let records = split_input(*api, &read(&format!("fixtures/api/{file}"))).unwrap();
        for (i, r) in records.into_iter().enumerate() {
            out.push((*file, i, *api, r));
        }
    }
    out
}

fn api_fixtures() -> Vec<(Api, String)> {
    api_fixtures_named()
        .into_iter()
        .map(|(_, _, api, raw)| (api, raw))
        .collect()
}

fn pipeline_inputs() -> Vec<(String, Api, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(shared("fixtures/elastic-pipeline")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".input.json") else {
            continue;
        };
        let api = if stem.starts_with("cloud-api") {
            Api::Cloud
        } else if stem.starts_with("dc-file") {
            Api::File
        } else {
            Api::Auditing
        };
        out.push((
            stem.to_owned(),
            api,
            read(&format!("fixtures/elastic-pipeline/{name}")),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What the mapping spec says each fixture record becomes, field by field (`null`: absent).
fn api_expectations() -> BTreeMap<(&'static str, usize), Vec<(&'static str, Value)>> {
    let null = Value::Null;
    // Shared by all DC records of the Elastic test instance.
    let dc_host = |v: &mut Vec<(&'static str, Value)>| {
        v.extend([
            ("source.ip", json!("81.2.69.143")),
            ("source.address", json!("81.2.69.143")),
            ("related.ip", json!(["81.2.69.143"])),
            ("service.address", json!("http://confluence.internal:8090")),
            ("related.hosts", json!(["confluence.internal"])),
            ("confluence.audit.method", json!("Browser")),
        ]);
    };
    let search = |ts: &str, id: &str, name: Value, full: &str, related: Value| {
        let mut v = vec![
            ("@timestamp", json!(ts)),
            ("event.action", json!("audit-log-searched")),
            ("event.category", json!(["configuration"])),
            ("event.type", json!(["access"])),
            ("event.outcome", json!("success")),
            ("event.kind", json!("event")),
            ("event.provider", json!("confluence")),
            ("user.id", json!(id)),
            ("user.name", name),
            ("user.full_name", json!(full)),
            ("related.user", related),
            ("confluence.audit.self_generated", json!(true)),
            ("confluence.audit.type.category", json!("Auditing")),
            (
                "confluence.audit.type.action_i18n_key",
                json!("atlassian.audit.event.action.audit.search"),
            ),
            ("user.target", Value::Null),
            ("group", Value::Null),
        ];
        dc_host(&mut v);
        v
    };
    let file_search = |ts: &str| {
        let mut v = search(
            ts,
            "2c9580827d4a06e8017d4a07c3e10000",
            Value::Null,
            "test.user",
            json!(["test.user"]),
        );
        v.extend([
            ("confluence.audit.type.area", json!("AUDIT_LOG")),
            ("confluence.audit.type.level", json!("BASE")),
        ]);
        v
    };
    let rest_search = |ts: &str| {
        let mut v = search(
            ts,
            "2c9680837d4a3682017d4a375a280000",
            json!("admin"),
            "test user",
            json!(["admin"]),
        );
        v.extend([
            // Absent from REST entities: not invented.
            ("confluence.audit.type.area", Value::Null),
            (
                "confluence.audit.extra_attributes.0.name",
                json!("ID Range"),
            ),
            (
                "confluence.audit.extra_attributes.0.name_i18n_key",
                json!("atlassian.audit.event.attribute.id"),
            ),
        ]);
        v
    };
    let cloud_logo = |ts: &str| {
        vec![
            ("@timestamp", json!(ts)),
            ("event.action", json!("space-logo-uploaded")),
            ("event.kind", json!("event")),
            ("event.category", null.clone()),
            ("event.type", json!(["info"])),
            ("event.outcome", null.clone()),
            ("user.id", json!("df856b17d84fcf010f11fcfcc6be4267")),
            // Cloud's deprecated `username` is the account id again: not a name.
            ("user.name", null.clone()),
            ("user.full_name", json!("John Jacobs")),
            ("related.user", json!(["John Jacobs"])),
            ("source.ip", json!("81.2.69.143")),
            ("related.ip", json!(["81.2.69.143"])),
            ("service", null.clone()),
            ("related.hosts", null.clone()),
            ("confluence.space.name", json!("Service Catalogue")),
            ("confluence.space.key", null.clone()),
            (
                "confluence.audit.affected_objects",
                json!([{"name": "Service Catalogue", "type": "Space"}]),
            ),
            ("confluence.audit.external_collaborator", json!(false)),
            ("confluence.audit.sys_admin", json!(false)),
            (
                "message",
                json!("John Jacobs: Space logo uploaded (space \"Service Catalogue\")"),
            ),
        ]
    };
    let group_added = |ts: &str, group: &str| {
        let mut v = vec![
            ("@timestamp", json!(ts)),
            ("event.action", json!("group-member-added")),
            ("event.category", json!(["iam"])),
            ("event.type", json!(["group", "change"])),
            ("event.outcome", json!("success")),
            ("user.full_name", json!("test.user")),
            ("user.target.id", json!("2c9580827d4a06e8017d4a0e9dda0001")),
            ("user.target.name", json!("another.user")),
            ("group.id", json!(group)),
            ("group.name", json!(group)),
            ("related.user", json!(["test.user", "another.user"])),
            (
                "confluence.audit.type.action_i18n_key",
                json!("audit.logging.summary.group.membership.added"),
            ),
            ("confluence.audit.type.area", json!("USER_MANAGEMENT")),
        ];
        dc_host(&mut v);
        v
    };
    let mut m = BTreeMap::new();
    m.insert(
        ("cloud-audit-start0.json", 0),
        cloud_logo("2022-01-25T07:51:51.962Z"),
    );
    m.insert(
        ("cloud-audit-start0.json", 1),
        cloud_logo("2022-01-25T07:51:34.621Z"),
    );
    m.insert(
        ("cloud-audit-start2.json", 0),
        vec![
            ("@timestamp", json!("2021-11-16T09:25:56.738Z")),
            ("event.action", json!("user-updated")),
            ("event.category", json!(["iam"])),
            ("event.type", json!(["user", "change"])),
            ("event.outcome", json!("success")),
            // A system event: display name "System", no account id.
            ("user.id", null.clone()),
            ("user.full_name", json!("System")),
            ("user.target.full_name", json!("John Doe (Deactivated)")),
            ("user.target.name", null.clone()),
            (
                "confluence.audit.changed_values",
                json!([{"key": "Active", "from": "Yes", "to": "No"}]),
            ),
            ("confluence.audit.type.category", json!("Users and groups")),
        ],
    );
    m.insert(
        ("cloud-audit-start2.json", 1),
        vec![
            ("@timestamp", json!("2021-11-16T09:25:56.666Z")),
            ("event.action", json!("user-deactivated")),
            ("event.type", json!(["info"])),
            ("event.category", null.clone()),
            // `{"name":"","objectType":""}` is no object at all.
            ("confluence.audit.affected_objects", null.clone()),
            ("user.target", null.clone()),
            ("message", json!("System: User deactivated")),
        ],
    );
    m.insert(
        ("cloud-records.ndjson", 0),
        vec![
            ("@timestamp", json!("2022-01-25T07:44:39.172Z")),
            ("event.action", json!("space-updated")),
            ("event.category", json!(["configuration"])),
            ("event.type", json!(["change"])),
            ("event.outcome", json!("success")),
            ("user.id", json!("df856b17d84fcf010f11fcfcc6be4267")),
            ("user.full_name", json!("John Jacobs")),
            ("confluence.space.key", json!("SC")),
            ("confluence.space.name", json!("Service Catalogue")),
            (
                "confluence.audit.changed_values.3",
                json!({"key": "Space key", "from": "", "to": "SC"}),
            ),
        ],
    );
    m.insert(
        ("cloud-records.ndjson", 1),
        vec![
            ("@timestamp", json!("2022-01-18T08:43:03.045Z")),
            ("event.action", json!("group-member-added")),
            ("event.category", json!(["iam"])),
            ("event.type", json!(["group", "change"])),
            (
                "group.name",
                json!("jira-software-users:b8d81944-e737-4da0-94ca-165fa5c0635c"),
            ),
            ("group.id", null.clone()),
            ("user.target.name", json!("ASP")),
            ("related.user", json!(["System", "ASP"])),
            // affectedObject first, then associatedObjects, one shape.
            (
                "confluence.audit.affected_objects",
                json!([
                    {"name": "jira-software-users:b8d81944-e737-4da0-94ca-165fa5c0635c", "type": "Group"},
                    {"name": "ASP", "type": "User"}
                ]),
            ),
        ],
    );
    m.insert(
        ("cloud-records.ndjson", 2),
        vec![
            ("@timestamp", json!("2022-01-18T08:43:02.767Z")),
            ("event.action", json!("user-created")),
            ("event.category", json!(["iam"])),
            ("event.type", json!(["user", "creation"])),
            ("user.target.name", json!("ASP")),
            ("user.target.full_name", json!("ASP")),
            ("user.changes.full_name", json!("ASP")),
            // The e-mail changed value is empty: no address.
            ("user.changes.email", null.clone()),
            ("user.target.email", null.clone()),
        ],
    );
    m.insert(
        ("dc-audit-file.audit.log", 0),
        file_search("2021-11-22T23:44:13.873Z"),
    );
    m.insert(
        ("dc-audit-file.audit.log", 1),
        file_search("2021-11-22T23:47:20.815Z"),
    );
    m.insert(("dc-audit-file.audit.log", 2), {
        let mut v = vec![
            ("@timestamp", json!("2021-11-22T23:49:50.382Z")),
            ("event.action", json!("global-settings-changed")),
            ("event.category", json!(["configuration"])),
            ("event.type", json!(["change"])),
            ("event.outcome", json!("success")),
            (
                "confluence.audit.changed_values.1",
                json!({"key": "Site title", "i18n_key": "Site title", "from": "Confluence", "to": "Confluence Test"}),
            ),
            ("user.target", null.clone()),
        ];
        dc_host(&mut v);
        v
    });
    m.insert(("dc-audit-file.audit.log", 3), {
        let mut v = vec![
            ("@timestamp", json!("2021-11-22T23:50:13.842Z")),
            ("event.action", json!("user-created")),
            ("event.category", json!(["iam"])),
            ("event.type", json!(["user", "creation"])),
            ("user.id", json!("2c9580827d4a06e8017d4a07c3e10000")),
            ("user.full_name", json!("test.user")),
            ("user.target.id", json!("2c9580827d4a06e8017d4a0e9dda0001")),
            ("user.target.name", json!("another.user")),
            ("user.target.full_name", json!("Another User")),
            ("user.target.email", json!("another.user@example.como")),
            ("user.changes.name", json!("another.user")),
            ("user.changes.full_name", json!("Another User")),
            ("user.changes.email", json!("another.user@example.como")),
            ("related.user", json!(["test.user", "another.user"])),
            (
                "message",
                json!("test.user: User created (user \"Another User\")"),
            ),
        ];
        dc_host(&mut v);
        v
    });
    m.insert(
        ("dc-audit-file.audit.log", 4),
        group_added("2021-11-22T23:50:13.966Z", "confluence-users"),
    );
    m.insert(
        ("dc-audit-file.audit.log", 5),
        group_added("2021-11-22T23:50:32.205Z", "confluence-administrators"),
    );
    m.insert(
        ("dc-audit-file.audit.log", 6),
        file_search("2021-11-22T23:50:35.770Z"),
    );
    let anonymous = |v: &mut Vec<(&'static str, Value)>| {
        v.extend([
            ("user.id", json!("-2")),
            ("user.full_name", json!("Anonymous")),
            ("user.name", Value::Null),
        ]);
        dc_host(v);
    };
    m.insert(("dc-audit-file-more.audit.log", 0), {
        let mut v = vec![
            ("@timestamp", json!("2021-11-22T23:42:47.332Z")),
            ("event.action", json!("app-enabled")),
            ("event.category", json!(["package"])),
            ("event.type", json!(["change"])),
            ("event.outcome", json!("success")),
            (
                "confluence.audit.affected_objects",
                json!([{"name": "Synchrony Interop Bootstrap Plugin", "type": "App"}]),
            ),
        ];
        anonymous(&mut v);
        v
    });
    m.insert(("dc-audit-file-more.audit.log", 1), {
        let mut v = vec![
            ("@timestamp", json!("2021-11-22T23:42:49.660Z")),
            // Not in the tables: the i18n key without its prefix, dots to hyphens.
            ("event.action", json!("space-import")),
            ("event.type", json!(["info"])),
            ("event.category", null.clone()),
            ("event.outcome", null.clone()),
            ("confluence.space.name", json!("Demonstration Space")),
            ("confluence.space.id", json!("98305")),
            (
                "confluence.audit.type.category_i18n_key",
                json!("audit.logging.category.import.export"),
            ),
        ];
        anonymous(&mut v);
        v
    });
    m.insert(("dc-audit-file-more.audit.log", 2), {
        let mut v = vec![
            ("@timestamp", json!("2021-11-22T23:43:21.592Z")),
            ("event.action", json!("global-permission-added")),
            ("event.category", json!(["iam", "configuration"])),
            ("event.type", json!(["creation"])),
            ("event.outcome", json!("success")),
            ("group.id", json!("confluence-administrators")),
            ("group.name", json!("confluence-administrators")),
            ("confluence.audit.type.area", json!("PERMISSIONS")),
        ];
        anonymous(&mut v);
        v
    });
    m.insert(
        ("dc-auditing-entities.ndjson", 0),
        rest_search("2021-11-23T00:44:36.398Z"),
    );
    let space_permission = |ts: &str| {
        let mut v = vec![
            ("@timestamp", json!(ts)),
            ("event.action", json!("space-permission-added")),
            ("event.category", json!(["iam", "configuration"])),
            ("event.type", json!(["creation"])),
            ("event.outcome", json!("success")),
            ("user.id", json!("2c9680837d4a3682017d4a375a280000")),
            ("user.name", json!("admin")),
            ("user.full_name", json!("test user")),
            ("confluence.space.key", json!("ASDF")),
            ("confluence.space.name", json!("asdf")),
            ("confluence.space.id", json!("98306")),
            ("confluence.audit.affected_objects.1.id", json!("98306")),
            (
                "confluence.audit.affected_objects.1.uri",
                json!("http://confluence.internal:8090/display/ASDF"),
            ),
        ];
        dc_host(&mut v);
        v
    };
    m.insert(("dc-auditing-entities.ndjson", 1), {
        let mut v = space_permission("2021-11-23T00:39:37.908Z");
        v.extend([
            ("group.id", json!("confluence-users")),
            ("group.name", json!("confluence-users")),
            ("related.user", json!(["admin"])),
        ]);
        v
    });
    m.insert(("dc-auditing-entities.ndjson", 2), {
        let mut v = space_permission("2021-11-23T00:39:37.895Z");
        v.extend([
            ("user.target.name", json!("Anonymous")),
            ("related.user", json!(["admin", "Anonymous"])),
            ("group", Value::Null),
        ]);
        v
    });
    m.insert(
        ("dc-auditing-events-page1.json", 0),
        rest_search("2021-11-23T00:44:58.940Z"),
    );
    m.insert(
        ("dc-auditing-events-page1.json", 1),
        rest_search("2021-11-23T00:44:36.398Z"),
    );
    m.insert(
        ("dc-auditing-events-page2-last.json", 0),
        rest_search("2021-11-23T00:43:12.188Z"),
    );
    m.insert(
        ("dc-auditing-events-page2-last.json", 1),
        rest_search("2021-11-23T00:41:45.280Z"),
    );
    m
}

#[test]
fn every_api_fixture_normalizes_field_by_field() {
    let records = api_fixtures_named();
    assert_eq!(records.len(), 24);
    let mut expect = api_expectations();
    for (file, i, api, raw) in &records {
        let doc = normalize(*api, raw);
        let want = expect
            .remove(&(*file, *i))
            .unwrap_or_else(|| panic!("no expectations for {file} #{i}"));
        for (path, v) in &want {
            assert_eq!(at(&doc, path), v, "{file} #{i}: {path} in {doc:#}");
        }
        // On every document.
        let kind = match api {
            Api::Cloud | Api::Legacy => "cloud/legacy",
            _ => "dc",
        };
        check(
            &doc,
            &[
                ("ecs.version", json!("9.4.0")),
                ("event.module", json!("confluence")),
                ("event.dataset", json!("confluence.audit")),
                ("event.created", json!("2026-11-25T00:00:00.000Z")),
                ("observer.vendor", json!("Atlassian")),
                ("observer.product", json!("Confluence")),
                ("observer.type", json!("audit")),
                ("data_stream.type", json!("logs")),
                ("data_stream.dataset", json!("confluence.audit")),
                ("data_stream.namespace", json!("default")),
                ("event.original", Value::Null),
            ],
        );
        let id = at(&doc, "event.id").as_str().unwrap();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{kind}: {id}"
        );
        assert!(at(&doc, "message").as_str().is_some_and(|m| m.len() > 10));
    }
    assert!(expect.is_empty(), "fixtures gone: {:?}", expect.keys());
}

#[test]
fn dc_file_time_is_seconds_plus_nanoseconds() {
    let raw = read("fixtures/elastic-pipeline/dc-file_user-created.input.json");
    let doc = normalize(Api::File, &raw);
    // nano 54000000 is .054 — not .540, as Elastic's pipeline has it.
    check(
        &doc,
        &[
            ("@timestamp", json!("2021-11-22T23:43:22.054Z")),
            ("event.action", json!("user-created")),
            ("event.category", json!(["iam"])),
            ("event.type", json!(["user", "creation"])),
            ("event.outcome", json!("success")),
            ("event.kind", json!("event")),
            ("event.provider", json!("confluence")),
            ("user.id", json!("-2")),
            ("user.full_name", json!("Anonymous")),
            ("user.target.id", json!("2c9580827d4a06e8017d4a07c3e10000")),
            ("user.target.name", json!("admin")),
            ("user.target.email", json!("test.user@example.com")),
            ("user.changes.name", json!("admin")),
            ("user.changes.full_name", json!("test.user")),
            ("source.ip", json!("81.2.69.143")),
            ("service.address", json!("http://confluence.internal:8090")),
            ("related.hosts", json!(["confluence.internal"])),
            ("related.ip", json!(["81.2.69.143"])),
            (
                "confluence.audit.type.action_i18n_key",
                json!("audit.logging.summary.user.created"),
            ),
            ("confluence.audit.type.area", json!("USER_MANAGEMENT")),
            ("confluence.audit.method", json!("Browser")),
            ("data_stream.dataset", json!("confluence.audit")),
        ],
    );
    // Sub-millisecond digits are kept when the file has them.
    let precise = raw.replace("54000000", "54000123");
    assert_eq!(
        normalize(Api::File, &precise)["@timestamp"],
        "2021-11-22T23:43:22.054000123Z"
    );
}

#[test]
fn pipeline_fixtures_field_by_field() {
    let inputs = pipeline_inputs();
    assert_eq!(inputs.len(), 6);
    let expect: BTreeMap<&str, Vec<(&str, Value)>> = BTreeMap::from([
        (
            "cloud-api_space-logo-uploaded",
            vec![
                ("@timestamp", json!("2022-01-25T07:51:51.962Z")),
                ("event.action", json!("space-logo-uploaded")),
                ("event.type", json!(["info"])),
                ("event.kind", json!("event")),
                ("user.id", json!("df856b17d84fcf010f11fcfcc6be4267")),
                ("user.full_name", json!("John Jacobs")),
                ("source.ip", json!("81.2.69.143")),
                ("confluence.space.name", json!("Service Catalogue")),
                (
                    "confluence.audit.affected_objects",
                    json!([{"name": "Service Catalogue", "type": "Space"}]),
                ),
            ],
        ),
        (
            "cloud-api_user-added-to-group",
            vec![
                ("event.action", json!("group-member-added")),
                ("event.category", json!(["iam"])),
                ("event.type", json!(["group", "change"])),
                ("event.outcome", json!("success")),
                (
                    "group.name",
                    json!("jira-software-users:b8d81944-e737-4da0-94ca-165fa5c0635c"),
                ),
                ("user.target.name", json!("ASP")),
                ("user.full_name", json!("System")),
            ],
        ),
        (
            "dc-file_global-permission-added",
            vec![
                ("event.action", json!("global-permission-added")),
                ("event.category", json!(["iam", "configuration"])),
                ("event.type", json!(["creation"])),
                ("group.name", json!("confluence-administrators")),
                ("group.id", json!("confluence-administrators")),
            ],
        ),
        (
            "dc-file_group-created",
            vec![
                ("event.action", json!("group-created")),
                ("event.type", json!(["group", "creation"])),
            ],
        ),
        (
            "dc-file_user-created",
            vec![("@timestamp", json!("2021-11-22T23:43:22.054Z"))],
        ),
        (
            "dc-rest-api_audit-log-search-performed",
            vec![
                ("event.action", json!("audit-log-searched")),
                ("event.category", json!(["configuration"])),
                ("event.type", json!(["access"])),
                ("confluence.audit.self_generated", json!(true)),
                ("user.name", json!("admin")),
                ("user.full_name", json!("test user")),
                ("user.id", json!("2c9680837d4a3682017d4a375a280000")),
                ("related.user", json!(["admin"])),
                (
                    "confluence.audit.extra_attributes.0.name",
                    json!("ID Range"),
                ),
            ],
        ),
    ]);
    for (stem, api, raw) in &inputs {
        let doc = normalize(*api, raw);
        let want = expect
            .get(stem.as_str())
            .unwrap_or_else(|| panic!("no expectations for {stem}"));
        let want: Vec<(&str, Value)> = want.iter().map(|(p, v)| (*p, v.clone())).collect();
        // Arrays by index: "x.0.name".
        for (path, v) in &want {
            let got = path.split('.').fold(&doc, |d, k| match k.parse::<usize>() {
                Ok(i) => &d[i],
                Err(_) => &d[k],
            });
            assert_eq!(got, v, "{stem}: {path} in {doc:#}");
        }
        // What Elastic's pipeline never sets, we do.
        for field in ["event.id", "event.created", "event.provider", "message"] {
            assert!(!at(&doc, field).is_null(), "{stem}: {field} missing");
        }
    }
}

/// One synthetic record of every kind the simulator knows (all 24 Soteri events and the
/// common Confluence ones), in the three shapes DC and Server write.
fn synthetic() -> Vec<(Api, String, &'static str)> {
    let mut out = Vec::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let record = catalog::example(i);
        for api in [Api::Auditing, Api::File, Api::Legacy] {
            let mut raw = Vec::new();
            render::render(api, &record, "https://wiki.example.com", &mut raw);
            out.push((api, String::from_utf8(raw).unwrap(), kind.action));
        }
    }
    out
}

#[test]
fn soteri_events_map_precisely_in_every_shape() {
    let expected: BTreeMap<&str, (&str, &str, Value, Value)> = [
        (
            "Scanning rule toggled",
            (
                "scanning-rule-toggled",
                "event",
                json!(["configuration"]),
                json!(["change"]),
            ),
        ),
        (
            "Global setting changed",
            (
                "global-setting-changed",
                "event",
                json!(["configuration"]),
                json!(["change"]),
            ),
        ),
        (
            "App administrator setting changed",
            (
                "app-administrator-setting-changed",
                "event",
                json!(["iam", "configuration"]),
                json!(["change"]),
            ),
        ),
        (
            "Custom scanning rule created",
            (
                "custom-scanning-rule-created",
                "event",
                json!(["configuration"]),
                json!(["creation"]),
            ),
        ),
        (
            "Custom scanning rule updated",
            (
                "custom-scanning-rule-updated",
                "event",
                json!(["configuration"]),
                json!(["change"]),
            ),
        ),
        (
            "Custom scanning rule deleted",
            (
                "custom-scanning-rule-deleted",
                "event",
                json!(["configuration"]),
                json!(["deletion"]),
            ),
        ),
        (
            "Notification email sent: potentially sensitive content",
            (
                "sensitive-content-notification-sent",
                "event",
                json!(["email"]),
                json!(["info"]),
            ),
        ),
        (
            "User edit introduced potentially sensitive content",
            (
                "sensitive-content-introduced",
                "alert",
                json!(["file"]),
                json!(["change"]),
            ),
        ),
        (
            "Scan finding reviewed",
            (
                "scan-finding-reviewed",
                "event",
                json!(["configuration"]),
                json!(["creation"]),
            ),
        ),
        (
            "Scan finding un-reviewed",
            (
                "scan-finding-unreviewed",
                "event",
                json!(["configuration"]),
                json!(["deletion"]),
            ),
        ),
        (
            "All scan findings un-reviewed",
            (
                "scan-findings-all-unreviewed",
                "event",
                json!(["configuration"]),
                json!(["deletion"]),
            ),
        ),
        (
            "Content scan triggered",
            ("content-scan-triggered", "event", Value::Null, Value::Null),
        ),
        (
            "Space scan triggered",
            ("space-scan-triggered", "event", Value::Null, Value::Null),
        ),
        (
            "Whole instance scan triggered",
            ("instance-scan-triggered", "event", Value::Null, Value::Null),
        ),
        (
            "Scheduled scans canceled",
            (
                "scheduled-scans-canceled",
                "event",
                Value::Null,
                Value::Null,
            ),
        ),
        (
            "Dashboard overview exported",
            (
                "dashboard-overview-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "Findings exported",
            (
                "findings-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "All findings exported",
            (
                "all-findings-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "False positives exported",
            (
                "false-positives-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "All false positives exported",
            (
                "all-false-positives-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "Attachment scan information exported",
            (
                "attachment-scan-info-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "All attachment scan information exported",
            (
                "all-attachment-scan-info-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "Globally reviewed false positives exported",
            (
                "global-false-positives-exported",
                "event",
                json!(["file"]),
                json!(["access"]),
            ),
        ),
        (
            "Globally reviewed false positives changed",
            (
                "global-false-positives-changed",
                "event",
                json!(["configuration"]),
                json!(["change"]),
            ),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(expected.len(), SOTERI_KINDS);
    let mut seen = 0;
    for (api, raw, name) in synthetic() {
        let Some((action, kind, category, kind_type)) = expected.get(name) else {
            continue;
        };
        seen += 1;
        let doc = normalize(api, &raw);
        check(
            &doc,
            &[
                ("event.action", json!(action)),
                ("event.kind", json!(kind)),
                ("event.provider", json!("soteri-security-for-confluence")),
                ("event.category", category.clone()),
                ("event.type", kind_type.clone()),
            ],
        );
        let outcome = if *kind == "alert" {
            Value::Null
        } else {
            json!("success")
        };
        assert_eq!(doc["event"]["outcome"], outcome, "{name}");
        match *action {
            "scanning-rule-toggled" => {
                assert!(doc["rule"]["name"].is_string(), "{doc:#}");
                assert_eq!(doc["rule"]["ruleset"], "built-in");
            }
            "custom-scanning-rule-created"
            | "custom-scanning-rule-updated"
            | "custom-scanning-rule-deleted" => {
                assert_eq!(doc["rule"]["ruleset"], "custom");
                assert!(
                    doc["rule"]["id"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("cr-")),
                    "{doc:#}"
                );
            }
            "sensitive-content-introduced" => {
                assert!(doc["rule"]["name"].is_string(), "{doc:#}");
                assert!(
                    doc["url"]["full"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("https://")),
                    "{doc:#}"
                );
                // The matched secret is masked by default, everywhere.
                let text = doc.to_string();
                for secret in [
                    "AKIAIOSFODNN7EXAMPLE",
                    "4111 1111 1111 1111",
                    "DE89370400440532013000",
                    "xoxb-1234-5678-abcdefghijkl",
                ] {
                    assert!(!text.contains(secret), "{secret} leaked: {text}");
                }
                assert!(text.contains("blake3:"), "{text}");
                if api != Api::Legacy {
                    assert!(doc["confluence"]["content"]["id"].is_string(), "{doc:#}");
                    assert!(doc["confluence"]["space"]["key"].is_string(), "{doc:#}");
                }
            }
            "sensitive-content-notification-sent" => {
                assert!(
                    doc["user"]["target"]["email"]
                        .as_str()
                        .is_some_and(|e| e.contains('@')),
                    "{doc:#}"
                );
                assert!(doc["rule"]["name"].is_string());
                assert!(doc["url"]["full"].is_string());
            }
            "dashboard-overview-exported" => assert_eq!(doc["file"]["extension"], "csv"),
            _ => {}
        }
    }
    assert_eq!(seen, 3 * SOTERI_KINDS);
}

#[test]
fn soteri_names_match_case_insensitively_and_in_the_category() {
    let raw = r#"{"timestamp":"2025-11-25T04:00:00.123Z","author":{"id":"1","name":"J","type":"user"},"type":{"category":"SOTERI SECURITY FOR CONFLUENCE","action":"all FINDINGS exported"}}"#;
    assert_eq!(
        normalize(Api::Auditing, raw)["event"]["action"],
        "all-findings-exported"
    );
    let in_category = r#"{"timestamp":"2025-11-25T04:00:00.123Z","type":{"category":"Findings exported","action":"soteri.audit.export"}}"#;
    let doc = normalize(Api::Auditing, in_category);
    assert_eq!(doc["event"]["action"], "findings-exported");
    assert_eq!(doc["event"]["provider"], "soteri-security-for-confluence");
}

#[test]
fn findings_unmasked_and_as_events_only_when_asked() {
    let (api, raw, _) = synthetic()
        .into_iter()
        .find(|(api, _, n)| {
            *api == Api::Auditing && *n == "User edit introduced potentially sensitive content"
        })
        .unwrap();
    let opts = NormalizeOptions {
        forward_secrets_plaintext: true,
        findings_as_events: true,
        include_original: true,
        ..Default::default()
    };
    let doc = normalize_with(api, &raw, &opts);
    assert_eq!(doc["event"]["kind"], "event");
    let matched = doc["confluence"]["audit"]["extra_attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Matched text")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!matched.contains("blake3"), "{matched}");
    assert_eq!(doc["event"]["original"], raw.as_str());
    // With masking on, event.original is masked too.
    let masked = normalize_with(
        api,
        &raw,
        &NormalizeOptions {
            include_original: true,
            ..Default::default()
        },
    );
    let original = masked["event"]["original"].as_str().unwrap();
    assert!(!original.contains(&matched), "{original}");
    assert!(original.contains("blake3:"));
}

#[test]
fn unknown_events_are_kept_with_a_derived_action() {
    let dc = r#"{"timestamp":"2025-11-25T04:00:00.123Z","type":{"category":"Spaces","action":"Space logo removed","actionI18nKey":"audit.logging.summary.space.logo.removed"}}"#;
    let doc = normalize(Api::Auditing, dc);
    assert_eq!(doc["event"]["action"], "space-logo-removed");
    assert_eq!(doc["event"]["type"], json!(["info"]));
    assert!(doc["event"]["category"].is_null());
    assert!(doc["event"]["outcome"].is_null());
    let r = parse_record(Api::Auditing, dc).unwrap();
    let mut out = Vec::new();
    let meta = write_ecs(
        &r,
        0,
        "2026-01-01T00:00:00.000Z",
        &NormalizeOptions::default(),
        &mut out,
    )
    .unwrap();
    assert!(!meta.known_action);
}

#[test]
fn bad_records_name_the_field() {
    let cases: &[(Api, &str, &str)] = &[
        (Api::Cloud, r#"{"summary":"x"}"#, "creationDate"),
        (
            Api::Cloud,
            r#"{"creationDate":"yesterday"}"#,
            "creationDate",
        ),
        (Api::Auditing, r#"{"type":{"action":"x"}}"#, "timestamp"),
        (Api::Auditing, r#"{"timestamp":"not a time"}"#, "timestamp"),
        (
            Api::File,
            r#"{"timestamp":{"epochSecond":1,"nano":-5}}"#,
            "timestamp.nano",
        ),
        (
            Api::Auditing,
            r#"{"timestamp":"2025-11-25T04:00:00Z","author":{"name":5}}"#,
            "author.name",
        ),
        (
            Api::Legacy,
            r#"{"creationDate":1,"changedValues":[{"name":{}}]}"#,
            "changedValues[0].name",
        ),
    ];
    for (api, raw, field) in cases {
        let err = parse_record(*api, raw).unwrap_err();
        assert!(err.to_string().contains(field), "{api:?} {raw}: {err}");
    }
    assert!(matches!(
        parse_record(Api::Cloud, "{\"creationDate\":1"),
        Err(NormalizeError::Json(_))
    ));
}

#[test]
fn content_hash_ignores_key_order_and_escaping_and_ids_count_occurrences() {
    let a = r#"{"creationDate":1,"summary":"User created","category":"Users","author":{"displayName":"Jane","accountId":"x"}}"#;
    let b = r#"{"author":{"accountId":"x","displayName":"J\u0061ne"},"category":"Users","summary":"User created","creationDate":1}"#;
    let ha = parse_record(Api::Cloud, a).unwrap().content_hash();
    let hb = parse_record(Api::Cloud, b).unwrap().content_hash();
    assert_eq!(ha, hb);
    let c = a.replace("Jane", "June");
    assert_ne!(ha, parse_record(Api::Cloud, &c).unwrap().content_hash());
    assert_ne!(normalize::event_id(&ha, 0), normalize::event_id(&ha, 1));
    assert_eq!(normalize::event_id(&ha, 1), normalize::event_id(&hb, 1));
    assert_eq!(normalize::event_id(&ha, 0).len(), 32);
}

// ---- ECS 9.4.0 validation ------------------------------------------------------------------

struct EcsFields {
    fields: serde_json::Map<String, Value>,
}

impl EcsFields {
    fn load() -> EcsFields {
        let v: Value = serde_json::from_str(&read("spec/ecs-9.4.0-fields.json")).unwrap();
        EcsFields {
            fields: v["fields"].as_object().unwrap().clone(),
        }
    }

    fn allowed(&self, field: &str) -> Vec<String> {
        self.fields[field]["allowed_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn expected_types(&self, category: &str) -> Vec<String> {
        self.fields["event.category"]["allowed_values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == category)
            .map(|v| {
                v["expected_event_types"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every leaf of `doc` is an ECS field of the right type, or under `confluence.`.
    fn validate(&self, doc: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        self.walk("", doc, &mut problems);
        let kind = doc["event"]["kind"].as_str().unwrap_or("");
        if !self.allowed("event.kind").iter().any(|k| k == kind) {
            problems.push(format!("event.kind {kind:?} not allowed"));
        }
        let cats: Vec<&str> = doc["event"]["category"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        for c in &cats {
            if !self.allowed("event.category").iter().any(|k| k == c) {
                problems.push(format!("event.category {c:?} not allowed"));
            }
        }
        for t in doc["event"]["type"].as_array().into_iter().flatten() {
            let t = t.as_str().unwrap();
            if !self.allowed("event.type").iter().any(|k| k == t) {
                problems.push(format!("event.type {t:?} not allowed"));
            }
            if !cats.is_empty()
                && !cats
                    .iter()
                    .any(|c| self.expected_types(c).iter().any(|e| e == t))
            {
                problems.push(format!("event.type {t:?} expected by none of {cats:?}"));
            }
        }
        if let Some(o) = doc["event"]["outcome"].as_str()
            && !self.allowed("event.outcome").iter().any(|k| k == o)
        {
            problems.push(format!("event.outcome {o:?} not allowed"));
        }
        problems
    }

    fn walk(&self, path: &str, v: &Value, problems: &mut Vec<String>) {
        if path.starts_with("confluence.") {
            return;
        }
        match v {
            Value::Object(map) if !self.fields.contains_key(path) || path.is_empty() => {
                for (k, child) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.walk(&p, child, problems);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.check_leaf(path, item, problems);
                }
            }
            leaf => self.check_leaf(path, leaf, problems),
        }
    }

    fn check_leaf(&self, path: &str, v: &Value, problems: &mut Vec<String>) {
        if path.starts_with("confluence.") {
            return;
        }
        let Some(def) = self.fields.get(path) else {
            problems.push(format!("{path}: not an ECS 9.4.0 field"));
            return;
        };
        let ty = def["type"].as_str().unwrap();
        let ok = match ty {
            "keyword" | "wildcard" | "constant_keyword" | "match_only_text" => v.is_string(),
            "long" | "integer" => v.is_i64() || v.is_u64(),
            "float" | "double" | "scaled_float" => v.is_number(),
            "boolean" => v.is_boolean(),
            "date" => v.as_str().is_some_and(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }),
            "ip" => v
                .as_str()
                .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
            "flattened" | "object" | "nested" => v.is_object(),
            other => {
                problems.push(format!("{path}: unhandled ECS type {other}"));
                true
            }
        };
        if !ok {
            problems.push(format!("{path}: {v} is not a valid {ty}"));
        }
    }
}

#[test]
fn every_emitted_field_is_valid_ecs() {
    let ecs = EcsFields::load();
    let mut docs = Vec::new();
    for (api, raw) in api_fixtures() {
        docs.push(normalize(api, &raw));
    }
    for (_, api, raw) in pipeline_inputs() {
        docs.push(normalize(api, &raw));
    }
    let everything = NormalizeOptions {
        include_original: true,
        ..Default::default()
    };
    for (api, raw, _) in synthetic() {
        docs.push(normalize(api, &raw));
        docs.push(normalize_with(api, &raw, &everything));
    }
    for raw in [
        r#"{"timestamp":"2025-11-25T04:00:00.123Z","type":{"action":"Whatever new","actionI18nKey":"some.new.key"},"source":"not-an-ip"}"#,
        r#"{"timestamp":"2025-11-25T04:00:00.123Z","source":"2001:db8::1, 10.0.0.1"}"#,
    ] {
        docs.push(normalize(Api::Auditing, raw));
    }
    assert!(docs.len() > 150);
    let mut all_problems = Vec::new();
    for doc in &docs {
        for p in ecs.validate(doc) {
            all_problems.push(format!("{p} (event.action {})", doc["event"]["action"]));
        }
    }
    all_problems.sort();
    all_problems.dedup();
    assert!(all_problems.is_empty(), "{all_problems:#?}");
}

#[test]
fn mapping_tables_use_only_allowed_values_and_expected_pairs() {
    let ecs = EcsFields::load();
    for m in action::known_actions() {
        for c in m.category {
            assert!(
                ecs.allowed("event.category").iter().any(|a| a == c),
                "{}: {c}",
                m.action
            );
        }
        for t in m.kind_type {
            assert!(
                ecs.allowed("event.type").iter().any(|a| a == t),
                "{}: {t}",
                m.action
            );
            assert!(
                m.category
                    .iter()
                    .any(|c| ecs.expected_types(c).iter().any(|e| e == t)),
                "{}: type {t} expected by none of {:?}",
                m.action,
                m.category
            );
        }
    }
    assert_eq!(action::soteri_names().count(), 24);
}
