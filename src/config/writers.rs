//! No two writers of one thing: two sinks appending to one file, a sink writing into the
//! state directory, two sinks sharing a queue and dead-letter queue.
//!
//! It exists because each of these passed `check-config` and then lost or duplicated
//! events (two file sinks each cut the other's "uncommitted tail"; a sink file that was the
//! state store destroyed it). Paths are compared after making them absolute and resolving
//! symbolic links of the part that exists, so `./out.ndjson` and its absolute form, or a
//! path through a symlinked directory, are recognised as one file.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::Config;
use crate::sink::SinkKind;

/// The first conflict: the key at fault and the problem, naming the other key too.
pub fn check(cfg: &Config) -> Result<(), (String, String)> {
    let state_dir = resolve(&cfg.state.dir);
    let mut files: HashMap<PathBuf, usize> = HashMap::new();
    for (i, s) in cfg.sink.iter().enumerate() {
        let SinkKind::File(file) = &s.kind else {
            continue;
        };
        let key = format!("sink[{i}].path");
        let path = resolve(&file.path);
        if path.starts_with(&state_dir) {
            return Err((
                key,
                format!(
                    "{} is inside state.dir ({}): that directory belongs to the state store; write the sink's file elsewhere",
                    file.path.display(),
                    cfg.state.dir.display()
                ),
            ));
        }
        if let Some(first) = files.insert(path.clone(), i) {
            return Err((
                key,
                format!(
                    "{} is the file sink[{first}].path writes too: two sinks appending to one file cut each other's lines; give each sink its own file",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `path` made absolute, `.` and `..` removed, and the symbolic links of its longest
/// existing ancestor resolved.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_owned());
    let mut clean = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    let mut existing = clean.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                rest.push(name.to_owned());
                existing.pop();
            }
            None => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    out.extend(rest.iter().rev());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_has_one_resolved_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        assert_eq!(
            resolve(&dir.path().join("link/./sub/../out.ndjson")),
            resolve(&real.join("out.ndjson"))
        );
    }
}
