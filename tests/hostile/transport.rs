//! Hostile transport: how a response arrives — its headers (`Date`, `Retry-After`), its size,
//! its redirects, its certificate and the text of its errors. Each test makes the server do
//! one of these wrong and asserts what a user sees: every event delivered exactly once, the
//! failure counted under its kind, a message that says what is wrong, a bounded process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use confluence_audit_forwarder::normalize::Api;
use confluence_audit_forwarder::simulate::{SimAuth, SimConfig};
use confluence_audit_forwarder::state::Store;

use crate::common::{
    Confluence, DaemonProcess, Scratch, diff, free_port, http_get, scrape, source_toml, wait_until,
};
use crate::server::{HostileServer, Req, Resp, RespBody, on_request, on_response};
use harness::{
    EVENTS, PEAK_RSS_BOUND_KIB, check_config, config, delivered, first_events_requests, gzip_bomb,
    once, once_behind, query_string, run_shows_unready, run_until_delivered, source_errors,
};

#[path = "transport_harness.rs"]
mod harness;

#[test]
fn the_gzip_bomb_really_inflates() {
    use std::io::Read;
    let units = 1000;
    let mut inflated = vec![1u8; 1 + 258 * (1 + 8 * units)];
    flate2::read::GzDecoder::new(&gzip_bomb(units)[..])
        .read_exact(&mut inflated)
        .expect("inflates to its full size");
    assert!(inflated.iter().all(|b| *b == 0));
}

#[test]
fn a_date_in_9999_or_1970_is_not_believed() {
    for date in [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ] {
        let c = Confluence::with_history(SimConfig::default(), 300);
        let hostile = HostileServer::start(
            &c.url,
            on_response(move |_: &Req, resp: &mut Resp| resp.set_header("date", date)),
        );
        let scratch = Scratch::new();
        let (_daemon, _, port, _) = run_until_delivered(&c, &hostile, &scratch, "");
        // Still polling by the local clock: a record written now arrives too.
        c.sim.insert_random(c.sim.now_ms() - 1_000, None);
        let expected = c.expected(Api::Legacy, i64::MAX);
        wait_until(Duration::from_secs(60), "the new record delivered", || {
            delivered(&scratch) == expected
        });
        assert!(source_errors(port, "clock_skew") >= 1.0, "{date}");
        let cursor = scrape(port, "caf_source_cursor_timestamp_seconds{source=\"wiki\"}")
            .expect("cursor gauge");
        let now = c.sim.now_ms() as f64 / 1000.0;
        assert!(
            cursor <= now + 600.0 && cursor > now - 3600.0,
            "{date}: cursor {cursor} vs now {now}"
        );
        let log = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
        assert_eq!(
            log.matches("Date header is further from the local clock")
                .count(),
            1,
            "{date}: warned once\n{log}"
        );
    }
}

#[test]
fn a_gzip_bomb_is_abandoned_at_the_cap() {
    let c = Confluence::with_history(SimConfig::default(), 300);
    let bomb = Arc::new(gzip_bomb(8_000_000 / 13)); // 8 MB that inflate to 1.3 GB
    let hostile = HostileServer::start(
        &c.url,
        first_events_requests(2, move || {
            let mut r = Resp::new(200, bomb.to_vec());
            r.set_header("content-encoding", "gzip");
            r
        }),
    );
    abandoned_at_the_cap(&c, &hostile);
}

#[test]
fn a_500_mb_body_is_abandoned_at_the_cap() {
    let c = Confluence::with_history(SimConfig::default(), 300);
    let hostile = HostileServer::start(
        &c.url,
        first_events_requests(2, || Resp {
            status: axum::http::StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            body: RespBody::Stream {
                len: 500 << 20,
                chunk: vec![b' '; 64 << 10],
            },
        }),
    );
    abandoned_at_the_cap(&c, &hostile);
}

/// Every event delivered in the end; the oversized bodies counted and named (URL, size);
/// memory under the README's bound.
fn abandoned_at_the_cap(c: &Confluence, hostile: &HostileServer) {
    let scratch = Scratch::new();
    let (_daemon, log, port, peak) = run_until_delivered(c, hostile, &scratch, "");
    assert!(source_errors(port, "too_large") >= 1.0, "{log}");
    let said = format!("{}{EVENTS} is more than 67108864 bytes", hostile.url);
    assert!(log.contains(&said), "{log}");
    eprintln!("peak RSS {peak} KiB");
    assert!(peak < PEAK_RSS_BOUND_KIB, "peak RSS {peak} KiB");
}

#[test]
fn a_huge_retry_after_is_cut_to_max_backoff() {
    let c = Confluence::with_history(SimConfig::default(), 200);
    let hostile = HostileServer::start(
        &c.url,
        first_events_requests(3, || {
            Resp::new(429, "slow down").header("retry-after", "99999999")
        }),
    );
    let (scratch, status, stderr) = once_behind(&hostile.url, "", &["--timeout", "60s"]);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("longer than max_backoff"), "{stderr}");
    let expected = c.expected(Api::Legacy, i64::MAX);
    assert_eq!(delivered(&scratch), expected);
}

