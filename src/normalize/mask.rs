//! Masking of the sensitive text a Soteri finding may carry.
//!
//! A finding can contain the very secret it found (an access key, a card number). Forwarding
//! it in clear would copy the secret into every SIEM, so by default a value whose attribute
//! name says it is matched or sensitive text is replaced by a short prefix and suffix and a
//! hash — enough to correlate, not enough to use. `forward_secrets_plaintext` turns it off.
//!
//! Rule: attribute (or changed-value) names containing "match", "snippet", "excerpt",
//! "secret", "sensitive", "finding text" or "found text" (case-insensitive). A value of 12
//! characters or more keeps its first and last 4; a shorter one keeps none. The hash is the
//! first 16 hex digits of BLAKE3 over the value: `AKIA…MPLE (blake3:1c0a2f…)`.

use std::borrow::Cow;

const MARKERS: &[&str] = &[
    "match",
    "snippet",
    "excerpt",
    "secret",
    "sensitive",
    "finding text",
    "found text",
];

/// Does a field of this name carry matched sensitive text?
pub fn is_sensitive_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    MARKERS.iter().any(|m| {
        bytes
            .windows(m.len())
            .any(|w| w.eq_ignore_ascii_case(m.as_bytes()))
    })
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
pub fn apply<'a>(name: Option<&str>, value: Cow<'a, str>, plaintext: bool) -> Cow<'a, str> {
    if plaintext || value.is_empty() || !name.is_some_and(is_sensitive_name) {
        value
    } else {
        Cow::Owned(mask(&value))
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
        assert!(is_sensitive_name("Matched text"));
        assert!(is_sensitive_name("SECRET"));
        assert!(!is_sensitive_name("Rule name"));
        let v = apply(Some("Rule name"), Cow::Borrowed("AWS key"), false);
        assert_eq!(v, "AWS key");
        let v = apply(
            Some("Matched text"),
            Cow::Borrowed("AKIAIOSFODNN7EXAMPLE"),
            true,
        );
        assert_eq!(v, "AKIAIOSFODNN7EXAMPLE");
    }
}
