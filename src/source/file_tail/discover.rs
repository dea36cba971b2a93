//! Which files a file source reads, and in what order.
//!
//! Each `paths` entry is a glob. A file's identity is its device and inode (a fingerprint of
//! its first bytes, kept in its checkpoint, tells inode reuse apart). Files are read oldest
//! first: Confluence names them `YYYYMMDD-NNNNN.audit.log`, so within one directory the name
//! sorts by date and sequence, and one directory is one node. A file matched by two globs
//! is read once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// A file found by a glob, as it was when found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// Every regular file the globs match, one per (device, inode), in reading order: by
/// directory, then by name. An entry that cannot be read is logged and skipped (it is looked
/// for again next cycle).
pub fn discover(patterns: &[String]) -> Vec<Found> {
    let mut found = Vec::new();
    for pattern in patterns {
        let paths = match glob::glob(pattern) {
            Ok(paths) => paths,
            Err(e) => {
                tracing::error!(pattern = %pattern, error = %e, "paths: not a glob pattern");
                continue;
            }
        };
        for entry in paths {
            match entry {
                Ok(path) => match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => found.push(Found {
                        path,
                        dev: m.dev(),
                        ino: m.ino(),
                        size: m.len(),
                    }),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot stat a matched file; looked at again next cycle")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot read a directory the glob walks"),
            }
        }
    }
    found.sort_by(|a, b| {
        (a.path.parent(), a.path.file_name()).cmp(&(b.path.parent(), b.path.file_name()))
    });
    let mut seen = HashSet::new();
    found.retain(|f| seen.insert((f.dev, f.ino)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_in_name_order_per_directory_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("node-a"), dir.path().join("node-b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for name in [
            "20240102-00000.audit.log",
            "20240101-00001.audit.log",
            "20240101-00000.audit.log",
        ] {
            std::fs::write(a.join(name), b"x\n").unwrap();
        }
        std::fs::write(b.join("20230101-00000.audit.log"), b"").unwrap();
        std::fs::write(a.join("other.txt"), b"").unwrap();
        std::fs::create_dir(a.join("dir.audit.log")).unwrap();
        let glob_a = format!("{}/*.audit.log", a.display());
        let glob_all = format!("{}/*/*.audit.log", dir.path().display());
        let found = discover(&[glob_a, glob_all]);
        let names: Vec<_> = found
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "node-a/20240101-00000.audit.log",
                "node-a/20240101-00001.audit.log",
                "node-a/20240102-00000.audit.log",
                "node-b/20230101-00000.audit.log"
            ]
        );
        assert_eq!(found[0].size, 2);
    }
}
