//! A test HTTP server that answers like an Elasticsearch 8.x cluster, for the parts of the
//! API the sink and `setup` use — with the `_bulk` contract reproduced in the details that
//! decide whether an event is lost or doubled:
//!
//! - NDJSON that must end with a newline (400 `illegal_argument_exception` otherwise);
//!   gzip request bodies (`Content-Encoding: gzip`);
//! - data streams created on first write from the highest-priority matching index template
//!   (the built-in `logs-*-*` one is there, like on a fresh cluster); only `create` is allowed
//!   in a data stream (an `index` action fails its item with 400, like ES);
//! - `_id` honoured, unique per backing index; `create` of an existing `_id` fails the item
//!   with 409 `version_conflict_engine_exception`;
//! - documents checked against the mappings of the template that created the stream (the
//!   shipped one once `setup` installed it): a value of the wrong type fails its item with 400
//!   `document_parsing_exception`, as does a data stream document without `@timestamp` or a
//!   `constant_keyword` with a second value;
//! - authentication (401 `security_exception`) and `_has_privileges`;
//! - fault switches: per-item 429/503 fractions inside a 200 (`errors: true`), whole-request
//!   429 (the next N, or a fraction of all) with `Retry-After`, a 503 outage, and responses lost after indexing (502).
//!
//! Also Kibana's `POST /api/saved_objects/_import`, checking that every reference in the
//! NDJSON resolves, as Kibana does.
//!
//! It runs on a thread and runtime of its own, so blocking tests and async tests can use it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Fault switches; change them while the server runs with [`EsServer::faults`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Fraction of `_bulk` items answered 429 `es_rejected_execution_exception` (not indexed).
    pub item_429: f64,
    /// Fraction of `_bulk` items answered 503 `unavailable_shards_exception` (not indexed).
    pub item_503: f64,
    /// The next this-many `_bulk` requests are answered 429 as a whole, with `Retry-After`.
    pub whole_429: u32,
    /// Fraction of `_bulk` requests answered 429 as a whole (at random, from the seed), with
    /// `Retry-After: retry_after_secs`: a cluster under steady indexing pressure.
    pub whole_429_fraction: f64,
    pub retry_after_secs: u32,
    /// Every request is answered 503 (a cluster without a master).
    pub outage: bool,
    /// The next this-many `_bulk` requests are processed, then answered 502 (a proxy lost
    /// the response): the client must retry, and get 409s for what was indexed.
    pub lose_responses: u32,
    /// Every `_bulk` request waits this long before it is processed (a busy cluster).
    pub bulk_delay_ms: u64,
    /// `http.max_content_length`: larger request bodies get 413 (0: no limit).
    pub max_request_bytes: usize,
}

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct EsOptions {
    /// `Authorization` header value every request must carry; `None`: security disabled.
    pub auth: Option<String>,
    /// The credentials may read but not write (`_has_privileges` says so, items get 403).
    pub deny_write: bool,
    /// Field type overrides on top of the template mappings (`("source.ip", "long")`), to
    /// provoke mapping errors from real documents.
    pub mapping_overrides: Vec<(String, String)>,
    pub seed: u64,
    /// Keep the documents (`false`: only their `_id`s, for benchmarks).
    pub keep_documents: bool,
}

impl Default for EsOptions {
    fn default() -> Self {
        EsOptions {
            auth: None,
            deny_write: false,
            mapping_overrides: Vec::new(),
            seed: 7,
            keep_documents: true,
        }
    }
}

/// Counters, for assertions and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub bulk_requests: u64,
    pub gzip_requests: u64,
    pub bulk_bytes_on_wire: u64,
    pub bulk_bytes_decoded: u64,
    pub items: u64,
    pub created: u64,
    pub conflicts_409: u64,
    pub injected_429: u64,
    pub injected_503: u64,
    pub mapping_errors_400: u64,
    pub whole_429: u64,
    pub outage_503: u64,
    pub lost_responses: u64,
    pub unauthorized: u64,
    pub kibana_imports: u64,
}

