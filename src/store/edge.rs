//! Embedded Qdrant: one `qdrant_edge::EdgeShard` per collection, in
//! `<root>/collections/<name>/`, and aliases in `<root>/aliases.json`.
//!
//! # Concurrency
//!
//! `EdgeShard` is synchronous and blocking, so every call into it runs on
//! `spawn_blocking`. The catalog (which collections and aliases exist) sits
//! behind one async `RwLock`: operations on points hold it for reading while they
//! run, creating or deleting a collection and switching an alias hold it for
//! writing. A collection therefore cannot vanish under a running operation, and an
//! alias switch is seen by a reader either wholly or not at all.
//!
//! Writes to one shard are serialised by a per-shard mutex, because
//! `EdgeShard::flush` takes its WAL and segment locks with `try_lock` and *panics*
//! if another thread holds them; only writers (update, flush) contend for those.
//!
//! # Durability
//!
//! qdrant-edge 0.7.2 writes every update to its WAL (an mmap, not fsynced) and to
//! the in-memory segments, but `EdgeShard::load` never replays the WAL: what
//! survives a restart is what the segments flushed. So `upsert` and `delete` call
//! `EdgeShard::flush` (WAL msync plus a synchronous forced flush of all segments)
//! before returning; that is the only way a write is durable when the call returns.
//! `write` does not: a flush costs 10–20 ms however little changed, so a bulk run
//! writes groups and calls `sync` about once a second (see `pipeline/stages/commit.rs`).
//!
//! # WAL
//!
//! qdrant-edge 0.7.2 never truncates its WAL either, so left alone it grows by
//! every write ever made (about 2.7× the indexed data on a first index), on disk
//! and, since its segments stay mapped, in resident memory. The WAL is never
//! read back, so its closed segments are dead weight: opening a collection
//! deletes all but the newest (`prune_wal`), and `sync` reopens a collection
//! (`compact`) once more than [`EdgeTuning::compact_bytes`] could be pruned.
//! The newest closed segment stays because the WAL numbers operations from its
//! first segment, and points remember the number of their last write: a WAL
//! restarted at 0 would make the shard ignore later writes as stale.
//!
//! New collections keep vectors on disk (mmap) rather than qdrant-edge's
//! default copy in RAM, so a reopened shard does not load every vector.
//!
//! # Vacuum
//!
//! A deleted point keeps its vector slot in qdrant-edge's appendable segment
//! (and its entry in the id tracker) until the segment is rebuilt, and ragd
//! never lets qdrant-edge's optimizers run. So every file deleted or moved
//! left its vectors on disk for good: measured, moving a 2,000-file folder
//! four times grew the collection from 69 MB to 242 MB for the same 26,079
//! live points. `sync` therefore vacuums a shard once its dead slots are at
//! least as many as its live points (and at least
//! [`EdgeTuning::vacuum_min_dead`]): so the disk holds at most about twice the
//! live data, and each live point is copied once per as many deletions.
//!
//! ragd rebuilds the shard itself rather than calling `EdgeShard::optimize`:
//! qdrant-edge's optimizer renames the new segment into place before it
//! deletes the old one, and its `load` does not deduplicate, so a kill in
//! between would leave every point twice. The rebuild copies the live points
//! into a fresh shard in a scratch directory (holding the write gate, so
//! searches go on), then, with the catalog held for writing, closes the old
//! shard and swaps the two directories in one `renameat2(RENAME_EXCHANGE)`.
//! A crash at any point leaves the real name holding a complete shard, old
//! or new, and the scratch directory is removed as a leftover on open.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use qdrant_edge::{
    CountRequest, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeShard, EdgeVectorParamsBuilder,
    FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, NamedQuery, OperationError,
    Payload, PointId, PointInsertOperations, PointOperations, PointStructPersisted, QueryEnum,
    QueryRequest, Record, ScoringQuery, ScrollRequest, UpdateOperation, ValueVariants,
    VectorInternal, VectorStructInternal, VectorStructPersisted, WalOptions, WithPayloadInterface,
    WithVector,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use uuid::Uuid;

use super::{
    KEY_FIELDS, PointFilter, PointKey, PointPayload, SearchHit, StoreError, StoredPoint,
    VectorStore, WriteOp,
};

/// Points per page when scrolling a whole filter.
const SCROLL_PAGE: usize = 512;
/// Points per page when a vacuum copies a shard. Scroll order (by id) is
/// random against storage order, and each vector read faults in the kernel's
/// fault-around window of mapped pages, not one page: at 512 points a page
/// kept 15–40 MB resident until it was handed back; 64 keep a few MB.
const VACUUM_PAGE: usize = 64;

/// How long `delete_collection` waits for abandoned operations (a cancelled caller
/// whose blocking task still runs) to let go of a shard before deleting its files.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

const COLLECTIONS_DIR: &str = "collections";
/// How long opening the store waits for a collection's WAL lock: held, it is
/// most likely another ragd process's, which holds it for good.
const WAL_LOCK_WAIT_OPEN: Duration = Duration::from_secs(2);
/// How long reloading a collection this process just closed (a compaction, a
/// vacuum's swap, a create) waits for its WAL lock: then the only other
/// holder can be a child this process forked before it closed the shard, and
/// the child lets go at its exec. On a loaded 2-core machine that took over
/// 2 s (seen in CI), and giving up costs the whole run.
const WAL_LOCK_WAIT_RELOAD: Duration = Duration::from_secs(60);
/// qdrant-edge's WAL directory inside a shard.
const WAL_DIR: &str = "wal";
/// Prunable WAL bytes at which a `sync` compacts the shard. The WAL's mapped
/// segments count in the process's resident memory, and it never shrinks on
/// its own, so this bounds both memory and disk.
const WAL_COMPACT_BYTES: u64 = 64 << 20;
/// WAL segment size of new collections (qdrant-edge's default is 32 MiB): the
/// newest closed segment is kept, and opening a shard reads every kept segment
/// through its map (up to two: measured 28 MB resident at 16 MiB segments, 7 MB
/// at 4 MiB), so smaller segments keep less on disk and in memory. An entry
/// larger than a segment (a big write group) gets a segment of its own size.
const WAL_SEGMENT_BYTES: usize = 2 << 20;
const ALIASES_FILE: &str = "aliases.json";
/// Prefixes of scratch directories under `collections/`; never valid names, since
/// names may not start with a dot.
const CREATING_PREFIX: &str = ".creating-";
const DELETING_PREFIX: &str = ".deleting-";

/// Embedded Qdrant store rooted at one directory.
///
/// Every collection is loaded when the store opens; aliases live in
/// `aliases.json`, written atomically.
pub struct EdgeStore {
    root: PathBuf,
    catalog: RwLock<Catalog>,
    tuning: EdgeTuning,
}

