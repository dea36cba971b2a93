//! The real servers of `tests/servers/` for the tests that need one: started through
//! `tests/servers/run.sh` (Maven Central artifacts, cached in ~/.m2) once per test binary,
//! stopped on drop. Each binary gets its own instance (`CAF_SERVER_INSTANCE`), so binaries
//! running at once do not share a cluster. With `CAF_NO_REAL_SERVERS=1`, `start` returns
//! `None` and says loudly that the test is skipped; otherwise a server that will not start
//! fails the test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

pub struct RealServer {
    name: String,
    instance: String,
    /// `http://127.0.0.1:PORT` (search servers) or `127.0.0.1:PORT` (Kafka).
    pub url: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl RealServer {
    /// Start `name` (kafka, opensearch, elasticsearch) for this test binary (`instance`).
    pub fn start(name: &str, instance: &str) -> Option<RealServer> {
        if std::env::var("CAF_NO_REAL_SERVERS").is_ok_and(|v| v == "1") {
            eprintln!(
                "\n*** SKIPPED: CAF_NO_REAL_SERVERS=1, so no real {name} was started and this test checked nothing ***\n"
            );
            return None;
        }
        let instance = format!("{instance}-{}", std::process::id());
        let out = Command::new("bash")
            .arg(repo().join("tests/servers/run.sh"))
            .args(["start", name])
            .env("CAF_SERVER_INSTANCE", &instance)
            .output()
            .expect("run tests/servers/run.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let server = RealServer {
            name: name.to_owned(),
            instance,
            url: stdout.lines().last().unwrap_or("").trim().to_owned(),
        };
        assert!(
            out.status.success() && !server.url.is_empty(),
            "tests/servers/run.sh start {name} failed (set CAF_NO_REAL_SERVERS=1 to skip):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(server)
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        // Keep data and logs of a failed test for the post-mortem; otherwise free the disk.
        let remove = if std::thread::panicking() { "0" } else { "1" };
        let _ = Command::new("bash")
            .arg(repo().join("tests/servers/run.sh"))
            .args(["stop", &self.name])
            .env("CAF_SERVER_INSTANCE", &self.instance)
            .env("CAF_SERVER_REMOVE", remove)
            .status();
    }
}

/// One HTTP request with curl (no async runtime in these tests): (status, JSON body or
/// `Null`). Status 0 when nothing answered.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(b) = body {
        let ct = if b.ends_with('\n') {
            "content-type: application/x-ndjson"
        } else {
            "content-type: application/json"
        };
        cmd.args(["-H", ct, "--data-binary", b]);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}
