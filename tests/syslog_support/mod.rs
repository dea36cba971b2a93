//! Test support for the syslog sink: a real rsyslogd on loopback (UDP, TCP or TLS input)
//! that writes every message it parsed as one JSON line, certificates for TLS, hostile
//! ECS documents, and checks that what rsyslog wrote is exactly what was sent.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How rsyslog listens.
#[derive(Debug, Clone)]
pub enum Input {
    Udp,
    Tcp,
    /// imtcp with the gtls driver; `client_auth`: require a client certificate from `ca`.
    Tls {
        certs: Certs,
        client_auth: bool,
    },
}

/// A running `rsyslogd -n` with its own config; killed on drop.
pub struct Rsyslog {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    input: Input,
}

/// A free loopback port (UDP and TCP both free at the time of asking).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `rsyslogd`, or a clear failure: CI installs the Debian packages.
pub fn rsyslogd() -> PathBuf {
    for p in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("which").arg("rsyslogd").output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    panic!(
        "rsyslogd not found: the syslog sink tests need Debian packages rsyslog and rsyslog-gnutls (apt-get install rsyslog rsyslog-gnutls)"
    );
}

const TEMPLATE: &str = r#"
template(name="caf_json" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="programname" name="programname" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}
"#;

impl Rsyslog {
    pub fn start(input: Input) -> Rsyslog {
        Self::start_on(input, free_port())
    }

