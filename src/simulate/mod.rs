//! A Confluence audit API simulator, faithful to the real APIs' traps, for `demo`, tests and
//! benchmarks — Confluence itself cannot run here.
//!
//! It serves, on one listener, the Server/DC legacy `/rest/api/audit`, Cloud
//! `/wiki/rest/api/audit` and DC advanced-auditing `/rest/auditing/1.0/events` APIs over one
//! store of events, with what makes them hard to poll: newest-first pages, inclusive
//! millisecond bounds, a silently capped `limit`, `_links.next` / `pagingInfo`, an "Audit Log
//! search performed" event written by every advanced-auditing query, many records in one
//! millisecond, byte-identical twins, late commits, clock skew, and switchable faults (429
//! and 503 with `Retry-After`, 500, slow answers, truncated bodies).
//!
//! [`Simulator::ground_truth`] renders every stored record exactly as the API would, so
//! tests can compare what a sink received with what Confluence holds.

pub mod catalog;
pub mod render;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::normalize::Api;
use catalog::{Compact, Record};

/// How the simulated instance behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// The instance's base URL as Confluence knows it (`system`, object URIs, links). Not
    /// the listen address: records must not change when the server moves.
    pub base_url: String,
    /// The server's silent cap on `limit`.
    pub page_cap: usize,
    /// `GET …/audit/retention`: (number, units).
    pub retention: (u32, &'static str),
    pub auth: SimAuth,
    /// Simulator clock minus real time, ms.
    pub skew_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            base_url: "http://confluence.sim.internal:8090".into(),
            page_cap: 1000,
            retention: (3, "YEARS"),
            auth: SimAuth::None,
            skew_ms: 0,
        }
    }
}

/// What credentials the simulator requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimAuth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

