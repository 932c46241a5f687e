//! The Qdrant server path against the real server: a node of the test's own
//! killed with SIGKILL under `ragd index` and under `ragd run` and started again
//! on its storage (the run completes, the daemon recovers, the collection holds
//! exactly what the ledger says), collections ragd did not create, the
//! configured collection layout and the alias switch under readers.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance, FieldType, PointStruct,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use ragd::document::point_id;
use ragd::ledger::{FileState, Ledger};
use ragd::store::qdrant::{Layout, OWNER_FIELD, QdrantStore, ServerOptions};
use ragd::store::{PointFilter, StoreError, VectorStore};
use uuid::Uuid;

use crate::support::daemon::{BinEnv, eventually_within, sigterm, wait_exit, write_many};
use crate::support::env::{Backend, TestEnv};
use crate::support::qdrant_node::QdrantNode;
use crate::support::real;
use crate::support::report;

/// Files per restart test: a few hundred, as a real first index.
const FILES: usize = 300;

/// The `ragd` config of `env` pointed at `url`.
fn use_server(env: &BinEnv, url: &str) {
    let path = env.dir.path().join("config/ragd.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!("[qdrant]\nurl = \"{url}\"\ntimeout_secs = 10\n"));
    std::fs::write(&path, toml).unwrap();
}

/// Every ledger row indexed, and the collection holding exactly the points the
/// ledger names (ids `0..chunk_count` of each file, of its recorded version):
/// nothing lost, nothing duplicated, nothing else.
async fn assert_store_matches_ledger(store: &QdrantStore, ledger: &Ledger, files: usize) {
    assert_collection_matches_ledger(store, "docs", ledger, files).await;
}

/// [`assert_store_matches_ledger`] for the pipeline's collection `collection`.
async fn assert_collection_matches_ledger(
    store: &QdrantStore,
    collection: &str,
    ledger: &Ledger,
    files: usize,
) {
    let rows = ledger.files("docs").unwrap();
    assert_eq!(rows.len(), files, "ledger rows");
    let mut expected: BTreeMap<Uuid, (String, String)> = BTreeMap::new();
    for row in rows.values() {
        assert_eq!(row.state, FileState::Indexed, "{row:?}");
        let hash = row
            .content_hash
            .clone()
            .expect("indexed row has a content hash");
        assert!(row.chunk_count > 0, "{row:?}");
        for i in 0..row.chunk_count {
            expected.insert(
                point_id("docs", &row.path, i),
                (row.path.clone(), hash.clone()),
            );
        }
    }
    let keys = store
        .scroll_keys(collection, &PointFilter::default())
        .await
        .expect("scroll the collection");
    let mut seen = HashSet::new();
    for key in &keys {
        assert!(seen.insert(key.id), "point {} listed twice", key.id);
        let Some((path, hash)) = expected.get(&key.id) else {
            panic!("point {} of {} is not in the ledger", key.id, key.path);
        };
        assert_eq!((&key.path, &key.content_hash), (path, hash));
    }
    let missing = expected.keys().filter(|id| !seen.contains(id)).count();
    assert_eq!(
        missing, 0,
        "points the ledger names but the collection lacks"
    );
    assert_eq!(keys.len(), expected.len());
}

