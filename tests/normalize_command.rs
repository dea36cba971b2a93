//! `confluence-audit-forwarder normalize` as a user runs it: a process reading a pipe.
//! Documents come out while the input is still open (`tail -f … | normalize`), and memory
//! stays bounded whatever the input's size, measured from the child's `/proc` status.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::peak_rss_kib;

const BIN: &str = env!("CARGO_BIN_EXE_confluence-audit-forwarder");

/// Peak resident memory the command may reach on any input (the bound).
const PEAK_RSS_KIB: u64 = 32 * 1024;

/// The seven records of the DC audit log fixture.
fn audit_log_lines() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/api/dc-audit-file.audit.log");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn normalize(extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["normalize", "--api", "file"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start normalize")
}

/// Count the child's output lines on a thread (so that it never blocks on a full pipe).
fn count_lines(child: &mut Child) -> std::thread::JoinHandle<(u64, u64)> {
    let mut out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let (mut lines, mut bytes) = (0u64, 0u64);
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = out.read(&mut buf).expect("read stdout");
            if n == 0 {
                return (lines, bytes);
            }
            bytes += n as u64;
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    })
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn the_first_document_arrives_while_the_input_is_still_open() {
    // On the reading thread alone, and on workers (from the second line on).
    for threads in ["1", "3"] {
        first_documents_before_the_input_ends(&["--threads", threads]);
    }
}

fn first_documents_before_the_input_ends(args: &[&str]) {
    let lines = audit_log_lines();
    let mut child = normalize(args);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("read stdout")).is_err() {
                return;
            }
        }
    });
    // One line, and the pipe stays open: the document must come before any more input.
    // (The wait is a guard against hanging forever, not a measurement.)
    let wait = Duration::from_secs(120);
    writeln!(stdin, "{}", lines[0]).unwrap();
    stdin.flush().unwrap();
    let first: Value = serde_json::from_str(&rx.recv_timeout(wait).expect("first document"))
        .expect("a JSON document");
    assert_eq!(first["@timestamp"], "2021-11-22T23:44:13.873Z");
    writeln!(stdin, "{}", lines[3]).unwrap();
    stdin.flush().unwrap();
    let second: Value = serde_json::from_str(&rx.recv_timeout(wait).expect("second document"))
        .expect("a JSON document");
    assert_eq!(second["event"]["action"], "user-created");
    writeln!(stdin, "{}", lines[4]).unwrap();
    stdin.flush().unwrap();
    let third: Value = serde_json::from_str(&rx.recv_timeout(wait).expect("third document"))
        .expect("a JSON document");
    assert_eq!(third["@timestamp"], "2021-11-22T23:50:13.966Z");
    drop(stdin);
    assert!(rx.recv_timeout(wait).is_err(), "nothing more after the end");
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", stderr_of(&mut child));
}

/// Write `records` lines of the fixture (distinct by time) to `stdin`, all but the last.
fn write_records(stdin: &mut ChildStdin, records: u64) {
    let lines = audit_log_lines();
    let mut chunk = Vec::with_capacity(1 << 20);
    for i in 0..records - 1 {
        let line = &lines[i as usize % lines.len()];
        // A different second for each record: no two are twins.
        let second = format!("\"epochSecond\":{}", 1_600_000_000 + i);
        let at = line.find("\"epochSecond\":").unwrap();
        let end = at + line[at..].find(',').unwrap();
        chunk.extend_from_slice(&line.as_bytes()[..at]);
        chunk.extend_from_slice(second.as_bytes());
        chunk.extend_from_slice(&line.as_bytes()[end..]);
        chunk.push(b'\n');
        if chunk.len() >= 1 << 20 {
            stdin.write_all(&chunk).unwrap();
            chunk.clear();
        }
    }
    stdin.write_all(&chunk).unwrap();
}

#[test]
fn a_200_mb_input_runs_in_bounded_memory() {
    let line_bytes = audit_log_lines().iter().map(|l| l.len() + 1).sum::<usize>() / 7;
    let records = (200_000_000 / line_bytes) as u64;
    let mut child = normalize(&[]);
    let counter = count_lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    write_records(&mut stdin, records);
    // The child cannot have finished: it is waiting for the last record.
    let peak = peak_rss_kib(child.id());
    writeln!(stdin, "{}", audit_log_lines()[0]).unwrap();
    drop(stdin);
    let (documents, bytes) = counter.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", stderr_of(&mut child));
    eprintln!("{records} records ({line_bytes} B each) in, {bytes} bytes out: peak RSS {peak} KiB");
    assert_eq!(documents, records);
    assert!(bytes > 200_000_000, "{bytes} bytes out");
    assert!(
        peak <= PEAK_RSS_KIB,
        "peak RSS {peak} KiB over {PEAK_RSS_KIB} KiB for {records} records"
    );
}

#[test]
fn a_line_over_the_limit_is_skipped_unread_and_named() {
    let lines = audit_log_lines();
    let mut child = normalize(&["--max-record-bytes", "1048576"]);
    let counter = count_lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", lines[0]).unwrap();
    // 100 MB in one line, then a good record after it.
    let mut long = Vec::from(&b"{\"pad\":\""[..]);
    long.resize(1 << 20, b'x');
    for _ in 0..100 {
        stdin.write_all(&long).unwrap();
        long.truncate(0);
        long.resize(1 << 20, b'x');
    }
    stdin.write_all(b"\"}\n").unwrap();
    let peak = peak_rss_kib(child.id());
    writeln!(stdin, "{}", lines[1]).unwrap();
    drop(stdin);
    let (documents, _) = counter.join().unwrap();
    let status = child.wait().unwrap();
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(documents, 2);
    assert!(
        stderr.contains("error: record 2 (line 2) of the input: 104857602 bytes, longer than the 1048576-byte record limit: skipped unread"),
        "{stderr}"
    );
    eprintln!("a 100 MB line skipped: peak RSS {peak} KiB");
    assert!(peak <= PEAK_RSS_KIB, "peak RSS {peak} KiB");
}