struct Stream {
    is_data_stream: bool,
    template: Option<String>,
    mappings: Value,
    /// Backing indices; the last is the write index. `_id` is unique per backing index.
    backing: Vec<BTreeMap<String, Value>>,
    constants: HashMap<String, String>,
}

struct ServerState {
    opts: EsOptions,
    faults: Faults,
    stats: Stats,
    templates: BTreeMap<String, Value>,
    ilm: BTreeMap<String, Value>,
    streams: BTreeMap<String, Stream>,
    kibana_objects: Vec<Value>,
    rng: rand::rngs::StdRng,
    seq_no: u64,
}

type Shared = Arc<Mutex<ServerState>>;

/// The running server.
pub struct EsServer {
    pub url: String,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EsServer {
    pub fn start(opts: EsOptions) -> EsServer {
        let mut templates = BTreeMap::new();
        // Like a fresh 8.x cluster: `logs-*-*` becomes a data stream, mapped dynamically.
        templates.insert(
            "logs".to_owned(),
            json!({
                "index_patterns": ["logs-*-*"],
                "data_stream": {},
                "priority": 100,
                "template": {"mappings": {"properties": {
                    "@timestamp": {"type": "date"},
                    "data_stream": {"properties": {
                        "type": {"type": "constant_keyword"},
                        "dataset": {"type": "constant_keyword"},
                        "namespace": {"type": "constant_keyword"}
                    }}
                }}}
            }),
        );
        let state = Arc::new(Mutex::new(ServerState {
            rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
            opts,
            faults: Faults::default(),
            stats: Stats::default(),
            templates,
            ilm: BTreeMap::new(),
            streams: BTreeMap::new(),
            kibana_objects: Vec::new(),
            seq_no: 0,
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("es server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind es server");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new().fallback(handle).with_state(shared);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("es server");
            });
        });
        let addr = addr_rx.recv().expect("es server address");
        EsServer {
            url: format!("http://{addr}"),
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Change the fault switches.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.lock().unwrap().faults);
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    /// Every `_id` in `target` (all backing indices) with how often it is there.
    pub fn ids(&self, target: &str) -> BTreeMap<String, usize> {
        let s = self.state.lock().unwrap();
        let mut out = BTreeMap::new();
        if let Some(st) = s.streams.get(target) {
            for idx in &st.backing {
                for id in idx.keys() {
                    *out.entry(id.clone()).or_default() += 1;
                }
            }
        }
        out
    }

    /// The stored document with `id`.
    pub fn doc(&self, target: &str, id: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.streams
            .get(target)?
            .backing
            .iter()
            .rev()
            .find_map(|i| i.get(id).cloned())
    }

    pub fn is_data_stream(&self, target: &str) -> Option<bool> {
        let s = self.state.lock().unwrap();
        s.streams.get(target).map(|s| s.is_data_stream)
    }

    /// The template a stream was created from.
    pub fn stream_template(&self, target: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.streams.get(target).and_then(|s| s.template.clone())
    }

    pub fn template(&self, name: &str) -> Option<Value> {
        self.state.lock().unwrap().templates.get(name).cloned()
    }

    pub fn ilm_policy(&self, name: &str) -> Option<Value> {
        self.state.lock().unwrap().ilm.get(name).cloned()
    }

    pub fn kibana_objects(&self) -> Vec<Value> {
        self.state.lock().unwrap().kibana_objects.clone()
    }

    /// Change a field's mapping in an existing stream (an operator fixing a conflict).
    pub fn set_mapping(&self, target: &str, path: &str, ty: &str) {
        let mut s = self.state.lock().unwrap();
        let st = s.streams.get_mut(target).expect("stream exists");
        let mut node = &mut st.mappings;
        for part in path.split('.') {
            node = &mut node["properties"][part];
        }
        *node = json!({ "type": ty });
    }

    /// Roll a data stream over to a new write index.
    pub fn rollover(&self, target: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(st) = s.streams.get_mut(target) {
            st.backing.push(BTreeMap::new());
        }
    }
}

impl Drop for EsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn es_json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        "application/json; charset=UTF-8".parse().unwrap(),
    );
    r.headers_mut()
        .insert("x-elastic-product", "Elasticsearch".parse().unwrap());
    r
}

