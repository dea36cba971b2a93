//! stdout sink: NDJSON on standard output, for piping into another tool.
//!
//! At least once: a crash after writing and before the acknowledgement writes the batch
//! again on restart; `event.id` lets the reader deduplicate.

use std::io::Write;

use serde::Deserialize;

use super::{BatchOutcome, QueuedEvent, Sink, SinkError};

/// `[[sink]] type = "stdout"`: nothing to set beyond the keys every sink has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl StdoutConfig {
    pub fn build(&self) -> StdoutSink {
        StdoutSink
    }
}

#[derive(Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    async fn open(&mut self, _checkpoint: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(None)
    }

    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.doc.len() + 1).sum());
        for e in batch {
            buf.extend_from_slice(&e.doc);
            buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)
            .and_then(|_| out.flush())
            .map_err(|e| SinkError::new("io", format!("stdout: {e}")))?;
        Ok(BatchOutcome::all_delivered(batch.len()))
    }
}
