//! The Kafka sink through its `Sink` trait against a real Apache Kafka (started by
//! `tests/servers/run.sh`, see `kafka_support`): keys, values, headers, alert routing, topic
//! creation, an event over the topic's `max.message.bytes` dead-lettered with the broker's
//! reason, a broker killed with -9 and its recovery. Every comparison is of `event.id`
//! multisets: nothing missing, no duplicates.

#[path = "kafka_support/mod.rs"]
mod kafka_support;

use std::collections::BTreeMap;
use std::time::Duration;

use confluence_audit_forwarder::config::{Config, SinkKind};
use confluence_audit_forwarder::sink::kafka::{KafkaConfig, KafkaSink};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};
use kafka_support::{Broker, keys, read_topic};

fn sink_config(brokers: &str, librdkafka: serde_json::Value) -> KafkaConfig {
    serde_json::from_value(serde_json::json!({
        "brokers": brokers,
        "topic": "audit",
        "alerts_topic": "audit-alerts",
        "create_topic": true,
        "compression": "zstd",
        "delivery_timeout": "3s",
        "librdkafka": librdkafka,
    }))
    .expect("kafka config")
}

fn event(seq: u64, kind: &str, action: &str) -> QueuedEvent {
    let id = format!("id-{seq:06}");
    let doc = serde_json::json!({
        "@timestamp": "2026-01-01T00:00:00.000Z",
        "event": {"id": id, "kind": kind, "action": action, "dataset": "confluence.audit"},
        "message": format!("event number {seq}"),
    });
    QueuedEvent {
        seq,
        enqueued_ms: 0,
        id,
        doc: serde_json::to_vec(&doc).unwrap(),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn events_arrive_keyed_with_headers_and_alerts_in_their_topic() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    let batch: Vec<QueuedEvent> = (0..200)
        .map(|i| {
            if i % 10 == 3 {
                event(i, "alert", "soteri-finding")
            } else {
                event(i, "event", "page_created")
            }
        })
        .collect();
    let outcome = block_on(async {
        let mut sink = KafkaSink::new(
            "kafka".into(),
            sink_config(&broker.address(), serde_json::json!({})),
        )
        .unwrap();
        sink.open(None).await.expect("open");
        sink.deliver(&batch).await.expect("deliver")
    });
    assert_eq!(outcome.results, vec![Delivery::Delivered; batch.len()]);

    let events = read_topic(&broker.address(), "audit");
    let alerts = read_topic(&broker.address(), "audit-alerts");
    assert_eq!(events.len(), 180);
    assert_eq!(alerts.len(), 20);
    let by_key: BTreeMap<&str, &QueuedEvent> = batch.iter().map(|e| (e.id.as_str(), e)).collect();
    for (m, want_kind) in events
        .iter()
        .map(|m| (m, "event"))
        .chain(alerts.iter().map(|m| (m, "alert")))
    {
        let sent = by_key.get(m.key.as_str()).expect("a key we sent");
        assert_eq!(m.value, sent.doc, "value is the document as queued");
        assert_eq!(m.json()["event"]["id"], m.key.as_str(), "key is event.id");
        assert_eq!(m.headers["event.kind"], want_kind);
        let want_action = if want_kind == "alert" {
            "soteri-finding"
        } else {
            "page_created"
        };
        assert_eq!(m.headers["event.action"], want_action);
        assert_eq!(m.headers["event.dataset"], "confluence.audit");
    }
    let mut all = keys(&events);
    all.extend(keys(&alerts));
    assert_eq!(all.len(), 200, "every event exactly once");
    assert!(all.values().all(|&n| n == 1));
}

/// `n` characters that zstd cannot shrink much (hex of a xorshift stream): the broker checks
/// `max.message.bytes` against the compressed batch.
fn incompressible(n: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = String::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(n);
    out
}

/// Create `topic` with topic-level settings, as an operator would before the forwarder runs.
fn create_topic_with(brokers: &str, topic: &str, settings: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in settings {
        new = new.set(k, v);
    }
    let results = block_on(admin.create_topics(&[new], &AdminOptions::new())).expect("create");
    for r in results {
        r.expect("topic created");
    }
}

#[test]
fn an_event_over_max_message_bytes_is_dead_lettered_with_the_brokers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    // The topic takes at most 10 000 bytes per (compressed) batch; librdkafka's own limit is
    // its default (1 MB), so it is the broker that refuses.
    create_topic_with(
        &broker.address(),
        "audit",
        &[("max.message.bytes", "10000")],
    );
    let mut batch: Vec<QueuedEvent> = (0..5).map(|i| event(i, "event", "x")).collect();
    let mut big = event(99, "event", "x");
    let mut doc: serde_json::Value = serde_json::from_slice(&big.doc).unwrap();
    doc["message"] = incompressible(60_000).into();
    big.doc = serde_json::to_vec(&doc).unwrap();
    batch.insert(2, big);
    let cfg = sink_config(&broker.address(), serde_json::json!({}));
    let outcome = block_on(async {
        let mut sink = KafkaSink::new("kafka".into(), cfg).unwrap();
        sink.open(None).await.expect("open");
        sink.deliver(&batch).await.expect("deliver")
    });
    for (i, r) in outcome.results.iter().enumerate() {
        if i == 2 {
            match r {
                // librdkafka's words for the broker's MESSAGE_TOO_LARGE (error code 10).
                Delivery::Rejected(reason) => assert!(
                    reason.contains("Broker: Message size too large"),
                    "{reason}"
                ),
                other => panic!("oversized event: {other:?}"),
            }
        } else {
            assert_eq!(r, &Delivery::Delivered, "event {i}");
        }
    }
    let got = keys(&read_topic(&broker.address(), "audit"));
    assert_eq!(got.len(), 5);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(!got.contains_key("id-000099"));
}

