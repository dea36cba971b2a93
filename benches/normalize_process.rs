//! `normalize` as a user runs it — a whole process, file in, documents out — against a
//! plain `serde_json::Value` parse-and-write of the same records, also a whole process.
//!
//! `cargo bench --bench normalize_process [-- --records 200000 --runs 5 --api auditing]`
//! writes the simulator's records to `$TMPDIR/caf-normalize-<api>-<records>.ndjson`, checks
//! once that the command turns every record into a document, then alternates three
//! processes on that file (stdout to `/dev/null`): the command as a user runs it (its
//! default `--threads`: the CPUs available, at most 4), the command with `--threads 1`, and
//! the comparison. It prints, for each, the median wall time, records/s, CPU seconds and
//! peak RSS (from `wait4`), and the ratios of the medians.
//!
//! The comparison program is this binary run with `--value-roundtrip`: stdin line by line
//! into a `Value` and back out through a buffered stdout. It is not part of the product.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::{SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_confluence-audit-forwarder");

/// The comparison: each line into a `serde_json::Value` and written back.
fn value_roundtrip() -> std::io::Result<()> {
    let mut input = std::io::stdin().lock();
    let mut out = BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let mut line = String::new();
    while input.read_line(&mut line)? > 0 {
        if !line.trim().is_empty() {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            serde_json::to_writer(&mut out, &v)?;
            out.write_all(b"\n")?;
        }
        line.clear();
    }
    out.flush()
}

/// One finished process: wall seconds, CPU seconds, peak RSS KiB.
struct Run {
    wall: f64,
    cpu: f64,
    peak_kib: i64,
}

/// Run `cmd` with `input` on stdin and stdout to `/dev/null`; measure it from `wait4`.
// The child is reaped by `wait4`, which also gives its peak RSS and CPU time.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command, input: &Path) -> Run {
    let started = Instant::now();
    let child = cmd
        .stdin(std::fs::File::open(input).expect("open input"))
        .stdout(Stdio::null())
        .spawn()
        .expect("start");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned, which nothing else waits for.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        peak_kib: usage.ru_maxrss,
    }
}

/// The simulator's records of `api`, one per line, in a file under `$TMPDIR`. Written by
/// a child process (`--write-input`), so that this one stays small: a child starts with
/// its parent's peak RSS in `wait4`'s figure.
fn input_file(api: Api, records: usize) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("caf-normalize-{}-{records}.ndjson", api.as_str()));
    if !path.exists() {
        let status = Command::new(std::env::current_exe().unwrap())
            .arg("--write-input")
            .arg(&path)
            .args(["--records", &records.to_string(), "--api", api.as_str()])
            .status()
            .expect("run --write-input");
        assert!(status.success(), "writing {}", path.display());
    }
    path
}

fn write_input(path: &Path, api: Api, records: usize) {
    let sim = Simulator::new(SimConfig::default());
    sim.seed_history(records, 1_764_000_000_000, 1_764_000_000_000 + 86_400_000);
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create input"));
    for r in sim.ground_truth(api) {
        out.write_all(r.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

/// Documents `normalize` writes for `input`, counted as they stream by.
fn count_documents(mut cmd: Command, input: &Path) -> usize {
    let mut child = cmd
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut buf, mut lines) = (vec![0; 1 << 16], 0);
    loop {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    assert!(child.wait().unwrap().success(), "{cmd:?}");
    lines
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--value-roundtrip") {
        value_roundtrip().expect("value round trip");
        return;
    }
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let records: usize = arg(&args, "--records", 200_000);
    let runs: usize = arg(&args, "--runs", 5);
    let api: Api = arg(&args, "--api", Api::Auditing);
    if let Some(i) = args.iter().position(|a| a == "--write-input") {
        write_input(Path::new(&args[i + 1]), api, records);
        return;
    }
    let input = input_file(api, records);
    let bytes = std::fs::metadata(&input).unwrap().len();
    let me = std::env::current_exe().unwrap();
    let normalize = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["normalize", "--api", api.as_str()]).args(extra);
        c
    };
    // Once, counted: every record gives a document.
    assert_eq!(
        count_documents(normalize(&[]), &input),
        records,
        "one document per record"
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "input: {} ({records} {} records, {:.0} MB); stdout to /dev/null; {runs} alternating runs; {cpus} CPUs",
        input.display(),
        api.as_str(),
        bytes as f64 / 1e6
    );
    let (mut ours, mut one, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(measure(&mut normalize(&[]), &input));
        one.push(measure(&mut normalize(&["--threads", "1"]), &input));
        theirs.push(measure(Command::new(&me).arg("--value-roundtrip"), &input));
    }
    let report = |name: &str, runs: &[Run]| {
        let wall = median(runs.iter().map(|r| r.wall).collect());
        let cpu = median(runs.iter().map(|r| r.cpu).collect());
        let peak = runs.iter().map(|r| r.peak_kib).max().unwrap();
        println!(
            "{name:<44} median {wall:>6.2} s wall ({:>7.0} records/s), {cpu:>6.2} CPU s, peak RSS {:.1} MiB",
            records as f64 / wall,
            peak as f64 / 1024.0
        );
        (wall, cpu)
    };
    let command = format!(
        "confluence-audit-forwarder normalize --api {}",
        api.as_str()
    );
    let (w1, c1) = report(&command, &ours);
    let (w1t, c1t) = report(&format!("{command} --threads 1"), &one);
    let (w2, c2) = report("Value round trip (--value-roundtrip)", &theirs);
    println!(
        "ratio (Value round trip time / normalize time): {:.2} wall, {:.2} CPU; with --threads 1: {:.2} wall, {:.2} CPU",
        w2 / w1,
        c2 / c1,
        w2 / w1t,
        c2 / c1t
    );
}
