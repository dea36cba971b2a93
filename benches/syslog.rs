//! Syslog sink throughput: encoding (RFC 5424 + JSON/CEF/LEEF) and delivering batches over
//! TCP to an in-process receiver that discards what it reads.

use std::sync::Arc;

use confluence_audit_forwarder::metrics::Metrics;
use confluence_audit_forwarder::sink::syslog::encoder::Encoder;
use confluence_audit_forwarder::sink::syslog::{SyslogConfig, SyslogSink};
use confluence_audit_forwarder::sink::{QueuedEvent, Sink};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn config(toml: &str) -> SyslogConfig {
    config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap()
}

fn doc(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "@timestamp": "2025-11-25T10:00:00.123Z",
        "event": {"id": format!("{i:032x}"), "kind": "event", "action": "page-created",
                  "category": ["file"], "type": ["creation"], "outcome": "success",
                  "module": "confluence", "dataset": "confluence.audit"},
        "message": "jdoe created page \"Quarterly | Plan = draft\" in space OPS",
        "user": {"name": "jdoe", "id": "8a7f", "full_name": "Jane Doe"},
        "source": {"ip": "10.1.2.3"},
        "service": {"address": "https://wiki.example.com"},
        "related": {"hosts": ["wiki.example.com"], "user": ["jdoe"], "ip": ["10.1.2.3"]},
        "confluence": {"space": {"key": "OPS"}, "content": {"id": "123456", "type": "page",
                       "title": "Quarterly | Plan = draft"}},
        "observer": {"vendor": "Atlassian", "product": "Confluence", "type": "audit"},
        "ecs": {"version": "9.4.0"},
    }))
    .unwrap()
}

fn encode(c: &mut Criterion) {
    let docs: Vec<Vec<u8>> = (0..1000).map(doc).collect();
    let mut g = c.benchmark_group("syslog_encode");
    g.throughput(Throughput::Elements(docs.len() as u64));
    for payload in ["json", "cef", "leef"] {
        let cfg = config(&format!(
            "address = \"tls://127.0.0.1:6514\"\npayload = \"{payload}\"\n"
        ));
        let enc = Encoder::new(&cfg, &cfg.endpoint().unwrap().transport);
        let mut out = Vec::with_capacity(2 << 20);
        g.bench_function(payload, |b| {
            b.iter(|| {
                out.clear();
                for d in &docs {
                    enc.encode(d, &mut out).unwrap();
                }
                out.len()
            })
        });
    }
    g.finish();
}

fn deliver_tcp(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let batch: Vec<QueuedEvent> = (0..1000)
        .map(|i| QueuedEvent {
            seq: i as u64,
            enqueued_ms: 0,
            id: format!("{i:032x}"),
            doc: doc(i),
        })
        .collect();
    let mut g = c.benchmark_group("syslog_deliver_tcp");
    g.throughput(Throughput::Elements(batch.len() as u64));
    for payload in ["json", "cef"] {
        let cfg = config(&format!(
            "address = \"tcp://127.0.0.1:{port}\"\nframing = \"octet-counting\"\npayload = \"{payload}\"\n"
        ));
        let mut sink = SyslogSink::new("bench".into(), cfg, Arc::new(Metrics::new())).unwrap();
        rt.block_on(sink.open(None)).unwrap();
        g.bench_function(payload, |b| {
            b.iter(|| rt.block_on(sink.deliver(&batch)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, encode, deliver_tcp);
criterion_main!(benches);