/// How the store keeps a shard's files in bounds; see "WAL" and "Vacuum" in
/// the module docs. The defaults suit production; tests shrink them.
#[derive(Debug, Clone, Copy)]
pub struct EdgeTuning {
    /// Size of one WAL segment file of a new collection.
    pub segment_bytes: usize,
    /// Prunable WAL bytes at which a `sync` compacts the shard.
    pub compact_bytes: u64,
    /// Fewest dead vector slots at which a `sync` vacuums the shard (it also
    /// needs at least as many dead slots as live points).
    pub vacuum_min_dead: u64,
}

impl EdgeTuning {
    /// The WAL's sizes with the configured vacuum threshold
    /// (`[qdrant] vacuum_min_dead_points`; its default is config's, as
    /// `EdgeTuning::default()`).
    pub fn with_vacuum_min_dead(vacuum_min_dead: u64) -> Self {
        EdgeTuning {
            segment_bytes: WAL_SEGMENT_BYTES,
            compact_bytes: WAL_COMPACT_BYTES,
            vacuum_min_dead,
        }
    }
}

/// What exists: loaded shards by real name, and aliases.
struct Catalog {
    collections: HashMap<String, Arc<Collection>>,
    aliases: BTreeMap<String, String>,
}

impl Catalog {
    /// The real collection behind `name` (an alias or a collection name).
    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map(String::as_str).unwrap_or(name)
    }

    fn get(&self, name: &str) -> Result<Arc<Collection>, StoreError> {
        let real = self.resolve(name);
        self.collections
            .get(real)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchCollection(name.to_owned()))
    }
}

/// One loaded shard.
struct Collection {
    name: String,
    /// The shard's directory.
    path: PathBuf,
    /// `path` as the kernel names it in `/proc/self/maps` (canonical),
    /// resolved once at load for [`release_mapped_pages`].
    mapped_dir: PathBuf,
    dim: usize,
    shard: EdgeShard,
    /// Serialises update + flush on this shard; see the module docs.
    write_gate: Mutex<()>,
    /// Which load of a shard this is, unique in the process, and the update
    /// batches applied to it so far (under the gate): a vacuum that copied
    /// the shard at one `(generation, writes)` must not replace it at another.
    generation: u64,
    writes: AtomicU64,
    /// A vacuum failed; not tried again until the shard is reloaded, so a
    /// shard that cannot be copied is not copied every second.
    vacuum_failed: AtomicBool,
}

impl Collection {
    /// Apply updates in order; with `durable`, end with a flush (an msync and
    /// fsync of every segment file, which costs far more than an update).
    fn apply(&self, ops: Vec<UpdateOperation>, durable: bool) -> Result<(), StoreError> {
        // A poisoned gate only means an earlier writer panicked; the shard's own
        // state is guarded by its own locks, so carrying on is safe.
        let _gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut applied = Ok(());
        for op in ops {
            applied = self.shard.update(op).map_err(|e| backend(&self.name, e));
            if applied.is_err() {
                break;
            }
        }
        if durable {
            // Even after an error: what went into the segments must not stay
            // in memory only.
            self.flush_gated();
        } else {
            // The pages these updates dirtied stay dirty in the page cache and
            // are written by the next flush's msync/fsync all the same; only
            // their mapping into this process goes. Without this, a second of
            // writes between syncs (WAL, vectors, payloads) stayed resident:
            // about 30 MB at the benchmark's pace.
            release_mapped_pages(&self.mapped_dir);
        }
        applied
    }

    /// `(live points, vector slots)`; see [`vector_slots`].
    fn live_and_slots(&self) -> (u64, Option<u64>) {
        let live = self.shard.info().points_count as u64;
        (live, vector_slots(&self.path))
    }

    /// Make every update applied so far durable.
    fn flush(&self) {
        let _gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_gated();
    }

    /// Hand back the mapped pages a read touched (a scroll reads every
    /// payload or vector page it passes). The gate keeps writers, the only
    /// ones that remap, away meanwhile.
    fn release_read_pages(&self) {
        let _gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        release_mapped_pages(&self.mapped_dir);
    }

    /// Flush, then hand the shard's now clean mapped pages back to the page
    /// cache (see [`release_mapped_pages`]). The caller holds the write gate.
    fn flush_gated(&self) {
        self.shard.flush();
        release_mapped_pages(&self.mapped_dir);
    }
}

/// What one embedded collection takes on disk, read from its files without
/// opening it, so while another process (`ragd run`) holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Bytes allocated to the collection's files (as `du` counts them).
    pub bytes: u64,
    /// Vector slots, live and dead (see "Vacuum" in the module docs);
    /// `None` when the segment layout cannot be read.
    pub vector_slots: Option<u64>,
}

/// [`DiskUsage`] of `collection` (a collection or an alias) in the store at
/// `root`; `None` if it does not exist.
pub fn disk_usage(root: &Path, collection: &str) -> Option<DiskUsage> {
    let real = read_aliases(root)
        .ok()
        .and_then(|mut aliases| aliases.remove(collection))
        .unwrap_or_else(|| collection.to_owned());
    let dir = root.join(COLLECTIONS_DIR).join(real);
    if !dir.is_dir() {
        return None;
    }
    Some(DiskUsage {
        bytes: allocated_bytes(&dir),
        vector_slots: vector_slots(&dir),
    })
}

/// Bytes allocated to the files under `dir`.
fn allocated_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => allocated_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt as _;
                    m.blocks() * 512
                }
                #[cfg(not(unix))]
                {
                    m.len()
                }
            }),
            Err(_) => 0,
        })
        .sum()
}

/// Source of [`Collection::generation`].
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A copy of a shard's live points, made by [`Collection::copy_live`].
struct LiveCopy {
    /// The closed, flushed copy: a complete shard.
    scratch: PathBuf,
    /// The source's generation and write count when copied.
    generation: u64,
    writes: u64,
    points: u64,
}

