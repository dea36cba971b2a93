//! The deployment files ship with the code, so they are tested with it: the systemd unit
//! passes `systemd-analyze verify`, the Kubernetes manifests pass a strict schema check, and
//! the kustomization names only files that exist.

use std::path::Path;
use std::process::Command;

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh");
    assert!(
        found.status.success(),
        "{name} is not installed: run `bash .ci/run` (it installs the test tools)"
    );
    String::from_utf8(found.stdout).unwrap().trim().to_owned()
}

#[test]
fn systemd_unit_verifies() {
    let analyze = tool("systemd-analyze");
    let unit = std::fs::read_to_string(repo("deploy/systemd/confluence-audit-forwarder.service"))
        .expect("unit file");
    for key in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=confluence-audit-forwarder",
        "DynamicUser=yes",
        "LoadCredential=",
        "Restart=on-failure",
        "ExecReload=",
    ] {
        assert!(unit.contains(key), "unit lacks {key}");
    }
    // verify wants the binaries to exist: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit.replace(
        "/usr/local/bin/confluence-audit-forwarder",
        env!("CARGO_BIN_EXE_confluence-audit-forwarder"),
    );
    let path = dir.path().join("confluence-audit-forwarder.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about the unit itself are problems; lines about other units on this machine are not.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("confluence-audit-forwarder"))
        .collect();
    assert!(
        out.status.success() && own.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn kubernetes_manifests_pass_schema_check() {
    let validate = tool("kubernetes-validate");
    let dir = repo("deploy/kubernetes");
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
    let mut files = Vec::new();
    let mut in_resources = false;
    for line in kustomization.lines() {
        if line.starts_with("resources:") {
            in_resources = true;
            continue;
        }
        if in_resources {
            match line.trim().strip_prefix("- ") {
                Some(f) => files.push(dir.join(f)),
                None if line.starts_with(' ') => {}
                None => in_resources = false,
            }
        }
    }
    assert!(files.len() >= 6, "kustomization lists {files:?}");
    for f in &files {
        assert!(f.exists(), "kustomization names missing {}", f.display());
    }
    let out = Command::new(validate)
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate: {text}");
    assert_eq!(
        text.matches(" passed ").count(),
        files.len(),
        "every manifest must be checked against a schema: {text}"
    );
    let deployment = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    for key in [
        "replicas: 1",
        "type: Recreate",
        "path: /healthz",
        "path: /readyz",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(deployment.contains(key), "deployment lacks {key}");
    }
}