/// ES's error envelope.
fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    es_json(
        status,
        json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status.as_u16()
        }),
    )
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let delay = state.lock().unwrap().faults.bulk_delay_ms;
    if delay > 0 && path.ends_with("/_bulk") {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let mut s = state.lock().unwrap();
    s.stats.requests += 1;

    if path.starts_with("/api/") {
        return kibana(&mut s, &method, &path, &headers, &body);
    }
    if s.faults.outage {
        s.stats.outage_503 += 1;
        return es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "master_not_discovered_exception",
            "no master node discovered",
        );
    }
    if let Some(want) = s.opts.auth.clone() {
        let got = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if got.as_deref() != Some(want.as_str()) {
            s.stats.unauthorized += 1;
            let reason = match got {
                None => format!("missing authentication credentials for REST request [{path}]"),
                Some(_) => "unable to authenticate with provided credentials and anonymous access is not allowed for this request".to_owned(),
            };
            let mut r = es_error(StatusCode::UNAUTHORIZED, "security_exception", &reason);
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"security\", charset=\"UTF-8\", ApiKey"
                    .parse()
                    .unwrap(),
            );
            return r;
        }
    }

    let decoded = if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
    {
        s.stats.gzip_requests += 1;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                "request body is not valid gzip",
            );
        }
        out
    } else {
        body.to_vec()
    };

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", [""]) => es_json(
            StatusCode::OK,
            json!({
                "name": "es-test-0",
                "cluster_name": "caf-test",
                "cluster_uuid": "c4f-t3st",
                "version": {"number": "8.15.3", "build_flavor": "default", "build_type": "docker",
                    "build_snapshot": false, "lucene_version": "9.11.1",
                    "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "You Know, for Search"
            }),
        ),
        ("POST" | "PUT", ["_bulk"]) => bulk(&mut s, None, &uri, &body, &decoded),
        ("POST" | "PUT", [target, "_bulk"]) => {
            let t = percent_decode(target);
            bulk(&mut s, Some(&t), &uri, &body, &decoded)
        }
        ("GET", ["_data_stream", name]) => {
            let name = percent_decode(name);
            match s.streams.get(&name).filter(|st| st.is_data_stream) {
                Some(st) => es_json(
                    StatusCode::OK,
                    json!({"data_streams": [{
                        "name": name,
                        "timestamp_field": {"name": "@timestamp"},
                        "indices": (1..=st.backing.len()).map(|g| json!({"index_name": backing_name(&name, g)})).collect::<Vec<_>>(),
                        "generation": st.backing.len(),
                        "status": "GREEN",
                        "template": st.template,
                    }]}),
                ),
                None => es_json(
                    StatusCode::NOT_FOUND,
                    json!({"error": {"root_cause": [{"type": "index_not_found_exception", "reason": format!("no such index [{name}]")}],
                        "type": "index_not_found_exception", "reason": format!("no such index [{name}]"),
                        "resource.type": "index_or_alias", "resource.id": name, "index": name}, "status": 404}),
                ),
            }
        }
        ("PUT" | "POST", ["_index_template", name]) => {
            let Ok(t) = serde_json::from_slice::<Value>(&decoded) else {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "x_content_parse_exception",
                    "not JSON",
                );
            };
            if !t["index_patterns"].is_array() {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index patterns are missing;",
                );
            }
            if let Some(p) = t["template"]["settings"]["index.lifecycle.name"].as_str()
                && !s.ilm.contains_key(p)
            {
                // ES accepts it but warns; the policy missing is a setup bug worth failing on.
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    &format!("test server: ILM policy [{p}] referenced before it exists"),
                );
            }
            s.templates.insert(percent_decode(name), t);
            es_json(StatusCode::OK, json!({"acknowledged": true}))
        }
        ("GET", ["_index_template", name]) => match s.templates.get(&percent_decode(name)) {
            Some(t) => es_json(
                StatusCode::OK,
                json!({"index_templates": [{"name": name, "index_template": t}]}),
            ),
            None => es_error(
                StatusCode::NOT_FOUND,
                "resource_not_found_exception",
                &format!("index template matching [{name}] not found"),
            ),
        },
        ("PUT", ["_ilm", "policy", name]) => {
            let Ok(p) = serde_json::from_slice::<Value>(&decoded) else {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "x_content_parse_exception",
                    "not JSON",
                );
            };
            if !p["policy"]["phases"].is_object() {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "x_content_parse_exception",
                    "[put_lifecycle_request] policy.phases is required",
                );
            }
            s.ilm.insert(percent_decode(name), p);
            es_json(StatusCode::OK, json!({"acknowledged": true}))
        }
        ("GET" | "POST", ["_security", "user", "_has_privileges"]) => {
            if s.opts.auth.is_none() {
                return es_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "security_exception",
                    "Security must be explicitly enabled when using a [basic] license.",
                );
            }
            let req: Value = serde_json::from_slice(&decoded).unwrap_or(Value::Null);
            let allowed = !s.opts.deny_write;
            let mut index = serde_json::Map::new();
            for i in req["index"].as_array().into_iter().flatten() {
                for n in i["names"].as_array().into_iter().flatten() {
                    let mut privs = serde_json::Map::new();
                    for p in i["privileges"].as_array().into_iter().flatten() {
                        privs.insert(p.as_str().unwrap_or("").to_owned(), Value::Bool(allowed));
                    }
                    index.insert(n.as_str().unwrap_or("").to_owned(), Value::Object(privs));
                }
            }
            es_json(
                StatusCode::OK,
                json!({"username": "caf-writer", "has_all_requested": allowed, "cluster": {}, "index": index, "application": {}}),
            )
        }
        _ => es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            &format!("test server: no handler for [{method} {path}] (add it if the sink needs it)"),
        ),
    }
}

