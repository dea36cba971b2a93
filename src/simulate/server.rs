//! The simulator's HTTP side: routes, query parsing, paging, auth and fault injection,
//! answering as the real endpoints do — including where that is unhelpful (a silently
//! capped `limit`, a `nextPageLink` that forgets `from`/`to`, a self-event per DC query, a
//! `Date` header on the skewed clock).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;

use super::catalog::{self, Attribute, Author, Record};
use super::store::{Entry, newest_page};
use super::{Fault, SimAuth, SimServer, Simulator, Stored};
use crate::normalize::Api;
use crate::source::paging::iso;

pub(super) async fn serve(sim: Simulator, addr: SocketAddr) -> std::io::Result<SimServer> {
    let app = Router::new()
        .route("/rest/api/audit", get(legacy))
        .route("/wiki/rest/api/audit", get(cloud))
        .route("/rest/api/audit/retention", get(retention))
        .route("/wiki/rest/api/audit/retention", get(retention))
        .route("/rest/auditing/1.0/events", get(auditing))
        .route("/status", get(status))
        .route(
            "/admin/v1/orgs/{org_id}/events-stream",
            get(super::organization::events_stream),
        )
        .route(
            "/admin/v1/orgs/{org_id}/event-actions",
            get(super::organization::event_actions),
        )
        .with_state(sim);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(SimServer {
        addr,
        task,
        stop: Some(stop),
    })
}

type Params = Query<HashMap<String, String>>;
type Answer = Result<String, (StatusCode, String)>;

async fn legacy(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Params) -> Response {
    guarded(&sim, &headers, |sim, _| record_page(sim, Api::Legacy, &q)).await
}

async fn cloud(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Params) -> Response {
    guarded(&sim, &headers, |sim, _| record_page(sim, Api::Cloud, &q)).await
}

async fn retention(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    guarded(&sim, &headers, |sim, _| {
        let (number, units) = sim.shared.cfg.retention;
        Ok(json!({"number": number, "units": units}).to_string())
    })
    .await
}

/// Confluence's unauthenticated health endpoint; its `Date` tells the server's clock.
async fn status(State(sim): State<Simulator>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"state":"RUNNING"}"#,
    )
        .into_response();
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(sim.now_ms().max(0) as u64);
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

async fn auditing(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Params) -> Response {
    guarded(&sim, &headers, |sim, who| entity_page(sim, &q, who)).await
}

