//! URLs in the configuration: http(s) only and never with credentials, which belong in an
//! `auth` section where they are treated as secrets. Messages show a URL without them.

/// An http(s) URL without credentials in it. Problems never quote the URL's password:
/// they say where credentials go instead (`auth_section`).
pub fn check_http_url(s: &str, auth_section: &str) -> Result<url::Url, String> {
    let shown = redact_url(s);
    let url = url::Url::parse(s)
        .map_err(|e| format!("{shown:?} is not a URL like \"https://host.example.com\" ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{shown:?} must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown:?} holds credentials: remove them from the URL and put them in `{auth_section}`"
        ));
    }
    if url.host().is_none() {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(url)
}

/// `scheme://user:password@host/…` → `scheme://***@host/…`, for messages.
pub fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_refused_and_never_shown() {
        let err =
            check_http_url("https://svc:pw-4711@wiki.example.com", "[source.auth]").unwrap_err();
        assert!(err.contains("[source.auth]"), "{err}");
        assert!(!err.contains("pw-4711"), "{err}");
        let err =
            check_http_url("https://svc:pw-4711@wiki example.com", "[source.auth]").unwrap_err();
        assert!(!err.contains("pw-4711"), "{err}");
        assert_eq!(redact_url("tcp://u:p@h:1/x"), "tcp://***@h:1/x");
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
        check_http_url("https://wiki.example.com/confluence", "[source.auth]").unwrap();
    }
}