#[test]
fn once_timeout_ends_a_source_that_always_fails_and_keeps_the_rest() {
    let good = Confluence::with_history(SimConfig::default(), 200);
    let down = HostileServer::start(
        &good.url,
        on_request(|_: &mut Req| Some(Resp::new(503, "maintenance").header("retry-after", "1"))),
    );
    let scratch = Scratch::new();
    let sources = format!(
        "{}{}",
        source_toml("wiki", &good.url, "legacy", ""),
        source_toml("down", &down.url, "legacy", ""),
    );
    let cfg = config(&scratch, &sources, free_port());
    let (status, stderr) = once(&cfg, &["--timeout", "3s"], Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("source \"down\": did not finish within --timeout 3s"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("source \"wiki\": did not finish"),
        "{stderr}"
    );
    let expected = good.expected(Api::Legacy, i64::MAX);
    let got = delivered(&scratch);
    assert_eq!(got, expected, "{}", diff(&expected, &got));
}

#[test]
fn a_redirect_to_another_origin_is_refused() {
    let c = Confluence::with_history(SimConfig::default(), 50);
    let elsewhere = HostileServer::start(&c.url, on_request(|_: &mut Req| None));
    let target = elsewhere.url.clone();
    let hostile = HostileServer::start(
        &c.url,
        on_request(move |req: &mut Req| {
            (req.path == EVENTS).then(|| {
                Resp::new(302, "").header(
                    "location",
                    &format!("{target}{EVENTS}?{}", query_string(req)),
                )
            })
        }),
    );
    let (scratch, status, stderr) = once_behind(&hostile.url, "", &["--timeout", "30s"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused a redirect to another origin"),
        "{stderr}"
    );
    assert!(delivered(&scratch).is_empty());
    run_shows_unready(&hostile.url, "redirect", "another origin");
    assert_eq!(
        elsewhere.requests_to(EVENTS),
        0,
        "the other origin was asked"
    );
}

#[test]
fn a_same_origin_redirect_is_followed_with_the_credentials() {
    let auth = SimAuth::Basic {
        username: "svc".into(),
        password: "pw-same-origin".into(),
    };
    let c = Confluence::with_history(
        SimConfig {
            auth,
            ..SimConfig::default()
        },
        200,
    );
    let moved_with_auth = Arc::new(Mutex::new(Vec::new()));
    let seen = moved_with_auth.clone();
    let hostile = HostileServer::start(
        &c.url,
        on_request(move |req: &mut Req| {
            if let Some(rest) = req.path.strip_prefix("/moved") {
                seen.lock()
                    .unwrap()
                    .push(req.headers.contains_key("authorization"));
                req.path = rest.to_owned();
                return None;
            }
            (req.path == EVENTS).then(|| {
                Resp::new(307, "")
                    .header("location", &format!("/moved{EVENTS}?{}", query_string(req)))
            })
        }),
    );
    let scratch = Scratch::new();
    let extra =
        "[source.auth]\ntype = \"basic\"\nusername = \"svc\"\npassword = \"pw-same-origin\"";
    let cfg = config(
        &scratch,
        &source_toml("wiki", &hostile.url, "legacy", extra),
        free_port(),
    );
    let (status, stderr) = once(&cfg, &["--timeout", "60s"], Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    let expected = c.expected(Api::Legacy, i64::MAX);
    assert_eq!(delivered(&scratch), expected);
    let moved = moved_with_auth.lock().unwrap();
    assert!(!moved.is_empty() && moved.iter().all(|a| *a), "{moved:?}");
}

/// A self-signed certificate with CA:TRUE for localhost, as `openssl req -x509` makes:
/// (certificate PEM, key PEM).
fn openssl_style_self_signed() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn a_self_signed_certificate_is_refused_in_words_and_trusted_via_ca_file() {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let (cert, key) = openssl_style_self_signed();
    let hostile = HostileServer::start_tls(&c.url, on_request(|_: &mut Req| None), &cert, &key);

    let (refused, status, stderr) = once_behind(&hostile.url, "", &["--timeout", "30s"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS with")
            && stderr.contains("self-signed")
            && stderr.contains("tls.ca_file"),
        "{stderr}"
    );
    assert!(delivered(&refused).is_empty());
    run_shows_unready(&hostile.url, "tls", "self-signed");

    let trusted = Scratch::new();
    let ca = trusted.path("confluence.pem");
    std::fs::write(&ca, &cert).unwrap();
    let extra = format!("[source.tls]\nca_file = \"{}\"", ca.display());
    let cfg = config(
        &trusted,
        &source_toml("wiki", &hostile.url, "legacy", &extra),
        free_port(),
    );
    let (status, stderr) = once(&cfg, &["--timeout", "60s"], Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    assert_eq!(delivered(&trusted), c.expected(Api::Legacy, i64::MAX));

    // Skipping verification works, and is never silent.
    let skipping = Scratch::new();
    let extra = "[source.tls]\ninsecure_skip_verify = true";
    let cfg = config(
        &skipping,
        &source_toml("wiki", &hostile.url, "legacy", extra),
        free_port(),
    );
    let checked = check_config(&cfg);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success()
            && said.contains("warning")
            && said.contains("insecure_skip_verify"),
        "{said}"
    );
    let (status, stderr) = once(&cfg, &["--timeout", "60s"], Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("certificate is NOT checked"), "{stderr}");
}

#[test]
fn escape_sequences_in_an_error_body_cannot_forge_log_lines() {
    let c = Confluence::with_history(SimConfig::default(), 100);
    let forged = "2026-01-01T00:00:00.000000Z ERROR forged: all events delivered";
    let body = format!("boom\n{forged}\x1b[2J\x1b[31m\r");
    let hostile = HostileServer::start(
        &c.url,
        first_events_requests(3, move || Resp::new(500, body.clone())),
    );
    let (scratch, status, stderr) = once_behind(&hostile.url, "", &["--timeout", "60s"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(delivered(&scratch), c.expected(Api::Legacy, i64::MAX));
    assert!(
        stderr.contains("boom\\n2026-01-01T00:00:00.000000Z ERROR forged"),
        "logged, escaped: {stderr}"
    );
    assert!(!stderr.lines().any(|l| l.starts_with(forged)), "{stderr}");
    // No escape sequence at all: neither the server's nor colour (stderr is not a terminal).
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
}

#[test]
fn credentials_echoed_by_a_401_never_reach_the_log_or_readyz() {
    let (user, password) = ("svc-echo", "pw-Canary-31337");
    let c = Confluence::with_history(
        SimConfig {
            auth: SimAuth::Basic {
                username: user.into(),
                password: password.into(),
            },
            ..SimConfig::default()
        },
        100,
    );
    let refusing = Arc::new(AtomicBool::new(true));
    let hostile = HostileServer::start(&c.url, {
        let refusing = refusing.clone();
        on_request(move |req: &mut Req| {
            if !refusing.load(Ordering::SeqCst) || req.path != EVENTS {
                return None;
            }
            let header = req
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("").to_owned());
            let header = header.unwrap_or_default();
            let decoded = header
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Some(Resp::new(
                401,
                format!("<html>denied: you sent Authorization: {header} ({decoded})</html>"),
            ))
        })
    });
    let scratch = Scratch::new();
    let port = free_port();
    let extra = format!(
        "[source.auth]\ntype = \"basic\"\nusername = \"{user}\"\npassword = \"{password}\""
    );
    let cfg = config(
        &scratch,
        &source_toml("wiki", &hostile.url, "legacy", &extra),
        port,
    );
    let daemon = DaemonProcess::start(&cfg, &scratch.path("daemon.log"));
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let mut unready = String::new();
    wait_until(Duration::from_secs(30), "/readyz names the 401", || {
        unready = http_get(&readyz).1;
        unready.contains("HTTP 401")
    });
    assert!(source_errors(port, "auth") >= 1.0);
    refusing.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(60), "every event delivered", || {
        delivered(&scratch) == c.expected(Api::Legacy, i64::MAX)
    });
    drop(daemon);
    let log = std::fs::read_to_string(scratch.path("daemon.log")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    assert!(unready.contains("<redacted>"), "{unready}");
    assert!(log.contains("<redacted>"), "{log}");
    for canary in [password, b64.as_str()] {
        assert!(!unready.contains(canary), "{canary} in /readyz: {unready}");
        assert!(!log.contains(canary), "{canary} in the log");
    }
}

#[test]
fn a_duration_that_would_overflow_is_a_config_error() {
    let scratch = Scratch::new();
    let source = source_toml(
        "wiki",
        "http://127.0.0.1:1",
        "legacy",
        "lag = \"99999999999999h\"",
    );
    let cfg = config(&scratch, &source, free_port());
    let out = check_config(&cfg);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("config.toml")
            && said.contains("source[0].lag")
            && said.contains("100 years"),
        "{said}"
    );
}

#[test]
fn the_cursor_never_passes_local_time_plus_the_allowed_skew() {
    // A server one hour ahead, with max_clock_skew = 10m: its Date is refused, the window
    // ends by the local clock.
    let c = Confluence::with_history(SimConfig::default(), 100);
    let hostile = HostileServer::start(
        &c.url,
        on_response(|_: &Req, resp: &mut Resp| {
            let ahead = std::time::SystemTime::now() + Duration::from_secs(3600);
            resp.set_header("date", &httpdate::fmt_http_date(ahead));
        }),
    );
    let (scratch, status, stderr) = once_behind(&hostile.url, "", &["--timeout", "60s"]);
    assert!(status.success(), "{stderr}");
    let store = Store::open(&scratch.path("state"), &["archive".to_owned()]).unwrap();
    let cursor = store.cursor("wiki").unwrap().expect("a cursor").cursor_ms;
    let local = c.sim.now_ms();
    assert!(
        cursor <= local + 600_000,
        "cursor {cursor} vs local {local}"
    );
    assert_eq!(delivered(&scratch), c.expected(Api::Legacy, i64::MAX));
}
