//! The simulated Atlassian organization audit log: `GET /admin/v1/orgs/{orgId}/events-stream`
//! and `/event-actions`, as `../shared/spec/atlassian-org-audit-api.md` describes them, traps
//! included:
//!
//! - events ordered by `processedAt`, many of which happened (`time`) well before;
//! - `from`/`to` inclusive, on processing time, in epoch milliseconds;
//! - the JSON:API envelope, an opaque cursor on every page, the last one too (or, with
//!   [`OrgFaults::omit_cursor`], `"next": null` as Elastic's test server answers);
//! - a cursor older than [`OrgFaults::cursor_ttl_ms`] refused with a 400;
//! - 50 requests a minute (sliding), over which a 429 with `Retry-After`, and
//!   [`OrgFaults::storm`] 429s in a row on demand;
//! - a Bearer key required (the configured one, if the simulator has one).
//!
//! Its events are its own store, apart from the Confluence records the other endpoints serve.

pub mod events;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::{SimAuth, Simulator};

/// Atlassian's limit per API path.
pub const REQUESTS_PER_MINUTE: usize = 50;
const MAX_LIMIT: usize = 500;

/// Switchable misbehaviour of the organization endpoint.
#[derive(Debug, Clone, Default)]
pub struct OrgFaults {
    /// Pages carry `"next": null` and no `links.next`.
    pub omit_cursor: bool,
    /// Cursors issued longer ago than this (simulator clock) are refused with a 400.
    pub cursor_ttl_ms: Option<i64>,
    /// The next this many requests get a 429 whatever the rate.
    pub storm: u32,
    /// `Retry-After` of a storm's 429s, seconds.
    pub storm_retry_after_secs: u64,
}

/// What the endpoint answered, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrgCounts {
    pub requests: u64,
    pub rate_limited: u64,
    pub stale_cursors: u64,
}

/// The organization's events and the endpoint's state.
pub struct OrgLog {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Sorted by (processedAt, seq): the stream's order.
    events: Vec<(i64, u64, Value)>,
    seq: u64,
    rng: StdRng,
    faults: OrgFaults,
    /// Simulator-clock times of the requests served in the last minute.
    recent: VecDeque<i64>,
    counts: OrgCounts,
}

impl OrgLog {
    pub(super) fn new(seed: u64) -> OrgLog {
        OrgLog {
            inner: Mutex::new(Inner {
                events: Vec::new(),
                seq: 0,
                rng: StdRng::seed_from_u64(seed ^ 0x0e9a_u64),
                faults: OrgFaults::default(),
                recent: VecDeque::new(),
                counts: OrgCounts::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An event processed at `processed_ms` that happened `delay_ms` earlier; its id.
    pub fn insert(&self, processed_ms: i64, delay_ms: i64) -> String {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        let id = format!("{:08x}-5e7a-4c1d-9b2f-{:012x}", seq as u32, seq);
        let ev = events::event(&mut s.rng, &id, "sim-org", processed_ms, delay_ms);
        let at = s
            .events
            .partition_point(|(p, q, _)| (*p, *q) <= (processed_ms, seq));
        s.events.insert(at, (processed_ms, seq, ev));
        id
    }

    /// `n` events processed over `[from_ms, to_ms]`, each with a realistic processing delay.
    pub fn seed(&self, n: usize, from_ms: i64, to_ms: i64) {
        let span = (to_ms - from_ms).max(1);
        for i in 0..n {
            let processed = from_ms + span * i as i64 / n.max(1) as i64;
            let delay = events::processing_delay(&mut self.lock().rng);
            self.insert(processed, delay);
        }
    }

    pub fn set_faults(&self, faults: OrgFaults) {
        self.lock().faults = faults;
    }

    pub fn counts(&self) -> OrgCounts {
        self.lock().counts
    }

    /// Every event id, in stream order.
    pub fn ids(&self) -> Vec<String> {
        self.lock()
            .events
            .iter()
            .map(|(_, _, e)| e["id"].as_str().expect("events have ids").to_owned())
            .collect()
    }

    /// Change the stored event `id` in place (a server that sends a broken event, for tests
    /// of a misbehaving log; the simulator itself never breaks one). `false`: no such event.
    pub fn tamper(&self, id: &str, change: impl FnOnce(&mut Value)) -> bool {
        let mut s = self.lock();
        match s.events.iter_mut().find(|(_, _, e)| e["id"] == id) {
            Some((_, _, event)) => {
                change(event);
                true
            }
            None => false,
        }
    }

    /// The stored events (`data` elements), in stream order.
    pub fn events(&self) -> Vec<Value> {
        self.lock()
            .events
            .iter()
            .map(|(_, _, e)| e.clone())
            .collect()
    }
}

/// `GET /admin/v1/orgs/{orgId}/events-stream`
pub(super) async fn events_stream(
    State(sim): State<Simulator>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refuse(&sim, &headers) {
        return refused;
    }
    let now = sim.now_ms();
    let mut s = sim.shared.org.lock();
    match page(&mut s, &org_id, &q, now) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(message) => {
            if message.contains("cursor") {
                s.counts.stale_cursors += 1;
            }
            problem(StatusCode::BAD_REQUEST, &message)
        }
    }
}

/// `GET /admin/v1/orgs/{orgId}/event-actions`
pub(super) async fn event_actions(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse(&sim, &headers) {
        return refused;
    }
    let data: Vec<Value> = events::actions()
        .map(|(key, name)| json!({"id": key, "type": "event-actions", "attributes": {"displayName": name}}))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"data": data}).to_string(),
    )
        .into_response()
}

