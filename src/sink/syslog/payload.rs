//! Syslog payloads: the ECS document as JSON, or mapped to ArcSight CEF or QRadar LEEF 2.0.
//!
//! SIEMs that parse CEF or LEEF natively want their own keys, so the mapping below is fixed
//! and documented (README, syslog sink section). Keys are never taken from the event, so
//! only values need escaping, and every value is escaped by the format's rules:
//!
//! | what | CEF | LEEF 2.0 |
//! |---|---|---|
//! | header field | `\` → `\\`, `\|` → `\\|`, control characters → space | same |
//! | value | `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r` | `\` → `\\`, TAB → `\t`, LF → `\n`, CR → `\r` |
//! | other control characters, U+2028/U+2029 | U+FFFD | U+FFFD |
//!
//! LEEF's attribute delimiter is TAB, declared as `x09` in the header (LEEF 2.0 allows a
//! hex delimiter); QRadar splits attributes on it before it looks for `=`, so `=` needs no
//! escape. LEEF itself defines no escape syntax: QRadar shows `\t`, `\n`, `\\` literally,
//! which is readable and cannot break an attribute.
//!
//! ECS → CEF extension keys: `rt` `@timestamp` (epoch ms), `externalId` `event.id`, `act`
//! `event.action`, `cat` `event.category` (comma-joined), `outcome` `event.outcome`, `msg`
//! `message`, `suser` `user.name`, `suid` `user.id`, `src` `source.ip`, `duser`
//! `user.target.name`, `duid` `user.target.id`, `dvchost` the Confluence host, `request`
//! `url.full`, `fname` `file.name`, `cs1` `confluence.space.key`, `cs2`
//! `confluence.content.title`, `cs3` `confluence.content.id`, `cs4` `group.name`, `cs5`
//! `rule.name`, `cs6` `event.kind` (each `csN` with its `csNLabel`). Header: vendor
//! `observer.vendor` (Atlassian), product `observer.product` (Confluence), version
//! `observer.version` (`unknown`), signature `event.action`, name `message` (else the
//! action), severity 0–10 from the syslog severity.
//!
//! ECS → LEEF keys: `devTime` `@timestamp` (with `devTimeFormat`), `cat` `event.category`,
//! `sev` 1–10, `usrName` `user.name`, `src` `source.ip`, `accountName` `user.target.name`,
//! `identGrpName` `group.name`, `url` `url.full`, `resource` `confluence.content.title`, and
//! custom keys `eventId`, `action`, `outcome`, `kind`, `msg`, `userId`, `targetUserId`,
//! `spaceKey`, `contentId`, `fileName`, `ruleName`, `confluenceHost`. Header event ID:
//! `event.action`.

use std::borrow::Cow;

use super::config::Severity;
use super::event::{EcsEvent, is_line_breaking};

/// CEF severity (0–10) for a syslog severity.
pub fn cef_severity(s: Severity) -> u8 {
    [10, 9, 8, 7, 6, 4, 2, 0][s.0 as usize]
}

/// LEEF `sev` (1–10) for a syslog severity.
pub fn leef_severity(s: Severity) -> u8 {
    [10, 9, 8, 7, 6, 4, 2, 1][s.0 as usize]
}

/// The ECS document as compact JSON with no raw control character and no U+2028/U+2029.
/// The document's own bytes are kept when they are already clean (the normal case).
pub fn json(doc: &[u8], ev: &EcsEvent) -> Vec<u8> {
    let bytes: Cow<'_, [u8]> = if doc.iter().any(|b| *b < 0x20) {
        // Raw C0 bytes in valid JSON are whitespace between tokens: serialize compactly.
        Cow::Owned(serde_json::to_vec(&ev.doc).expect("a Value always serializes"))
    } else {
        Cow::Borrowed(doc)
    };
    let text = std::str::from_utf8(&bytes).expect("serde_json accepted it, so it is UTF-8");
    if !text.chars().any(is_line_breaking) {
        return bytes.into_owned();
    }
    // What is left (DEL, C1, U+2028/U+2029) can only sit inside strings: escape it there.
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_line_breaking(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into_bytes()
}