#[test]
fn create_topic_creates_both_topics_with_the_configured_partitions_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    let mut cfg = sink_config(&broker.address(), serde_json::json!({}));
    cfg.partitions = 3;
    cfg.replication_factor = 1;
    block_on(async {
        let mut sink = KafkaSink::new("kafka".into(), cfg.clone()).unwrap();
        sink.open(None).await.expect("open creates the topics");
        // A second start finds them there: not an error.
        let mut again = KafkaSink::new("kafka".into(), cfg.clone()).unwrap();
        again.open(None).await.expect("open with the topics there");
        let batch: Vec<QueuedEvent> = (0..30).map(|i| event(i, "event", "x")).collect();
        let out = again.deliver(&batch).await.expect("deliver");
        assert_eq!(out.results, vec![Delivery::Delivered; 30]);
    });
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .expect("client");
    use rdkafka::consumer::Consumer;
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    for name in ["audit", "audit-alerts"] {
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("{name} was not created"));
        assert!(t.error().is_none(), "{name}: {:?}", t.error());
        assert_eq!(t.partitions().len(), 3, "{name}");
    }
    let got = keys(&read_topic(&broker.address(), "audit"));
    assert_eq!(got.len(), 30);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
}

#[test]
fn a_dead_broker_means_retry_and_delivery_resumes_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(dir.path()) else {
        return;
    };
    let cfg = sink_config(&broker.address(), serde_json::json!({}));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut sink = KafkaSink::new("kafka".into(), cfg.clone()).unwrap();
    rt.block_on(sink.open(None)).expect("open");
    let first: Vec<QueuedEvent> = (0..10).map(|i| event(i, "event", "x")).collect();
    let out = rt.block_on(sink.deliver(&first)).expect("deliver");
    assert_eq!(out.results, vec![Delivery::Delivered; 10]);

    broker.down();
    let second: Vec<QueuedEvent> = (10..20).map(|i| event(i, "event", "x")).collect();
    // Bounded by delivery_timeout: the batch comes back as a failure to retry, not lost,
    // not hanging.
    let err = rt
        .block_on(sink.deliver(&second))
        .expect_err("nothing can be delivered to a dead broker");
    assert!(
        ["timeout", "connect", "broker"].contains(&err.kind),
        "{err:?}"
    );

    // Back, on the same port, with what it had (its log survives the kill).
    broker.up();
    let mut outcome = None;
    // The producer reconnects on its own; its first attempts may still time out.
    for _ in 0..10 {
        match rt.block_on(sink.deliver(&second)) {
            Ok(o) if o.results.iter().all(|r| *r == Delivery::Delivered) => {
                outcome = Some(o);
                break;
            }
            other => {
                eprintln!("after restart: {other:?}");
                std::thread::sleep(Duration::from_millis(500))
            }
        }
    }
    assert!(outcome.is_some(), "no delivery after the broker came back");
    let got = keys(&read_topic(&broker.address(), "audit"));
    // What it had before the kill, and what came after.
    for e in first.iter().chain(&second) {
        assert!(got.contains_key(&e.id), "{} missing", e.id);
    }
}

#[test]
fn open_reports_a_broker_that_is_down() {
    // A broker that is down is a loopback port nobody listens on.
    let address = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = block_on(async {
        let mut sink =
            KafkaSink::new("kafka".into(), sink_config(&address, serde_json::json!({}))).unwrap();
        sink.open(None).await.expect_err("no broker")
    });
    assert_eq!(err.kind, "connect", "{err:?}");
    assert!(err.reason.contains(&address), "{err:?}");
}

