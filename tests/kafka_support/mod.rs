//! Test support for the Kafka sink: a real Apache Kafka (KRaft, one node) started through
//! `tests/servers/run.sh` from Maven Central jars, and a consumer that reads a whole topic back.
//!
//! Every test gets a broker of its own, in its own directory: nextest runs each test in a
//! process of its own, and several tests kill the broker (`kill -9`) and start it again, which
//! keeps its data and its port. The broker is stopped when the test's [`Broker`] is dropped.
//! With `CAF_NO_REAL_SERVERS=1` the tests skip, loudly; otherwise a broker that cannot start
//! fails the test: CI must run them, never skip them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// `tests/servers/run.sh`.
fn run_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/run.sh")
}

/// True (after saying so on stderr) when real servers are switched off.
pub fn skip(test: &str) -> bool {
    if std::env::var_os("CAF_NO_REAL_SERVERS").is_some_and(|v| v == "1") {
        eprintln!(
            "\n!!! SKIPPED {test}: CAF_NO_REAL_SERVERS=1, so no real Kafka; this test checked nothing !!!\n"
        );
        return true;
    }
    false
}

/// A real Kafka broker in `dir`; stopped on drop.
pub struct Broker {
    dir: PathBuf,
    address: String,
    env: Vec<(String, String)>,
    running: bool,
}

impl Broker {
    /// Start a broker with its data and logs in `parent/kafka`, or `None` (the test skips)
    /// when `CAF_NO_REAL_SERVERS=1`.
    pub fn start(parent: &Path) -> Option<Broker> {
        Broker::start_with(parent, &[])
    }

    /// [`Broker::start`] with settings for `tests/servers/kafka.sh` (`CAF_KAFKA_…`).
    pub fn start_with(parent: &Path, env: &[(&str, &str)]) -> Option<Broker> {
        let thread = std::thread::current();
        if skip(thread.name().unwrap_or("a Kafka test")) {
            return None;
        }
        let dir = parent.join("kafka");
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Broker {
            dir,
            address: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            running: false,
        };
        b.up();
        Some(b)
    }

    /// `host:port` for `brokers`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// `host:port` of its SASL_SSL listener (started with `CAF_KAFKA_SASL_SSL_PEM`).
    pub fn sasl_ssl_address(&self) -> String {
        std::fs::read_to_string(self.dir.join("sasl_ssl_address"))
            .expect("a SASL_SSL listener")
            .trim()
            .to_owned()
    }

    /// Where its data and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run(&self, action: &str) -> std::process::Output {
        let mut cmd = Command::new("bash");
        cmd.arg(run_sh())
            .args([action, "kafka"])
            .env("CAF_KAFKA_DIR", &self.dir)
            // Stopped even if this test process is killed before its `Drop` runs.
            .env("CAF_KAFKA_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("run tests/servers/run.sh")
    }

    /// (Re)start it: the same port, and what it had before it was killed.
    pub fn up(&mut self) {
        assert!(!self.running, "broker already running");
        let out = self.run("start");
        assert!(
            out.status.success(),
            "tests/servers/run.sh start kafka failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        let address = stdout.lines().last().expect("an address").trim().to_owned();
        assert!(
            self.address.is_empty() || self.address == address,
            "restarted on {address}, was {}",
            self.address
        );
        self.address = address;
        self.running = true;
    }

    /// Kill it (SIGKILL): clients see a dead broker; its log keeps what it had written.
    pub fn down(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pid = std::fs::read_to_string(self.dir.join("pid")).expect("pid file");
        let pid = pid.trim();
        let _ = Command::new("kill").args(["-9", pid]).status();
        // Gone, or a zombie waiting to be reaped: either way it serves nothing.
        let stat = format!("/proc/{pid}/stat");
        let started = Instant::now();
        while std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pid {pid} survived kill -9"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.running = false;
        let _ = self.run("stop");
    }
}

/// One message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("value is JSON")
    }
}

/// Everything in `topic` right now, every partition from the beginning to its end.
/// A topic that does not exist reads as empty.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "caf-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Vec::new();
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Vec::new();
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("add partition");
    }
    let partitions = t.partitions().len();
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at_end = std::collections::HashSet::new();
    // Stalled, not slow, is a failure: a million messages take a while to read.
    let mut progress = Instant::now();
    while at_end.len() < partitions {
        assert!(
            progress.elapsed() < Duration::from_secs(30),
            "reading {topic} stalled for 30s before its end ({} messages so far)",
            out.len()
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) => {}
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            Some(Ok(m)) => {
                progress = Instant::now();
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(
                            hd.key.to_owned(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Received {
                    key: String::from_utf8(m.key().expect("every message has a key").to_vec())
                        .expect("key is UTF-8"),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
    }
    out
}

/// How often each key appears.
pub fn keys(messages: &[Received]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in messages {
        *out.entry(m.key.clone()).or_default() += 1;
    }
    out
}
