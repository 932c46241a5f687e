//! The vector store suite, written once against `&dyn VectorStore`.
//!
//! Every case runs against the embedded store (`EdgeStore` in a temp dir) and,
//! when `QDRANT_URL` is set (e.g. `http://127.0.0.1:6334`, key in
//! `QDRANT_API_KEY`), against that Qdrant server too, in collections with unique
//! names that are deleted afterwards.

use std::time::Duration;

use ragd::store::edge::{EdgeStore, EdgeTuning};
use ragd::store::qdrant::QdrantStore;
use ragd::store::{
    PointFilter, PointKey, PointPayload, StoreError, StoredPoint, VectorStore, WriteOp,
};
use uuid::Uuid;

const DIM: usize = 4;

/// A point of file `path` in pipeline `pipeline`, version `hash`; the id is
/// derived from all three and the chunk index, like real chunk ids.
fn point(pipeline: &str, path: &str, chunk: u32, hash: &str, vector: [f32; DIM]) -> StoredPoint {
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("{pipeline}/{path}/{hash}/{chunk}").as_bytes(),
    );
    StoredPoint {
        id,
        vector: vector.to_vec(),
        payload: PointPayload {
            pipeline: pipeline.to_owned(),
            path: path.to_owned(),
            chunk_index: chunk,
            text: format!("chunk {chunk} of {path} ({hash})"),
            page: chunk.is_multiple_of(2).then_some(chunk + 1),
            headings: vec!["Title".to_owned(), format!("Section {chunk}")],
            ocr: false,
            language: None,
            content_hash: hash.to_owned(),
            file_hash: format!("file-{hash}"),
            modified: 1_700_000_000 + i64::from(chunk),
            model: "test-embed".to_owned(),
        },
    }
}

/// `n` chunks of one file version, each with a different direction.
fn file_points(pipeline: &str, path: &str, hash: &str, n: u32) -> Vec<StoredPoint> {
    (0..n)
        .map(|i| {
            let x = i as f32;
            point(pipeline, path, i, hash, [1.0, x, 0.5, -x])
        })
        .collect()
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} != {b:?}");
    }
}

fn sorted_ids(points: &[StoredPoint]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    ids.sort();
    ids
}

// ---- the cases -------------------------------------------------------------
//
// Each takes the store and a prefix unique to this run, and names its
// collections `<prefix>_<something>`.

async fn ensure_collection_is_idempotent_and_checks_dimension(
    store: &dyn VectorStore,
    prefix: &str,
) {
    let c = format!("{prefix}_c");
    assert_eq!(store.collection_dim(&c).await.unwrap(), None);
    store.ensure_collection(&c, DIM).await.unwrap();
    store.ensure_collection(&c, DIM).await.unwrap();
    assert_eq!(store.collection_dim(&c).await.unwrap(), Some(DIM));
    assert!(store.list_collections().await.unwrap().contains(&c));

    match store.ensure_collection(&c, DIM + 1).await {
        Err(StoreError::DimensionMismatch {
            existing,
            requested,
            ..
        }) => assert_eq!((existing, requested), (DIM, DIM + 1)),
        other => panic!("expected a dimension mismatch, got {other:?}"),
    }
    // The failed call changed nothing.
    assert_eq!(store.collection_dim(&c).await.unwrap(), Some(DIM));
}

async fn missing_collection_is_reported(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_missing");
    let err = store
        .count(&c, &PointFilter::default())
        .await
        .expect_err("count on a missing collection");
    assert!(matches!(err, StoreError::NoSuchCollection(_)), "{err:?}");
    let err = store
        .upsert(&c, file_points("p", "a.md", "h1", 1))
        .await
        .expect_err("upsert into a missing collection");
    assert!(matches!(err, StoreError::NoSuchCollection(_)), "{err:?}");
    assert!(!err.is_transient());
    assert!(!store.delete_collection(&c).await.unwrap());
}

/// A request the backend refuses for its content is permanent, as the backend
/// itself says (not an error this test makes up): retrying it can only fail
/// again, and the retry layer must not spend its budget on it.
async fn a_vector_of_the_wrong_length_is_a_permanent_error(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_dim");
    store.ensure_collection(&c, DIM).await.unwrap();
    let mut points = file_points("p", "a.md", "h1", 1);
    points[0].vector.pop();
    let err = store
        .upsert(&c, points)
        .await
        .expect_err("a vector shorter than the collection's");
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(store.count(&c, &PointFilter::default()).await.unwrap(), 0);
}

async fn upsert_then_count_per_file(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_count");
    store.ensure_collection(&c, DIM).await.unwrap();
    store
        .upsert(&c, file_points("docs", "a.md", "h1", 3))
        .await
        .unwrap();
    store
        .upsert(&c, file_points("docs", "dir/b.md", "h1", 2))
        .await
        .unwrap();
    // Same path in another pipeline: must not be counted as docs' a.md.
    store
        .upsert(&c, file_points("notes", "a.md", "h1", 4))
        .await
        .unwrap();

    let count = |f: PointFilter| {
        let c = c.clone();
        async move { store.count(&c, &f).await.unwrap() }
    };
    assert_eq!(count(PointFilter::file("docs", "a.md")).await, 3);
    assert_eq!(count(PointFilter::file("docs", "dir/b.md")).await, 2);
    assert_eq!(count(PointFilter::file("notes", "a.md")).await, 4);
    assert_eq!(count(PointFilter::file("docs", "nope.md")).await, 0);
    assert_eq!(count(PointFilter::pipeline("docs")).await, 5);
    assert_eq!(count(PointFilter::default()).await, 9);
}