impl Collection {
    /// Copy every live point (id, vector, payload) into a new shard in a
    /// scratch directory under `dir`, holding the write gate throughout so
    /// the copy is of one state; readers carry on meanwhile. Blocking.
    fn copy_live(&self, dir: &Path, segment_bytes: usize) -> Result<LiveCopy, StoreError> {
        let _gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        let writes = self.writes.load(Ordering::Relaxed);
        let scratch = dir.join(format!("{CREATING_PREFIX}{}-{}", self.name, Uuid::new_v4()));
        fs::create_dir(&scratch).map_err(|e| io_error(&scratch, e))?;
        let copied = (|| {
            let shard = EdgeShard::new(&scratch, edge_config(self.dim, segment_bytes))
                .map_err(|e| backend(&self.name, e))?;
            let scratch_mapped = fs::canonicalize(&scratch).unwrap_or_else(|_| scratch.clone());
            let mut points = 0u64;
            let all = WithPayloadInterface::Bool(true);
            for_each_page(self, None, all, true, VACUUM_PAGE, |records| {
                let page = records
                    .into_iter()
                    .map(|r| {
                        let vector = r.vector.ok_or_else(|| StoreError::BadPayload {
                            id: format!("{:?}", r.id),
                            detail: "stored point has no vector".to_owned(),
                        })?;
                        Ok(PointStructPersisted {
                            id: r.id,
                            vector: VectorStructPersisted::from(vector),
                            payload: r.payload,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                points += page.len() as u64;
                if !page.is_empty() {
                    let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                        PointInsertOperations::PointsList(page),
                    ));
                    shard.update(op).map_err(|e| backend(&self.name, e))?;
                }
                // Both shards' pages go back to the page cache as we pass
                // (the gate is held): the copy reads and writes every vector
                // once.
                release_mapped_pages(&self.mapped_dir);
                release_mapped_pages(&scratch_mapped);
                Ok(())
            })?;
            let copied = shard.info().points_count as u64;
            if copied != points {
                return Err(StoreError::Backend(format!(
                    "collection {:?}: vacuum copied {points} points but the copy holds {copied}",
                    self.name
                )));
            }
            drop(shard); // flushes and closes
            sync_dir(&scratch)?;
            Ok(points)
        })();
        match copied {
            Ok(points) => Ok(LiveCopy {
                scratch,
                generation: self.generation,
                writes,
                points,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&scratch);
                Err(e)
            }
        }
    }
}

/// Replace `current` (taken out of the catalog) by its live copy: close it,
/// swap the directories atomically, load the copy. Returns the collection to
/// put back in the catalog (the copy, or `current` if nothing was swapped)
/// and the points now live if the swap happened. Blocking.
fn swap_in(
    current: Arc<Collection>,
    copy: LiveCopy,
) -> (Option<Arc<Collection>>, Result<Option<u64>, StoreError>) {
    let current = match sole_owner(current, Duration::from_secs(1)) {
        Ok(c) => c,
        Err(shared) => {
            let removed = remove_scratch(&copy.scratch).map(|()| None);
            return (Some(shared), removed);
        }
    };
    if current.generation != copy.generation
        || current.writes.load(Ordering::Relaxed) != copy.writes
    {
        let removed = remove_scratch(&copy.scratch).map(|()| None);
        return (Some(Arc::new(current)), removed);
    }
    let name = current.name.clone();
    let path = current.path.clone();
    drop(current); // flushes and releases the WAL lock
    let swapped =
        exchange_dirs(&copy.scratch, &path).and_then(|()| path.parent().map_or(Ok(()), sync_dir));
    if let Err(e) = swapped {
        // Nothing moved: the old shard is still at `path`.
        let _ = fs::remove_dir_all(&copy.scratch);
        return match load_collection(&name, &path, WAL_LOCK_WAIT_RELOAD) {
            Ok(old) => (Some(Arc::new(old)), Err(e)),
            Err(load) => (None, Err(load)),
        };
    }
    // `scratch` now holds the old shard.
    crate::failpoint::hit("vacuum.after_exchange");
    release_freed_heap();
    match load_collection(&name, &path, WAL_LOCK_WAIT_RELOAD) {
        Ok(new) => {
            let removed = remove_scratch(&copy.scratch);
            (Some(Arc::new(new)), removed.map(|()| Some(copy.points)))
        }
        Err(e) => {
            // Put the old shard back under the real name and carry on with it.
            let back = exchange_dirs(&copy.scratch, &path)
                .and_then(|()| load_collection(&name, &path, WAL_LOCK_WAIT_RELOAD));
            let _ = fs::remove_dir_all(&copy.scratch);
            match back {
                Ok(old) => (Some(Arc::new(old)), Err(e)),
                Err(_) => (None, Err(e)),
            }
        }
    }
}

/// Hand glibc's free heap pages back to the system: called after a closed
/// shard's in-RAM structures (id maps, caches) were freed, so they do not stay
/// resident.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn remove_scratch(scratch: &Path) -> Result<(), StoreError> {
    fs::remove_dir_all(scratch).map_err(|e| io_error(scratch, e))
}

/// Swap two directories in one step (`renameat2` with `RENAME_EXCHANGE`), so
/// a crash sees either both old names or both new ones.
fn exchange_dirs(a: &Path, b: &Path) -> Result<(), StoreError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|e| StoreError::Backend(format!("{}: {e}", p.display())))
        };
        let (ca, cb) = (c(a)?, c(b)?);
        // SAFETY: both are valid NUL-terminated paths that live across the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io_error(b, std::io::Error::last_os_error()))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(StoreError::Backend(
            "vacuum needs an atomic directory exchange (Linux renameat2)".to_owned(),
        ))
    }
}

/// Vector slots in a shard's segments, live or dead: qdrant-edge 0.7.2's
/// chunked vector storage counts every slot it ever handed out in
/// `segments/*/vector_storage*/vectors/status.dat` (`Status { len: usize }`,
/// little-endian), and a deleted point's slot stays until the segment is
/// rebuilt. `None` when any segment's count cannot be read, so a layout ragd
/// does not know never triggers a vacuum.
fn vector_slots(shard_dir: &Path) -> Option<u64> {
    let mut slots = 0u64;
    for segment in fs::read_dir(shard_dir.join("segments")).ok()?.flatten() {
        if !segment.path().is_dir() || segment.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let mut found = false;
        for storage in fs::read_dir(segment.path()).ok()?.flatten() {
            if !storage
                .file_name()
                .to_string_lossy()
                .starts_with("vector_storage")
            {
                continue;
            }
            let status = fs::read(storage.path().join("vectors").join("status.dat")).ok()?;
            let len: [u8; 8] = status.get(..8)?.try_into().ok()?;
            slots += u64::from_le_bytes(len);
            found = true;
        }
        if !found {
            return None;
        }
    }
    Some(slots)
}

/// The aliases in `<root>/aliases.json` (none if there is no file).
fn read_aliases(root: &Path) -> Result<BTreeMap<String, String>, StoreError> {
    let path = root.join(ALIASES_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let file: AliasFile = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
            if file.version != ALIAS_FILE_VERSION {
                return Err(StoreError::Backend(format!(
                    "{}: unknown version {}",
                    path.display(),
                    file.version
                )));
            }
            Ok(file.aliases)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(io_error(&path, e)),
    }
}

