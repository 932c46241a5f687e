//! Full reindex into a new versioned collection, switched in with an alias.
//!
//! A pipeline's configured collection name `C` is an *alias* pointing at a real
//! collection `C_v<N>`. A full reindex (`ragd reindex`, or automatically when the
//! model or chunking settings — the pipeline fingerprint — or the vector dimension
//! change) builds `C_v<N+1>` next to it, points `C` at it in one atomic step
//! ([`VectorStore::set_alias`](crate::store::VectorStore::set_alias); embedded Qdrant writes its alias file atomically),
//! then drops the old collection. Searches go through `C`, so they see the old
//! index or the new one, never a half-built one.
//!
//! # Crash safety
//!
//! The main ledger always describes what `C` points at. The build therefore never
//! touches it: it has its own ledger file, `<state>/reindex/<pipeline>.sqlite`, and
//! a marker `<state>/reindex/<pipeline>.json` (written atomically: temp file,
//! fsync, rename) records `{target, phase}`.
//!
//! - **phase `building`**: `C_v<N+1>` and the build ledger fill up using the normal
//!   write-ahead rules. A crash here leaves `C` and the main ledger untouched and
//!   consistent; on restart the marker resumes the build where it stopped (its
//!   ledger has `indexing` rows for the files in flight, redone idempotently).
//! - **phase `switching`** (written once the build is complete): switch the alias,
//!   copy the build ledger's rows over this pipeline's rows in the main ledger,
//!   record the fingerprint, drop the old versions, delete the build ledger, delete
//!   the marker. Every step is idempotent, and the build ledger is deleted only
//!   after the copy, so a crash anywhere in this phase is finished on restart by
//!   running the phase again from the top. Between the alias switch and the end of
//!   the copy, the main ledger may still describe the old collection; nothing reads
//!   it in that window (the worker finishes the switch before any other work), and
//!   the rows it would wrongly call `indexed` are exactly the ones the copy replaces.
//!
//! The only way the ledger could claim a file is indexed in the live collection
//! when it is only in the one being built would be copying build rows before the
//! switch — which the phase order rules out.
//!
//! Files that change during a build are picked up by the ordinary reconcile that
//! follows every reindex (their size/mtime differ from the copied rows).
//!
//! # A worse new version never replaces the live one
//!
//! A file indexed in the live collection that the build could not index (an
//! embedder blip, say) would vanish from search with the switch, and its
//! knowledge-base upload with it. So the switch is held back while any such
//! file exists: the marker stays `building`, the live collection keeps serving,
//! and the next reindex resumes the build, which retries just those files.
//!
//! The switch also drops every live row the build does not have, which is a
//! run's delete by another name, so it is held back by the same rules
//! ([`plan::plan`](crate::pipeline::plan::plan), the live ledger planned
//! against the build's own scan, [`RunRequest::switch_from`]): not while a
//! live file is under a folder that scan could not read or of a source that
//! turned up empty (a vanished mount builds an empty collection), nor when the
//! live files missing from the build trip the mass-delete rail, unless the
//! operator allows it (`ragd reindex --allow-mass-delete`).
//!
//! A collection named `C` that is a real collection (made by `ragd index` before
//! aliases, or by an older ragd) is migrated by the first reindex: it is dropped
//! just before the alias is created, so `C` is missing for that one moment.
//! Only collections the store created are ever dropped ([`StoreError::Foreign`]):
//! on a shared server a `C` or `C_v<N>` of somebody else's is refused or left.
//!
//! A collection shared by several pipelines cannot be rebuilt by one of them (the
//! others' points would vanish); such pipelines are re-embedded in place instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, LedgerError, PipelineMeta};
use crate::pipeline::layout::{version_of, versioned};
use crate::pipeline::{Pipeline, PipelineError, RunRequest};
use crate::store::StoreError;