    /// Start on a given port (to restart a receiver where a sink expects it).
    pub fn start_on(input: Input, port: u16) -> Rsyslog {
        let bin = rsyslogd();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let out = format!("{d}/out.jsonl");
        let (global_tls, inputs) = match &input {
            Input::Udp => (
                String::new(),
                format!(
                    "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"out\")"
                ),
            ),
            Input::Tcp => (
                String::new(),
                format!(
                    "module(load=\"imtcp\" maxSessions=\"100\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"out\")"
                ),
            ),
            Input::Tls { certs, client_auth } => {
                let auth = if *client_auth {
                    "x509/certvalid"
                } else {
                    "anon"
                };
                (
                    format!(
                        " defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                        certs.ca.display(),
                        certs.server_cert.display(),
                        certs.server_key.display()
                    ),
                    format!(
                        "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"{auth}\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"out\")"
                    ),
                )
            }
        };
        // No imuxsock/imklog: this rsyslogd only hears the test. Control characters are
        // kept raw on receipt so that an injected one would show, not be escaped away.
        let conf = format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"256k\" parser.escapeControlCharactersOnReceive=\"off\"{global_tls})\n{TEMPLATE}\nruleset(name=\"out\") {{ action(type=\"omfile\" file=\"{out}\" template=\"caf_json\") }}\n{inputs}\n"
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let log = std::fs::File::create(dir.path().join("rsyslogd.log")).expect("log");
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rsyslogd");
        let mut r = Rsyslog {
            child,
            dir,
            port,
            input,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", self.log());
            }
            let ready = match self.input {
                // A datagram that shows up in the output proves the input is listening.
                Input::Udp => {
                    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let _ = s.send_to(b"<14>1 - - caf-probe - - - ready", ("127.0.0.1", self.port));
                    std::thread::sleep(Duration::from_millis(50));
                    self.raw_lines().iter().any(|l| l.contains("caf-probe"))
                }
                _ => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            };
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "rsyslogd did not start listening on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }

    /// Complete lines only: rsyslog may be in the middle of writing the last one.
    fn raw_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("out.jsonl")).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete.lines().map(str::to_owned).collect()
    }

    /// Every message rsyslog wrote (probes left out), one JSON object each.
    pub fn messages(&self) -> Vec<Value> {
        self.raw_lines()
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("rsyslog wrote a line that is not JSON ({e}): {l}"))
            })
            .filter(|m| m["app"] != "caf-probe")
            .collect()
    }

    /// Wait until `f` holds for the messages written so far.
    pub fn wait_for(&self, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let m = self.messages();
            if f(&m) {
                return m;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; rsyslog has {} messages; its log: {}",
                m.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PEM files for TLS tests: a CA, a server certificate for `syslog.test` only (so the
/// client must use `server_name`), a client certificate, and an unrelated CA.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
}

pub const SERVER_NAME: &str = "syslog.test";

impl Certs {
    pub fn generate(dir: &Path) -> Certs {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let ca_key = KeyPair::generate().unwrap();
        let ca_params_main = ca_params("caf test CA");
        let ca_cert = ca_params_main.clone().self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params_main, &ca_key);

        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key) = leaf(
            vec![SERVER_NAME.into()],
            SERVER_NAME,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = leaf(
            vec!["forwarder.test".into()],
            "forwarder.test",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let other_key = KeyPair::generate().unwrap();
        let other = ca_params("some other CA").self_signed(&other_key).unwrap();

        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        Certs {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other.pem()),
        }
    }
}

/// Text that tries to break out of its place, for every field that reaches syslog.
pub fn hostile_values() -> Vec<String> {
    vec![
        "line one\nline two\r\n<13>1 2025-01-01T00:00:00Z evil.example.com evil - - - injected"
            .into(),
        "\n<86>Jan  1 00:00:00 evil sshd[1]: Accepted password for root".into(),
        "pipe|equals=back\\slash]bracket\"quote[sd@1 x=\"y\"]".into(),
        "CEF:0|Evil|Corp|1|2|n|10|act=evil src=6.6.6.6".into(),
        "LEEF:2.0|Evil|Corp|1|2|x09|src=6.6.6.6\tusrName=root".into(),
        format!("{}é\\", "5KiB".repeat(1280)),
        "replacement \u{FFFD}\u{FFFD} from invalid UTF-8".into(),
        "emoji 🎉🔥👩‍💻 and 日本語".into(),
        "controls \t tab \0 nul \u{7f} del \u{85} nel \u{2028} ls \u{2029} ps \u{1b}[31m esc"
            .into(),
        "trailing backslash \\".into(),
        " spaces around ".into(),
        "#012 and #015 look escaped".into(),
    ]
}

/// A realistic ECS document.
pub fn clean_doc(id: &str) -> Value {
    json!({
        "@timestamp": "2025-11-25T10:00:00.123Z",
        "event": {"id": id, "created": "2025-11-25T10:00:05Z", "kind": "event",
                  "module": "confluence", "dataset": "confluence.audit",
                  "action": "user-login", "category": ["authentication"], "type": ["start"],
                  "outcome": "success", "provider": "confluence"},
        "message": "jadmin logged in",
        "user": {"name": "jadmin", "id": "42", "full_name": "J. Admin"},
        "source": {"ip": "10.1.2.3", "address": "10.1.2.3"},
        "service": {"address": "https://wiki.example.com"},
        "related": {"hosts": ["wiki.example.com"], "user": ["jadmin"], "ip": ["10.1.2.3"]},
        "observer": {"vendor": "Atlassian", "product": "Confluence", "type": "audit"},
        "data_stream": {"type": "logs", "dataset": "confluence.audit", "namespace": "default"},
        "ecs": {"version": "9.4.0"},
    })
}

/// A document with `text` in every string field that reaches a syslog header or payload.
/// Long values go to fewer fields so the document still fits one UDP datagram.
pub fn hostile_doc(id: &str, text: &str, alert: bool) -> Value {
    let mut d = clean_doc(id);
    let t = || Value::String(text.to_owned());
    d["event"]["action"] = t();
    d["message"] = t();
    d["user"]["name"] = t();
    d["related"]["hosts"] = json!([text]);
    d["confluence"] = json!({"space": {"key": text}, "content": {"title": text}});
    if text.len() < 1000 {
        d["event"]["outcome"] = t();
        d["event"]["category"] = json!([text, "iam"]);
        d["event"]["kind"] = t();
        d["user"]["id"] = t();
        d["user"]["target"] = json!({"name": text, "id": text});
        d["source"]["ip"] = t(); // not an IP: must be left out of CEF/LEEF
        d["service"]["address"] = t();
        d["group"] = json!({"name": text});
        d["rule"] = json!({"name": text});
        d["url"] = json!({"full": text});
        d["file"] = json!({"name": text});
        d["observer"]["vendor"] = t();
        d["observer"]["product"] = t();
        d["observer"]["version"] = t();
    }
    if alert {
        d["event"]["kind"] = "alert".into();
    }
    d
}
