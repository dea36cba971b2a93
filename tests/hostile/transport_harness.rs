//! Running the daemon against a hostile server and reading what it did: configs, `once`
//! with a bound on its time, peak memory, error counts — and a gzip bomb to throw at it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confluence_audit_forwarder::normalize::Api;

use crate::common::{
    Confluence, DaemonProcess, Scratch, bin, diff, free_port, http_get, ids_in_file, scrape,
    source_toml, wait_until,
};
use crate::server::{HostileServer, Req, Resp, on_request};

/// Where the legacy API's pages are.
pub const EVENTS: &str = "/rest/api/audit";

/// The README's memory bound for a daemon fed hostile bodies at the default
/// `max_response_bytes` (64 MiB): the cap, once, plus 64 MiB for the process itself.
pub const PEAK_RSS_BOUND_KIB: u64 = 128 * 1024;

/// A config with `sources`, a file sink `archive` and the metrics server on `port`.
pub fn config(scratch: &Scratch, sources: &str, port: u16) -> PathBuf {
    scratch.config(&format!(
        "{sources}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ))
}

pub fn delivered(scratch: &Scratch) -> BTreeMap<String, usize> {
    ids_in_file(&scratch.path("events.ndjson"))
}

/// `once --config <cfg> <args>`: its exit status and stderr. Panics if it is still running
/// after `limit` (the bound on the process's time).
pub fn once(cfg: &Path, args: &[&str], limit: Duration) -> (ExitStatus, String) {
    let log = cfg.with_file_name("once.log");
    let mut child = Command::new(bin())
        .args(["once", "--config"])
        .arg(cfg)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("once log"))
        .spawn()
        .expect("spawn once");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for once") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "once still running after {limit:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// `once` with `args` against one legacy source `wiki` at `url` (`extra` source keys), in a
/// fresh scratch directory: (scratch, exit status, stderr).
pub fn once_behind(url: &str, extra: &str, args: &[&str]) -> (Scratch, ExitStatus, String) {
    let scratch = Scratch::new();
    let cfg = config(
        &scratch,
        &source_toml("wiki", url, "legacy", extra),
        free_port(),
    );
    let (status, stderr) = once(&cfg, args, Duration::from_secs(120));
    (scratch, status, stderr)
}

/// `run` against one legacy source at `url`: the failure is counted under `kind` (never as
/// `connect`) and `/readyz` is unready saying `says`.
pub fn run_shows_unready(url: &str, kind: &str, says: &str) {
    let scratch = Scratch::new();
    let port = free_port();
    let cfg = config(&scratch, &source_toml("wiki", url, "legacy", ""), port);
    let _daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let mut unready = (0, String::new());
    wait_until(Duration::from_secs(30), "unready, counted", || {
        unready = http_get(&readyz);
        unready.0 == 503 && unready.1.contains(says) && source_errors(port, kind) >= 1.0
    });
    assert_eq!(source_errors(port, "connect"), 0.0, "{}", scratch.logs());
}

/// `check-config --config <cfg>`.
pub fn check_config(cfg: &Path) -> std::process::Output {
    Command::new(bin())
        .args(["check-config", "--config"])
        .arg(cfg)
        .output()
        .expect("run check-config")
}

pub use crate::common::peak_rss_kib;

pub fn source_errors(port: u16, kind: &str) -> f64 {
    scrape(
        port,
        &format!("caf_source_errors_total{{source=\"wiki\",kind=\"{kind}\"}}"),
    )
    .unwrap_or(0.0)
}

/// The first `n` requests to the events path get `make()`; the rest reach the simulator.
pub fn first_events_requests(
    n: u64,
    make: impl Fn() -> Resp + Send + Sync + 'static,
) -> impl crate::server::Behaviour {
    let seen = AtomicU64::new(0);
    on_request(move |req: &mut Req| {
        (req.path == EVENTS && seen.fetch_add(1, Ordering::SeqCst) < n).then(&make)
    })
}

/// A gzip member of fixed-Huffman deflate: one literal zero, then back-references of 258
/// bytes at distance 1, eight to every 13 bytes — `units` × 2064 zero bytes (~160:1). The
/// trailer's checksum is not computed: a reader that gets that far has already lost.
pub fn gzip_bomb(units: usize) -> Vec<u8> {
    #[derive(Default)]
    struct Bits {
        out: Vec<u8>,
        acc: u8,
        n: u32,
    }
    impl Bits {
        fn bit(&mut self, b: u32) {
            self.acc |= (b as u8) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc);
                (self.acc, self.n) = (0, 0);
            }
        }
        fn lsb_first(&mut self, v: u32, len: u32) {
            (0..len).for_each(|i| self.bit((v >> i) & 1));
        }
        fn huffman(&mut self, code: u32, len: u32) {
            (0..len).rev().for_each(|i| self.bit((code >> i) & 1));
        }
        fn back_reference(&mut self) {
            self.huffman(0b1100_0101, 8); // length 258 (symbol 285)
            self.huffman(0, 5); // distance 1
        }
    }
    let mut head = Bits::default();
    head.lsb_first(1, 1); // last block
    head.lsb_first(1, 2); // fixed Huffman
    head.huffman(0x30, 8); // literal 0
    head.back_reference();
    assert_eq!(head.n, 0, "3 + 8 + 13 bits end on a byte");
    let mut unit = Bits::default();
    (0..8).for_each(|_| unit.back_reference());
    assert_eq!((unit.out.len(), unit.n), (13, 0));
    let mut tail = Bits::default();
    tail.huffman(0, 7); // end of block
    tail.bit(0);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(&head.out);
    out.reserve(units * 13 + 16);
    for _ in 0..units {
        out.extend(&unit.out);
    }
    out.extend(&tail.out);
    out.extend([0u8; 8]);
    out
}

/// A daemon behind `hostile` until every record is in the file; returns the daemon (still
/// running), its log so far, its metrics port and its peak memory so far.
pub fn run_until_delivered(
    c: &Confluence,
    hostile: &HostileServer,
    scratch: &Scratch,
    extra: &str,
) -> (DaemonProcess, String, u16, u64) {
    let port = free_port();
    let cfg = config(
        scratch,
        &source_toml("wiki", &hostile.url, "legacy", extra),
        port,
    );
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let expected = c.expected(Api::Legacy, i64::MAX);
    wait_until(Duration::from_secs(90), "every event delivered", || {
        delivered(scratch).values().sum::<usize>() >= expected.values().sum::<usize>()
    });
    let got = delivered(scratch);
    assert_eq!(got, expected, "{}", diff(&expected, &got));
    let peak = peak_rss_kib(daemon.child.id());
    let log = std::fs::read_to_string(scratch.path("daemon.log")).unwrap_or_default();
    (daemon, log, port, peak)
}

/// The query of `req` as a string, to repeat it in a `Location`.
pub fn query_string(req: &Req) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(req.query.iter())
        .finish()
}