/// Failures of a reindex. The live collection is untouched by every one of them
/// except those in the switch, which a restart finishes.
#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error("pipeline {pipeline}: reindex state {path}: {source}")]
    State {
        pipeline: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pipeline {pipeline}: reindex ledger: {source}")]
    Ledger {
        pipeline: String,
        #[source]
        source: LedgerError,
    },
    #[error("pipeline {pipeline}: reindex: {source}")]
    Store {
        pipeline: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Build(#[from] PipelineError),
    #[error("pipeline {0}: reindex interrupted by shutdown; it resumes at the next start")]
    Interrupted(String),
}

/// What `<state>/reindex/<pipeline>.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    /// The collection being built, `C_v<N>`.
    target: String,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    Building,
    Switching,
}

/// What a finished reindex did.
#[derive(Debug, Clone)]
pub struct ReindexOutcome {
    /// The collection the alias now points at (or, when held back, the one
    /// being built).
    pub collection: String,
    pub files_indexed: usize,
    pub files_failed: usize,
    /// Why the alias was not switched; empty when it was (see the module doc).
    pub held_back: HeldBack,
    /// Problems the build's scan met (unreadable folders, links outside).
    pub scan_problems: Vec<String>,
}

impl ReindexOutcome {
    pub fn switched(&self) -> bool {
        self.held_back.is_empty()
    }
}

/// What holds a switch back. Any one of them does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldBack {
    /// Files indexed in the live collection that the build failed.
    pub failed: Vec<String>,
    /// Live files the build's scan cannot vouch for: under a folder it could
    /// not read, or of a source folder that turned up empty.
    pub unsure: usize,
    /// The mass-delete rail: `(live files missing from the build, of live files)`.
    pub mass_delete: Option<(usize, usize)>,
}

impl HeldBack {
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty() && self.unsure == 0 && self.mass_delete.is_none()
    }
}

/// Paths of one pipeline's reindex state.
struct Paths {
    dir: PathBuf,
    marker: PathBuf,
    ledger: PathBuf,
}

impl Paths {
    fn new(state_dir: &Path, pipeline: &str) -> Self {
        let dir = state_dir.join("reindex");
        Paths {
            marker: dir.join(format!("{pipeline}.json")),
            ledger: dir.join(format!("{pipeline}.sqlite")),
            dir,
        }
    }
}

/// Why this pipeline needs a full reindex now, if it does.
pub fn needed(pipeline: &Pipeline, state_dir: &Path) -> Result<Option<&'static str>, ReindexError> {
    if Paths::new(state_dir, pipeline.name()).marker.exists() {
        return Ok(Some("an interrupted reindex resumes"));
    }
    let meta = pipeline
        .ledger
        .pipeline_meta(pipeline.name())
        .map_err(|e| ledger_err(pipeline, e))?;
    Ok(match meta {
        Some(m) if m.fingerprint != pipeline.fingerprint() => {
            Some("the model or chunking settings changed")
        }
        _ => None,
    })
}