async fn upserting_the_same_ids_twice_overwrites(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_twice");
    store.ensure_collection(&c, DIM).await.unwrap();
    let points = file_points("docs", "a.md", "h1", 3);
    store.upsert(&c, points.clone()).await.unwrap();
    store.upsert(&c, points.clone()).await.unwrap();
    assert_eq!(store.count(&c, &PointFilter::default()).await.unwrap(), 3);

    // Same id, new payload: the point is replaced, not duplicated.
    let mut changed = points[1].clone();
    changed.payload.text = "rewritten".to_owned();
    store.upsert(&c, vec![changed.clone()]).await.unwrap();
    let all = store
        .scroll(&c, &PointFilter::default(), false)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let got = all.iter().find(|p| p.id == changed.id).unwrap();
    assert_eq!(got.payload, changed.payload);

    // An empty batch is a no-op.
    store.upsert(&c, Vec::new()).await.unwrap();
    assert_eq!(store.count(&c, &PointFilter::default()).await.unwrap(), 3);
}

async fn delete_old_versions_keeps_the_current_one(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_versions");
    store.ensure_collection(&c, DIM).await.unwrap();
    let old = file_points("docs", "a.md", "h1", 3);
    let new = file_points("docs", "a.md", "h2", 2);
    let other = file_points("docs", "b.md", "h1", 2);
    for batch in [&old, &new, &other] {
        store.upsert(&c, batch.clone()).await.unwrap();
    }
    assert_eq!(
        store
            .count(&c, &PointFilter::file("docs", "a.md"))
            .await
            .unwrap(),
        5
    );

    let old_versions = PointFilter {
        content_hash_not: Some("h2".to_owned()),
        ..PointFilter::file("docs", "a.md")
    };
    assert_eq!(store.count(&c, &old_versions).await.unwrap(), 3);
    store.delete(&c, &old_versions).await.unwrap();

    let left = store
        .scroll(&c, &PointFilter::file("docs", "a.md"), false)
        .await
        .unwrap();
    assert_eq!(sorted_ids(&left), sorted_ids(&new));
    assert!(left.iter().all(|p| p.payload.content_hash == "h2"));
    // b.md has the same old hash but is another file: untouched.
    assert_eq!(
        store
            .count(&c, &PointFilter::file("docs", "b.md"))
            .await
            .unwrap(),
        2
    );

    // Deleting a whole file.
    store
        .delete(&c, &PointFilter::file("docs", "b.md"))
        .await
        .unwrap();
    assert_eq!(
        store
            .count(&c, &PointFilter::file("docs", "b.md"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.count(&c, &PointFilter::default()).await.unwrap(), 2);
}

async fn retrieve_and_delete_by_id(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_byid");
    store.ensure_collection(&c, DIM).await.unwrap();
    let a = file_points("docs", "a.md", "h1", 4);
    let b = file_points("docs", "b.md", "h1", 2);
    store.upsert(&c, a.clone()).await.unwrap();
    store.upsert(&c, b.clone()).await.unwrap();

    // Missing ids are left out; the rest come back in the order asked.
    let missing = Uuid::new_v4();
    let asked = [a[3].id, missing, b[0].id, a[1].id];
    let got = store.retrieve(&c, &asked, true).await.unwrap();
    assert_eq!(
        got.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![a[3].id, b[0].id, a[1].id]
    );
    assert_eq!(got[0].payload, a[3].payload);
    assert_close(&got[0].vector, &normalized(&a[3].vector));
    let bare = store.retrieve(&c, &asked[..1], false).await.unwrap();
    assert!(bare[0].vector.is_empty());
    assert_eq!(bare[0].payload, a[3].payload);
    assert!(store.retrieve(&c, &[], false).await.unwrap().is_empty());

    // Deleting by id takes exactly those, missing ones included harmlessly.
    store
        .delete_points(&c, vec![a[2].id, a[3].id, missing])
        .await
        .unwrap();
    let left = store
        .scroll(&c, &PointFilter::default(), false)
        .await
        .unwrap();
    assert_eq!(sorted_ids(&left), sorted_ids(&[&a[..2], &b[..]].concat()));
    // The same in a write group, next to an upsert, once synced.
    store
        .write(
            &c,
            vec![
                WriteOp::Upsert(a[2..].to_vec()),
                WriteOp::DeletePoints(vec![a[0].id, b[1].id]),
            ],
        )
        .await
        .unwrap();
    store.sync(&c).await.unwrap();
    let left = store
        .scroll(&c, &PointFilter::default(), false)
        .await
        .unwrap();
    assert_eq!(
        sorted_ids(&left),
        sorted_ids(&[a[1].clone(), a[2].clone(), a[3].clone(), b[0].clone()])
    );
    // A filter on a field the store may not index still selects exactly.
    assert_eq!(
        store
            .count(&c, &PointFilter::file("docs", "a.md"))
            .await
            .unwrap(),
        3
    );
}

async fn scroll_keys_reads_ids_paths_and_versions(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_keys");
    store.ensure_collection(&c, DIM).await.unwrap();
    let a = file_points("docs", "a.md", "h1", 3);
    let b = file_points("docs", "b.md", "h2", 2);
    let other = file_points("other", "c.md", "h3", 2);
    for batch in [&a, &b, &other] {
        store.upsert(&c, batch.clone()).await.unwrap();
    }
    let key = |p: &StoredPoint| PointKey {
        id: p.id,
        path: p.payload.path.clone(),
        content_hash: p.payload.content_hash.clone(),
    };
    let mut got = store
        .scroll_keys(&c, &PointFilter::pipeline("docs"))
        .await
        .unwrap();
    got.sort_by_key(|k| k.id);
    let mut want: Vec<PointKey> = a.iter().chain(&b).map(key).collect();
    want.sort_by_key(|k| k.id);
    assert_eq!(got, want);
    let all = store
        .scroll_keys(&c, &PointFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
}

async fn search_returns_the_nearest_first(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_search");
    store.ensure_collection(&c, DIM).await.unwrap();
    let east = point("docs", "east.md", 0, "h", [1.0, 0.0, 0.0, 0.0]);
    let north = point("docs", "north.md", 0, "h", [0.0, 1.0, 0.0, 0.0]);
    let north_east = point("docs", "ne.md", 0, "h", [0.7, 0.7, 0.0, 0.0]);
    let up = point("other", "up.md", 0, "h", [0.0, 0.0, 1.0, 0.0]);
    store
        .upsert(
            &c,
            vec![east.clone(), north.clone(), north_east.clone(), up.clone()],
        )
        .await
        .unwrap();

    // Scaled query: cosine ignores length.
    let hits = store
        .search(&c, vec![0.0, 3.0, 0.1, 0.0], 3, None)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].id, north.id);
    assert_eq!(hits[0].payload, north.payload);
    assert_eq!(hits[1].id, north_east.id);
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{hits:?}"
    );
    assert!(
        hits[0].score > 0.99 && hits[0].score <= 1.0 + 1e-5,
        "{}",
        hits[0].score
    );

    // A filter restricts the candidates; limit bounds the answer.
    let only_docs = PointFilter::pipeline("docs");
    let hits = store
        .search(&c, vec![0.0, 0.0, 1.0, 0.0], 10, Some(&only_docs))
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.payload.pipeline == "docs"));
    let hits = store
        .search(
            &c,
            vec![1.0, 0.0, 0.0, 0.0],
            1,
            Some(&PointFilter::file("docs", "east.md")),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, east.id);
    assert_eq!(hits[0].payload, east.payload);
}