fn ragd_index(env: &BinEnv) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ragd"));
    c.arg("-c")
        .arg(env.dir.path().join("config/ragd.toml"))
        .arg("index")
        .env("RUST_LOG", "ragd=warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Indexed rows in the ledger next to a running ragd, read without opening it
/// as a [`Ledger`] (which migrates, and would race ragd creating it).
fn indexed(env: &BinEnv) -> u64 {
    let path = env.state_dir().join("ledger.sqlite");
    let Ok(db) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    db.query_row(
        "SELECT count(*) FROM files WHERE pipeline = 'docs' AND state = 'indexed'",
        [],
        |row| row.get(0),
    )
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_under_ragd_index_loses_and_duplicates_nothing() {
    let Some(mut node) = QdrantNode::start(17101, 17102).await else {
        return; // real::missing said why (and panicked if Qdrant is required)
    };
    // Slow enough embedding that the kill lands mid-run.
    let env = BinEnv::new(Duration::from_millis(25)).await;
    use_server(&env, &node.url());
    write_many(&env.docs(), "n", FILES);

    let mut child = ragd_index(&env).spawn().expect("start ragd index");
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while indexed(&env) < 20 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("ragd index ended before the kill: {}", report(&out));
        }
        assert!(
            std::time::Instant::now() < until,
            "ragd index indexed nothing in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        indexed(&env) < FILES as u64,
        "the run finished before the server was killed; slow the embedder"
    );
    node.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    node.restart().await;

    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("ragd index output");
    assert!(
        out.status.success(),
        "ragd index failed across a Qdrant restart: {}",
        report(&out)
    );
    let store = QdrantStore::connect(&node.url(), None, &ServerOptions::default()).unwrap();
    let ledger = env.ledger().expect("ledger");
    assert_store_matches_ledger(&store, &ledger, FILES).await;

    // A second run finds nothing to do.
    let out = ragd_index(&env).output().unwrap();
    assert!(out.status.success(), "{}", report(&out));
    assert_store_matches_ledger(&store, &ledger, FILES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_under_ragd_run_the_daemon_recovers() {
    let Some(mut node) = QdrantNode::start(17111, 17112).await else {
        return;
    };
    let env = BinEnv::new(Duration::from_millis(25)).await;
    use_server(&env, &node.url());
    let mut daemon = env.start(1);
    eventually_within("the daemon is ready", Duration::from_secs(120), || async {
        env.http_status("/readyz").await == Some(200)
    })
    .await;
    write_many(&env.docs(), "n", FILES);
    eventually_within(
        "the daemon has indexed some files",
        Duration::from_secs(120),
        || async { indexed(&env) >= 20 },
    )
    .await;
    node.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    node.restart().await;
    // Files written while the server was away or just back are indexed too.
    write_many(&env.docs().join("later"), "m", 20);

    eventually_within(
        "every file is indexed after the restart",
        Duration::from_secs(300),
        || async { indexed(&env) == FILES as u64 + 20 },
    )
    .await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon exited: {}",
        env.log(1)
    );
    sigterm(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(60)).await;
    assert!(status.success(), "{status}: {}", env.log(1));
    // The outage was absorbed by the store's retries, not by failed reconciles
    // that the worker retried later.
    let log = env.log(1);
    assert!(
        !log.contains("reconcile failed"),
        "a reconcile failed across the restart: {log}"
    );
    let store = QdrantStore::connect(&node.url(), None, &ServerOptions::default()).unwrap();
    let ledger = env.ledger().expect("ledger");
    assert_store_matches_ledger(&store, &ledger, FILES + 20).await;
}

// ---- on the shared server -----------------------------------------------------

fn shared() -> Option<(String, Option<String>)> {
    real::qdrant()
}

fn unique(what: &str) -> String {
    format!(
        "ragdtest_{what}_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A plain qdrant-client on the shared server, for what somebody other than
/// ragd would do there.
fn raw_client(url: &str, key: &Option<String>) -> Qdrant {
    Qdrant::from_url(url)
        .api_key(key.clone())
        .skip_compatibility_check()
        .build()
        .unwrap()
}

/// Somebody else's collection on a shared server: refused for writes and
/// never dropped, by the store and by `ragd index`; one with ragd's mark but a
/// distance ragd cannot use is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_ragd_did_not_create_is_never_touched() {
    let Some((url, key)) = shared() else {
        return;
    };
    let raw = raw_client(&url, &key);
    let foreign = unique("foreign");
    raw.create_collection(
        CreateCollectionBuilder::new(&foreign)
            .vectors_config(VectorParamsBuilder::new(64, Distance::Cosine)),
    )
    .await
    .unwrap();
    raw.upsert_points(
        UpsertPointsBuilder::new(
            &foreign,
            vec![PointStruct::new(
                1,
                vec![0.5; 64],
                [("owner", "someone else".into())],
            )],
        )
        .wait(true),
    )
    .await
    .unwrap();

    let store = QdrantStore::connect(&url, key.clone(), &ServerOptions::default()).unwrap();
    let err = store.ensure_collection(&foreign, 64).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("not created by ragd"), "{err}");
    let err = store.delete_collection(&foreign).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    // Through an alias too.
    let alias = unique("alias");
    store.set_alias(&alias, &foreign).await.unwrap();
    assert!(matches!(
        store.delete_collection(&alias).await,
        Err(StoreError::Foreign { .. })
    ));

    // `ragd index` with the pipeline's collection named like it.
    let env = BinEnv::new(Duration::ZERO).await;
    use_server(&env, &url);
    let pipeline = env.dir.path().join("pipelines/docs.toml");
    let toml = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        format!("{toml}[qdrant]\ncollection = \"{foreign}\"\n"),
    )
    .unwrap();
    write_many(&env.docs(), "n", 3);
    let out = ragd_index(&env).output().unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("not created by ragd"), "{shown}");

    // Still there, holding exactly its one point.
    let count = raw
        .count(qdrant_client::qdrant::CountPointsBuilder::new(&foreign).exact(true))
        .await
        .unwrap();
    assert_eq!(count.result.unwrap().count, 1);

    // ragd's mark, but Euclid distance: not usable for ragd's cosine vectors.
    let euclid = unique("euclid");
    raw.create_collection(
        CreateCollectionBuilder::new(&euclid)
            .vectors_config(VectorParamsBuilder::new(64, Distance::Euclid)),
    )
    .await
    .unwrap();
    raw.create_field_index(
        CreateFieldIndexCollectionBuilder::new(&euclid, OWNER_FIELD, FieldType::Keyword).wait(true),
    )
    .await
    .unwrap();
    let err = store.ensure_collection(&euclid, 64).await.unwrap_err();
    assert!(matches!(err, StoreError::Incompatible { .. }), "{err:?}");
    assert!(err.to_string().contains("Euclid"), "{err}");

    // What ragd creates it may drop.
    let mine = unique("mine");
    store.ensure_collection(&mine, 64).await.unwrap();
    assert!(store.delete_collection(&mine).await.unwrap());

    for c in [&foreign, &euclid] {
        raw.delete_collection(c.as_str()).await.unwrap();
    }
}

