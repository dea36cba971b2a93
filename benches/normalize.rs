//! `normalize` on DC advanced-auditing and legacy records, against the bound the issue sets:
//! merely parsing each record into a `serde_json::Value` and writing it back. Both run on
//! the same input in the same run; the README reports records/s and the ratio.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use confluence_audit_forwarder::normalize::{self, Api, NormalizeOptions};
use confluence_audit_forwarder::simulate::{SimConfig, Simulator};

/// 2000 realistic records of one API, from the simulator (all event kinds, Soteri's included).
fn records(api: Api) -> Vec<String> {
    let sim = Simulator::new(SimConfig::default());
    sim.seed_history(2000, 1_764_000_000_000, 1_764_003_600_000);
    sim.ground_truth(api)
}

fn bench(c: &mut Criterion) {
    let opts = NormalizeOptions::default();
    for api in [Api::Auditing, Api::Legacy] {
        let input = records(api);
        let bytes: usize = input.iter().map(String::len).sum();
        let mut group = c.benchmark_group(format!("normalize/{}", api.as_str()));
        group.throughput(Throughput::Elements(input.len() as u64));
        eprintln!("{}: {} records, {} bytes", api.as_str(), input.len(), bytes);
        group.bench_function("ecs", |b| {
            let mut out = Vec::with_capacity(4096);
            b.iter(|| {
                for raw in &input {
                    out.clear();
                    let r = normalize::parse_record(api, raw).unwrap();
                    let _ = r.content_hash();
                    normalize::write_ecs(&r, 0, "2026-11-25T00:00:00.000Z", &opts, &mut out)
                        .unwrap();
                    black_box(&out);
                }
            })
        });
        group.bench_function("json_value_roundtrip", |b| {
            let mut out = Vec::with_capacity(4096);
            b.iter(|| {
                for raw in &input {
                    out.clear();
                    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
                    serde_json::to_writer(&mut out, &v).unwrap();
                    black_box(&out);
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
