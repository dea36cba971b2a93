//! Elasticsearch sink throughput: batches of 1000 real ECS documents (simulator records
//! through the normalizer) delivered with `_bulk` into the in-process test server, which
//! parses every line and checks every document against the mappings as a cluster would.
//! Plain and gzip bodies, one and four requests in flight. Bytes are the ECS documents'.

#[path = "../tests/es_server/mod.rs"]
mod es_server;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confluence_audit_forwarder::normalize::{self, Api, NormalizeOptions};
use confluence_audit_forwarder::simulate::{SimConfig, Simulator};
use confluence_audit_forwarder::sink::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 1000;

fn documents() -> Vec<(String, Vec<u8>)> {
    let sim = Simulator::new(SimConfig::default());
    let now = sim.now_ms();
    sim.seed_history(BATCH, now - 3_600_000, now - 1_000);
    let mut occurrences = HashMap::new();
    sim.ground_truth(Api::Auditing)
        .iter()
        .take(BATCH)
        .map(|raw| {
            let r = normalize::parse_record(Api::Auditing, raw).unwrap();
            let k = occurrences
                .entry((r.timestamp_ms(), r.content_hash()))
                .or_insert(0u32);
            let mut doc = Vec::new();
            let opts = NormalizeOptions::default();
            normalize::write_ecs(&r, *k, "2025-11-25T00:00:00.000Z", &opts, &mut doc).unwrap();
            let id = normalize::event_id(&r.content_hash(), *k);
            *k += 1;
            (id, doc)
        })
        .collect()
}

fn bulk(c: &mut Criterion) {
    let docs = documents();
    let bytes: usize = docs.iter().map(|(_, d)| d.len()).sum();
    eprintln!(
        "es_bulk: {BATCH} documents per batch, {bytes} bytes ({} bytes per document on average)",
        bytes / BATCH
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("es_bulk");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    for (gzip, concurrency) in [(false, 1), (true, 1), (false, 4), (true, 4)] {
        let server = es_server::EsServer::start(es_server::EsOptions {
            keep_documents: false,
            ..Default::default()
        });
        let cfg: ElasticsearchConfig = serde_json::from_value(serde_json::json!({
            "url": server.url, "gzip": gzip, "concurrency": concurrency,
        }))
        .unwrap();
        let mut sink = ElasticsearchSink::new("bench".into(), cfg).unwrap();
        let mut round = 0u64;
        let name = format!(
            "{}_concurrency_{concurrency}",
            if gzip { "gzip" } else { "plain" }
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    // Fresh ids every round: each batch is really indexed, never a 409.
                    let batch: Vec<QueuedEvent> = docs
                        .iter()
                        .enumerate()
                        .map(|(i, (id, doc))| QueuedEvent {
                            seq: i as u64,
                            enqueued_ms: 0,
                            id: format!("{round}-{id}"),
                            doc: doc.clone(),
                        })
                        .collect();
                    let started = Instant::now();
                    let out = rt.block_on(sink.deliver(&batch)).unwrap();
                    total += started.elapsed();
                    assert!(out.results.iter().all(|d| *d == Delivery::Delivered));
                }
                total
            })
        });
        assert!(server.stats().created > 0);
    }
    g.finish();
}

criterion_group!(benches, bulk);
criterion_main!(benches);
