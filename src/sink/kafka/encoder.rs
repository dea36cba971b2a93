//! What a queued document becomes on the wire: key, headers, value.
//!
//! The value is the ECS document exactly as queued, so consumers see what every other sink
//! sees. The key is `event.id`: a compacted topic or a consumer keeps one copy of an event
//! the at-least-once producer sent twice. The headers carry `event.kind`, `event.action`
//! and `event.dataset` so that consumers can route without parsing JSON; only those three
//! fields are read from the document, borrowed where possible.

use std::borrow::Cow;

use serde::Deserialize;

/// The fields of a document that become headers (and pick the topic).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventHeaders<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub action: Option<Cow<'a, str>>,
    pub dataset: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow, default)]
    event: Option<EventFields<'a>>,
}

#[derive(Deserialize)]
struct EventFields<'a> {
    #[serde(borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    action: Option<Text<'a>>,
    #[serde(borrow, default)]
    dataset: Option<Text<'a>>,
}

/// serde borrows a `Cow<str>` only when it is the field's whole type, not inside an
/// `Option`: this newtype makes it so.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> EventHeaders<'a> {
    /// Read the header fields of `doc`. A document that is not the JSON object we queued
    /// (it cannot happen short of corruption) gets no headers rather than no delivery.
    pub fn of(doc: &'a [u8]) -> EventHeaders<'a> {
        match serde_json::from_slice::<Doc<'a>>(doc) {
            Ok(Doc { event: Some(e) }) => EventHeaders {
                kind: e.kind.map(|t| t.0),
                action: e.action.map(|t| t.0),
                dataset: e.dataset.map(|t| t.0),
            },
            _ => EventHeaders::default(),
        }
    }

    /// `(header name, value)` for every field present.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("event.kind", &self.kind),
            ("event.action", &self.action),
            ("event.dataset", &self.dataset),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_fields_and_ignores_the_rest() {
        let doc = br#"{"@timestamp":"x","event":{"id":"abc","kind":"alert","action":"soteri-finding","dataset":"confluence.audit","original":"{\"k\":1}"},"user":{"name":"a"}}"#;
        let h = EventHeaders::of(doc);
        assert_eq!(h.kind.as_deref(), Some("alert"));
        assert_eq!(h.action.as_deref(), Some("soteri-finding"));
        assert_eq!(h.dataset.as_deref(), Some("confluence.audit"));
        let pairs: Vec<_> = h.pairs().collect();
        assert_eq!(pairs.len(), 3);
        assert!(matches!(h.kind, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn escaped_values_are_unescaped() {
        let h = EventHeaders::of(br#"{"event":{"action":"page \"x\" deleted"}}"#);
        assert_eq!(h.action.as_deref(), Some("page \"x\" deleted"));
        assert_eq!(h.pairs().count(), 1);
    }

    #[test]
    fn missing_or_broken_documents_have_no_headers() {
        assert_eq!(
            EventHeaders::of(br#"{"message":"x"}"#),
            EventHeaders::default()
        );
        assert_eq!(EventHeaders::of(b"not json"), EventHeaders::default());
    }
}
