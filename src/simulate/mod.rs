//! A Confluence audit API simulator, faithful to the real APIs' traps, for `demo`, tests and
//! benchmarks — Confluence itself cannot run here.
//!
//! It serves, on one listener, the Server/DC legacy `/rest/api/audit`, Cloud
//! `/wiki/rest/api/audit` and DC advanced-auditing `/rest/auditing/1.0/events` APIs over one
//! store of events, with what makes them hard to poll: newest-first pages, inclusive
//! millisecond bounds, a silently capped `limit`, `_links.next` / `pagingInfo`, an "Audit Log
//! search performed" event written by every advanced-auditing query, many records in one
//! millisecond, byte-identical twins, late commits, clock skew, and switchable faults (429
//! and 503 with `Retry-After`, 500, slow answers, truncated bodies, connections cut
//! mid-body).
//!
//! [`Simulator::ground_truth`] renders every stored record exactly as the API would, so
//! tests can compare what a sink received with what Confluence holds.
//!
//! Known liberty: the Cloud endpoint serves the same store as the others, Soteri events
//! included, although Soteri's Cloud app cannot write to the Atlassian audit log.
//!
//! Layout: [`catalog`] generates the seeded data (the 24 Soteri events and common Confluence
//! ones), [`render`] writes a record in each API's shape, `store` keeps records sorted for
//! paging, `faults` rolls injected faults, `server` answers HTTP, `options` is the
//! `simulate` subcommand.

pub mod catalog;
mod faults;
mod options;
pub mod organization;
pub mod render;
mod server;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::normalize::Api;
use catalog::Record;
pub use faults::{Fault, Faults};
pub use options::{SimulateOptions, serve_forever};
use store::{Store, Stored};

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

struct Shared {
    cfg: SimConfig,
    store: RwLock<Store>,
    /// Draws the data; seeded, so the same calls give the same records.
    rng: Mutex<StdRng>,
    faults: Mutex<faults::FaultState>,
    requests: AtomicU64,
    faults_served: AtomicU64,
    /// The organization audit log (`organization`), a store of its own.
    org: organization::OrgLog,
}

/// A handle on the simulator; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Simulator {
        let rng = StdRng::seed_from_u64(cfg.seed);
        let seed = cfg.seed;
        Simulator {
            shared: Arc::new(Shared {
                faults: Mutex::new(faults::FaultState::new(cfg.seed)),
                cfg,
                store: RwLock::default(),
                rng: Mutex::new(rng),
                requests: AtomicU64::new(0),
                faults_served: AtomicU64::new(0),
                org: organization::OrgLog::new(seed),
            }),
        }
    }

    /// The organization audit log this simulator serves.
    pub fn org(&self) -> &organization::OrgLog {
        &self.shared.org
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

    fn insert(&self, ts_ms: i64, ev: Stored) -> u64 {
        self.shared
            .store
            .write()
            .expect("store lock")
            .insert(ts_ms, ev)
    }

    /// `n` realistic events spread over `[from_ms, to_ms]`: every one of the 24 Soteri kinds
    /// at least once (when `n >= 24`), about 1% identical twins, some runs of 3 to 11
    /// identical records and some different records sharing a millisecond.
    pub fn seed_history(&self, n: usize, from_ms: i64, to_ms: i64) {
        let mut rng = self.shared.rng.lock().expect("rng lock");
        let mut batch = Vec::with_capacity(n);
        let span = (to_ms - from_ms).max(0);
        let mut i = 0;
        while i < n {
            let ts = from_ms + rng.random_range(0..=span);
            // The first 24 records are one of each Soteri kind, plain.
            if i < catalog::SOTERI_KINDS {
                batch.push((ts, catalog::draw(&mut rng, Some(i))));
                i += 1;
                continue;
            }
            let ev = catalog::draw(&mut rng, None);
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
        self.shared
            .store
            .write()
            .expect("store lock")
            .extend(batch.into_iter().map(|(ts, ev)| (ts, Stored::Compact(ev))));
    }

    /// One random event at `ts_ms` (a late commit when `ts_ms` is in the past); `kind` is an
    /// index into [`catalog::KINDS`] (the first [`catalog::SOTERI_KINDS`] are Soteri's).
    pub fn insert_random(&self, ts_ms: i64, kind: Option<usize>) {
        let ev = catalog::draw(&mut self.shared.rng.lock().expect("rng lock"), kind);
        self.insert(ts_ms, Stored::Compact(ev));
    }

    /// A late commit: one random event inserted now, stamped `delay_ms` before the
    /// simulator's now. Returns its timestamp.
    pub fn insert_late(&self, delay_ms: i64) -> i64 {
        let ts = self.now_ms() - delay_ms;
        self.insert_random(ts, None);
        ts
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

    /// Replace the injected faults (takes effect on the next request).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.lock().expect("faults lock").faults = faults;
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
        self.shared.store.read().expect("store lock").len()
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
        let store = self.shared.store.read().expect("store lock");
        store
            .window(from_ms, to_ms)
            .iter()
            .map(|e| {
                let mut out = Vec::new();
                self.render(api, e.ts, &e.ev, &mut out);
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

/// A running simulator server; stops when dropped or shut down.
pub struct SimServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SimServer {
    /// Stop accepting, close idle connections, and wait for answers in flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// `http://ADDR`, the URL to configure a source with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // Graceful: idle keep-alive connections close too, so a "down" Confluence is down.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