/// Auth, then the rate limit: the answer that stops the request, if any.
fn refuse(sim: &Simulator, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authorized = match &sim.shared.cfg.auth {
        SimAuth::Bearer(token) => given == format!("Bearer {token}"),
        _ => given
            .strip_prefix("Bearer ")
            .is_some_and(|t| !t.trim().is_empty()),
    };
    let now = sim.now_ms();
    let mut s = sim.shared.org.lock();
    s.counts.requests += 1;
    if !authorized {
        return Some(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized; scope does not match",
        ));
    }
    while s.recent.front().is_some_and(|t| *t <= now - 60_000) {
        s.recent.pop_front();
    }
    let retry_after = if s.faults.storm > 0 {
        s.faults.storm -= 1;
        Some(s.faults.storm_retry_after_secs)
    } else if s.recent.len() >= REQUESTS_PER_MINUTE {
        let oldest = *s.recent.front().expect("a full window");
        Some(((oldest + 60_000 - now) as u64).div_ceil(1000).max(1))
    } else {
        None
    };
    if let Some(secs) = retry_after {
        s.counts.rate_limited += 1;
        let mut r = problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Some(r);
    }
    s.recent.push_back(now);
    None
}

fn problem(status: StatusCode, title: &str) -> Response {
    let body = json!({"errors": [{"status": status.as_u16().to_string(), "title": title}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Where a cursor points: after (processedAt, seq), in this order, issued at this time.
struct Cursor {
    after: (i64, u64),
    desc: bool,
    to: i64,
    issued: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        let text = format!(
            "{}:{}:{}:{}:{}",
            self.after.0,
            self.after.1,
            if self.desc { "desc" } else { "asc" },
            self.to,
            self.issued
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(s: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let p: Vec<&str> = text.split(':').collect();
        let [ms, seq, order, to, issued] = p.as_slice() else {
            return None;
        };
        Some(Cursor {
            after: (ms.parse().ok()?, seq.parse().ok()?),
            desc: *order == "desc",
            to: to.parse().ok()?,
            issued: issued.parse().ok()?,
        })
    }
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, String> {
    q.get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("`{name}` must be epoch milliseconds: {v:?}"))
        })
        .transpose()
}

/// One page of the stream, or the message of a 400.
fn page(
    s: &mut Inner,
    org_id: &str,
    q: &HashMap<String, String>,
    now: i64,
) -> Result<String, String> {
    let limit = match q.get("limit") {
        None => 200,
        Some(v) => match v.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => n,
            _ => return Err(format!("`limit` must be within 1..{MAX_LIMIT}: {v:?}")),
        },
    };
    let (start, desc, to) = match q.get("cursor") {
        Some(c) => {
            let cursor = Cursor::decode(c).ok_or("invalid cursor")?;
            if s.faults
                .cursor_ttl_ms
                .is_some_and(|ttl| now - cursor.issued > ttl)
            {
                return Err("the cursor has expired".into());
            }
            (Bound::After(cursor.after), cursor.desc, cursor.to)
        }
        None => {
            let from = number(q, "from")?.unwrap_or(i64::MIN);
            let to = number(q, "to")?.unwrap_or(i64::MAX);
            let desc = match q.get("sortOrder").map(String::as_str) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => return Err(format!("`sortOrder` must be asc or desc: {other:?}")),
            };
            (Bound::From(from), desc, to)
        }
    };
    let selected: Vec<&(i64, u64, Value)> = if desc {
        s.events
            .iter()
            .rev()
            .filter(|(p, q, _)| *p <= to && start.admits_desc((*p, *q)))
            .take(limit)
            .collect()
    } else {
        s.events
            .iter()
            .filter(|(p, q, _)| *p <= to && start.admits_asc((*p, *q)))
            .take(limit)
            .collect()
    };
    // The cursor continues after the last event served (or where the request started).
    let after = selected
        .last()
        .map(|(p, q, _)| (*p, *q))
        .unwrap_or(match start {
            Bound::After(a) => a,
            Bound::From(f) if desc => (f, 0),
            Bound::From(f) => (f.saturating_sub(1), u64::MAX),
        });
    let data: Vec<&Value> = selected.iter().map(|(_, _, e)| e).collect();
    let base = format!("https://api.atlassian.com/admin/v1/orgs/{org_id}/events-stream");
    let cursor = (!s.faults.omit_cursor).then(|| {
        Cursor {
            after,
            desc,
            to,
            issued: now,
        }
        .encode()
    });
    let body = json!({
        "data": data,
        "meta": {"next": cursor, "page_size": limit},
        "links": {"self": base, "next": cursor.as_ref().map(|c| format!("{base}?cursor={c}"))},
    });
    Ok(body.to_string())
}

/// Where a request starts: at `from` (inclusive) or after a cursor's position.
enum Bound {
    From(i64),
    After((i64, u64)),
}

impl Bound {
    fn admits_asc(&self, key: (i64, u64)) -> bool {
        match self {
            Bound::From(f) => key.0 >= *f,
            Bound::After(a) => key > *a,
        }
    }
    fn admits_desc(&self, key: (i64, u64)) -> bool {
        match self {
            Bound::From(f) => key.0 >= *f,
            Bound::After(a) => key < *a,
        }
    }
}
