//! The configuration's own tests: secrets, start_at, keys named in errors.

use super::*;

#[test]
fn start_at_forms() {
    assert_eq!("beginning".parse::<StartAt>(), Ok(StartAt::Beginning));
    assert_eq!(
        "-24h".parse::<StartAt>(),
        Ok(StartAt::Ago(Duration::from_secs(86400)))
    );
    assert_eq!(
        "2025-11-25T00:00:00Z".parse::<StartAt>(),
        Ok(StartAt::Time(1_764_028_800_000))
    );
    assert!("yesterday".parse::<StartAt>().is_err());
    assert!("-99999999999999h".parse::<StartAt>().is_err());
}

#[test]
fn durations_that_would_overflow_are_errors() {
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    let e = parse_duration("99999999999999h").unwrap_err();
    assert!(
        e.contains("99999999999999h") && e.contains("100 years"),
        "{e}"
    );
    assert!(parse_duration("99999999999999999999999h").is_err());
}

#[test]
fn secrets_stay_out_of_debug_output_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, "file-secret-4711\n").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[source]]
name = "a"
url = "https://wiki.example.com"
api = "legacy"
[source.auth]
type = "basic"
username = "svc"
password = "inline-secret-0815"
[[source]]
name = "b"
url = "https://wiki2.example.com"
api = "cloud"
[source.auth]
type = "bearer"
token_file = "{}"
[[sink]]
name = "out"
type = "stdout"
"#,
            secret_file.display()
        ),
    )
    .unwrap();
    let cfg = Config::load_with_env(&path, &[]).unwrap();
    let creds: Vec<Credentials> = cfg
        .source
        .iter()
        .map(|s| s.credentials().unwrap())
        .collect();
    assert_eq!(
        creds[1],
        Credentials::Bearer(Secret::new("file-secret-4711"))
    );
    let shown = format!("{cfg:?} {creds:?}");
    assert!(!shown.contains("inline-secret-0815"), "{shown}");
    assert!(!shown.contains("file-secret-4711"), "{shown}");
    // An environment override of a secret is not echoed in errors either.
    let err = Config::load_with_env(
        &path,
        &[("CAF__SOURCE__0__PAGE_SIZE".into(), "not-a-number".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("page_size"), "{err}");
    assert!(!err.contains("inline-secret-0815"), "{err}");
}

#[test]
fn check_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[[source]]
name = "wiki"
url = "https://wiki.example.com"
api = "auditing"
[[sink]]
name = "out"
type = "file"
path = "/tmp/x"
"#;
    let cases: &[(&str, &str, &str)] = &[
        ("url = \"https://wiki.example.com\"\n", "", "source[0].url"),
        ("api = \"auditing\"", "api = \"jira\"", "source[0].api"),
        (
            "api = \"auditing\"",
            "api = \"auditing\"\nlag = \"soon\"",
            "source[0].lag",
        ),
        (
            "path = \"/tmp/x\"",
            "path = \"/tmp/x\"\n[[sink]]\nname = \"out\"\ntype = \"stdout\"",
            "sink[1].name",
        ),
        (
            "api = \"auditing\"",
            "api = \"auditing\"\n[source.auth]\ntype = \"basic\"\nusername = \"u\"\npassword_file = \"/nonexistent/secret\"",
            "source[0].auth.password_file",
        ),
    ];
    for (from, to, key) in cases {
        let text = base.replacen(from, to, 1);
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).unwrap();
        let err = Config::load_with_env(&path, &[]).unwrap_err();
        assert_eq!(err.key, *key, "{err} for\n{text}");
        assert!(err.file.ends_with("c.toml"));
    }
    // Duplicate source names.
    let dup = format!(
        "{base}\n[[source]]\nname = \"wiki\"\nurl = \"https://x.example.com\"\napi = \"legacy\"\n"
    );
    let path = dir.path().join("d.toml");
    std::fs::write(&path, dup).unwrap();
    let err = Config::load_with_env(&path, &[]).unwrap_err();
    assert_eq!(err.key, "source[1].name", "{err}");
    assert!(err.problem.contains("duplicate"), "{err}");
}

#[test]
fn secrets_do_not_debug_print() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "<redacted>");
    let a = AuthConfig {
        kind: AuthKind::Basic,
        password: Some(Secret::new("hunter2")),
        ..Default::default()
    };
    assert!(!format!("{a:?}").contains("hunter2"));
}