/// `aliases.json`, versioned so a later format can be told apart.
#[derive(Debug, Serialize, Deserialize)]
struct AliasFile {
    version: u32,
    aliases: BTreeMap<String, String>,
}

const ALIAS_FILE_VERSION: u32 = 1;

impl EdgeStore {
    /// Open (creating if needed) the store under `root` and load every collection.
    ///
    /// Blocks on disk IO; call it before the runtime gets busy or inside
    /// `spawn_blocking`. Leftovers of an interrupted create or delete are removed.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_tuned(root, EdgeTuning::default())
    }

    /// [`EdgeStore::open`] with other WAL bounds.
    pub fn open_tuned(root: &Path, tuning: EdgeTuning) -> Result<Self, StoreError> {
        let collections_dir = root.join(COLLECTIONS_DIR);
        fs::create_dir_all(&collections_dir).map_err(|e| io_error(&collections_dir, e))?;

        let mut collections = HashMap::new();
        for entry in fs::read_dir(&collections_dir).map_err(|e| io_error(&collections_dir, e))? {
            let entry = entry.map_err(|e| io_error(&collections_dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with(CREATING_PREFIX) || name.starts_with(DELETING_PREFIX) {
                // A create that did not reach its rename, or a delete that did not
                // finish removing: neither is a collection.
                fs::remove_dir_all(&path).map_err(|e| io_error(&path, e))?;
                continue;
            }
            if !path.is_dir() || validate_name(&name).is_err() {
                continue;
            }
            let collection = load_collection(&name, &path, WAL_LOCK_WAIT_OPEN)?;
            collections.insert(name, Arc::new(collection));
        }

        let mut aliases = read_aliases(root)?;
        // An alias whose collection is gone (deleted by hand) resolves to nothing;
        // dropping it here keeps `resolve_alias` honest.
        aliases.retain(|_, target| collections.contains_key(target));

        Ok(EdgeStore {
            root: root.to_owned(),
            catalog: RwLock::new(Catalog {
                collections,
                aliases,
            }),
            tuning,
        })
    }

    /// Close `collection`, drop its stale WAL segments and load it again; see
    /// "WAL" in the module docs. Holds the catalog for writing meanwhile, so no
    /// operation runs on the shard.
    /// Apply `ops` to `collection`'s shard; with `durable`, flush after them.
    async fn apply(
        &self,
        collection: &str,
        ops: Vec<WriteOp>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let catalog = self.catalog.read().await;
        let target = catalog.get(collection)?;
        let mut updates = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Upsert(points) if points.is_empty() => {}
                WriteOp::Upsert(points) => {
                    for point in &points {
                        check_dim(&target.name, target.dim, point.vector.len())?;
                    }
                    updates.push(upsert_op(points)?);
                }
                WriteOp::Delete(filter) => updates.push(delete_op(&filter)),
                WriteOp::DeletePoints(ids) if ids.is_empty() => {}
                WriteOp::DeletePoints(ids) => updates.push(delete_points_op(ids)),
            }
        }
        if updates.is_empty() {
            return Ok(());
        }
        blocking(move || target.apply(updates, durable)).await
    }

    async fn compact(&self, collection: &str) -> Result<(), StoreError> {
        let mut catalog = self.catalog.write().await;
        let real = catalog.resolve(collection).to_owned();
        let Some(current) = catalog.collections.remove(&real) else {
            return Ok(());
        };
        let name = real.clone();
        let reopened = blocking(move || {
            // If an abandoned task still holds the shard, skip this compaction.
            let collection = match sole_owner(current, Duration::from_secs(1)) {
                Ok(c) => c,
                Err(shared) => return Ok(shared),
            };
            let path = collection.path.clone();
            drop(collection); // flushes and releases the WAL lock
            release_freed_heap();
            load_collection(&name, &path, WAL_LOCK_WAIT_RELOAD).map(Arc::new)
        })
        .await?;
        catalog.collections.insert(real, reopened);
        Ok(())
    }

    /// Rebuild `collection`'s shard with its live points only; see "Vacuum"
    /// in the module docs. `Ok(false)` if it was left as it was (written to
    /// meanwhile, or still held by an abandoned task): a later sync tries
    /// again.
    async fn vacuum(&self, collection: &str, dead: u64) -> Result<bool, StoreError> {
        let started = Instant::now();
        let target = self.catalog.read().await.get(collection)?;
        let dir = self.collections_dir();
        let segment_bytes = self.tuning.segment_bytes;
        let copy = blocking(move || target.copy_live(&dir, segment_bytes)).await?;
        crate::failpoint::hit("vacuum.after_copy");

        let mut catalog = self.catalog.write().await;
        let real = catalog.resolve(collection).to_owned();
        let Some(current) = catalog.collections.remove(&real) else {
            drop(catalog);
            blocking(move || remove_scratch(&copy.scratch)).await?;
            return Ok(false);
        };
        let (collection_now, swapped) = blocking(move || Ok(swap_in(current, copy))).await?;
        if let Some(c) = collection_now {
            catalog.collections.insert(real.clone(), c);
        }
        let live = swapped?;
        if let Some(live) = live {
            crate::telemetry::events::vacuumed(collection, dead, live, started.elapsed());
        }
        Ok(live.is_some())
    }

    /// `(live points, vector slots)` of `collection`: slots include the dead
    /// ones a vacuum would drop (see "Vacuum"); `None` for slots when the
    /// segment layout cannot be read.
    pub async fn slots(&self, collection: &str) -> Result<(u64, Option<u64>), StoreError> {
        let target = self.catalog.read().await.get(collection)?;
        blocking(move || Ok(target.live_and_slots())).await
    }

    fn collections_dir(&self) -> PathBuf {
        self.root.join(COLLECTIONS_DIR)
    }

    /// Persist `aliases`, then let the caller install them in memory: the file
    /// never lags behind what readers saw.
    async fn save_aliases(&self, aliases: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let path = self.root.join(ALIASES_FILE);
        let bytes = serde_json::to_vec_pretty(&AliasFile {
            version: ALIAS_FILE_VERSION,
            aliases: aliases.clone(),
        })
        .map_err(|e| StoreError::Backend(format!("encoding aliases: {e}")))?;
        blocking(move || write_atomically(&path, &bytes)).await
    }
}

