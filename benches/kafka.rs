//! Produce throughput of the Kafka sink into a real Apache Kafka (one node on loopback,
//! started by `tests/servers/run.sh`): batches of 1000 realistic ECS documents through
//! `Sink::deliver`, which waits for every delivery report (idempotent producer, `acks=all`).
//! Reported as events/s, per compression. Needs Maven and Java 17 (see README, Tests).

#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

use confluence_audit_forwarder::normalize::{self, Api, NormalizeOptions};
use confluence_audit_forwarder::simulate::{SimConfig, Simulator};
use confluence_audit_forwarder::sink::kafka::{KafkaConfig, KafkaSink};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};

const BATCH: usize = 1000;

/// 1000 ECS documents normalized from the simulator's records (Soteri's included).
fn batch() -> Vec<QueuedEvent> {
    let sim = Simulator::new(SimConfig::default());
    sim.seed_history(BATCH, 1_764_000_000_000, 1_764_003_600_000);
    let opts = NormalizeOptions::default();
    sim.ground_truth(Api::Auditing)
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let r = normalize::parse_record(Api::Auditing, raw).unwrap();
            let mut doc = Vec::new();
            normalize::write_ecs(&r, 0, "2026-11-25T00:00:00.000Z", &opts, &mut doc).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
            QueuedEvent {
                seq: i as u64,
                enqueued_ms: 0,
                id: v["event"]["id"].as_str().unwrap().to_owned(),
                doc,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let broker = kafka_support::Broker::start(dir.path()).expect("a real Kafka");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let events = batch();
    let bytes: usize = events.iter().map(|e| e.doc.len()).sum();
    eprintln!("batch: {} events, {} bytes", events.len(), bytes);
    let mut group = c.benchmark_group("kafka_produce");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for compression in ["none", "zstd"] {
        let cfg: KafkaConfig = serde_json::from_value(serde_json::json!({
            "brokers": broker.address(),
            "topic": format!("bench-{compression}"),
            "alerts_topic": format!("bench-{compression}-alerts"),
            "compression": compression,
            "create_topic": true,
        }))
        .unwrap();
        let mut sink = KafkaSink::new("bench".into(), cfg).unwrap();
        rt.block_on(sink.open(None)).unwrap();
        group.bench_function(compression, |b| {
            b.iter(|| {
                let out = rt.block_on(sink.deliver(&events)).unwrap();
                assert!(out.results.iter().all(|r| *r == Delivery::Delivered));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