/// Faults to inject. Probabilities apply to every request; `next` faults are served first,
/// one per request.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub rate_limit: f64,
    pub unavailable: f64,
    pub server_error: f64,
    pub truncate: f64,
    pub slow: f64,
    pub slow_by: Duration,
    pub retry_after_secs: u64,
    pub next: Vec<Fault>,
    /// Answer 403 to everything (a user without the administrator permission).
    pub forbidden: bool,
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After`.
    RateLimit,
    /// 503 with `Retry-After`.
    Unavailable,
    /// 500.
    ServerError,
    /// 200 with the first part of the body only.
    Truncate,
    /// Answer after `slow_by`.
    Slow,
}

/// A stored event.
#[derive(Debug, Clone)]
enum Stored {
    Compact(Compact),
    Full(Arc<Record>),
}

struct Shared {
    cfg: SimConfig,
    /// (time ms, insertion id) → event. Newest first is a reverse range.
    events: RwLock<BTreeMap<(i64, u64), Stored>>,
    next_id: AtomicU64,
    rng: Mutex<StdRng>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    faults_served: AtomicU64,
}

/// A handle on the simulator; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Simulator {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Simulator {
            shared: Arc::new(Shared {
                cfg,
                events: RwLock::default(),
                next_id: AtomicU64::new(1),
                rng: Mutex::new(rng),
                faults: Mutex::default(),
                requests: AtomicU64::new(0),
                faults_served: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    /// The simulator's clock (real time plus the configured skew), epoch ms.
    pub fn now_ms(&self) -> i64 {
        crate::source::now_ms() + self.shared.cfg.skew_ms
    }

    /// Serve all three APIs on `addr` (port 0: any free port) until the server is dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SimServer> {
        server::serve(self.clone(), addr).await
    }

    fn insert(&self, ts_ms: i64, ev: Stored) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .events
            .write()
            .expect("events lock")
            .insert((ts_ms, id), ev);
    }

    /// `n` realistic events spread over `[from_ms, to_ms]`: every Soteri kind at least once
    /// (when `n` allows), about 1% identical twins and a few bursts in one millisecond.
    pub fn seed_history(&self, n: usize, from_ms: i64, to_ms: i64) {
        let mut rng = self.shared.rng.lock().expect("rng lock");
        let mut batch = Vec::with_capacity(n);
        let span = (to_ms - from_ms).max(0);
        let mut i = 0;
        while i < n {
            let ts = from_ms + rng.random_range(0..=span);
            let forced = (i < catalog::SOTERI_KINDS).then_some(i);
            let ev = catalog::draw(&mut rng, forced);
            let roll: f64 = rng.random();
            let copies = if roll < 0.01 {
                2 // identical twins
            } else if roll < 0.015 {
                rng.random_range(3..12) // a burst: the same record again and again
            } else {
                1
            };
            for _ in 0..copies.min(n - i) {
                batch.push((ts, ev));
                i += 1;
            }
            // Different records in the same millisecond, too.
            if rng.random_bool(0.02) && i < n {
                batch.push((ts, catalog::draw(&mut rng, None)));
                i += 1;
            }
        }
        drop(rng);
        let mut events = self.shared.events.write().expect("events lock");
        for (ts, ev) in batch {
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            events.insert((ts, id), Stored::Compact(ev));
        }
    }

    /// One random event at `ts_ms` (a late commit when `ts_ms` is in the past); `kind` is an
    /// index into [`catalog::KINDS`]. Returns how many records were inserted (1).
    pub fn insert_random(&self, ts_ms: i64, kind: Option<usize>) {
        let ev = catalog::draw(&mut self.shared.rng.lock().expect("rng lock"), kind);
        self.insert(ts_ms, Stored::Compact(ev));
    }

    /// `n` different events in one millisecond.
    pub fn insert_burst_same_ms(&self, ts_ms: i64, n: usize) {
        for _ in 0..n {
            self.insert_random(ts_ms, None);
        }
    }

    /// `copies` byte-identical records at `ts_ms`.
    pub fn insert_twins(&self, ts_ms: i64, copies: usize) {
        let ev = catalog::draw(&mut self.shared.rng.lock().expect("rng lock"), None);
        for _ in 0..copies {
            self.insert(ts_ms, Stored::Compact(ev));
        }
    }

    /// A hand-made record (hostile text, say).
    pub fn insert_record(&self, record: Record) {
        let ts = record.ts_ms;
        self.insert(ts, Stored::Full(Arc::new(record)));
    }

    /// Start a steady arrival of events stamped with the simulator's now; stops when the
    /// handle is dropped.
    pub fn start_arrivals(&self, rate_per_s: f64, mix: ArrivalMix) -> ArrivalHandle {
        let sim = self.clone();
        let task = tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / rate_per_s.max(0.001));
            let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
            let per_tick = (rate_per_s * tick.period().as_secs_f64()).max(1.0).round() as usize;
            loop {
                tick.tick().await;
                for _ in 0..per_tick {
                    let now = sim.now_ms();
                    let (roll, delay): (f64, i64) = {
                        let mut rng = sim.shared.rng.lock().expect("rng lock");
                        (rng.random(), rng.random_range(0..=mix.late_max_ms.max(0)))
                    };
                    if roll < mix.twins {
                        sim.insert_twins(now, 2);
                    } else if roll < mix.twins + mix.late {
                        sim.insert_random(now - delay, None);
                    } else if roll < mix.twins + mix.late + mix.bursts {
                        sim.insert_burst_same_ms(now, 5);
                    } else {
                        sim.insert_random(now, None);
                    }
                }
            }
        });
        ArrivalHandle { task }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().expect("faults lock") = faults;
    }

    /// Requests answered, and how many of them with a fault.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
    pub fn fault_count(&self) -> u64 {
        self.shared.faults_served.load(Ordering::Relaxed)
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.shared.events.read().expect("events lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored record, oldest first, rendered as `api` returns it (the exact bytes).
    pub fn ground_truth(&self, api: Api) -> Vec<String> {
        self.ground_truth_between(api, i64::MIN, i64::MAX)
    }

    /// The stored records in `[from_ms, to_ms]`, oldest first, rendered as `api` returns them.
    pub fn ground_truth_between(&self, api: Api, from_ms: i64, to_ms: i64) -> Vec<String> {
        let events = self.shared.events.read().expect("events lock");
        events
            .range((from_ms, 0)..=(to_ms, u64::MAX))
            .map(|((ts, _), ev)| {
                let mut out = Vec::new();
                self.render(api, *ts, ev, &mut out);
                String::from_utf8(out).expect("JSON is UTF-8")
            })
            .collect()
    }

    fn render(&self, api: Api, ts_ms: i64, ev: &Stored, out: &mut Vec<u8>) {
        let base = &self.shared.cfg.base_url;
        match ev {
            Stored::Compact(c) => render::render(api, &catalog::expand(ts_ms, *c, base), base, out),
            Stored::Full(r) => render::render(api, r, base, out),
        }
    }
}

/// The mix of a steady arrival process (fractions of arrivals).
#[derive(Debug, Clone, Copy, Default)]
pub struct ArrivalMix {
    /// Two identical records.
    pub twins: f64,
    /// Committed late: stamped up to `late_max_ms` in the past.
    pub late: f64,
    pub late_max_ms: i64,
    /// Five different records in one millisecond.
    pub bursts: f64,
}

/// Stops the arrivals when dropped.
pub struct ArrivalHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ArrivalHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running simulator server; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// `http://ADDR`, the URL to configure a source with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `simulate` subcommand options.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Records to pre-seed, spread over the last `--history-span`.
    #[arg(long, default_value_t = 5000)]
    pub history: usize,
    #[arg(long, default_value = "24h", value_parser = crate::config::parse_duration)]
    pub history_span: Duration,
    /// New events per second (0: none).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// The server's silent cap on page size.
    #[arg(long, default_value_t = 1000)]
    pub page_cap: usize,
    /// Fraction of requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,
    /// Fraction of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub fault_500: f64,
    /// Fraction of requests answered with a truncated body.
    #[arg(long, default_value_t = 0.0)]
    pub fault_truncate: f64,
    /// Require HTTP Basic auth with this user:password.
    #[arg(long)]
    pub basic_auth: Option<String>,
}

/// Serve until Ctrl-C / SIGTERM.
pub async fn serve_forever(opts: SimulateOptions) -> anyhow::Result<()> {
    let auth = match &opts.basic_auth {
        Some(up) => {
            let (u, p) = up
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--basic-auth wants user:password"))?;
            SimAuth::Basic {
                username: u.into(),
                password: p.into(),
            }
        }
        None => SimAuth::None,
    };
    let sim = Simulator::new(SimConfig {
        seed: opts.seed,
        page_cap: opts.page_cap,
        auth,
        ..SimConfig::default()
    });
    let now = sim.now_ms();
    sim.seed_history(
        opts.history,
        now - opts.history_span.as_millis() as i64,
        now,
    );
    sim.set_faults(Faults {
        rate_limit: opts.fault_429,
        server_error: opts.fault_500,
        truncate: opts.fault_truncate,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let server = sim.serve(opts.listen).await?;
    let _arrivals = (opts.rate > 0.0).then(|| sim.start_arrivals(opts.rate, ArrivalMix::default()));
    tracing::info!(
        url = %server.url(),
        records = sim.len(),
        "simulator serving /rest/api/audit, /wiki/rest/api/audit, /rest/auditing/1.0/events"
    );
    crate::daemon::wait_for_stop().await;
    Ok(())
}
