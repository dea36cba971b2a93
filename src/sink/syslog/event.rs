//! The view of one ECS document that the syslog header and the CEF/LEEF payloads read, and
//! the one rule about characters both obey.
//!
//! Kept apart so that the encoder (header, framing) and the payloads use it without
//! depending on each other.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a document cannot be encoded at all (it goes to the dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("document is not a JSON object: {0}")]
    NotJson(String),
}

/// A read-only view of the ECS fields the header and the CEF/LEEF payloads use.
pub struct EcsEvent {
    pub doc: Value,
}

impl EcsEvent {
    pub fn parse(bytes: &[u8]) -> Result<EcsEvent, EncodeError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| EncodeError::NotJson(e.to_string()))?;
        if !doc.is_object() {
            return Err(EncodeError::NotJson("not an object".into()));
        }
        Ok(EcsEvent { doc })
    }

    /// A field by its dotted ECS name: nested objects, or a literal dotted key.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut v = &self.doc;
        let mut ok = true;
        for part in path.split('.') {
            match v.get(part) {
                Some(next) => v = next,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Some(v);
        }
        self.doc.get(path)
    }

    /// A field as text: strings as they are, numbers and booleans printed, arrays of
    /// scalars joined with `,`. Empty → `None`.
    pub fn text(&self, path: &str) -> Option<String> {
        let s = match self.get(path)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => return None,
        };
        (!s.is_empty()).then_some(s)
    }

    /// `@timestamp`, parsed.
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        let s = self.get("@timestamp")?.as_str()?;
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(|t| t.to_offset(time::UtcOffset::UTC))
    }

    /// The Confluence host the event came from: `related.hosts[0]`, else the host of
    /// `service.address`.
    pub fn confluence_host(&self) -> Option<String> {
        if let Some(h) = self
            .get("related.hosts")
            .and_then(|h| h.get(0))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
        {
            return Some(h.to_owned());
        }
        let addr = self.get("service.address")?.as_str()?;
        url::Url::parse(addr)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .filter(|h| !h.is_empty())
    }
}

/// Characters no payload or SD value may carry raw: every Unicode control character (C0,
/// DEL, C1 with NEL) and the Unicode line and paragraph separators.
pub fn is_line_breaking(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}
