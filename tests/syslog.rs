//! Syslog sink against a real rsyslogd: every transport (UDP, TCP, TLS), format (RFC 5424,
//! RFC 3164), framing (octet counting, LF) and payload (JSON, CEF, LEEF), with hostile
//! records in every field that reaches syslog. What rsyslog parsed must be exactly one
//! message per event, with the expected header fields and a payload that parses back to the
//! event. Also: UDP truncation, TLS verification, mTLS, and reconnecting after the receiver
//! restarts.

mod syslog_support;

use std::sync::Arc;

use confluence_audit_forwarder::metrics::Metrics;
use confluence_audit_forwarder::sink::syslog::payload::parse;
use confluence_audit_forwarder::sink::syslog::{SyslogConfig, SyslogSink};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};
use serde_json::Value;
use syslog_support::{Certs, Input, Rsyslog, SERVER_NAME, clean_doc, hostile_doc, hostile_values};

fn sink_config(toml: &str) -> SyslogConfig {
    let cfg: SyslogConfig = config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
        .expect("test config")
        .try_deserialize()
        .expect("test config");
    cfg.validate().expect("valid test config");
    cfg
}

fn sink(name: &str, toml: &str) -> (SyslogSink, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let s = SyslogSink::new(name.into(), sink_config(toml), metrics.clone()).unwrap();
    (s, metrics)
}

fn entry(seq: u64, doc: &Value) -> QueuedEvent {
    QueuedEvent {
        seq,
        enqueued_ms: 0,
        id: doc["event"]["id"].as_str().unwrap_or("").to_owned(),
        doc: serde_json::to_vec(doc).unwrap(),
    }
}

/// One way of writing messages.
#[derive(Debug, Clone, Copy)]
struct Combo {
    format: &'static str,
    payload: &'static str,
    framing: Option<&'static str>,
}

impl Combo {
    fn app(&self) -> String {
        let f = match self.framing {
            Some("octet-counting") => "-oc",
            Some(_) => "-lf",
            None => "",
        };
        format!("caf-{}-{}{f}", &self.format[3..], self.payload)
    }

    fn toml(&self, address: &str, extra: &str) -> String {
        let framing = self
            .framing
            .map(|f| format!("framing = \"{f}\"\n"))
            .unwrap_or_default();
        format!(
            "address = \"{address}\"\nformat = \"{}\"\npayload = \"{}\"\napp_name = \"{}\"\n{framing}{extra}",
            self.format,
            self.payload,
            self.app()
        )
    }
}

