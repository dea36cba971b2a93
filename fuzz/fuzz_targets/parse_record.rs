//! Any bytes, as any of the four record shapes: parsing and normalizing must return a
//! result or an error naming the field, never panic; and what it writes must be JSON.
#![no_main]

use confluence_audit_forwarder::normalize::{self, Api, NormalizeOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = NormalizeOptions::default();
    for api in [Api::Legacy, Api::Cloud, Api::Auditing, Api::File] {
        if let Ok(record) = normalize::parse_record(api, text) {
            let _ = record.timestamp_ms();
            let hash = record.content_hash();
            let mut out = Vec::new();
            if normalize::write_ecs(&record, 0, "2026-01-01T00:00:00.000Z", &opts, &mut out).is_ok() {
                let doc: serde_json::Value =
                    serde_json::from_slice(&out).expect("write_ecs writes JSON");
                assert_eq!(
                    doc["event"]["id"].as_str(),
                    Some(normalize::event_id(&hash, 0).as_str())
                );
            }
        }
    }
});