/// Auth, then faults, then the handler (given who asked); a truncation fault cuts the
/// handler's body. Every answer carries a `Date` on the simulator's (skewed) clock.
async fn guarded(
    sim: &Simulator,
    headers: &HeaderMap,
    handler: impl FnOnce(&Simulator, &str) -> Answer,
) -> Response {
    let mut response = answer(sim, headers, handler).await;
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(sim.now_ms().max(0) as u64);
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        // hyper only adds its own Date when there is none.
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

async fn answer(
    sim: &Simulator,
    headers: &HeaderMap,
    handler: impl FnOnce(&Simulator, &str) -> Answer,
) -> Response {
    sim.shared.requests.fetch_add(1, Ordering::Relaxed);
    let Some(who) = check_auth(&sim.shared.cfg.auth, headers) else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"protected-area\""),
        );
        return r;
    };
    let (fault, retry_after, slow_by) = {
        let mut state = sim.shared.faults.lock().expect("faults lock");
        if state.faults.forbidden {
            return error(
                StatusCode::FORBIDDEN,
                "User is not permitted to view the audit log",
            );
        }
        let fault = state.pick();
        (fault, state.faults.retry_after_secs, state.faults.slow_by)
    };
    if fault.is_some() {
        sim.shared.faults_served.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        Some(Fault::RateLimit) => {
            let reset = sim.now_ms() / 1000 + retry_after as i64;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, retry_after.to_string()),
                    (
                        header::HeaderName::from_static("x-ratelimit-limit"),
                        "100".into(),
                    ),
                    (
                        header::HeaderName::from_static("x-ratelimit-remaining"),
                        "0".into(),
                    ),
                    (
                        header::HeaderName::from_static("x-ratelimit-reset"),
                        iso(reset * 1000),
                    ),
                    (
                        header::HeaderName::from_static("ratelimit-reason"),
                        "confluence-quota-based".into(),
                    ),
                    (header::CONTENT_TYPE, "application/json".into()),
                ],
                json!({"statusCode": 429, "message": "Rate limit exceeded"}).to_string(),
            )
                .into_response();
        }
        Some(Fault::Unavailable) => {
            // A proxy's page, not JSON.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, retry_after.to_string()),
                    (header::CONTENT_TYPE, "text/html".into()),
                ],
                "<html><body><h1>503 Service Unavailable</h1></body></html>",
            )
                .into_response();
        }
        Some(Fault::ServerError) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "java.lang.NullPointerException",
            );
        }
        Some(Fault::Slow) => tokio::time::sleep(slow_by).await,
        Some(Fault::Truncate | Fault::CutConnection) | None => {}
    }
    let body = match handler(sim, &who) {
        Ok(body) => body,
        Err((status, message)) => return error(status, &message),
    };
    let json = [(header::CONTENT_TYPE, "application/json")];
    match fault {
        Some(Fault::Truncate) => {
            // A proxy cut the answer short: valid headers for half a JSON body.
            let mut body = body;
            body.truncate(half(&body));
            (json, body).into_response()
        }
        Some(Fault::CutConnection) => {
            // The node died mid-answer: the full length is announced, half is sent, then the
            // connection goes.
            let full = body.len();
            let mut body = body;
            body.truncate(half(&body));
            let head = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
            // Let the headers and the first half reach the client before the cut.
            let cut = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection cut",
                ))
            });
            let mut r =
                Body::from_stream(futures_util::StreamExt::chain(head, cut)).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
            r
        }
        _ => (json, body).into_response(),
    }
}

/// Half of `s`, on a character boundary.
fn half(s: &str) -> usize {
    let mut cut = s.len() / 2;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"statusCode": status.as_u16(), "message": message}).to_string(),
    )
        .into_response()
}

/// Who is asking (the Basic user name, or the service account behind a token); `None`: 401.
fn check_auth(auth: &SimAuth, headers: &HeaderMap) -> Option<String> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match auth {
        SimAuth::None => Some("svc-audit".to_owned()),
        SimAuth::Basic { username, password } => {
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            (given == format!("Basic {expected}")).then(|| username.clone())
        }
        SimAuth::Bearer(token) => (given == format!("Bearer {token}")).then(|| "svc-audit".into()),
    }
}

fn bad_request(message: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message)
}

fn param_i64(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, (StatusCode, String)> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| bad_request(format!("{name}: not a number: {v}")))
        })
        .transpose()
}

fn parse_iso(v: &str) -> Option<i64> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `startDate`/`endDate`: epoch ms (Cloud, and legacy) or ISO-8601 (legacy only: its real
/// format is unverified).
fn param_date(
    q: &HashMap<String, String>,
    name: &str,
    iso_allowed: bool,
) -> Result<Option<i64>, (StatusCode, String)> {
    let Some(v) = q.get(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    match iso_allowed.then(|| parse_iso(v)).flatten() {
        Some(ms) => Ok(Some(ms)),
        None => Err(bad_request(format!("{name}: not a date: {v}"))),
    }
}

impl Simulator {
    /// The full record behind a stored entry.
    fn record<'a>(&self, e: &'a Entry) -> Cow<'a, Record> {
        match &e.ev {
            Stored::Compact(c) => Cow::Owned(catalog::expand(e.ts, *c, &self.shared.cfg.base_url)),
            Stored::Full(r) => Cow::Borrowed(r),
        }
    }
}

