//! Secret canaries: a distinctive secret in every secret key, every error path driven, and
//! not one canary — nor its base64 form — in stdout, stderr, `/metrics`, `/readyz` or the
//! state directory.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{
    Confluence, DaemonProcess, Scratch, free_port, http_get, ids_in_file, scrape, source_toml,
    wait_until,
};
use confluence_audit_forwarder::simulate::SimConfig;

const SOURCE_PASSWORD: &str = "CanarySourcePw-7f3a91";
const SOURCE_TOKEN: &str = "CanarySourceToken-5d20c4";
const ES_PASSWORD: &str = "CanaryEsPw-a81b2e";
const ES_API_KEY: &str = "CanaryEsKeyId:CanaryEsKeySecret-93d1";
const ES_TOKEN: &str = "CanaryEsToken-0c77f2";
const KAFKA_PASSWORD: &str = "CanaryKafkaPw-41e9bb";
const KAFKA_SSL_KEY_PASSWORD: &str = "CanarySslKeyPw-66aa01";
const KAFKA_MISTYPED: &str = "CanaryMistyped-1b2c3d";
const KAFKA_KEYSTORE_PASSWORD: &str = "CanaryKeystorePw-d4e5f6";

const CANARIES: &[&str] = &[
    SOURCE_PASSWORD,
    SOURCE_TOKEN,
    ES_PASSWORD,
    ES_API_KEY,
    ES_TOKEN,
    KAFKA_PASSWORD,
    KAFKA_SSL_KEY_PASSWORD,
    KAFKA_MISTYPED,
    KAFKA_KEYSTORE_PASSWORD,
];

/// Every way a canary could show: as is, base64, and base64 of `user:secret`.
fn forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for c in CANARIES {
        out.push((*c).to_owned());
        out.push(b64.encode(c));
        for user in ["svc", "elastic", "kafka-user"] {
            // Strip padding: the encoding may sit inside a longer base64 text.
            out.push(
                b64.encode(format!("{user}:{c}"))
                    .trim_end_matches('=')
                    .to_owned(),
            );
        }
    }
    out
}

fn assert_clean(what: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for f in forms() {
        assert!(!text.contains(&f), "{what} shows a secret ({f}):\n{text}");
    }
}

fn assert_dir_clean(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_clean(&p.display().to_string(), &std::fs::read(&p).unwrap());
        }
    }
}