/// Rebuild `pipeline` into a new versioned collection and switch to it, or finish
/// one a crash interrupted. `settle` defers files still being written (they are
/// indexed by the reconcile that follows). `allow_mass_delete` lets a build
/// that lacks most of the live files switch (the operator confirmed the shrink).
pub async fn reindex(
    pipeline: &Pipeline,
    state_dir: &Path,
    settle: Duration,
    allow_mass_delete: bool,
    cancel: &CancellationToken,
) -> Result<ReindexOutcome, ReindexError> {
    let name = pipeline.name().to_owned();
    let paths = Paths::new(state_dir, &name);
    let io = |path: &Path| {
        let (name, path) = (name.clone(), path.to_owned());
        move |source| ReindexError::State {
            pipeline: name,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&paths.dir).map_err(io(&paths.dir))?;

    let mut marker = match read_marker(&paths.marker).map_err(io(&paths.marker))? {
        Some(m) => {
            tracing::info!(pipeline = %name, target = %m.target, phase = ?m.phase, "resuming reindex");
            m
        }
        None => {
            // A leftover build ledger without a marker is from a build that never
            // recorded its target: start clean.
            remove_ledger_files(&paths.ledger);
            let target = next_version(pipeline).await?;
            let m = Marker {
                target,
                phase: Phase::Building,
            };
            write_marker(&paths.marker, &m).map_err(io(&paths.marker))?;
            tracing::info!(pipeline = %name, target = %m.target, "reindex: building");
            m
        }
    };
    if marker.phase == Phase::Switching && !paths.ledger.exists() {
        // Cannot happen with `cleanup`'s order; refuse rather than copy nothing.
        return Err(ReindexError::State {
            pipeline: name.clone(),
            path: paths.ledger.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "reindex marker says switching but the build ledger is missing; \
                 delete the marker to start the reindex over",
            ),
        });
    }
    let build_ledger = Arc::new(Ledger::open(&paths.ledger).map_err(|e| ledger_err(pipeline, e))?);

    let mut indexed = 0;
    let mut failed = 0;
    let mut scan_problems = Vec::new();
    if marker.phase == Phase::Building {
        let mut config = (*pipeline.config).clone();
        config.collection = marker.target.clone();
        let mut build = pipeline.clone();
        build.config = Arc::new(config);
        build.ledger = build_ledger.clone();
        // The knowledge base follows the live ledger, not the build.
        build.publisher = None;
        // The external base searches the alias, which the switch moves.
        build.external = None;
        let summary = build
            .run(&RunRequest {
                min_age: settle,
                cancel: cancel.clone(),
                allow_mass_delete,
                // What the switch would drop of the live rows, judged on the
                // scan this build ran on.
                switch_from: Some(pipeline.ledger.clone()),
                // A build into an empty collection: nothing to move.
                detect_moves: false,
                ..RunRequest::reconcile()
            })
            .await?;
        if summary.interrupted {
            return Err(ReindexError::Interrupted(name));
        }
        indexed = summary.added + summary.updated + summary.touched;
        failed = summary.failed;
        scan_problems = summary.scan_problems;
        let Some(verdict) = summary.switch else {
            unreachable!("a run asked to judge the switch (switch_from) always does")
        };
        let held_back = HeldBack {
            failed: lost_by_switch(pipeline, &build_ledger)?,
            unsure: verdict.held_back,
            mass_delete: verdict.mass_delete_blocked,
        };
        if !held_back.is_empty() {
            tracing::warn!(
                pipeline = %name,
                collection = %marker.target,
                failed = held_back.failed.len(),
                first_failed = held_back.failed.first().map_or("", String::as_str),
                unsure = held_back.unsure,
                mass_delete = ?held_back.mass_delete,
                scan_problems = scan_problems.len(),
                "reindex: not switched; the build lacks files the live collection has \
                 (failed in the build, under a folder its scan could not read, or more than \
                 the mass-delete rail allows); the live collection keeps serving and the \
                 next reindex resumes the build"
            );
            return Ok(ReindexOutcome {
                collection: marker.target,
                files_indexed: indexed,
                files_failed: failed,
                held_back,
                scan_problems,
            });
        }
        // An empty folder leaves nothing created; give the alias an empty
        // collection of the known dimension so the switch is uniform.
        if pipeline
            .store
            .collection_dim(&marker.target)
            .await
            .map_err(|e| store_err(pipeline, e))?
            .is_none()
        {
            let dim = pipeline
                .store
                .collection_dim(&pipeline.config.collection)
                .await
                .map_err(|e| store_err(pipeline, e))?;
            match dim {
                Some(d) => pipeline
                    .store
                    .ensure_collection(&marker.target, d)
                    .await
                    .map_err(|e| store_err(pipeline, e))?,
                None => {
                    // Nothing live and nothing built: nothing to switch.
                    drop(build_ledger);
                    cleanup(&paths);
                    return Ok(ReindexOutcome {
                        collection: marker.target,
                        files_indexed: 0,
                        files_failed: failed,
                        held_back: HeldBack::default(),
                        scan_problems,
                    });
                }
            }
        }
        // The build on disk before the marker says it is complete: a power
        // cut after the marker must not leave a switch to copy a build ledger
        // that lost its last commits.
        build_ledger
            .make_durable()
            .map_err(|e| ledger_err(pipeline, e))?;
        marker.phase = Phase::Switching;
        write_marker(&paths.marker, &marker).map_err(io(&paths.marker))?;
    }

    switch(pipeline, &marker.target, &build_ledger).await?;
    // The copy into the main ledger on disk before the build ledger goes: until
    // then a power cut leaves the marker, and the next start copies again.
    pipeline
        .ledger
        .make_durable()
        .map_err(|e| ledger_err(pipeline, e))?;
    drop(build_ledger);
    cleanup(&paths);
    tracing::info!(pipeline = %name, collection = %marker.target, indexed, failed, "reindex: switched");
    Ok(ReindexOutcome {
        collection: marker.target,
        files_indexed: indexed,
        files_failed: failed,
        held_back: HeldBack::default(),
        scan_problems,
    })
}

/// Paths indexed in the live ledger whose build row is not indexed: what the
/// switch would lose. (A file gone from the build ledger was deleted or is
/// excluded now, and goes with the switch as it would with any run.)
fn lost_by_switch(pipeline: &Pipeline, build: &Ledger) -> Result<Vec<String>, ReindexError> {
    let name = pipeline.name();
    let built = build.files(name).map_err(|e| ledger_err(pipeline, e))?;
    let mut lost: Vec<String> = pipeline
        .ledger
        .files(name)
        .map_err(|e| ledger_err(pipeline, e))?
        .into_values()
        .filter(|live| live.state == crate::ledger::FileState::Indexed)
        .filter(|live| {
            built
                .get(&live.path)
                .is_some_and(|b| b.state != crate::ledger::FileState::Indexed)
        })
        .map(|live| live.path)
        .collect();
    lost.sort();
    Ok(lost)
}

