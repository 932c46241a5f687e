//! Operator commands: `ragd status`, `ragd why`, `ragd doctor` and `ragd plan`.
//!
//! They read; they never change the index, the ledger or a knowledge base. The
//! ledger is opened without taking the state directory's lock, so `status`, `why`
//! and `plan` work while `ragd run` is running (SQLite's WAL lets readers in
//! beside the writer). Embedded Qdrant admits one process only: while the daemon
//! holds it, point counts are reported as unavailable rather than failing.

pub mod doctor;
pub mod plan;
pub mod status;
pub mod why;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, PipelineConfig, QdrantSettings};
use crate::ledger::{FailKind, FileRecord, KbRecord, KbState, Ledger, LedgerError};
use crate::store::VectorStore;
use crate::store::edge::{EdgeStore, EdgeTuning};
use crate::store::qdrant::QdrantStore;

/// Failures of an operator command as a whole (a single failed check is not one).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("no pipeline named {0:?} (see `ragd validate`)")]
    NoSuchPipeline(String),
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// An operator command's verdict; `cli` maps it to the process's exit code, so the
/// commands know nothing of exit codes (as in ripgrep's `main.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The report was written and nothing in it is a failure.
    Done,
    /// `doctor`: at least one check failed.
    ChecksFailed,
    /// `doctor`: the configuration itself is invalid.
    ConfigInvalid,
    /// `why`: no pipeline knows the path.
    NotFound,
}

/// What the operator commands read: validated config and the ledger.
pub struct View {
    pub config: Config,
    pub ledger: Ledger,
}

impl View {
    /// Open the ledger for reading. A state directory without a ledger (nothing
    /// ever ran) reads as empty, and nothing is created on disk.
    pub fn open(config: Config) -> Result<Self, OpsError> {
        let path = config.state_dir.join("ledger.sqlite");
        let ledger = if path.exists() {
            Ledger::open(&path)?
        } else {
            Ledger::in_memory()?
        };
        Ok(View { config, ledger })
    }

    /// All pipelines, or the one named.
    pub fn pipelines(&self, name: Option<&str>) -> Result<Vec<&PipelineConfig>, OpsError> {
        match name {
            None => Ok(self.config.pipelines.iter().collect()),
            Some(n) => self
                .config
                .pipeline(n)
                .map(|p| vec![p])
                .ok_or_else(|| OpsError::NoSuchPipeline(n.to_owned())),
        }
    }
}