fn check_config(path: &Path) -> std::process::Output {
    Command::new(common::bin())
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

/// Sinks holding every sink secret; none of them reachable.
fn unreachable_sinks(scratch: &Scratch, closed: u16) -> String {
    let es_pw = scratch.path("es-password");
    std::fs::write(&es_pw, format!("{ES_PASSWORD}\n")).unwrap();
    let es_token = scratch.path("es-token");
    std::fs::write(&es_token, ES_TOKEN).unwrap();
    format!(
        r#"
[[sink]]
name = "archive"
type = "file"
path = "{out}"

[[sink]]
name = "es-basic"
type = "elasticsearch"
url = "http://127.0.0.1:{closed}"
max_backoff = "200ms"
[sink.auth]
type = "basic"
username = "elastic"
password_file = "{es_pw}"

[[sink]]
name = "es-key"
type = "elasticsearch"
url = "http://127.0.0.1:{closed}"
max_backoff = "200ms"
[sink.auth]
type = "api_key"
api_key = "{ES_API_KEY}"

[[sink]]
name = "es-token"
type = "elasticsearch"
url = "http://127.0.0.1:{closed}"
max_backoff = "200ms"
[sink.auth]
type = "bearer"
token_file = "{es_token}"

[[sink]]
name = "kafka"
type = "kafka"
brokers = "127.0.0.1:{closed}"
topic = "audit"
delivery_timeout = "1s"
max_backoff = "200ms"
sasl_username = "kafka-user"
sasl_password = "{KAFKA_PASSWORD}"
ssl_key_password = "{KAFKA_SSL_KEY_PASSWORD}"
[sink.librdkafka]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"ssl.keystore.password" = "{KAFKA_KEYSTORE_PASSWORD}"

[[sink]]
name = "siem"
type = "syslog"
address = "tcp://127.0.0.1:{closed}"
timeout = "1s"
max_backoff = "200ms"
"#,
        out = scratch.path("events.ndjson").display(),
        es_pw = es_pw.display(),
        es_token = es_token.display(),
    )
}

#[test]
fn config_errors_never_show_a_secret() {
    let scratch = Scratch::new();
    let state = format!("[state]\ndir = \"{}\"\n", scratch.path("state").display());
    let source = |url: &str, auth: &str| {
        format!(
            "{state}[[source]]\nname = \"wiki\"\nurl = \"{url}\"\napi = \"cloud\"\n[source.auth]\n{auth}\n"
        )
    };
    let basic = format!("type = \"basic\"\nusername = \"svc\"\npassword = \"{SOURCE_PASSWORD}\"");
    let stdout_sink = "[[sink]]\nname = \"out\"\ntype = \"stdout\"\n";
    let kafka = |props: &str| {
        format!(
            "{}[[sink]]\nname = \"k\"\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9\"\ntopic = \"a\"\nsasl_password = \"{KAFKA_PASSWORD}\"\n[sink.librdkafka]\n{props}\n",
            source("https://wiki.example.com", &basic)
        )
    };
    let cases = [
        (
            "syntax error on the secret's line",
            source(
                "https://wiki.example.com",
                &format!("type = \"basic\"\nusername = \"svc\"\npassword = \"{SOURCE_PASSWORD}"),
            ) + stdout_sink,
        ),
        (
            "syntax error after the secret on its line",
            source(
                "https://wiki.example.com",
                &format!("type = \"bearer\"\ntoken = \"{SOURCE_TOKEN}\" x"),
            ) + stdout_sink,
        ),
        (
            "credentials in the source url",
            source(
                &format!("https://svc:{SOURCE_PASSWORD}@wiki.example.com"),
                "type = \"none\"",
            ) + stdout_sink,
        ),
        (
            "credentials in a url that does not parse",
            source(
                &format!("https://svc:{SOURCE_PASSWORD}@wiki example.com"),
                "type = \"none\"",
            ) + stdout_sink,
        ),
        (
            "credentials in the elasticsearch url",
            source("https://wiki.example.com", &basic)
                + &format!(
                    "[[sink]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"https://elastic:{ES_PASSWORD}@es:9200\"\n"
                ),
        ),
        (
            "credentials in the syslog address",
            source("https://wiki.example.com", &basic)
                + &format!(
                    "[[sink]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp://u:{ES_PASSWORD}@x:1\"\n"
                ),
        ),
        (
            "mistyped librdkafka secret",
            kafka(&format!("\"sasl.passwd\" = \"{KAFKA_MISTYPED}\"")),
        ),
        (
            "bad librdkafka value",
            kafka(&format!("\"security.protocol\" = \"{KAFKA_MISTYPED}\"")),
        ),
        (
            "secret of the wrong type",
            source(
                "https://wiki.example.com",
                &format!(
                    "type = \"basic\"\nusername = \"svc\"\npassword = [\"{SOURCE_PASSWORD}\"]"
                ),
            ) + stdout_sink,
        ),
        (
            "unknown key beside a secret",
            source(
                "https://wiki.example.com",
                &format!("{basic}\npasword = \"{SOURCE_TOKEN}\""),
            ) + stdout_sink,
        ),
    ];
    for (what, text) in cases {
        let path = scratch.config(&text);
        let out = check_config(&path);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&path.display().to_string()),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&format!("check-config stderr ({what})"), &out.stderr);
        assert_clean(&format!("check-config stdout ({what})"), &out.stdout);
        for cmd in ["run", "once"] {
            let out = Command::new(common::bin())
                .args([cmd, "--config"])
                .arg(&path)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{cmd} {what}");
            assert_clean(&format!("{cmd} stderr ({what})"), &out.stderr);
            assert_clean(&format!("{cmd} stdout ({what})"), &out.stdout);
        }
    }
}

