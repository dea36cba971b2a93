//! Shared end-to-end test support: run the real daemon binary against the in-process
//! simulator, kill it, restart it, and compare what a sink received with the simulator's
//! ground truth as multisets of `event.id`.
//!
//! Each test binary includes this module with `mod common;`; not every binary uses every
//! helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confluence_audit_forwarder::normalize::{self, Api};
use confluence_audit_forwarder::simulate::{SimConfig, SimServer, Simulator};

/// The daemon binary cargo built for this test run.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_confluence-audit-forwarder")
}

/// Peak resident memory of a running process, KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A running daemon process; killed (SIGKILL) on drop.
pub struct DaemonProcess {
    pub child: Child,
}

impl DaemonProcess {
    /// `run --config <config>`, logs to `log`.
    pub fn start(config: &Path, log: &Path) -> DaemonProcess {
        Self::start_with(config, log, &[])
    }

    /// `run --config <config> <args…>`, logs to `log`.
    pub fn start_with(config: &Path, log: &Path, args: &[&str]) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open daemon log");
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .env("RUST_LOG", "info,confluence_audit_forwarder=debug")
            .spawn()
            .expect("spawn daemon");
        DaemonProcess { child }
    }

    /// SIGKILL: no chance to flush, drain or commit anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit; returns the exit status and how long it took.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let pid = self.child.id() as i32;
        // SAFETY-free: plain kill(2) through the `kill` command keeps us off libc.
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        let status = self.child.wait().expect("wait for daemon");
        (status, started.elapsed())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `once --config <config>`; panics with the daemon's stderr when it fails.
pub fn run_once(config: &Path) -> String {
    let out = Command::new(bin())
        .args(["once", "--config"])
        .arg(config)
        .args(["--drain-timeout", "60s"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .output()
        .expect("run once");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "once failed: {stderr}");
    stderr
}

/// `once --config <config>` that must fail: its stderr.
pub fn run_once_failing(config: &Path) -> String {
    let out = Command::new(bin())
        .args(["once", "--config"])
        .arg(config)
        .output()
        .expect("run once");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "once should have failed: {stderr}");
    stderr
}

/// `dlq list --sink <sink>`: the sink's dead letters ({seq, id, reason, failed_at, doc, sink}).
pub fn dead_letters(config: &Path, sink: &str) -> Vec<serde_json::Value> {
    let out = Command::new(bin())
        .args(["dlq", "list", "--sink", sink, "--config"])
        .arg(config)
        .output()
        .expect("run dlq list");
    assert!(
        out.status.success(),
        "dlq list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `dlq replay --sink <sink>`, asserting that it moved `n` dead letters back into the queue.
pub fn dlq_replay(config: &Path, sink: &str, n: usize) {
    let out = Command::new(bin())
        .args(["dlq", "replay", "--sink", sink, "--config"])
        .arg(config)
        .output()
        .expect("run dlq replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("replayed {n} dead letter")),
        "{stderr}"
    );
}

/// Every `event.id` in an NDJSON file, with how often it appears.
pub fn ids_in_file(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(f) = std::fs::File::open(path) else {
        return out;
    };
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.expect("read line");
        let doc: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {line}", path.display(), i + 1));
        let id = doc["event"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{}:{}: no event.id", path.display(), i + 1))
            .to_owned();
        *out.entry(id).or_default() += 1;
    }
    out
}

/// The multiset of `event.id`s the daemon must produce for `records` (one API's rendering of
/// the ground truth): count-aware, exactly as the poller numbers identical records.
pub fn expected_ids<'a>(
    api: Api,
    records: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, usize> {
    let mut occurrences = std::collections::HashMap::new();
    let mut out = BTreeMap::new();
    for raw in records {
        let r = normalize::parse_record(api, raw).expect("ground truth parses");
        let n = occurrences
            .entry((r.timestamp_ms(), r.content_hash()))
            .or_insert(0u32);
        *out.entry(normalize::event_id(&r.content_hash(), *n))
            .or_default() += 1;
        *n += 1;
    }
    out
}

/// Assert that the file sink's output in `scratch` holds exactly the ids of `want` (each as
/// many times); `what` opens the failure message, which ends with the daemon's logs. The
/// number of documents.
pub fn assert_file_holds_exactly(
    want: &BTreeMap<String, usize>,
    scratch: &Scratch,
    what: &str,
) -> usize {
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(
        *want == got,
        "{what}: {}\nlogs:\n{}",
        diff(want, &got),
        scratch.logs()
    );
    got.values().sum()
}

/// Describe how two multisets differ (for assertion messages).
pub fn diff(expected: &BTreeMap<String, usize>, got: &BTreeMap<String, usize>) -> String {
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, n)| got.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, _)| k.clone())
        .collect();
    let doubled: Vec<_> = got
        .iter()
        .filter(|(k, n)| **n > 1 && expected.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, n)| format!("{k}x{n}"))
        .collect();
    let unexpected: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .cloned()
        .collect();
    format!(
        "expected {} events, got {}; missing {} {:?}; twice {} {:?}; unexpected {} {:?}",
        expected.values().sum::<usize>(),
        got.values().sum::<usize>(),
        missing.len(),
        &missing[..missing.len().min(5)],
        doubled.len(),
        &doubled[..doubled.len().min(5)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)],
    )
}

