//! Per-sink queues and dead-letter queues inside the state store.
//!
//! Kept apart from the cursor code because it is the only part sink workers touch, and because
//! its bookkeeping (sequence numbers, byte counts for back-pressure) must stay exact across
//! every enqueue, ack and replay.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{NewEvent, StateError};

/// (sink, seq) → encoded entry (`[enqueued ms, 8 bytes LE][id len][id][document]`).
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// sink → (next seq, entries, bytes).
const QUEUE_META: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("queue_meta");
/// sink → the sink's own checkpoint (e.g. the file sink's committed length).
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
/// (sink, seq) → JSON [`DeadLetter`].
const DLQ: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");

/// One queued document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub seq: u64,
    /// When it was queued (epoch ms): the age of the oldest entry is a metric.
    pub enqueued_ms: i64,
    /// `event.id`: the idempotency key every sink can deduplicate on.
    pub id: String,
    /// The ECS document, compact JSON, no trailing newline.
    pub doc: Vec<u8>,
}

/// Queue depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub events: u64,
    pub bytes: u64,
    pub dead_letters: u64,
    /// When the oldest queued entry was queued (epoch ms).
    pub oldest_enqueued_ms: Option<i64>,
}

/// A document a sink can never accept, with the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub seq: u64,
    pub id: String,
    pub reason: String,
    /// RFC 3339.
    pub failed_at: String,
    /// The ECS document as it was queued.
    pub doc: String,
}

pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StateError> {
    tx.open_table(QUEUE)?;
    tx.open_table(QUEUE_META)?;
    tx.open_table(CHECKPOINTS)?;
    tx.open_table(DLQ)?;
    Ok(())
}

fn encode(enqueued_ms: i64, id: &str, doc: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + id.len() + doc.len());
    v.extend_from_slice(&enqueued_ms.to_le_bytes());
    v.push(u8::try_from(id.len()).expect("event ids are short"));
    v.extend_from_slice(id.as_bytes());
    v.extend_from_slice(doc);
    v
}

fn decode(seq: u64, raw: &[u8]) -> Result<QueuedEvent, StateError> {
    let corrupt = || StateError::Corrupt {
        what: format!("queue entry {seq}"),
        problem: "truncated".into(),
    };
    if raw.len() < 9 {
        return Err(corrupt());
    }
    let enqueued_ms = i64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
    let (&len, rest) = raw[8..].split_first().ok_or_else(corrupt)?;
    let len = len as usize;
    if rest.len() < len {
        return Err(corrupt());
    }
    let id = std::str::from_utf8(&rest[..len])
        .map_err(|_| corrupt())?
        .to_owned();
    Ok(QueuedEvent {
        seq,
        enqueued_ms,
        id,
        doc: rest[len..].to_vec(),
    })
}

pub(super) fn enqueue_all(
    tx: &WriteTransaction,
    sinks: &[String],
    events: &[NewEvent],
) -> Result<(), StateError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut queue = tx.open_table(QUEUE)?;
    let mut meta = tx.open_table(QUEUE_META)?;
    let now = crate::clock::now_ms();
    let encoded: Vec<Vec<u8>> = events.iter().map(|e| encode(now, &e.id, &e.doc)).collect();
    let bytes: u64 = encoded.iter().map(|e| e.len() as u64).sum();
    for sink in sinks {
        let (mut next, count, total) = meta
            .get(sink.as_str())?
            .map(|v| v.value())
            .unwrap_or((0, 0, 0));
        for entry in &encoded {
            queue.insert((sink.as_str(), next), entry.as_slice())?;
            next += 1;
        }
        meta.insert(
            sink.as_str(),
            (next, count + encoded.len() as u64, total + bytes),
        )?;
    }
    Ok(())
}

pub(super) fn stats(tx: &ReadTransaction, sink: &str) -> Result<QueueStats, StateError> {
    let meta = tx.open_table(QUEUE_META)?;
    let (_, events, bytes) = meta.get(sink)?.map(|v| v.value()).unwrap_or((0, 0, 0));
    let dlq = tx.open_table(DLQ)?;
    let dead_letters = dlq.range((sink, 0)..=(sink, u64::MAX))?.count() as u64;
    let queue = tx.open_table(QUEUE)?;
    let oldest_enqueued_ms = match queue.range((sink, 0)..=(sink, u64::MAX))?.next() {
        Some(row) => {
            let (k, v) = row?;
            Some(decode(k.value().1, v.value())?.enqueued_ms)
        }
        None => None,
    };
    Ok(QueueStats {
        events,
        bytes,
        dead_letters,
        oldest_enqueued_ms,
    })
}

