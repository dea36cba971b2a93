//! The simulator's HTTP side: routes, query parsing, paging, auth and fault injection,
//! answering as the real endpoints do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use rand::Rng;
use serde_json::json;

use super::catalog::{Attribute, Author, Record};
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
        .with_state(sim);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(SimServer { addr, task })
}

type Params = Query<HashMap<String, String>>;

async fn legacy(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Params) -> Response {
    guarded(&sim, &headers, |sim| record_page(sim, Api::Legacy, &q)).await
}

async fn cloud(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Params) -> Response {
    guarded(&sim, &headers, |sim| record_page(sim, Api::Cloud, &q)).await
}

async fn retention(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    guarded(&sim, &headers, |sim| {
        let (number, units) = sim.shared.cfg.retention;
        Ok(json!({"number": number, "units": units}).to_string())
    })
    .await
}

async fn auditing(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Params) -> Response {
    guarded(&sim, &headers, |sim| entity_page(sim, &q)).await
}

/// Auth, then faults, then the handler; a truncation fault cuts the handler's body. The
/// `Date` header is the simulator's clock, skew included, as a real server's would be.
async fn guarded(
    sim: &Simulator,
    headers: &HeaderMap,
    handler: impl FnOnce(&Simulator) -> Result<String, (StatusCode, String)>,
) -> Response {
    let mut response = answer(sim, headers, handler).await;
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(sim.now_ms().max(0) as u64);
    if let Ok(v) = httpdate::fmt_http_date(now).parse() {
        response.headers_mut().insert(header::DATE, v);
    }
    response
}

async fn answer(
    sim: &Simulator,
    headers: &HeaderMap,
    handler: impl FnOnce(&Simulator) -> Result<String, (StatusCode, String)>,
) -> Response {
    sim.shared.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(denied) = check_auth(&sim.shared.cfg.auth, headers) {
        return denied;
    }
    let (fault, retry_after, slow_by) = {
        let mut faults = sim.shared.faults.lock().expect("faults lock");
        if faults.forbidden {
            return error(
                StatusCode::FORBIDDEN,
                "User is not permitted to view the audit log",
            );
        }
        let fault = if faults.next.is_empty() {
            let mut rng = sim.shared.rng.lock().expect("rng lock");
            let roll: f64 = rng.random();
            let mut acc = 0.0;
            let mut pick = None;
            for (p, f) in [
                (faults.rate_limit, Fault::RateLimit),
                (faults.unavailable, Fault::Unavailable),
                (faults.server_error, Fault::ServerError),
                (faults.truncate, Fault::Truncate),
                (faults.slow, Fault::Slow),
            ] {
                acc += p;
                if pick.is_none() && roll < acc {
                    pick = Some(f);
                }
            }
            pick
        } else {
            Some(faults.next.remove(0))
        };
        (fault, faults.retry_after_secs, faults.slow_by)
    };
    if fault.is_some() {
        sim.shared.faults_served.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        Some(Fault::RateLimit) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, retry_after.to_string()),
                    (
                        header::HeaderName::from_static("x-ratelimit-remaining"),
                        "0".into(),
                    ),
                    (
                        header::HeaderName::from_static("x-ratelimit-limit"),
                        "100".into(),
                    ),
                    (header::CONTENT_TYPE, "application/json".into()),
                ],
                json!({"statusCode": 429, "message": "Rate limit exceeded"}).to_string(),
            )
                .into_response();
        }
        Some(Fault::Unavailable) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, retry_after.to_string())],
                "Service Unavailable",
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
        Some(Fault::Truncate) | None => {}
    }
    match handler(sim) {
        Ok(mut body) => {
            if fault == Some(Fault::Truncate) {
                // A proxy or a node cut the answer short: valid headers, half a JSON body.
                let mut cut = body.len() / 2;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err((status, message)) => error(status, &message),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"statusCode": status.as_u16(), "message": message}).to_string(),
    )
        .into_response()
}

fn check_auth(auth: &SimAuth, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = match auth {
        SimAuth::None => true,
        SimAuth::Basic { username, password } => {
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            given == format!("Basic {expected}")
        }
        SimAuth::Bearer(token) => given == format!("Bearer {token}"),
    };
    (!ok).then(|| {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"protected-area\"".parse().expect("header"),
        );
        r
    })
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

/// `startDate`/`endDate`: epoch ms (Cloud, and legacy) or ISO-8601 (legacy only).
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
    if iso_allowed
        && let Ok(t) =
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
    {
        return Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64));
    }
    Err(bad_request(format!("{name}: not a date: {v}")))
}

