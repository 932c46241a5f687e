//! Walk a pipeline's source folders and list the files it covers.
//!
//! The scan reads metadata only (size, mtime): deciding whether content changed is
//! the planner's job, so a scan of 10,000 unchanged files costs 10,000 `stat`s.

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use globset::GlobSet;
use walkdir::WalkDir;

use crate::config::PipelineConfig;
use crate::extract;

/// A file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// Index of the source folder it was found in.
    pub source: u32,
    /// Key in the ledger and payloads: relative to the source folder, `/`-separated.
    /// With several source folders, prefixed by the folder's name.
    pub rel_path: String,
    pub abs_path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Why a source folder could not be scanned completely. Safety rails use this:
/// files under a folder that could not be read must not be taken as deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProblem {
    pub source: u32,
    pub path: PathBuf,
    pub message: String,
}

/// The result of scanning every source of one pipeline.
#[derive(Debug, Default)]
pub struct ScanResult {
    pub files: Vec<ScannedFile>,
    /// Sources that are missing or unreadable, and entries that could not be read.
    pub problems: Vec<ScanProblem>,
    /// Sources (by index) that could not be opened at all.
    pub missing_sources: Vec<u32>,
}

/// Temporary and partial files ignored by default: editors' swap files, browser
/// downloads in progress, Office lock files. Dotfiles are ignored too.
const DEFAULT_IGNORES: &[&str] = &[
    "*.part",
    "*.crdownload",
    "~$*",
    "*.tmp",
    "*.swp",
    "*~",
    "*.partial",
];

/// Is this file name one ragd never indexes?
pub fn is_ignored_name(name: &str) -> bool {
    if name.starts_with('.') {
        return true;
    }
    DEFAULT_IGNORES.iter().any(|pat| {
        if let Some(suffix) = pat.strip_prefix('*') {
            name.ends_with(suffix)
        } else if let Some(prefix) = pat.strip_suffix('*') {
            name.starts_with(prefix)
        } else {
            name == *pat
        }
    })
}

/// Does the pipeline want this relative path? (Globs match the path relative to
/// its source folder.)
pub fn wanted(include: &GlobSet, exclude: &GlobSet, rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if rel.split('/').any(is_ignored_name) || is_ignored_name(name) {
        return false;
    }
    let included = if include.is_empty() {
        extract::format_for(Path::new(rel)).is_some()
    } else {
        include.is_match(rel)
    };
    included && !exclude.is_match(rel)
}

/// Scan every source folder of `pipeline`.
pub fn scan(pipeline: &PipelineConfig) -> ScanResult {
    let mut result = ScanResult::default();
    let multi = pipeline.sources.len() > 1;
    for (i, root) in pipeline.sources.iter().enumerate() {
        let i = i as u32;
        let prefix = if multi {
            root.file_name()
                .map(|n| format!("{}/", n.to_string_lossy()))
                .unwrap_or_else(|| format!("source{i}/"))
        } else {
            String::new()
        };
        scan_source(pipeline, i, root, &prefix, &mut result);
    }
    result.files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    result
}

fn scan_source(
    pipeline: &PipelineConfig,
    source: u32,
    root: &Path,
    prefix: &str,
    out: &mut ScanResult,
) {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            out.missing_sources.push(source);
            out.problems.push(ScanProblem {
                source,
                path: root.to_owned(),
                message: "source is not a folder".into(),
            });
            return;
        }
        Err(e) => {
            out.missing_sources.push(source);
            out.problems.push(ScanProblem {
                source,
                path: root.to_owned(),
                message: format!("cannot open source folder: {e}"),
            });
            return;
        }
    }
    let canonical_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let walker = WalkDir::new(root)
        .follow_links(pipeline.follow_symlinks)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_ignored_name(&e.file_name().to_string_lossy()));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // Loops and unreadable folders land here; walkdir reports a loop
                // instead of following it forever.
                out.problems.push(ScanProblem {
                    source,
                    path: e
                        .path()
                        .map(Path::to_owned)
                        .unwrap_or_else(|| root.to_owned()),
                    message: e.to_string(),
                });
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel_str = rel_to_string(rel);
        if !wanted(&pipeline.include, &pipeline.exclude, &rel_str) {
            continue;
        }
        if pipeline.follow_symlinks {
            // A followed link (or a file reached through one) must stay inside
            // the source folder.
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if target.starts_with(&canonical_root) => {}
                _ => {
                    out.problems.push(ScanProblem {
                        source,
                        path: entry.path().to_owned(),
                        message: "symbolic link points outside the source folder; not followed"
                            .into(),
                    });
                    continue;
                }
            }
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                out.problems.push(ScanProblem {
                    source,
                    path: entry.path().to_owned(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        out.files.push(ScannedFile {
            source,
            rel_path: format!("{prefix}{rel_str}"),
            abs_path: entry.path().to_owned(),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        });
    }
}

/// The file on disk behind a ledger key: the inverse of the naming in [`scan`].
pub fn source_path(pipeline: &PipelineConfig, source: u32, rel_path: &str) -> Option<PathBuf> {
    let root = pipeline.sources.get(source as usize)?;
    let rel = if pipeline.sources.len() > 1 {
        rel_path.split_once('/').map_or(rel_path, |(_, rest)| rest)
    } else {
        rel_path
    };
    Some(rel.split('/').fold(root.clone(), |p, part| p.join(part)))
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

/// Modification time in nanoseconds since the epoch (0 if unknown).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_hidden_files_are_ignored() {
        for name in [
            ".hidden.md",
            "a.part",
            "x.crdownload",
            "~$doc.docx",
            ".a.md.swp",
            "b.tmp",
            "c.md~",
        ] {
            assert!(is_ignored_name(name), "{name}");
        }
        for name in ["readme.md", "report.pdf", "notes~final.txt"] {
            assert!(!is_ignored_name(name), "{name}");
        }
    }
}
