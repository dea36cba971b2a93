//! End-to-end benchmark: simulator → daemon (durable queue) → file sink, as separate
//! processes, measured from the outside.
//!
//! `cargo bench --bench e2e` (or `-- --records 1000000 --sink file|elasticsearch|kafka|all`)
//! prints, for a backfill of N records into each sink: events/s, CPU seconds per 100k
//! events, peak RSS (from `/usr/bin/time -v`), then for a steady arrival rate into the file
//! sink: record-to-sink latency p50/p99, steady-state RSS, and the time from start to the
//! first poll. Every run also checks that the destination holds every record exactly once
//! (by `event.id`), so a fast wrong answer cannot pass for a fast one.
//!
//! Elasticsearch is the in-repo `_bulk` test server (in this process), Kafka a real Apache
//! Kafka broker started for the run (`tests/servers/run.sh`).
//!
//! A destination that pushes back: `--sink elasticsearch --item-faults 0.08 --request-faults
//! 0.2` runs the Elasticsearch backfill twice in one go — fault-free, then with that fraction of
//! bulk items answered 429/503 (half each) and that fraction of bulk requests rejected whole
//! with 429 — and prints both throughputs and their ratio. `--es-concurrency N` sets the
//! sink's `concurrency` for both runs.

#[path = "../tests/es_server/mod.rs"]
mod es_server;
#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_confluence-audit-forwarder");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `simulate` with `history` records and wait until it answers.
fn simulator(history: usize, rate: f64, span: &str) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--history", &history.to_string(), "--history-span", span])
        .args(["--rate", &rate.to_string(), "--page-cap", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start simulator");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "simulator did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Proc(child), url)
}

/// Where a backfill goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    File,
    Elasticsearch,
    Kafka,
}

fn config(dir: &Path, url: &str, poll: &str, lag: &str) -> PathBuf {
    config_with_sink(dir, url, poll, lag, None)
}

/// `sink`: the `[[sink]]` table to use instead of the file sink.
fn config_with_sink(dir: &Path, url: &str, poll: &str, lag: &str, sink: Option<&str>) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[source]]
name = "bench"
url = "{url}"
api = "auditing"
poll_interval = "{poll}"
lag = "{lag}"
start_at = "beginning"
page_size = 1000
[state]
dir = "{state}"
{sink}
[server]
listen = ""
[log]
level = "warn"
"#,
            state = dir.join("state").display(),
            sink = sink.map(str::to_owned).unwrap_or_else(|| format!(
                "[[sink]]\nname = \"file\"\ntype = \"file\"\npath = \"{}\"",
                dir.join("events.ndjson").display()
            )),
        ),
    )
    .unwrap();
    path
}

/// (value, line) from `/usr/bin/time -v` output.
fn time_field(report: &str, name: &str) -> f64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn wall_seconds(report: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.contains("Elapsed (wall clock)"))
        .unwrap_or("");
    let v = line.rsplit(": ").next().unwrap_or("0").trim();
    v.split(':').fold(0.0, |acc, part| {
        acc * 60.0 + part.parse::<f64>().unwrap_or(0.0)
    })
}

fn count_lines(path: &Path) -> usize {
    BufReader::new(std::fs::File::open(path).unwrap())
        .lines()
        .count()
}

/// How the Elasticsearch test server pushes back, and the sink's `concurrency`.
#[derive(Debug, Clone, Copy, Default)]
struct Pushback {
    item_faults: f64,
    request_faults: f64,
    es_concurrency: usize,
}