/// A collection an older ragd created has no mark. The install whose ledger
/// records writing into it marks it and goes on; another install (no such
/// ledger) is refused, and so is the first one once a point in it is not ragd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_collection_the_ledger_records_is_adopted_only_when_its_points_are_ragds() {
    let Some((url, key)) = shared() else {
        return;
    };
    let raw = raw_client(&url, &key);
    let collection = unique("older");
    let env = BinEnv::new(Duration::ZERO).await;
    use_server(&env, &url);
    let pipeline = env.dir.path().join("pipelines/docs.toml");
    let toml = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        format!("{toml}[qdrant]\ncollection = \"{collection}\"\n"),
    )
    .unwrap();
    write_many(&env.docs(), "n", 3);
    let out = ragd_index(&env).output().unwrap();
    assert!(out.status.success(), "{}", report(&out));
    // The alias's collection, as an older ragd left it: no mark.
    let store = QdrantStore::connect(&url, key.clone(), &ServerOptions::default()).unwrap();
    let real = store
        .resolve_alias(&collection)
        .await
        .unwrap()
        .unwrap_or_else(|| collection.clone());
    let unmark = || async {
        raw.delete_field_index(
            qdrant_client::qdrant::DeleteFieldIndexCollectionBuilder::new(&real, OWNER_FIELD)
                .wait(true),
        )
        .await
        .unwrap();
    };
    unmark().await;
    assert!(matches!(
        store.ensure_collection(&collection, 64).await,
        Err(StoreError::Foreign { .. })
    ));

    // Another installation, same config, no ledger: refused.
    let stranger = BinEnv::new(Duration::ZERO).await;
    use_server(&stranger, &url);
    std::fs::copy(&pipeline, stranger.dir.path().join("pipelines/docs.toml")).unwrap();
    write_many(&stranger.docs(), "s", 2);
    let out = ragd_index(&stranger).output().unwrap();
    assert!(!out.status.success(), "{}", report(&out));
    assert!(
        report(&out).contains("not created by ragd"),
        "{}",
        report(&out)
    );

    // The installation that wrote it: adopted (marked), and a new file indexed.
    write_many(&env.docs(), "m", 1);
    let out = ragd_index(&env).output().unwrap();
    assert!(out.status.success(), "{}", report(&out));
    store.ensure_collection(&collection, 64).await.unwrap();
    let ledger = Ledger::open(&env.state_dir().join("ledger.sqlite")).unwrap();
    assert_collection_matches_ledger(&store, &collection, &ledger, 4).await;
    drop(ledger);

    // Unmarked again, with one point that is not ragd's: refused, untouched.
    unmark().await;
    raw.upsert_points(
        UpsertPointsBuilder::new(
            &real,
            vec![PointStruct::new(
                Uuid::new_v4().to_string(),
                vec![0.5; 64],
                [
                    ("pipeline", "docs".into()),
                    ("path", "m0.md".into()),
                    ("chunk_index", 0.into()),
                ],
            )],
        )
        .wait(true),
    )
    .await
    .unwrap();
    write_many(&env.docs(), "k", 1);
    let out = ragd_index(&env).output().unwrap();
    assert!(!out.status.success(), "{}", report(&out));
    assert!(
        report(&out).contains("not created by ragd"),
        "{}",
        report(&out)
    );

    raw.delete_collection(real.as_str()).await.unwrap();
}

