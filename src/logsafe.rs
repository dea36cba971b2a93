//! Making text from a server safe to log, to put in an error and to serve on `/readyz`.
//!
//! It exists because a server's words are not ours: an error body can hold `\n` or escape
//! sequences that forge log lines or repaint a terminal, can be hundreds of megabytes long,
//! and can echo the very credentials the forwarder sent (a proxy's 401 page quoting the
//! `Authorization` header). Three rules, always applied together by [`clean`]:
//!
//! 1. every credential the forwarder sends — as registered with [`register_credential`]:
//!    the header value, the password or token alone, and their base64 forms — becomes
//!    `<redacted>`;
//! 2. control characters (and bidirectional overrides) are escaped (`\n`, `\u{1b}`), so one
//!    server string is one piece of one log line;
//! 3. the result is cut to [`MAX_CHARS`] characters, saying how much was cut.
//!
//! The registry is process-wide because the writer every log line goes through
//! ([`RedactingWriter`]) must know every credential, whichever source or sink sent it.

use std::io::Write;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Longest server-supplied text kept, in characters.
pub const MAX_CHARS: usize = 512;

/// What a credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Every credential text the forwarder sends, longest first (so a header value is
/// replaced whole before the token inside it).
static CREDENTIALS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember `secret` — and its base64 forms — as text that must never be logged or served.
/// Call it for every credential a request carries (a password, a token, a whole header
/// value, `user:password` before it is base64-encoded).
pub fn register_credential(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut forms = vec![secret.to_owned()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(secret));
    }
    let mut all = CREDENTIALS.write().unwrap_or_else(|p| p.into_inner());
    for form in forms {
        if !all.contains(&form) {
            all.push(form);
        }
    }
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Register the credentials of HTTP basic auth: the password, `user:password` and the
/// header value `Basic <base64>`.
pub fn register_basic_auth(username: &str, password: &str) {
    register_credential(password);
    let pair = format!("{username}:{password}");
    register_credential(&format!("Basic {}", STANDARD.encode(&pair)));
    register_credential(&pair);
}

/// Register a bearer token and its header value `Bearer <token>`.
pub fn register_bearer(token: &str) {
    register_credential(token);
    register_credential(&format!("Bearer {token}"));
}

/// Replace every registered credential in `text` with `<redacted>`.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let all = CREDENTIALS.read().unwrap_or_else(|p| p.into_inner());
    if !all.iter().any(|c| text.contains(c.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for c in all.iter() {
        if out.contains(c.as_str()) {
            out = out.replace(c.as_str(), REDACTED);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Server-supplied text made safe: credentials redacted, control characters escaped, cut
/// to [`MAX_CHARS`] characters.
pub fn clean(text: &str) -> String {
    clean_to(text, MAX_CHARS)
}

/// Server-supplied bytes (not necessarily UTF-8) made safe, like [`clean`].
pub fn clean_bytes(bytes: &[u8]) -> String {
    // Only the start is ever shown: do not decode a huge body whole.
    let head = &bytes[..bytes.len().min(MAX_CHARS * 4 + 64)];
    let mut s = clean(&String::from_utf8_lossy(head));
    if head.len() < bytes.len() {
        s.push_str(&format!(" ({} bytes in all)", bytes.len()));
    }
    s
}

/// [`clean`] with an explicit length bound.
pub fn clean_to(text: &str, max_chars: usize) -> String {
    let redacted = redact(text);
    let mut out = String::with_capacity(redacted.len().min(max_chars + 32));
    let mut chars = redacted.chars();
    for c in chars.by_ref().take(max_chars) {
        push_escaped(&mut out, c);
    }
    let rest = chars.count();
    if rest > 0 {
        out.push_str(&format!("… ({rest} more)"));
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || is_bidi_control(c) => {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
        c => out.push(c),
    }
}

/// Characters that reorder how a terminal shows the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A log writer that redacts every registered credential from each line it writes: the
/// last line of defence, whatever a log statement was given.
pub struct RedactingWriter<W>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => match redact(text) {
                std::borrow::Cow::Borrowed(_) => self.0.write_all(buf)?,
                std::borrow::Cow::Owned(s) => self.0.write_all(s.as_bytes())?,
            },
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_so_one_string_stays_on_one_line() {
        let forged = "oops\n2026-01-01T00:00:00Z  INFO forged line\x1b[31mred\r\u{202e}";
        let s = clean(forged);
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert_eq!(
            s,
            "oops\\n2026-01-01T00:00:00Z  INFO forged line\\u{1b}[31mred\\r\\u{202e}"
        );
    }

    #[test]
    fn long_text_is_cut_and_says_how_much() {
        let s = clean(&"x".repeat(2000));
        assert!(s.starts_with(&"x".repeat(MAX_CHARS)));
        assert!(s.ends_with("… (1488 more)"), "{s}");
        assert_eq!(clean_to("short", 10), "short");
        let b = clean_bytes(&vec![b'y'; 100_000]);
        assert!(b.chars().count() < MAX_CHARS + 64, "{}", b.len());
    }

    #[test]
    fn every_form_of_a_registered_credential_is_redacted() {
        register_basic_auth("svc-logsafe", "pw-canary-7731");
        register_bearer("tok-canary-9924");
        let b64 = STANDARD.encode("svc-logsafe:pw-canary-7731");
        let body = format!(
            "denied: Authorization: Basic {b64} (password pw-canary-7731), Bearer tok-canary-9924, {}",
            URL_SAFE_NO_PAD.encode("tok-canary-9924")
        );
        let s = clean(&body);
        for leak in ["pw-canary-7731", b64.as_str(), "tok-canary-9924"] {
            assert!(!s.contains(leak), "{leak} in {s}");
        }
        assert!(
            !s.contains(&URL_SAFE_NO_PAD.encode("tok-canary-9924")),
            "{s}"
        );
        assert_eq!(s.matches(REDACTED).count(), 4, "{s}");
        // A cut never leaves half a credential: redaction comes first.
        let long = format!("{}{}", "z".repeat(MAX_CHARS - 3), "tok-canary-9924");
        assert!(!clean(&long).contains("tok-can"), "{}", clean(&long));
    }

    #[test]
    fn the_log_writer_redacts_whole_lines() {
        register_credential("writer-canary-5150");
        let mut w = RedactingWriter(Vec::new());
        w.write_all(b"ERROR body=\"writer-canary-5150\"\n").unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "ERROR body=\"<redacted>\"\n"
        );
    }
}