#[async_trait]
impl VectorStore for EdgeStore {
    fn backend(&self) -> &'static str {
        "edge"
    }

    async fn ensure_collection(&self, collection: &str, dim: usize) -> Result<(), StoreError> {
        validate_name(collection)?;
        if dim == 0 {
            return Err(StoreError::Backend(format!(
                "collection {collection:?}: vector dimension must be positive"
            )));
        }
        let mut catalog = self.catalog.write().await;
        let real = catalog.resolve(collection).to_owned();
        if let Some(existing) = catalog.collections.get(&real) {
            return check_dim(&real, existing.dim, dim);
        }

        let dir = self.collections_dir();
        let name = real.clone();
        let segment_bytes = self.tuning.segment_bytes;
        let created = blocking(move || create_collection(&dir, &name, dim, segment_bytes)).await?;
        catalog.collections.insert(real, Arc::new(created));
        Ok(())
    }

    async fn collection_dim(&self, collection: &str) -> Result<Option<usize>, StoreError> {
        let catalog = self.catalog.read().await;
        let real = catalog.resolve(collection);
        Ok(catalog.collections.get(real).map(|c| c.dim))
    }

    async fn upsert(&self, collection: &str, points: Vec<StoredPoint>) -> Result<(), StoreError> {
        self.apply(collection, vec![WriteOp::Upsert(points)], true)
            .await
    }

    async fn delete(&self, collection: &str, filter: &PointFilter) -> Result<(), StoreError> {
        self.apply(collection, vec![WriteOp::Delete(filter.clone())], true)
            .await
    }

    async fn delete_points(&self, collection: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
        self.apply(collection, vec![WriteOp::DeletePoints(ids)], true)
            .await
    }

    async fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let catalog = self.catalog.read().await;
        let target = catalog.get(collection)?;
        let ids: Vec<PointId> = ids.iter().copied().map(PointId::Uuid).collect();
        blocking(move || {
            let records = target
                .shard
                .retrieve(
                    &ids,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(with_vectors)),
                )
                .map_err(|e| backend(&target.name, e))?;
            // Each record read faults in the kernel's fault-around window of
            // vector and payload pages, not one page; callers that gather
            // many files' points before writing (a batch of moves or deletes)
            // kept tens of MB resident until their write released them.
            target.release_read_pages();
            records
                .into_iter()
                .map(|record| from_edge_record(record, with_vectors))
                .collect()
        })
        .await
    }

    async fn write(&self, collection: &str, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.apply(collection, ops, false).await
    }

    async fn sync(&self, collection: &str) -> Result<(), StoreError> {
        let (stale_wal, dead, live, vacuum_failed) = {
            let catalog = self.catalog.read().await;
            let target = catalog.get(collection)?;
            blocking(move || {
                target.flush();
                let (live, slots) = target.live_and_slots();
                let dead = slots.map_or(0, |s| s.saturating_sub(live));
                let stale = prunable_wal_bytes(&target.path.join(WAL_DIR));
                Ok((
                    stale,
                    dead,
                    live,
                    target.vacuum_failed.load(Ordering::Relaxed),
                ))
            })
            .await?
        };
        if dead > 0 && dead >= self.tuning.vacuum_min_dead && dead >= live && !vacuum_failed {
            // A rebuilt shard starts a fresh WAL too, so no compaction after.
            match self.vacuum(collection, dead).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    // The old shard is intact; a vacuum is housekeeping, so the
                    // sync (whose writes are durable) still succeeds.
                    crate::telemetry::events::vacuum_failed(collection, &e);
                    if let Ok(target) = self.catalog.read().await.get(collection) {
                        target.vacuum_failed.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        if stale_wal > self.tuning.compact_bytes {
            self.compact(collection).await?;
        }
        Ok(())
    }

    async fn count(&self, collection: &str, filter: &PointFilter) -> Result<u64, StoreError> {
        let catalog = self.catalog.read().await;
        let target = catalog.get(collection)?;
        let request = CountRequest {
            filter: to_edge_filter(filter),
            exact: true,
        };
        blocking(move || {
            target
                .shard
                .count(request)
                .map(|n| n as u64)
                .map_err(|e| backend(&target.name, e))
        })
        .await
    }

    async fn scroll(
        &self,
        collection: &str,
        filter: &PointFilter,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        let catalog = self.catalog.read().await;
        let target = catalog.get(collection)?;
        let filter = to_edge_filter(filter);
        blocking(move || {
            scroll_records(
                &target,
                filter,
                WithPayloadInterface::Bool(true),
                with_vectors,
                |record| from_edge_record(record, with_vectors),
            )
        })
        .await
    }

    async fn scroll_keys(
        &self,
        collection: &str,
        filter: &PointFilter,
    ) -> Result<Vec<PointKey>, StoreError> {
        let catalog = self.catalog.read().await;
        let target = catalog.get(collection)?;
        let filter = to_edge_filter(filter);
        let fields = KEY_FIELDS.iter().map(|f| json_path(f)).collect();
        blocking(move || {
            scroll_records(
                &target,
                filter,
                WithPayloadInterface::Fields(fields),
                false,
                |record| {
                    let id = from_edge_id(record.id)?;
                    let map = record.payload.map(|p| p.0).unwrap_or_default();
                    PointKey::from_json(id, serde_json::Value::Object(map))
                },
            )
        })
        .await
    }

    async fn search(
        &self,
        collection: &str,
        vector: Vec<f32>,
        limit: usize,
        filter: Option<&PointFilter>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let catalog = self.catalog.read().await;
        let target = catalog.get(collection)?;
        check_dim(&target.name, target.dim, vector.len())?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(
                NamedQuery::default_dense(vector),
            ))),
            filter: filter.and_then(to_edge_filter),
            score_threshold: None,
            limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        blocking(move || {
            let scored = target
                .shard
                .query(request)
                .map_err(|e| backend(&target.name, e))?;
            scored
                .into_iter()
                .map(|p| {
                    Ok(SearchHit {
                        id: from_edge_id(p.id)?,
                        score: p.score,
                        payload: from_edge_payload(p.id, p.payload)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        let catalog = self.catalog.read().await;
        let mut names: Vec<String> = catalog.collections.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError> {
        let mut catalog = self.catalog.write().await;
        let real = catalog.resolve(collection).to_owned();
        let Some(removed) = catalog.collections.remove(&real) else {
            return Ok(false);
        };

        // Like a Qdrant server, deleting a collection deletes the aliases that
        // point at it. Persist that first: if it fails, nothing has changed.
        let mut aliases = catalog.aliases.clone();
        aliases.retain(|_, target| *target != real);
        if aliases != catalog.aliases {
            if let Err(e) = self.save_aliases(&aliases).await {
                catalog.collections.insert(real, removed);
                return Err(e);
            }
            catalog.aliases = aliases;
        }

        let dir = self.collections_dir();
        blocking(move || {
            // Drop the shard (which flushes it) before its files go away.
            match sole_owner(removed, RELEASE_TIMEOUT) {
                Ok(collection) => drop(collection),
                Err(_) => {
                    return Err(StoreError::Backend(format!(
                        "collection {real:?} is still in use; not deleting its files"
                    )));
                }
            }
            // Rename first so a crash mid-removal leaves a `.deleting-` leftover
            // that `open` cleans up, never a half-deleted collection.
            let from = dir.join(&real);
            let to = dir.join(format!("{DELETING_PREFIX}{real}-{}", Uuid::new_v4()));
            fs::rename(&from, &to).map_err(|e| io_error(&from, e))?;
            sync_dir(&dir)?;
            fs::remove_dir_all(&to).map_err(|e| io_error(&to, e))
        })
        .await?;
        Ok(true)
    }

    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), StoreError> {
        validate_name(alias)?;
        validate_name(collection)?;
        let mut catalog = self.catalog.write().await;
        if !catalog.collections.contains_key(collection) {
            return Err(StoreError::NoSuchCollection(collection.to_owned()));
        }
        if catalog.collections.contains_key(alias) {
            return Err(StoreError::Backend(format!(
                "cannot make {alias:?} an alias: a collection has that name"
            )));
        }
        if catalog.aliases.get(alias).map(String::as_str) == Some(collection) {
            return Ok(());
        }
        let mut aliases = catalog.aliases.clone();
        aliases.insert(alias.to_owned(), collection.to_owned());
        self.save_aliases(&aliases).await?;
        catalog.aliases = aliases;
        Ok(())
    }

    async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        Ok(self.catalog.read().await.aliases.get(alias).cloned())
    }

    /// Nothing to do here by design: only ragd reads an embedded store (Open
    /// WebUI's external knowledge needs a server, and `validate` refuses it on
    /// the embedded store), and ragd never reads the citation field back. Older
    /// points gain it as their files are rewritten, or all at once by `ragd
    /// reindex`; a pass over every payload (no payload index here) on each
    /// upgrade would cost more than it gives.
    async fn add_citations(&self, collection: &str) -> Result<u64, StoreError> {
        let _ = collection;
        Ok(0)
    }
}

/// A collection or alias name must be one directory name: it becomes a path.
fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::Backend(format!(
            "invalid collection name {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name.contains("..") {
        return bad("contains \"..\"");
    }
    if name.starts_with('.') {
        return bad("starts with a dot");
    }
    if name
        .chars()
        .any(|c| matches!(c, '/' | '\\' | ':' | '\0') || c.is_control())
    {
        return bad("contains a path separator or control character");
    }
    Ok(())
}

fn check_dim(collection: &str, existing: usize, requested: usize) -> Result<(), StoreError> {
    if existing == requested {
        Ok(())
    } else {
        Err(StoreError::DimensionMismatch {
            collection: collection.to_owned(),
            existing,
            requested,
        })
    }
}

fn edge_config(dim: usize, wal_segment_bytes: usize) -> EdgeConfig {
    EdgeConfig::builder()
        .wal_options(WalOptions {
            segment_capacity: wal_segment_bytes,
            ..WalOptions::default()
        })
        .vector(
            DEFAULT_VECTOR_NAME,
            // On disk (mmap'd, paged in on use) rather than qdrant-edge's
            // default of a copy in RAM: ragd indexes far more than it searches,
            // and a RAM copy would make its memory grow with the corpus.
            EdgeVectorParamsBuilder::new(dim, Distance::Cosine)
                .on_disk(true)
                .build(),
        )
        .build()
}

/// Create `<dir>/<name>` atomically: the shard is built in a scratch directory,
/// closed (which flushes it) and renamed into place, so a crash never leaves a
/// half-made collection under the real name.
///
/// No payload index: an appendable segment keeps a keyword index wholly in RAM
/// (measured: about 150 bytes per point for `pipeline` alone), which grew
/// ragd's memory with the collection. ragd finds a file's points by their
/// deterministic ids instead (`pipeline::points`); the filters that remain
/// (`ragd search` by pipeline, reconcile, `ragd why`) scan payloads.
fn create_collection(
    dir: &Path,
    name: &str,
    dim: usize,
    wal_segment_bytes: usize,
) -> Result<Collection, StoreError> {
    let scratch = dir.join(format!("{CREATING_PREFIX}{name}-{}", Uuid::new_v4()));
    let built = (|| {
        fs::create_dir(&scratch).map_err(|e| io_error(&scratch, e))?;
        let shard = EdgeShard::new(&scratch, edge_config(dim, wal_segment_bytes))
            .map_err(|e| backend(name, e))?;
        drop(shard); // flushes
        Ok(())
    })();
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&scratch);
        return Err(e);
    }

    let path = dir.join(name);
    fs::rename(&scratch, &path).map_err(|e| io_error(&path, e))?;
    sync_dir(dir)?;
    load_collection(name, &path, WAL_LOCK_WAIT_RELOAD)
}

fn load_collection(name: &str, path: &Path, lock_wait: Duration) -> Result<Collection, StoreError> {
    prune_wal(path)?;
    // qdrant-edge takes an flock on the WAL directory and fails with "Can't
    // init WAL: WouldBlock" while anyone holds it. Another store (another ragd
    // process) holds it for good; but a child process forked at the moment the
    // previous holder (a closed shard, or the scratch shard of a create) had it
    // open holds a copy of the lock until its exec, normally milliseconds. ragd
    // forks extraction workers at any time, so wait that out (`lock_wait`)
    // before giving up.
    let deadline = Instant::now() + lock_wait;
    let shard = loop {
        match EdgeShard::load(path, None) {
            Ok(shard) => break shard,
            Err(e) if e.to_string().contains("WouldBlock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(StoreError::Backend(format!(
                    "loading collection {name:?} from {} (is another process using it?): {e}",
                    path.display()
                )));
            }
        }
    };
    let dim = shard
        .config()
        .vectors
        .get(DEFAULT_VECTOR_NAME)
        .map(|v| v.size)
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "collection {name:?} at {} has no default dense vector",
                path.display()
            ))
        })?;
    drop_payload_indexes(name, &shard)?;
    // Loading read the id mappings and payloads through their maps; nothing
    // else holds this shard yet.
    let mapped_dir = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    release_mapped_pages(&mapped_dir);
    Ok(Collection {
        name: name.to_owned(),
        path: path.to_owned(),
        mapped_dir,
        dim,
        shard,
        write_gate: Mutex::new(()),
        generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        writes: AtomicU64::new(0),
        vacuum_failed: AtomicBool::new(false),
    })
}

