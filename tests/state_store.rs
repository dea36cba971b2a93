//! The state store knows itself, through the real binary: an emptied or replaced store is
//! refused (exit 3) before a single duplicate reaches the file sink, `--accept-new-state`
//! starts over as the README says, random bytes in the store are a clean error (exit 4, no
//! panic), and a store deleted under the running daemon fails readiness and is logged.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, diff, free_port, http_get, ids_in_file, run_once,
    source_toml, wait_until,
};
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::SimConfig;
use confluence_audit_forwarder::state::{STORE_FILE, Store, claim_path};

const REFUSED: i32 = 3;
const UNREADABLE: i32 = 4;

fn config(scratch: &Scratch, url: &str, listen: &str) -> PathBuf {
    scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n[server]\nlisten = \"{listen}\"\n",
        source_toml("wiki", url, "legacy", ""),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ))
}

fn store_file(scratch: &Scratch) -> PathBuf {
    scratch.path("state").join(STORE_FILE)
}

/// `once` with extra arguments; returns the process output whatever its status.
fn once(cfg: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(["once", "--config"])
        .arg(cfg)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run once")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A first run that delivered every record to the file; returns the file's contents.
fn delivered_once(c: &Confluence, scratch: &Scratch, cfg: &Path) -> String {
    run_once(cfg);
    let got = ids_in_file(&scratch.path("events.ndjson"));
    let want = c.expected(Api::Legacy, i64::MAX);
    assert!(got == want, "first run: {}", diff(&want, &got));
    std::fs::read_to_string(scratch.path("events.ndjson")).unwrap()
}

/// The refusal names what happened and the way out, and leaves the file as it was.
fn assert_refused(out: &Output, scratch: &Scratch, before: &str, what: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(REFUSED), "{text}");
    for needle in [
        what,
        &store_file(scratch).display().to_string(),
        &scratch.path("events.ndjson").display().to_string(),
        "sink \"archive\"",
        "--accept-new-state",
        "backup",
    ] {
        assert!(text.contains(needle), "refusal lacks {needle:?}: {text}");
    }
    assert_eq!(
        std::fs::read_to_string(scratch.path("events.ndjson")).unwrap(),
        before,
        "the file changed although the daemon refused"
    );
}