/// Escape a CEF or LEEF header field.
pub fn header_field(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            c if is_line_breaking(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escape a CEF extension value.
pub fn cef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_line_breaking(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escape a LEEF attribute value (TAB is the delimiter).
pub fn leef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_line_breaking(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn source_ip(ev: &EcsEvent) -> Option<String> {
    ev.text("source.ip")
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
}

/// `CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension`.
pub fn cef(ev: &EcsEvent, severity: Severity) -> String {
    let action = ev.text("event.action").unwrap_or_else(|| "unknown".into());
    let name = ev.text("message").unwrap_or_else(|| action.clone());
    let mut out = format!(
        "CEF:0|{}|{}|{}|{}|{}|{}|",
        header_field(
            &ev.text("observer.vendor")
                .unwrap_or_else(|| "Atlassian".into())
        ),
        header_field(
            &ev.text("observer.product")
                .unwrap_or_else(|| "Confluence".into())
        ),
        header_field(
            &ev.text("observer.version")
                .unwrap_or_else(|| "unknown".into())
        ),
        header_field(&action),
        header_field(&name),
        cef_severity(severity),
    );
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(t) = ev.timestamp() {
        pairs.push((
            "rt",
            ((t.unix_timestamp_nanos() / 1_000_000) as i64).to_string(),
        ));
    }
    for (key, path) in [
        ("externalId", "event.id"),
        ("act", "event.action"),
        ("cat", "event.category"),
        ("outcome", "event.outcome"),
        ("msg", "message"),
        ("suser", "user.name"),
        ("suid", "user.id"),
    ] {
        if let Some(v) = ev.text(path) {
            pairs.push((key, v));
        }
    }
    if let Some(ip) = source_ip(ev) {
        pairs.push(("src", ip));
    }
    for (key, path) in [("duser", "user.target.name"), ("duid", "user.target.id")] {
        if let Some(v) = ev.text(path) {
            pairs.push((key, v));
        }
    }
    if let Some(h) = ev.confluence_host() {
        pairs.push(("dvchost", h));
    }
    for (key, path) in [("request", "url.full"), ("fname", "file.name")] {
        if let Some(v) = ev.text(path) {
            pairs.push((key, v));
        }
    }
    for (key, label_key, label, path) in [
        ("cs1", "cs1Label", "spaceKey", "confluence.space.key"),
        (
            "cs2",
            "cs2Label",
            "contentTitle",
            "confluence.content.title",
        ),
        ("cs3", "cs3Label", "contentId", "confluence.content.id"),
        ("cs4", "cs4Label", "groupName", "group.name"),
        ("cs5", "cs5Label", "ruleName", "rule.name"),
        ("cs6", "cs6Label", "eventKind", "event.kind"),
    ] {
        if let Some(v) = ev.text(path) {
            pairs.push((label_key, label.to_owned()));
            pairs.push((key, v));
        }
    }
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(&cef_value(v));
    }
    out
}

/// The LEEF `devTimeFormat` matching [`leef`]'s `devTime` (Java `SimpleDateFormat`).
pub const LEEF_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSX";

/// `LEEF:2.0|Vendor|Product|Version|EventID|x09|key=value<TAB>key=value…`.
pub fn leef(ev: &EcsEvent, severity: Severity) -> String {
    let action = ev.text("event.action").unwrap_or_else(|| "unknown".into());
    let mut out = format!(
        "LEEF:2.0|{}|{}|{}|{}|x09|",
        header_field(
            &ev.text("observer.vendor")
                .unwrap_or_else(|| "Atlassian".into())
        ),
        header_field(
            &ev.text("observer.product")
                .unwrap_or_else(|| "Confluence".into())
        ),
        header_field(
            &ev.text("observer.version")
                .unwrap_or_else(|| "unknown".into())
        ),
        header_field(&action),
    );
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(t) = ev.timestamp() {
        pairs.push(("devTimeFormat", LEEF_TIME_FORMAT.into()));
        pairs.push((
            "devTime",
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
        ));
    }
    if let Some(v) = ev.text("event.category") {
        pairs.push(("cat", v));
    }
    pairs.push(("sev", leef_severity(severity).to_string()));
    if let Some(v) = ev.text("user.name") {
        pairs.push(("usrName", v));
    }
    if let Some(ip) = source_ip(ev) {
        pairs.push(("src", ip));
    }
    for (key, path) in [
        ("accountName", "user.target.name"),
        ("identGrpName", "group.name"),
        ("url", "url.full"),
        ("resource", "confluence.content.title"),
        ("eventId", "event.id"),
        ("action", "event.action"),
        ("outcome", "event.outcome"),
        ("kind", "event.kind"),
        ("msg", "message"),
        ("userId", "user.id"),
        ("targetUserId", "user.target.id"),
        ("spaceKey", "confluence.space.key"),
        ("contentId", "confluence.content.id"),
        ("fileName", "file.name"),
        ("ruleName", "rule.name"),
    ] {
        if let Some(v) = ev.text(path) {
            pairs.push((key, v));
        }
    }
    if let Some(h) = ev.confluence_host() {
        pairs.push(("confluenceHost", h));
    }
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(&leef_value(v));
    }
    out
}

/// Parsers of what [`cef`] and [`leef`] write, for tests here and in `tests/`: the reverse
/// of every escaping rule above.
pub mod parse {
    use std::collections::BTreeMap;

    /// A parsed CEF or LEEF message: header fields and attributes.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Parsed {
        pub header: Vec<String>,
        pub attrs: BTreeMap<String, String>,
    }

    /// Split the `|`-separated header (honouring `\|` and `\\`) into `n` fields, returning
    /// them and the rest.
    fn header(s: &str, n: usize) -> Option<(Vec<String>, &str)> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('\\' | '|'))) => cur.push(e),
                    _ => return None,
                },
                '|' => {
                    fields.push(std::mem::take(&mut cur));
                    if fields.len() == n {
                        return Some((fields, &s[i + 1..]));
                    }
                }
                c => cur.push(c),
            }
        }
        None
    }

    /// Parse a CEF message (`CEF:0|…`).
    pub fn cef(s: &str) -> Option<Parsed> {
        let (header, ext) = header(s, 7)?;
        if header[0] != "CEF:0" {
            return None;
        }
        // Tokenize: every unescaped `=` ends a key, which is the last space-free word before
        // it; the value runs to the space before the next key.
        let mut attrs = BTreeMap::new();
        let mut raw = String::new(); // unescaped so far, with markers for real '='
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut chars = ext.chars();
        let mut key: Option<String> = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    'n' => raw.push('\n'),
                    'r' => raw.push('\r'),
                    e @ ('\\' | '=') => raw.push(e),
                    _ => return None,
                },
                '=' => {
                    // `raw` is "<value of previous key> <this key>" (or just the key).
                    let (value, k) = match raw.rfind(' ') {
                        Some(i) if key.is_some() => (raw[..i].to_owned(), raw[i + 1..].to_owned()),
                        None if key.is_none() => (String::new(), raw.clone()),
                        _ => return None,
                    };
                    if let Some(prev) = key.take() {
                        keys.push((prev, value));
                    }
                    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return None;
                    }
                    key = Some(k);
                    raw.clear();
                }
                c => raw.push(c),
            }
        }
        if let Some(k) = key {
            keys.push((k, raw));
        }
        for (k, v) in keys {
            attrs.insert(k, v);
        }
        Some(Parsed { header, attrs })
    }

    /// Parse a LEEF 2.0 message with the TAB (`x09`) delimiter.
    pub fn leef(s: &str) -> Option<Parsed> {
        let (header, rest) = header(s, 6)?;
        if header[0] != "LEEF:2.0" || header[5] != "x09" {
            return None;
        }
        let mut attrs = BTreeMap::new();
        for pair in rest.split('\t') {
            let (k, v) = pair.split_once('=')?;
            let mut value = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next()? {
                        '\\' => value.push('\\'),
                        't' => value.push('\t'),
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        _ => return None,
                    }
                } else {
                    value.push(c);
                }
            }
            attrs.insert(k.to_owned(), value);
        }
        Some(Parsed { header, attrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(v: serde_json::Value) -> EcsEvent {
        EcsEvent::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "@timestamp": "2025-11-25T10:00:00.123Z",
            "event": {"id": "abc", "kind": "alert", "action": "sensitive-content-introduced",
                      "category": ["file"], "type": ["change"]},
            "message": "jdoe introduced an AWS key in \"Ops | Runbook\"",
            "user": {"name": "jdoe", "id": "42"},
            "source": {"ip": "10.1.2.3"},
            "confluence": {"space": {"key": "OPS"}, "content": {"title": "a=b\\c\nd", "id": "77"}},
            "related": {"hosts": ["wiki.example.com"]},
        })
    }

    #[test]
    fn cef_maps_and_escapes() {
        let s = cef(&ev(sample()), Severity(2));
        assert!(
            s.starts_with("CEF:0|Atlassian|Confluence|unknown|sensitive-content-introduced|jdoe introduced an AWS key in \"Ops \\| Runbook\"|8|rt=1764064800123 externalId=abc "),
            "{s}"
        );
        assert!(s.contains(" cs2=a\\=b\\\\c\\nd "), "{s}");
        assert!(!s.contains('\n'));
        let p = parse::cef(&s).unwrap();
        assert_eq!(
            p.header[5],
            "jdoe introduced an AWS key in \"Ops | Runbook\""
        );
        assert_eq!(p.attrs["cs2"], "a=b\\c\nd");
        assert_eq!(p.attrs["cs2Label"], "contentTitle");
        assert_eq!(p.attrs["suser"], "jdoe");
        assert_eq!(p.attrs["src"], "10.1.2.3");
        assert_eq!(p.attrs["dvchost"], "wiki.example.com");
        assert_eq!(p.attrs["cat"], "file");
    }

    #[test]
    fn leef_maps_and_escapes() {
        let mut d = sample();
        d["user"]["name"] = "j\tdoe".into();
        let s = leef(&ev(d), Severity(2));
        assert!(
            s.starts_with("LEEF:2.0|Atlassian|Confluence|unknown|sensitive-content-introduced|x09|devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX\tdevTime=2025-11-25T10:00:00.123Z\tcat=file\tsev=8\tusrName=j\\tdoe\t"),
            "{s}"
        );
        let p = parse::leef(&s).unwrap();
        assert_eq!(p.attrs["usrName"], "j\tdoe");
        assert_eq!(p.attrs["resource"], "a=b\\c\nd");
        assert_eq!(p.attrs["eventId"], "abc");
    }

    #[test]
    fn a_source_ip_that_is_not_an_ip_is_left_out() {
        let mut d = sample();
        d["source"]["ip"] = "1.2.3.4 act=evil".into();
        let p = parse::cef(&cef(&ev(d), Severity(5))).unwrap();
        assert!(!p.attrs.contains_key("src"));
        assert_eq!(p.attrs["act"], "sensitive-content-introduced");
    }

    #[test]
    fn json_is_kept_or_cleaned() {
        let clean = br#"{"a":"x\ny"}"#;
        assert_eq!(
            json(clean, &EcsEvent::parse(clean).unwrap()),
            clean.to_vec()
        );
        let pretty = b"{\n  \"a\": \"l\xe2\x80\xa8s\xc2\x85\x7f\"\n}";
        let out = json(pretty, &EcsEvent::parse(pretty).unwrap());
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, r#"{"a":"l\u2028s\u0085\u007f"}"#);
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["a"], "l\u{2028}s\u{85}\u{7f}");
    }

    /// Text a user could type, weighted towards the characters the formats care about.
    fn hostile() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => proptest::char::any(),
                2 => proptest::sample::select(vec!['\\', '=', '|', '\n', '\r', '\t', ' ', ']', '"', '^', '\u{FFFD}', '🎉']),
            ],
            0..40,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    /// What a value must come back as: control characters other than the escaped ones are
    /// replaced, everything else is kept.
    fn expected(s: &str, kept: &[char]) -> String {
        s.chars()
            .map(|c| {
                if is_line_breaking(c) && !kept.contains(&c) {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn cef_round_trips(a in hostile(), b in hostile(), title in hostile()) {
            let mut d = sample();
            d["user"]["name"] = a.clone().into();
            d["message"] = b.clone().into();
            d["confluence"]["content"]["title"] = title.clone().into();
            let s = cef(&ev(d), Severity(5));
            prop_assert!(!s.contains('\n') && !s.contains('\r'));
            let p = parse::cef(&s).expect("parses");
            prop_assert_eq!(p.header.len(), 7);
            let name_expected: String = b.chars().map(|c| if is_line_breaking(c) { ' ' } else { c }).collect();
            if !b.is_empty() {
                prop_assert_eq!(&p.header[5], &name_expected);
            }
            let cr_lf = ['\n', '\r'];
            if !a.is_empty() { prop_assert_eq!(&p.attrs["suser"], &expected(&a, &cr_lf)); }
            if !b.is_empty() { prop_assert_eq!(&p.attrs["msg"], &expected(&b, &cr_lf)); }
            if !title.is_empty() { prop_assert_eq!(&p.attrs["cs2"], &expected(&title, &cr_lf)); }
            prop_assert_eq!(&p.attrs["externalId"], "abc");
            prop_assert_eq!(&p.attrs["cs1"], "OPS");
        }

        #[test]
        fn leef_round_trips(a in hostile(), b in hostile(), action in hostile()) {
            let mut d = sample();
            d["user"]["name"] = a.clone().into();
            d["message"] = b.clone().into();
            d["event"]["action"] = action.clone().into();
            let s = leef(&ev(d), Severity(5));
            prop_assert!(!s.contains('\n') && !s.contains('\r'));
            let p = parse::leef(&s).expect("parses");
            let kept = ['\n', '\r', '\t'];
            if !a.is_empty() { prop_assert_eq!(&p.attrs["usrName"], &expected(&a, &kept)); }
            if !b.is_empty() { prop_assert_eq!(&p.attrs["msg"], &expected(&b, &kept)); }
            if !action.is_empty() {
                prop_assert_eq!(&p.attrs["action"], &expected(&action, &kept));
                let header_expected: String = action.chars().map(|c| if is_line_breaking(c) { ' ' } else { c }).collect();
                prop_assert_eq!(&p.header[4], &header_expected);
            }
            prop_assert_eq!(&p.attrs["eventId"], "abc");
            prop_assert_eq!(&p.attrs["spaceKey"], "OPS");
        }
    }
}
