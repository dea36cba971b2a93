//! `check-config` against malformed configurations, the way a user meets them: the real
//! binary, one file each. Every case must fail with exit code 1 and a message naming the
//! file and the key at fault (and, for typos, the key that was meant).

mod common;

use std::process::Command;

use common::{Scratch, bin};

const STATE: &str = "[state]\ndir = \"{dir}/state\"\n";
const SOURCE: &str =
    "[[source]]\nname = \"wiki\"\nurl = \"https://wiki.example.com\"\napi = \"auditing\"\n";
const FILE_SINK: &str =
    "[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{dir}/out/events.ndjson\"\n";

/// A whole file: state, one source (with `source_extra`), `sinks` (default: one file sink).
fn with(source_extra: &str, sinks: &str) -> String {
    let sinks = if sinks.is_empty() { FILE_SINK } else { sinks };
    format!("{STATE}{SOURCE}{source_extra}\n{sinks}")
}

fn sink(kind_and_keys: &str) -> String {
    format!("[[sink]]\nname = \"s\"\n{kind_and_keys}\n")
}

/// (what, file text, key the message must name, further text it must hold)
fn cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let syslog = |k: &str| {
        sink(&format!(
            "type = \"syslog\"\naddress = \"tcp://127.0.0.1:5514\"\n{k}"
        ))
    };
    let kafka = |k: &str| {
        sink(&format!(
            "type = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"audit\"\n{k}"
        ))
    };
    let es = |k: &str| {
        sink(&format!(
            "type = \"elasticsearch\"\nurl = \"https://es.example.com:9200\"\n{k}"
        ))
    };
    let file = |k: &str| format!("{FILE_SINK}{k}\n");
    vec![
        // Unknown keys, in every section, with the key that was meant.
        (
            "source typo",
            with("pol_interval = \"30s\"", ""),
            "source[0].pol_interval",
            "did you mean `poll_interval`",
        ),
        (
            "auth typo",
            with("[source.auth]\ntype = \"basic\"\nusernme = \"u\"", ""),
            "source[0].auth.usernme",
            "did you mean `username`",
        ),
        (
            "tls typo",
            with("[source.tls]\nca_fil = \"/x\"", ""),
            "source[0].tls.ca_fil",
            "did you mean `ca_file`",
        ),
        (
            "state typo",
            format!("{}[state]\ndri = \"/x\"\n", with("", "").replace(STATE, "")),
            "state.dri",
            "did you mean `dir`",
        ),
        (
            "normalize typo",
            format!("{}[normalize]\nnamespac = \"x\"\n", with("", "")),
            "normalize.namespac",
            "did you mean `namespace`",
        ),
        (
            "server typo",
            format!("{}[server]\nlisen = \"127.0.0.1:0\"\n", with("", "")),
            "server.lisen",
            "did you mean `listen`",
        ),
        (
            "log typo",
            format!("{}[log]\nlevle = \"info\"\n", with("", "")),
            "log.levle",
            "did you mean `level`",
        ),
        (
            "top-level typo",
            format!("{}[[sinks]]\nname = \"x\"\n", with("", "")),
            "sinks",
            "did you mean `sink`",
        ),
        (
            "file sink batch typo",
            with("", &file("batch_max_event = 10")),
            "sink[0].batch_max_event",
            "did you mean `batch_max_events`",
        ),
        (
            "file sink flush typo",
            with("", &file("flush_intervall = \"1s\"")),
            "sink[0].flush_intervall",
            "did you mean `flush_interval`",
        ),
        (
            "file sink backoff typo",
            with("", &file("max_backof = \"1s\"")),
            "sink[0].max_backof",
            "did you mean `max_backoff`",
        ),
        (
            "file sink path typo",
            with("", &sink("type = \"file\"\npth = \"/tmp/x\"")),
            "sink[0].pth",
            "did you mean `path`",
        ),
        (
            "stdout sink has no path",
            with("", &sink("type = \"stdout\"\npath = \"/tmp/x\"")),
            "sink[0].path",
            "unknown key",
        ),
        (
            "syslog typo",
            with("", &syslog("facilty = \"auth\"")),
            "sink[0].facilty",
            "did you mean `facility`",
        ),
        (
            "syslog common typo",
            with("", &syslog("batch_max_evnts = 5")),
            "sink[0].batch_max_evnts",
            "did you mean `batch_max_events`",
        ),
        (
            "kafka typo",
            with(
                "",
                &sink("type = \"kafka\"\nbrokers = \"b:9092\"\ntopc = \"a\""),
            ),
            "sink[0].topc",
            "did you mean `topic`",
        ),
        (
            "elasticsearch typo",
            with("", &es("indx = \"a\"")),
            "sink[0].indx",
            "did you mean `index`",
        ),
        (
            "es auth typo",
            with("", &es("[sink.auth]\ntype = \"basic\"\nusernam = \"u\"")),
            "sink[0].auth.usernam",
            "did you mean `username`",
        ),
        (
            "es tls typo",
            with("", &es("[sink.tls]\nca = \"/x\"")),
            "sink[0].tls.ca",
            "unknown key",
        ),
        (
            "syslog tls typo",
            with(
                "",
                &sink(
                    "type = \"syslog\"\naddress = \"tls://127.0.0.1:6514\"\n[sink.tls]\nserver_nam = \"x\"",
                ),
            ),
            "sink[0].tls.server_nam",
            "did you mean `server_name`",
        ),
        (
            "sink type typo",
            with("", &sink("type = \"elasticserch\"")),
            "sink[0].type",
            "did you mean `elasticsearch`",
        ),
        (
            "second sink typo",
            with(
                "",
                &format!(
                    "{FILE_SINK}{}",
                    sink("type = \"stdout\"\nbatch_max_bytez = 1")
                ),
            ),
            "sink[1].batch_max_bytez",
            "did you mean `batch_max_bytes`",
        ),
        // Missing and required.
        (
            "no source",
            format!("{STATE}{FILE_SINK}"),
            "source",
            "at least one",
        ),
        (
            "no sink",
            format!("{STATE}{SOURCE}"),
            "sink",
            "at least one",
        ),
        (
            "source without url",
            format!("{STATE}[[source]]\nname = \"w\"\napi = \"cloud\"\n{FILE_SINK}"),
            "source[0].url",
            "missing",
        ),
        (
            "file source without paths",
            format!("{STATE}[[source]]\nname = \"w\"\napi = \"file\"\n{FILE_SINK}"),
            "source[0].paths",
            "required for api = \"file\"",
        ),
        (
            "file source with a REST key",
            format!(
                "{STATE}[[source]]\nname = \"w\"\napi = \"file\"\npaths = [\"/tmp/*.log\"]\nlag = \"1s\"\n{FILE_SINK}"
            ),
            "source[0].lag",
            "REST APIs only",
        ),
        (
            "file source whose directory is missing",
            format!(
                "{STATE}[[source]]\nname = \"w\"\napi = \"file\"\npaths = [\"/nonexistent/audit/*.audit.log\"]\n{FILE_SINK}"
            ),
            "source[0].paths[0]",
            "/nonexistent/audit cannot be read by ",
        ),
        (
            "paths on a REST source",
            format!(
                "{STATE}[[source]]\nname = \"w\"\napi = \"cloud\"\nurl = \"https://w.example.com\"\npaths = [\"/x\"]\n{FILE_SINK}"
            ),
            "source[0].paths",
            "api = \"file\" only",
        ),
        (
            "source without api",
            format!(
                "{STATE}[[source]]\nname = \"w\"\nurl = \"https://w.example.com\"\n{FILE_SINK}"
            ),
            "source[0].api",
            "missing",
        ),
        (
            "source without name",
            format!(
                "{STATE}[[source]]\nurl = \"https://w.example.com\"\napi = \"cloud\"\n{FILE_SINK}"
            ),
            "source[0].name",
            "missing",
        ),
        (
            "sink without name",
            with("", "[[sink]]\ntype = \"stdout\"\n"),
            "sink[0].name",
            "missing",
        ),
        (
            "sink without type",
            with("", "[[sink]]\nname = \"x\"\n"),
            "sink[0].type",
            "missing",
        ),
        (
            "file sink without path",
            with("", &sink("type = \"file\"")),
            "sink[0].path",
            "missing",
        ),
        // Values a source refuses.
        (
            "unknown api",
            with("", "").replace("\"auditing\"", "\"jira\""),
            "source[0].api",
            "jira",
        ),
        (
            "a REST source turned into a file source keeps its url",
            with("", "").replace("\"auditing\"", "\"file\""),
            "source[0].url",
            "REST APIs only",
        ),
        (
            "lag not a duration",
            with("lag = \"soon\"", ""),
            "source[0].lag",
            "duration",
        ),
        (
            "zero poll interval",
            with("poll_interval = \"0s\"", ""),
            "source[0].poll_interval",
            "more than zero",
        ),
        (
            "zero page size",
            with("page_size = 0", ""),
            "source[0].page_size",
            "at least 1",
        ),
        (
            "page size not a number",
            with("page_size = \"many\"", ""),
            "source[0].page_size",
            "invalid",
        ),
        (
            "slice below page size",
            with("slice_max_records = 10", ""),
            "source[0].slice_max_records",
            "page_size",
        ),
        (
            "ftp url",
            with("", "").replace("https://wiki.example.com", "ftp://wiki.example.com"),
            "source[0].url",
            "http",
        ),
        (
            "not a url",
            with("", "").replace("https://wiki.example.com", "wiki example"),
            "source[0].url",
            "not a URL",
        ),
        (
            "credentials in the url",
            with("", "").replace("https://wiki", "https://svc:pw@wiki"),
            "source[0].url",
            "[source.auth]",
        ),
        (
            "start_at nonsense",
            with("start_at = \"yesterday\"", ""),
            "source[0].start_at",
            "beginning",
        ),
        (
            "date format nonsense",
            with("date_format = \"weird\"", ""),
            "source[0].date_format",
            "weird",
        ),
        (
            "unknown auth type",
            with("[source.auth]\ntype = \"digest\"", ""),
            "source[0].auth.type",
            "digest",
        ),
        (
            "basic without username",
            with("[source.auth]\ntype = \"basic\"\npassword = \"p\"", ""),
            "source[0].auth.username",
            "required",
        ),
        (
            "missing password file",
            with(
                "[source.auth]\ntype = \"basic\"\nusername = \"u\"\npassword_file = \"{dir}/nope\"",
                "",
            ),
            "source[0].auth.password_file",
            "nope: No such file",
        ),
        (
            "bearer without token",
            with("[source.auth]\ntype = \"bearer\"", ""),
            "source[0].auth.token",
            "token",
        ),
        (
            "empty token file",
            with(
                "[source.auth]\ntype = \"bearer\"\ntoken_file = \"{dir}/empty\"",
                "",
            ),
            "source[0].auth.token_file",
            "empty",
        ),
        (
            "two-line token file",
            with(
                "[source.auth]\ntype = \"bearer\"\ntoken_file = \"{dir}/two-lines\"",
                "",
            ),
            "source[0].auth.token_file",
            "more than one line",
        ),
        (
            "unset password env",
            with(
                "[source.auth]\ntype = \"basic\"\nusername = \"u\"\npassword_env = \"CAF_TEST_NOT_SET_ANYWHERE\"",
                "",
            ),
            "source[0].auth.password_env",
            "not set",
        ),
        (
            "missing source ca file",
            with("[source.tls]\nca_file = \"{dir}/nope.pem\"", ""),
            "source[0].tls.ca_file",
            "nope.pem",
        ),
        (
            "duplicate source names",
            format!("{}{SOURCE}", with("", "")),
            "source[1].name",
            "source[0].name",
        ),
        // Values a sink refuses.
        (
            "duplicate sink names",
            with(
                "",
                &format!("{FILE_SINK}[[sink]]\nname = \"out\"\ntype = \"stdout\"\n"),
            ),
            "sink[1].name",
            "sink[0].name",
        ),
        (
            "sink names equal but for spaces",
            with(
                "",
                &format!("{FILE_SINK}[[sink]]\nname = \" out \"\ntype = \"stdout\"\n"),
            ),
            "sink[1].name",
            "sink[0].name",
        ),
        (
            "zero batch",
            with("", &file("batch_max_events = 0")),
            "sink[0].batch_max_events",
            "at least 1",
        ),
        (
            "flush interval nonsense",
            with("", &file("flush_interval = \"often\"")),
            "sink[0].flush_interval",
            "duration",
        ),
        (
            "same file twice",
            with(
                "",
                &format!(
                    "{FILE_SINK}{}",
                    sink("type = \"file\"\npath = \"{dir}/out/../out/events.ndjson\"")
                ),
            ),
            "sink[1].path",
            "sink[0].path",
        ),
        (
            "sink file in state dir",
            with(
                "",
                &sink("type = \"file\"\npath = \"{dir}/state/events.ndjson\""),
            ),
            "sink[0].path",
            "state.dir",
        ),
        (
            "sink file is the state store",
            with(
                "",
                &sink("type = \"file\"\npath = \"{dir}/state/state.redb\""),
            ),
            "sink[0].path",
            "state.dir",
        ),
        (
            "sink file is a directory",
            with("", &sink("type = \"file\"\npath = \"{dir}\"")),
            "sink[0].path",
            "directory",
        ),
        (
            "syslog http address",
            with("", &sink("type = \"syslog\"\naddress = \"http://x:1\"")),
            "sink[0].address",
            "udp://",
        ),
        (
            "syslog address with credentials",
            with("", &sink("type = \"syslog\"\naddress = \"tcp://u:pw@x:1\"")),
            "sink[0].address",
            "credentials",
        ),
        (
            "syslog udp framing",
            with(
                "",
                &sink("type = \"syslog\"\naddress = \"udp://x:1\"\nframing = \"lf\""),
            ),
            "sink[0].framing",
            "UDP",
        ),
        (
            "syslog missing ca file",
            with(
                "",
                &sink(
                    "type = \"syslog\"\naddress = \"tls://x:6514\"\n[sink.tls]\nca_file = \"{dir}/nope.pem\"",
                ),
            ),
            "sink[0].tls.ca_file",
            "nope.pem",
        ),
        (
            "syslog unknown facility",
            with("", &syslog("facility = \"security\"")),
            "sink[0].facility",
            "security",
        ),
        (
            "kafka bad topic",
            with(
                "",
                &sink("type = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"has space\""),
            ),
            "sink[0].topic",
            "topic name",
        ),
        (
            "kafka owned property",
            with("", &kafka("[sink.librdkafka]\nacks = \"1\"")),
            "sink[0].librdkafka.\"acks\"",
            "all",
        ),
        (
            "kafka unknown property",
            with(
                "",
                &kafka("[sink.librdkafka]\n\"no.such.property\" = \"1\""),
            ),
            "sink[0].librdkafka.\"no.such.property\"",
            "no.such.property",
        ),
        (
            "kafka brokers with credentials",
            with(
                "",
                &sink("type = \"kafka\"\nbrokers = \"u:pw@b:9092\"\ntopic = \"a\""),
            ),
            "sink[0].brokers",
            "sasl_username",
        ),
        (
            "kafka missing sasl password file",
            with(
                "",
                &kafka("sasl_username = \"u\"\nsasl_password_file = \"{dir}/nope\""),
            ),
            "sink[0].sasl_password_file",
            "cannot read",
        ),
        (
            "es without url",
            with("", &sink("type = \"elasticsearch\"")),
            "sink[0].url",
            "one of url",
        ),
        (
            "es url with credentials",
            with(
                "",
                &sink("type = \"elasticsearch\"\nurl = \"https://elastic:pw@es:9200\""),
            ),
            "sink[0].url",
            "[sink.auth]",
        ),
        (
            "es uppercase index",
            with("", &es("index = \"Audit\"")),
            "sink[0].index",
            "lowercase",
        ),
        (
            "es zero concurrency",
            with("", &es("concurrency = 0")),
            "sink[0].concurrency",
            "1 to",
        ),
        (
            "es api key auth without key",
            with("", &es("[sink.auth]\ntype = \"api_key\"")),
            "sink[0].auth.api_key",
            "api_key",
        ),
        (
            "es missing ca file",
            with("", &es("[sink.tls]\nca_file = \"{dir}/nope.pem\"")),
            "sink[0].tls.ca_file",
            "nope.pem",
        ),
        // Other sections.
        (
            "listen not an address",
            format!("{}[server]\nlisten = \"not-an-address\"\n", with("", "")),
            "server.listen",
            "not an address",
        ),
        (
            "log format nonsense",
            format!("{}[log]\nformat = \"xml\"\n", with("", "")),
            "log.format",
            "xml",
        ),
        (
            "queue bytes nonsense",
            with("", "").replace(
                STATE,
                "[state]\ndir = \"{dir}/state\"\nmax_queue_bytes = \"big\"\n",
            ),
            "state.max_queue_bytes",
            "invalid",
        ),
        (
            "include_original not a bool",
            format!(
                "{}[normalize]\ninclude_original = \"maybe\"\n",
                with("", "")
            ),
            "normalize.include_original",
            "invalid",
        ),
        // TOML syntax: line, column and key, never the line itself.
        (
            "unterminated string",
            with("lag = \"60s", ""),
            "source[0]",
            ":7:",
        ),
    ]
}

#[test]
fn every_malformed_config_fails_check_config_naming_file_and_key() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path().display().to_string();
    std::fs::write(scratch.path("empty"), "\n").unwrap();
    std::fs::write(scratch.path("two-lines"), "abc\ndef\n").unwrap();
    std::fs::create_dir_all(scratch.path("state")).unwrap();
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (what, text, key, also) in &cases {
        let path = scratch.config(&text.replace("{dir}", &dir));
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .env_remove("CAF_TEST_NOT_SET_ANYWHERE")
            .current_dir(scratch.dir.path())
            .output()
            .expect("run check-config");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let file = path.display().to_string();
        let ok = out.status.code() == Some(1)
            && stderr.contains(&file)
            && stderr.contains(key)
            && stderr.contains(also);
        if !ok {
            failures.push(format!(
                "{what}: exit {:?}, expected key {key:?} and {also:?}, got: {}{}",
                out.status.code(),
                stderr.trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_good_config_passes() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path().display().to_string();
    let path = scratch.config(&with("", "").replace("{dir}", &dir));
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