/// Poll `f` until it holds or `limit` passes (then panic with `what`).
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scratch directory with a state dir and an output dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Write `config.toml` and return its path.
    pub fn config(&self, toml: &str) -> PathBuf {
        let p = self.path("config.toml");
        std::fs::write(&p, toml).expect("write config");
        p
    }
    /// The daemon logs, for assertion messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.path()).expect("read scratch") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "log") {
                s.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
        let tail: String = s
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        tail
    }
}

/// A source section for a daemon config; keys in `extra` replace the test defaults.
pub fn source_toml(name: &str, url: &str, api: &str, extra: &str) -> String {
    let defaults = [
        ("poll_interval", "\"200ms\""),
        ("lag", "\"0s\""),
        ("overlap", "\"10m\""),
        ("start_at", "\"beginning\""),
        ("page_size", "100"),
        ("slice_max_records", "5000"),
        ("max_backoff", "\"500ms\""),
    ];
    let overridden = |key: &str| {
        extra
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
    };
    let mut out = format!("\n[[source]]\nname = \"{name}\"\nurl = \"{url}\"\napi = \"{api}\"\n");
    for (key, value) in defaults {
        if !overridden(key) {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out.push_str(extra);
    out.push('\n');
    out
}

/// The Confluence simulator served on a runtime of its own, so a test can block on the daemon
/// while the simulator answers.
pub struct Confluence {
    pub sim: Simulator,
    pub url: String,
    pub server: SimServer,
    pub rt: tokio::runtime::Runtime,
}

impl Confluence {
    /// An empty simulator.
    pub fn start(cfg: SimConfig) -> Confluence {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("simulator runtime");
        let sim = Simulator::new(cfg);
        let server = rt
            .block_on(sim.serve("127.0.0.1:0".parse().unwrap()))
            .expect("serve the simulator");
        Confluence {
            url: server.url(),
            sim,
            server,
            rt,
        }
    }

    /// History of `n` records over the last hour (ending a few seconds ago).
    pub fn with_history(cfg: SimConfig, n: usize) -> Confluence {
        Self::with_history_over(cfg, n, Duration::from_secs(3600))
    }

    /// History of `n` records spread over `span` (ending a few seconds ago).
    pub fn with_history_over(cfg: SimConfig, n: usize, span: Duration) -> Confluence {
        let c = Confluence::start(cfg);
        let now = c.sim.now_ms();
        c.sim
            .seed_history(n, now - span.as_millis() as i64, now - 3_000);
        c
    }

    /// The `event.id` multiset of every record up to `cursor` (inclusive).
    pub fn expected(&self, api: Api, cursor: i64) -> BTreeMap<String, usize> {
        let truth = self.sim.ground_truth_between(api, i64::MIN, cursor);
        expected_ids(api, truth.iter().map(String::as_str))
    }
}

/// A free loopback port (there is a small window before someone else binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// GET `url` with curl (no async runtime in the test): (status, body); status 0 when nothing
/// answered.
pub fn http_get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The value of the metric line `name{labels} value` in a Prometheus text page.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One metric scraped from the daemon's `/metrics` on `port` (None when absent or down).
pub fn scrape(port: u16, name_and_labels: &str) -> Option<f64> {
    let (status, text) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    if status != 200 {
        return None;
    }
    metric(&text, name_and_labels)
}
