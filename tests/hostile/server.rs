//! The misbehaving Confluence: a proxy in front of the faithful simulator that a test
//! programs to break the API's rules on purpose (ignore a parameter, lie in a header, send a
//! body no real server would). Whatever a test's [`Behaviour`] does not change is the
//! simulator's own answer, so only the misbehaviour under test differs from the real thing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;

/// One request as the hostile server saw it; a behaviour may rewrite it before forwarding.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    /// Query parameters in order (a parameter may repeat).
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// 1 for the first request this server received.
    pub seq: u64,
}

impl Req {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Drop every value of query parameter `key` (the server "ignores" it).
    pub fn drop_param(&mut self, key: &str) {
        self.query.retain(|(k, _)| k != key);
    }
    /// Set query parameter `key` to `value`, replacing any value it had.
    pub fn set_param(&mut self, key: &str, value: &str) {
        self.drop_param(key);
        self.query.push((key.to_owned(), value.to_owned()));
    }
}

/// A response, from the simulator or made up by a behaviour.
pub struct Resp {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: RespBody,
}

/// A body: bytes in memory, or a generated stream of `len` bytes that never exists whole
/// (to send hundreds of megabytes without holding them).
pub enum RespBody {
    Bytes(Vec<u8>),
    Stream { len: u64, chunk: Vec<u8> },
}

impl Resp {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Resp {
        Resp {
            status: StatusCode::from_u16(status).expect("status"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: RespBody::Bytes(body.into()),
        }
    }
    pub fn json(body: &serde_json::Value) -> Resp {
        Resp::new(200, serde_json::to_vec(body).expect("json"))
    }
    /// Set header `name` (replacing earlier values of it).
    pub fn header(mut self, name: &str, value: &str) -> Resp {
        self.set_header(name, value);
        self
    }
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
    /// The body as bytes (a generated stream is not materialised: None).
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.body {
            RespBody::Bytes(b) => Some(b),
            RespBody::Stream { .. } => None,
        }
    }
    /// The body parsed as JSON (None if it is not).
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.bytes()?).ok()
    }
    pub fn set_body_json(&mut self, v: &serde_json::Value) {
        self.body = RespBody::Bytes(serde_json::to_vec(v).expect("json"));
    }
}

/// What a test makes the server do. Both hooks default to "behave like the simulator".
pub trait Behaviour: Send + Sync + 'static {
    /// Answer `req` directly (Some), or rewrite it and let the simulator answer (None).
    fn request(&self, req: &mut Req) -> Option<Resp> {
        let _ = req;
        None
    }
    /// Rewrite the simulator's answer to `req`.
    fn response(&self, req: &Req, resp: &mut Resp) {
        let _ = (req, resp);
    }
}

/// A behaviour from two closures.
pub struct Hooks<Q, R> {
    pub request: Q,
    pub response: R,
}

impl<Q, R> Behaviour for Hooks<Q, R>
where
    Q: Fn(&mut Req) -> Option<Resp> + Send + Sync + 'static,
    R: Fn(&Req, &mut Resp) + Send + Sync + 'static,
{
    fn request(&self, req: &mut Req) -> Option<Resp> {
        (self.request)(req)
    }
    fn response(&self, req: &Req, resp: &mut Resp) {
        (self.response)(req, resp)
    }
}

/// Rewrite requests only.
pub fn on_request(f: impl Fn(&mut Req) -> Option<Resp> + Send + Sync + 'static) -> impl Behaviour {
    Hooks {
        request: f,
        response: |_: &Req, _: &mut Resp| {},
    }
}

/// Rewrite responses only.
pub fn on_response(f: impl Fn(&Req, &mut Resp) + Send + Sync + 'static) -> impl Behaviour {
    Hooks {
        request: |_: &mut Req| None,
        response: f,
    }
}

struct Shared {
    upstream: String,
    behaviour: Box<dyn Behaviour>,
    http: reqwest::Client,
    seq: AtomicU64,
    log: std::sync::Mutex<Vec<Req>>,
}

/// The hostile server, on its own runtime so a test can block on the daemon meanwhile.
pub struct HostileServer {
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _rt: tokio::runtime::Runtime,
}

