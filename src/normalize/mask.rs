//! Masking of the sensitive text a Soteri finding may carry.
//!
//! A finding can contain the very secret it found (an access key, a card number). Forwarding
//! it in clear would copy the secret into every SIEM, so by default a value whose attribute
//! name says it is matched or sensitive text is replaced by a short prefix and suffix and a
//! hash — enough to correlate, not enough to use. `forward_secrets_plaintext` turns it off.
//!
//! Rule. A changed value or extra attribute is sensitive when its name (case-insensitive)
//! contains "match", "snippet", "excerpt", "secret", "sensitive", "finding" or "found text",
//! unless the name *ends* with a word that makes it metadata about the finding rather than
//! its text: rule, name, id, count, number, total, status, state, type,
//! category, url, link, date, time, space, page, user, email, recipient (so "Matched rule",
//! "Finding ID", "Secret type" and "Sensitive content URL" stay readable, while "Matched
//! text", "Snippet", "Finding" and "Matched text (rule: AWS)" are masked). Soteri does not
//! document its attribute names, so the rule errs on the side of masking. Masked: a value
//! of 12 characters or more keeps its first and last 4, a shorter one keeps none, and the
//! first 16 hex digits of BLAKE3 over the value follow: `AKIA…MPLE (blake3:1c0a2f…)`.
//! The ECS fields derived from attributes (`rule.*`, `url.full`, `file.*`, …) never read a
//! sensitive attribute, and `event.original` is masked the same way.

use std::borrow::Cow;

const MARKERS: &[&str] = &[
    "match",
    "snippet",
    "excerpt",
    "secret",
    "sensitive",
    "finding",
    "found text",
];

/// Name endings that make a marked name metadata about a finding, not its text.
const METADATA: &[&str] = &[
    "rule",
    "name",
    "id",
    "count",
    "number",
    "total",
    "status",
    "state",
    "type",
    "category",
    "url",
    "link",
    "date",
    "time",
    "space",
    "page",
    "user",
    "email",
    "recipient",
];

/// `haystack` contains `needle`, ASCII case-insensitively.
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `name` ends with the word `word` (after a non-letter, or camelCase: `findingId`).
fn ends_with_word(name: &str, word: &str) -> bool {
    let (n, w) = (name.as_bytes(), word.as_bytes());
    if n.len() < w.len() || !n[n.len() - w.len()..].eq_ignore_ascii_case(w) {
        return false;
    }
    let at = n.len() - w.len();
    at == 0 || !n[at - 1].is_ascii_alphanumeric() || n[at].is_ascii_uppercase()
}

/// Does a field of this name carry matched sensitive text?
pub fn is_sensitive_name(name: &str) -> bool {
    let name = name.trim_end();
    MARKERS.iter().any(|m| contains_ci(name, m))
        && !METADATA.iter().any(|w| ends_with_word(name, w))
}

/// The masked form of `value`.
pub fn mask(value: &str) -> String {
    let hash = blake3::hash(value.as_bytes()).to_hex();
    let hash = &hash.as_str()[..16];
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 12 {
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail} (blake3:{hash})")
    } else {
        format!("… (blake3:{hash})")
    }
}

/// `value` masked when `name` says it is sensitive and masking is on.
pub fn apply<'a>(name: Option<&str>, value: &'a str, plaintext: bool) -> Cow<'a, str> {
    if plaintext || value.is_empty() || !name.is_some_and(is_sensitive_name) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(mask(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_long_and_short_values() {
        let m = mask("AKIAIOSFODNN7EXAMPLE");
        assert!(m.starts_with("AKIA…MPLE (blake3:"), "{m}");
        assert!(!m.contains("IOSFODNN7"));
        let s = mask("078-05-1120");
        assert!(s.starts_with("… (blake3:"), "{s}");
        assert_eq!(mask("x"), mask("x"));
        assert_ne!(mask("x"), mask("y"));
    }

    #[test]
    fn only_sensitive_names_are_masked() {
        for name in [
            "Matched text",
            "SECRET",
            "Snippet",
            "Finding",
            "matchedValue",
            "Matched text (rule: AWS)",
            "Potentially sensitive content",
            "Found text",
            "Secret key",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in [
            "Rule name",
            "Matched rule",
            "Finding ID",
            "findingId",
            "Secret type",
            "Sensitive content URL",
            "Findings count",
            "Page",
            "Space key",
        ] {
            assert!(!is_sensitive_name(name), "{name}");
        }
        let v = apply(Some("Rule name"), "AWS key", false);
        assert_eq!(v, "AWS key");
        let v = apply(Some("Matched text"), "AKIAIOSFODNN7EXAMPLE", true);
        assert_eq!(v, "AKIAIOSFODNN7EXAMPLE");
    }
}
