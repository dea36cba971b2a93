//! Record → ECS. Turns one raw audit record, in any of the four shapes Confluence writes,
//! into an Elastic Common Schema document and its deterministic `event.id`.
//!
//! It exists apart from the poller so that the mapping is a pure function: testable against
//! fixtures field by field, benchmarkable, and usable from the `normalize` subcommand.
//! [`record`] reads the shapes (borrowing, typed), [`hash`] gives a record its identity,
//! [`action`] holds the mapping tables, [`mask`] hides matched secrets, [`ecs`] writes.
//!
//! - [`Api`] names the record shape.
//! - [`parse_record`] borrows the raw JSON text and fails with an error naming the field.
//! - [`Record::timestamp_ms`] and [`Record::content_hash`] drive windowing and dedupe.
//! - [`event_id`] combines the content hash with the occurrence index (count-aware dedupe).
//! - [`write_ecs`] appends one ECS JSON document (no trailing newline) to `out`.
//! - [`split_input`] splits stdin-style input (NDJSON or a whole API page) into records.
//!
//! All of the above is pure. [`stream`] is the `normalize` command's loop around it: records
//! read from any [`std::io::Read`], documents written to any [`std::io::Write`], in constant
//! memory.

pub mod action;
mod ecs;
mod hash;
mod json;
pub mod mask;
pub mod organization;
pub mod record;
mod rfc3339;
pub mod stream;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which record shape a source yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// Server/DC `/rest/api/audit` AuditRecord.
    Legacy,
    /// Cloud `/wiki/rest/api/audit` AuditRecord.
    Cloud,
    /// DC advanced auditing `/rest/auditing/1.0/events` entity.
    Auditing,
    /// DC audit log file line (entity with `auditType` and `{epochSecond, nano}`).
    File,
    /// Atlassian organization audit log event (`events-stream`, JSON:API); normalized by
    /// [`organization`], not by [`parse_record`].
    Organization,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Legacy => "legacy",
            Api::Cloud => "cloud",
            Api::Auditing => "auditing",
            Api::File => "file",
            Api::Organization => "organization",
        }
    }
}

impl std::str::FromStr for Api {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "legacy" => Ok(Api::Legacy),
            "cloud" => Ok(Api::Cloud),
            "auditing" => Ok(Api::Auditing),
            "file" => Ok(Api::File),
            "organization" => Ok(Api::Organization),
            other => Err(format!(
                "unknown api {other:?}: expected one of legacy, cloud, auditing, file, organization"
            )),
        }
    }
}

/// Options that change what documents look like.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeOptions {
    /// `data_stream.namespace`.
    pub namespace: String,
    /// Put the raw record in `event.original`.
    pub include_original: bool,
    /// Forward matched sensitive text in clear instead of masking it.
    pub forward_secrets_plaintext: bool,
    /// Emit Soteri findings as `event.kind: event` instead of `alert`.
    pub findings_as_events: bool,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            include_original: false,
            forward_secrets_plaintext: false,
            findings_as_events: false,
        }
    }
}

/// A record that failed to parse, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record field `{field}`: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("{} record field `{path}`: {problem}", api.as_str())]
    Invalid {
        api: Api,
        path: String,
        problem: String,
    },
}

/// Content hash of the canonical record: equal for the same record fetched twice, whatever
/// the key order or the escaping of its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 16]);

/// What the caller needs to know about a document it just wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// The action was in the mapping tables (else it is counted as unknown).
    pub known_action: bool,
    /// `event.kind` is `alert`.
    pub alert: bool,
    /// Written by Soteri Security for Confluence.
    pub soteri: bool,
    /// An "Audit Log search performed" event (the poller causes these).
    pub self_generated: bool,
}

/// One parsed record, borrowing the raw text.
#[derive(Debug)]
pub struct Record<'a> {
    api: Api,
    raw: &'a str,
    fields: record::Fields<'a>,
    hash: std::cell::OnceCell<ContentHash>,
}

/// Parse one record of shape `api`. Errors name the field at fault.
pub fn parse_record(api: Api, raw: &str) -> Result<Record<'_>, NormalizeError> {
    Ok(Record {
        api,
        raw,
        fields: record::parse(api, raw)?,
        hash: std::cell::OnceCell::new(),
    })
}

