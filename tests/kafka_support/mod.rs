//! Test support for the Kafka sink: a real Kafka-protocol broker (tansu) as a child process
//! on a free loopback port, and a consumer that reads a whole topic back.
//!
//! The broker keeps its data in memory: a restart loses what it had, which the tests that
//! restart it take into account. Without the `tansu` binary (`TANSU_BIN` or on `PATH`) the
//! tests fail and say how to install it: CI must run them, never skip them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// Where the `tansu` binary is.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TANSU_BIN={} is not a file", p.display());
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin/tansu");
    if cargo_bin.is_file() {
        return cargo_bin;
    }
    panic!(
        "the Kafka sink tests need the tansu broker: `cargo install tansu --locked --features dynostore`, \
         then put it on PATH or set TANSU_BIN"
    );
}

/// A free loopback port (there is a small window before the broker binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A tansu broker on `127.0.0.1:port`; killed on drop.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    /// Start a broker on a free port and wait until it accepts connections.
    pub fn start(log_dir: &std::path::Path) -> Broker {
        let mut b = Broker {
            port: free_port(),
            child: None,
            log: log_dir.join("tansu.log"),
        };
        b.up();
        b
    }

    /// `host:port` for `brokers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)start on the same port; an empty broker (memory storage).
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open broker log");
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let addr: SocketAddr = self.address().parse().unwrap();
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                panic!(
                    "tansu exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {addr} within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it (SIGKILL): what it held is gone, clients see a dead broker.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
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