impl HostileServer {
    /// Serve on a free loopback port, forwarding to `upstream` (the simulator's base URL)
    /// what `behaviour` does not answer itself.
    pub fn start(upstream: &str, behaviour: impl Behaviour) -> HostileServer {
        Self::start_on(upstream, behaviour, None)
    }

    /// Like [`HostileServer::start`], but HTTPS with this certificate chain and key (PEM);
    /// the URL names the host `localhost`.
    pub fn start_tls(
        upstream: &str,
        behaviour: impl Behaviour,
        cert_pem: &str,
        key_pem: &str,
    ) -> HostileServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        let mut server = Self::start_on(
            upstream,
            behaviour,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        );
        server.url = format!("https://localhost:{}", server.addr.port());
        server
    }

    fn start_on(
        upstream: &str,
        behaviour: impl Behaviour,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> HostileServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("hostile runtime");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            behaviour: Box::new(behaviour),
            http: reqwest::Client::builder()
                .no_gzip()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            seq: AtomicU64::new(0),
            log: Default::default(),
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback({
            let shared = shared.clone();
            move |method: Method, uri: Uri, headers: HeaderMap| {
                let shared = shared.clone();
                async move { handle(&shared, method, uri, headers).await }
            }
        });
        match tls {
            None => rt.spawn(async move {
                let _ = axum::serve(listener, app).await;
            }),
            Some(acceptor) => rt.spawn(async move {
                let _ = axum::serve(TlsListener { listener, acceptor }, app).await;
            }),
        };
        HostileServer {
            url: format!("http://{addr}"),
            addr,
            shared,
            _rt: rt,
        }
    }

    /// How many requests it received.
    pub fn requests(&self) -> u64 {
        self.shared.seq.load(Ordering::SeqCst)
    }

    /// Every request received so far, as received (before a behaviour rewrote it).
    pub fn log(&self) -> Vec<Req> {
        self.shared.log.lock().expect("log").clone()
    }

    /// How many received requests went to a path ending in `suffix`.
    pub fn requests_to(&self, suffix: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    }
}

async fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let query = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut req = Req {
        method,
        path: uri.path().to_owned(),
        query,
        headers,
        seq,
    };
    shared.log.lock().expect("log").push(req.clone());
    let resp = match shared.behaviour.request(&mut req) {
        Some(r) => r,
        None => {
            let mut r = forward(shared, &req).await;
            shared.behaviour.response(&req, &mut r);
            r
        }
    };
    into_response(resp)
}

async fn forward(shared: &Shared, req: &Req) -> Resp {
    let mut url = reqwest::Url::parse(&format!("{}{}", shared.upstream, req.path)).expect("url");
    if !req.query.is_empty() {
        url.query_pairs_mut().extend_pairs(req.query.iter());
    }
    let mut out = shared.http.request(req.method.clone(), url);
    for (name, value) in &req.headers {
        if name != "host" && name != "accept-encoding" {
            out = out.header(name, value);
        }
    }
    match out.send().await {
        Ok(r) => {
            let status = r.status();
            let headers: BTreeMap<String, String> = r
                .headers()
                .iter()
                .filter(|(n, _)| *n != "content-length" && *n != "transfer-encoding")
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Resp {
                status,
                headers: headers.into_iter().collect(),
                body: RespBody::Bytes(body),
            }
        }
        Err(e) => Resp::new(502, format!("hostile proxy: upstream failed: {e}")),
    }
}

fn into_response(resp: Resp) -> Response {
    let body = match resp.body {
        RespBody::Bytes(b) => Body::from(b),
        RespBody::Stream { len, chunk } => {
            let chunk = bytes::Bytes::from(chunk);
            let step = chunk.len().max(1) as u64;
            let n = len.div_ceil(step);
            let stream = futures_util::stream::iter((0..n).map(move |i| {
                let left = (len - i * step).min(step) as usize;
                Ok::<_, std::convert::Infallible>(chunk.slice(..left))
            }));
            Body::from_stream(stream)
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = resp.status;
    for (n, v) in resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

/// A TCP listener that completes a TLS handshake before handing a connection to axum; a
/// client that refuses the certificate just ends its connection.
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
