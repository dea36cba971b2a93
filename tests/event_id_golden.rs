//! `event.id` pinned byte for byte. Users deduplicate on it across upgrades, and a crash
//! re-reads a window with whatever version runs next: any change to the content hash (its
//! canonical bytes, their order, the BLAKE3 truncation, the twin rule) breaks that silently.
//! These golden ids, taken from the real records in `../shared/fixtures/api/` (all four
//! shapes) and a few records that exercise the hash's edges, must never change.

use std::path::PathBuf;

use confluence_audit_forwarder::normalize::{
    Api, NormalizeOptions, event_id, parse_record, split_input, stream, stream::StreamLimits,
    write_ecs,
};

fn fixture(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/api")
        .join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every record of every fixture file, in order: (file, API, raw record).
fn fixture_records() -> Vec<(&'static str, Api, String)> {
    const FILES: &[(&str, Api)] = &[
        ("cloud-audit-start0.json", Api::Cloud),
        ("cloud-audit-start2.json", Api::Cloud),
        ("cloud-records.ndjson", Api::Cloud),
        // The Server/DC `/rest/api/audit` record is the Cloud one with a user key.
        ("cloud-records.ndjson", Api::Legacy),
        ("dc-audit-file.audit.log", Api::File),
        ("dc-audit-file-more.audit.log", Api::File),
        ("dc-auditing-entities.ndjson", Api::Auditing),
        ("dc-auditing-events-page1.json", Api::Auditing),
        ("dc-auditing-events-page2-last.json", Api::Auditing),
    ];
    let mut out = Vec::new();
    for (file, api) in FILES {
        for raw in split_input(*api, &fixture(file)).unwrap() {
            out.push((*file, *api, raw));
        }
    }
    out
}

/// The `event.id` the written document carries for the `occurrence`-th twin of `raw`.
fn written_id(api: Api, raw: &str, occurrence: u32) -> String {
    let record = parse_record(api, raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let mut doc = Vec::new();
    let opts = NormalizeOptions::default();
    write_ecs(
        &record,
        occurrence,
        "2026-11-25T00:00:00.000Z",
        &opts,
        &mut doc,
    )
    .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    let id = doc["event"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, event_id(&record.content_hash(), occurrence), "{raw}");
    id
}

/// Records at the hash's edges: escapes and non-ASCII text, absent next to empty, length
/// prefixes of one, two and three bytes, an input of several BLAKE3 chunks (1 KiB each),
/// affected objects, changed values and extra attributes.
fn edge_records() -> Vec<(Api, String)> {
    let long = |n: usize| "é".repeat(n / 2);
    let cloud =
        |d: &str| format!(r#"{{"creationDate":1764043200123,"summary":"s","description":"{d}"}}"#);
    vec![
        (
            Api::Cloud,
            r#"{"creationDate":1,"summary":"","author":{"accountId":"a\"b\\c\u0000"}}"#.to_owned(),
        ),
        (
            Api::Legacy,
            r#"{"creationDate":-5,"summary":"Sm\u00f8rrebr\u00f8d 🥪","description":null,"sysAdmin":true,"superAdmin":false}"#
                .to_owned(),
        ),
        (Api::Legacy, cloud(&long(200))),
        (Api::Cloud, cloud(&long(40_000))),
        (
            Api::Auditing,
            format!(
                r#"{{"timestamp":"2026-11-25T03:20:00.123Z","author":{{"id":"1","name":"x","type":"user"}},"type":{{"category":"c","action":"{}"}},"affectedObjects":[{{"name":"n","type":"PAGE","id":"7"}},{{"name":"m","type":"SPACE"}}],"changedValues":[{{"key":"k","from":"a","to":"b"}}],"extraAttributes":[{{"name":"e","value":"v"}}]}}"#,
                long(3000)
            ),
        ),
    ]
}

/// The fixture records' ids, in `fixture_records` order.
const FIXTURE_IDS: &[(&str, Api, &str)] = &[
    (
        "cloud-audit-start0.json",
        Api::Cloud,
        "0509bc38bf84a7ece60b364fc485c503",
    ),
    (
        "cloud-audit-start0.json",
        Api::Cloud,
        "72f90b15a8df1911888763fc3ea53a45",
    ),
    (
        "cloud-audit-start2.json",
        Api::Cloud,
        "aa163441cd319bbb875f92c0774d2e51",
    ),
    (
        "cloud-audit-start2.json",
        Api::Cloud,
        "45680ba0ae5434016b44ae36573eeddd",
    ),
    (
        "cloud-records.ndjson",
        Api::Cloud,
        "ddb80f8ec1c648115e007d278a0b4486",
    ),
    (
        "cloud-records.ndjson",
        Api::Cloud,
        "9d740e75e33b81dcfdbad75e70f9fdd1",
    ),
    (
        "cloud-records.ndjson",
        Api::Cloud,
        "3e39ab9827ecc652d50a4079361a6d5f",
    ),
    (
        "cloud-records.ndjson",
        Api::Legacy,
        "ddb80f8ec1c648115e007d278a0b4486",
    ),
    (
        "cloud-records.ndjson",
        Api::Legacy,
        "9d740e75e33b81dcfdbad75e70f9fdd1",
    ),
    (
        "cloud-records.ndjson",
        Api::Legacy,
        "3e39ab9827ecc652d50a4079361a6d5f",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "b39de28ebd11e4ff5d41db9db1a0ac5e",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "38562663869e85eb3ee082633f4bed2a",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "eb715e67de6cfff47e61620c335d9894",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "0bde2636ec8dafffd78a3624e44d643c",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "bb60aef6049c897a981b71bfc58a66a7",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "1fb80bb7c4df5d159952728c545e434b",
    ),
    (
        "dc-audit-file.audit.log",
        Api::File,
        "47e8343288790f8c682a48bfe55d52b9",
    ),
    (
        "dc-audit-file-more.audit.log",
        Api::File,
        "b8c1de1526ca2e1311a292603389d5b6",
    ),
    (
        "dc-audit-file-more.audit.log",
        Api::File,
        "dc18eb547176a0229399406165993546",
    ),
    (
        "dc-audit-file-more.audit.log",
        Api::File,
        "077449c76cba44133a4fdf1cb0b565c1",
    ),
    (
        "dc-auditing-entities.ndjson",
        Api::Auditing,
        "40c80aa0e32f22d137edb41acecfa77c",
    ),
    (
        "dc-auditing-entities.ndjson",
        Api::Auditing,
        "e10025dd676740e3a325702497160222",
    ),
    (
        "dc-auditing-entities.ndjson",
        Api::Auditing,
        "edfb3103299088ccbf64a4ddac034aa3",
    ),
    (
        "dc-auditing-events-page1.json",
        Api::Auditing,
        "d601fac964b911b77dfe248d49d01414",
    ),
    (
        "dc-auditing-events-page1.json",
        Api::Auditing,
        "40c80aa0e32f22d137edb41acecfa77c",
    ),
    (
        "dc-auditing-events-page2-last.json",
        Api::Auditing,
        "e932513a112d06db7567ba89f7d0d68f",
    ),
    (
        "dc-auditing-events-page2-last.json",
        Api::Auditing,
        "2cb532729e319fd734d9f558f805556c",
    ),
];

/// The edge records' ids: the first occurrence, the second and the third identical record in
/// one millisecond.
const EDGE_IDS: &[[&str; 3]] = &[
    [
        "fbc46b2fe8fd592c116f3f489dbe0c70",
        "eada4e3d0b465afa77cd83fff048e6c3",
        "9ee27607857a2d40335e3dfcdccf9e2e",
    ],
    [
        "3655b329abb020ff4f585c4bace97076",
        "d03edec0491a6f2ebeb815d8c25d5973",
        "bda6ab8cb9df7c81daad405ef56936e4",
    ],
    [
        "9f21accda9bf33a0124e5e4f743287b1",
        "b851c7eb9f1e2e44dc7592de9ea80320",
        "bfb26de2214078573168403e4ec8744f",
    ],
    [
        "6ec8f53d3f00ceabc31f3ccaf702739c",
        "63f26ef811868b89277ebb7b032ecb55",
        "323da69f2362487bdc54dca4998bba8d",
    ],
    [
        "1b063d106e1db3713fada12084303abe",
        "6da4ac0fe35e731c79d487a2ebb6a5f1",
        "f4864e9cd23509eaa811a7e70f426599",
    ],
];

#[test]
fn fixture_records_keep_their_event_ids() {
    let records = fixture_records();
    assert_eq!(
        records.len(),
        FIXTURE_IDS.len(),
        "fixture records added or gone"
    );
    for ((file, api, raw), (want_file, want_api, want)) in records.iter().zip(FIXTURE_IDS) {
        assert_eq!((file, api), (want_file, want_api));
        assert_eq!(written_id(*api, raw, 0), *want, "{file} ({api:?}): {raw}");
    }
}

#[test]
fn edge_records_and_their_twins_keep_their_event_ids() {
    let records = edge_records();
    assert_eq!(records.len(), EDGE_IDS.len());
    for ((api, raw), want) in records.iter().zip(EDGE_IDS) {
        for (occurrence, want) in want.iter().enumerate() {
            assert_eq!(
                written_id(*api, raw, occurrence as u32),
                *want,
                "#{occurrence} of {raw}"
            );
        }
    }
}

/// The `normalize` command's path (`normalize::stream`, twins counted as they stream by)
/// gives the same ids: each fixture file whole, then with every record twice.
#[test]
fn the_stream_gives_the_same_event_ids() {
    let ids_of = |api: Api, input: &[u8]| -> Vec<String> {
        let mut out = Vec::new();
        let (opts, limits) = (NormalizeOptions::default(), StreamLimits::default());
        let created = "2026-11-25T00:00:00.000Z";
        let summary = stream::run(api, &opts, &limits, created, input, &mut out, &mut |e| {
            panic!("{e}")
        })
        .unwrap();
        assert_eq!(summary.failures, 0);
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let doc: serde_json::Value = serde_json::from_slice(l).unwrap();
                doc["event"]["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let records = fixture_records();
    let mut files: Vec<(&str, Api)> = records.iter().map(|(f, a, _)| (*f, *a)).collect();
    files.dedup();
    for (file, api) in files {
        let want: Vec<&str> = FIXTURE_IDS
            .iter()
            .filter(|(f, a, _)| (*f, *a) == (file, api))
            .map(|(_, _, id)| *id)
            .collect();
        assert_eq!(
            ids_of(api, fixture(file).as_bytes()),
            want,
            "{file} ({api:?})"
        );
        // Each record twice in a row: the second is the first twin of its millisecond.
        let doubled: String = records
            .iter()
            .filter(|(f, a, _)| (*f, *a) == (file, api))
            .flat_map(|(_, _, raw)| [raw, "\n", raw, "\n"])
            .collect();
        let ids = ids_of(api, doubled.as_bytes());
        for (pair, want) in ids.chunks(2).zip(&want) {
            assert_eq!(pair[0], *want, "{file} ({api:?})");
            assert_ne!(pair[1], *want, "{file} ({api:?}): the twin has its own id");
        }
    }
}