async fn scroll_with_and_without_vectors(store: &dyn VectorStore, prefix: &str) {
    let c = format!("{prefix}_scroll");
    store.ensure_collection(&c, DIM).await.unwrap();
    // More than one scroll page, so paging is exercised.
    let many = file_points("docs", "big.md", "h1", 700);
    store.upsert(&c, many.clone()).await.unwrap();
    let small = file_points("docs", "small.md", "h1", 3);
    store.upsert(&c, small.clone()).await.unwrap();

    let bare = store
        .scroll(&c, &PointFilter::file("docs", "big.md"), false)
        .await
        .unwrap();
    assert_eq!(sorted_ids(&bare), sorted_ids(&many));
    assert!(bare.iter().all(|p| p.vector.is_empty()));
    for p in &bare {
        let original = many.iter().find(|m| m.id == p.id).unwrap();
        assert_eq!(p.payload, original.payload);
    }

    let full = store
        .scroll(&c, &PointFilter::file("docs", "small.md"), true)
        .await
        .unwrap();
    assert_eq!(sorted_ids(&full), sorted_ids(&small));
    for p in &full {
        let original = small.iter().find(|m| m.id == p.id).unwrap();
        assert_eq!(p.payload, original.payload);
        // Cosine collections store vectors normalised.
        assert_close(&p.vector, &normalized(&original.vector));
    }

    let all = store
        .scroll(&c, &PointFilter::default(), false)
        .await
        .unwrap();
    assert_eq!(all.len(), 703);
}

