//! No two writers of one file: a second forwarder pointed at a file the first one writes
//! refuses to start, naming the file and the process holding it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Confluence, DaemonProcess, Scratch, ids_in_file, source_toml, wait_until};
use confluence_audit_forwarder::simulate::SimConfig;

#[test]
fn a_second_daemon_on_the_same_file_is_refused_with_the_holder_named() {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let scratch = Scratch::new();
    let out = scratch.path("events.ndjson");
    let config = |state: &str, name: &str| {
        let text = format!(
            "{}\n[state]\ndir = \"{}\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n\n[server]\nlisten = \"\"\n",
            source_toml("wiki", &c.url, "auditing", ""),
            scratch.path(state).display(),
            out.display(),
        );
        let p = scratch.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let first_cfg = config("state-a", "a.toml");
    let second_cfg = config("state-b", "b.toml");
    let first = DaemonProcess::start(&first_cfg, &scratch.path("a.log"));
    wait_until(
        Duration::from_secs(60),
        "the first daemon's backfill",
        || ids_in_file(&out).values().sum::<usize>() >= 100,
    );

    // check-config does not take the lock: it passes beside the running daemon.
    let check = Command::new(common::bin())
        .args(["check-config", "--config"])
        .arg(&second_cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let second_log = scratch.path("b.log");
    let mut second = DaemonProcess {
        child: Command::new(common::bin())
            .args(["run", "--config"])
            .arg(&second_cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&second_log).unwrap())
            .spawn()
            .expect("run the second daemon"),
    };
    let mut status = None;
    wait_until(
        Duration::from_secs(30),
        "the second daemon to refuse",
        || {
            status = second.child.try_wait().unwrap();
            status.is_some()
        },
    );
    let stderr = std::fs::read_to_string(&second_log).unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{stderr}");
    assert!(stderr.contains(&out.display().to_string()), "{stderr}");
    assert!(stderr.contains("is locked"), "{stderr}");
    assert!(
        stderr.contains(&format!("by process {}", first.child.id())),
        "{stderr}"
    );
    // Nothing was written twice.
    let ids = ids_in_file(&out);
    assert!(ids.values().all(|n| *n == 1), "duplicates: {ids:?}");
    drop(first);
}
