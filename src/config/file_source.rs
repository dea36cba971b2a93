//! The checks of an `api = "file"` source: the keys it takes, and paths the daemon can read.
//!
//! It exists apart from the REST checks because a file source shares only a few keys with
//! them: `url`, `auth`, `tls` and the HTTP timing keys mean nothing to it and are refused
//! (rather than silently ignored), and `paths` means nothing to a REST source.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::SourceConfig;
use crate::normalize::Api;

/// Keys only the REST sources read: refused on a file source.
pub const REST_ONLY_KEYS: &[&str] = &[
    "url",
    "lag",
    "overlap",
    "page_size",
    "date_format",
    "request_timeout",
    "max_backoff",
    "max_clock_skew",
    "auth",
    "tls",
];

/// The first key of a `[[source]]` that its `api` does not read: (key path, problem).
pub fn check_keys(tree: &serde_json::Value) -> Result<(), (String, String)> {
    let sources: Vec<&serde_json::Value> = match tree.get("source") {
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(one @ serde_json::Value::Object(_)) => vec![one],
        _ => return Ok(()),
    };
    for (i, source) in sources.into_iter().enumerate() {
        let Some(map) = source.as_object() else {
            continue;
        };
        let file = map.get("api").and_then(|a| a.as_str()) == Some(Api::File.as_str());
        for key in map.keys() {
            let rest_only = REST_ONLY_KEYS.contains(&key.as_str());
            if file && rest_only {
                return Err((
                    format!("source[{i}].{key}"),
                    "applies to the REST APIs only, not to api = \"file\": remove it".to_owned(),
                ));
            }
            if !file && key == "paths" {
                return Err((
                    format!("source[{i}].paths"),
                    "applies to api = \"file\" only (a REST source reads `url`)".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// The checks of one file source: (key relative to the source, problem).
pub fn validate(cfg: &SourceConfig) -> Result<(), (String, String)> {
    let fail = |k: &str, p: String| Err((k.to_owned(), p));
    if cfg.paths.is_empty() {
        return fail(
            "paths",
            "required for api = \"file\": globs of the audit log files, like \"/var/atlassian/application-data/confluence/log/audit/*.audit.log\"".to_owned(),
        );
    }
    if cfg.slice_max_records == 0 {
        return fail("slice_max_records", "must be at least 1".to_owned());
    }
    if cfg.poll_interval.is_zero() {
        return fail("poll_interval", "must be more than zero".to_owned());
    }
    if cfg.max_response_bytes < 1024 {
        return fail("max_response_bytes", "must be at least 1024".to_owned());
    }
    for (i, path) in cfg.paths.iter().enumerate() {
        let key = format!("paths[{i}]");
        if let Err(e) = glob::Pattern::new(path) {
            return fail(&key, format!("{path:?} is not a glob pattern: {e}"));
        }
        let dir = fixed_dir(path);
        if let Err(e) = std::fs::read_dir(&dir) {
            return fail(
                &key,
                format!(
                    "the directory {} cannot be read by {}: {e}",
                    dir.display(),
                    running_user()
                ),
            );
        }
    }
    Ok(())
}

/// The deepest directory of a glob that holds no pattern character: what must exist.
pub fn fixed_dir(pattern: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    let path = Path::new(pattern);
    let parts: Vec<_> = path.components().collect();
    for (n, part) in parts.iter().enumerate() {
        let text = part.as_os_str().to_string_lossy();
        if n + 1 == parts.len() || text.contains(['*', '?', '[']) {
            break;
        }
        dir.push(part);
    }
    if dir.as_os_str().is_empty() {
        dir.push(".");
    }
    dir
}

/// The user this process runs as, by name when `/etc/passwd` knows it: "user NAME (uid N)".
pub fn running_user() -> String {
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "this process".to_owned();
    };
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid.to_string()).then(|| name.to_owned())
        })
    });
    match name {
        Some(n) => format!("user {n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_directory_stops_at_the_first_pattern() {
        assert_eq!(fixed_dir("/a/b/*.audit.log"), PathBuf::from("/a/b"));
        assert_eq!(fixed_dir("/nodes/*/log/x.log"), PathBuf::from("/nodes"));
        assert_eq!(fixed_dir("x.log"), PathBuf::from("."));
    }

    #[test]
    fn rest_keys_are_refused_on_a_file_source_and_paths_on_a_rest_one() {
        let file = serde_json::json!({"source": [{"name": "a", "api": "file", "paths": ["/x"], "lag": "1s"}]});
        assert_eq!(check_keys(&file).unwrap_err().0, "source[0].lag");
        let rest = serde_json::json!({"source": [{"name": "a", "api": "legacy", "url": "http://x", "paths": ["/x"]}]});
        assert_eq!(check_keys(&rest).unwrap_err().0, "source[0].paths");
        let fine = serde_json::json!({"source": {"name": "a", "api": "file", "paths": ["/x"], "start_at": "end"}});
        assert!(check_keys(&fine).is_ok());
    }

    #[test]
    fn the_running_user_is_named_with_its_uid() {
        assert!(running_user().contains("uid "), "{}", running_user());
    }
}