/// Two installations (two state directories) with the same pipeline on one
/// server: the second is refused the first's collection instead of sharing it
/// (their reconciles would delete each other's points), and the first's points
/// stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_installation_is_refused_the_collection() {
    let Some((url, key)) = shared() else {
        return;
    };
    let collection = unique("twice");
    let install = || async {
        let env = BinEnv::new(Duration::ZERO).await;
        use_server(&env, &url);
        let pipeline = env.dir.path().join("pipelines/docs.toml");
        let toml = std::fs::read_to_string(&pipeline).unwrap();
        std::fs::write(
            &pipeline,
            format!("{toml}[qdrant]\ncollection = \"{collection}\"\n"),
        )
        .unwrap();
        env
    };
    let first = install().await;
    write_many(&first.docs(), "a", 3);
    let out = ragd_index(&first).output().unwrap();
    assert!(out.status.success(), "{}", report(&out));

    let second = install().await;
    write_many(&second.docs(), "b", 2);
    let out = ragd_index(&second).output().unwrap();
    assert!(!out.status.success(), "{}", report(&out));
    assert!(
        report(&out).contains("another ragd installation"),
        "{}",
        report(&out)
    );

    let store = QdrantStore::connect(&url, key.clone(), &ServerOptions::default()).unwrap();
    let ledger = Ledger::open(&first.state_dir().join("ledger.sqlite")).unwrap();
    assert_collection_matches_ledger(&store, &collection, &ledger, 3).await;
    // The first installation goes on as before.
    write_many(&first.docs(), "c", 1);
    drop(ledger);
    let out = ragd_index(&first).output().unwrap();
    assert!(out.status.success(), "{}", report(&out));
    let real = store.resolve_alias(&collection).await.unwrap();
    let _ = store
        .delete_collection(real.as_deref().unwrap_or(&collection))
        .await;
}

