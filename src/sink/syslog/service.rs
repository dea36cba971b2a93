//! The syslog sink's transport: UDP datagrams, or a TCP / TLS (rustls) stream, and the
//! [`Sink`] implementation that writes encoded batches to it.
//!
//! A stream is opened lazily and dropped on any error; the worker's backoff then decides
//! when the next `deliver` reconnects. Before each batch the stream is checked for a peer
//! that hung up (a syslog receiver never sends anything, so a readable socket means EOF or
//! an error): writing into a half-closed TCP connection succeeds once and loses the data,
//! which this check avoids in the common case of a restarted receiver.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::config::{Endpoint, SyslogConfig, SyslogTlsConfig, Transport};
use super::encoder::Encoder;
use super::send_budget::SendBudget;
use crate::metrics::Metrics;
use crate::sink::{BatchOutcome, Delivery, QueuedEvent, Sink, SinkError};

/// A TLS setting that cannot be used: the key under `tls.` and the problem.
#[derive(Debug, thiserror::Error)]
#[error("tls.{key}: {problem}")]
pub struct TlsSetupError {
    pub key: &'static str,
    pub problem: String,
}

/// The rustls client configuration for `[sink.tls]`: verification always on, trusting
/// `ca_file` only when it is set, else the system store; a client certificate when set.
pub fn tls_client_config(tls: &SyslogTlsConfig) -> Result<rustls::ClientConfig, TlsSetupError> {
    let fail = |key, problem: String| TlsSetupError { key, problem };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = read_certs(path).map_err(|p| fail("ca_file", p))?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    fail(
                        "ca_file",
                        format!("{}: unusable CA certificate: {e}", path.display()),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(fail(
                    "ca_file",
                    "no system CA certificates found; set tls.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("ca_file", e.to_string()))?
        .with_root_certificates(roots);
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert).map_err(|p| fail("cert_file", p))?;
            // The key's bytes never reach an error message.
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                fail(
                    "key_file",
                    format!(
                        "{}: no usable PEM private key ({})",
                        key.display(),
                        pem_problem(&e)
                    ),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| fail("key_file", format!("does not fit cert_file: {e}")))
        }
        (Some(_), None) => Err(fail("key_file", "required with cert_file".into())),
        (None, Some(_)) => Err(fail("cert_file", "required with key_file".into())),
    }
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {}", path.display(), pem_problem(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {}", path.display(), pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// A PEM error without any of the file's content.
fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "nothing of the expected kind found".into(),
        _ => "malformed PEM".into(),
    }
}

/// The name the server certificate must carry: `tls.server_name`, else the address host.
pub fn server_name(
    tls: &SyslogTlsConfig,
    endpoint: &Endpoint,
) -> Result<ServerName<'static>, String> {
    let name = tls.server_name.as_deref().unwrap_or(&endpoint.host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("{name:?} is not a DNS name or IP address ({e})"))
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Delivers to one syslog receiver.
pub struct SyslogSink {
    name: String,
    cfg: SyslogConfig,
    endpoint: Endpoint,
    encoder: Encoder,
    metrics: Arc<Metrics>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Connection>,
    /// `max_rate`, when in force.
    budget: Option<SendBudget>,
}

impl SyslogSink {
    /// `cfg` must have passed [`SyslogConfig::validate`].
    pub fn new(name: String, cfg: SyslogConfig, metrics: Arc<Metrics>) -> Result<Self, String> {
        let endpoint = cfg.endpoint()?;
        let encoder = Encoder::new(&cfg, &endpoint.transport);
        let budget = cfg
            .max_rate(&endpoint.transport)
            .map(|rate| SendBudget::new(rate, std::time::Instant::now()));
        Ok(SyslogSink {
            name,
            cfg,
            endpoint,
            encoder,
            metrics,
            tls: None,
            conn: None,
            budget,
        })
    }

