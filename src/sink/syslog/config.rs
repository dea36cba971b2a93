//! The syslog sink's settings (`type = "syslog"`) and their validation.
//!
//! Kept apart from the encoder and the transport so that a config mistake is found by
//! `check-config`, names its key, and never surfaces later as a delivery error.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::de_duration;
use crate::config::keys::Shape;

/// `[[sink]] type = "syslog"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `udp://host:port`, `tcp://host:port` or `tls://host:port` (ports default to 514,
    /// 514 and 6514).
    pub address: String,
    #[serde(default)]
    pub format: SyslogFormat,
    /// TCP/TLS only. Default: octet counting for TLS (RFC 5425), LF for plain TCP.
    pub framing: Option<Framing>,
    #[serde(default)]
    pub payload: PayloadFormat,
    #[serde(default = "defaults::facility")]
    pub facility: Facility,
    #[serde(default = "defaults::app_name")]
    pub app_name: String,
    /// Fixed HOSTNAME for every message; unset: the Confluence host of each event.
    pub hostname: Option<String>,
    /// Severity of ordinary events.
    #[serde(default = "defaults::severity")]
    pub severity: Severity,
    /// Severity of events with `event.outcome: failure` (failed logins…).
    #[serde(default = "defaults::severity_failure")]
    pub severity_failure: Severity,
    /// Severity of `event.kind: alert` (Soteri findings).
    #[serde(default = "defaults::severity_alert")]
    pub severity_alert: Severity,
    /// RFC 5424 SD-ID of the structured data element carrying `event.id` & co; `""` omits it.
    #[serde(default = "defaults::sd_id")]
    pub sd_id: String,
    /// Longest message (header and payload, without framing). Longer ones are truncated.
    /// Default: 8192 for UDP, unlimited for TCP/TLS.
    pub max_message_bytes: Option<usize>,
    /// Longest wait for a connection or for one batch to be written.
    #[serde(default = "defaults::timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Most events sent per second (0: as fast as the queue drains). Default: 2,000 for UDP,
    /// which has no flow control (see `send_budget`); unpaced for TCP/TLS.
    pub max_rate: Option<u32>,
    /// `tls://` only.
    #[serde(default)]
    pub tls: SyslogTlsConfig,
}

/// `[sink.tls]`: verification is always on; `ca_file` replaces the system trust store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTlsConfig {
    /// PEM CA certificates to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mTLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI); default: the host
    /// of `address`.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// RFC 6587 3.4.1 / RFC 5425: `LEN SP MSG`.
    OctetCounting,
    /// RFC 6587 3.4.2: `MSG LF`. Safe here because no message ever contains a raw LF.
    Lf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The ECS document, compact JSON.
    #[default]
    Json,
    /// ArcSight Common Event Format.
    Cef,
    /// IBM QRadar Log Event Extended Format 2.0.
    Leef,
}