#[test]
fn the_documented_config_loads_with_dotted_properties_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("kafka-password");
    std::fs::write(&pw, "correct-horse-battery\n").unwrap();
    let toml = |extra: &str| {
        format!(
            r#"
[[source]]
name = "wiki"
url = "https://wiki.example.com"
api = "auditing"

[[sink]]
name = "kafka"
type = "kafka"
brokers = "kafka-1:9092,kafka-2:9092"
topic = "confluence-audit"
alerts_topic = "confluence-audit-alerts"
compression = "zstd"
sasl_username = "forwarder"
sasl_password_file = "{}"
[sink.librdkafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"linger.ms" = 20
{extra}
"#,
            pw.display()
        )
    };
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml("")).unwrap();
    let cfg = Config::load_with_env(&path, &[]).expect("the issue's example is valid");
    let SinkKind::Kafka(kafka) = &cfg.sink[0].kind else {
        panic!("not a kafka sink: {:?}", cfg.sink[0].kind)
    };
    assert_eq!(kafka.librdkafka["security.protocol"], "SASL_SSL");
    assert_eq!(kafka.librdkafka["sasl.mechanisms"], "SCRAM-SHA-512");
    assert_eq!(kafka.librdkafka["linger.ms"], "20");
    let client = kafka.client_config().unwrap();
    assert_eq!(client.get("sasl.password"), Some("correct-horse-battery"));
    assert_eq!(client.get("sasl.username"), Some("forwarder"));
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("correct-horse"), "{shown}");

    // A property that would weaken the guarantee is refused, naming its key.
    std::fs::write(&path, toml("\"enable.idempotence\" = false")).unwrap();
    let err = Config::load_with_env(&path, &[]).unwrap_err();
    assert_eq!(
        err.key, "sink[0].librdkafka.\"enable.idempotence\"",
        "{err}"
    );
    // So is a property librdkafka does not know.
    std::fs::write(&path, toml("\"no.such.thing\" = 1")).unwrap();
    let err = Config::load_with_env(&path, &[]).unwrap_err();
    assert_eq!(err.key, "sink[0].librdkafka.\"no.such.thing\"", "{err}");
    // A password file that cannot be read is a config error, not a runtime surprise.
    std::fs::remove_file(&pw).unwrap();
    std::fs::write(&path, toml("")).unwrap();
    let err = Config::load_with_env(&path, &[]).unwrap_err();
    assert_eq!(err.key, "sink[0].sasl_password_file", "{err}");
    assert!(!err.to_string().contains("correct-horse"));
}

/// A CA, and for the broker one PEM file: its private key (PKCS#8), then its certificate
/// (for 127.0.0.1, signed by the CA). Returns (CA file, broker PEM file).
fn test_ca(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "caf test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.clone().self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let broker_file = dir.join("broker.pem");
    std::fs::write(&broker_file, key.serialize_pem() + &cert.pem()).unwrap();
    (ca_file, broker_file)
}

#[test]
fn sasl_ssl_with_scram_sha_512_delivers_and_wrong_credentials_are_auth_failures_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, pem) = test_ca(dir.path());
    let Some(broker) = Broker::start_with(
        dir.path(),
        &[
            ("CAF_KAFKA_SASL_SSL_PEM", pem.to_str().unwrap()),
            ("CAF_KAFKA_SCRAM_USER", "forwarder"),
            ("CAF_KAFKA_SCRAM_PASSWORD", "correct-horse-battery"),
        ],
    ) else {
        return;
    };
    let config = |password: &str| -> KafkaConfig {
        serde_json::from_value(serde_json::json!({
            "brokers": broker.sasl_ssl_address(),
            "topic": "audit",
            "create_topic": true,
            "delivery_timeout": "3s",
            "sasl_username": "forwarder",
            "sasl_password": password,
            "librdkafka": {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "ssl.ca.location": ca.to_str().unwrap(),
            },
        }))
        .expect("kafka config")
    };
    let batch: Vec<QueuedEvent> = (0..20).map(|i| event(i, "event", "x")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Wrong password: open says `auth`, and so does every delivery attempt, which is a
    // batch failure (the events stay queued and are retried), never a dead letter.
    let mut wrong = KafkaSink::new("kafka".into(), config("wrong-password")).unwrap();
    let err = rt
        .block_on(wrong.open(None))
        .expect_err("refused credentials");
    assert_eq!(err.kind, "auth", "{err:?}");
    assert!(err.reason.contains("Authentication failed"), "{err:?}");
    assert!(!err.reason.contains("wrong-password"), "{err:?}");
    for _ in 0..2 {
        let err = rt
            .block_on(wrong.deliver(&batch))
            .expect_err("nothing delivered with refused credentials");
        assert_eq!(err.kind, "auth", "{err:?}");
    }
    drop(wrong);
    assert!(read_topic(&broker.address(), "audit").is_empty());

    // The right password, over TLS checked against the test CA.
    let mut sink = KafkaSink::new("kafka".into(), config("correct-horse-battery")).unwrap();
    rt.block_on(sink.open(None))
        .expect("open with SCRAM-SHA-512");
    let out = rt.block_on(sink.deliver(&batch)).expect("deliver");
    assert_eq!(out.results, vec![Delivery::Delivered; batch.len()]);
    let got = keys(&read_topic(&broker.address(), "audit"));
    assert_eq!(got.len(), 20);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
}