fn percent_decode(s: &str) -> String {
    url_decode(s)
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn backing_name(stream: &str, generation: usize) -> String {
    format!(".ds-{stream}-2025.11.25-{generation:06}")
}

/// Shell-style `*` match, as index patterns use it.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Create `name` on first write, like ES: the highest-priority matching template decides
/// whether it is a data stream and what its mappings are.
fn ensure_stream<'a>(s: &'a mut ServerState, name: &str) -> &'a mut Stream {
    if !s.streams.contains_key(name) {
        let chosen = s
            .templates
            .iter()
            .filter(|(_, t)| {
                t["index_patterns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p.as_str().is_some_and(|p| glob(p, name)))
            })
            .max_by_key(|(_, t)| t["priority"].as_i64().unwrap_or(0))
            .map(|(n, t)| (n.clone(), t.clone()));
        let (template, is_ds, mut mappings) = match chosen {
            Some((n, t)) => (
                Some(n),
                t.get("data_stream").is_some(),
                t["template"]["mappings"].clone(),
            ),
            None => (None, false, json!({})),
        };
        for (path, ty) in &s.opts.mapping_overrides {
            let mut node = &mut mappings;
            for part in path.split('.') {
                node = &mut node["properties"][part];
            }
            *node = json!({"type": ty});
        }
        s.streams.insert(
            name.to_owned(),
            Stream {
                is_data_stream: is_ds,
                template,
                mappings,
                backing: vec![BTreeMap::new()],
                constants: HashMap::new(),
            },
        );
    }
    s.streams.get_mut(name).expect("inserted above")
}

