//! The file source end to end: a writer that behaves like two Confluence nodes (lines
//! appended in pieces split at random points, rotation by size and by date, the oldest files
//! deleted, one file truncated and one replaced under its name, a broken line now and then)
//! while the real daemon is SIGKILLed again and again. The file sink must hold every written
//! line exactly once, in each node's order.

mod common;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{DaemonProcess, Scratch, run_once, wait_until};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A file this big is rotated (the real limit is 100 MB).
const ROTATE_BYTES: u64 = 12 << 10;
/// A node keeps this many files (the real retention is 100).
const KEEP_FILES: usize = 4;

/// One audit log line of the DC file shape, keys sorted, naming `marker` as its author id.
fn audit_line(marker: &str, ts_ms: i64) -> String {
    format!(
        concat!(
            r#"{{"affectedObjects":[],"auditType":{{"action":"Global settings changed","#,
            r#""actionI18nKey":"audit.logging.summary.global.settings.edited","area":"GLOBAL_CONFIG_AND_ADMINISTRATION","#,
            r#""category":"Global Administration","categoryI18nKey":"audit.logging.category.admin","level":"BASE"}},"#,
            r#""author":{{"id":"{}","name":"test.user","type":"user"}},"changedValues":[],"extraAttributes":[],"#,
            r#""method":"Browser","source":"81.2.69.143","system":"http://confluence.internal:8090","#,
            r#""timestamp":{{"epochSecond":{},"nano":{}}},"version":"1.0"}}"#
        ),
        marker,
        ts_ms.div_euclid(1000),
        ts_ms.rem_euclid(1000) * 1_000_000
    )
}

/// The marker of a delivered document: the author id, or for a broken line the marker in
/// its raw text.
fn marker_of(doc: &serde_json::Value) -> Option<String> {
    if doc["event"]["kind"] == "pipeline_error" {
        let raw = doc["event"]["original"].as_str()?;
        return raw.strip_prefix("not json ").map(str::to_owned);
    }
    doc["user"]["id"].as_str().map(str::to_owned)
}

/// Every marker in the file sink's output, in order (a half-written last line is left out).
fn delivered(out: &Path) -> Vec<String> {
    let text = std::fs::read(out).unwrap_or_default();
    let complete = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => &text[..=i],
        None => &[][..],
    };
    complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let doc: serde_json::Value = serde_json::from_slice(l).expect("an NDJSON document");
            marker_of(&doc).unwrap_or_else(|| panic!("a document without a marker: {doc}"))
        })
        .collect()
}

/// One Confluence node writing its audit log directory.
struct Node {
    id: usize,
    dir: PathBuf,
    day: u32,
    seq: u32,
    current: PathBuf,
    file: File,
    /// Files written and not yet deleted, oldest first.
    files: VecDeque<PathBuf>,
    /// Every line's marker, in writing order.
    written: Vec<String>,
    ts_ms: i64,
}

impl Node {
    fn new(root: &Path, id: usize) -> Node {
        let dir = root.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let current = dir.join(Self::name(1, 0));
        let file = Self::open(&current);
        Node {
            id,
            dir,
            day: 1,
            seq: 0,
            files: VecDeque::from([current.clone()]),
            current,
            file,
            written: Vec::new(),
            ts_ms: 1_700_000_000_000 + id as i64,
        }
    }

    fn name(day: u32, seq: u32) -> String {
        format!("2024{:04}-{seq:05}.audit.log", 100 + day)
    }

    fn open(path: &Path) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
    }

    /// Append one line in one to three pieces split at random points, with pauses between
    /// them so that the daemon may read half a line.
    fn append(&mut self, rng: &mut StdRng, broken: bool) {
        let marker = format!("n{}-{:06}", self.id, self.written.len());
        self.ts_ms += rng.random_range(0..3);
        let mut line = if broken {
            format!("not json {marker}")
        } else {
            audit_line(&marker, self.ts_ms)
        };
        line.push('\n');
        let bytes = line.as_bytes();
        let mut cuts: Vec<usize> = (0..rng.random_range(0..3))
            .map(|_| rng.random_range(1..bytes.len()))
            .collect();
        cuts.sort_unstable();
        let mut at = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            self.file.write_all(&bytes[at..cut.max(at)]).unwrap();
            self.file.flush().unwrap();
            at = cut.max(at);
            if rng.random_bool(0.02) {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        self.written.push(marker);
    }

    /// Start a new file: the next sequence number (size), or the next day (date).
    fn rotate(&mut self, by_date: bool) {
        if by_date {
            self.day += 1;
            self.seq = 0;
        } else {
            self.seq += 1;
        }
        self.current = self.dir.join(Self::name(self.day, self.seq));
        self.file = Self::open(&self.current);
        self.files.push_back(self.current.clone());
    }

    fn size(&self) -> u64 {
        std::fs::metadata(&self.current).unwrap().len()
    }
}

/// Wait until the sink holds every line `nodes` wrote so far (a daemon must be running).
fn caught_up(out: &Path, nodes: &[Node], scratch: &Scratch) {
    let want: usize = nodes.iter().map(|n| n.written.len()).sum();
    wait_until(Duration::from_secs(120), "the sink to catch up", || {
        delivered(out).len() >= want
    });
    let got = delivered(out);
    assert_eq!(
        got.len(),
        want,
        "more documents than lines written (a line queued twice?)\n{}",
        scratch.logs()
    );
}