async fn alias_switch_moves_readers_to_the_new_collection(store: &dyn VectorStore, prefix: &str) {
    let alias = format!("{prefix}_live");
    let v1 = format!("{prefix}_v1");
    let v2 = format!("{prefix}_v2");
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), None);

    store.ensure_collection(&v1, DIM).await.unwrap();
    store
        .upsert(&v1, file_points("docs", "a.md", "h1", 1))
        .await
        .unwrap();
    store.set_alias(&alias, &v1).await.unwrap();
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), Some(v1.clone()));
    assert_eq!(
        store.count(&alias, &PointFilter::default()).await.unwrap(),
        1
    );
    assert_eq!(store.collection_dim(&alias).await.unwrap(), Some(DIM));

    store.ensure_collection(&v2, DIM).await.unwrap();
    let v2_points = file_points("docs", "a.md", "h2", 2);
    store.upsert(&v2, v2_points.clone()).await.unwrap();
    store.set_alias(&alias, &v2).await.unwrap();
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), Some(v2.clone()));
    // Setting the same target again is harmless.
    store.set_alias(&alias, &v2).await.unwrap();

    let via_alias = store
        .scroll(&alias, &PointFilter::default(), false)
        .await
        .unwrap();
    assert_eq!(sorted_ids(&via_alias), sorted_ids(&v2_points));
    let hits = store
        .search(&alias, vec![1.0, 0.0, 0.5, 0.0], 5, None)
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.payload.content_hash == "h2"));
    // Writes through the alias land in v2; ensure_collection through it is a check.
    store
        .upsert(&alias, file_points("docs", "b.md", "h1", 1))
        .await
        .unwrap();
    assert_eq!(store.count(&v2, &PointFilter::default()).await.unwrap(), 3);
    store.ensure_collection(&alias, DIM).await.unwrap();

    let names = store.list_collections().await.unwrap();
    assert!(names.contains(&v1) && names.contains(&v2));
    assert!(
        !names.contains(&alias),
        "aliases are not collections: {names:?}"
    );

    assert!(store.delete_collection(&v1).await.unwrap());
    assert!(!store.delete_collection(&v1).await.unwrap());
    assert_eq!(store.collection_dim(&v1).await.unwrap(), None);
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), Some(v2.clone()));
    assert_eq!(
        store.count(&alias, &PointFilter::default()).await.unwrap(),
        3
    );

    // Pointing an alias at nothing is refused and leaves it as it was.
    let err = store
        .set_alias(&alias, &v1)
        .await
        .expect_err("alias to a deleted collection");
    assert!(matches!(err, StoreError::NoSuchCollection(_)), "{err:?}");
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), Some(v2.clone()));
}

// ---- running them ------------------------------------------------------------

/// A unique collection-name prefix, so server runs do not collide.
fn unique_prefix(case: &str) -> String {
    let short: String = case.chars().take(24).collect();
    format!(
        "ragdtest_{short}_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The server store, if a real Qdrant is at hand (see [`crate::support::real`]).
fn server() -> Option<QdrantStore> {
    let (url, key) = crate::support::real::qdrant()?;
    Some(
        QdrantStore::connect(&url, key, &Default::default())
            .expect("QDRANT_URL is not a usable Qdrant URL"),
    )
}

/// Delete what a server run created (the embedded store lives in a temp dir).
async fn clean_up(store: &dyn VectorStore, prefix: &str) {
    for name in store.list_collections().await.unwrap_or_default() {
        if name.starts_with(prefix) {
            let _ = store.delete_collection(&name).await;
        }
    }
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        /// One test per case; each runs on the embedded store, then on the server.
        mod every_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let edge = EdgeStore::open(dir.path()).unwrap();
                    super::$case(&edge, &unique_prefix(stringify!($case))).await;

                    if let Some(qdrant) = server() {
                        let prefix = unique_prefix(stringify!($case));
                        super::$case(&qdrant, &prefix).await;
                        clean_up(&qdrant, &prefix).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    ensure_collection_is_idempotent_and_checks_dimension,
    missing_collection_is_reported,
    a_vector_of_the_wrong_length_is_a_permanent_error,
    upsert_then_count_per_file,
    upserting_the_same_ids_twice_overwrites,
    delete_old_versions_keeps_the_current_one,
    retrieve_and_delete_by_id,
    scroll_keys_reads_ids_paths_and_versions,
    search_returns_the_nearest_first,
    scroll_with_and_without_vectors,
    alias_switch_moves_readers_to_the_new_collection,
);

// ---- server store only --------------------------------------------------------

/// The server backend's own classification of failures it really meets (the
/// faults suite injects `StoreError::Transient` and so never sees it): no
/// server listening, and a server that takes the connection but never
/// answers, are transient — the retry layer waits them out, as it does a
/// restarting node (`qdrant_server::server_killed_and_restarted_*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_backend_classifies_real_failures() {
    // Nothing listening: the port of a listener just closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let options = ragd::store::qdrant::ServerOptions {
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let store = QdrantStore::connect(&url, None, &options).unwrap();
    let err = store.collection_dim("c").await.unwrap_err();
    assert!(err.is_transient(), "no server: {err:?}");
    let err = store
        .upsert("c", file_points("p", "a.md", "h1", 1))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "no server: {err:?}");

    // A server that accepts and then says nothing (hung, or a half-open link).
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", mute.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = mute.accept().await {
            conns.push(conn);
        }
    });
    let store = QdrantStore::connect(&url, None, &options).unwrap();
    let err = store
        .upsert("c", file_points("p", "a.md", "h1", 1))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "no answer: {err:?}");
    held.abort();
}