/// `searchString`: a case-insensitive substring of the summary, category, author, objects or
/// values.
fn matches_search(r: &Record, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    let has = |s: &str| s.to_lowercase().contains(&needle);
    has(&r.action)
        || has(&r.category)
        || has(&r.author.display_name)
        || has(&r.author.username)
        || r.affected.iter().any(|o| has(&o.name))
        || r.changed
            .iter()
            .any(|c| has(&c.key) || has(&c.from) || has(&c.to))
        || r.extra.iter().any(|a| has(&a.value))
}

/// Legacy and Cloud: offsets over newest-first records in `[startDate, endDate]`.
fn record_page(sim: &Simulator, api: Api, q: &HashMap<String, String>) -> Answer {
    let from = param_date(q, "startDate", api == Api::Legacy)?.unwrap_or(i64::MIN);
    let to = param_date(q, "endDate", api == Api::Legacy)?.unwrap_or(i64::MAX);
    let start = param_i64(q, "start")?.unwrap_or(0).max(0) as usize;
    let asked = param_i64(q, "limit")?.unwrap_or(1000).max(0) as usize;
    let limit = asked.min(sim.shared.cfg.page_cap);
    let search = q.get("searchString").filter(|s| !s.is_empty());
    let mut body = Vec::with_capacity(limit * 900 + 256);
    body.extend_from_slice(b"{\"results\":[");
    let (n, more) = {
        let store = sim.shared.store.read().expect("store lock");
        let window = store.window(from, to);
        match search {
            None => {
                let (page, more) = newest_page(window, start, limit);
                for (i, e) in page.iter().rev().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    sim.render(api, e.ts, &e.ev, &mut body);
                }
                (page.len(), more)
            }
            // A filter has no index: this walks the window (as Confluence's database does).
            Some(s) => {
                let mut hits = window
                    .iter()
                    .rev()
                    .filter(|e| matches_search(&sim.record(e), s))
                    .skip(start);
                let mut n = 0;
                for e in hits.by_ref().take(limit) {
                    if n > 0 {
                        body.push(b',');
                    }
                    sim.render(api, e.ts, &e.ev, &mut body);
                    n += 1;
                }
                (n, hits.next().is_some())
            }
        }
    };
    let base_url = &sim.shared.cfg.base_url;
    let context = if api == Api::Cloud { "/wiki" } else { "" };
    let base = format!("{base_url}{context}");
    let mut links = json!({
        "base": base,
        "context": context,
        "self": format!("{base}/rest/api/audit"),
    });
    if more {
        // Relative to `base`, as Confluence writes its links.
        let mut next = String::from("/rest/api/audit?");
        for key in ["startDate", "endDate", "searchString"] {
            if let Some(v) = q.get(key) {
                next.push_str(&format!("{key}={}&", urlencode(v)));
            }
        }
        next.push_str(&format!("limit={limit}&start={}", start + n));
        links["next"] = next.into();
    }
    let tail = format!("],\"start\":{start},\"limit\":{limit},\"size\":{n},\"_links\":{links}}}");
    body.extend_from_slice(tail.as_bytes());
    Ok(String::from_utf8(body).expect("JSON is UTF-8"))
}

/// `pageCursor`: `<epochMillis>,<id>` (the comma arrives decoded).
fn param_cursor(q: &HashMap<String, String>) -> Result<Option<(i64, u64)>, (StatusCode, String)> {
    let Some(c) = q.get("pageCursor").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let bad = || bad_request(format!("pageCursor: expected <epochMillis>,<id>: {c}"));
    let (ms, id) = c.split_once(',').ok_or_else(bad)?;
    Ok(Some((
        ms.trim().parse().map_err(|_| bad())?,
        id.trim().parse().map_err(|_| bad())?,
    )))
}