#[test]
fn an_emptied_store_is_refused_and_accept_new_state_starts_over() {
    let c = Confluence::with_history(SimConfig::default(), 300);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, "");
    let before = delivered_once(&c, &scratch, &cfg);

    std::fs::write(store_file(&scratch), b"").unwrap();
    let out = once(&cfg, &[]);
    assert_refused(&out, &scratch, &before, "is empty (0 bytes)");
    // Still refused on the next try: nothing was created or claimed meanwhile.
    assert_eq!(std::fs::metadata(store_file(&scratch)).unwrap().len(), 0);
    assert_refused(&once(&cfg, &[]), &scratch, &before, "is empty (0 bytes)");

    // Starting over deliberately, as documented: the old file moved away, the new store
    // delivers everything once into a fresh file.
    std::fs::rename(scratch.path("events.ndjson"), scratch.path("old.ndjson")).unwrap();
    assert_refused_without_file(&once(&cfg, &[]));
    let out = once(&cfg, &["--accept-new-state"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = ids_in_file(&scratch.path("events.ndjson"));
    let want = c.expected(Api::Legacy, i64::MAX);
    assert!(got == want, "after starting over: {}", diff(&want, &got));
    // And from then on the new store is the one the file knows.
    run_once(&cfg);
    assert_eq!(ids_in_file(&scratch.path("events.ndjson")), want);
}

/// The output was moved away, but its claim still names the old store.
fn assert_refused_without_file(out: &Output) {
    assert_eq!(out.status.code(), Some(REFUSED), "{}", stderr(out));
}

#[test]
fn a_replaced_store_is_refused_and_accept_new_state_appends() {
    let c = Confluence::with_history(SimConfig::default(), 200);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, "");
    let before = delivered_once(&c, &scratch, &cfg);

    // Another store in its place (a wrong backup, another instance's state).
    std::fs::remove_file(store_file(&scratch)).unwrap();
    let other = Store::open(&scratch.path("state"), &["archive".to_owned()])
        .unwrap()
        .identity()
        .id
        .clone();
    let out = once(&cfg, &[]);
    assert_refused(&out, &scratch, &before, &other);
    assert!(stderr(&out).contains(&format!("is store {other}")));

    // With the flag the file keeps what it holds and the new store appends after it: every
    // event twice, exactly as the README warns.
    let out = once(&cfg, &["--accept-new-state"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(scratch.path("events.ndjson")).unwrap();
    assert!(text.starts_with(&before));
    let want = c.expected(Api::Legacy, i64::MAX);
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(got.iter().all(|(id, n)| *n == 2 * want[id]), "{got:?}");
    assert!(
        std::fs::read_to_string(claim_path(&scratch.path("events.ndjson")))
            .unwrap()
            .contains(&other)
    );
}

#[test]
fn random_bytes_in_the_store_are_a_clean_error_with_exit_code_4() {
    let c = Confluence::with_history(SimConfig::default(), 20);
    let scratch = Scratch::new();
    let cfg = config(&scratch, &c.url, "");
    std::fs::create_dir_all(scratch.path("state")).unwrap();
    let noise: Vec<u8> = (0..200_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(store_file(&scratch), &noise).unwrap();
    for command in ["once", "run"] {
        let out = Command::new(common::bin())
            .args([command, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(UNREADABLE), "{command}: {text}");
        assert!(
            text.contains(&store_file(&scratch).display().to_string()),
            "{text}"
        );
        assert!(text.contains("move") && text.contains("backup"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    assert_eq!(std::fs::read(store_file(&scratch)).unwrap(), noise);
    assert!(!scratch.path("events.ndjson").exists());
}

/// A daemon with `/readyz` on, ready and done delivering the first `n` events.
struct Running {
    cfg: PathBuf,
    daemon: DaemonProcess,
    readyz: String,
}

fn running(c: &Confluence, scratch: &Scratch, n: usize) -> Running {
    running_with(c, scratch, n, &[])
}

fn running_with(c: &Confluence, scratch: &Scratch, n: usize, args: &[&str]) -> Running {
    let port = free_port();
    let cfg = config(scratch, &c.url, &format!("127.0.0.1:{port}"));
    let daemon = DaemonProcess::start_with(&cfg, &scratch.path("daemon.log"), args);
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_until(Duration::from_secs(60), "ready and delivered", || {
        http_get(&readyz).0 == 200 && ids_in_file(&scratch.path("events.ndjson")).len() >= n
    });
    Running {
        cfg,
        daemon,
        readyz,
    }
}

#[test]
fn a_store_deleted_while_running_fails_readiness_and_is_logged() {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let scratch = Scratch::new();
    let Running {
        cfg,
        daemon,
        readyz,
    } = running(&c, &scratch, 100);

    std::fs::remove_file(store_file(&scratch)).unwrap();
    let mut body = String::new();
    wait_until(Duration::from_secs(30), "unready", || {
        let (status, b) = http_get(&readyz);
        body = b;
        status == 503
    });
    assert!(
        body.contains("state store") && body.contains("was deleted"),
        "{body}"
    );
    let logs = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    assert!(
        logs.contains("ERROR") && logs.contains("state store file is gone"),
        "{logs}"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{}", scratch.logs());

    // The next start is refused rather than delivering everything again.
    let before = std::fs::read_to_string(scratch.path("events.ndjson")).unwrap();
    let out = once(&cfg, &[]);
    assert_refused(&out, &scratch, &before, "does not exist");
}

/// SIGHUP: the daemon drains, re-reads its configuration and opens the store again.
fn reload(daemon: &DaemonProcess) {
    let pid = daemon.child.id().to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success());
}

#[test]
fn a_reload_reopens_the_same_store_and_its_claims() {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let scratch = Scratch::new();
    let run = running(&c, &scratch, 100);
    let (daemon, readyz) = (run.daemon, run.readyz);
    reload(&daemon);
    let logs = || std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    wait_until(
        Duration::from_secs(60),
        "reloaded and running again",
        || logs().contains("configuration reloaded") && logs().matches("running").count() >= 2,
    );
    wait_until(Duration::from_secs(30), "ready again", || {
        http_get(&readyz).0 == 200
    });
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{}", scratch.logs());
    let want = c.expected(Api::Legacy, i64::MAX);
    let got = ids_in_file(&scratch.path("events.ndjson"));
    assert!(got == want, "{}", diff(&want, &got));
}

#[test]
fn accept_new_state_covers_the_start_not_a_reload_that_finds_the_store_gone() {
    let c = Confluence::with_history(SimConfig::default(), 50);
    let scratch = Scratch::new();
    let run = running_with(&c, &scratch, 50, &["--accept-new-state"]);
    let mut daemon = run.daemon;
    std::fs::remove_file(store_file(&scratch)).unwrap();
    reload(&daemon);
    let mut exit = None;
    wait_until(Duration::from_secs(60), "the reload refused", || {
        exit = daemon.child.try_wait().unwrap();
        exit.is_some()
    });
    let logs = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    assert_eq!(exit.unwrap().code(), Some(REFUSED), "{logs}");
    assert!(logs.contains("does not exist"), "{logs}");
}
