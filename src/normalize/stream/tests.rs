//! The stream on in-memory input: every input form, read in chunks small enough that
//! records and pages straddle every read boundary.

use super::*;
use crate::normalize::parse_record;
use serde_json::Value;

const CREATED: &str = "2026-11-25T00:00:00.000Z";

/// A DC audit file record; `n` is the last byte of its source address.
fn file_record(n: u64) -> String {
    format!(
        r#"{{"affectedObjects":[],"auditType":{{"action":"Space created","actionI18nKey":"audit.logging.summary.space.created","area":"AUDIT_LOG","category":"Auditing","categoryI18nKey":"c","level":"BASE"}},"author":{{"id":"1","name":"test.user","type":"user"}},"changedValues":[],"extraAttributes":[],"method":"Browser","source":"10.0.0.{n}","system":"http://confluence.internal:8090","timestamp":{{"epochSecond":1637624653,"nano":873000000}},"version":"1.0"}}"#
    )
}

#[derive(Debug, PartialEq)]
struct Ran {
    docs: Vec<Value>,
    errors: Vec<String>,
    summary: Summary,
}

fn run_once(api: Api, input: &[u8], limits: &StreamLimits) -> Result<Ran, StreamError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let summary = run(
        api,
        &NormalizeOptions::default(),
        limits,
        CREATED,
        input,
        &mut out,
        &mut |e| errors.push(e.to_string()),
    )?;
    let docs = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("each output line is a JSON document"))
        .collect();
    Ok(Ran {
        docs,
        errors,
        summary,
    })
}

/// Run the stream on one thread, then on worker threads (with an input that never blocks,
/// and with one that may block before every read): all three must give the same documents,
/// errors and counts, or end with the same error.
fn run_with(api: Api, input: &[u8], limits: &StreamLimits) -> Result<Ran, StreamError> {
    let serial = run_once(api, input, limits);
    for (workers, input_ready) in [(3, Some(ready as fn() -> bool)), (2, None)] {
        let parallel = StreamLimits {
            workers,
            input_ready,
            ..limits.clone()
        };
        match (&serial, run_once(api, input, &parallel)) {
            (Ok(one), Ok(more)) => {
                assert_eq!(one.summary, more.summary, "{workers} workers");
                assert_eq!(one.errors, more.errors, "{workers} workers");
                assert!(one.docs == more.docs, "{workers} workers: other documents");
            }
            (Err(one), Err(more)) => assert_eq!(one.to_string(), more.to_string()),
            (one, more) => panic!("one thread: {one:?}, {workers} workers: {more:?}"),
        }
    }
    serial
}

fn ready() -> bool {
    true
}

/// Chunks of 7 bytes: every record crosses read boundaries.
fn small_chunks() -> StreamLimits {
    StreamLimits {
        max_record_bytes: 4096,
        read_chunk: 7,
        ..StreamLimits::default()
    }
}

/// The last byte of each document's `source.ip`: which record it came from.
fn sources(docs: &[Value]) -> Vec<&str> {
    docs.iter()
        .map(|d| {
            d["source"]["ip"]
                .as_str()
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
        })
        .collect()
}

#[test]
fn ndjson_with_blank_lines_crlf_and_no_final_newline() {
    let input = format!(
        "\n{}\r\n   \n{}\n{}",
        file_record(1),
        file_record(2),
        file_record(3)
    );
    for limits in [small_chunks(), StreamLimits::default()] {
        let ran = run_with(Api::File, input.as_bytes(), &limits).unwrap();
        assert_eq!(sources(&ran.docs), ["1", "2", "3"]);
        assert_eq!(
            ran.summary,
            Summary {
                records: 3,
                documents: 3,
                failures: 0
            }
        );
        assert!(ran.errors.is_empty(), "{:?}", ran.errors);
    }
}

#[test]
fn a_bad_line_is_an_error_naming_it_and_the_next_line_is_read() {
    let input = format!(
        "{}\n{{\"auditType\": 5\n\u{ff}\n{}\n",
        file_record(1),
        file_record(2),
    );
    let mut bytes = input.into_bytes();
    // Not UTF-8 on the third line.
    let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
    bytes[at] = 0xff;
    let ran = run_with(Api::File, &bytes, &small_chunks()).unwrap();
    assert_eq!(sources(&ran.docs), ["1", "2"]);
    assert_eq!(ran.summary.failures, 2);
    assert_eq!(ran.summary.records, 4);
    assert!(
        ran.errors[0].starts_with("record 2 (line 2) of the input: "),
        "{:?}",
        ran.errors
    );
    assert!(
        ran.errors[1].starts_with("record 3 (line 3) of the input: not UTF-8"),
        "{:?}",
        ran.errors
    );
}

#[test]
fn a_line_over_the_limit_is_skipped_and_reported_with_its_length() {
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000));
    let input = format!("{}\n{long}\n{}\n", file_record(1), file_record(2));
    let ran = run_with(Api::File, input.as_bytes(), &small_chunks()).unwrap();
    assert_eq!(sources(&ran.docs), ["1", "2"]);
    assert_eq!(
        ran.errors,
        [format!(
            "record 2 (line 2) of the input: {} bytes, longer than the 4096-byte record limit: skipped unread",
            long.len()
        )]
    );
}

