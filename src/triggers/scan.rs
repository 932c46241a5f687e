//! Walk a pipeline's source folders and list the files it covers.
//!
//! The scan reads metadata only (size, mtime): deciding whether content changed is
//! the planner's job, so a scan of 10,000 unchanged files costs 10,000 `stat`s.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use globset::GlobSet;
use walkdir::WalkDir;

use super::key::{FileKey, rel_to_string};
use crate::config::PipelineConfig;
use crate::extract;

/// A file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// Index of the source folder it was found in.
    pub source: u32,
    /// Its key in the ledger and payloads.
    pub key: FileKey,
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
    /// Ledger keys under which the scan is incomplete: a folder that could not
    /// be read, a file whose metadata could not be. Its files are missing from
    /// `files` without being gone, so nothing under these keys may be deleted.
    pub incomplete: Vec<(u32, FileKey)>,
}

impl ScanResult {
    /// Whether the scan cannot tell if `key` (of `source`) still exists: its
    /// source could not be opened, or it is at or under an incomplete key.
    pub fn unsure_of(&self, source: u32, key: &str) -> bool {
        self.missing_sources.contains(&source)
            || self
                .incomplete
                .iter()
                .any(|(s, k)| *s == source && k.covers(key))
    }
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
        let path = Path::new(rel);
        extract::format_for(path).is_some() || extract::published_without_reader(path)
    } else {
        include.is_match(rel)
    };
    included && !exclude.is_match(rel)
}

/// Scan every source folder of `pipeline`.
pub fn scan(pipeline: &PipelineConfig) -> ScanResult {
    let mut result = ScanResult::default();
    for (i, root) in pipeline.sources.iter().enumerate() {
        scan_source(pipeline, i as u32, root, &mut result);
    }
    result.files.sort_by(|a, b| a.key.cmp(&b.key));
    result
}

fn scan_source(pipeline: &PipelineConfig, source: u32, root: &Path, out: &mut ScanResult) {
    let key = |rel: &Path| FileKey::new(&pipeline.sources, source as usize, rel);
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
                let path = e.path().unwrap_or(root).to_owned();
                // Outside the root (cannot be): the whole source is unsure.
                let folder = path
                    .strip_prefix(root)
                    .map_or_else(|_| FileKey::default(), key);
                out.incomplete.push((source, folder));
                out.problems.push(ScanProblem {
                    source,
                    path,
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
                out.incomplete.push((source, key(rel)));
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
            key: key(rel),
            abs_path: entry.path().to_owned(),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        });
    }
}

/// Why [`read_source`] read nothing.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// A symbolic link where the scan saw a file (swapped since), or a device,
    /// a pipe, a folder: nothing ragd reads.
    NotRegular,
    /// Larger than the limit when opened (it grew since the scan).
    TooLarge {
        limit: u64,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotRegular => f.write_str("not a regular file (a link, device or pipe)"),
            ReadError::TooLarge { limit } => {
                write!(f, "over the limit of {limit} bytes (limits.max_file_bytes)")
            }
        }
    }
}

/// Read a source file's bytes as the scan vetted it, not whatever its path
/// holds now: the scan checked the link policy and the size, and the file can
/// be swapped for a link (to the daemon's key file, to `/dev/zero`) or grow
/// before it is read. Opened without following a final symbolic link unless
/// the pipeline follows links; the open handle must be a regular file within
/// `limit`, and at most `limit` + 1 bytes are read.
pub fn read_source(path: &Path, follow_symlinks: bool, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if !follow_symlinks {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        // ELOOP: the path's last component is a link.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadError::NotRegular),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
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

    #[test]
    fn files_under_an_incomplete_folder_or_a_missing_source_are_unsure() {
        let scan = ScanResult {
            incomplete: vec![(0, FileKey::stored("sub")), (1, FileKey::default())],
            missing_sources: vec![2],
            ..Default::default()
        };
        assert!(scan.unsure_of(0, "sub/a.md"));
        assert!(scan.unsure_of(0, "sub"));
        assert!(!scan.unsure_of(0, "subway.md"));
        assert!(!scan.unsure_of(0, "a.md"));
        assert!(scan.unsure_of(1, "anything.md"));
        assert!(scan.unsure_of(2, "x.md"));
    }

    #[cfg(unix)]
    #[test]
    fn a_source_swapped_for_a_link_or_grown_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.env");
        std::fs::write(&secret, "OPENWEBUI_API_KEY=sk-secret\n").unwrap();
        let doc = dir.path().join("doc.md");
        std::fs::write(&doc, "# Doc\n").unwrap();
        assert_eq!(read_source(&doc, false, 100).unwrap(), b"# Doc\n");

        // Swapped for a link to the key file, and to a device.
        std::fs::remove_file(&doc).unwrap();
        std::os::unix::fs::symlink(&secret, &doc).unwrap();
        assert!(matches!(
            read_source(&doc, false, 100),
            Err(ReadError::NotRegular)
        ));
        std::fs::remove_file(&doc).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &doc).unwrap();
        assert!(matches!(
            read_source(&doc, false, 100),
            Err(ReadError::NotRegular)
        ));
        // A pipeline that follows links reads through one, but never a device.
        assert!(matches!(
            read_source(&doc, true, 100),
            Err(ReadError::NotRegular)
        ));

        // Grown past the limit since the scan.
        std::fs::remove_file(&doc).unwrap();
        std::fs::write(&doc, vec![b'x'; 101]).unwrap();
        assert!(matches!(
            read_source(&doc, false, 100),
            Err(ReadError::TooLarge { limit: 100 })
        ));
    }
}
