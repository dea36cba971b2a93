//! Tailing throughput: DC audit log files → daemon (durable queue) → file sink, the daemon a
//! separate process measured from the outside.
//!
//! `cargo bench --bench file_tail` (or `-- --lines 1000000`) writes N audit log lines (the
//! fixture lines of `../shared/fixtures/api/*.audit.log`, each given its own time and author
//! so that every line is a distinct event) into files rotated at 20 MB, runs
//! `once` with an `api = "file"` source and a file sink, and prints lines/s and MB/s of
//! audit log read (wall time of the whole process, start to drained). It then checks that the
//! sink holds every line exactly once (by `event.id`), so a fast wrong answer cannot pass for
//! a fast one.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_confluence-audit-forwarder");
const ROTATE_BYTES: u64 = 20 << 20;

/// The fixture lines, parsed (their keys stay sorted: `serde_json::Map` is a `BTreeMap`).
fn fixture_lines() -> Vec<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/api");
    let mut out = Vec::new();
    for name in ["dc-audit-file.audit.log", "dc-audit-file-more.audit.log"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("fixture audit log");
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("fixture line")),
        );
    }
    out
}

/// Write `lines` audit log lines into `dir`; returns the bytes written.
fn write_logs(dir: &Path, lines: usize) -> u64 {
    let fixtures = fixture_lines();
    let (mut seq, mut size, mut total) = (0u32, 0u64, 0u64);
    let open = |seq: u32| {
        let path = dir.join(format!("20240101-{seq:05}.audit.log"));
        BufWriter::new(std::fs::File::create(path).expect("create audit log"))
    };
    let mut out = open(seq);
    for i in 0..lines {
        let mut line = fixtures[i % fixtures.len()].clone();
        let ms = 1_700_000_000_000i64 + i as i64;
        line["timestamp"] =
            serde_json::json!({"epochSecond": ms / 1000, "nano": (ms % 1000) * 1_000_000});
        line["author"]["id"] = serde_json::json!(format!("bench-{i}"));
        let mut bytes = serde_json::to_vec(&line).expect("serialize");
        bytes.push(b'\n');
        out.write_all(&bytes).expect("write");
        size += bytes.len() as u64;
        total += bytes.len() as u64;
        if size > ROTATE_BYTES {
            out.flush().expect("flush");
            seq += 1;
            size = 0;
            out = open(seq);
        }
    }
    out.flush().expect("flush");
    total
}

fn main() {
    let mut lines = 200_000usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--lines") {
        lines = args[i + 1].parse().expect("--lines N");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("audit");
    std::fs::create_dir_all(&logs).unwrap();
    let bytes = write_logs(&logs, lines);
    let out = dir.path().join("events.ndjson");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nname = \"node1\"\napi = \"file\"\npaths = [\"{}/*.audit.log\"]\nstart_at = \"beginning\"\n\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n[server]\nlisten = \"\"\n",
            logs.display(),
            dir.path().join("state").display(),
            out.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let status = Command::new(BIN)
        .args(["once", "--config"])
        .arg(&config)
        .args(["--drain-timeout", "600s", "--timeout", "3600s"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .expect("run once");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "once failed");
    let mut ids = HashSet::new();
    let reader = BufReader::new(std::fs::File::open(&out).expect("sink output"));
    for line in reader.lines() {
        let doc: serde_json::Value = serde_json::from_str(&line.unwrap()).expect("document");
        let id = doc["event"]["id"].as_str().expect("event.id").to_owned();
        assert!(ids.insert(id), "an event queued twice");
    }
    assert_eq!(ids.len(), lines, "every line once");
    println!(
        "file tail: {lines} lines, {:.1} MB of audit log in {wall:.2} s: {:.0} lines/s, {:.1} MB/s into the file sink",
        bytes as f64 / 1e6,
        lines as f64 / wall,
        bytes as f64 / 1e6 / wall
    );
}