#[test]
fn every_line_exactly_once_in_node_order_through_rotation_truncation_replacement_and_sigkills() {
    let scratch = Scratch::new();
    let logs = scratch.path("audit");
    let out = scratch.path("events.ndjson");
    let config = scratch.config(&format!(
        "[[source]]\nname = \"nodes\"\napi = \"file\"\npaths = [\"{0}/node0/*.audit.log\", \"{0}/node1/*.audit.log\"]\nstart_at = \"beginning\"\npoll_interval = \"50ms\"\nslice_max_records = 40\n\n[state]\ndir = \"{1}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{2}\"\n\n[server]\nlisten = \"\"\n",
        logs.display(),
        scratch.path("state").display(),
        out.display()
    ));
    let daemon_log = scratch.path("daemon.log");
    let mut rng = StdRng::seed_from_u64(15);
    let mut nodes = vec![Node::new(&logs, 0), Node::new(&logs, 1)];
    let mut daemon = DaemonProcess::start(&config, &daemon_log);
    let (mut kills, mut truncated, mut replaced) = (0, false, false);
    for step in 0..3_000usize {
        let node = rng.random_range(0..nodes.len());
        let broken = node == 0 && step % 397 == 0;
        nodes[node].append(&mut rng, broken);
        let n = &mut nodes[node];
        if n.size() > ROTATE_BYTES {
            n.rotate(false);
        } else if n.written.len() % 500 == 499 {
            n.rotate(true);
        }
        if step % 250 == 249 {
            // Killed at a random moment of whatever it is doing.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
            daemon.kill9();
            kills += 1;
            daemon = DaemonProcess::start(&config, &daemon_log);
        }
        if nodes.iter().any(|n| n.files.len() > KEEP_FILES) {
            // Retention deletes what Confluence wrote long ago: the daemon read it by then.
            caught_up(&out, &nodes, &scratch);
            for n in nodes.iter_mut() {
                while n.files.len() > KEEP_FILES {
                    std::fs::remove_file(n.files.pop_front().unwrap()).unwrap();
                }
            }
        }
        if step == 1_000 && !truncated {
            caught_up(&out, &nodes, &scratch);
            nodes[0].file.set_len(0).unwrap();
            truncated = true;
        }
        if step == 1_700 && !replaced {
            caught_up(&out, &nodes, &scratch);
            let n = &mut nodes[1];
            let tmp = n.dir.join("replacement.tmp");
            std::fs::write(&tmp, b"").unwrap();
            std::fs::rename(&tmp, &n.current).unwrap();
            n.file = Node::open(&n.current);
            replaced = true;
        }
    }
    caught_up(&out, &nodes, &scratch);
    daemon.kill9();
    // One more start after the last kill: it must find nothing left to queue.
    run_once(&config);
    let got = delivered(&out);
    for n in &nodes {
        let prefix = format!("n{}-", n.id);
        let mine: Vec<&String> = got.iter().filter(|m| m.starts_with(&prefix)).collect();
        assert_eq!(
            mine.len(),
            n.written.len(),
            "node {}: lines delivered",
            n.id
        );
        for (i, (got, want)) in mine.iter().zip(&n.written).enumerate() {
            assert_eq!(
                *got, want,
                "node {}: line {i} out of order or missing",
                n.id
            );
        }
    }
    assert_eq!(got.len(), 3_000, "every line once, nothing else");
    assert!(kills >= 10, "the daemon was killed {kills} times");
    let log = std::fs::read_to_string(&daemon_log).unwrap();
    assert!(
        log.contains("truncated: read again from its start")
            || log.contains("its first bytes changed"),
        "the truncation was noticed"
    );
    assert!(
        log.contains("replaced under the same name"),
        "the replacement was noticed"
    );
    assert!(
        log.contains("gone (retention"),
        "deleted files were forgotten"
    );
}

#[test]
fn a_full_sink_queue_pauses_reading_the_files() {
    let scratch = Scratch::new();
    let logs = scratch.path("audit");
    std::fs::create_dir_all(&logs).unwrap();
    let lines: String = (0..1_000)
        .map(|i| audit_line(&format!("n0-{i:06}"), 1_700_000_000_000 + i) + "\n")
        .collect();
    std::fs::write(logs.join("20240101-00000.audit.log"), lines).unwrap();
    // A syslog receiver that is not there: its queue only grows.
    let port = common::free_port();
    let config = scratch.config(&format!(
        "[[source]]\nname = \"nodes\"\napi = \"file\"\npaths = [\"{}/*.audit.log\"]\nstart_at = \"beginning\"\npoll_interval = \"50ms\"\nslice_max_records = 10\n\n[state]\ndir = \"{}\"\nmax_queue_bytes = 20000\n\n[[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:{port}\"\npayload = \"json\"\n\n[server]\nlisten = \"\"\n",
        logs.display(),
        scratch.path("state").display(),
    ));
    let log = scratch.path("daemon.log");
    let daemon = DaemonProcess::start_with(&config, &log, &["--drain-timeout", "1s"]);
    wait_until(Duration::from_secs(60), "reading to pause", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("a sink queue is full")
    });
    // Stopped, not killed: what it queued is made durable on the way out.
    daemon.terminate();
    let store = confluence_audit_forwarder::state::Store::open(
        &scratch.path("state"),
        &["siem".to_owned()],
    )
    .unwrap();
    let queued = store.queue_stats("siem").unwrap();
    assert!(
        queued.bytes > 20_000 && queued.events < 60,
        "paused one slice past the limit, not after reading the file: {queued:?}"
    );
}