#[test]
fn a_running_daemon_with_unreachable_sinks_and_trace_logs_never_shows_a_secret() {
    let c = Confluence::with_history(SimConfig::default(), 50);
    let scratch = Scratch::new();
    let port = free_port();
    let closed = free_port();
    let token = scratch.path("source-token");
    std::fs::write(&token, format!("{SOURCE_TOKEN}\n")).unwrap();
    let good = format!(
        "{}{}\n[state]\ndir = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\nlevel = \"trace\"\n",
        source_toml(
            "wiki",
            &c.url,
            "auditing",
            &format!(
                "[source.auth]\ntype = \"basic\"\nusername = \"svc\"\npassword = \"{SOURCE_PASSWORD}\""
            ),
        ),
        unreachable_sinks(&scratch, closed),
        scratch.path("state").display(),
    );
    let path = scratch.config(&good);
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = scratch.path("daemon.log");
    let daemon = DaemonProcess {
        child: Command::new(common::bin())
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "trace")
            .stdout(std::fs::File::create(scratch.path("daemon.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    };
    wait_until(
        Duration::from_secs(60),
        "the file sink to get the backfill",
        || {
            ids_in_file(&scratch.path("events.ndjson"))
                .values()
                .sum::<usize>()
                >= 50
        },
    );
    for sink in ["es-basic", "es-key", "es-token", "kafka", "siem"] {
        wait_until(
            Duration::from_secs(60),
            &format!("{sink} to fail twice"),
            || failures(port, sink) >= 2.0,
        );
    }
    // A SIGHUP whose file has a syntax error on a secret's line.
    let broken = good.replace(
        &format!("password = \"{SOURCE_PASSWORD}\""),
        &format!("password = \"{SOURCE_PASSWORD}"),
    );
    std::fs::write(&path, broken).unwrap();
    Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    wait_until(Duration::from_secs(30), "the failed reload", || {
        scrape(port, "caf_config_reload_failures_total") == Some(1.0)
    });
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    let (_, ready) = http_get(&format!("http://127.0.0.1:{port}/readyz"));
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert_clean("/metrics", metrics.as_bytes());
    assert_clean("/readyz", ready.as_bytes());
    let stderr = std::fs::read(&log).unwrap();
    assert!(
        stderr.len() > 10_000,
        "trace logging produced little: {}",
        stderr.len()
    );
    assert_clean("stderr", &stderr);
    assert_clean(
        "stdout",
        &std::fs::read(scratch.path("daemon.out")).unwrap(),
    );
    assert_dir_clean(&scratch.path("state"));
}

/// Failed attempts of `sink`, whatever their kind.
fn failures(port: u16, sink: &str) -> f64 {
    let (_, text) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    let prefix = format!("caf_sink_failures_total{{sink=\"{sink}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A server that answers every request 401 and echoes the request's headers in the body,
/// as some proxies do: the transport scrubs every credential it sent from what it logs
/// and serves.
#[test]
fn a_401_that_echoes_the_authorization_header_is_never_shown() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut headers = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                headers.push_str(&line);
            }
            let body = format!("{{\"message\": \"unauthorized\", \"request\": {headers:?}}}");
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let scratch = Scratch::new();
    let port = free_port();
    let path = scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        source_toml(
            "wiki",
            &url,
            "cloud",
            &format!("[source.auth]\ntype = \"basic\"\nusername = \"svc\"\npassword = \"{SOURCE_PASSWORD}\""),
        ),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ));
    let log = scratch.path("daemon.log");
    let daemon = DaemonProcess::start(&path, &log);
    wait_until(Duration::from_secs(30), "the 401 to be counted", || {
        scrape(
            port,
            "caf_source_errors_total{source=\"wiki\",kind=\"auth\"}",
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    let (_, ready) = http_get(&format!("http://127.0.0.1:{port}/readyz"));
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    drop(daemon);
    assert_clean("/readyz", ready.as_bytes());
    assert_clean("/metrics", metrics.as_bytes());
    assert_clean("stderr", &std::fs::read(&log).unwrap());
}