/// DC advanced auditing: keyset paging by `pageCursor`, and a self-event per query.
fn entity_page(sim: &Simulator, q: &HashMap<String, String>, who: &str) -> Answer {
    let iso_param = |name: &str| -> Result<Option<i64>, (StatusCode, String)> {
        let Some(v) = q.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        parse_iso(v)
            .map(Some)
            .ok_or_else(|| bad_request(format!("{name}: not an ISO-8601 time: {v}")))
    };
    let from = iso_param("from")?.unwrap_or(i64::MIN);
    let to = iso_param("to")?.unwrap_or(i64::MAX);
    let asked = param_i64(q, "limit")?.unwrap_or(200).clamp(1, 100_000) as usize;
    let limit = asked.min(sim.shared.cfg.page_cap);
    let offset = param_i64(q, "offset")?.unwrap_or(0).max(0) as usize;
    let cursor = param_cursor(q)?;
    let base = &sim.shared.cfg.base_url;
    let mut body = Vec::with_capacity(limit * 1100 + 256);
    body.extend_from_slice(b"{\"entities\":[");
    let (n, more, last, ids, times) = {
        let store = sim.shared.store.read().expect("store lock");
        let window = match cursor {
            Some(below) => store.window_below(from, to, below),
            None => store.window(from, to),
        };
        let (page, more) = newest_page(window, offset, limit);
        for (i, e) in page.iter().rev().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            sim.render(Api::Auditing, e.ts, &e.ev, &mut body);
        }
        let ids = page.iter().map(|e| e.id);
        let ids = ids.clone().min().zip(ids.max());
        let times = page.first().zip(page.last()).map(|(o, nw)| (o.ts, nw.ts));
        (
            page.len(),
            more,
            page.first().map(|e| (e.ts, e.id)),
            ids,
            times,
        )
    };
    let paging = match (more, last) {
        // Only offset, limit and the cursor: `from`/`to` are not carried over.
        (true, Some((ms, id))) => json!({
            "lastPage": false,
            "nextPageOffset": 0,
            "nextPageCursor": format!("{ms},{id}"),
            "nextPageLink": format!("{base}/rest/auditing/1.0/events?offset=0&limit={limit}&pageCursor={ms},{id}"),
            "size": n,
        }),
        _ => json!({"lastPage": true, "size": n}),
    };
    body.extend_from_slice(format!("],\"pagingInfo\":{paging}}}").as_bytes());

    // Every search of this API is itself audited, stamped now.
    let query = [("from", "From"), ("to", "To"), ("search", "Search")]
        .iter()
        .filter_map(|(k, label)| q.get(*k).map(|v| format!("{label} : {v};")))
        .collect::<String>();
    let id_range = ids
        .map(|(lo, hi)| format!("{lo} - {hi}"))
        .unwrap_or_default();
    let time_range = times
        .map(|(o, nw)| format!("{} - {}", iso(o), iso(nw)))
        .unwrap_or_default();
    sim.insert_record(search_event(
        sim.now_ms(),
        who,
        n,
        query,
        id_range,
        time_range,
    ));
    Ok(String::from_utf8(body).expect("JSON is UTF-8"))
}

/// The "Audit Log search performed" record a query writes, authored by whoever asked.
fn search_event(
    ts_ms: i64,
    who: &str,
    results: usize,
    query: String,
    id_range: String,
    time_range: String,
) -> Record {
    let attr = |name: &str, key: &str, value: String| Attribute {
        name: name.into(),
        key: format!("atlassian.audit.event.attribute.{key}"),
        value,
    };
    Record {
        ts_ms,
        author: Author {
            id: catalog::user_key(who),
            username: who.into(),
            display_name: if who == "svc-audit" {
                "Audit Service Account".into()
            } else {
                who.into()
            },
        },
        source_ip: "10.20.0.99".into(),
        category: "Auditing".into(),
        category_key: "atlassian.audit.event.category.audit".into(),
        action: "Audit Log search performed".into(),
        action_key: "atlassian.audit.event.action.audit.search".into(),
        area: "AUDIT_LOG".into(),
        affected: Vec::new(),
        changed: Vec::new(),
        // In the order the REST API lists them.
        extra: vec![
            attr("ID Range", "id", id_range),
            attr("Query", "query", query),
            attr("Results returned", "results", results.to_string()),
            attr("Timestamp Range", "timestamp", time_range),
        ],
    }
}

fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