/// Collections made by earlier ragd versions carry keyword indexes on
/// `pipeline` and `path`. They are RAM only (see [`create_collection`]) and
/// nothing needs them any more, so they go; the drop is an update like any
/// other, made durable at once.
fn drop_payload_indexes(name: &str, shard: &EdgeShard) -> Result<(), StoreError> {
    let fields: Vec<JsonPath> = shard.info().payload_schema.into_keys().collect();
    if fields.is_empty() {
        return Ok(());
    }
    for field in fields {
        tracing::info!(collection = %name, field = %field, "dropping payload index");
        let op = UpdateOperation::FieldIndexOperation(FieldIndexOperations::DeleteIndex(field));
        shard.update(op).map_err(|e| backend(name, e))?;
    }
    shard.flush();
    Ok(())
}

/// The collection itself once `shared` is its only reference, or `shared` back
/// after `timeout`. Blocking. Called with the catalog held for writing, when
/// only an abandoned blocking task (a cancelled caller's) can still hold a
/// clone; this gives it time to finish.
fn sole_owner(
    mut shared: Arc<Collection>,
    timeout: Duration,
) -> Result<Collection, Arc<Collection>> {
    let deadline = Instant::now() + timeout;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(collection) => return Ok(collection),
            Err(still) if Instant::now() < deadline => {
                shared = still;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(still) => return Err(still),
        }
    }
}

