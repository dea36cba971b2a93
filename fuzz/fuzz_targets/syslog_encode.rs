//! Any bytes as a queued document, through every syslog format × payload × framing: encoding
//! returns a message or an error, never panics, and a message is always one message: framed
//! exactly (the octet count matches, or one LF at the very end), valid UTF-8, without a
//! character that splits a line (tabs only as LEEF's delimiter), within the size limit, and
//! with the header its format promises.
#![no_main]

use std::sync::OnceLock;

use confluence_audit_forwarder::sink::syslog::SyslogConfig;
use confluence_audit_forwarder::sink::syslog::config::{Endpoint, Transport};
use confluence_audit_forwarder::sink::syslog::encoder::{Encoder, is_line_breaking};
use libfuzzer_sys::fuzz_target;

struct Case {
    encoder: Encoder,
    transport: Transport,
    format: &'static str,
    payload: &'static str,
    framing: &'static str,
    limit: Option<usize>,
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let mut out = Vec::new();
        for (address, framing) in [
            ("udp://127.0.0.1:514", "none"),
            ("tcp://127.0.0.1:514", "lf"),
            ("tls://127.0.0.1:6514", "octet-counting"),
        ] {
            for format in ["rfc5424", "rfc3164"] {
                for payload in ["json", "cef", "leef"] {
                    // A small limit on UDP makes truncation happen on every input.
                    for limit in [None, Some(480usize)] {
                        let mut v = serde_json::json!({
                            "address": address,
                            "format": format,
                            "payload": payload,
                        });
                        if framing != "none" {
                            v["framing"] = framing.into();
                        }
                        if let Some(l) = limit {
                            v["max_message_bytes"] = l.into();
                        }
                        let cfg: SyslogConfig =
                            serde_json::from_value(v).expect("a valid sink config");
                        let transport = Endpoint::parse(address).unwrap().transport;
                        out.push(Case {
                            encoder: Encoder::new(&cfg, &transport),
                            limit: cfg.max_message_bytes(&transport),
                            transport,
                            format,
                            payload,
                            framing,
                        });
                    }
                }
            }
        }
        out
    })
}

fuzz_target!(|doc: &[u8]| {
    for case in cases() {
        let mut out = Vec::new();
        let Ok(truncated) = case.encoder.encode(doc, &mut out) else {
            assert!(out.is_empty(), "nothing is written for a refused document");
            continue;
        };
        let message: &[u8] = match case.framing {
            "octet-counting" => {
                let sp = out.iter().position(|b| *b == b' ').expect("LEN SP MSG");
                let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
                assert_eq!(len, out.len() - sp - 1, "the octet count is exact");
                &out[sp + 1..]
            }
            "lf" => {
                assert_eq!(out.last(), Some(&b'\n'));
                &out[..out.len() - 1]
            }
            _ => {
                assert_eq!(case.transport, Transport::Udp);
                &out
            }
        };
        if let Some(limit) = case.limit {
            assert!(message.len() <= limit, "{} > {limit}", message.len());
        }
        let text = std::str::from_utf8(message).expect("a message is UTF-8");
        let leef = case.payload == "leef";
        assert!(
            !text
                .chars()
                .any(|c| is_line_breaking(c) && !(leef && c == '\t')),
            "a character that breaks the line in {}/{}: {text:?}",
            case.format,
            case.payload
        );
        assert!(text.starts_with('<'));
        let after_pri = &text[text.find('>').expect("<PRI>") + 1..];
        if case.format == "rfc5424" {
            assert!(after_pri.starts_with("1 "), "{text:?}");
        }
        if !truncated {
            match case.payload {
                "cef" => assert!(text.contains("CEF:0|"), "{text:?}"),
                "leef" => assert!(text.contains("LEEF:2.0|"), "{text:?}"),
                _ => {}
            }
        }
    }
});
