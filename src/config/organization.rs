//! The keys of an `api = "organization"` source (the Atlassian organization audit log) and
//! their rules, kept out of `config.rs` so that the Confluence sources read as before.
//!
//! An organization source has a default `url` (`https://api.atlassian.com`) and its own
//! default and cap for `page_size` (200, at most 500: the `limit` the API accepts); it needs
//! `org_id` and paces itself at `requests_per_minute` (default 45, under Atlassian's 50 a
//! minute per path). The Confluence sources refuse these keys rather than ignore them.

use super::SourceConfig;
use crate::normalize::Api;

/// Where the organization API lives unless `url` says otherwise.
pub const DEFAULT_URL: &str = "https://api.atlassian.com";
/// `page_size` when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// The largest `limit` `events-stream` accepts.
pub const MAX_PAGE_SIZE: u32 = 500;
/// `requests_per_minute` when none is given.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 45;
/// Atlassian's limit per API path.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 50;

/// Fill in the organization defaults for the keys the file (`tree`, environment overrides
/// included) does not set. Runs before validation.
pub fn apply_defaults(cfg: &mut super::Config, tree: &serde_json::Value) {
    let sources = tree.get("source");
    let table = |i: usize| match sources {
        Some(serde_json::Value::Array(items)) => items.get(i),
        Some(one @ serde_json::Value::Object(_)) if i == 0 => Some(one),
        _ => None,
    };
    for (i, s) in cfg.source.iter_mut().enumerate() {
        if s.api != Api::Organization {
            continue;
        }
        let given = |key: &str| table(i).is_some_and(|t| t.get(key).is_some());
        if !given("url") {
            s.url = DEFAULT_URL.to_owned();
        }
        if !given("page_size") {
            s.page_size = DEFAULT_PAGE_SIZE;
        }
    }
}

impl SourceConfig {
    /// Requests a minute an organization source may make.
    pub fn requests_per_minute(&self) -> u32 {
        self.requests_per_minute
            .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE)
    }
}

/// The organization rules of one source: the key (relative to the source) and the problem.
pub fn validate(s: &SourceConfig) -> Result<(), (String, String)> {
    let fail = |k: &str, p: String| Err((k.to_owned(), p));
    if s.api != Api::Organization {
        for (key, set) in [
            ("org_id", s.org_id.is_some()),
            ("requests_per_minute", s.requests_per_minute.is_some()),
        ] {
            if set {
                return fail(key, "only an api = \"organization\" source reads it".into());
            }
        }
        return Ok(());
    }
    match s.org_id.as_deref().map(str::trim) {
        None | Some("") => {
            return fail(
                "org_id",
                "required for api = \"organization\": the organization's id (admin.atlassian.com → Settings → API keys)".into(),
            );
        }
        Some(id) if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            return fail(
                "org_id",
                format!("{id:?} is not an organization id (letters, digits and '-')"),
            );
        }
        Some(_) => {}
    }
    if s.page_size > MAX_PAGE_SIZE {
        return fail(
            "page_size",
            format!(
                "{} is over {MAX_PAGE_SIZE}, the largest page events-stream serves",
                s.page_size
            ),
        );
    }
    let rpm = s.requests_per_minute();
    if rpm == 0 || rpm > MAX_REQUESTS_PER_MINUTE {
        return fail(
            "requests_per_minute",
            format!(
                "{rpm} is not within 1..={MAX_REQUESTS_PER_MINUTE} (Atlassian allows {MAX_REQUESTS_PER_MINUTE} requests a minute per API path)"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    /// Load a config with one organization source (`source` keys) and a file sink.
    fn load(source: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = format!(
            "[[source]]\nname = \"org\"\napi = \"organization\"\n{source}\n[source.auth]\ntype = \"bearer\"\ntoken = \"k\"\n\n[state]\ndir = \"{d}/state\"\n\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{d}/out.ndjson\"\n",
            d = dir.path().display()
        );
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_url_and_page_size() {
        let cfg = load("org_id = \"1a2b-3c4d\"").unwrap();
        let s = &cfg.source[0];
        assert_eq!(s.url, super::DEFAULT_URL);
        assert_eq!(s.page_size, super::DEFAULT_PAGE_SIZE);
        assert_eq!(s.requests_per_minute(), 45);
    }

    #[test]
    fn bad_keys_are_named() {
        let e = load("").unwrap_err();
        assert!(
            e.contains("source[0].org_id") && e.contains("required"),
            "{e}"
        );
        let e = load("org_id = \"1a2b\"\npage_size = 501").unwrap_err();
        assert!(
            e.contains("source[0].page_size") && e.contains("500"),
            "{e}"
        );
        let e = load("org_id = \"1a2b\"\nrequests_per_minute = 80").unwrap_err();
        assert!(e.contains("source[0].requests_per_minute"), "{e}");
        let e = load("org_id = \"a/b\"").unwrap_err();
        assert!(e.contains("not an organization id"), "{e}");
    }
}