/// The closed WAL segments of a shard, oldest first: `closed-<first index>`.
fn closed_wal_segments(wal_dir: &Path) -> Vec<(u64, PathBuf, u64)> {
    let mut closed: Vec<(u64, PathBuf, u64)> = fs::read_dir(wal_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let start = name.to_str()?.strip_prefix("closed-")?.parse().ok()?;
            let len = entry.metadata().ok()?.len();
            Some((start, entry.path(), len))
        })
        .collect();
    closed.sort();
    closed
}

/// Bytes that [`prune_wal`] would free: every closed segment but the newest.
fn prunable_wal_bytes(wal_dir: &Path) -> u64 {
    let closed = closed_wal_segments(wal_dir);
    closed.iter().rev().skip(1).map(|(_, _, len)| len).sum()
}

/// Delete every closed WAL segment of a closed shard but the newest.
///
/// qdrant-edge never replays or truncates its WAL, so its closed segments are
/// dead weight. The newest one stays because the WAL numbers its entries from
/// the first segment's start index, and the segments' point versions are
/// those numbers: a WAL restarted at 0 would make the shard ignore updates as
/// older than what it holds. Oldest first, so a crash midway leaves a
/// contiguous suffix, which the WAL accepts.
fn prune_wal(shard_dir: &Path) -> Result<(), StoreError> {
    let closed = closed_wal_segments(&shard_dir.join(WAL_DIR));
    let Some((_, older)) = closed.split_last() else {
        return Ok(());
    };
    for (_, path, _) in older {
        fs::remove_file(path).map_err(|e| io_error(path, e))?;
    }
    Ok(())
}

/// Unmap, from this process, the resident pages of every shared file mapping
/// under `dir` (a shard's segments and WAL, canonical path), so they stop
/// counting as ragd's resident memory.
///
/// qdrant-edge writes vectors, payloads and its WAL through `MAP_SHARED`
/// mappings, and every page it ever touched stays mapped in ragd, so resident
/// memory would grow with the corpus although ragd reads those pages back only
/// to search. Called after every update (under the write gate) and every
/// flush: `MADV_DONTNEED` on a shared file mapping drops only this process's
/// page-table entries; a dirty page is marked dirty in the page cache, never
/// lost, and the next flush writes it (msync of a shared mapping syncs the
/// file range, mapped or not); the next access faults a page back in from the
/// cache. Private mappings are left alone: there it would discard data.
/// Best effort: any failure leaves the pages mapped, which is merely bigger.
fn release_mapped_pages(dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for (start, len) in shared_mappings_under(&maps, dir) {
            // SAFETY: the range is a whole shared file mapping of this process
            // (from /proc/self/maps; the caller holds the shard's write gate
            // or the only handle to it, and only writes map or unmap its
            // files, so the range cannot be replaced meanwhile). MADV_DONTNEED
            // on MAP_SHARED file memory only drops page-table entries; contents
            // stay in the file and the page cache, and later accesses fault
            // them back in.
            unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
}

/// `(start, length)` of each shared (`s`) mapping in a `/proc/self/maps` text
/// whose file lies under `dir`.
fn shared_mappings_under(maps: &str, dir: &Path) -> Vec<(usize, usize)> {
    let Some(dir) = dir.to_str() else {
        return Vec::new();
    };
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    maps.lines()
        .filter_map(|line| {
            // address perms offset dev inode pathname
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?.trim_start();
            if !perms.ends_with('s') || !path.starts_with(&prefix) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then(|| (start, end - start))
        })
        .collect()
}

/// Every record of `target` matching `filter`, a page at a time, each mapped
/// by `map`. Blocking. The mapped pages a page read are handed back before the
/// next, so a scroll of the whole collection does not keep every payload page
/// it passed resident.
fn scroll_records<T>(
    target: &Collection,
    filter: Option<Filter>,
    with_payload: WithPayloadInterface,
    with_vectors: bool,
    mut map: impl FnMut(Record) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for_each_page(
        target,
        filter,
        with_payload,
        with_vectors,
        SCROLL_PAGE,
        |records| {
            for record in records {
                out.push(map(record)?);
            }
            target.release_read_pages();
            Ok(())
        },
    )?;
    Ok(out)
}

/// Scroll every record of `target` matching `filter`, `page` at a time,
/// handing each page to `each`. Blocking.
fn for_each_page(
    target: &Collection,
    filter: Option<Filter>,
    with_payload: WithPayloadInterface,
    with_vectors: bool,
    page: usize,
    mut each: impl FnMut(Vec<Record>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut offset = None;
    loop {
        let request = ScrollRequest {
            offset,
            limit: Some(page),
            filter: filter.clone(),
            with_payload: Some(with_payload.clone()),
            with_vector: WithVector::Bool(with_vectors),
            order_by: None,
        };
        let (records, next) = target
            .shard
            .scroll(request)
            .map_err(|e| backend(&target.name, e))?;
        each(records)?;
        match next {
            Some(next) => offset = Some(next),
            None => return Ok(()),
        }
    }
}

fn upsert_op(points: Vec<StoredPoint>) -> Result<UpdateOperation, StoreError> {
    let points = points
        .into_iter()
        .map(to_edge_point)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UpdateOperation::PointOperation(
        PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
    ))
}

fn delete_points_op(ids: Vec<Uuid>) -> UpdateOperation {
    UpdateOperation::PointOperation(PointOperations::DeletePoints {
        ids: ids.into_iter().map(PointId::Uuid).collect(),
    })
}

fn delete_op(filter: &PointFilter) -> UpdateOperation {
    // An empty `PointFilter` matches every point, as documented on the trait.
    let filter = to_edge_filter(filter).unwrap_or_default();
    UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter))
}

