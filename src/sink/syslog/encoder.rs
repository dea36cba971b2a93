//! One ECS document → one framed syslog message (RFC 5424 or RFC 3164), injection-proof.
//!
//! Audit records carry text any Confluence user controls (page titles, display names), and
//! that text reaches syslog header fields and payloads. The rules that keep one event one
//! message, whatever the text:
//!
//! - Every header field is reduced to its RFC alphabet and length: PRINTUSASCII (33–126)
//!   for RFC 5424 HOSTNAME (≤ 255), APP-NAME (≤ 48), PROCID (≤ 128) and MSGID (≤ 32), none
//!   ending in `:`;
//!   `[A-Za-z0-9._-]` for RFC 3164 HOSTNAME (≤ 255, starting and ending with a letter or
//!   digit) and TAG (≤ 32). Any other character becomes `_`;
//!   an empty field becomes the NILVALUE `-`.
//! - SD-PARAM values escape `"`, `\` and `]` (RFC 5424 §6.3.3); control characters become
//!   U+FFFD.
//! - No payload ever holds a raw control character (CR, LF, NUL, DEL, C1) or U+2028/U+2029:
//!   JSON escapes them as `\uXXXX`, CEF and LEEF as their formats say ([`super::payload`]).
//!   So LF framing is safe and no receiver sees a second message inside the first.
//! - Messages over `max_message_bytes` keep their header; the payload is cut at a UTF-8
//!   character boundary (never inside an escape sequence) and ends with
//!   [`TRUNCATION_MARKER`]. A message is never split in two.

use serde_json::Value;
use time::OffsetDateTime;

use super::config::{
    Facility, Framing, PayloadFormat, Severity, SyslogConfig, SyslogFormat, Transport,
};
pub use super::event::{EcsEvent, EncodeError, is_line_breaking};
use super::payload;

/// Appended to a payload that was cut to fit `max_message_bytes`.
pub const TRUNCATION_MARKER: &str = "[truncated]";

/// Encodes documents for one sink.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: SyslogFormat,
    payload: PayloadFormat,
    facility: Facility,
    app_name: String,
    hostname: Option<String>,
    severity: Severity,
    severity_failure: Severity,
    severity_alert: Severity,
    sd_id: String,
    max_message_bytes: Option<usize>,
    /// `None` for UDP: a datagram is its own frame.
    framing: Option<Framing>,
}

impl Encoder {
    pub fn new(cfg: &SyslogConfig, transport: &Transport) -> Encoder {
        Encoder {
            format: cfg.format,
            payload: cfg.payload,
            facility: cfg.facility,
            app_name: cfg.app_name.clone(),
            hostname: cfg.hostname.clone(),
            severity: cfg.severity,
            severity_failure: cfg.severity_failure,
            severity_alert: cfg.severity_alert,
            sd_id: cfg.sd_id.clone(),
            max_message_bytes: cfg.max_message_bytes(transport),
            framing: (*transport != Transport::Udp).then(|| cfg.framing(transport)),
        }
    }

    /// The severity of an event: alerts highest, then failures, then the rest.
    pub fn severity_of(&self, ev: &EcsEvent) -> Severity {
        if ev.get("event.kind").and_then(Value::as_str) == Some("alert") {
            self.severity_alert
        } else if ev.get("event.outcome").and_then(Value::as_str) == Some("failure") {
            self.severity_failure
        } else {
            self.severity
        }
    }

