//! Secrets: the one type every secret key of every section is read into.
//!
//! It exists so that a password, token or API key can only be printed on purpose: its
//! `Debug` is `<redacted>`, it has no `Display`, and every error about it names the key and
//! the file, never the value. A secret comes from exactly one of the value itself
//! (`password = "…"`), an environment variable (`password_env`) or a file (`password_file`,
//! one line, as Docker and Kubernetes mount them).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value that prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that must send it (a header, a librdkafka property).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret from its value, `<name>_env` or `<name>_file`. `None` when none is set;
/// `Some(Err((key, problem)))` when one is set but cannot be used. Problems never quote
/// the secret.
pub fn resolve_secret(
    name: &str,
    value: &Option<Secret>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> Option<Result<Secret, (String, String)>> {
    if let Some(v) = value {
        return Some(
            one_line(v.expose())
                .map(|_| v.clone())
                .map_err(|p| (name.to_owned(), p)),
        );
    }
    if let Some(var) = env {
        let key = format!("{name}_env");
        return Some(match std::env::var(var) {
            Ok(v) if !v.is_empty() => one_line(&v)
                .map(|_| Secret::new(v))
                .map_err(|p| (key, format!("environment variable {var}: {p}"))),
            _ => Err((
                key,
                format!("environment variable {var} is not set or empty"),
            )),
        });
    }
    if let Some(path) = file {
        let key = format!("{name}_file");
        return Some(match std::fs::read_to_string(path) {
            Ok(text) => {
                // A secret file conventionally ends with one newline that is not part of it.
                let v = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                one_line(v)
                    .map(|_| Secret::new(v))
                    .map_err(|p| (key, format!("{}: {p}", path.display())))
            }
            Err(e) => Err((key, format!("cannot read {}: {e}", path.display()))),
        });
    }
    None
}

/// A secret is one non-empty line: anything else is a mistake that would otherwise fail
/// every request at run time.
fn one_line(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("is empty".into());
    }
    if v.contains(['\n', '\r']) {
        return Err(
            "holds more than one line (a secret is one line, optionally ending with a newline)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }

    #[test]
    fn files_hold_exactly_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = |text: &str| {
            let p = dir.path().join(format!("s{}", text.len()));
            std::fs::write(&p, text).unwrap();
            Some(p)
        };
        let ok = resolve_secret("token", &None, &None, &file("abc\r\n")).unwrap();
        assert_eq!(ok.unwrap().expose(), "abc");
        for bad in ["", "\n", "  \n", "abc\ndef", "abc\n\n"] {
            let (key, problem) = resolve_secret("token", &None, &None, &file(bad))
                .unwrap()
                .unwrap_err();
            assert_eq!(key, "token_file", "{bad:?}");
            assert!(!problem.contains("abc"), "{problem}");
        }
        let (key, _) = resolve_secret("password", &Some(Secret::new("")), &None, &None)
            .unwrap()
            .unwrap_err();
        assert_eq!(key, "password");
    }
}
