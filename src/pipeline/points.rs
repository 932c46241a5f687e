//! A file's points, found by id rather than by a payload filter.
//!
//! A point's id is [`point_id`]`(pipeline, path, chunk index)`, and every write
//! keeps the ids of one file a prefix `0..m`:
//! - a new version upserts its chunks `0..n` in order (in one op, or in ordered
//!   batches that each apply whole), so what exists stays `0..max(n, m)`;
//! - its leftovers `n..m` are then deleted in one op, leaving `0..n`;
//! - a move or a delete removes every id found, leaving nothing.
//!
//! So a file's points are found by probing ids in windows until one ends past
//! the last id found. The embedded store then needs no payload index, which an
//! appendable Qdrant segment keeps wholly in RAM and which made ragd's memory
//! grow with the collection. A gap shorter than a window (which the rules above
//! never make) is still crossed; anything beyond is found by `ragd reconcile`,
//! which scans every point.

use uuid::Uuid;

use crate::document::point_id;
use crate::store::{StoreError, StoredPoint, VectorStore};

/// Ids probed past the last one known or found.
const WINDOW: u32 = 32;

/// The stored points of `path` whose chunk index is `from` or more, in index
/// order. `known` is how many chunks the ledger last recorded for the file:
/// every index below `max(from, known) + WINDOW` is probed, and probing goes on
/// to `WINDOW` past the highest index found.
pub async fn file_points(
    store: &dyn VectorStore,
    collection: &str,
    pipeline: &str,
    path: &str,
    from: u32,
    known: u32,
    with_vectors: bool,
) -> Result<Vec<StoredPoint>, StoreError> {
    let mut out: Vec<StoredPoint> = Vec::new();
    let mut start = from;
    let mut end = from.max(known).saturating_add(WINDOW);
    while start < end {
        let ids: Vec<Uuid> = (start..end).map(|i| point_id(pipeline, path, i)).collect();
        let found = store.retrieve(collection, &ids, with_vectors).await?;
        // `retrieve` keeps the order asked, so the last found is the highest.
        let highest = found
            .last()
            .and_then(|p| ids.iter().position(|id| *id == p.id))
            .map(|at| start + at as u32);
        out.extend(found);
        start = end;
        if let Some(highest) = highest {
            end = end.max(highest.saturating_add(1 + WINDOW));
        }
    }
    Ok(out)
}

/// Ids asked of the store in one request when probing many files at once.
const REQUEST_IDS: usize = 2048;

/// One file whose point ids [`files_ids`] finds: chunks from index `from` on,
/// `known` the chunk count the ledger last recorded for it.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    pub path: &'a str,
    pub from: u32,
    pub known: u32,
}