    /// Append one framed message for `doc` to `out`. Returns whether it was truncated.
    pub fn encode(&self, doc: &[u8], out: &mut Vec<u8>) -> Result<bool, EncodeError> {
        let ev = EcsEvent::parse(doc)?;
        let severity = self.severity_of(&ev);
        let header = self.header(&ev, severity);
        let body = match self.payload {
            PayloadFormat::Json => payload::json(doc, &ev),
            PayloadFormat::Cef => payload::cef(&ev, severity).into_bytes(),
            PayloadFormat::Leef => payload::leef(&ev, severity).into_bytes(),
        };
        let mut message = header.into_bytes();
        let header_len = message.len();
        let truncated = fit(&mut message, header_len, &body, self.max_message_bytes);
        match self.framing {
            Some(Framing::OctetCounting) => {
                out.extend_from_slice(message.len().to_string().as_bytes());
                out.push(b' ');
                out.extend_from_slice(&message);
            }
            Some(Framing::Lf) => {
                out.extend_from_slice(&message);
                out.push(b'\n');
            }
            None => out.extend_from_slice(&message),
        }
        Ok(truncated)
    }

    /// Everything before the payload, including the space that separates it.
    fn header(&self, ev: &EcsEvent, severity: Severity) -> String {
        let pri = self.facility.0 as u16 * 8 + severity.0 as u16;
        let host = self.hostname.clone().or_else(|| ev.confluence_host());
        match self.format {
            SyslogFormat::Rfc5424 => {
                let ts = ev.timestamp().map_or_else(|| "-".to_owned(), rfc5424_time);
                let host = rfc5424_field(host.as_deref().unwrap_or(""), 255);
                let app = rfc5424_field(&self.app_name, 48);
                let msgid = rfc5424_field(&ev.text("event.action").unwrap_or_default(), 32);
                let sd = self.structured_data(ev);
                format!("<{pri}>1 {ts} {host} {app} - {msgid} {sd} ")
            }
            SyslogFormat::Rfc3164 => {
                let ts = ev
                    .timestamp()
                    .unwrap_or_else(OffsetDateTime::now_utc)
                    .to_offset(time::UtcOffset::UTC);
                let ts = rfc3164_time(ts);
                let host = bsd_hostname(host.as_deref().unwrap_or(""));
                let tag = bsd_word(&self.app_name, 32);
                format!("<{pri}>{ts} {host} {tag}: ")
            }
        }
    }

    fn structured_data(&self, ev: &EcsEvent) -> String {
        if self.sd_id.is_empty() {
            return "-".into();
        }
        let mut sd = format!("[{}", self.sd_id);
        for (name, path) in [
            ("id", "event.id"),
            ("kind", "event.kind"),
            ("action", "event.action"),
            ("outcome", "event.outcome"),
        ] {
            if let Some(v) = ev.text(path) {
                sd.push(' ');
                sd.push_str(name);
                sd.push_str("=\"");
                sd.push_str(&sd_param_value(&v));
                sd.push('"');
            }
        }
        sd.push(']');
        sd
    }
}