/// The layout settings reach the server, and `pipeline` gets a tenant index.
#[tokio::test]
async fn collections_get_the_configured_layout_and_a_tenant_index() {
    let Some((url, key)) = shared() else {
        return;
    };
    let options = ServerOptions {
        layout: Layout {
            shard_number: Some(2),
            replication_factor: Some(1),
            write_consistency_factor: Some(1),
            on_disk_payload: Some(false),
        },
        ..Default::default()
    };
    let store = QdrantStore::connect(&url, key.clone(), &options).unwrap();
    let c = unique("layout");
    store.ensure_collection(&c, 8).await.unwrap();
    let raw = Qdrant::from_url(&url)
        .api_key(key)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let info = raw.collection_info(&c).await.unwrap().result.unwrap();
    let params = info.config.as_ref().unwrap().params.as_ref().unwrap();
    assert_eq!(params.shard_number, 2);
    assert_eq!(params.replication_factor, Some(1));
    assert_eq!(params.write_consistency_factor, Some(1));
    // Deprecated in qdrant-client 1.20 (current Qdrant moves it into payload
    // storage params); 1.14 knows only this field.
    #[allow(deprecated)]
    let on_disk = params.on_disk_payload;
    assert!(!on_disk);
    let pipeline = format!(
        "{:?}",
        info.payload_schema.get("pipeline").expect("pipeline index")
    );
    assert!(pipeline.contains("is_tenant: Some(true)"), "{pipeline}");
    assert!(info.payload_schema.contains_key("path"));
    assert!(info.payload_schema.contains_key(OWNER_FIELD));
    store.delete_collection(&c).await.unwrap();
}

/// Readers going through the alias while it is switched back and forth never
/// find it missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_miss_the_alias_during_switches() {
    let Some((url, key)) = shared() else {
        return;
    };
    let store =
        std::sync::Arc::new(QdrantStore::connect(&url, key, &ServerOptions::default()).unwrap());
    let (alias, a, b) = (unique("live"), unique("va"), unique("vb"));
    store.ensure_collection(&a, 4).await.unwrap();
    store.ensure_collection(&b, 4).await.unwrap();
    store.set_alias(&alias, &a).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, alias, stop) = (store.clone(), alias.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .count(&alias, &PointFilter::default())
                    .await
                    .expect("the alias is there at every moment");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..40 {
        store
            .set_alias(&alias, if i % 2 == 0 { &b } else { &a })
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), Some(a.clone()));
    store.delete_collection(&a).await.unwrap();
    store.delete_collection(&b).await.unwrap();
}

/// A raw collection named like one of the pipeline's versions, `{alias}_v1`, made
/// on the shared server by somebody else (no ragd mark, one point): a full
/// reindex builds past it (`_v2`, then `_v3`), drops only its own old versions and
/// leaves the foreign one holding its point; a fresh install whose first
/// versioned collection would be that very name refuses it with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reindex_leaves_a_foreign_collection_named_like_a_version() {
    let Some((url, key)) = shared() else {
        return;
    };
    let raw = raw_client(&url, &key);
    let server = || Backend::Server {
        url: url.clone(),
        key: key.clone(),
    };
    let env = TestEnv::on(server(), "", "").await;
    env.write("a.md", "# A\n\nThe dugong grazes on seagrass.\n");
    env.write("b.md", "# B\n\nThe okapi lives in the forest.\n");
    let summary = env.index().await;
    assert_eq!(summary.added, 2, "{summary:?}");
    let ours = env.total_points().await;
    assert!(ours >= 2);

    let foreign = format!("{}_v1", env.collection);
    make_foreign(&raw, &foreign).await;

    let app = env.app();
    let outcomes = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
        .await
        .expect("the reindex goes on past a foreign version");
    assert_eq!(outcomes[0].collection, format!("{}_v2", env.collection));
    assert!(outcomes[0].switched(), "{:?}", outcomes[0]);
    assert_eq!(
        env.store.resolve_alias(&env.collection).await.unwrap(),
        Some(format!("{}_v2", env.collection))
    );
    assert_eq!(
        env.total_points().await,
        ours,
        "ragd's points behind the alias"
    );
    assert_foreign_intact(&raw, &foreign).await;

    // Again: ragd drops its own `_v2`, and tries (and declines) the foreign one.
    let outcomes = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
        .await
        .expect("a second reindex");
    assert_eq!(outcomes[0].collection, format!("{}_v3", env.collection));
    let mut left: Vec<String> = raw
        .list_collections()
        .await
        .unwrap()
        .collections
        .into_iter()
        .map(|c| c.name)
        .filter(|c| c.starts_with(&env.collection))
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![foreign.clone(), format!("{}_v3", env.collection)],
        "ragd's old versions dropped, the foreign one left"
    );
    assert_foreign_intact(&raw, &foreign).await;
    drop(app);
    raw.delete_collection(foreign.as_str()).await.unwrap();

    // A fresh install (the daemon's layout: `C_v1` behind the alias `C`) whose
    // `C_v1` is somebody else's: refused, named, nothing written into it.
    let fresh = TestEnv::on(server(), "", "").await;
    fresh.write("a.md", "# A\n\nThe dugong grazes on seagrass.\n");
    let foreign = format!("{}_v1", fresh.collection);
    make_foreign(&raw, &foreign).await;
    let app = fresh.app();
    let err = fresh
        .pipeline(&app)
        .ensure_layout()
        .await
        .expect_err("a foreign C_v1 is not ragd's to use");
    let shown = format!("{err:#}");
    assert!(
        shown.contains("not created by ragd") && shown.contains(&foreign),
        "{shown}"
    );
    assert_foreign_intact(&raw, &foreign).await;
    drop(app);
    raw.delete_collection(foreign.as_str()).await.unwrap();
}

