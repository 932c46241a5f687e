//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Append only: a released migration is never edited, so every ledger ever
//! written can be brought forward step by step.

use rusqlite::Connection;

use super::LedgerError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: files and pipelines.
    "CREATE TABLE files (
        pipeline     TEXT    NOT NULL,
        path         TEXT    NOT NULL,
        source       INTEGER NOT NULL DEFAULT 0,
        size         INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        file_hash    TEXT    NOT NULL,
        content_hash TEXT,
        target_hash  TEXT,
        chunk_count  INTEGER NOT NULL DEFAULT 0,
        state        TEXT    NOT NULL,
        error_kind   TEXT,
        error        TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (pipeline, path)
    ) WITHOUT ROWID;
    CREATE INDEX files_by_state ON files (pipeline, state);
    CREATE TABLE pipelines (
        name        TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        collection  TEXT NOT NULL,
        dim         INTEGER,
        updated_at  INTEGER NOT NULL
    );",
    // 2: the Open WebUI side: one row per file published to a knowledge base.
    "CREATE TABLE kb_files (
        pipeline     TEXT    NOT NULL,
        path         TEXT    NOT NULL,
        kb_id        TEXT    NOT NULL,
        content_hash TEXT    NOT NULL,
        file_id      TEXT,
        old_file_id  TEXT,
        state        TEXT    NOT NULL,
        error_kind   TEXT,
        error        TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (pipeline, path)
    ) WITHOUT ROWID;",
    // 3: one row per finished run, for `ragd status` ("last run").
    "CREATE TABLE runs (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline       TEXT    NOT NULL,
        kind           TEXT    NOT NULL,
        started_at     INTEGER NOT NULL,
        elapsed_ms     INTEGER NOT NULL,
        added          INTEGER NOT NULL,
        updated        INTEGER NOT NULL,
        deleted        INTEGER NOT NULL,
        unchanged      INTEGER NOT NULL,
        touched        INTEGER NOT NULL,
        skipped        INTEGER NOT NULL,
        failed         INTEGER NOT NULL,
        chunks_written INTEGER NOT NULL,
        kb_linked      INTEGER,
        kb_failed      INTEGER
    );
    CREATE INDEX runs_by_pipeline ON runs (pipeline, id);",
    // 4: the embedding cache: unchanged chunks of an edited file, moved files and
    // duplicate files are never embedded twice.
    "CREATE TABLE embed_cache (
        model     TEXT    NOT NULL,
        text_hash BLOB    NOT NULL,
        dim       INTEGER NOT NULL,
        vector    BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX embed_cache_key ON embed_cache (model, text_hash);",
    // 5: a file's published twins by text: a file whose text a linked file
    // already holds is not uploaded again (Open WebUI would refuse it).
    // Covering (a WITHOUT ROWID index holds the key, `path`): with `kb_id` and
    // `state` outside it SQLite's planner preferred scanning the pipeline's rows.
    "CREATE INDEX kb_files_by_text ON kb_files (pipeline, content_hash, kb_id, state);",
    // 6: Open WebUI 0.12's directories: where each file sits in the knowledge base
    // (NULL: at the root, as every file was before), and the directories a pipeline
    // uses there (`made`: created by ragd, so removed once emptied).
    "ALTER TABLE kb_files ADD COLUMN kb_path TEXT;
    CREATE TABLE kb_dirs (
        pipeline TEXT    NOT NULL,
        kb_id    TEXT    NOT NULL,
        path     TEXT    NOT NULL,
        dir_id   TEXT    NOT NULL,
        made     INTEGER NOT NULL,
        PRIMARY KEY (pipeline, kb_id, path)
    ) WITHOUT ROWID;",
    // 7: the SHA-256 of the bytes each upload was made from (what Open WebUI keeps
    // as `meta.file_hash` and its folder sync compares): a file whose bytes change
    // but not its text is uploaded again only for that. NULL: not known (a row
    // written before), taken as current.
    "ALTER TABLE kb_files ADD COLUMN file_hash TEXT;",
    // 8: collections on a Qdrant server this installation sent a create request
    // for, written before the request: a crash between the creation and ragd's
    // mark leaves an unmarked collection that this row proves is ragd's own.
    "CREATE TABLE collections_begun (
        collection TEXT    PRIMARY KEY,
        begun_at   INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 9: directory renames sent to Open WebUI, written before the request: a crash
    // between the rename and its record left the base's directory under the new
    // name while the ledger kept the old one (seen in the kill -9 soak).
    "CREATE TABLE kb_dir_renames (
        pipeline  TEXT NOT NULL,
        kb_id     TEXT NOT NULL,
        from_path TEXT NOT NULL,
        to_path   TEXT NOT NULL,
        PRIMARY KEY (pipeline, kb_id, from_path)
    ) WITHOUT ROWID;",
    // 10: what a file's indexed text lacks (pages OCR could not read, pages past
    // ocr.max_pages), one line each: the file is indexed with the rest.
    "ALTER TABLE files ADD COLUMN warning TEXT;",
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT {
        return Err(LedgerError::TooNew {
            found,
            supported: CURRENT,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger written by an older build is brought forward without losing
    /// rows, and the twin lookup by text then uses the new index.
    #[test]
    fn an_older_ledger_migrates_forward_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().enumerate().take(4) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO kb_files (pipeline, path, kb_id, content_hash, state, attempts, updated_at) \
             VALUES ('p', 'a.md', 'kb', 'h1', 'linked', 0, 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM kb_files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        // The query `Ledger::linked_with_text` runs.
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {}", super::super::LINKED_WITH_TEXT),
                ["p", "h1", "kb", "linked", "b.md"],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("kb_files_by_text"), "{plan}");
    }
}
