//! `normalize` on DC advanced-auditing and legacy records, against the bound the issue sets:
//! merely parsing each record into a `serde_json::Value` and writing it back. Both run on
//! the same input in the same run; the README reports records/s and the ratio.
//!
//! After criterion's groups, a paired run alternates the two on the same input, pass by
//! pass, timing the thread's CPU time, and prints records/s and the ratio: on a shared
//! machine whose load drifts, that is steadier than two criterion runs seconds apart.

use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::time::Instant;

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
            b.iter(|| run_ecs(api, &input, &opts, &mut out))
        });
        group.bench_function("json_value_roundtrip", |b| {
            let mut out = Vec::with_capacity(4096);
            b.iter(|| run_roundtrip(&input, &mut out))
        });
        group.finish();
    }
}

/// The hot path: parse, hash, write the document.
fn run_ecs(api: Api, input: &[String], opts: &NormalizeOptions, out: &mut Vec<u8>) {
    for raw in input {
        out.clear();
        let r = normalize::parse_record(api, raw).unwrap();
        let _ = r.content_hash();
        normalize::write_ecs(&r, 0, "2026-11-25T00:00:00.000Z", opts, out).unwrap();
        black_box(&*out);
    }
}

/// The bound: `Value` and back.
fn run_roundtrip(input: &[String], out: &mut Vec<u8>) {
    for raw in input {
        out.clear();
        let v: serde_json::Value = serde_json::from_str(raw).unwrap();
        serde_json::to_writer(&mut *out, &v).unwrap();
        black_box(&*out);
    }
}

/// Seconds this thread has been on a CPU (Linux `schedstat`), else wall-clock seconds:
/// on a shared machine, time spent waiting for a core is not the code's.
fn cpu_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 / 1e9)
}

/// Alternate the two, one pass over the input each, for about `secs` seconds of CPU time.
fn paired(secs: f64) {
    let wall = Instant::now();
    let opts = NormalizeOptions::default();
    let mut out = Vec::with_capacity(4096);
    for api in [Api::Auditing, Api::Legacy] {
        let input = records(api);
        let (mut ecs, mut base, mut passes) = (0.0f64, 0.0f64, 0u32);
        while ecs + base < secs || passes < 3 {
            let t = cpu_seconds(wall);
            run_ecs(api, &input, &opts, &mut out);
            let m = cpu_seconds(wall);
            run_roundtrip(&input, &mut out);
            ecs += m - t;
            base += cpu_seconds(wall) - m;
            passes += 1;
        }
        let n = (input.len() as u32 * passes) as f64;
        let bytes_in: usize = input.iter().map(String::len).sum();
        let mut bytes_out = 0;
        for raw in &input {
            out.clear();
            let r = normalize::parse_record(api, raw).unwrap();
            normalize::write_ecs(&r, 0, "2026-11-25T00:00:00.000Z", &opts, &mut out).unwrap();
            bytes_out += out.len();
        }
        println!(
            "paired (CPU time) {:<8} normalize {:>7.0} records/s   Value round trip {:>7.0} records/s   \
             ratio {:.2}   (record {} B, document {} B on average)",
            api.as_str(),
            n / ecs,
            n / base,
            base / ecs,
            bytes_in / input.len(),
            bytes_out / input.len(),
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Not when cargo test runs benches once as tests, nor when profiling or listing.
    let args: Vec<String> = std::env::args().collect();
    if !args
        .iter()
        .any(|a| a == "--test" || a == "--list" || a == "--profile-time")
    {
        paired(4.0);
    }
}