/// A collection without ragd's mark, 64 dimensions like the test model's, with
/// one point of somebody else's.
async fn make_foreign(raw: &Qdrant, name: &str) {
    raw.create_collection(
        CreateCollectionBuilder::new(name)
            .vectors_config(VectorParamsBuilder::new(64, Distance::Cosine)),
    )
    .await
    .unwrap();
    raw.upsert_points(
        UpsertPointsBuilder::new(
            name,
            vec![PointStruct::new(
                7,
                vec![0.5; 64],
                [("owner", "someone else".into())],
            )],
        )
        .wait(true),
    )
    .await
    .unwrap();
}

/// Still there with exactly its one point, untouched.
async fn assert_foreign_intact(raw: &Qdrant, name: &str) {
    let points = raw
        .scroll(
            qdrant_client::qdrant::ScrollPointsBuilder::new(name)
                .limit(10)
                .with_payload(true),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} is gone: {e}"))
        .result;
    assert_eq!(points.len(), 1, "{name}: {points:?}");
    assert_eq!(
        points[0]
            .payload
            .get("owner")
            .and_then(|v| v.as_str())
            .map(String::as_str),
        Some("someone else"),
        "{points:?}"
    );
}

/// `tls_ca_file` is trusted by the Qdrant channel as by the HTTP clients: the
/// real server behind a TLS proxy whose certificate a private CA issued is
/// used through the config (writes and reads); without the CA file the
/// certificate is refused at once, saying what to do, not retried as a server
/// that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_named_in_tls_ca_file_is_trusted_for_the_server() {
    use crate::support::tls::{TlsProxy, target_of};
    let Some((url, key)) = real::qdrant() else {
        return;
    };
    let proxy = TlsProxy::start(target_of(&url), &[b"h2"]).await;
    let root = proxy.dir.path();
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    let key_line = key
        .as_ref()
        .map(|k| format!("api_key = \"{k}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        root.join("config/ragd.toml"),
        format!(
            "state_dir = \"../state\"\ntls_ca_file = \"../ca.pem\"\n\
             [qdrant]\nurl = \"{}\"\ntimeout_secs = 10\n{key_line}",
            proxy.url()
        ),
    )
    .unwrap();
    let config = ragd::config::load(&root.join("config/ragd.toml")).unwrap();
    let store = ragd::ops::open_store(&config).unwrap().store;
    let collection = unique("tls");
    store.ensure_collection(&collection, 4).await.unwrap();
    assert!(
        store
            .list_collections()
            .await
            .unwrap()
            .contains(&collection)
    );
    assert_eq!(
        store
            .count(&collection, &PointFilter::default())
            .await
            .unwrap(),
        0
    );
    assert!(store.delete_collection(&collection).await.unwrap());

    // The same server without the CA: the system's roots do not know it.
    let options = ServerOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let bare = QdrantStore::connect(&proxy.url(), key, &options).unwrap();
    let err = bare.list_collections().await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_transient(), "{err:?}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("tls_ca_file"), "{text}");
}