/// Answers from a Qdrant server are read only up to ragd's message cap
/// (`qdrant::MAX_MESSAGE_BYTES`), which qdrant-client alone leaves unlimited.
/// The largest page ragd honestly asks for (512 points of 4096 dimensions with
/// 32 KiB of text each, what the cap is sized by) is read under the normal cap;
/// under a small cap the same scroll is refused with `MessageTooLarge`,
/// permanently: the retry layer gives it up at once instead of asking again for
/// its whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_over_the_message_cap_are_refused_not_retried() {
    use ragd::store::layer::Layered;
    use ragd::store::retry::Retry;
    let Some((url, key)) = crate::support::real::qdrant() else {
        return;
    };
    const WIDE: usize = 4096;
    const PAGE: u32 = 512;
    let prefix = unique_prefix("message_cap");
    let collection = format!("{prefix}_c");
    let store = QdrantStore::connect(&url, key.clone(), &Default::default()).unwrap();
    store.ensure_collection(&collection, WIDE).await.unwrap();
    let path = format!("{}/file.md", "folder/".repeat(30));
    let points: Vec<StoredPoint> = (0..PAGE)
        .map(|i| {
            let mut p = point("p", &path, i, "h1", [1.0, i as f32, 0.5, -1.0]);
            p.vector = (0..WIDE)
                .map(|d| ((d as u32 + i) % 97) as f32 + 1.0)
                .collect();
            p.payload.text = "x".repeat(32 << 10);
            p.payload.headings = vec!["A heading of some length".repeat(4); 6];
            p
        })
        .collect();
    store.upsert(&collection, points).await.unwrap();

    // The normal cap: the largest honest page is read whole.
    let all = store
        .scroll(&collection, &PointFilter::default(), true)
        .await
        .unwrap();
    assert_eq!(all.len(), PAGE as usize);
    assert!(all.iter().all(|p| p.vector.len() == WIDE));

    let small = QdrantStore::connect(&url, key, &Default::default())
        .unwrap()
        .with_message_cap(1 << 20);
    // Small answers still pass under it: a count, the ids alone.
    assert_eq!(
        small
            .count(&collection, &PointFilter::default())
            .await
            .unwrap(),
        u64::from(PAGE)
    );
    let ids: Vec<Uuid> = all.iter().map(|p| p.id).collect();
    assert_eq!(
        small.existing_ids(&collection, &ids).await.unwrap().len(),
        ids.len()
    );
    // A page over it is refused, with a reason, as permanent.
    // (A failure names the count read, not the 24 MiB read.)
    let refused = |read: Result<Vec<StoredPoint>, StoreError>| match read {
        Ok(points) => panic!("{} points read past the cap", points.len()),
        Err(e) => e,
    };
    for err in [
        refused(
            small
                .scroll(&collection, &PointFilter::default(), true)
                .await,
        ),
        refused(small.retrieve(&collection, &ids, true).await),
    ] {
        assert!(matches!(err, StoreError::MessageTooLarge { .. }), "{err:?}");
        assert!(!err.is_transient(), "{err:?}");
        assert!(
            err.to_string().contains("not an answer to ragd's request"),
            "{err}"
        );
    }
    // Through the retry layer (as the app runs it): given up at once.
    let retried = Layered::new(
        std::sync::Arc::new(small),
        Retry::new(Duration::from_secs(60), Duration::from_millis(200)),
    );
    let started = std::time::Instant::now();
    let err = refused(
        retried
            .scroll(&collection, &PointFilter::default(), true)
            .await,
    );
    assert!(matches!(err, StoreError::MessageTooLarge { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried for {:?}",
        started.elapsed()
    );
    clean_up(&store, &prefix).await;
}

// ---- embedded store only ------------------------------------------------------

/// The payload fields a closed embedded collection has an index on.
fn edge_indexed_fields(shard_dir: &std::path::Path) -> Vec<String> {
    let shard = qdrant_edge::EdgeShard::load(shard_dir, None).unwrap();
    let mut fields: Vec<String> = shard
        .info()
        .payload_schema
        .keys()
        .map(|k| k.to_string())
        .collect();
    fields.sort();
    fields
}

/// The embedded store keeps no payload index (RAM per point, see
/// `store/edge.rs`), and drops the ones collections of earlier versions have,
/// losing no point.
#[tokio::test]
async fn edge_collections_have_no_payload_index_and_old_ones_lose_theirs() {
    use qdrant_edge::{
        CreateIndex, FieldIndexOperations, PayloadFieldSchema, PayloadSchemaType, UpdateOperation,
    };
    let dir = tempfile::tempdir().unwrap();
    let shard_dir = dir.path().join("collections").join("c");
    let points = file_points("docs", "a.md", "h1", 5);
    {
        let store = EdgeStore::open(dir.path()).unwrap();
        store.ensure_collection("c", DIM).await.unwrap();
        store.upsert("c", points.clone()).await.unwrap();
    }
    assert!(edge_indexed_fields(&shard_dir).is_empty());

    // What an earlier ragd made: keyword indexes on `pipeline` and `path`.
    {
        let shard = qdrant_edge::EdgeShard::load(&shard_dir, None).unwrap();
        for field in ["pipeline", "path"] {
            shard
                .update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: field.parse().unwrap(),
                        field_schema: Some(PayloadFieldSchema::FieldType(
                            PayloadSchemaType::Keyword,
                        )),
                    }),
                ))
                .unwrap();
        }
    }
    assert_eq!(edge_indexed_fields(&shard_dir), vec!["path", "pipeline"]);

    {
        let store = EdgeStore::open(dir.path()).unwrap();
        let back = store
            .scroll("c", &PointFilter::default(), true)
            .await
            .unwrap();
        assert_eq!(sorted_ids(&back), sorted_ids(&points));
        assert_eq!(
            store
                .count("c", &PointFilter::file("docs", "a.md"))
                .await
                .unwrap(),
            5
        );
    }
    assert!(edge_indexed_fields(&shard_dir).is_empty());
}