/// Backfill `records` into `target`; returns the throughput (events/s).
fn backfill(records: usize, target: Target, pushback: Pushback) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, url) = simulator(records, 0.0, "7d");
    let es = (target == Target::Elasticsearch).then(|| {
        let server = es_server::EsServer::start(es_server::EsOptions {
            keep_documents: false,
            ..Default::default()
        });
        server.faults(|f| {
            f.item_429 = pushback.item_faults / 2.0;
            f.item_503 = pushback.item_faults / 2.0;
            f.whole_429_fraction = pushback.request_faults;
        });
        server
    });
    let broker = (target == Target::Kafka)
        .then(|| kafka_support::Broker::start(dir.path()).expect("a real Kafka"));
    let sink = match target {
        Target::File => None,
        Target::Elasticsearch => Some(format!(
            "[[sink]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"{}\"\nconcurrency = {}",
            es.as_ref().unwrap().url,
            pushback.es_concurrency.max(1)
        )),
        Target::Kafka => Some(format!(
            "[[sink]]\nname = \"kafka\"\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"audit\"\ncreate_topic = true",
            broker.as_ref().unwrap().address()
        )),
    };
    let cfg = config_with_sink(dir.path(), &url, "1s", "0s", sink.as_deref());
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(BIN)
        .args(["once", "--config"])
        .arg(&cfg)
        .output()
        .expect("/usr/bin/time (Debian package `time`)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "once failed: {report}");
    // Distinct event ids at the destination, and how many it holds in all.
    let (delivered, held) = match target {
        Target::File => {
            let n = count_lines(&dir.path().join("events.ndjson"));
            (n, n)
        }
        Target::Elasticsearch => {
            let es = es.as_ref().unwrap();
            let ids = es.ids("logs-confluence.audit-default");
            (ids.len(), es.stats().created as usize)
        }
        Target::Kafka => {
            let messages = kafka_support::read_topic(&broker.as_ref().unwrap().address(), "audit");
            (kafka_support::keys(&messages).len(), messages.len())
        }
    };
    let wall = wall_seconds(&report);
    let cpu =
        time_field(&report, "User time (seconds)") + time_field(&report, "System time (seconds)");
    let rss_kib = time_field(&report, "Maximum resident set size (kbytes)");
    let name = match target {
        Target::File => "file sink",
        Target::Elasticsearch => "Elasticsearch test server",
        Target::Kafka => "Apache Kafka",
    };
    println!("backfill of {records} records (DC advanced auditing API, 1000 per page) → {name}");
    if let Some(es) = &es {
        let st = es.stats();
        println!(
            "  pushback           {:.0}% of items 429/503, {:.0}% of requests 429 whole, concurrency {}: {} bulk requests, {} rejected whole, {} items rejected",
            pushback.item_faults * 100.0,
            pushback.request_faults * 100.0,
            pushback.es_concurrency.max(1),
            st.bulk_requests,
            st.whole_429,
            st.injected_429 + st.injected_503
        );
    }
    println!(
        "  delivered          {delivered} distinct, {held} in all (exactly the simulator's {records}: {})",
        delivered == records && held == records
    );
    println!("  wall time          {wall:.2} s");
    println!(
        "  throughput         {:.0} events/s",
        delivered as f64 / wall
    );
    println!(
        "  CPU                {:.2} s per 100k events",
        cpu / delivered as f64 * 100_000.0
    );
    println!("  peak RSS           {:.1} MiB", rss_kib / 1024.0);
    assert_eq!(
        (delivered, held),
        (records, records),
        "the {name} must hold every record exactly once"
    );
    delivered as f64 / wall
}

/// The Elasticsearch backfill fault-free and pushed back, side by side.
fn pushback_pair(records: usize, pushback: Pushback) {
    let clean = backfill(
        records,
        Target::Elasticsearch,
        Pushback {
            item_faults: 0.0,
            request_faults: 0.0,
            ..pushback
        },
    );
    let faulty = backfill(records, Target::Elasticsearch, pushback);
    println!(
        "Elasticsearch under pushback: fault-free {clean:.0} events/s, with {:.0}% items / {:.0}% requests rejected {faulty:.0} events/s: {:.0}% of fault-free",
        pushback.item_faults * 100.0,
        pushback.request_faults * 100.0,
        faulty / clean * 100.0
    );
}