/// Legacy and Cloud: offsets over newest-first records in `[startDate, endDate]`.
fn record_page(
    sim: &Simulator,
    api: Api,
    q: &HashMap<String, String>,
) -> Result<String, (StatusCode, String)> {
    let from = param_date(q, "startDate", api == Api::Legacy)?.unwrap_or(i64::MIN);
    let to = param_date(q, "endDate", api == Api::Legacy)?.unwrap_or(i64::MAX);
    let start = param_i64(q, "start")?.unwrap_or(0).max(0) as usize;
    let asked = param_i64(q, "limit")?.unwrap_or(1000).max(0) as usize;
    let limit = asked.min(sim.shared.cfg.page_cap);
    let search = q.get("searchString").filter(|s| !s.is_empty());
    let base = &sim.shared.cfg.base_url;
    let mut body = Vec::with_capacity(limit * 900 + 256);
    body.extend_from_slice(b"{\"results\":[");
    let mut n = 0;
    let mut more = false;
    {
        let events = sim.shared.events.read().expect("events lock");
        let mut matching = events
            .range((from, 0)..=(to, u64::MAX))
            .rev()
            .filter(|(_, ev)| search.is_none_or(|s| matches_search(sim, ev, s)));
        for ((ts, _), ev) in matching.by_ref().skip(start) {
            if n == limit {
                more = true;
                break;
            }
            if n > 0 {
                body.push(b',');
            }
            sim.render(api, *ts, ev, &mut body);
            n += 1;
        }
    }
    let (context, path) = if api == Api::Cloud {
        ("/wiki", "/wiki/rest/api/audit")
    } else {
        ("", "/rest/api/audit")
    };
    let mut links = json!({
        "base": format!("{base}{context}"),
        "context": context,
        "self": format!("{base}{path}"),
    });
    if more {
        let mut next = format!("{path}?start={}&limit={limit}", start + n);
        for key in ["startDate", "endDate", "searchString"] {
            if let Some(v) = q.get(key) {
                next.push_str(&format!("&{key}={}", urlencode(v)));
            }
        }
        links["next"] = next.into();
    }
    let tail = format!("],\"start\":{start},\"limit\":{limit},\"size\":{n},\"_links\":{links}}}");
    body.extend_from_slice(tail.as_bytes());
    Ok(String::from_utf8(body).expect("JSON is UTF-8"))
}

fn matches_search(sim: &Simulator, ev: &Stored, s: &str) -> bool {
    let mut out = Vec::new();
    sim.render(Api::Legacy, 0, ev, &mut out);
    String::from_utf8_lossy(&out)
        .to_lowercase()
        .contains(&s.to_lowercase())
}

/// DC advanced auditing: keyset paging by `pageCursor`, and a self-event per query.
fn entity_page(
    sim: &Simulator,
    q: &HashMap<String, String>,
) -> Result<String, (StatusCode, String)> {
    let iso_param = |name: &str| -> Result<Option<i64>, (StatusCode, String)> {
        let Some(v) = q.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|e| bad_request(format!("{name}: not an ISO-8601 time: {v} ({e})")))
    };
    let from = iso_param("from")?.unwrap_or(i64::MIN);
    let to = iso_param("to")?.unwrap_or(i64::MAX);
    let asked = param_i64(q, "limit")?.unwrap_or(200).clamp(1, 100_000) as usize;
    let limit = asked.min(sim.shared.cfg.page_cap);
    let offset = param_i64(q, "offset")?.unwrap_or(0).max(0) as usize;
    let cursor = match q.get("pageCursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let (ms, id) = c.split_once(',').ok_or_else(|| {
                bad_request(format!("pageCursor: expected <epochMillis>,<id>: {c}"))
            })?;
            Some((
                ms.parse::<i64>()
                    .map_err(|_| bad_request(format!("pageCursor: {c}")))?,
                id.parse::<u64>()
                    .map_err(|_| bad_request(format!("pageCursor: {c}")))?,
            ))
        }
    };
    let base = sim.shared.cfg.base_url.clone();
    let mut body = Vec::with_capacity(limit * 1100 + 256);
    body.extend_from_slice(b"{\"entities\":[");
    let mut n = 0;
    let mut last: Option<(i64, u64)> = None;
    let mut more = false;
    let mut oldest_newest: Option<(i64, i64)> = None;
    {
        let events = sim.shared.events.read().expect("events lock");
        let upper = match cursor {
            Some((ms, id)) => (ms, id.saturating_sub(1)).min((to, u64::MAX)),
            None => (to, u64::MAX),
        };
        let range = events.range((from, 0)..=upper).rev().skip(offset);
        for (key, ev) in range {
            if n == limit {
                more = true;
                break;
            }
            if n > 0 {
                body.push(b',');
            }
            sim.render(Api::Auditing, key.0, ev, &mut body);
            last = Some(*key);
            oldest_newest = Some(match oldest_newest {
                None => (key.0, key.0),
                Some((_, newest)) => (key.0, newest),
            });
            n += 1;
        }
    }
    let paging = match (more, last) {
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
    let query = match (q.get("from"), q.get("to")) {
        (Some(f), Some(t)) => format!("From : {f};To : {t};"),
        _ => String::new(),
    };
    let range = oldest_newest
        .map(|(o, nw)| format!("{} - {}", iso(o), iso(nw)))
        .unwrap_or_default();
    sim.insert_record(search_event(sim.now_ms(), n, query, range));
    Ok(String::from_utf8(body).expect("JSON is UTF-8"))
}

/// The "Audit Log search performed" record a query writes, authored by the poller's account.
fn search_event(ts_ms: i64, results: usize, query: String, range: String) -> Record {
    let attr = |name: &str, key: &str, value: String| Attribute {
        name: name.into(),
        key: format!("atlassian.audit.event.attribute.{key}"),
        value,
    };
    Record {
        ts_ms,
        author: Author {
            id: super::catalog::user_key("svc-audit"),
            username: "svc-audit".into(),
            display_name: "Audit Service Account".into(),
        },
        source_ip: "10.20.0.99".into(),
        category: "Auditing".into(),
        category_key: "atlassian.audit.event.category.audit".into(),
        action: "Audit Log search performed".into(),
        action_key: "atlassian.audit.event.action.audit.search".into(),
        area: "AUDIT_LOG".into(),
        affected: Vec::new(),
        changed: Vec::new(),
        extra: vec![
            attr("Query", "query", query),
            attr("Results returned", "results", results.to_string()),
            attr("Timestamp Range", "timestamp", range),
        ],
    }
}

fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