#[tokio::test]
async fn edge_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let points = file_points("docs", "a.md", "h1", 5);
    {
        let store = EdgeStore::open(dir.path()).unwrap();
        store.ensure_collection("v1", DIM).await.unwrap();
        store.upsert("v1", points.clone()).await.unwrap();
        store.set_alias("live", "v1").await.unwrap();
        store
            .delete(
                "live",
                &PointFilter {
                    content_hash_not: Some("h2".into()),
                    ..PointFilter::file("docs", "nothing.md")
                },
            )
            .await
            .unwrap();
    }

    let store = EdgeStore::open(dir.path()).unwrap();
    assert_eq!(
        store.list_collections().await.unwrap(),
        vec!["v1".to_owned()]
    );
    assert_eq!(
        store.resolve_alias("live").await.unwrap(),
        Some("v1".to_owned())
    );
    assert_eq!(store.collection_dim("live").await.unwrap(), Some(DIM));
    assert_eq!(
        store
            .count("live", &PointFilter::file("docs", "a.md"))
            .await
            .unwrap(),
        5
    );
    let back = store
        .scroll("live", &PointFilter::default(), true)
        .await
        .unwrap();
    assert_eq!(sorted_ids(&back), sorted_ids(&points));
    for p in &back {
        let original = points.iter().find(|o| o.id == p.id).unwrap();
        assert_eq!(p.payload, original.payload);
        assert_close(&p.vector, &normalized(&original.vector));
    }
    // A filtered search works without payload indexes.
    let hits = store
        .search(
            "live",
            vec![1.0, 2.0, 0.5, -2.0],
            1,
            Some(&PointFilter::file("docs", "a.md")),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[2].id);
}

/// Writes are durable when `upsert`/`delete` return, not only when the store is
/// closed: leak the first store (no Drop, so no flush on close), copy its
/// directory as a crash would leave it, and read the copy. (The directory itself
/// cannot be opened twice: qdrant-edge locks its WAL.)
#[tokio::test]
async fn edge_writes_are_durable_without_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let keep = file_points("docs", "keep.md", "h1", 3);
    let gone = file_points("docs", "gone.md", "h1", 2);

    let first = EdgeStore::open(&live).unwrap();
    first.ensure_collection("c", DIM).await.unwrap();
    first.upsert("c", keep.clone()).await.unwrap();
    first.upsert("c", gone).await.unwrap();
    first
        .delete("c", &PointFilter::file("docs", "gone.md"))
        .await
        .unwrap();
    assert!(
        EdgeStore::open(&live).is_err(),
        "a second store on a directory in use must fail"
    );
    assert_eq!(ids_after_crash(first, &live).await, sorted_ids(&keep));
}

/// Abandon `store` without closing it, copy its directory as a crash would leave
/// it, and return the sorted ids of collection `c` in the copy. (The directory
/// itself cannot be opened twice: qdrant-edge locks its WAL.)
async fn ids_after_crash(store: EdgeStore, live: &std::path::Path) -> Vec<Uuid> {
    std::mem::forget(store);
    let crashed = live.with_file_name("crashed");
    copy_dir(live, &crashed);
    let second = EdgeStore::open(&crashed).unwrap();
    let back = second
        .scroll("c", &PointFilter::default(), false)
        .await
        .unwrap();
    sorted_ids(&back)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn edge_rejects_names_that_are_not_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path()).unwrap();
    for bad in ["../escape", "a/b", "..", ".hidden", ""] {
        assert!(
            store.ensure_collection(bad, DIM).await.is_err(),
            "{bad:?} accepted"
        );
    }
    store.ensure_collection("ok", DIM).await.unwrap();
    assert!(store.set_alias("../alias", "ok").await.is_err());
    assert_eq!(
        store.list_collections().await.unwrap(),
        vec!["ok".to_owned()]
    );
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}

#[tokio::test]
async fn edge_deleting_a_collection_drops_its_aliases_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path()).unwrap();
    store.ensure_collection("v1", DIM).await.unwrap();
    store.set_alias("live", "v1").await.unwrap();
    assert!(store.delete_collection("v1").await.unwrap());
    assert_eq!(store.resolve_alias("live").await.unwrap(), None);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(store);
    let store = EdgeStore::open(dir.path()).unwrap();
    assert!(store.list_collections().await.unwrap().is_empty());
    assert_eq!(store.resolve_alias("live").await.unwrap(), None);
}

