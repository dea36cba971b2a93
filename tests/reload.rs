//! SIGHUP with a file that fails to load or build: the running daemon keeps its
//! configuration, keeps delivering, says why, and counts it in
//! `caf_config_reload_failures_total`. It never exits.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    Confluence, DaemonProcess, Scratch, free_port, ids_in_file, scrape, source_toml, wait_until,
};
use confluence_audit_forwarder::simulate::SimConfig;

fn config_text(scratch: &Scratch, url: &str, listen: &str, source_extra: &str) -> String {
    format!(
        "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n[server]\nlisten = \"{listen}\"\n",
        source_toml("wiki", url, "auditing", source_extra),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    )
}

fn hangup(daemon: &DaemonProcess) {
    let status = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

#[test]
fn a_reload_that_fails_to_build_keeps_the_daemon_running_and_delivering() {
    let c = Confluence::with_history(SimConfig::default(), 200);
    let scratch = Scratch::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let path = scratch.config(&config_text(&scratch, &c.url, &listen, ""));
    let mut daemon = DaemonProcess::start(&path, &scratch.path("daemon.log"));
    let out = scratch.path("events.ndjson");
    let delivered = || ids_in_file(&out).values().sum::<usize>();
    wait_until(Duration::from_secs(60), "the backfill", || {
        delivered() >= 200
    });

    // Each of these passed the old check-config and then failed at start.
    let broken = [
        config_text(&scratch, &c.url, "not-an-address", ""),
        config_text(
            &scratch,
            &c.url,
            &listen,
            &format!(
                "[source.tls]\nca_file = \"{}\"",
                scratch.path("missing-ca.pem").display()
            ),
        ),
        config_text(&scratch, &c.url, &listen, "")
            .replace("[[sink]]", "[[sink]]\nbatch_max_event = 5"),
    ];
    for (i, text) in broken.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        hangup(&daemon);
        let want = (i + 1) as f64;
        wait_until(
            Duration::from_secs(30),
            "the reload failure to be counted",
            || scrape(port, "caf_config_reload_failures_total") == Some(want),
        );
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "the daemon exited on a bad reload: {}",
            scratch.logs()
        );
    }
    let logs = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    assert!(logs.contains("keeping the running configuration"), "{logs}");
    assert!(logs.contains("server.listen"), "{logs}");
    assert!(logs.contains("tls.ca_file"), "{logs}");
    assert!(logs.contains("batch_max_event"), "{logs}");

    // Still polling and delivering with the configuration it had.
    let before = delivered();
    let now = c.sim.now_ms();
    for i in 0..25 {
        c.sim.insert_random(now - 1_000 + i, None);
    }
    wait_until(
        Duration::from_secs(60),
        "new events after the failed reloads",
        || delivered() >= before + 25,
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}: {}", scratch.logs());
}

#[test]
fn a_reloaded_configuration_that_cannot_start_falls_back_to_the_running_one() {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let scratch = Scratch::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let text = config_text(&scratch, &c.url, &listen, "");
    let path = scratch.config(&text);
    let mut daemon = DaemonProcess::start(&path, &scratch.path("daemon.log"));
    let out = scratch.path("events.ndjson");
    let delivered = || ids_in_file(&out).values().sum::<usize>();
    wait_until(Duration::from_secs(60), "the backfill", || {
        delivered() >= 100
    });

    // The new file checks out, but another process holds the lock on its sink's file, so
    // it cannot start: the daemon goes back to the configuration it had.
    let other = scratch.path("held.ndjson");
    let held = std::fs::File::create(&other).unwrap();
    held.lock().unwrap();
    std::fs::write(
        &path,
        text.replace(&out.display().to_string(), &other.display().to_string()),
    )
    .unwrap();
    hangup(&daemon);
    wait_until(
        Duration::from_secs(60),
        "the fallback to be counted",
        || scrape(port, "caf_config_reload_failures_total") == Some(1.0),
    );
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "{}",
        scratch.logs()
    );
    let logs = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    assert!(logs.contains("going back to the previous one"), "{logs}");
    assert!(logs.contains("held.ndjson is locked"), "{logs}");

    let before = delivered();
    let now = c.sim.now_ms();
    for i in 0..10 {
        c.sim.insert_random(now - 1_000 + i, None);
    }
    wait_until(
        Duration::from_secs(60),
        "delivery to the old file again",
        || delivered() >= before + 10,
    );
    assert_eq!(std::fs::metadata(&other).unwrap().len(), 0);
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}");
}