/// Is a ragd process holding the state directory (normally `ragd run`)?
pub fn daemon_running(config: &Config) -> bool {
    let Ok(f) = File::options()
        .write(true)
        .open(config.state_dir.join("ragd.lock"))
    else {
        return false;
    };
    matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// A vector store opened for reading, with the state directory's lock when the
/// store is embedded (released on drop).
pub struct StoreAccess {
    pub store: Arc<dyn VectorStore>,
    /// Where it is, for messages.
    pub location: String,
    _lock: Option<File>,
}

/// Open the configured vector store for reading. `Err` says, in one line, why it
/// cannot be read now.
pub fn open_store(config: &Config) -> Result<StoreAccess, String> {
    match &config.qdrant {
        QdrantSettings::Server {
            url,
            api_key,
            options,
            ..
        } => {
            let store = QdrantStore::connect(
                url,
                api_key.as_ref().map(|k| k.expose().to_owned()),
                options,
            )
            .map_err(|e| e.to_string())?;
            Ok(StoreAccess {
                store: Arc::new(store),
                location: format!("Qdrant server {}", crate::http::redact_url(url)),
                _lock: None,
            })
        }
        QdrantSettings::Embedded {
            path,
            vacuum_min_dead,
        } => {
            if !path.exists() {
                return Err(format!(
                    "embedded Qdrant at {} does not exist yet (the first run creates it)",
                    path.display()
                ));
            }
            let lock = lock_state_dir(&config.state_dir)?;
            let tuning = EdgeTuning::with_vacuum_min_dead(*vacuum_min_dead);
            let store = EdgeStore::open_tuned(path, tuning).map_err(|e| e.to_string())?;
            Ok(StoreAccess {
                store: Arc::new(store),
                location: format!("embedded Qdrant at {}", display_path(path)),
                _lock: Some(lock),
            })
        }
    }
}

/// Take the state directory's lock, as `App::open` does: embedded Qdrant and the
/// ledger's write-ahead states assume one writer.
fn lock_state_dir(dir: &std::path::Path) -> Result<File, String> {
    let path: PathBuf = dir.join("ragd.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(
            "embedded Qdrant is held by the running ragd (one process at a time); \
             stop it to read points, or use a Qdrant server"
                .to_owned(),
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
    }
}

/// What became of a file ragd has no reader for ([`crate::ledger::FailKind::NoReader`]):
/// Open WebUI reads such files itself, so a knowledge base gets them as they
/// are, and ragd's own index does not. `kb` is its knowledge-base row, if the
/// pipeline has a knowledge base (`publishes`). E.g. "published; not in ragd's
/// own index: no reader for .doc".
pub(crate) fn no_reader_note(r: &FileRecord, kb: Option<&KbRecord>, publishes: bool) -> String {
    let why = r
        .error
        .as_deref()
        .unwrap_or("not in ragd's own index: no reader for its format");
    let this_version = |k: &KbRecord| r.content_hash.as_deref() == Some(k.content_hash.as_str());
    let published = match kb {
        _ if !publishes => "not published: the pipeline has no knowledge base".to_owned(),
        Some(k) if k.state == KbState::Linked && this_version(k) => "published".to_owned(),
        Some(k) if k.state == KbState::Linked => {
            "an earlier version published, this one not yet".to_owned()
        }
        Some(k) if k.state == KbState::Failed && this_version(k) => format!(
            "not published: the knowledge base refused it ({}: {})",
            k.error_kind.as_ref().map_or("?", FailKind::as_str),
            k.error.as_deref().unwrap_or("")
        ),
        Some(k) if this_version(k) && k.error.is_some() => format!(
            "not published yet: the next sync tries again (last time: {})",
            k.error.as_deref().unwrap_or("")
        ),
        _ => "not published yet: the next sync publishes it".to_owned(),
    };
    format!("{published}; {why}")
}

/// A path for people: resolved (`config/../state` → `/srv/ragd/state`) when it
/// exists, as written otherwise.
pub(crate) fn display_path(p: &std::path::Path) -> String {
    p.canonicalize()
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

/// `1.2 MB`-style size.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Unix seconds as `2025-01-31 12:00:00 UTC`.
pub(crate) fn human_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `3m ago`-style age of a Unix time.
pub(crate) fn human_age(secs: i64) -> String {
    let d = (crate::ledger::unix_now() - secs).max(0);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 KB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
    }

    #[test]
    fn a_file_without_a_reader_says_whether_it_is_published() {
        let mut r = FileRecord::new("p", "old.doc", 0, 1, 1, "b1".into());
        r.state = crate::ledger::FileState::Skipped;
        r.error_kind = Some(FailKind::NoReader);
        r.error = Some("not in ragd's own index: no reader for .doc".into());
        r.content_hash = Some("b1".into());
        let mut kb = KbRecord::uploading("p", "old.doc", "kb", "b1");
        let note = |kb: Option<&KbRecord>, publishes| no_reader_note(&r, kb, publishes);
        assert_eq!(
            note(None, false),
            "not published: the pipeline has no knowledge base; \
             not in ragd's own index: no reader for .doc"
        );
        let pending = "not published yet: the next sync publishes it; not in ragd's own index";
        assert!(note(None, true).starts_with(pending));
        assert!(note(Some(&kb), true).starts_with(pending));
        kb.error = Some("Open WebUI failed to process the file: no".into());
        assert!(note(Some(&kb), true).starts_with(
            "not published yet: the next sync tries again (last time: Open WebUI failed"
        ));
        kb.error = None;
        kb.state = KbState::Linked;
        assert_eq!(
            note(Some(&kb), true),
            "published; not in ragd's own index: no reader for .doc"
        );
        kb.content_hash = "b0".into();
        assert!(note(Some(&kb), true).starts_with("an earlier version published"));
        kb.content_hash = "b1".into();
        kb.state = KbState::Failed;
        kb.error_kind = Some(FailKind::ProcessingFailed);
        assert!(
            note(Some(&kb), true).starts_with("not published: the knowledge base refused it"),
            "{}",
            note(Some(&kb), true)
        );
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(human_time(0), "1970-01-01 00:00:00 UTC");
    }
}