fn bulk(
    s: &mut ServerState,
    path_target: Option<&str>,
    uri: &Uri,
    wire: &[u8],
    body: &[u8],
) -> Response {
    s.stats.bulk_requests += 1;
    s.stats.bulk_bytes_on_wire += wire.len() as u64;
    s.stats.bulk_bytes_decoded += body.len() as u64;
    let _ = uri;
    let frac = s.faults.whole_429_fraction;
    if s.faults.whole_429 > 0 || (frac > 0.0 && s.rng.random::<f64>() < frac) {
        s.faults.whole_429 = s.faults.whole_429.saturating_sub(1);
        s.stats.whole_429 += 1;
        let mut r = es_error(
            StatusCode::TOO_MANY_REQUESTS,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=1024]",
        );
        r.headers_mut().insert(
            "retry-after",
            s.faults.retry_after_secs.to_string().parse().unwrap(),
        );
        return r;
    }
    if s.faults.max_request_bytes > 0 && wire.len() > s.faults.max_request_bytes {
        // Like ES: 413 with an empty body, before anything is parsed.
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    if body.is_empty() {
        return es_error(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        );
    }
    if body.last() != Some(&b'\n') {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(_) => {
            return es_error(
                StatusCode::BAD_REQUEST,
                "x_content_parse_exception",
                "invalid UTF-8",
            );
        }
    };
    let mut lines = text[..text.len() - 1].split('\n');
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action_line) = lines.next() {
        let Ok(action) = serde_json::from_str::<Value>(action_line) else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "x_content_parse_exception",
                &format!("[1:1] Unexpected character in action line: {action_line:.40}"),
            );
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "Malformed action/metadata line [1], expected START_OBJECT",
            );
        };
        let op = op.clone();
        if !matches!(op.as_str(), "create" | "index" | "update" | "delete") {
            return es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                &format!(
                    "Malformed action/metadata line, expected one of [create, delete, index, update] but found [{op}]"
                ),
            );
        }
        let target = meta["_index"]
            .as_str()
            .map(str::to_owned)
            .or(path_target.map(str::to_owned));
        let id = meta["_id"].as_str().map(str::to_owned);
        let source = if op == "delete" {
            None
        } else {
            match lines.next() {
                Some(l) => Some(l),
                None => {
                    return es_error(
                        StatusCode::BAD_REQUEST,
                        "illegal_argument_exception",
                        "The bulk request must be terminated by a newline [\\n]",
                    );
                }
            }
        };
        let Some(target) = target else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            );
        };
        let (status, result) = bulk_item(s, &op, &target, id.as_deref(), source);
        s.stats.items += 1;
        if status >= 300 {
            errors = true;
        }
        let mut item = json!({"_index": target, "status": status});
        if let Some(id) = &id {
            item["_id"] = json!(id);
        }
        match result {
            Ok(extra) => {
                for (k, v) in extra.as_object().unwrap() {
                    item[k] = v.clone();
                }
            }
            Err(e) => item["error"] = e,
        }
        items.push(json!({ op: item }));
    }
    let response = es_json(
        StatusCode::OK,
        json!({"took": 1, "errors": errors, "items": items}),
    );
    if s.faults.lose_responses > 0 {
        s.faults.lose_responses -= 1;
        s.stats.lost_responses += 1;
        let mut r = (
            StatusCode::BAD_GATEWAY,
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response();
        r.headers_mut()
            .insert("content-type", "text/html".parse().unwrap());
        return r;
    }
    response
}