pub(super) fn peek(
    tx: &ReadTransaction,
    sink: &str,
    after_seq: Option<u64>,
    max_events: usize,
    max_bytes: usize,
) -> Result<Vec<QueuedEvent>, StateError> {
    let queue = tx.open_table(QUEUE)?;
    let start = after_seq.map_or(0, |s| s.saturating_add(1));
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for row in queue.range((sink, start)..=(sink, u64::MAX))? {
        let (k, v) = row?;
        let raw = v.value();
        if !out.is_empty() && (out.len() >= max_events || bytes + raw.len() > max_bytes) {
            break;
        }
        bytes += raw.len();
        out.push(decode(k.value().1, raw)?);
    }
    Ok(out)
}

pub(super) fn ack(
    tx: &WriteTransaction,
    sink: &str,
    delivered: &[u64],
    rejected: &[(u64, String)],
    checkpoint: Option<&[u8]>,
) -> Result<(), StateError> {
    let mut queue = tx.open_table(QUEUE)?;
    let mut meta = tx.open_table(QUEUE_META)?;
    let mut dlq = tx.open_table(DLQ)?;
    let (next, mut count, mut bytes) = meta.get(sink)?.map(|v| v.value()).unwrap_or((0, 0, 0));
    for seq in delivered {
        if let Some(v) = queue.remove((sink, *seq))? {
            count -= 1;
            bytes -= v.value().len() as u64;
        }
    }
    let now = now_rfc3339();
    for (seq, reason) in rejected {
        let Some(v) = queue.remove((sink, *seq))? else {
            continue;
        };
        let raw = v.value().to_vec();
        drop(v);
        count -= 1;
        bytes -= raw.len() as u64;
        let e = decode(*seq, &raw)?;
        let letter = DeadLetter {
            seq: *seq,
            id: e.id,
            reason: reason.clone(),
            failed_at: now.clone(),
            doc: String::from_utf8_lossy(&e.doc).into_owned(),
        };
        let json = serde_json::to_vec(&letter).expect("dead letter serializes");
        dlq.insert((sink, *seq), json.as_slice())?;
    }
    meta.insert(sink, (next, count, bytes))?;
    if let Some(cp) = checkpoint {
        tx.open_table(CHECKPOINTS)?.insert(sink, cp)?;
    }
    Ok(())
}

pub(super) fn checkpoint(tx: &ReadTransaction, sink: &str) -> Result<Option<Vec<u8>>, StateError> {
    let table = tx.open_table(CHECKPOINTS)?;
    Ok(table.get(sink)?.map(|v| v.value().to_vec()))
}

pub(super) fn dead_letters(
    tx: &ReadTransaction,
    sink: &str,
) -> Result<Vec<DeadLetter>, StateError> {
    let dlq = tx.open_table(DLQ)?;
    let mut out = Vec::new();
    for row in dlq.range((sink, 0)..=(sink, u64::MAX))? {
        let (k, v) = row?;
        out.push(
            serde_json::from_slice(v.value()).map_err(|e| StateError::Corrupt {
                what: format!("dead letter {} of sink {sink:?}", k.value().1),
                problem: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

pub(super) fn replay_dead_letters(tx: &WriteTransaction, sink: &str) -> Result<usize, StateError> {
    let letters: Vec<DeadLetter> = {
        let dlq = tx.open_table(DLQ)?;
        let mut out = Vec::new();
        for row in dlq.range((sink, 0)..=(sink, u64::MAX))? {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice::<DeadLetter>(v.value()).map_err(|e| {
                    StateError::Corrupt {
                        what: format!("dead letter of sink {sink:?}"),
                        problem: e.to_string(),
                    }
                })?,
            );
        }
        out
    };
    {
        let mut dlq = tx.open_table(DLQ)?;
        dlq.retain_in((sink, 0)..=(sink, u64::MAX), |_, _| false)?;
    }
    let events: Vec<NewEvent> = letters
        .iter()
        .map(|l| NewEvent {
            id: l.id.clone(),
            doc: l.doc.clone().into_bytes(),
        })
        .collect();
    enqueue_all(tx, &[sink.to_owned()], &events)?;
    Ok(letters.len())
}

pub(super) fn known_sinks(tx: &ReadTransaction) -> Result<Vec<String>, StateError> {
    let meta = tx.open_table(QUEUE_META)?;
    let mut out: Vec<String> = Vec::new();
    for row in meta.iter()? {
        let (k, _) = row?;
        out.push(k.value().to_owned());
    }
    let dlq = tx.open_table(DLQ)?;
    for row in dlq.iter()? {
        let (k, _) = row?;
        let name = k.value().0;
        if !out.iter().any(|s| s == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