/// Closed WAL segments of collection `c` under `root`, and their total size.
fn closed_wal(root: &std::path::Path) -> (usize, u64) {
    std::fs::read_dir(root.join("collections/c/wal"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("closed-"))
        .fold((0, 0), |(n, bytes), e| {
            (n + 1, bytes + e.metadata().unwrap().len())
        })
}

/// qdrant-edge never truncates its WAL; the store compacts it on `sync`. The
/// WAL numbers operations and points keep the number of their last write, so
/// a compaction that restarted the numbering would make later overwrites be
/// ignored as stale: every round overwrites the same points and the last
/// round must win, before and after reopening.
#[tokio::test]
async fn edge_wal_is_compacted_and_later_overwrites_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tuning = EdgeTuning {
        segment_bytes: 64 << 10,
        compact_bytes: 128 << 10,
        ..EdgeTuning::default()
    };
    const ROUNDS: u32 = 40;
    let same = file_points("docs", "same.md", "base", 50);
    let check = |store: EdgeStore| async move {
        let total = store.count("c", &PointFilter::default()).await.unwrap();
        assert_eq!(total, 50 + 10 * u64::from(ROUNDS));
        let back = store
            .scroll("c", &PointFilter::file("docs", "same.md"), false)
            .await
            .unwrap();
        assert_eq!(back.len(), 50);
        let last = format!("v{}", ROUNDS - 1);
        assert!(
            back.iter().all(|p| p.payload.content_hash == last),
            "an overwrite after a compaction was lost: {:?}",
            back.iter()
                .map(|p| &p.payload.content_hash)
                .collect::<std::collections::BTreeSet<_>>()
        );
    };
    {
        let store = EdgeStore::open_tuned(&root, tuning).unwrap();
        store.ensure_collection("c", DIM).await.unwrap();
        let mut most_closed = 0;
        for round in 0..ROUNDS {
            let mut points: Vec<StoredPoint> = same
                .iter()
                .cloned()
                .map(|mut p| {
                    p.payload.content_hash = format!("v{round}");
                    p
                })
                .collect();
            points.extend(file_points("docs", &format!("f{round}.md"), "h", 10));
            store
                .write("c", vec![WriteOp::Upsert(points)])
                .await
                .unwrap();
            store.sync("c").await.unwrap();
            most_closed = most_closed.max(closed_wal(&root).0);
        }
        let (closed, bytes) = closed_wal(&root);
        assert!(
            most_closed <= 4 && bytes <= (128 << 10) + (64 << 10),
            "the WAL was not compacted: {closed} closed segments, {bytes} bytes (at most {most_closed})"
        );
        check(store).await;
    }
    check(EdgeStore::open_tuned(&root, tuning).unwrap()).await;
}

/// `write` is not durable on its own; `sync` makes it so: the directory copied
/// as a crash would leave it after a sync holds the write.
#[tokio::test]
async fn edge_write_groups_are_durable_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let first = EdgeStore::open(&live).unwrap();
    first.ensure_collection("c", DIM).await.unwrap();
    let old = file_points("docs", "a.md", "h1", 3);
    let new = file_points("docs", "a.md", "h2", 2);
    first.upsert("c", old).await.unwrap();
    let mut stale = PointFilter::file("docs", "a.md");
    stale.content_hash_not = Some("h2".into());
    first
        .write(
            "c",
            vec![WriteOp::Upsert(new.clone()), WriteOp::Delete(stale)],
        )
        .await
        .unwrap();
    first.sync("c").await.unwrap();
    assert_eq!(ids_after_crash(first, &live).await, sorted_ids(&new));
}

/// Resident kilobytes of this process's shared mappings of files under `dir`
/// (from `/proc/self/smaps`).
fn resident_shared_kb(dir: &std::path::Path) -> u64 {
    let dir = std::fs::canonicalize(dir).unwrap();
    let prefix = format!("{}/", dir.display());
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut total = 0;
    let mut counting = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header: address perms offset dev inode pathname.
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            counting = perms.ends_with('s') && path.starts_with(&prefix);
        } else if counting && first == "Rss:" {
            total += fields.next().unwrap().parse::<u64>().unwrap();
        }
    }
    total
}

/// After every write and sync, the shard's mapped pages are handed back to the
/// page cache (ragd's resident memory must not grow with the corpus), and
/// nothing written before or after is lost: reads fault the pages back in,
/// pages released while still dirty are written by the next sync, and a crash
/// copy holds the last version.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn edge_sync_releases_mapped_pages_and_loses_nothing() {
    const DIM: usize = 256;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = EdgeStore::open(&live).unwrap();
    store.ensure_collection("c", DIM).await.unwrap();
    let version = |hash: &str, n: u32| -> Vec<StoredPoint> {
        (0..n)
            .map(|i| {
                let mut p = point("docs", &format!("f{}.md", i / 10), i % 10, hash, [0.0; 4]);
                // The same id in every version, as chunk ids are.
                p.id = Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("point {i}").as_bytes());
                p.vector = (0..DIM)
                    .map(|d| ((i as usize * 31 + d * 7 + hash.len()) % 17) as f32 + 1.0)
                    .collect();
                p
            })
            .collect()
    };
    let first = version("h1", 2_000);
    store
        .write("c", vec![WriteOp::Upsert(first.clone())])
        .await
        .unwrap();
    // The write itself handed its (still dirty) pages back.
    let written = resident_shared_kb(&live);

    // Reads fault the pages back in: a search keeps them; `retrieve` and a
    // scroll, which gather points for a write, hand them back.
    let ids: Vec<Uuid> = first.iter().map(|p| p.id).collect();
    let back = store.retrieve("c", &ids, true).await.unwrap();
    assert_eq!(back.len(), first.len());
    for (p, original) in back.iter().zip(&first) {
        assert_eq!(p.id, original.id);
        assert_close(&p.vector, &normalized(&original.vector));
    }
    let retrieved = resident_shared_kb(&live);
    let hits = store
        .search("c", first[5].vector.clone(), 1, None)
        .await
        .unwrap();
    // (Several points share a direction; any of them is the best hit.)
    assert!(hits[0].score > 0.999, "{}", hits[0].score);
    let read = resident_shared_kb(&live);
    assert!(
        retrieved < read / 10,
        "retrieve left {retrieved} kB resident (a search needs {read} kB)"
    );
    assert!(read > 1_000, "read pages should be resident, got {read} kB");
    assert!(
        written < read / 10,
        "the write left {written} kB resident (reading it needs {read} kB)"
    );
    store.sync("c").await.unwrap();
    let after = resident_shared_kb(&live);
    assert!(
        after < read / 10,
        "sync left {after} kB of {read} kB resident"
    );
    let scrolled = store
        .scroll("c", &PointFilter::default(), true)
        .await
        .unwrap();
    assert_eq!(scrolled.len(), first.len());
    let keys = store
        .scroll_keys("c", &PointFilter::default())
        .await
        .unwrap();
    assert_eq!(keys.len(), first.len());
    let left = resident_shared_kb(&live);
    assert!(
        left < read / 10,
        "scrolling left {left} kB of {read} kB resident"
    );

    // Overwrite half, sync again, crash: the copy holds the new half and the
    // untouched rest.
    let second = version("h2", 1_000);
    store
        .write("c", vec![WriteOp::Upsert(second.clone())])
        .await
        .unwrap();
    store.sync("c").await.unwrap();
    let mut expected: Vec<StoredPoint> = second;
    expected.extend(first.into_iter().skip(1_000));
    let ids = ids_after_crash(store, &live).await;
    assert!(
        ids == sorted_ids(&expected),
        "{} ids after the crash",
        ids.len()
    );
    let crashed = EdgeStore::open(&live.with_file_name("crashed")).unwrap();
    let back = crashed
        .scroll("c", &PointFilter::default(), true)
        .await
        .unwrap();
    let by_id: std::collections::HashMap<Uuid, &StoredPoint> =
        expected.iter().map(|p| (p.id, p)).collect();
    for p in &back {
        assert_close(&p.vector, &normalized(&by_id[&p.id].vector));
        assert_eq!(p.payload, by_id[&p.id].payload);
    }
}

