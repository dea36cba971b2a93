//! A real Prometheus server (Debian's `prometheus`) for the alert-rule and dashboard tests:
//! started on a free loopback port with a generated configuration that scrapes one daemon
//! every second and evaluates the given rules every second, its TSDB in a tempdir, killed
//! when dropped (also when a test panics). Queried through its HTTP API with curl.
//!
//! With `CAF_NO_REAL_SERVERS=1`, `start` returns `None` and says loudly that nothing was
//! checked.
#![allow(dead_code)]

pub mod dashboard;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, http_get, wait_until};

pub struct Prometheus {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrape `target` (`host:port`) every second and evaluate `rules` (a rule file's text).
    pub fn start(target: &str, rules: &str) -> Option<Prometheus> {
        if std::env::var("CAF_NO_REAL_SERVERS").is_ok_and(|v| v == "1") {
            eprintln!(
                "\n*** SKIPPED: CAF_NO_REAL_SERVERS=1, so no real Prometheus was started and this test checked nothing ***\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("rules.yml"), rules).expect("write rules");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: caf\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; .ci/run installs it)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        wait_until(Duration::from_secs(60), "Prometheus ready", || {
            http_get(&format!("{}/-/ready", p.url)).0 == 200
        });
        Some(p)
    }

    /// The server's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/query?query=EXPR`: the whole answer (`status`, `data`, `error`).
    pub fn query(&self, expr: &str) -> Value {
        let out = Command::new("curl")
            .args(["-s", "-G", &format!("{}/api/v1/query", self.url)])
            .args(["--data-urlencode", &format!("query={expr}")])
            .output()
            .expect("run curl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "query {expr:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The value of a query that returns exactly one series (None when it returns none).
    pub fn value(&self, expr: &str) -> Option<f64> {
        let answer = self.query(expr);
        let result = answer["data"]["result"].as_array()?;
        let first = result.first()?;
        first["value"][1].as_str()?.parse().ok()
    }

    /// The state (`pending`, `firing`) of the alert `name` whose label `key` is `value`;
    /// None when it is not active.
    pub fn alert_state(&self, name: &str, key: &str, value: &str) -> Option<String> {
        let (status, body) = http_get(&format!("{}/api/v1/alerts", self.url));
        assert_eq!(status, 200, "/api/v1/alerts: {body}");
        let answer: Value = serde_json::from_str(&body).expect("alerts JSON");
        answer["data"]["alerts"]
            .as_array()
            .expect("data.alerts")
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"][key] == value)
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