fn combos(framings: &[Option<&'static str>]) -> Vec<Combo> {
    let mut out = Vec::new();
    for format in ["rfc5424", "rfc3164"] {
        for payload in ["json", "cef", "leef"] {
            for framing in framings {
                out.push(Combo {
                    format,
                    payload,
                    framing: *framing,
                });
            }
        }
    }
    out
}

/// The events every combination sends: one clean, one alert, one per hostile value.
fn events(tag: &str) -> Vec<Value> {
    let mut docs = vec![clean_doc(&format!("{tag}-clean"))];
    let mut alert = clean_doc(&format!("{tag}-alert"));
    alert["event"]["kind"] = "alert".into();
    alert["event"]["action"] = "sensitive-content-introduced".into();
    docs.push(alert);
    for (i, text) in hostile_values().iter().enumerate() {
        docs.push(hostile_doc(&format!("{tag}-hostile-{i}"), text, i % 3 == 0));
    }
    docs
}

/// What a CEF (keep `\n`, `\r`) or LEEF (also `\t`) value comes back as.
fn expected_value(s: &str, kept: &[char]) -> String {
    s.chars()
        .map(|c| {
            if (c.is_control() || c == '\u{2028}' || c == '\u{2029}') && !kept.contains(&c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

fn text(doc: &Value, path: &str) -> Option<String> {
    let mut v = doc;
    for p in path.split('.') {
        v = v.get(p)?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

/// Check one received message against the documents sent; returns the event id it carried.
fn check_message(combo: &Combo, m: &Value, sent: &[Value]) -> String {
    let raw = m["raw"].as_str().unwrap();
    let ctx = || format!("{combo:?}: {}", &raw[..raw.len().min(300)]);
    // Nothing but the LEEF delimiter may be a control character anywhere in the message.
    assert!(
        raw.chars()
            .all(|c| !(c.is_control() || c == '\u{2028}' || c == '\u{2029}')
                || (c == '\t' && combo.payload == "leef")),
        "raw control character in {}",
        ctx()
    );
    let mut msg = m["msg"].as_str().unwrap().to_owned();
    if combo.format == "rfc3164" {
        // rsyslog keeps the space after "TAG:" in msg.
        msg = msg.strip_prefix(' ').unwrap_or(&msg).to_owned();
        assert_eq!(m["programname"], combo.app(), "{}", ctx());
    } else {
        assert_eq!(m["app"], combo.app(), "{}", ctx());
        assert_eq!(m["procid"], "-", "{}", ctx());
        let msgid = m["msgid"].as_str().unwrap();
        assert!(
            msgid.len() <= 32 && msgid.bytes().all(|b| (33..=126).contains(&b)),
            "MSGID {msgid:?} in {}",
            ctx()
        );
    }
    let host = m["hostname"].as_str().unwrap();
    assert!(
        !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| (33..=126).contains(&b)),
        "HOSTNAME {host:?} in {}",
        ctx()
    );

    let (id, fields): (String, Option<parse::Parsed>) = match combo.payload {
        "json" => {
            let v: Value = serde_json::from_str(&msg)
                .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {}", ctx()));
            let id = v["event"]["id"].as_str().unwrap().to_owned();
            let doc = sent
                .iter()
                .find(|d| d["event"]["id"] == id.as_str())
                .unwrap();
            assert_eq!(&v, doc, "JSON payload differs from the event: {}", ctx());
            (id, None)
        }
        "cef" => {
            let p = parse::cef(&msg).unwrap_or_else(|| panic!("not CEF: {}", ctx()));
            (p.attrs["externalId"].clone(), Some(p))
        }
        _ => {
            let p = parse::leef(&msg).unwrap_or_else(|| panic!("not LEEF: {}", ctx()));
            (p.attrs["eventId"].clone(), Some(p))
        }
    };
    let doc = sent
        .iter()
        .find(|d| d["event"]["id"] == id.as_str())
        .unwrap_or_else(|| panic!("unknown event id {id:?}: {}", ctx()));

    // Severity from the event: notice, crit for alerts; facility authpriv (10).
    let severity = if doc["event"]["kind"] == "alert" {
        2
    } else {
        5
    };
    assert_eq!(m["pri"], (10 * 8 + severity).to_string(), "{}", ctx());
    if doc["event"]["action"] == "user-login" {
        assert_eq!(host, "wiki.example.com", "{}", ctx());
        if combo.format == "rfc5424" {
            assert_eq!(m["msgid"], "user-login", "{}", ctx());
        }
    }
    if combo.format == "rfc5424" {
        let sd = m["sd"].as_str().unwrap();
        assert!(
            sd.starts_with(&format!("[caf@32473 id=\"{id}\" ")),
            "SD {sd:?}: {}",
            ctx()
        );
    }

    match (combo.payload, fields) {
        ("cef", Some(p)) => {
            let kept = ['\n', '\r'];
            assert_eq!(p.header.len(), 7, "{}", ctx());
            for (key, path) in [
                ("suser", "user.name"),
                ("msg", "message"),
                ("act", "event.action"),
                ("cat", "event.category"),
                ("cs1", "confluence.space.key"),
                ("cs2", "confluence.content.title"),
                ("duser", "user.target.name"),
                ("dvchost", "related.hosts"),
            ] {
                let want = text(doc, path).map(|v| expected_value(&v, &kept));
                assert_eq!(p.attrs.get(key), want.as_ref(), "CEF {key}: {}", ctx());
            }
            let ip_ok = text(doc, "source.ip").filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
            assert_eq!(p.attrs.get("src"), ip_ok.as_ref(), "{}", ctx());
            assert_eq!(p.attrs["rt"], "1764064800123", "{}", ctx());
            assert_eq!(p.header[6], if severity == 2 { "8" } else { "4" });
        }
        ("leef", Some(p)) => {
            let kept = ['\n', '\r', '\t'];
            assert_eq!(p.header.len(), 6, "{}", ctx());
            for (key, path) in [
                ("usrName", "user.name"),
                ("msg", "message"),
                ("action", "event.action"),
                ("cat", "event.category"),
                ("spaceKey", "confluence.space.key"),
                ("resource", "confluence.content.title"),
                ("accountName", "user.target.name"),
                ("confluenceHost", "related.hosts"),
            ] {
                let want = text(doc, path).map(|v| expected_value(&v, &kept));
                assert_eq!(p.attrs.get(key), want.as_ref(), "LEEF {key}: {}", ctx());
            }
            assert_eq!(p.attrs["devTime"], "2025-11-25T10:00:00.123Z");
        }
        _ => {}
    }
    id
}

/// Deliver every combination's events to `rsyslog` and check what it wrote.
async fn run_matrix(rsyslog: &Rsyslog, scheme: &str, combos: &[Combo], extra: &str) {
    let address = format!("{scheme}://127.0.0.1:{}", rsyslog.port);
    let udp = scheme == "udp";
    let mut expected_total = 0;
    for combo in combos {
        let app = combo.app();
        let (mut s, _) = sink(&app, &combo.toml(&address, extra));
        s.open(None)
            .await
            .unwrap_or_else(|e| panic!("{combo:?}: open: {e}"));
        let docs = events(&app);
        let batch: Vec<QueuedEvent> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| entry(i as u64, d))
            .collect();
        let of_combo = |ms: &[Value]| {
            ms.iter()
                .filter(|m| m["app"] == app.as_str() || m["programname"] == app.as_str())
                .count()
        };
        if udp {
            // One datagram at a time, waiting for each: loopback UDP drops what overflows
            // the receive buffer, and this test is about content, not load.
            for (i, e) in batch.iter().enumerate() {
                let out = s.deliver(std::slice::from_ref(e)).await.expect("deliver");
                assert_eq!(out.results, vec![Delivery::Delivered]);
                rsyslog.wait_for(&format!("{app} message {i}"), |ms| of_combo(ms) > i);
            }
        } else {
            let out = s.deliver(&batch).await.expect("deliver");
            assert!(
                out.results.iter().all(|r| *r == Delivery::Delivered),
                "{:?}",
                out.results
            );
            // A sentinel on the same connection: once it is there, everything sent before it
            // was parsed, so any message injected by a hostile value would be counted too.
            let sentinel = clean_doc(&format!("{app}-sentinel"));
            s.deliver(&[entry(999, &sentinel)])
                .await
                .expect("deliver sentinel");
            rsyslog.wait_for(&format!("{app} sentinel"), |ms| {
                ms.iter().any(|m| {
                    m["raw"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&format!("{app}-sentinel"))
                })
            });
        }
        let messages = rsyslog.messages();
        let mine: Vec<&Value> = messages
            .iter()
            .filter(|m| m["app"] == app.as_str() || m["programname"] == app.as_str())
            .collect();
        let n = docs.len() + usize::from(!udp);
        let strays: Vec<String> = messages
            .iter()
            .filter(|m| {
                !m["app"].as_str().unwrap_or("").starts_with("caf-")
                    && !m["programname"].as_str().unwrap_or("").starts_with("caf-")
            })
            .map(|m| {
                format!(
                    "host={} app={} prog={} raw={}",
                    m["hostname"],
                    m["app"],
                    m["programname"],
                    m["raw"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(120)
                        .collect::<String>()
                )
            })
            .collect();
        assert_eq!(
            mine.len(),
            n,
            "{combo:?}: one message per event; strays: {strays:#?}"
        );
        let mut ids: Vec<String> = mine
            .iter()
            .map(|m| check_message(combo, m, &docs_and_sentinel(&docs, &app)))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{combo:?}: every event exactly once");
        expected_total += n;
    }
    // Nothing else arrived (no message under an injected app name or tag).
    assert_eq!(rsyslog.messages().len(), expected_total);
}

fn docs_and_sentinel(docs: &[Value], app: &str) -> Vec<Value> {
    let mut all = docs.to_vec();
    all.push(clean_doc(&format!("{app}-sentinel")));
    all
}

#[tokio::test]
async fn udp_hostile_events_one_datagram_each() {
    let rsyslog = Rsyslog::start(Input::Udp);
    run_matrix(
        &rsyslog,
        "udp",
        &combos(&[None]),
        "max_message_bytes = 65000\n",
    )
    .await;
}

#[tokio::test]
async fn tcp_hostile_events_one_message_each_with_both_framings() {
    let rsyslog = Rsyslog::start(Input::Tcp);
    run_matrix(
        &rsyslog,
        "tcp",
        &combos(&[Some("octet-counting"), Some("lf")]),
        "",
    )
    .await;
}

#[tokio::test]
async fn tls_hostile_events_one_message_each_with_both_framings() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let rsyslog = Rsyslog::start(Input::Tls {
        certs: certs.clone(),
        client_auth: false,
    });
    let tls = format!(
        "[tls]\nca_file = \"{}\"\nserver_name = \"{SERVER_NAME}\"\n",
        certs.ca.display()
    );
    // The TLS default framing is octet counting: `None` exercises it.
    run_matrix(&rsyslog, "tls", &combos(&[None, Some("lf")]), &tls).await;
}

#[tokio::test]
async fn udp_over_the_limit_is_truncated_once_and_counted() {
    let rsyslog = Rsyslog::start(Input::Udp);
    let address = format!("udp://127.0.0.1:{}", rsyslog.port);
    let (mut s, metrics) = sink(
        "udp-small",
        &format!("address = \"{address}\"\napp_name = \"caf-trunc\"\n"),
    );
    s.open(None).await.unwrap();
    let mut doc = clean_doc("big-one");
    doc["message"] = format!("{}🎉", "x".repeat(20_000)).into();
    let out = s.deliver(&[entry(1, &doc)]).await.unwrap();
    assert_eq!(out.results, vec![Delivery::Delivered]);
    let small = clean_doc("small-one");
    s.deliver(&[entry(2, &small)]).await.unwrap();
    let ms = rsyslog.wait_for("both datagrams", |ms| ms.len() >= 2);
    assert_eq!(ms.len(), 2);
    let big = ms
        .iter()
        .find(|m| m["sd"].as_str().unwrap().contains("big-one"))
        .expect("the big one arrived");
    let raw = big["raw"].as_str().unwrap();
    assert!(raw.len() <= 8192, "{} bytes", raw.len());
    assert!(
        raw.len() > 8000,
        "cut far below the limit: {} bytes",
        raw.len()
    );
    assert!(raw.ends_with("[truncated]"), "{}", &raw[raw.len() - 40..]);
    assert!(raw.starts_with("<85>1 2025-11-25T10:00:00.123Z wiki.example.com caf-trunc - user-login [caf@32473 id=\"big-one\""));
    let rendered = metrics.render();
    assert!(
        rendered.contains("caf_sink_truncated_total{sink=\"udp-small\"} 1"),
        "{rendered}"
    );
}

#[tokio::test]
async fn tls_verification_is_on_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let rsyslog = Rsyslog::start(Input::Tls {
        certs: certs.clone(),
        client_auth: false,
    });
    let address = format!("tls://127.0.0.1:{}", rsyslog.port);
    // A CA that did not sign the server's certificate.
    let (mut s, _) = sink(
        "wrong-ca",
        &format!(
            "address = \"{address}\"\n[tls]\nca_file = \"{}\"\nserver_name = \"{SERVER_NAME}\"\n",
            certs.other_ca.display()
        ),
    );
    let e = s
        .open(None)
        .await
        .expect_err("an unknown issuer must be refused");
    assert_eq!(e.kind, "tls", "{e}");
    // The right CA, but the certificate is not for 127.0.0.1.
    let (mut s, _) = sink(
        "wrong-name",
        &format!(
            "address = \"{address}\"\n[tls]\nca_file = \"{}\"\n",
            certs.ca.display()
        ),
    );
    let e = s
        .open(None)
        .await
        .expect_err("a name mismatch must be refused");
    assert_eq!(e.kind, "tls", "{e}");
    // No CA given: the system store does not know the test CA either.
    let (mut s, _) = sink(
        "system-store",
        &format!("address = \"{address}\"\n[tls]\nserver_name = \"{SERVER_NAME}\"\n"),
    );
    assert!(s.open(None).await.is_err());
    assert!(rsyslog.messages().is_empty());
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let rsyslog = Rsyslog::start(Input::Tls {
        certs: certs.clone(),
        client_auth: true,
    });
    let address = format!("tls://127.0.0.1:{}", rsyslog.port);
    let (mut s, _) = sink(
        "mtls",
        &format!(
            "address = \"{address}\"\napp_name = \"caf-mtls\"\n[tls]\nca_file = \"{}\"\nserver_name = \"{SERVER_NAME}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            certs.ca.display(),
            certs.client_cert.display(),
            certs.client_key.display()
        ),
    );
    s.open(None).await.unwrap();
    let out = s.deliver(&[entry(1, &clean_doc("mtls-1"))]).await.unwrap();
    assert_eq!(out.results, vec![Delivery::Delivered]);
    let ms = rsyslog.wait_for("the mTLS message", |ms| !ms.is_empty());
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0]["app"], "caf-mtls");
    assert!(ms[0]["msg"].as_str().unwrap().contains("\"mtls-1\""));
}

#[tokio::test]
async fn receiver_restart_is_noticed_and_nothing_is_acknowledged_into_the_void() {
    let mut rsyslog = Rsyslog::start(Input::Tcp);
    let port = rsyslog.port;
    let address = format!("tcp://127.0.0.1:{port}");
    let (mut s, _) = sink(
        "restart",
        &format!("address = \"{address}\"\napp_name = \"caf-restart\"\n"),
    );
    s.open(None).await.unwrap();
    s.deliver(&[entry(1, &clean_doc("before"))]).await.unwrap();
    rsyslog.wait_for("the first message", |ms| ms.len() == 1);
    rsyslog.kill();
    // The receiver is gone: the hang-up is noticed before writing, reconnecting fails, and
    // the batch is not acknowledged (the worker keeps it queued and retries).
    let down = s.deliver(&[entry(2, &clean_doc("while-down"))]).await;
    let e = down.expect_err("nothing may be acknowledged while the receiver is down");
    assert_eq!(e.kind, "connect", "{e}");
    let restarted = Rsyslog::start_on(Input::Tcp, port);
    // The worker's retry: the same entry again, on a new connection.
    let out = s
        .deliver(&[entry(2, &clean_doc("while-down"))])
        .await
        .unwrap();
    assert_eq!(out.results, vec![Delivery::Delivered]);
    let ms = restarted.wait_for("the retried message", |ms| !ms.is_empty());
    assert_eq!(ms.len(), 1);
    assert!(ms[0]["sd"].as_str().unwrap().contains("id=\"while-down\""));
}

#[tokio::test]
async fn a_document_that_is_not_json_is_rejected_and_the_rest_delivered() {
    let rsyslog = Rsyslog::start(Input::Tcp);
    let address = format!("tcp://127.0.0.1:{}", rsyslog.port);
    let (mut s, _) = sink(
        "reject",
        &format!("address = \"{address}\"\npayload = \"cef\"\n"),
    );
    s.open(None).await.unwrap();
    let mut bad = entry(2, &clean_doc("x"));
    bad.doc = b"not json\n<13>1 injected".to_vec();
    let out = s
        .deliver(&[
            entry(1, &clean_doc("good-1")),
            bad,
            entry(3, &clean_doc("good-3")),
        ])
        .await
        .unwrap();
    assert_eq!(out.results[0], Delivery::Delivered);
    assert!(
        matches!(out.results[1], Delivery::Rejected(_)),
        "{:?}",
        out.results
    );
    assert_eq!(out.results[2], Delivery::Delivered);
    let ms = rsyslog.wait_for("two messages", |ms| ms.len() >= 2);
    assert_eq!(ms.len(), 2);
    assert!(
        ms.iter()
            .all(|m| !m["raw"].as_str().unwrap().contains("injected"))
    );
}

/// The generic worker drives the syslog sink from a real durable queue: the receiver is
/// down at first (open fails and is retried with backoff), then comes up; every queued
/// event arrives exactly once and the queue empties.
// Multi-threaded: the waits on rsyslog's output block their thread while the worker runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_waits_for_a_late_receiver_and_delivers_every_queued_event_once() {
    use confluence_audit_forwarder::lifecycle::RunMode;
    use confluence_audit_forwarder::sink::worker::{
        self, SinkStatus, WorkerContext, WorkerSettings,
    };
    use confluence_audit_forwarder::state::{NewEvent, Store, WindowCommit};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let store = Store::open(&dir.path().join("state"), &["siem".to_owned()]).unwrap();
    let hostile = hostile_values();
    let docs: Vec<Value> = (0..300)
        .map(|i| {
            let id = format!("{i:032x}");
            if i % 10 == 0 {
                hostile_doc(&id, &hostile[(i / 10) % hostile.len()], i % 20 == 0)
            } else {
                clean_doc(&id)
            }
        })
        .collect();
    store
        .commit_window(
            "wiki",
            &WindowCommit {
                events: docs
                    .iter()
                    .map(|d| NewEvent {
                        id: d["event"]["id"].as_str().unwrap().to_owned(),
                        doc: serde_json::to_vec(d).unwrap(),
                    })
                    .collect(),
                cursor_ms: Some(1),
                ..Default::default()
            },
        )
        .unwrap();

    let port = syslog_support::free_port();
    let metrics = Arc::new(Metrics::new());
    let cfg = sink_config(&format!(
        "address = \"tls://127.0.0.1:{port}\"\napp_name = \"caf-worker\"\ntimeout = \"5s\"\n[tls]\nca_file = \"{}\"\nserver_name = \"{SERVER_NAME}\"\n",
        certs.ca.display()
    ));
    let sink = SyslogSink::new("siem".into(), cfg, metrics.clone()).unwrap();
    let (mode_tx, mode_rx) = tokio::sync::watch::channel(RunMode::Run);
    let ctx = WorkerContext {
        store: store.clone(),
        metrics: metrics.clone(),
        queued: Arc::new(tokio::sync::Notify::new()),
        mode: mode_rx,
    };
    let settings = WorkerSettings {
        max_events: 64,
        max_bytes: 1 << 20,
        flush_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    };
    let status = Arc::new(SinkStatus::default());
    let worker = tokio::spawn(worker::run(
        "siem".into(),
        sink,
        settings,
        ctx,
        status.clone(),
    ));

    // Nothing listens yet: the worker must be failing, with everything still queued.
    let started = std::time::Instant::now();
    while status.failing().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "worker never tried to connect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.queue_stats("siem").unwrap().events, 300);

    let rsyslog = Rsyslog::start_on(
        Input::Tls {
            certs: certs.clone(),
            client_auth: false,
        },
        port,
    );
    let messages = rsyslog.wait_for("300 messages", |ms| ms.len() >= 300);
    let started = std::time::Instant::now();
    while store.queue_stats("siem").unwrap().events > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "queue never emptied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    mode_tx.send_replace(RunMode::Stop);
    worker.await.unwrap();

    assert_eq!(messages.len(), 300);
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m["msg"].as_str().unwrap()).expect("JSON payload");
            v["event"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "every event exactly once");
    assert!(status.failing().is_none());
    let text = metrics.render();
    assert!(
        text.contains("caf_sink_delivered_total{sink=\"siem\"} 300"),
        "{text}"
    );
    assert!(
        text.contains("caf_sink_failures_total{sink=\"siem\",kind=\"connect\"}"),
        "{text}"
    );
}