/// One item: (status, Ok(extra fields) | Err(error object)).
fn bulk_item(
    s: &mut ServerState,
    op: &str,
    target: &str,
    id: Option<&str>,
    source: Option<&str>,
) -> (u16, Result<Value, Value>) {
    let err = |kind: &str, reason: String| json!({"type": kind, "reason": reason});
    if s.opts.deny_write {
        return (
            403,
            Err(err(
                "security_exception",
                format!(
                    "action [indices:data/write/bulk[s]] is unauthorized for user [caf-writer] with effective roles [viewer] on indices [{target}], this action is granted by the index privileges [create_doc,create,index,write,all]"
                ),
            )),
        );
    }
    let roll: f64 = s.rng.random();
    if roll < s.faults.item_429 {
        s.stats.injected_429 += 1;
        return (
            429,
            Err(err(
                "es_rejected_execution_exception",
                "rejected execution of org.elasticsearch.action.support.replication.TransportWriteAction$1 on EsThreadPoolExecutor[name = es-test-0/write, queue capacity = 10000]".into(),
            )),
        );
    }
    if roll < s.faults.item_429 + s.faults.item_503 {
        s.stats.injected_503 += 1;
        return (
            503,
            Err(err(
                "unavailable_shards_exception",
                format!("[{target}][0] primary shard is not active Timeout: [1m]"),
            )),
        );
    }
    let doc_text = source.unwrap_or("");
    let doc: Value = match serde_json::from_str(doc_text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (
                400,
                Err(err(
                    "document_parsing_exception",
                    "[1:1] failed to parse: source is not a JSON object".into(),
                )),
            );
        }
    };
    let stream = ensure_stream(s, target);
    if stream.is_data_stream && op != "create" {
        return (
            400,
            Err(err(
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams".into(),
            )),
        );
    }
    if op != "create" && op != "index" {
        return (
            400,
            Err(err(
                "illegal_argument_exception",
                format!("test server: [{op}] not supported"),
            )),
        );
    }
    let id_shown = id.unwrap_or("auto");
    if stream.is_data_stream && doc.get("@timestamp").is_none() {
        s.stats.mapping_errors_400 += 1;
        return (
            400,
            Err(err(
                "document_parsing_exception",
                "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing".into(),
            )),
        );
    }
    let dynamic = stream.mappings.get("dynamic") != Some(&Value::Bool(false));
    let mut problem = None;
    check_object(
        "",
        &doc,
        &stream.mappings,
        dynamic,
        doc_text,
        id_shown,
        &mut problem,
    );
    if problem.is_none() {
        check_constants(
            &doc,
            "",
            &stream.mappings,
            &mut stream.constants,
            &mut problem,
        );
    }
    if let Some(e) = problem {
        s.stats.mapping_errors_400 += 1;
        return (400, Err(e));
    }
    let id = id
        .map(str::to_owned)
        .unwrap_or_else(|| format!("auto-{}", s.seq_no));
    let keep = s.opts.keep_documents;
    let stream = s.streams.get_mut(target).expect("created above");
    let generation = stream.backing.len();
    let write = stream.backing.last_mut().expect("a write index");
    if op == "create" && write.contains_key(&id) {
        s.stats.conflicts_409 += 1;
        return (
            409,
            Err(json!({
                "type": "version_conflict_engine_exception",
                "reason": format!("[{id}]: version conflict, document already exists (current version [1])"),
                "index_uuid": "t3st-uuid",
                "shard": "0",
                "index": backing_name(target, generation),
            })),
        );
    }
    write.insert(id, if keep { doc } else { Value::Null });
    s.seq_no += 1;
    s.stats.created += 1;
    let index = if stream.is_data_stream {
        backing_name(target, generation)
    } else {
        target.to_owned()
    };
    (
        201,
        Ok(json!({
            "_index": index,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": s.seq_no - 1,
            "_primary_term": 1,
        })),
    )
}

