//! Where an organization-audit-log source stands, and its one commit.
//!
//! The organization log is ordered by processing time and paged by an opaque cursor, not
//! by the time windows of the Confluence sources, so its position is its own value in its
//! own table (`org_cursors`): the API's cursor, the newest `processedAt` seen (the fallback
//! when the cursor is missing or refused) and a bounded set of the ids seen recently (the
//! dedupe). [`Store::commit_org_page`] mirrors [`Store::commit_window`]: the page's new
//! documents are queued for every sink and the position moves in ONE transaction, so a
//! crash re-reads the page (and the ids recognise nothing as new twice) or finds it queued.

use std::collections::VecDeque;

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{NewEvent, StateError, Store, queue};

/// source name → JSON [`OrgPosition`].
const ORG_CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("org_cursors");

/// Most ids kept for deduplication, whatever the overlap holds.
pub const MAX_RECENT_IDS: usize = 20_000;

/// An organization source's position.
///
/// Invariants: `processed_ms` never moves back; `recent` holds, oldest first, the id and
/// `processedAt` of every event queued with `processedAt >= processed_ms - overlap` (bar the
/// oldest, once more than [`MAX_RECENT_IDS`] share that span), so a re-read from
/// `from = processed_ms - overlap` recognises everything it already queued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPosition {
    /// The API's cursor to continue from; `None`: continue from `processed_ms - overlap`.
    pub cursor: Option<String>,
    /// The newest `processedAt` queued (epoch ms), or the configured start before any.
    pub processed_ms: i64,
    /// Ids queued recently, with their `processedAt`, oldest first.
    pub recent: VecDeque<(String, i64)>,
}

impl OrgPosition {
    /// A first position: nothing seen, read from `start_ms` on.
    pub fn starting_at(start_ms: i64) -> OrgPosition {
        OrgPosition {
            cursor: None,
            processed_ms: start_ms,
            recent: VecDeque::new(),
        }
    }

    /// Whether the event `id` was queued already.
    pub fn seen(&self, id: &str) -> bool {
        self.recent.iter().any(|(seen, _)| seen == id)
    }

    /// Record a queued event; `processed_ms` only moves forward.
    pub fn remember(&mut self, id: String, processed_ms: i64) {
        self.processed_ms = self.processed_ms.max(processed_ms);
        self.recent.push_back((id, processed_ms));
    }

    /// Drop ids no re-read can return any more (older than `processed_ms - overlap_ms`),
    /// then the oldest beyond [`MAX_RECENT_IDS`].
    pub fn prune(&mut self, overlap_ms: i64) {
        let keep_from = self.processed_ms.saturating_sub(overlap_ms);
        self.recent.retain(|(_, ms)| *ms >= keep_from);
        while self.recent.len() > MAX_RECENT_IDS {
            self.recent.pop_front();
        }
    }
}

impl Store {
    /// The organization source's position, if it ever stored one.
    pub fn org_position(&self, source: &str) -> Result<Option<OrgPosition>, StateError> {
        let tx = self.inner.db.begin_read()?;
        let table = match tx.open_table(ORG_CURSORS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StateError::Db(e.into())),
        };
        let Some(v) = table.get(source)? else {
            return Ok(None);
        };
        decode(source, v.value()).map(Some)
    }

    /// Enqueue `events` for every sink and store `position`, in one transaction.
    pub fn commit_org_page(
        &self,
        source: &str,
        events: &[NewEvent],
        position: &OrgPosition,
    ) -> Result<(), StateError> {
        let (tx, grouped) = self.begin_grouped(false)?;
        {
            let mut table = tx.open_table(ORG_CURSORS)?;
            let encoded = serde_json::to_vec(position).expect("position serializes");
            table.insert(source, encoded.as_slice())?;
            queue::enqueue_all(&tx, &self.inner.sinks, events)?;
        }
        tx.commit()?;
        self.committed(grouped);
        Ok(())
    }
}

fn decode(source: &str, bytes: &[u8]) -> Result<OrgPosition, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        what: format!("organization position of source {source:?}"),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> NewEvent {
        NewEvent {
            id: id.to_owned(),
            doc: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        }
    }

    #[test]
    fn the_page_and_the_position_are_committed_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &["a".into(), "b".into()]).unwrap();
        assert_eq!(store.org_position("org").unwrap(), None);
        let mut pos = OrgPosition::starting_at(1_000);
        pos.remember("e1".into(), 2_000);
        pos.cursor = Some("c1".into());
        store.commit_org_page("org", &[event("e1")], &pos).unwrap();
        assert_eq!(store.org_position("org").unwrap(), Some(pos));
        for sink in ["a", "b"] {
            let queued = store.peek(sink, None, 10, 1 << 20).unwrap();
            assert_eq!(queued.len(), 1, "sink {sink}");
        }
    }

    #[test]
    fn pruning_keeps_the_overlap_and_the_cap() {
        let mut pos = OrgPosition::starting_at(0);
        pos.remember("old".into(), 1_000);
        pos.remember("new".into(), 10_000);
        pos.prune(5_000);
        assert!(!pos.seen("old"));
        assert!(pos.seen("new"));
        assert_eq!(pos.processed_ms, 10_000);
        pos.remember("older".into(), 9_000);
        assert_eq!(pos.processed_ms, 10_000, "never back");
        for i in 0..MAX_RECENT_IDS + 5 {
            pos.remember(format!("x{i}"), 10_000);
        }
        pos.prune(5_000);
        assert_eq!(pos.recent.len(), MAX_RECENT_IDS);
        assert!(pos.seen(&format!("x{}", MAX_RECENT_IDS + 4)));
        assert!(!pos.seen("new"), "the oldest go first");
    }
}