/// Where messages go, parsed from `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// The parsed `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(address: &str) -> Result<Endpoint, String> {
        let shown = crate::config::redact_url(address);
        let url = url::Url::parse(address).map_err(|e| {
            format!("{shown:?} is not an address like \"tls://siem.example.com:6514\" ({e})")
        })?;
        let (transport, default_port) = match url.scheme() {
            "udp" => (Transport::Udp, 514),
            "tcp" => (Transport::Tcp, 514),
            "tls" => (Transport::Tls, 6514),
            other => {
                return Err(format!(
                    "scheme {other:?} is not one of udp://, tcp://, tls://"
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("{shown:?} has no host")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{shown:?} holds credentials: syslog has none; use tls.cert_file and tls.key_file for client authentication"
            ));
        }
        if url.path().len() > 1 || url.query().is_some() {
            return Err(format!(
                "{shown:?}: only scheme://host:port is allowed (no path or query)"
            ));
        }
        Ok(Endpoint {
            transport,
            host,
            port: url.port().unwrap_or(default_port),
        })
    }

    /// `host:port` for connecting (IPv6 in brackets).
    pub fn socket_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Syslog facility by its usual name (RFC 5424 table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(pub u8);

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl std::str::FromStr for Facility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FACILITIES
            .iter()
            .position(|f| *f == s)
            .map(|i| Facility(i as u8))
            .ok_or_else(|| {
                format!(
                    "unknown facility {s:?}: expected one of {}",
                    FACILITIES.join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for Facility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Syslog severity by its usual name, 0 (emerg) … 7 (debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Severity(pub u8);

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl Severity {
    pub fn name(self) -> &'static str {
        SEVERITIES[self.0 as usize]
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // The long spellings people also write.
        let s = match s {
            "emergency" | "panic" => "emerg",
            "critical" => "crit",
            "error" => "err",
            "warn" => "warning",
            "informational" => "info",
            other => other,
        };
        SEVERITIES
            .iter()
            .position(|x| *x == s)
            .map(|i| Severity(i as u8))
            .ok_or_else(|| {
                format!(
                    "unknown severity {s:?}: expected one of {}",
                    SEVERITIES.join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod defaults {
    use super::*;
    pub fn facility() -> Facility {
        Facility(10) // authpriv: security/authorization messages
    }
    pub fn app_name() -> String {
        "confluence-audit".into()
    }
    pub fn severity() -> Severity {
        Severity(5) // notice
    }
    pub fn severity_failure() -> Severity {
        Severity(4) // warning
    }
    pub fn severity_alert() -> Severity {
        Severity(2) // crit
    }
    pub fn sd_id() -> String {
        // 32473 is the enterprise number RFC 5612 reserves for documentation and examples.
        "caf@32473".into()
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
}

/// The keys of `type = "syslog"` (see [`crate::config::keys`]).
pub fn shape() -> Shape {
    Shape::of::<SyslogConfig>(vec![("tls", Shape::of::<SyslogTlsConfig>(vec![]))])
}

/// Default UDP message limit: rsyslog's default `maxMessageSize` is 8 KiB.
pub const DEFAULT_UDP_MAX_MESSAGE_BYTES: usize = 8192;

/// Default `max_rate` for UDP (events per second).
pub const DEFAULT_UDP_MAX_RATE: u32 = 2_000;

/// The largest UDP payload over IPv4.
pub const MAX_UDP_MESSAGE_BYTES: usize = 65_507;

/// The smallest message every receiver must accept (RFC 5426 §3.2).
pub const MIN_MAX_MESSAGE_BYTES: usize = 480;

impl SyslogConfig {
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        Endpoint::parse(&self.address)
    }

    /// The framing in force (TCP/TLS).
    pub fn framing(&self, transport: &Transport) -> Framing {
        self.framing.unwrap_or(match transport {
            Transport::Tls => Framing::OctetCounting,
            _ => Framing::Lf,
        })
    }

    /// The message size limit in force, if any.
    pub fn max_message_bytes(&self, transport: &Transport) -> Option<usize> {
        self.max_message_bytes.or(match transport {
            Transport::Udp => Some(DEFAULT_UDP_MAX_MESSAGE_BYTES),
            _ => None,
        })
    }

    /// The send rate limit in force (events per second), if any.
    pub fn max_rate(&self, transport: &Transport) -> Option<u32> {
        match (self.max_rate, transport) {
            (Some(0), _) => None,
            (Some(r), _) => Some(r),
            (None, Transport::Udp) => Some(DEFAULT_UDP_MAX_RATE),
            (None, _) => None,
        }
    }

    /// Check everything that can be checked before connecting: the key at fault (relative to
    /// the sink) and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |k: &str, p: String| Err((k.to_owned(), p));
        let endpoint = match self.endpoint() {
            Ok(e) => e,
            Err(p) => return fail("address", p),
        };
        if endpoint.transport == Transport::Udp && self.framing.is_some() {
            return fail(
                "framing",
                "only for tcp:// and tls://: a UDP datagram is one message".into(),
            );
        }
        if self.app_name.is_empty()
            || self.app_name.len() > 48
            || !self.app_name.bytes().all(|b| (33..=126).contains(&b))
        {
            return fail(
                "app_name",
                "must be 1 to 48 printable ASCII characters without spaces (RFC 5424 APP-NAME)"
                    .into(),
            );
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 255 || !h.bytes().all(|b| (33..=126).contains(&b)))
        {
            return fail(
                "hostname",
                "must be 1 to 255 printable ASCII characters without spaces (RFC 5424 HOSTNAME)"
                    .into(),
            );
        }
        if !self.sd_id.is_empty()
            && (self.sd_id.len() > 32
                || !self
                    .sd_id
                    .bytes()
                    .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
                || !self.sd_id.contains('@'))
        {
            return fail(
                "sd_id",
                "must be \"\" (no structured data) or an RFC 5424 SD-ID like \"name@enterprise-number\": at most 32 printable ASCII characters without '=', ']', '\"' or spaces".into(),
            );
        }
        if let Some(m) = self.max_message_bytes
            && m < MIN_MAX_MESSAGE_BYTES
        {
            return fail(
                "max_message_bytes",
                format!("must be at least {MIN_MAX_MESSAGE_BYTES} (RFC 5426)"),
            );
        }
        if endpoint.transport == Transport::Udp
            && self
                .max_message_bytes
                .is_some_and(|m| m > MAX_UDP_MESSAGE_BYTES)
        {
            return fail(
                "max_message_bytes",
                format!("at most {MAX_UDP_MESSAGE_BYTES} for udp:// (the largest UDP datagram)"),
            );
        }
        if self.timeout.is_zero() {
            return fail("timeout", "must be more than zero".into());
        }
        let tls = &self.tls;
        let tls_set = tls.ca_file.is_some()
            || tls.cert_file.is_some()
            || tls.key_file.is_some()
            || tls.server_name.is_some();
        if endpoint.transport != Transport::Tls {
            if tls_set {
                return fail("tls", "only for tls:// addresses".into());
            }
            return Ok(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_default_ports() {
        let e = Endpoint::parse("tls://siem.example.com").unwrap();
        assert_eq!(
            (e.transport, e.host.as_str(), e.port),
            (Transport::Tls, "siem.example.com", 6514)
        );
        let e = Endpoint::parse("udp://[::1]:5514").unwrap();
        assert_eq!((e.transport, e.port), (Transport::Udp, 5514));
        assert_eq!(e.socket_address(), "[::1]:5514");
        assert!(Endpoint::parse("http://x:1").is_err());
        assert!(Endpoint::parse("tcp://x:1/path").is_err());
        assert!(Endpoint::parse("siem:514").is_err());
    }

    #[test]
    fn names_parse() {
        assert_eq!("authpriv".parse::<Facility>(), Ok(Facility(10)));
        assert_eq!("local7".parse::<Facility>(), Ok(Facility(23)));
        assert!("security".parse::<Facility>().is_err());
        assert_eq!("critical".parse::<Severity>(), Ok(Severity(2)));
        assert_eq!("notice".parse::<Severity>(), Ok(Severity(5)));
        assert!("loud".parse::<Severity>().is_err());
    }
}

#[cfg(test)]
mod load_tests {
    use crate::config::{Config, SinkKind};

    const BASE: &str = r#"
[[source]]
name = "wiki"
url = "https://wiki.example.com"
api = "auditing"
"#;

    fn load(sink: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{BASE}{sink}")).unwrap();
        Config::load_with_env(&path, &[])
    }

    #[test]
    fn the_issue_example_loads() {
        let cfg = load(
            r#"
[[sink]]
name = "siem"
type = "syslog"
address = "tcp://siem.example.com:514"
format = "rfc5424"
framing = "octet-counting"
payload = "cef"
facility = "authpriv"
app_name = "confluence-audit"
hostname = "wiki.example.com"
batch_max_events = 10
"#,
        )
        .unwrap();
        let SinkKind::Syslog(s) = &cfg.sink[0].kind else {
            panic!("not syslog")
        };
        assert_eq!(s.payload, super::PayloadFormat::Cef);
        assert_eq!(s.framing, Some(super::Framing::OctetCounting));
        assert_eq!(cfg.sink[0].batch_max_events, 10);
        assert_eq!(cfg.sink[0].kind.type_name(), "syslog");
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            ("address = \"http://x:1\"", "sink[0].address"),
            (
                "address = \"udp://x:1\"\nframing = \"lf\"",
                "sink[0].framing",
            ),
            (
                "address = \"tcp://x:1\"\napp_name = \"two words\"",
                "sink[0].app_name",
            ),
            (
                "address = \"tcp://x:1\"\nmax_message_bytes = 100",
                "sink[0].max_message_bytes",
            ),
            (
                "address = \"udp://x:1\"\nmax_message_bytes = 70000",
                "sink[0].max_message_bytes",
            ),
            (
                "address = \"tcp://x:1\"\nsd_id = \"bad]id\"",
                "sink[0].sd_id",
            ),
            (
                "address = \"tcp://x:1\"\n[sink.tls]\nca_file = \"/x\"",
                "sink[0].tls",
            ),
            (
                "address = \"tls://x:1\"\n[sink.tls]\nca_file = \"/nonexistent/ca.pem\"",
                "sink[0].tls.ca_file",
            ),
        ];
        for (body, key) in cases {
            let err = load(&format!(
                "[[sink]]\nname = \"s\"\ntype = \"syslog\"\n{body}\n"
            ))
            .unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
        // Typos are not silently ignored.
        let err = load("[[sink]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp://x:1\"\nfacilty = \"auth\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("facilty"), "{err}");
    }
}