/// The stored ids of many files' points (each from its `from` on), probed like
/// [`file_points`] but all files' windows in the same requests and without
/// reading any payload: a batch of files costs a round trip or two to a
/// server, not one per file with every chunk's text.
pub async fn files_ids(
    store: &dyn VectorStore,
    collection: &str,
    pipeline: &str,
    files: &[Probe<'_>],
) -> Result<Vec<Uuid>, StoreError> {
    // (path, window start, window end) of each file still being probed.
    let mut windows: Vec<(&str, u32, u32)> = files
        .iter()
        .map(|f| (f.path, f.from, f.from.max(f.known).saturating_add(WINDOW)))
        .collect();
    let mut out = Vec::new();
    while !windows.is_empty() {
        let mut ids = Vec::new();
        let mut owner = Vec::new();
        for (k, &(path, start, end)) in windows.iter().enumerate() {
            for i in start..end {
                ids.push(point_id(pipeline, path, i));
                owner.push((k, i));
            }
        }
        let mut found = std::collections::HashSet::new();
        for request in ids.chunks(REQUEST_IDS) {
            found.extend(store.existing_ids(collection, request).await?);
        }
        let mut highest: Vec<Option<u32>> = vec![None; windows.len()];
        for (id, &(k, i)) in ids.iter().zip(&owner) {
            if found.contains(id) {
                out.push(*id);
                highest[k] = Some(i);
            }
        }
        // Probing goes on to WINDOW past the highest index found.
        windows = windows
            .into_iter()
            .zip(highest)
            .filter_map(|((path, _, end), highest)| {
                let next = end.max(highest?.saturating_add(1 + WINDOW));
                (next > end).then_some((path, end, next))
            })
            .collect();
    }
    Ok(out)
}

/// The ids of `points`, for a delete.
pub fn ids(points: &[StoredPoint]) -> Vec<Uuid> {
    points.iter().map(|p| p.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PointPayload;
    use crate::store::edge::EdgeStore;

    fn point(path: &str, index: u32) -> StoredPoint {
        StoredPoint {
            id: point_id("p", path, index),
            vector: vec![1.0, index as f32],
            payload: PointPayload {
                pipeline: "p".into(),
                path: path.into(),
                chunk_index: index,
                text: format!("chunk {index}"),
                page: None,
                headings: Vec::new(),
                ocr: false,
                language: None,
                content_hash: "h".into(),
                file_hash: "f".into(),
                modified: 0,
                model: "m".into(),
            },
        }
    }

    async fn indexes(store: &EdgeStore, path: &str, from: u32, known: u32) -> Vec<u32> {
        file_points(store, "c", "p", path, from, known, false)
            .await
            .unwrap()
            .iter()
            .map(|p| p.payload.chunk_index)
            .collect()
    }

    #[tokio::test]
    async fn probing_finds_every_point_of_a_file_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path()).unwrap();
        store.ensure_collection("c", 2).await.unwrap();
        // a.md: 100 points, far past one window; b.md: 0..5 and a gap to 20..25.
        let a: Vec<_> = (0..100).map(|i| point("a.md", i)).collect();
        let b: Vec<_> = (0..5).chain(20..25).map(|i| point("b.md", i)).collect();
        store.upsert("c", a).await.unwrap();
        store.upsert("c", b).await.unwrap();

        assert_eq!(
            indexes(&store, "a.md", 0, 0).await,
            (0..100).collect::<Vec<_>>()
        );
        assert_eq!(indexes(&store, "a.md", 0, 3).await.len(), 100);
        assert_eq!(indexes(&store, "a.md", 97, 3).await, vec![97, 98, 99]);
        assert_eq!(
            indexes(&store, "b.md", 0, 5).await,
            vec![0, 1, 2, 3, 4, 20, 21, 22, 23, 24]
        );
        assert_eq!(
            indexes(&store, "b.md", 3, 0).await,
            vec![3, 4, 20, 21, 22, 23, 24]
        );
        // Past everything, and a file with no points.
        assert!(indexes(&store, "a.md", 100, 100).await.is_empty());
        assert!(indexes(&store, "c.md", 0, 7).await.is_empty());
    }

    #[tokio::test]
    async fn batched_probing_finds_the_same_ids_as_one_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path()).unwrap();
        store.ensure_collection("c", 2).await.unwrap();
        let a: Vec<_> = (0..100).map(|i| point("a.md", i)).collect();
        let b: Vec<_> = (0..5).chain(20..25).map(|i| point("b.md", i)).collect();
        store.upsert("c", a).await.unwrap();
        store.upsert("c", b).await.unwrap();

        let probes = [
            Probe {
                path: "a.md",
                from: 0,
                known: 3,
            },
            Probe {
                path: "b.md",
                from: 3,
                known: 0,
            },
            Probe {
                path: "c.md",
                from: 0,
                known: 7,
            },
            Probe {
                path: "a.md",
                from: 100,
                known: 100,
            },
        ];
        let mut batched = files_ids(&store, "c", "p", &probes).await.unwrap();
        let mut one_by_one = Vec::new();
        for p in &probes {
            let found = file_points(&store, "c", "p", p.path, p.from, p.known, false)
                .await
                .unwrap();
            one_by_one.extend(ids(&found));
        }
        assert_eq!(batched.len(), 100 + 7);
        batched.sort();
        one_by_one.sort();
        assert_eq!(batched, one_by_one);
    }
}
