//! The control socket answers only the daemon's own user (and root): another user is kept
//! out by the socket's mode, and, should the mode ever be opened up, by the daemon checking
//! each peer's uid. The test asks `status` as `nobody` (setpriv; through `sudo -n` when it
//! does not run as root, as `.ci/run` does for apt-get), both ways.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{Confluence, DaemonProcess, Scratch, bin, source_toml, wait_until};
use confluence_audit_forwarder::simulate::SimConfig;

/// `status --json` run as `nobody` (uid and gid 65534, no supplementary groups).
fn status_as_nobody(binary: &Path, config: &Path) -> Output {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new("setpriv")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "setpriv"]);
        sudo
    };
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .expect("run setpriv (util-linux)")
}

/// What a refused `status` printed; panics if it was not refused, or if switching to
/// `nobody` itself failed (no root and no password-less sudo: this test cannot run then).
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("sudo:") && !stderr.contains("setpriv:"),
        "could not run a command as nobody (needs root or password-less sudo): {stderr}"
    );
    assert!(!out.status.success(), "status as nobody: {stderr}");
    assert!(out.stdout.is_empty(), "no report for nobody");
    stderr
}

fn world_readable(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[test]
fn another_user_is_refused_by_the_socket_mode_and_by_the_peer_check() {
    let c = Confluence::with_history(SimConfig::default(), 50);
    let scratch = Scratch::new();
    let cfg = scratch.config(&format!(
        "{}\n[state]\ndir = \"{}\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n[server]\nlisten = \"\"\n",
        source_toml("wiki", &c.url, "legacy", ""),
        scratch.path("state").display(),
        scratch.path("events.ndjson").display(),
    ));
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let socket = scratch.path("state").join("control.sock");
    wait_until(
        std::time::Duration::from_secs(30),
        "the control socket",
        || socket.exists(),
    );
    // Everything but the socket open to `nobody`: the binary (a copy, wherever the build
    // lives), the scratch and state directories, the config.
    let binary = scratch.path("caf");
    std::fs::copy(bin(), &binary).expect("copy the binary");
    world_readable(&binary, 0o755);
    world_readable(scratch.dir.path(), 0o755);
    world_readable(&scratch.path("state"), 0o755);
    world_readable(&cfg, 0o644);

    // The socket's mode (0600) keeps `nobody` out.
    let stderr = refused(&status_as_nobody(&binary, &cfg));
    assert!(
        stderr.contains("control.sock") && stderr.contains("Permission denied"),
        "{stderr}"
    );

    // Opened up by mistake, the socket still answers nobody else: the daemon checks the
    // peer's uid and hangs up.
    world_readable(&socket, 0o666);
    let stderr = refused(&status_as_nobody(&binary, &cfg));
    assert!(stderr.contains("control.sock"), "{stderr}");
    wait_until(
        std::time::Duration::from_secs(10),
        "the daemon logging the refusal",
        || {
            scratch
                .logs()
                .contains("refused a connection from another user")
        },
    );

    // Its own user (root here) is still answered.
    let own = Command::new(&binary)
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&own.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&own.stderr));
    });
    assert_eq!(report["daemon"], "running");
    drop(daemon);
}