/// Steady state: `rate` new events/s for `seconds`; latency from the record's time to the
/// moment the line is seen in the file.
fn steady(rate: f64, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, url) = simulator(0, rate, "1h");
    let cfg = config(dir.path(), &url, "1s", "1s");
    let started = Instant::now();
    let mut daemon = Proc(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let out = dir.path().join("events.ndjson");
    let state = dir.path().join("state/state.redb");
    while !state.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let to_first_state = started.elapsed();
    let mut latencies = Vec::new();
    let mut offset = 0u64;
    let mut rss_samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(mut f) = std::fs::File::open(&out) {
            f.seek(SeekFrom::Start(offset)).unwrap();
            let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                offset += line.len() as u64;
                let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
                let ts = time::OffsetDateTime::parse(
                    doc["@timestamp"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap();
                latencies.push((now_ms - ts.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0);
                line.clear();
            }
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(l) = status.lines().find(|l| l.starts_with("VmRSS:"))
        {
            let kib: f64 = l.split_whitespace().nth(1).unwrap().parse().unwrap();
            rss_samples.push(kib / 1024.0);
        }
    }
    let _ = daemon.0.kill();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    rss_samples.sort_by(f64::total_cmp);
    println!(
        "steady state: {rate} events/s for {seconds} s (poll_interval 1s, lag 1s) → file sink"
    );
    println!("  events seen        {}", latencies.len());
    println!(
        "  latency p50 / p99  {:.2} s / {:.2} s (record time → line in the file)",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "  RSS                {:.1} MiB (max {:.1})",
        rss_samples
            .get(rss_samples.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
        rss_samples.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  start → state open {:.0} ms",
        to_first_state.as_secs_f64() * 1000.0
    );
}

/// Start to the first request to Confluence (the start of the first poll), median of 7 runs:
/// the time from `spawn` to the daemon's debug line for its first connection.
fn startup(url: &str) {
    let mut times = Vec::new();
    for _ in 0..7 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), url, "1s", "1s");
        let started = Instant::now();
        let mut child = Proc(
            Command::new(BIN)
                .args(["run", "--config"])
                .arg(&cfg)
                .env("CAF__LOG__LEVEL", "warn,reqwest::connect=debug")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = child.0.stderr.take().unwrap();
        for line in BufReader::new(stderr).lines() {
            if line.unwrap().contains("starting new connection") {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "start → first request to Confluence: {:.1} ms median of {} (min {:.1}, max {:.1})",
        times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        times.len(),
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test` runs benches in test mode (`--bench` absent): keep that quick.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let number = |name: &str| flag(name).map(|v| v.parse::<f64>().expect(name));
    let records = number("--records").map_or(1_000_000, |v| v as usize);
    let pushback = Pushback {
        item_faults: number("--item-faults").unwrap_or(0.0),
        request_faults: number("--request-faults").unwrap_or(0.0),
        es_concurrency: number("--es-concurrency").map_or(1, |v| v as usize),
    };
    if pushback.item_faults > 0.0 || pushback.request_faults > 0.0 {
        assert!(
            matches!(flag("--sink").map(String::as_str), Some("elasticsearch")),
            "--item-faults and --request-faults need --sink elasticsearch"
        );
        pushback_pair(records, pushback);
        return;
    }
    let sink = flag("--sink").map_or("all", String::as_str);
    let targets: &[Target] = match sink {
        "file" => &[Target::File],
        "elasticsearch" => &[Target::Elasticsearch],
        "kafka" => &[Target::Kafka],
        "all" => &[Target::File, Target::Elasticsearch, Target::Kafka],
        other => panic!("--sink {other}: expected file, elasticsearch, kafka or all"),
    };
    for t in targets {
        backfill(records, *t, pushback);
    }
    if targets.contains(&Target::File) {
        steady(200.0, 20);
        let (_sim, url) = simulator(0, 0.0, "1h");
        startup(&url);
    }
}