fn preview(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_failure(
    path: &str,
    ty: &str,
    v: &Value,
    doc_text: &str,
    id: &str,
    cause: Option<String>,
) -> Value {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let col = doc_text
        .find(&format!("\"{leaf}\""))
        .map_or(1, |p| p + leaf.len() + 3);
    let mut e = json!({
        "type": "document_parsing_exception",
        "reason": format!("[1:{col}] failed to parse field [{path}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{}'", preview(v)),
    });
    if let Some(c) = cause {
        e["caused_by"] = json!({"type": "illegal_argument_exception", "reason": c});
    }
    e
}

/// Check `v` (an object at `path`) against `mapping` (a node with `properties`).
fn check_object(
    path: &str,
    v: &Value,
    mapping: &Value,
    dynamic: bool,
    doc_text: &str,
    id: &str,
    problem: &mut Option<Value>,
) {
    let Some(obj) = v.as_object() else { return };
    for (k, child) in obj {
        if problem.is_some() {
            return;
        }
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let field = &mapping["properties"][k.as_str()];
        if field.is_null() {
            // Not mapped: ignored with `dynamic: false`, mapped by guessing otherwise (the
            // guess is not modelled beyond accepting the value).
            let _ = dynamic;
            continue;
        }
        let values: Vec<&Value> = match child {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for value in values {
            check_field(&p, value, field, dynamic, doc_text, id, problem);
        }
    }
}

fn check_field(
    path: &str,
    v: &Value,
    field: &Value,
    dynamic: bool,
    doc_text: &str,
    id: &str,
    problem: &mut Option<Value>,
) {
    if v.is_null() {
        return;
    }
    // A node without a type (only `properties`) is an object.
    let ty = field["type"].as_str().unwrap_or("object");
    if ty == "object" || ty == "nested" {
        match v {
            Value::Object(_) => {
                let child_dynamic = match field.get("dynamic") {
                    Some(Value::Bool(b)) => *b,
                    _ => dynamic,
                };
                check_object(path, v, field, child_dynamic, doc_text, id, problem)
            }
            _ => {
                *problem = Some(json!({
                    "type": "document_parsing_exception",
                    "reason": format!("[1:1] object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value"),
                }))
            }
        }
        return;
    }
    if v.is_object() {
        *problem = Some(parse_failure(path, ty, v, doc_text, id, None));
        return;
    }
    let ok = match ty {
        "keyword" | "wildcard" | "text" | "match_only_text" | "constant_keyword" => Ok(()),
        "date" => match v {
            Value::Number(_) => Ok(()),
            Value::String(s)
                if time::OffsetDateTime::parse(
                    s,
                    &time::format_description::well_known::Rfc3339,
                )
                .is_ok() =>
            {
                Ok(())
            }
            _ => Err(format!(
                "failed to parse date field [{}] with format [strict_date_optional_time||epoch_millis]",
                preview(v)
            )),
        },
        "ip" => match v {
            Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => Ok(()),
            _ => Err(format!("'{}' is not an IP string literal.", preview(v))),
        },
        "boolean" => match v {
            Value::Bool(_) => Ok(()),
            Value::String(s) if s == "true" || s == "false" || s.is_empty() => Ok(()),
            _ => Err(format!(
                "Failed to parse value [{}] as only [true] or [false] are allowed.",
                preview(v)
            )),
        },
        "long" | "integer" | "short" | "byte" => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            Value::String(s) if s.parse::<i64>().is_ok() => Ok(()),
            _ => Err(format!("For input string: \"{}\"", preview(v))),
        },
        _ => Ok(()),
    };
    if let Err(cause) = ok {
        *problem = Some(parse_failure(path, ty, v, doc_text, id, Some(cause)));
    }
}

/// `constant_keyword` fields take the first value written and refuse any other.
fn check_constants(
    v: &Value,
    path: &str,
    mapping: &Value,
    constants: &mut HashMap<String, String>,
    problem: &mut Option<Value>,
) {
    let Some(props) = mapping["properties"].as_object() else {
        return;
    };
    for (k, field) in props {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let child = &v[k.as_str()];
        if child.is_null() {
            continue;
        }
        if field["type"] == "constant_keyword" {
            let value = preview(child);
            let fixed = field["value"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| constants.get(&p).cloned());
            match fixed {
                Some(f) if f != value => {
                    *problem = Some(json!({
                        "type": "document_parsing_exception",
                        "reason": format!("[1:1] failed to parse field [{p}] of type [constant_keyword]"),
                        "caused_by": {"type": "illegal_argument_exception",
                            "reason": format!("[constant_keyword] field [{p}] only accepts values that are equal to the value defined in the mappings [{f}], but got [{value}]")}
                    }));
                    return;
                }
                Some(_) => {}
                None => {
                    constants.insert(p, value);
                }
            }
        } else if field.get("properties").is_some() {
            check_constants(child, &p, field, constants, problem);
        }
    }
}

/// Kibana's saved objects import: multipart `file`, `kbn-xsrf` required, every reference
/// must resolve to an object in the file (or already imported).
fn kibana(
    s: &mut ServerState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let kjson = |status: StatusCode, v: Value| {
        let mut r = (status, v.to_string()).into_response();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    if method != Method::POST || path != "/api/saved_objects/_import" {
        return kjson(
            StatusCode::NOT_FOUND,
            json!({"statusCode": 404, "error": "Not Found", "message": "Not Found"}),
        );
    }
    if headers.get("kbn-xsrf").is_none() {
        return kjson(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."}),
        );
    }
    if let Some(want) = &s.opts.auth
        && headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str())
    {
        return kjson(
            StatusCode::UNAUTHORIZED,
            json!({"statusCode": 401, "error": "Unauthorized", "message": "[security_exception]: unable to authenticate"}),
        );
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = ct.split("boundary=").nth(1) else {
        return kjson(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"statusCode": 415, "error": "Unsupported Media Type", "message": "Unsupported Media Type"}),
        );
    };
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let Some(part) = text
        .split(delimiter.as_str())
        .find(|p| p.contains("name=\"file\""))
    else {
        return kjson(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "error": "Bad Request", "message": "[request body.file]: expected value of type [Stream]"}),
        );
    };
    let Some((part_headers, content)) = part.split_once("\r\n\r\n") else {
        return kjson(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "error": "Bad Request", "message": "malformed multipart"}),
        );
    };
    if !part_headers.contains("filename=\"") || !part_headers.contains(".ndjson\"") {
        return kjson(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "error": "Bad Request", "message": "Invalid file extension .txt"}),
        );
    }
    let content = content.trim_end_matches("\r\n");
    let mut objects = Vec::new();
    for line in content.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(o) => objects.push(o),
            Err(e) => {
                return kjson(
                    StatusCode::BAD_REQUEST,
                    json!({"statusCode": 400, "error": "Bad Request", "message": format!("Unexpected token in JSON: {e}")}),
                );
            }
        }
    }
    let known: std::collections::HashSet<(String, String)> = objects
        .iter()
        .chain(s.kibana_objects.iter())
        .map(|o| {
            (
                o["type"].as_str().unwrap_or("").to_owned(),
                o["id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let mut errors = Vec::new();
    for o in &objects {
        let missing: Vec<Value> = o["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                !known.contains(&(
                    r["type"].as_str().unwrap_or("").to_owned(),
                    r["id"].as_str().unwrap_or("").to_owned(),
                ))
            })
            .map(|r| json!({"type": r["type"], "id": r["id"]}))
            .collect();
        let malformed = o["id"].as_str().is_none_or(str::is_empty)
            || !o["attributes"].is_object()
            || !o["references"].is_array();
        if malformed {
            errors.push(json!({"id": o["id"], "type": o["type"], "error": {"type": "unknown", "message": "type, id, attributes and references are required"}}));
        } else if !missing.is_empty() {
            errors.push(json!({"id": o["id"], "type": o["type"], "title": o["attributes"]["title"], "error": {"type": "missing_references", "references": missing}}));
        }
    }
    s.stats.kibana_imports += 1;
    if !errors.is_empty() {
        return kjson(
            StatusCode::OK,
            json!({"success": false, "successCount": objects.len() - errors.len(), "errors": errors}),
        );
    }
    let results: Vec<Value> = objects
        .iter()
        .map(|o| json!({"type": o["type"], "id": o["id"], "meta": {"title": o["attributes"]["title"]}, "overwrite": true}))
        .collect();
    for o in objects.iter() {
        s.kibana_objects
            .retain(|k| !(k["id"] == o["id"] && k["type"] == o["type"]));
        s.kibana_objects.push(o.clone());
    }
    kjson(
        StatusCode::OK,
        json!({"success": true, "successCount": objects.len(), "successResults": results}),
    )
}