    async fn connect(&mut self) -> Result<Connection, SinkError> {
        let target = self.endpoint.socket_address();
        let timeout = self.cfg.timeout;
        let within = |what: &'static str| {
            let target = target.clone();
            move |_| {
                SinkError::new(
                    "timeout",
                    format!("{what} {target}: no answer within {timeout:?}"),
                )
            }
        };
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(timeout, tokio::net::lookup_host(&target))
                .await
                .map_err(within("resolving"))?
                .map_err(|e| SinkError::new("connect", format!("resolving {target}: {e}")))?
                .collect();
        let addr = *addrs
            .first()
            .ok_or_else(|| SinkError::new("connect", format!("{target} resolves to nothing")))?;
        if self.endpoint.transport == Transport::Udp {
            let local: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let sock = UdpSocket::bind(local)
                .await
                .map_err(|e| SinkError::new("connect", format!("UDP socket: {e}")))?;
            sock.connect(addr)
                .await
                .map_err(|e| SinkError::new("connect", format!("{target}: {e}")))?;
            return Ok(Connection::Udp(sock));
        }
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addrs[..]))
            .await
            .map_err(within("connecting to"))?
            .map_err(|e| SinkError::new("connect", format!("{target}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if self.endpoint.transport == Transport::Tcp {
            return Ok(Connection::Tcp(tcp));
        }
        let (connector, name) = self.tls.clone().expect("TLS set up in open");
        let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
            .await
            .map_err(within("TLS handshake with"))?
            .map_err(|e| {
                // Certificate problems are configuration problems: say so.
                let kind = if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                    "tls"
                } else {
                    "connect"
                };
                SinkError::new(kind, format!("TLS handshake with {target}: {e}"))
            })?;
        Ok(Connection::Tls(Box::new(tls)))
    }

    /// Write one batch on a stream connection. `Err` drops the connection.
    async fn write_stream(&mut self, buf: &[u8]) -> Result<(), SinkError> {
        if self.conn.is_some() {
            // Let the runtime's I/O driver look at the socket first, so that a hang-up that
            // happened since the last batch is known to the probe below.
            tokio::task::yield_now().await;
        }
        if let Some(conn) = &mut self.conn
            && peer_hung_up(conn)
        {
            tracing::info!(address = %self.cfg.address, "receiver closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let timeout = self.cfg.timeout;
        let result = match self.conn.as_mut().expect("connected above") {
            Connection::Tcp(s) => tokio::time::timeout(timeout, write_flush(s, buf)).await,
            Connection::Tls(s) => tokio::time::timeout(timeout, write_flush(s.as_mut(), buf)).await,
            Connection::Udp(_) => unreachable!("UDP is written datagram by datagram"),
        };
        let target = &self.cfg.address;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.conn = None;
                Err(SinkError::new("io", format!("writing to {target}: {e}")))
            }
            Err(_) => {
                self.conn = None;
                Err(SinkError::new(
                    "timeout",
                    format!("writing to {target}: not accepted within {timeout:?}"),
                ))
            }
        }
    }

    /// Wait until `n` more messages fit `max_rate` (no wait without one).
    async fn pace(&mut self, n: usize) {
        if let Some(budget) = &mut self.budget {
            let wait = budget.spend(
                u32::try_from(n).unwrap_or(u32::MAX),
                std::time::Instant::now(),
            );
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn write_flush<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> io::Result<()> {
    w.write_all(buf).await?;
    w.flush().await
}

/// Whether the receiver closed (or broke) a stream connection. Never waits.
fn peer_hung_up(conn: &mut Connection) -> bool {
    fn probe<R: AsyncRead + Unpin>(r: &mut R) -> bool {
        let mut scratch = [0u8; 512];
        match r.read(&mut scratch).now_or_never() {
            None => false,        // nothing to read: still open
            Some(Ok(0)) => true,  // EOF
            Some(Ok(_)) => false, // the receiver said something; ignore it
            Some(Err(_)) => true, // reset
        }
    }
    match conn {
        Connection::Udp(_) => false,
        Connection::Tcp(s) => probe(s),
        Connection::Tls(s) => probe(s.as_mut()),
    }
}

impl Sink for SyslogSink {
    async fn open(&mut self, _checkpoint: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        if self.endpoint.transport == Transport::Tls && self.tls.is_none() {
            let config = tls_client_config(&self.cfg.tls)
                .map_err(|e| SinkError::new("tls", e.to_string()))?;
            let name = server_name(&self.cfg.tls, &self.endpoint)
                .map_err(|p| SinkError::new("tls", format!("tls.server_name: {p}")))?;
            self.tls = Some((TlsConnector::from(Arc::new(config)), name));
        }
        self.conn = Some(self.connect().await?);
        Ok(None)
    }

    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        let mut results = vec![Delivery::Delivered; batch.len()];
        // (index in batch, start, end) of every encoded message in `buf`.
        let mut frames = Vec::with_capacity(batch.len());
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.doc.len() + 256).sum());
        let mut truncated = 0u64;
        for (i, entry) in batch.iter().enumerate() {
            let start = buf.len();
            match self.encoder.encode(&entry.doc, &mut buf) {
                Ok(cut) => {
                    truncated += cut as u64;
                    frames.push((i, start, buf.len()));
                }
                Err(e) => {
                    buf.truncate(start);
                    results[i] = Delivery::Rejected(e.to_string());
                }
            }
        }
        if truncated > 0 {
            self.metrics
                .sink_truncated
                .get_or_create(&self.metrics.sink(&self.name))
                .inc_by(truncated);
        }
        if frames.is_empty() {
            return Ok(BatchOutcome {
                results,
                checkpoint: None,
            });
        }
        if self.endpoint.transport != Transport::Udp {
            self.pace(frames.len()).await;
            self.write_stream(&buf).await?;
            return Ok(BatchOutcome {
                results,
                checkpoint: None,
            });
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        for (n, &(_, start, end)) in frames.iter().enumerate() {
            self.pace(1).await;
            let Some(Connection::Udp(sock)) = &self.conn else {
                unreachable!("a UDP sink only opens UDP sockets")
            };
            if let Err(e) = sock.send(&buf[start..end]).await {
                // An ICMP "port unreachable" for an earlier datagram surfaces here. What was
                // sent counts as delivered; the rest is retried after a backoff.
                let reason = format!("sending to {}: {e}", self.cfg.address);
                self.conn = None;
                if n == 0 {
                    return Err(SinkError::new("io", reason));
                }
                for &(j, _, _) in &frames[n..] {
                    results[j] = Delivery::Retry(reason.clone());
                }
                break;
            }
        }
        Ok(BatchOutcome {
            results,
            checkpoint: None,
        })
    }
}
