//! The ledger: a SQLite file in the state directory recording every file's state.
//!
//! It is what makes a rerun over unchanged files free (size + mtime fast path)
//! and a restart safe: a state is written *before* each side effect
//! (write-ahead intent), so after a crash every file in an intermediate state is
//! resumed or repeated — Qdrant writes are idempotent by point id.
//!
//! WAL journal mode, `synchronous = NORMAL`: a commit survives a process crash
//! (kill -9); a power cut may lose the last commits, which the next reconcile
//! repairs because every side effect is idempotent. Where a step must not be
//! lost (the reindex switch), [`Ledger::make_durable`] puts every commit so far
//! on disk first.

mod kind;
mod migrations;

pub use kind::FailKind;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// Ends a directory rename's record: done ([`Ledger::rename_kb_dirs`]) or
/// refused ([`Ledger::drop_dir_rename`]).
const END_DIR_RENAME: &str =
    "DELETE FROM kb_dir_renames WHERE pipeline = ?1 AND kb_id = ?2 AND from_path = ?3";

/// [`Ledger::linked_with_text`]'s query; its plan is checked in `migrations`.
const LINKED_WITH_TEXT: &str = "SELECT path FROM kb_files WHERE pipeline = ?1 AND content_hash = ?2 \
     AND kb_id = ?3 AND state = ?4 AND path != ?5 ORDER BY path LIMIT 1";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger schema version {found} is newer than this ragd understands ({supported})")]
    TooNew { found: i64, supported: i64 },
    #[error("ledger row has unknown state {0:?}")]
    BadState(String),
    #[error("ledger busy: {0}")]
    Busy(String),
    /// A row that breaks what its state means (a bug in ragd, not in the data).
    #[error("ledger: refusing to write {0}")]
    Invalid(String),
}

/// Where a file is in its journey. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileState {
    /// Intent recorded: points for `target_hash` are being written. Redo on restart.
    Indexing,
    /// Qdrant holds exactly the points of `content_hash`.
    Indexed,
    /// Could not be indexed; `error_kind`/`error` say why. Not retried until the
    /// file changes (permanent) or the attempt limit allows (transient).
    Failed,
    /// Not indexed on purpose (unsupported type, too large); `error` says why.
    Skipped,
    /// Intent recorded: the file is gone and its points are being deleted.
    Deleting,
}

impl FileState {
    pub const fn as_str(self) -> &'static str {
        match self {
            FileState::Indexing => "indexing",
            FileState::Indexed => "indexed",
            FileState::Failed => "failed",
            FileState::Skipped => "skipped",
            FileState::Deleting => "deleting",
        }
    }

    fn parse(s: &str) -> Result<Self, LedgerError> {
        Ok(match s {
            "indexing" => FileState::Indexing,
            "indexed" => FileState::Indexed,
            "failed" => FileState::Failed,
            "skipped" => FileState::Skipped,
            "deleting" => FileState::Deleting,
            other => return Err(LedgerError::BadState(other.to_owned())),
        })
    }
}

/// One row: a file of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub pipeline: String,
    /// The file's key, as text: a [`crate::triggers::key::FileKey`] built by
    /// the scan (rows are what the ledger stores, so they keep the text).
    pub path: String,
    /// Index of the source folder (pipelines may have several).
    pub source: u32,
    pub size: u64,
    pub mtime_ns: i64,
    /// SHA-256 of the bytes last seen.
    pub file_hash: String,
    /// Text hash whose points Qdrant holds (when indexed). For a file ragd has
    /// no reader for ([`FailKind::NoReader`]), the SHA-256 of its bytes: the version a
    /// knowledge base gets, with no points behind it.
    pub content_hash: Option<String>,
    /// Text hash being written (when indexing).
    pub target_hash: Option<String>,
    pub chunk_count: u32,
    pub state: FileState,
    /// Machine-readable failure class, e.g. `encrypted`.
    pub error_kind: Option<FailKind>,
    /// Human-readable reason.
    pub error: Option<String>,
    pub attempts: u32,
    /// Unix seconds of the last change to this row.
    pub updated_at: i64,
    /// What the indexed text lacks, one line each: pages extraction left out
    /// while reading the rest (`Document::warnings`), for `ragd why`. Set with
    /// the text it describes (`target_hash`, then `content_hash`); a later
    /// failure keeps it, as it keeps that text's points.
    pub warning: Option<String>,
}

/// How many failed attempts of a transient kind before a file is left alone
/// until it changes (or an operator retries it): indexing and publishing alike
/// (a call to a server is retried within the attempt already).
pub const MAX_TRANSIENT_ATTEMPTS: u32 = 5;

impl FileRecord {
    /// The version of this file a knowledge base should hold, if any: the text
    /// Qdrant holds (a file that failed after an earlier success keeps its
    /// published old version), or the bytes of a file with no reader.
    pub fn published_hash(&self) -> Option<&str> {
        match self.state {
            FileState::Indexed | FileState::Failed => self.content_hash.as_deref(),
            FileState::Skipped if self.has_no_reader() => self.content_hash.as_deref(),
            _ => None,
        }
    }

    /// Skipped because ragd has no reader for its format, though Open WebUI
    /// reads it (legacy doc, ppt: see `extract::published_without_reader`):
    /// not in ragd's own index, published to a knowledge base as it is.
    pub fn has_no_reader(&self) -> bool {
        self.state == FileState::Skipped && self.error_kind == Some(FailKind::NoReader)
    }

