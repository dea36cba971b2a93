//! The JSON writer behind [`super::ecs`]: appends to a byte buffer, no intermediate values.
//!
//! Why not serde's serializer: it escapes every string byte by byte, and escaping was the
//! largest single cost of a document. Most strings we write are slices of the record's own
//! JSON text that serde_json handed out borrowed, which it only does for string contents
//! without escapes and without control characters (it rejects those). Such a slice is
//! already valid JSON string content, so it is copied as is; anything else (caller-given
//! text, unescaped copies, masked values, `event.original`) goes through [`escape`].

/// `"name":` as one literal, so writing a key is one copy (keys are our own ASCII names).
macro_rules! k {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}
pub(crate) use k;

/// Writes one JSON document into `out`, copying strings that lie inside `raw` verbatim.
pub struct Json<'o> {
    out: &'o mut Vec<u8>,
    /// The record text: strings inside it are unescaped string contents (see module doc).
    raw: std::ops::Range<usize>,
    comma: bool,
}

impl<'o> Json<'o> {
    /// `raw` is the record text every borrowed string was sliced from.
    pub fn new(out: &'o mut Vec<u8>, raw: &str) -> Self {
        let start = raw.as_ptr() as usize;
        Json {
            out,
            raw: start..start + raw.len(),
            comma: false,
        }
    }

    /// Bytes in the output buffer so far (where the next byte goes).
    pub fn written(&self) -> usize {
        self.out.len()
    }

    #[inline(always)]
    fn sep(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    #[inline(always)]
    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push(b'{');
        self.comma = false;
    }

    #[inline(always)]
    pub fn end_object(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    #[inline(always)]
    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
        self.comma = false;
    }

    #[inline(always)]
    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }

    /// An object key, written with [`k!`]: `j.key(k!("name"))`.
    #[inline(always)]
    pub fn key(&mut self, quoted: &'static str) {
        debug_assert!(
            quoted.starts_with('"') && quoted.ends_with("\":"),
            "{quoted}"
        );
        self.sep();
        self.out.extend_from_slice(quoted.as_bytes());
        self.comma = false;
    }

    /// `"key":{` — an object-valued field.
    #[inline(always)]
    pub fn object(&mut self, k: &'static str) {
        self.key(k);
        self.begin_object();
    }

    /// `"key":[` — an array-valued field.
    #[inline(always)]
    pub fn array(&mut self, k: &'static str) {
        self.key(k);
        self.begin_array();
    }

    /// A string value (array element or after [`Json::key`]).
    #[inline(always)]
    pub fn str(&mut self, s: &str) {
        self.sep();
        self.out.push(b'"');
        self.part(s);
        self.out.push(b'"');
        self.comma = true;
    }

    /// A string value that may lie inside `raw` without being a string's content
    /// (`event.original`): always escaped.
    pub fn str_escaped(&mut self, s: &str) {
        self.sep();
        self.out.push(b'"');
        escape(s, self.out);
        self.out.push(b'"');
        self.comma = true;
    }

    /// Start a string value built from parts (`message`).
    #[inline(always)]
    pub fn begin_str(&mut self) {
        self.sep();
        self.out.push(b'"');
    }

    /// One part of a string value started by [`Json::begin_str`].
    #[inline(always)]
    pub fn part(&mut self, s: &str) {
        let p = s.as_ptr() as usize;
        if p >= self.raw.start && p + s.len() <= self.raw.end {
            debug_assert!(!needs_escape(s.as_bytes()), "{s:?} borrowed with escapes");
            self.out.extend_from_slice(s.as_bytes());
        } else {
            escape(s, self.out);
        }
    }

    /// Like [`Json::part`], ASCII-lowercased (safe on escaped text: escapes are lowercase).
    pub fn part_lower(&mut self, s: &str) {
        let at = self.out.len();
        self.part(s);
        self.out[at..].make_ascii_lowercase();
    }

    /// A string value, ASCII-lowercased.
    pub fn str_lower(&mut self, s: &str) {
        self.begin_str();
        self.part_lower(s);
        self.end_str();
    }

    #[inline(always)]
    pub fn end_str(&mut self) {
        self.out.push(b'"');
        self.comma = true;
    }

    /// Bytes that are already a JSON value (numbers, literals, ASCII written by us).
    #[inline(always)]
    pub fn raw_value(&mut self, v: &[u8]) {
        self.sep();
        self.out.extend_from_slice(v);
        self.comma = true;
    }

    #[inline(always)]
    pub fn bool(&mut self, b: bool) {
        self.raw_value(if b { b"true" } else { b"false" });
    }

    /// `"key":"value"`.
    #[inline(always)]
    pub fn field(&mut self, k: &'static str, v: &str) {
        self.key(k);
        self.str(v);
    }

    /// Constant members written as one literal: `"a":"x","b":{"c":"y"}`.
    #[inline(always)]
    pub fn members(&mut self, literal: &'static str) {
        debug_assert!(
            literal.starts_with('"') && !literal.ends_with(','),
            "{literal}"
        );
        self.sep();
        self.out.extend_from_slice(literal.as_bytes());
        self.comma = true;
    }

    /// `"key":"value"` for our own constant values (no escaping needed).
    #[inline(always)]
    pub fn field_static(&mut self, k: &'static str, v: &'static str) {
        debug_assert!(!needs_escape(v.as_bytes()));
        self.key(k);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
        self.comma = true;
    }

    /// `"key":"value"` when there is a value.
    #[inline(always)]
    pub fn field_opt(&mut self, k: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.field(k, v);
        }
    }

    /// `"key":true|false` when there is a value.
    #[inline(always)]
    pub fn field_bool(&mut self, k: &'static str, v: Option<bool>) {
        if let Some(v) = v {
            self.key(k);
            self.bool(v);
        }
    }

    /// `"key":["a","b"]` when not empty.
    pub fn field_list(&mut self, k: &'static str, items: &[&str]) {
        if items.is_empty() {
            return;
        }
        self.array(k);
        for s in items {
            self.str(s);
        }
        self.end_array();
    }
}

/// Without an early exit, so it vectorizes (the strings are short; scanning all is cheap).
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Append `s` as JSON string contents (RFC 8259: quote, backslash and control characters).
pub fn escape(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_requires_and_copies_borrowed_text() {
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}é\u{2028}";
        let mut out = Vec::new();
        let mut j = Json::new(&mut out, "");
        j.begin_object();
        j.field(k!("k"), nasty);
        j.field_list(k!("l"), &["x", nasty]);
        j.field_bool(k!("b"), Some(false));
        j.field_opt(k!("none"), None);
        j.end_object();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["k"], nasty);
        assert_eq!(v["l"][1], nasty);
        assert_eq!(v["b"], false);
        assert!(v.get("none").is_none());

        // A slice of the record text is copied as is; `str_escaped` never trusts it.
        let raw = r#"{"a":"plain text"}"#;
        let mut out = Vec::new();
        let mut j = Json::new(&mut out, raw);
        j.begin_object();
        j.field(k!("a"), &raw[6..16]);
        j.key(k!("o"));
        j.str_escaped(raw);
        j.end_object();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["a"], "plain text");
        assert_eq!(v["o"], raw);
    }
}