/// A deleted point keeps its vector slot in qdrant-edge until the shard is
/// rebuilt. `sync` vacuums once dead slots reach the live count (and the
/// minimum): the live points come through whole (ids, vectors, payloads), the
/// copy's pages are not left resident, later writes and a reopen work, and no
/// scratch directory is left. Below the threshold nothing is rebuilt.
#[tokio::test]
async fn edge_sync_vacuums_dead_points_and_keeps_the_live_ones() {
    let metrics = ragd::telemetry::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tuning = EdgeTuning {
        vacuum_min_dead: 100,
        ..EdgeTuning::default()
    };
    let store = EdgeStore::open_tuned(&root, tuning).unwrap();
    store.ensure_collection("c", DIM).await.unwrap();
    let keep = file_points("docs", "keep.md", "h", 150);
    let gone: Vec<StoredPoint> = ["a.md", "b.md"]
        .iter()
        .flat_map(|f| file_points("docs", f, "h", 100))
        .collect();
    store.upsert("c", keep.clone()).await.unwrap();
    store.upsert("c", gone.clone()).await.unwrap();
    assert_eq!(store.slots("c").await.unwrap(), (350, Some(350)));

    // 100 dead against 250 live: below the live count, so no vacuum.
    store
        .delete_points("c", gone[..100].iter().map(|p| p.id).collect())
        .await
        .unwrap();
    store.sync("c").await.unwrap();
    assert_eq!(store.slots("c").await.unwrap(), (250, Some(350)));

    // 200 dead against 150 live: vacuumed.
    store
        .delete_points("c", gone[100..].iter().map(|p| p.id).collect())
        .await
        .unwrap();
    store.sync("c").await.unwrap();
    assert_eq!(store.slots("c").await.unwrap(), (150, Some(150)));
    let rendered = metrics.render();
    for line in [
        "ragd_qdrant_vacuums_total{collection=\"c\",outcome=\"done\"} 1",
        "ragd_qdrant_vacuumed_slots_total{collection=\"c\"} 200",
        "ragd_qdrant_vacuum_duration_seconds_count{collection=\"c\"} 1",
    ] {
        assert!(rendered.contains(line), "missing {line:?} in:\n{rendered}");
    }
    #[cfg(target_os = "linux")]
    {
        let resident = resident_shared_kb(&root);
        assert!(resident < 512, "the vacuum left {resident} kB mapped");
    }
    let check = |store: EdgeStore| {
        let (keep, gone) = (keep.clone(), gone.clone());
        async move {
            let ids: Vec<Uuid> = keep.iter().map(|p| p.id).collect();
            let back = store.retrieve("c", &ids, true).await.unwrap();
            assert_eq!(back.len(), keep.len());
            for (p, original) in back.iter().zip(&keep) {
                assert_eq!(p.id, original.id);
                assert_eq!(p.payload, original.payload);
                assert_close(&p.vector, &normalized(&original.vector));
            }
            let gone_ids: Vec<Uuid> = gone.iter().map(|p| p.id).collect();
            assert!(
                store
                    .retrieve("c", &gone_ids, false)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let hits = store
                .search("c", keep[7].vector.clone(), 1, None)
                .await
                .unwrap();
            assert_eq!(hits[0].id, keep[7].id);
            store
        }
    };
    let store = check(store).await;
    // Writes after the vacuum land in the new shard and survive a reopen.
    let later = file_points("docs", "later.md", "h", 10);
    store.upsert("c", later).await.unwrap();
    drop(store);
    let store = check(EdgeStore::open_tuned(&root, tuning).unwrap()).await;
    assert_eq!(
        store.count("c", &PointFilter::default()).await.unwrap(),
        160
    );
    let leftovers: Vec<_> = std::fs::read_dir(root.join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["c"]);
}