    /// Whether this failed file is tried again without changing: a transient
    /// kind with attempts left ([`MAX_TRANSIENT_ATTEMPTS`]).
    pub fn is_retried(&self) -> bool {
        self.state == FileState::Failed
            && self.error_kind.as_ref().is_some_and(FailKind::is_transient)
            && self.attempts < MAX_TRANSIENT_ATTEMPTS
    }

    pub fn new(
        pipeline: &str,
        path: &str,
        source: u32,
        size: u64,
        mtime_ns: i64,
        file_hash: String,
    ) -> Self {
        FileRecord {
            pipeline: pipeline.to_owned(),
            path: path.to_owned(),
            source,
            size,
            mtime_ns,
            file_hash,
            content_hash: None,
            target_hash: None,
            chunk_count: 0,
            state: FileState::Indexing,
            error_kind: None,
            error: None,
            attempts: 0,
            updated_at: 0,
            warning: None,
        }
    }
}

/// Where a file is in its journey to an Open WebUI knowledge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KbState {
    /// Intent recorded, upload not yet confirmed: after a crash the upload is
    /// looked for by ragd's metadata marker before uploading again.
    Uploading,
    /// Uploaded, `file_id` recorded; processing and linking may still be pending.
    Uploaded,
    /// Processed, linked, and listed by the knowledge base.
    Linked,
    /// Permanently refused (duplicate or empty content, processing failed twice).
    Failed,
    /// Intent recorded: the file is being removed from the knowledge base.
    Removing,
}

impl KbState {
    pub const fn as_str(self) -> &'static str {
        match self {
            KbState::Uploading => "uploading",
            KbState::Uploaded => "uploaded",
            KbState::Linked => "linked",
            KbState::Failed => "failed",
            KbState::Removing => "removing",
        }
    }

    fn parse(s: &str) -> Result<Self, LedgerError> {
        Ok(match s {
            "uploading" => KbState::Uploading,
            "uploaded" => KbState::Uploaded,
            "linked" => KbState::Linked,
            "failed" => KbState::Failed,
            "removing" => KbState::Removing,
            other => return Err(LedgerError::BadState(other.to_owned())),
        })
    }
}

// A kind is stored (and shown in JSON) as its text; unknown text reads as
// `FailKind::Other`, so no row of another ragd fails to read.
impl serde::Serialize for FailKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl rusqlite::types::ToSql for FailKind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.as_str().as_bytes()),
        ))
    }
}

impl rusqlite::types::FromSql for FailKind {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value.as_str().map(FailKind::parse)
    }
}

/// One file's knowledge-base record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbRecord {
    pub pipeline: String,
    pub path: String,
    pub kb_id: String,
    /// Text hash of the version `file_id` carries (or is being uploaded).
    pub content_hash: String,
    /// Open WebUI file id, recorded as soon as the upload answers.
    pub file_id: Option<String>,
    /// The previously linked version, removed once the new one is linked.
    pub old_file_id: Option<String>,
    pub state: KbState,
    pub error_kind: Option<FailKind>,
    pub error: Option<String>,
    pub attempts: u32,
    /// Where the file sits in the knowledge base (`dir/name`, see
    /// [`crate::publish::tree::Place`]) as ragd last put it; `None` for a row
    /// written before directories (at the root under its upload name).
    pub kb_path: Option<String>,
    /// SHA-256 of the bytes `file_id` was uploaded from (Open WebUI's
    /// `meta.file_hash`); `None` when not known (a row from before it was kept).
    pub file_hash: Option<String>,
}

impl KbRecord {
    /// A new row: the intent to upload `path` at `content_hash` to `kb_id`.
    pub fn uploading(pipeline: &str, path: &str, kb_id: &str, content_hash: &str) -> Self {
        KbRecord {
            pipeline: pipeline.to_owned(),
            path: path.to_owned(),
            kb_id: kb_id.to_owned(),
            content_hash: content_hash.to_owned(),
            file_id: None,
            old_file_id: None,
            state: KbState::Uploading,
            error_kind: None,
            error: None,
            attempts: 0,
            kb_path: None,
            file_hash: None,
        }
    }
}

/// A knowledge-base directory a pipeline put files in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbDir {
    /// Its path from the base's root, `a/b`.
    pub path: String,
    /// Open WebUI's directory id.
    pub dir_id: String,
    /// Whether ragd created it (only those are removed once emptied); `false` for one
    /// found there already (made by hand, or by another pipeline).
    pub made: bool,
}

/// Per-pipeline facts that decide whether everything must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineMeta {
    pub name: String,
    /// Hash of the settings that shape vectors (model, chunking).
    pub fingerprint: String,
    /// The collection the pipeline's points are in.
    pub collection: String,
    pub dim: Option<u32>,
}

/// One finished run of a pipeline, as `ragd status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunRecord {
    pub pipeline: String,
    /// `index` (`ragd index`) or `reconcile` (the daemon).
    pub kind: String,
    /// Unix seconds the run started.
    pub started_at: i64,
    pub elapsed_ms: u64,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub touched: u64,
    pub skipped: u64,
    pub failed: u64,
    pub chunks_written: u64,
    /// Knowledge-base files linked and refused, when one is configured.
    pub kb_linked: Option<u64>,
    pub kb_failed: Option<u64>,
}

/// Runs kept per pipeline; older ones are pruned as new ones are recorded.
const RUNS_KEPT: i64 = 100;