impl<'a> Record<'a> {
    pub fn api(&self) -> Api {
        self.api
    }
    pub fn raw(&self) -> &'a str {
        self.raw
    }
    /// The record's time, epoch milliseconds (file records: sub-millisecond part dropped).
    pub fn timestamp_ms(&self) -> i64 {
        self.fields.ts_ms
    }
    pub fn content_hash(&self) -> ContentHash {
        *self.hash.get_or_init(|| hash::content_hash(&self.fields))
    }
    /// An "Audit Log search performed" event, which polling the DC API itself causes.
    pub fn is_self_generated(&self) -> bool {
        action::resolve(&self.fields)
            .mapping
            .is_some_and(|m| m.action == "audit-log-searched")
    }
    /// The parsed fields.
    pub fn fields(&self) -> &record::Fields<'a> {
        &self.fields
    }
}

/// `event.id`: the content hash plus the occurrence index among identical records in one
/// millisecond, as 32 lowercase hex digits. The first occurrence is the hash itself; the
/// n-th twin hashes the hash with n.
pub fn event_id(hash: &ContentHash, occurrence: u32) -> String {
    let hex = event_id_hex(hash, occurrence);
    std::str::from_utf8(&hex).expect("hex is ASCII").to_owned()
}

/// [`event_id`] without the allocation (the writer's path).
fn event_id_hex(hash: &ContentHash, occurrence: u32) -> [u8; 32] {
    let bytes = if occurrence == 0 {
        hash.0
    } else {
        let mut h = blake3::Hasher::new();
        h.update(&hash.0);
        h.update(&occurrence.to_le_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&h.finalize().as_bytes()[..16]);
        b
    };
    let mut hex = [0u8; 32];
    hex::encode_to_slice(bytes, &mut hex).expect("32 hex digits for 16 bytes");
    hex
}

/// Append the ECS document for `record` (the `occurrence`-th identical record in its
/// millisecond) to `out`. `created` is `event.created` (RFC 3339).
pub fn write_ecs(
    record: &Record<'_>,
    occurrence: u32,
    created: &str,
    opts: &NormalizeOptions,
    out: &mut Vec<u8>,
) -> Result<EventMeta, NormalizeError> {
    let id = event_id_hex(&record.content_hash(), occurrence);
    let id = std::str::from_utf8(&id).expect("hex is ASCII");
    ecs::write(&record.fields, record.raw, id, created, opts, out).map(|(meta, _)| meta)
}

/// [`write_ecs`] for a record whose occurrence is not known yet (the `normalize` command
/// counts twins in input order while documents are written in parallel): written as the
/// first occurrence; returns where `event.id` lies in `out`, for [`patch_event_id`].
pub(crate) fn write_ecs_first(
    record: &Record<'_>,
    created: &str,
    opts: &NormalizeOptions,
    out: &mut Vec<u8>,
) -> Result<usize, NormalizeError> {
    let id = event_id_hex(&record.content_hash(), 0);
    let id = std::str::from_utf8(&id).expect("hex is ASCII");
    ecs::write(&record.fields, record.raw, id, created, opts, out).map(|(_, at)| at)
}

/// Give a document written by [`write_ecs_first`] its `occurrence`: the same bytes
/// [`write_ecs`] would have written (the id is the only thing the occurrence changes, and
/// it has a fixed length).
pub(crate) fn patch_event_id(doc: &mut [u8], id_at: usize, hash: &ContentHash, occurrence: u32) {
    if occurrence > 0 {
        doc[id_at..id_at + 32].copy_from_slice(&event_id_hex(hash, occurrence));
    }
}

/// Split stdin-style input into raw records: NDJSON (one record per line) or one whole API
/// response page (`results` / `entities` envelope).
pub fn split_input(api: Api, input: &str) -> Result<Vec<String>, NormalizeError> {
    let trimmed = input.trim_start();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed)
    {
        let key = match api {
            Api::Legacy | Api::Cloud => "results",
            Api::Auditing | Api::File => "entities",
            Api::Organization => "data",
        };
        if let Some(Value::Array(items)) = map.get(key) {
            return Ok(items.iter().map(|v| v.to_string()).collect());
        }
    }
    Ok(input
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}