fn json_path(field: &str) -> JsonPath {
    JsonPath {
        first_key: field.to_owned(),
        rest: Vec::new(),
    }
}

fn keyword(field: &str, value: &str) -> qdrant_edge::Condition {
    qdrant_edge::Condition::Field(FieldCondition::new_match(
        json_path(field),
        Match::new_value(ValueVariants::String(value.to_owned())),
    ))
}

/// `None` when the filter has no conditions (matches everything).
fn to_edge_filter(filter: &PointFilter) -> Option<Filter> {
    let (must, must_not) = filter.keyword_conditions();
    let must: Vec<_> = must.into_iter().map(|(f, v)| keyword(f, v)).collect();
    let must_not: Vec<_> = must_not.into_iter().map(|(f, v)| keyword(f, v)).collect();
    if must.is_empty() && must_not.is_empty() {
        return None;
    }
    Some(Filter {
        should: None,
        min_should: None,
        must: (!must.is_empty()).then_some(must),
        must_not: (!must_not.is_empty()).then_some(must_not),
    })
}

fn to_edge_point(point: StoredPoint) -> Result<PointStructPersisted, StoreError> {
    let payload = Payload(point.payload.to_json_object(point.id)?);
    Ok(PointStructPersisted {
        id: PointId::Uuid(point.id),
        vector: VectorStructPersisted::from(VectorStructInternal::Single(point.vector)),
        payload: Some(payload),
    })
}

fn from_edge_record(record: Record, with_vectors: bool) -> Result<StoredPoint, StoreError> {
    Ok(StoredPoint {
        id: from_edge_id(record.id)?,
        vector: match record.vector {
            Some(v) if with_vectors => from_edge_vector(record.id, v)?,
            _ => Vec::new(),
        },
        payload: from_edge_payload(record.id, record.payload)?,
    })
}

fn from_edge_id(id: PointId) -> Result<Uuid, StoreError> {
    match id {
        PointId::Uuid(uuid) => Ok(uuid),
        PointId::NumId(n) => Err(StoreError::BadPayload {
            id: n.to_string(),
            detail: "numeric point id; ragd writes only UUIDs".to_owned(),
        }),
    }
}

fn from_edge_payload(id: PointId, payload: Option<Payload>) -> Result<PointPayload, StoreError> {
    let map = payload.map(|p| p.0).unwrap_or_default();
    PointPayload::from_json(id, serde_json::Value::Object(map))
}

fn from_edge_vector(id: PointId, vector: VectorStructInternal) -> Result<Vec<f32>, StoreError> {
    let dense = match vector {
        VectorStructInternal::Single(v) => Some(v),
        VectorStructInternal::Named(mut named) => match named.remove(DEFAULT_VECTOR_NAME) {
            Some(VectorInternal::Dense(v)) => Some(v),
            _ => None,
        },
        VectorStructInternal::MultiDense(_) => None,
    };
    dense.ok_or_else(|| StoreError::BadPayload {
        id: id.to_string(),
        detail: "stored vector is not a single dense vector".to_owned(),
    })
}

fn backend(collection: &str, err: OperationError) -> StoreError {
    StoreError::Backend(format!("collection {collection:?}: {err}"))
}

fn io_error(path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {err}", path.display()))
}

/// Run blocking shard work off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("embedded store task failed: {e}")))?
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new file:
/// temp file, fsync, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::Backend(format!("{} has no parent", path.display())))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
    file.sync_all().map_err(|e| io_error(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    sync_dir(dir)
}

/// Make a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(filter: &Filter) -> (Vec<String>, Vec<String>) {
        let show = |c: &Option<Vec<qdrant_edge::Condition>>| {
            c.iter()
                .flatten()
                .map(|c| match c {
                    qdrant_edge::Condition::Field(f) => {
                        format!("{}={:?}", f.key.first_key, f.r#match)
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        };
        (show(&filter.must), show(&filter.must_not))
    }

    #[test]
    fn only_shared_mappings_under_the_shard_are_released() {
        let maps = "\
7f0000000000-7f0000001000 rw-s 00000000 fd:01 11 /state/qdrant/collections/docs/segments/a/vectors
7f0000001000-7f0000003000 rw-p 00000000 fd:01 12 /state/qdrant/collections/docs/segments/a/private
7f0000003000-7f0000004000 rw-s 00000000 fd:01 13 /state/qdrant/collections/docs2/wal/open-1
7f0000004000-7f0000006000 r--s 00000000 fd:01 14 /state/qdrant/collections/docs/wal/open-1
7f0000006000-7f0000007000 rw-p 00000000 00:00 0 
7f0000007000-7f0000008000 rw-s 00000000 00:01 15 /dev/zero (deleted)";
        let found = shared_mappings_under(maps, Path::new("/state/qdrant/collections/docs"));
        assert_eq!(
            found,
            vec![(0x7f00_0000_0000, 0x1000), (0x7f00_0000_4000, 0x2000)]
        );
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(to_edge_filter(&PointFilter::default()).is_none());
    }

    #[test]
    fn file_filter_is_two_musts() {
        let filter = to_edge_filter(&PointFilter::file("docs", "a/b.md")).unwrap();
        let (must, must_not) = conditions(&filter);
        assert_eq!(must.len(), 2);
        assert!(must[0].starts_with("pipeline=") && must[0].contains("\"docs\""));
        assert!(must[1].starts_with("path=") && must[1].contains("\"a/b.md\""));
        assert!(must_not.is_empty());
        assert!(filter.should.is_none());
    }

    #[test]
    fn content_hash_not_is_a_must_not() {
        let filter = to_edge_filter(&PointFilter {
            content_hash_not: Some("h2".into()),
            ..PointFilter::file("docs", "a.md")
        })
        .unwrap();
        let (must, must_not) = conditions(&filter);
        assert_eq!(must.len(), 2);
        assert_eq!(must_not.len(), 1);
        assert!(must_not[0].starts_with("content_hash=") && must_not[0].contains("\"h2\""));
    }

    #[test]
    fn names_that_escape_the_root_are_rejected() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a..b", "a\0b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["ragd", "ragd_docs-v2", "docs.v1", "Ünïcode"] {
            assert!(validate_name(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