/// The SQLite ledger. Calls are short and synchronous; async callers may call
/// them directly (they take microseconds to a few milliseconds).
pub struct Ledger {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

const FILE_COLUMNS: &str = "pipeline, path, source, size, mtime_ns, file_hash, content_hash, target_hash, \
     chunk_count, state, error_kind, error, attempts, updated_at, warning";

impl Ledger {
    /// Open (creating and migrating) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        Self::init(conn).map_err(|e| match e {
            LedgerError::Sqlite(source) => open_err(source),
            other => other,
        })
    }

    /// A ledger that lives in memory, for tests.
    pub fn in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, LedgerError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?;
        Ok(Ledger {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each
        // call is one statement or one transaction), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All rows of a pipeline, by path.
    pub fn files(&self, pipeline: &str) -> Result<HashMap<String, FileRecord>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE pipeline = ?1"
        ))?;
        let rows = stmt.query_map([pipeline], row_to_record)?;
        let mut out = HashMap::new();
        for r in rows {
            let r = r??;
            out.insert(r.path.clone(), r);
        }
        Ok(out)
    }

    /// Run `f` over every row of `pipeline` in path order (byte-wise, which is
    /// how `str` orders too), read one at a time rather than collected. A row
    /// that cannot be read ends the rows early and is the error returned.
    pub fn with_files<T>(
        &self,
        pipeline: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = FileRecord>) -> T,
    ) -> Result<T, LedgerError> {
        let conn = self.conn();
        // The primary key (pipeline, path) of this WITHOUT ROWID table is the
        // row order, so this reads in order without sorting.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE pipeline = ?1 ORDER BY path"
        ))?;
        read_rows(stmt.query_map([pipeline], row_to_record)?, f)
    }

    /// One row.
    pub fn get(&self, pipeline: &str, path: &str) -> Result<Option<FileRecord>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE pipeline = ?1 AND path = ?2"
        ))?;
        match stmt
            .query_row(params![pipeline, path], row_to_record)
            .optional()?
        {
            Some(r) => Ok(Some(r?)),
            None => Ok(None),
        }
    }

    /// Insert or replace one row (sets `updated_at`).
    pub fn put(&self, record: &FileRecord) -> Result<(), LedgerError> {
        self.put_many(std::slice::from_ref(record))
    }

    /// Insert or replace rows in one transaction: one fsync for many files.
    pub fn put_many(&self, records: &[FileRecord]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO files ({FILE_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?;
            let now = unix_now();
            for r in records {
                stmt.execute(params![
                    r.pipeline,
                    r.path,
                    r.source,
                    r.size as i64,
                    r.mtime_ns,
                    r.file_hash,
                    r.content_hash,
                    r.target_hash,
                    r.chunk_count,
                    r.state.as_str(),
                    r.error_kind,
                    r.error,
                    r.attempts,
                    now,
                    r.warning,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget a file (after its points are gone).
    pub fn remove(&self, pipeline: &str, path: &str) -> Result<(), LedgerError> {
        self.remove_many(pipeline, &[path])
    }

    /// Forget files in one transaction.
    pub fn remove_many(&self, pipeline: &str, paths: &[&str]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM files WHERE pipeline = ?1 AND path = ?2")?;
            for path in paths {
                stmt.execute(params![pipeline, path])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Number of rows per state for a pipeline.
    pub fn count_by_state(&self, pipeline: &str) -> Result<HashMap<FileState, u64>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT state, COUNT(*) FROM files WHERE pipeline = ?1 GROUP BY state",
        )?;
        let mut out = HashMap::new();
        let rows = stmt.query_map([pipeline], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (s, n) = row?;
            out.insert(FileState::parse(&s)?, n as u64);
        }
        Ok(out)
    }

    /// Knowledge-base rows of a pipeline, by path.
    pub fn kb_files(&self, pipeline: &str) -> Result<HashMap<String, KbRecord>, LedgerError> {
        self.with_kb_files(pipeline, |rows| rows.map(|r| (r.path.clone(), r)).collect())
    }

    /// Run `f` over the knowledge-base rows of `pipeline` in path order, read
    /// one at a time; errors as in [`Ledger::with_files`].
    pub fn with_kb_files<T>(
        &self,
        pipeline: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = KbRecord>) -> T,
    ) -> Result<T, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {KB_COLUMNS} FROM kb_files WHERE pipeline = ?1 ORDER BY path"
        ))?;
        read_rows(stmt.query_map([pipeline], row_to_kb)?, f)
    }

    /// [`Ledger::with_files`] and [`Ledger::with_kb_files`] at once, both in
    /// path order, from one consistent view: `f` can merge the two streams.
    pub fn with_files_and_kb<T>(
        &self,
        pipeline: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = FileRecord>, &mut dyn Iterator<Item = KbRecord>) -> T,
    ) -> Result<T, LedgerError> {
        let conn = self.conn();
        // Two statements read one snapshot only inside one transaction; without
        // it another connection's commit could land between them. Read-only:
        // dropping it (a rollback) ends it.
        let _snapshot = conn.unchecked_transaction()?;
        let mut files = conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE pipeline = ?1 ORDER BY path"
        ))?;
        let mut kb = conn.prepare_cached(&format!(
            "SELECT {KB_COLUMNS} FROM kb_files WHERE pipeline = ?1 ORDER BY path"
        ))?;
        let kb_rows = kb.query_map([pipeline], row_to_kb)?;
        read_rows(files.query_map([pipeline], row_to_record)?, |files| {
            read_rows(kb_rows, |kb| f(files, kb))
        })?
    }

    /// The first path (in path order) of `pipeline` other than `except` linked
    /// to knowledge base `kb` with the text `content_hash` (one lookup in the
    /// index `kb_files_by_text`: it runs before every upload).
    pub fn linked_with_text(
        &self,
        pipeline: &str,
        kb: &str,
        content_hash: &str,
        except: &str,
    ) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached(LINKED_WITH_TEXT)?
            .query_row(
                params![pipeline, content_hash, kb, KbState::Linked.as_str(), except],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The first path (in path order) of `pipeline` other than `except` whose
    /// indexed text is `content_hash`.
    pub fn file_with_text(
        &self,
        pipeline: &str,
        content_hash: &str,
        except: &str,
    ) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT path FROM files WHERE pipeline = ?1 AND content_hash = ?2 AND path != ?3 \
                 ORDER BY path LIMIT 1",
            )?
            .query_row(params![pipeline, content_hash, except], |r| r.get(0))
            .optional()?)
    }

    /// Whether a knowledge-base row of `pipeline` records the upload `file_id`
    /// (as its version or a replaced one), or sits at `path`. A scan: only for
    /// the rare duplicate refusal that looks for a moved file's lost upload.
    pub fn kb_claims(
        &self,
        pipeline: &str,
        file_id: &str,
        path: &str,
    ) -> Result<bool, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT 1 FROM kb_files WHERE pipeline = ?1 \
                 AND (file_id = ?2 OR old_file_id = ?2 OR path = ?3) LIMIT 1",
            )?
            .query_row(params![pipeline, file_id, path], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Insert or replace a knowledge-base row. An `uploaded` or `linked` row
    /// names its upload, or it is refused: a row may never say a file is in
    /// the knowledge base without saying which upload holds it.
    pub fn put_kb(&self, r: &KbRecord) -> Result<(), LedgerError> {
        if matches!(r.state, KbState::Uploaded | KbState::Linked) && r.file_id.is_none() {
            return Err(LedgerError::Invalid(format!(
                "a {} row for {:?} without its file id",
                r.state.as_str(),
                r.path
            )));
        }
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO kb_files (pipeline, path, kb_id, content_hash, file_id, \
                 old_file_id, state, error_kind, error, attempts, updated_at, kb_path, file_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                r.pipeline,
                r.path,
                r.kb_id,
                r.content_hash,
                r.file_id,
                r.old_file_id,
                r.state.as_str(),
                r.error_kind,
                r.error,
                r.attempts,
                unix_now(),
                r.kb_path,
                r.file_hash,
            ])?;
        Ok(())
    }

    /// Give a knowledge-base row a new path (the file moved; its upload stays),
    /// recording where the upload still sits in the knowledge base (`kb_path`)
    /// until it is moved there too. One statement: a crash leaves the row at one
    /// path or the other.
    pub fn move_kb(
        &self,
        pipeline: &str,
        from: &str,
        to: &str,
        kb_path: &str,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "UPDATE kb_files SET path = ?3, kb_path = ?4, updated_at = ?5 \
                 WHERE pipeline = ?1 AND path = ?2",
            )?
            .execute(params![pipeline, from, to, kb_path, unix_now()])?;
        Ok(())
    }

    /// Record where a row's file now sits in the knowledge base.
    pub fn set_kb_path(
        &self,
        pipeline: &str,
        path: &str,
        kb_path: &str,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "UPDATE kb_files SET kb_path = ?3, updated_at = ?4 WHERE pipeline = ?1 AND path = ?2",
            )?
            .execute(params![pipeline, path, kb_path, unix_now()])?;
        Ok(())
    }

    /// The directories `pipeline` uses in knowledge base `kb`, by path.
    pub fn kb_dirs(
        &self,
        pipeline: &str,
        kb: &str,
    ) -> Result<std::collections::BTreeMap<String, KbDir>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT path, dir_id, made FROM kb_dirs WHERE pipeline = ?1 AND kb_id = ?2",
        )?;
        let rows = stmt.query_map(params![pipeline, kb], |r| {
            Ok(KbDir {
                path: r.get(0)?,
                dir_id: r.get(1)?,
                made: r.get(2)?,
            })
        })?;
        let mut out = std::collections::BTreeMap::new();
        for d in rows {
            let d = d?;
            out.insert(d.path.clone(), d);
        }
        Ok(out)
    }

    /// The directory `path` of `kb` that `pipeline` uses, if recorded.
    pub fn kb_dir(
        &self,
        pipeline: &str,
        kb: &str,
        path: &str,
    ) -> Result<Option<KbDir>, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT path, dir_id, made FROM kb_dirs WHERE pipeline = ?1 AND kb_id = ?2 AND path = ?3",
            )?
            .query_row(params![pipeline, kb, path], |r| {
                Ok(KbDir {
                    path: r.get(0)?,
                    dir_id: r.get(1)?,
                    made: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Record a directory of `kb` that `pipeline` uses.
    pub fn put_kb_dir(&self, pipeline: &str, kb: &str, d: &KbDir) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO kb_dirs (pipeline, kb_id, path, dir_id, made) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![pipeline, kb, d.path, d.dir_id, d.made])?;
        Ok(())
    }

    /// A directory renamed or moved in the knowledge base: the directory `from`
    /// of `kb` and those under it are at `to` now, and so is every file the
    /// rows place there. One transaction.
    pub fn rename_kb_dirs(
        &self,
        pipeline: &str,
        kb: &str,
        from: &str,
        to: &str,
    ) -> Result<(), LedgerError> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        tx.execute(END_DIR_RENAME, params![pipeline, kb, from])?;
        tx.execute(
            "UPDATE kb_dirs SET path = ?4 || substr(path, length(?3) + 1) \
             WHERE pipeline = ?1 AND kb_id = ?2 \
             AND (path = ?3 OR substr(path, 1, length(?3) + 1) = ?3 || '/')",
            params![pipeline, kb, from, to],
        )?;
        tx.execute(
            "UPDATE kb_files SET kb_path = ?4 || substr(kb_path, length(?3) + 1), updated_at = ?5 \
             WHERE pipeline = ?1 AND kb_id = ?2 AND substr(kb_path, 1, length(?3) + 1) = ?3 || '/'",
            params![pipeline, kb, from, to, unix_now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record, before asking Open WebUI, that directory `from` is being renamed
    /// (or moved) to `to`; [`Ledger::rename_kb_dirs`] ends it.
    pub fn begin_dir_rename(
        &self,
        pipeline: &str,
        kb: &str,
        from: &str,
        to: &str,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO kb_dir_renames (pipeline, kb_id, from_path, to_path) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![pipeline, kb, from, to])?;
        Ok(())
    }

    /// Directory renames begun and not recorded as done: `(from, to)`.
    pub fn pending_dir_renames(
        &self,
        pipeline: &str,
        kb: &str,
    ) -> Result<Vec<(String, String)>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT from_path, to_path FROM kb_dir_renames WHERE pipeline = ?1 AND kb_id = ?2 \
             ORDER BY from_path",
        )?;
        let rows = stmt
            .query_map(params![pipeline, kb], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// A directory rename that did not happen (Open WebUI refused it).
    pub fn drop_dir_rename(&self, pipeline: &str, kb: &str, from: &str) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(END_DIR_RENAME)?
            .execute(params![pipeline, kb, from])?;
        Ok(())
    }

    /// Forget the directory `path` of `kb` and every directory under it.
    pub fn forget_kb_dirs(&self, pipeline: &str, kb: &str, path: &str) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "DELETE FROM kb_dirs WHERE pipeline = ?1 AND kb_id = ?2 \
                 AND (path = ?3 OR substr(path, 1, length(?3) + 1) = ?3 || '/')",
            )?
            .execute(params![pipeline, kb, path])?;
        Ok(())
    }

    /// Forget a knowledge-base row (after the file is removed there).
    pub fn remove_kb(&self, pipeline: &str, path: &str) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached("DELETE FROM kb_files WHERE pipeline = ?1 AND path = ?2")?
            .execute(params![pipeline, path])?;
        Ok(())
    }

    /// Cached vectors for `hashes` (SHA-256 of chunk texts) under `model`, in order.
    /// A cached vector of another dimension than `dim` is a miss.
    pub fn cached_vectors(
        &self,
        model: &str,
        dim: Option<usize>,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<Option<Vec<f32>>>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT dim, vector FROM embed_cache WHERE model = ?1 AND text_hash = ?2",
        )?;
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            let row = stmt
                .query_row(params![model, &h[..]], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?;
            out.push(row.and_then(|(d, blob)| {
                let d = d as usize;
                (dim.is_none_or(|want| want == d) && blob.len() == d * 4).then(|| {
                    blob.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                })
            }));
        }
        Ok(out)
    }

    /// Remember vectors for chunk texts, keeping the cache under `max_entries` by
    /// dropping the oldest entries.
    pub fn cache_vectors(
        &self,
        model: &str,
        entries: &[([u8; 32], &[f32])],
        max_entries: usize,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO embed_cache (model, text_hash, dim, vector) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (h, v) in entries {
                let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                stmt.execute(params![model, &h[..], v.len() as i64, blob])?;
            }
            // Rowids only grow and the oldest are pruned first, so the span of
            // rowids bounds the row count from above in O(log n); COUNT(*) would
            // scan the table on every batch. MIN and MAX must be separate
            // queries: SQLite answers a lone MIN(rowid) or MAX(rowid) from one end
            // of the b-tree, but both in one SELECT scan the whole table.
            let count: i64 = tx.query_row(
                "SELECT COALESCE((SELECT MAX(rowid) FROM embed_cache) \
                 - (SELECT MIN(rowid) FROM embed_cache) + 1, 0)",
                [],
                |r| r.get(0),
            )?;
            let excess = count - max_entries as i64;
            if excess > 0 {
                // Oldest first: rowids grow with insertion.
                tx.execute(
                    "DELETE FROM embed_cache WHERE rowid < (SELECT MIN(rowid) FROM embed_cache) + ?1",
                    [excess],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every commit so far on disk, synced: the WAL checkpointed into the
    /// database file (which SQLite then fsyncs) and emptied. Readers that hold
    /// old WAL frames can keep a checkpoint from completing; it is tried again
    /// briefly, then reported.
    pub fn make_durable(&self) -> Result<(), LedgerError> {
        let conn = self.conn();
        for attempt in 0..50 {
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(());
            }
            if attempt < 49 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Err(LedgerError::Busy(
            "a reader kept the ledger's write-ahead log from being checkpointed".into(),
        ))
    }

    pub fn pipeline_meta(&self, name: &str) -> Result<Option<PipelineMeta>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, fingerprint, collection, dim FROM pipelines WHERE name = ?1",
        )?;
        Ok(stmt
            .query_row([name], |r| {
                Ok(PipelineMeta {
                    name: r.get(0)?,
                    fingerprint: r.get(1)?,
                    collection: r.get(2)?,
                    dim: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Collections ragd has written chunks into, by the ledger: a pipeline's
    /// recorded collection once a vector dimension was seen and some file of it
    /// is indexed. (A pipeline configured on a collection it never wrote to has
    /// no dimension from it: a failed first write records none.)
    pub fn written_collections(&self) -> Result<std::collections::BTreeSet<String>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT p.collection FROM pipelines p WHERE p.dim IS NOT NULL AND EXISTS \
             (SELECT 1 FROM files f WHERE f.pipeline = p.name AND f.state = ?1)",
        )?;
        let names = stmt
            .query_map([FileState::Indexed.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(names)
    }

    /// Record that this installation is about to create `collection` on a
    /// server (see [`Ledger::collection_begun`]).
    pub fn begin_collection(&self, collection: &str) -> Result<(), LedgerError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO collections_begun (collection, begun_at) VALUES (?1, ?2)",
            params![collection, unix_now()],
        )?;
        Ok(())
    }

    /// Whether this installation began creating `collection` and has not
    /// seen it through ([`Ledger::end_collection`]).
    pub fn collection_begun(&self, collection: &str) -> Result<bool, LedgerError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT 1 FROM collections_begun WHERE collection = ?1")?;
        Ok(stmt.exists([collection])?)
    }

    /// The creation of `collection` is complete (it carries ragd's mark).
    pub fn end_collection(&self, collection: &str) -> Result<(), LedgerError> {
        self.conn().execute(
            "DELETE FROM collections_begun WHERE collection = ?1",
            [collection],
        )?;
        Ok(())
    }

    /// Names of the pipelines on record that write to `collection`.
    pub fn pipelines_using(&self, collection: &str) -> Result<Vec<String>, LedgerError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT name FROM pipelines WHERE collection = ?1 ORDER BY name")?;
        let names = stmt
            .query_map([collection], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    pub fn set_pipeline_meta(&self, meta: &PipelineMeta) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO pipelines (name, fingerprint, collection, dim, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                meta.name,
                meta.fingerprint,
                meta.collection,
                meta.dim,
                unix_now()
            ])?;
        Ok(())
    }
}

impl Ledger {
    /// Record a finished run (keeps the last `RUNS_KEPT` per pipeline).
    pub fn record_run(&self, run: &RunRecord) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO runs (pipeline, kind, started_at, elapsed_ms, added, updated, deleted, \
             unchanged, touched, skipped, failed, chunks_written, kb_linked, kb_failed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            run.pipeline,
            run.kind,
            run.started_at,
            run.elapsed_ms as i64,
            run.added as i64,
            run.updated as i64,
            run.deleted as i64,
            run.unchanged as i64,
            run.touched as i64,
            run.skipped as i64,
            run.failed as i64,
            run.chunks_written as i64,
            run.kb_linked.map(|n| n as i64),
            run.kb_failed.map(|n| n as i64),
        ])?;
        tx.prepare_cached(
            "DELETE FROM runs WHERE pipeline = ?1 AND id NOT IN \
             (SELECT id FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2)",
        )?
        .execute(params![run.pipeline, RUNS_KEPT])?;
        tx.commit()?;
        Ok(())
    }

    /// The most recent runs of a pipeline, newest first.
    pub fn recent_runs(&self, pipeline: &str, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT pipeline, kind, started_at, elapsed_ms, added, updated, deleted, unchanged, \
             touched, skipped, failed, chunks_written, kb_linked, kb_failed \
             FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![pipeline, limit as i64], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(RunRecord {
                pipeline: r.get(0)?,
                kind: r.get(1)?,
                started_at: r.get(2)?,
                elapsed_ms: n(3)?,
                added: n(4)?,
                updated: n(5)?,
                deleted: n(6)?,
                unchanged: n(7)?,
                touched: n(8)?,
                skipped: n(9)?,
                failed: n(10)?,
                chunks_written: n(11)?,
                kb_linked: r.get::<_, Option<i64>>(12)?.map(|v| v.max(0) as u64),
                kb_failed: r.get::<_, Option<i64>>(13)?.map(|v| v.max(0) as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Hand `rows` to `f` as an iterator of records; a row that cannot be read
/// ends the iterator early and is the error returned.
fn read_rows<R, T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<R, LedgerError>>>,
    f: impl FnOnce(&mut dyn Iterator<Item = R>) -> T,
) -> Result<T, LedgerError> {
    let mut failed: Option<LedgerError> = None;
    let out = {
        let mut rows = rows.map_while(|r| match r {
            Ok(Ok(record)) => Some(record),
            Ok(Err(e)) => {
                failed = Some(e);
                None
            }
            Err(e) => {
                failed = Some(e.into());
                None
            }
        });
        f(&mut rows)
    };
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

const KB_COLUMNS: &str = "pipeline, path, kb_id, content_hash, file_id, old_file_id, state, \
                          error_kind, error, attempts, kb_path, file_hash";

fn row_to_kb(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<KbRecord, LedgerError>> {
    let state: String = r.get(6)?;
    let state = match KbState::parse(&state) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(KbRecord {
        pipeline: r.get(0)?,
        path: r.get(1)?,
        kb_id: r.get(2)?,
        content_hash: r.get(3)?,
        file_id: r.get(4)?,
        old_file_id: r.get(5)?,
        state,
        error_kind: r.get(7)?,
        error: r.get(8)?,
        attempts: r.get(9)?,
        kb_path: r.get(10)?,
        file_hash: r.get(11)?,
    }))
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<FileRecord, LedgerError>> {
    let state: String = r.get(9)?;
    let state = match FileState::parse(&state) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(FileRecord {
        pipeline: r.get(0)?,
        path: r.get(1)?,
        source: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mtime_ns: r.get(4)?,
        file_hash: r.get(5)?,
        content_hash: r.get(6)?,
        target_hash: r.get(7)?,
        chunk_count: r.get(8)?,
        state,
        error_kind: r.get(10)?,
        error: r.get(11)?,
        attempts: r.get(12)?,
        updated_at: r.get(13)?,
        warning: r.get(14)?,
    }))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row that says its file is uploaded or linked names the upload: one
    /// without a file id is refused, not written.
    #[test]
    fn a_linked_or_uploaded_row_without_its_file_id_is_refused() {
        let l = Ledger::in_memory().unwrap();
        for (state, path) in [(KbState::Uploaded, "a.md"), (KbState::Linked, "b.md")] {
            let mut r = KbRecord::uploading("p", path, "kb", "t");
            r.state = state;
            assert!(
                matches!(l.put_kb(&r), Err(LedgerError::Invalid(_))),
                "{state:?}"
            );
            assert!(!l.kb_files("p").unwrap().contains_key(path));
            r.file_id = Some("f1".into());
            l.put_kb(&r).unwrap();
            assert_eq!(l.kb_files("p").unwrap()[path].state, state);
        }
    }

    #[test]
    fn failure_kinds_are_stored_as_their_text_and_unknown_ones_kept() {
        let l = Ledger::in_memory().unwrap();
        let mut r = FileRecord::new("p", "a.pdf", 0, 1, 1, "h".into());
        r.state = FileState::Failed;
        r.error_kind = Some(FailKind::Corrupt);
        l.put(&r).unwrap();
        let text: String = l
            .conn()
            .query_row(
                "SELECT error_kind FROM files WHERE path = 'a.pdf'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(text, "corrupt");
        // A kind another ragd wrote reads, and is written back as it was.
        l.conn()
            .execute(
                "UPDATE files SET error_kind = 'someday' WHERE path = 'a.pdf'",
                [],
            )
            .unwrap();
        let back = l.get("p", "a.pdf").unwrap().unwrap();
        assert_eq!(back.error_kind, Some(FailKind::Other("someday".into())));
        assert!(!back.is_retried());
        l.put(&back).unwrap();
        assert_eq!(
            l.get("p", "a.pdf").unwrap().unwrap().error_kind,
            back.error_kind
        );
    }

    #[test]
    fn put_get_and_states_roundtrip() {
        let l = Ledger::in_memory().unwrap();
        let mut r = FileRecord::new("p", "a/b.md", 0, 10, 123, "h".into());
        l.put(&r).unwrap();
        assert_eq!(
            l.get("p", "a/b.md").unwrap().unwrap().state,
            FileState::Indexing
        );
        r.state = FileState::Indexed;
        r.content_hash = Some("c".into());
        r.chunk_count = 3;
        l.put(&r).unwrap();
        let got = l.get("p", "a/b.md").unwrap().unwrap();
        assert_eq!(got.content_hash.as_deref(), Some("c"));
        assert_eq!(got.chunk_count, 3);
        assert_eq!(l.files("p").unwrap().len(), 1);
        assert!(l.files("other").unwrap().is_empty());
        assert_eq!(l.count_by_state("p").unwrap()[&FileState::Indexed], 1);
        l.remove("p", "a/b.md").unwrap();
        assert!(l.get("p", "a/b.md").unwrap().is_none());
    }

    #[test]
    fn a_moved_row_keeps_its_upload_and_claims_are_found() {
        let l = Ledger::in_memory().unwrap();
        let linked = KbRecord {
            file_id: Some("u1".into()),
            state: KbState::Linked,
            ..KbRecord::uploading("p", "old/a.md", "kb", "t")
        };
        let replacing = KbRecord {
            old_file_id: Some("u2".into()),
            ..KbRecord::uploading("p", "b.md", "kb", "t2")
        };
        l.put_kb(&linked).unwrap();
        l.put_kb(&replacing).unwrap();
        l.move_kb("p", "old/a.md", "new/a.md", "a.md").unwrap();
        let rows = l.kb_files("p").unwrap();
        assert!(!rows.contains_key("old/a.md"));
        assert_eq!(rows["new/a.md"].file_id.as_deref(), Some("u1"));
        assert_eq!(rows["new/a.md"].state, KbState::Linked);
        // By the version's id, a replaced version's id, or the path; not else.
        assert!(l.kb_claims("p", "u1", "gone.md").unwrap());
        assert!(l.kb_claims("p", "u2", "gone.md").unwrap());
        assert!(l.kb_claims("p", "u9", "b.md").unwrap());
        assert!(!l.kb_claims("p", "u9", "old/a.md").unwrap());
        assert!(!l.kb_claims("other", "u1", "new/a.md").unwrap());
    }

    #[test]
    fn files_stream_in_the_order_str_sorts_them() {
        let l = Ledger::in_memory().unwrap();
        let paths = ["a/b.md", "B.md", "a-b.md", "é.md", "a.md", "z.md"];
        for p in paths {
            l.put(&FileRecord::new("p", p, 0, 1, 1, "h".into()))
                .unwrap();
        }
        l.put(&FileRecord::new("other", "0.md", 0, 1, 1, "h".into()))
            .unwrap();
        let got: Vec<String> = l
            .with_files("p", |rows| rows.map(|r| r.path).collect())
            .unwrap();
        let mut want: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        // Stopping early is fine; the statement is reset for the next caller.
        let first = l.with_files("p", |rows| rows.next()).unwrap();
        assert_eq!(first.unwrap().path, "B.md");
        assert_eq!(l.with_files("p", |rows| rows.count()).unwrap(), 6);
    }

    #[test]
    fn files_and_knowledge_rows_stream_side_by_side_in_path_order() {
        let l = Ledger::in_memory().unwrap();
        for (p, text) in [("b.md", "t1"), ("a.md", "t2"), ("c.md", "t1")] {
            let mut r = FileRecord::new("p", p, 0, 1, 1, "h".into());
            r.state = FileState::Indexed;
            r.content_hash = Some(text.into());
            l.put(&r).unwrap();
        }
        for p in ["c.md", "a.md", "z.md"] {
            l.put_kb(&KbRecord::uploading("p", p, "kb", "t")).unwrap();
        }
        let (files, kb) = l
            .with_files_and_kb("p", |files, kb| {
                // Interleaved, as a merge reads them.
                let mut out = (Vec::new(), Vec::new());
                loop {
                    match (files.next(), kb.next()) {
                        (None, None) => break out,
                        (f, k) => {
                            out.0.extend(f.map(|f| f.path));
                            out.1.extend(k.map(|k| k.path));
                        }
                    }
                }
            })
            .unwrap();
        assert_eq!(files, ["a.md", "b.md", "c.md"]);
        assert_eq!(kb, ["a.md", "c.md", "z.md"]);
        // The read transaction ended: writes go on.
        l.remove_kb("p", "z.md").unwrap();
        assert_eq!(l.with_kb_files("p", |rows| rows.count()).unwrap(), 2);

        assert_eq!(
            l.file_with_text("p", "t1", "c.md").unwrap().as_deref(),
            Some("b.md")
        );
        assert_eq!(
            l.file_with_text("p", "t1", "b.md").unwrap().as_deref(),
            Some("c.md")
        );
        assert_eq!(l.file_with_text("p", "t2", "a.md").unwrap(), None);
    }

    #[test]
    fn runs_are_recorded_newest_first_and_pruned() {
        let l = Ledger::in_memory().unwrap();
        for i in 0..(RUNS_KEPT + 5) {
            l.record_run(&RunRecord {
                pipeline: "p".into(),
                kind: "index".into(),
                started_at: i,
                added: i as u64,
                ..Default::default()
            })
            .unwrap();
        }
        let runs = l.recent_runs("p", 1000).unwrap();
        assert_eq!(runs.len(), RUNS_KEPT as usize);
        assert_eq!(runs[0].started_at, RUNS_KEPT + 4);
        assert!(l.recent_runs("other", 5).unwrap().is_empty());
    }

    #[test]
    fn embedding_cache_roundtrips_checks_dimension_and_evicts_oldest() {
        let l = Ledger::in_memory().unwrap();
        let key = |i: u8| [i; 32];
        let v = [0.25f32, -1.5, 3.0];
        for i in 0..5u8 {
            l.cache_vectors("m", &[(key(i), &v[..])], 3).unwrap();
        }
        let got = l
            .cached_vectors("m", Some(3), &[key(0), key(1), key(2), key(4)])
            .unwrap();
        // Capacity 3: the two oldest are gone, the newest are there intact.
        assert_eq!(got[0], None);
        assert_eq!(got[1], None);
        assert_eq!(got[2].as_deref(), Some(&v[..]));
        assert_eq!(got[3].as_deref(), Some(&v[..]));
        // Another model or another dimension is a miss.
        assert_eq!(
            l.cached_vectors("other", Some(3), &[key(4)]).unwrap()[0],
            None
        );
        assert_eq!(
            l.cached_vectors("m", Some(384), &[key(4)]).unwrap()[0],
            None
        );
    }

    #[test]
    fn survives_reopen_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        {
            let l = Ledger::open(&path).unwrap();
            l.put(&FileRecord::new("p", "x", 0, 1, 1, "h".into()))
                .unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        assert!(l.get("p", "x").unwrap().is_some());
    }

    #[test]
    fn make_durable_leaves_nothing_in_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let ledger = Ledger::open(&path).unwrap();
        ledger
            .set_pipeline_meta(&PipelineMeta {
                name: "docs".into(),
                fingerprint: "f".into(),
                collection: "docs".into(),
                dim: Some(4),
            })
            .unwrap();
        let wal = dir.path().join("ledger.sqlite-wal");
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the commit sits in the WAL"
        );
        ledger.make_durable().unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        // And it is in the database file: a fresh connection reads it.
        drop(ledger);
        let again = Ledger::open(&path).unwrap();
        assert_eq!(again.pipeline_meta("docs").unwrap().unwrap().dim, Some(4));
    }
}
