//! What travels over the control socket: one [`Request`] line from the command, then
//! [`Reply`] lines from the daemon until a final one (anything but `progress`).

use serde::{Deserialize, Serialize};

use crate::source::replay::{ReplayProgress, ReplayReport};
use crate::status::StatusReport;

/// A command's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Re-read `[from_ms, to_ms]` of `source` and queue it for `sinks` (empty: all).
    Replay {
        source: String,
        from_ms: i64,
        to_ms: i64,
        sinks: Vec<String>,
    },
}

/// A daemon's reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Status(StatusReport),
    /// A replay going on (not final).
    Progress(ReplayProgress),
    Replayed(ReplayReport),
    /// The request failed; the text says why.
    Error(String),
}

impl Reply {
    /// Whether more lines follow.
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Progress(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_each() {
        let r = Request::Replay {
            source: "wiki".into(),
            from_ms: 1,
            to_ms: 2,
            sinks: vec!["es".into()],
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"cmd":"replay","source":"wiki","from_ms":1,"to_ms":2,"sinks":["es"]}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"shutdown"}"#).is_err());
    }
}