#[test]
fn a_page_on_one_line_or_pretty_printed_gives_its_records() {
    let elements = [file_record(1), file_record(2)];
    let compact = format!(
        "{{\"pagingInfo\":{{\"x\":[1,{{}}]}},\"entities\":[{}]}}\n",
        elements.join(",")
    );
    let pretty = format!(
        "{{\n  \"entities\": [\n    {},\n    {}\n  ],\n  \"pagingInfo\": {{\"limit\": 2}}\n}}\n",
        elements[0], elements[1]
    );
    for input in [compact.clone(), pretty.clone(), format!("{pretty}{pretty}")] {
        let ran = run_with(Api::File, input.as_bytes(), &small_chunks()).unwrap();
        let n = ran.docs.len();
        assert!(n == 2 || n == 4, "{input}");
        assert_eq!(sources(&ran.docs[..2]), ["1", "2"]);
        assert_eq!(ran.summary.records, n as u64);
        assert!(ran.errors.is_empty(), "{:?}", ran.errors);
    }
    // Legacy and Cloud pages hold `results`.
    let raw = r#"{"author":{"type":"user","displayName":"A","accountId":"a"},"remoteAddress":"10.0.0.1","creationDate":1643097111962,"summary":"Space logo uploaded","category":"Spaces","sysAdmin":false,"superAdmin":false,"affectedObject":{"name":"S","objectType":"Space"},"changedValues":[],"associatedObjects":[]}"#;
    let page = format!("{{\"results\":[{raw},{raw}],\"start\":0,\"limit\":2,\"size\":2}}");
    let ran = run_with(Api::Cloud, page.as_bytes(), &small_chunks()).unwrap();
    assert_eq!(ran.docs.len(), 2);
    assert_ne!(
        ran.docs[0]["event"]["id"], ran.docs[1]["event"]["id"],
        "twins get distinct ids"
    );
}

#[test]
fn a_page_record_over_the_limit_ends_the_stream_naming_it() {
    let pretty = format!(
        "{{\n\"entities\": [\n{},\n{{\"pad\": \"{}\"}}\n]}}\n",
        file_record(1),
        "x".repeat(10_000)
    );
    let err = run_with(Api::File, pretty.as_bytes(), &small_chunks()).expect_err("too long");
    assert_eq!(
        err.to_string(),
        "record 2 of the input, in the page that starts on line 1, is longer than the 4096-byte record limit: the rest of the page was not read"
    );
}

#[test]
fn a_multi_line_value_that_is_not_a_page_is_a_clear_error() {
    let err = run_with(Api::File, b"{\n\"a\": 1\n}\n", &small_chunks()).expect_err("not a page");
    assert!(
        err.to_string().contains("records must be one per line"),
        "{err}"
    );
    // In NDJSON, a truncated line is that record's error only.
    let input = format!(
        "{}\n{{\"auditType\":{{\n{}\n",
        file_record(1),
        file_record(2)
    );
    let ran = run_with(Api::File, input.as_bytes(), &small_chunks()).unwrap();
    assert_eq!(ran.docs.len(), 2);
    assert_eq!(ran.summary.failures, 1); // Nor is a truncated first line the start of a page.
    let input = format!("{{\"auditType\":{{\n{}\n", file_record(2));
    let ran = run_with(Api::File, input.as_bytes(), &small_chunks()).unwrap();
    assert_eq!(sources(&ran.docs), ["2"]);
    assert_eq!(ran.summary.failures, 1);
}

#[test]
fn identical_records_get_count_aware_ids_as_in_the_batch_api() {
    let r = file_record(1);
    let input = format!("{r}\n{r}\n{r}\n");
    let ran = run_with(Api::File, input.as_bytes(), &small_chunks()).unwrap();
    let record = parse_record(Api::File, &r).unwrap();
    let ids: Vec<String> = (0..3)
        .map(|n| super::super::event_id(&record.content_hash(), n))
        .collect();
    let got: Vec<&str> = ran
        .docs
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
}

/// A writer that refuses everything, like a closed pipe.
struct Closed;
impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_output_ends_the_stream_as_a_write_error() {
    let line = file_record(1);
    let input = format!("{line}\n").repeat(2000);
    for workers in [1, 2] {
        let limits = StreamLimits {
            workers,
            input_ready: Some(ready),
            ..small_chunks()
        };
        let err = run(
            Api::File,
            &NormalizeOptions::default(),
            &limits,
            CREATED,
            input.as_bytes(),
            Closed,
            &mut |_| {},
        )
        .expect_err("write error");
        assert!(matches!(err, StreamError::Write(_)), "{err}");
    }
}

/// Lines `0..n`, every `bad`-th one not a record: enough for many worker batches.
fn many_lines(n: u64, bad: u64) -> String {
    (0..n)
        .map(|i| {
            if i % bad == bad - 1 {
                format!("{{\"auditType\": {i}}}\n")
            } else {
                format!("{}\n", file_record(i % 250))
            }
        })
        .collect()
}

#[test]
fn on_worker_threads_records_keep_their_order_numbers_and_twin_ids() {
    // 250 distinct records, repeated: every record has twins in other batches.
    let input = many_lines(3000, 97);
    let limits = StreamLimits {
        max_record_bytes: 4096,
        read_chunk: 4000,
        ..StreamLimits::default()
    };
    let ran = run_with(Api::File, input.as_bytes(), &limits).unwrap();
    assert_eq!(ran.summary.records, 3000);
    assert_eq!(ran.summary.failures, 30);
    assert_eq!(ran.errors.len(), 30);
    assert!(
        ran.errors[1].starts_with("record 194 (line 194) of the input: "),
        "{:?}",
        ran.errors[1]
    );
    let five = file_record(5);
    let record = parse_record(Api::File, &five).unwrap();
    let ids: Vec<&str> = ran
        .docs
        .iter()
        .filter(|d| d["source"]["ip"] == "10.0.0.5")
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..ids.len() as u32)
        .map(|n| super::super::event_id(&record.content_hash(), n))
        .collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(ids, expected);
}