/// Phase `switching`: idempotent from the top (see the module doc).
async fn switch(pipeline: &Pipeline, target: &str, build: &Ledger) -> Result<(), ReindexError> {
    let alias = &pipeline.config.collection;
    let store = &pipeline.store;
    let serr = |e| store_err(pipeline, e);
    let lerr = |e| ledger_err(pipeline, e);

    let collections = store.list_collections().await.map_err(serr)?;
    if collections.iter().any(|c| c == alias) {
        // Pre-alias layout: the name is taken by a real collection.
        tracing::warn!(pipeline = %pipeline.name(), %alias,
            "migrating a plain collection to a versioned one: briefly unavailable");
        store.delete_collection(alias).await.map_err(serr)?;
    }
    store.set_alias(alias, target).await.map_err(serr)?;

    let name = pipeline.name();
    let rows = build.files(name).map_err(lerr)?;
    for path in pipeline.ledger.files(name).map_err(lerr)?.keys() {
        if !rows.contains_key(path) {
            pipeline.ledger.remove(name, path).map_err(lerr)?;
        }
    }
    let rows: Vec<_> = rows.into_values().collect();
    pipeline.ledger.put_many(&rows).map_err(lerr)?;
    let built = build.pipeline_meta(name).map_err(lerr)?;
    pipeline
        .ledger
        .set_pipeline_meta(&PipelineMeta {
            name: name.to_owned(),
            fingerprint: built
                .as_ref()
                .map_or_else(|| pipeline.fingerprint(), |m| m.fingerprint.clone()),
            collection: alias.clone(),
            dim: built.and_then(|m| m.dim),
        })
        .map_err(lerr)?;

    for old in collections {
        if old != target && version_of(alias, &old).is_some() {
            match store.delete_collection(&old).await {
                Ok(_) => {
                    tracing::info!(pipeline = %name, collection = %old, "dropped old collection")
                }
                // Named like a version but not made by ragd: somebody else's.
                Err(e @ StoreError::Foreign { .. }) => {
                    tracing::warn!(pipeline = %name, collection = %old, error = %e,
                        "left a collection ragd did not create")
                }
                Err(e) => return Err(serr(e)),
            }
        }
    }
    Ok(())
}

/// `C_v<N+1>` for the highest N among existing versions (1 if none).
async fn next_version(pipeline: &Pipeline) -> Result<String, ReindexError> {
    let alias = &pipeline.config.collection;
    let existing = pipeline
        .store
        .list_collections()
        .await
        .map_err(|e| store_err(pipeline, e))?;
    let n = existing
        .iter()
        .filter_map(|c| version_of(alias, c))
        .max()
        .unwrap_or(0)
        + 1;
    Ok(versioned(alias, n))
}

fn read_marker(path: &Path) -> std::io::Result<Option<Marker>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Temp file, fsync, rename, fsync the folder: the marker is old or new, never torn.
fn write_marker(path: &Path, marker: &Marker) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(marker).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn remove_ledger_files(ledger: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = ledger.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Marker first, build ledger second: once the marker is gone nothing re-runs the
/// switch, so a crash between the two can never copy an empty build ledger over
/// the main one; the leftover ledger is removed by the next reindex.
fn cleanup(paths: &Paths) {
    let _ = std::fs::remove_file(&paths.marker);
    remove_ledger_files(&paths.ledger);
}

fn ledger_err(pipeline: &Pipeline, source: LedgerError) -> ReindexError {
    ReindexError::Ledger {
        pipeline: pipeline.name().to_owned(),
        source,
    }
}

fn store_err(pipeline: &Pipeline, source: StoreError) -> ReindexError {
    ReindexError::Store {
        pipeline: pipeline.name().to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_roundtrips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("docs.json");
        assert_eq!(read_marker(&p).unwrap(), None);
        let m = Marker {
            target: "docs_v2".into(),
            phase: Phase::Switching,
        };
        write_marker(&p, &m).unwrap();
        assert_eq!(read_marker(&p).unwrap(), Some(m));
        assert!(!dir.path().join("docs.json.tmp").exists());
    }
}
