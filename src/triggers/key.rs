//! [`FileKey`]: a file's name in the ledger, in its points' payloads and ids,
//! and in the knowledge base; the one way between that name and the file on
//! disk.
//!
//! A key is the file's path relative to its source folder, `/`-separated.
//! With several source folders it starts with the folder's own name
//! (`docs/a.md`, `notes/a.md`), so two sources' files never share a key. The
//! ledger stores keys as this text: changing the rule is a migration.

use std::path::{Component, Path, PathBuf};

/// A file's key (or, for a folder, the key prefix of the files under it).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey(String);

impl FileKey {
    /// The key of `rel`, a path relative to source folder `source` of
    /// `sources`. The folder itself (an empty `rel`) is its prefix without the
    /// trailing `/`: `""` for the whole of a single source.
    pub fn new(sources: &[PathBuf], source: usize, rel: &Path) -> FileKey {
        let mut key = prefix(sources, source);
        let rel = rel_to_string(rel);
        if rel.is_empty() && key.ends_with('/') {
            key.pop();
        }
        key.push_str(&rel);
        FileKey(key)
    }

    /// The key of an absolute `path` under one of `sources`, with that
    /// source's index; `None` for a path under none of them.
    pub fn of(sources: &[PathBuf], path: &Path) -> Option<(u32, FileKey)> {
        sources.iter().enumerate().find_map(|(i, root)| {
            let rel = path.strip_prefix(root).ok()?;
            Some((i as u32, FileKey::new(sources, i, rel)))
        })
    }

    /// A key as the ledger stores it (or as an operator types it).
    pub fn stored(key: impl Into<String>) -> FileKey {
        FileKey(key.into())
    }

    /// The file on disk behind this key in source folder `source`: the inverse
    /// of [`FileKey::new`]. `None` when the pipeline has no such source.
    pub fn source_path(&self, sources: &[PathBuf], source: u32) -> Option<PathBuf> {
        let root = sources.get(source as usize)?;
        Some(
            self.in_source(sources)
                .split('/')
                .fold(root.clone(), |p, part| p.join(part)),
        )
    }

    /// The key without its source's prefix: the path relative to its own
    /// source folder, which is what the include and exclude globs match.
    pub fn in_source(&self, sources: &[PathBuf]) -> &str {
        if sources.len() > 1 {
            self.0.split_once('/').map_or(&self.0, |(_, rest)| rest)
        } else {
            &self.0
        }
    }

    /// Whether `key` is this (folder's) key or a file under it; the empty key
    /// covers every key.
    pub fn covers(&self, key: &str) -> bool {
        self.0.is_empty()
            || key == self.0
            || key
                .strip_prefix(self.0.as_str())
                .is_some_and(|r| r.starts_with('/'))
    }

    /// The text: ledger column, payload `path`, point id input.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

// A set of keys is looked up by a ledger row's `&str` path: the derived
// `Hash` of the one field is `str`'s, as `Borrow` requires.
impl std::borrow::Borrow<str> for FileKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key prefix of source folder `source`: none for a single source, else
/// the folder's name and `/` (`source<i>/` for a folder without a name, `/`).
/// Validation refuses sources whose prefixes would be equal.
pub fn prefix(sources: &[PathBuf], source: usize) -> String {
    if sources.len() <= 1 {
        return String::new();
    }
    sources
        .get(source)
        .and_then(|root| root.file_name())
        .map(|n| format!("{}/", n.to_string_lossy()))
        .unwrap_or_else(|| format!("source{source}/"))
}

/// `/`-separated relative path. Non-UTF-8 bytes are replaced, which only matters
/// for display and keys; reading uses the real path.
pub fn rel_to_string(rel: &Path) -> String {
    let mut s = String::new();
    for c in rel.components() {
        if let Component::Normal(part) = c {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(&part.to_string_lossy());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(ps: &[&str]) -> Vec<PathBuf> {
        ps.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn keys_are_prefixed_by_folder_name_only_with_several_sources() {
        let one = paths(&["/data/docs"]);
        let two = paths(&["/a/docs", "/b/notes"]);
        let key = |s: &[PathBuf], i, rel: &str| FileKey::new(s, i, Path::new(rel)).into_string();
        assert_eq!(key(&one, 0, "sub/a.md"), "sub/a.md");
        assert_eq!(key(&two, 0, "sub/a.md"), "docs/sub/a.md");
        assert_eq!(key(&two, 1, "a.md"), "notes/a.md");
        // A folder: its prefix, the whole source for a single one.
        assert_eq!(key(&one, 0, ""), "");
        assert_eq!(key(&two, 1, ""), "notes");
        // A root without a name.
        assert_eq!(key(&paths(&["/", "/b/notes"]), 0, "a.md"), "source0/a.md");
    }

    #[test]
    fn an_absolute_path_and_its_key_lead_to_each_other() {
        for sources in [paths(&["/data/docs"]), paths(&["/a/docs", "/b/notes"])] {
            let file = sources.last().unwrap().join("sub/ü.md");
            let (source, key) = FileKey::of(&sources, &file).unwrap();
            assert_eq!(source as usize, sources.len() - 1);
            assert_eq!(key.source_path(&sources, source), Some(file));
            assert_eq!(key.in_source(&sources), "sub/ü.md");
            assert_eq!(FileKey::of(&sources, Path::new("/elsewhere/x.md")), None);
        }
        let key = FileKey::stored("docs/a.md");
        assert_eq!(key.source_path(&paths(&["/a/docs", "/b/notes"]), 2), None);
    }

    #[test]
    fn a_folder_key_covers_itself_and_what_is_under_it() {
        let sub = FileKey::stored("sub");
        assert!(sub.covers("sub/a.md"));
        assert!(sub.covers("sub"));
        assert!(!sub.covers("subway.md"));
        assert!(!sub.covers("a.md"));
        assert!(FileKey::default().covers("anything.md"));
    }
}