/// `2025-11-25T10:00:00.123Z`; microseconds when the time has them (RFC 5424 allows six
/// fraction digits at most).
fn rfc5424_time(t: OffsetDateTime) -> String {
    let micros = t.microsecond();
    let frac = if micros.is_multiple_of(1000) {
        format!("{:03}", micros / 1000)
    } else {
        format!("{micros:06}")
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{frac}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `Nov  5 10:00:00` (RFC 3164 §4.1.2; UTC, since the format cannot say which zone).
fn rfc3164_time(t: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[t.month() as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An RFC 5424 header field: PRINTUSASCII only (others → `_`), at most `max` bytes,
/// `-` when empty.
pub fn printable(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// An RFC 5424 HOSTNAME, APP-NAME or MSGID: [`printable`], and not ending in `:` (loose
/// parsers take `host:` for an RFC 3164 hostname or tag; no name or address ends so).
pub fn rfc5424_field(s: &str, max: usize) -> String {
    let mut h = printable(s, max);
    if h.ends_with(':') {
        h.pop();
        h.push('_');
    }
    h
}

/// An RFC 3164 HOSTNAME or TAG: `[A-Za-z0-9._-]` only (others → `_`), at most `max` bytes.
pub fn bsd_word(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// An RFC 3164 HOSTNAME: [`bsd_word`], starting and ending with a letter or digit
/// (receivers such as rsyslog take a word ending otherwise for the TAG). RFC 3164 has no
/// NILVALUE, so nothing left becomes `localhost`, as a receiver would guess anyway.
pub fn bsd_hostname(s: &str) -> String {
    let word = bsd_word(s, 255);
    let trimmed = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "localhost".into()
    } else {
        trimmed.to_owned()
    }
}

/// RFC 5424 §6.3.3 PARAM-VALUE escaping; control characters become U+FFFD.
pub fn sd_param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if is_line_breaking(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Append `body` to `message` (which holds `header_len` bytes of header), cutting the body so
/// the whole stays within `max`. Returns whether it was cut.
fn fit(message: &mut Vec<u8>, header_len: usize, body: &[u8], max: Option<usize>) -> bool {
    let Some(max) = max else {
        message.extend_from_slice(body);
        return false;
    };
    if header_len + body.len() <= max {
        message.extend_from_slice(body);
        return false;
    }
    let room = max.saturating_sub(header_len + TRUNCATION_MARKER.len());
    let mut cut = room.min(body.len());
    // Payloads are UTF-8 (JSON, CEF and LEEF are all built from Rust strings).
    while cut > 0 && !is_char_boundary(body, cut) {
        cut -= 1;
    }
    // Never end inside an escape sequence: an odd run of trailing backslashes would escape
    // the marker's first character.
    let trailing = body[..cut]
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count();
    if trailing % 2 == 1 {
        cut -= 1;
    }
    message.extend_from_slice(&body[..cut]);
    message.extend_from_slice(TRUNCATION_MARKER.as_bytes());
    // A header longer than the limit itself (a small limit, long structured-data values):
    // cut it too, at a character boundary (structured data may hold any UTF-8).
    let mut end = max.min(message.len());
    while end > 0 && !is_char_boundary(message, end) {
        end -= 1;
    }
    message.truncate(end);
    true
}

fn is_char_boundary(b: &[u8], i: usize) -> bool {
    i >= b.len() || (b[i] as i8) >= -0x40
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> SyslogConfig {
        let toml = format!("address = \"tcp://127.0.0.1:514\"\n{extra}");
        let v: SyslogConfig = serde_json::from_value(toml_to_json(&toml)).unwrap();
        v
    }

    // The tests build configs from a small key = "value" subset of TOML.
    fn toml_to_json(s: &str) -> Value {
        let mut m = serde_json::Map::new();
        for line in s.lines().filter(|l| l.contains('=')) {
            let (k, v) = line.split_once('=').unwrap();
            let v = v.trim();
            let v = if let Some(q) = v.strip_prefix('"') {
                Value::String(q.trim_end_matches('"').to_owned())
            } else {
                Value::Number(v.parse::<u64>().unwrap().into())
            };
            m.insert(k.trim().to_owned(), v);
        }
        Value::Object(m)
    }

    fn doc() -> Value {
        serde_json::json!({
            "@timestamp": "2025-11-25T10:00:00.123Z",
            "event": {"id": "0123456789abcdef0123456789abcdef", "kind": "event",
                      "action": "user-login", "outcome": "failure", "category": ["authentication"]},
            "message": "jadmin failed to log in",
            "user": {"name": "jadmin"},
            "related": {"hosts": ["wiki.example.com"]},
        })
    }

    fn encode(c: &SyslogConfig, d: &Value) -> String {
        let e = Encoder::new(c, &c.endpoint().unwrap().transport);
        let mut out = Vec::new();
        e.encode(&serde_json::to_vec(d).unwrap(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_header_fields() {
        let c = cfg("framing = \"lf\"");
        let s = encode(&c, &doc());
        // authpriv (10) * 8 + warning (4: a failure) = 84.
        assert!(
            s.starts_with("<84>1 2025-11-25T10:00:00.123Z wiki.example.com confluence-audit - user-login [caf@32473 id=\"0123456789abcdef0123456789abcdef\" kind=\"event\" action=\"user-login\" outcome=\"failure\"] {"),
            "{s}"
        );
        assert!(s.ends_with("}\n"));
        assert_eq!(s.matches('\n').count(), 1);
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let c = cfg("framing = \"octet-counting\"");
        let mut d = doc();
        d["message"] = "ünïcödé 🎉".into();
        let s = encode(&c, &d);
        let (len, msg) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
    }

    #[test]
    fn hostile_header_text_stays_in_its_field() {
        let c = cfg("framing = \"lf\"");
        let mut d = doc();
        d["event"]["action"] = "x\n<13>1 2025-01-01T00:00:00Z evil app - - - injected".into();
        d["related"]["hosts"] = serde_json::json!(["host name\r\n]\"🎉"]);
        d["event"]["id"] = "a\"b\\c]d\ne".into();
        let s = encode(&c, &d);
        assert_eq!(s.matches('\n').count(), 1, "{s}");
        let parts: Vec<&str> = s.splitn(8, ' ').collect();
        assert_eq!(parts[2], "host_name__]\"_");
        assert_eq!(parts[3], "confluence-audit");
        assert_eq!(parts[5], "x_<13>1_2025-01-01T00:00:00Z_evi");
        assert!(s.contains("id=\"a\\\"b\\\\c\\]d\u{FFFD}e\""), "{s}");
    }

    #[test]
    fn severities() {
        let c = cfg("framing = \"lf\"\nfacility = \"local0\"\nseverity_alert = \"alert\"");
        let mut d = doc();
        d["event"]["kind"] = "alert".into();
        assert!(encode(&c, &d).starts_with("<129>1 "));
        d["event"]["kind"] = "event".into();
        d["event"]["outcome"] = "success".into();
        assert!(encode(&c, &d).starts_with("<133>1 ")); // notice
    }

    #[test]
    fn configured_hostname_wins_and_missing_host_is_nil() {
        let c = cfg("hostname = \"fixed.example.com\"");
        assert!(encode(&c, &doc()).contains(" fixed.example.com confluence-audit "));
        let c = cfg("");
        let mut d = doc();
        d.as_object_mut().unwrap().remove("related");
        d["service"] = serde_json::json!({"address": "https://[::1]:8090/wiki"});
        assert!(encode(&c, &d).contains("Z ::1 confluence-audit"));
        d.as_object_mut().unwrap().remove("service");
        assert!(encode(&c, &d).contains("Z - confluence-audit"));
    }

    #[test]
    fn rfc3164_header() {
        let c = cfg("format = \"rfc3164\"\nframing = \"lf\"\napp_name = \"conf[lu]ence:audit\"");
        let mut d = doc();
        d["@timestamp"] = "2025-11-05T09:08:07Z".into();
        let s = encode(&c, &d);
        assert!(
            s.starts_with("<84>Nov  5 09:08:07 wiki.example.com conf_lu_ence_audit: {"),
            "{s}"
        );
    }

    /// Found by `fuzz/fuzz_targets/syslog_encode.rs`: a header longer than a small limit
    /// (long structured-data values turned into U+FFFD) was cut inside a character.
    #[test]
    fn a_header_longer_than_the_limit_is_cut_at_a_character_boundary() {
        let c = cfg("framing = \"lf\"\nmax_message_bytes = 480");
        let mut d = doc();
        d["event"]["action"] = "\u{7f}".repeat(200).into();
        let s = encode(&c, &d); // panics on invalid UTF-8
        let msg = s.strip_suffix('\n').unwrap();
        assert!(msg.len() <= 480 && msg.len() >= 477, "{}", msg.len());
        assert!(msg.ends_with('\u{FFFD}'), "{msg:?}");
    }

    #[test]
    fn truncation_keeps_header_and_never_splits_utf8_or_escapes() {
        let c = cfg("framing = \"lf\"\nmax_message_bytes = 600");
        let mut d = doc();
        d["message"] = "é\\".repeat(2000).into();
        let s = encode(&c, &d);
        let msg = s.strip_suffix('\n').unwrap();
        assert!(msg.len() <= 600, "{}", msg.len());
        assert!(msg.ends_with(TRUNCATION_MARKER));
        assert!(msg.starts_with("<84>1 2025-11-25T10:00:00.123Z wiki.example.com"));
        let body = msg.strip_suffix(TRUNCATION_MARKER).unwrap();
        let trailing = body.bytes().rev().take_while(|b| *b == b'\\').count();
        assert_eq!(trailing % 2, 0);
        // Short enough: untouched.
        let c = cfg("framing = \"lf\"\nmax_message_bytes = 100000");
        assert!(!encode(&c, &d).contains(TRUNCATION_MARKER));
    }

    #[test]
    fn sanitizers() {
        assert_eq!(printable("", 5), "-");
        assert_eq!(printable("abcdefgh", 5), "abcde");
        assert_eq!(printable("a b\tc🎉", 48), "a_b_c_");
        assert_eq!(
            bsd_word("wiki.example.com:8090", 255),
            "wiki.example.com_8090"
        );
        assert_eq!(sd_param_value("a\u{2028}b"), "a\u{FFFD}b");
        assert_eq!(bsd_hostname(" spaces around "), "spaces_around");
        assert_eq!(bsd_hostname("🎉"), "localhost");
    }

    proptest::proptest! {
        /// An independent RFC 5424 parser (syslog_loose) reads back every header field and
        /// the SD parameters, whatever text the event carries.
        #[test]
        fn rfc5424_parses_back_with_an_independent_parser(
            action in "\\PC{0,40}|[\\\\\\]\" \n\r<>=|-]{0,20}",
            host in "\\PC{0,40}|[\\\\\\]\" \n\r<>=|-]{0,20}",
            id in "\\PC{0,40}|[\\\\\\]\" \n\r<>=|-]{0,20}",
        ) {
            let c = cfg("framing = \"lf\"");
            let mut d = doc();
            d["event"]["action"] = action.clone().into();
            d["event"]["id"] = id.clone().into();
            d["related"]["hosts"] = serde_json::json!([host.clone()]);
            let s = encode(&c, &d);
            let line = s.strip_suffix('\n').unwrap();
            proptest::prop_assert!(!line.contains('\n') && !line.contains('\r'));
            let m = syslog_loose::parse_message_with_year_exact(
                line, |_| 2025, syslog_loose::Variant::RFC5424,
            ).expect("parses as RFC 5424");
            proptest::prop_assert_eq!(m.protocol, syslog_loose::Protocol::RFC5424(1));
            let nil = |s: String| (s != "-").then_some(s);
            proptest::prop_assert_eq!(m.hostname.map(str::to_owned), nil(rfc5424_field(&host, 255)));
            proptest::prop_assert_eq!(m.appname, Some("confluence-audit"));
            proptest::prop_assert_eq!(m.msgid.map(str::to_owned), nil(rfc5424_field(&action, 32)));
            proptest::prop_assert_eq!(m.structured_data.len(), 1);
            let sd = &m.structured_data[0];
            proptest::prop_assert_eq!(sd.id, "caf@32473");
            let params: Vec<(String, String)> =
                sd.params().map(|(k, v)| (k.to_string(), v)).collect();
            let clean = |s: &str| -> String {
                s.chars().map(|c| if is_line_breaking(c) { '\u{FFFD}' } else { c }).collect()
            };
            if !id.is_empty() {
                proptest::prop_assert_eq!(&params[0], &("id".to_owned(), clean(&id)));
            }
            let back: Value = serde_json::from_str(m.msg).expect("payload is the JSON doc");
            proptest::prop_assert_eq!(back, d);
        }
    }

    #[test]
    fn not_json_is_an_error() {
        let c = cfg("");
        let e = Encoder::new(&c, &Transport::Tcp);
        assert!(e.encode(b"not json", &mut Vec::new()).is_err());
        assert!(e.encode(b"[1]", &mut Vec::new()).is_err());
    }
}
