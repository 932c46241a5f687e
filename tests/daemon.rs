//! `ragd run`: real filesystem events in temp folders, asserted on what ends up
//! in Qdrant and the ledger. Every wait polls with a generous deadline; nothing
//! asserts on timing.

use std::sync::Arc;
use std::time::Duration;

use ragd::ledger::{FileState, Ledger};
use ragd::open_webui::OpenWebUi;
use ragd::store::edge::EdgeStore;
use ragd::store::{PointFilter, VectorStore};

use crate::support::daemon::{
    BinEnv, InProcessDaemon, eventually, eventually_within, sigterm, wait_exit, write_many,
};
use crate::support::env::TestEnv;
use crate::support::report;

fn note(word: &str) -> String {
    format!("# About {word}\n\nThis note is about the {word}, and only the {word}.\n")
}

/// Text of the first chunk stored for `rel`, if any.
async fn stored_text(env: &TestEnv, rel: &str) -> Option<String> {
    env.points(rel)
        .await
        .first()
        .map(|p| p.payload.text.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_modify_and_delete_follow_the_folder() {
    let env = TestEnv::new("").await;
    // Not the only file: a source folder that turns up empty deletes nothing
    // (a safety rail against unmounted shares).
    env.write("keep.md", note("kestrel"));
    let d = InProcessDaemon::start(&env);

    env.write("a.md", note("albatross"));
    eventually("a dropped file is indexed", || async {
        stored_text(&env, "a.md")
            .await
            .is_some_and(|t| t.contains("albatross"))
    })
    .await;

    env.write("a.md", note("buffalo"));
    eventually("a modified file is re-indexed", || async {
        let pts = env.points("a.md").await;
        pts.len() == 1 && pts[0].payload.text.contains("buffalo")
    })
    .await;

    env.remove("a.md");
    eventually(
        "a deleted file leaves no points and no ledger row",
        || async { env.points("a.md").await.is_empty() && d.state("a.md").is_none() },
    )
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_save_is_one_modification_and_temp_files_are_never_indexed() {
    let env = TestEnv::new("").await;
    env.write("doc.md", note("cormorant"));
    let d = InProcessDaemon::start(&env);
    eventually("the startup reconcile indexes what was there", || async {
        stored_text(&env, "doc.md")
            .await
            .is_some_and(|t| t.contains("cormorant"))
    })
    .await;

    // What editors do: write a temp file next to the target, rename it over.
    for temp in [".doc.md.swp", "doc.md.tmp", "doc.md~"] {
        env.write(temp, note("dolphin"));
        std::fs::rename(env.docs().join(temp), env.docs().join("doc.md")).unwrap();
    }
    // A partial download that stays partial.
    env.write("big.pdf.part", b"%PDF-1.4 half");
    eventually("the saved content is indexed", || async {
        stored_text(&env, "doc.md")
            .await
            .is_some_and(|t| t.contains("dolphin"))
    })
    .await;
    let rows = d.ledger.files("docs").unwrap();
    let mut paths: Vec<_> = rows.keys().cloned().collect();
    paths.sort();
    assert_eq!(paths, vec!["doc.md"], "temp names never reach the ledger");
    assert_eq!(env.total_points().await, 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_and_folder_renames_keep_vectors_without_re_embedding() {
    let env = TestEnv::new("").await;
    env.write("inbox/x.md", note("eland"));
    env.write("inbox/y.md", note("ferret"));
    env.write("inbox/sub/z.md", note("gannet"));
    let d = InProcessDaemon::start(&env);
    eventually("initial files indexed", || async {
        d.count(FileState::Indexed) == 3
    })
    .await;
    let x_before = env.points("inbox/x.md").await;
    let embeds = env.embed.stats().texts;

    // A move of one file...
    std::fs::create_dir_all(env.docs().join("archive")).unwrap();
    std::fs::rename(
        env.docs().join("inbox/x.md"),
        env.docs().join("archive/x-renamed.md"),
    )
    .unwrap();
    eventually("a moved file's points follow it", || async {
        env.points("inbox/x.md").await.is_empty()
            && env.points("archive/x-renamed.md").await.len() == 1
    })
    .await;
    // ...and a whole folder.
    std::fs::rename(env.docs().join("inbox"), env.docs().join("outbox")).unwrap();
    eventually("a renamed folder's files follow it", || async {
        env.points("outbox/y.md").await.len() == 1
            && env.points("outbox/sub/z.md").await.len() == 1
            && env.points("inbox/y.md").await.is_empty()
            && env.points("inbox/sub/z.md").await.is_empty()
    })
    .await;

    assert_eq!(env.embed.stats().texts, embeds, "moves must not re-embed");
    let moved = env
        .store
        .scroll(
            &env.collection,
            &PointFilter::file("docs", "archive/x-renamed.md"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(moved[0].payload.text, x_before[0].payload.text);
    assert_eq!(
        moved[0].payload.content_hash,
        x_before[0].payload.content_hash
    );
    assert!(!moved[0].vector.is_empty());
    // The ledger follows the points (the old row goes last): wait for it.
    eventually("the ledger lists only the new paths", || async {
        d.ledger.files("docs").unwrap().len() == 3
    })
    .await;
    let mut paths: Vec<_> = d.ledger.files("docs").unwrap().into_keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        vec!["archive/x-renamed.md", "outbox/sub/z.md", "outbox/y.md"]
    );
    assert_eq!(d.count(FileState::Indexed), 3);
    assert_eq!(env.total_points().await, 3);
    d.stop().await;
}

/// Renaming the folder that holds every file is a move, not a mass delete:
/// the rail (at half the files) lets it through, and the files move in
/// batches, a store write per batch of up to 256 files rather than a durable
/// upsert and delete per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_folder_of_every_file_moves_in_batches() {
    let env = TestEnv::new("").await;
    for i in 0..300 {
        env.write(&format!("inbox/f{i:03}.md"), note(&format!("wren{i}")));
    }
    let d = InProcessDaemon::start(&env);
    eventually("initial files indexed", || async {
        d.count(FileState::Indexed) == 300
    })
    .await;
    let embeds = env.embed.stats().texts;
    let upserts = env.store.layer().upserts();
    std::fs::rename(env.docs().join("inbox"), env.docs().join("outbox")).unwrap();
    eventually("the points and the ledger follow the rename", || async {
        env.points("outbox/f000.md").await.len() == 1
            && env.points("outbox/f299.md").await.len() == 1
            && d.ledger
                .files("docs")
                .unwrap()
                .keys()
                .all(|p| p.starts_with("outbox/"))
            && d.count(FileState::Indexed) == 300
    })
    .await;
    assert_eq!(env.embed.stats().texts, embeds, "moves must not re-embed");
    assert_eq!(env.total_points().await, 300);
    let writes = env.store.layer().upserts() - upserts;
    assert!(
        writes <= 10,
        "300 moved files took {writes} store writes; two batches should do"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mkdir_p_of_a_deep_tree_indexes_every_level() {
    let env = TestEnv::new("").await;
    let d = InProcessDaemon::start(&env);
    // Give the watcher a moment to be armed is not needed: the startup reconcile
    // and the watcher together cover files written at any time.
    let mut expected = Vec::new();
    let mut rel = String::new();
    for level in 0..8 {
        rel.push_str(&format!("level{level}/"));
        expected.push(format!("{rel}file{level}.md"));
    }
    std::fs::create_dir_all(env.docs().join(&rel)).unwrap();
    for (i, path) in expected.iter().enumerate() {
        env.write(path, note(&format!("heron{i}")));
    }
    eventually("every file of the deep tree is indexed", || async {
        for path in &expected {
            if env.points(path).await.len() != 1 {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(env.total_points().await, expected.len() as u64);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_2000_files_is_fully_indexed() {
    let env = TestEnv::new("").await;
    let d = InProcessDaemon::start(&env);
    write_many(&env.docs().join("burst/a"), "a", 1000);
    write_many(&env.docs().join("burst/b"), "b", 1000);
    eventually_within(
        "all 2,000 files indexed",
        Duration::from_secs(300),
        || async { d.count(FileState::Indexed) == 2000 },
    )
    .await;
    assert_eq!(env.total_points().await, 2000);
    assert_eq!(d.count(FileState::Indexing), 0);
    assert_eq!(d.count(FileState::Failed), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_chunking_rebuilds_into_a_new_collection_behind_the_alias() {
    let env = TestEnv::new("").await;
    let long: String = (0..30)
        .map(|i| format!("## Part {i}\n\nPart {i} describes the ibis colony in some detail.\n\n"))
        .collect();
    env.write("long.md", &long);
    env.write("short.md", note("jackal"));
    let d = InProcessDaemon::start(&env);
    eventually("initial index", || async {
        d.count(FileState::Indexed) == 2
    })
    .await;
    assert_eq!(
        env.store
            .resolve_alias(&env.collection)
            .await
            .unwrap()
            .as_deref(),
        Some(format!("{}_v1", env.collection).as_str())
    );
    let chunks_before = env.points("long.md").await.len();
    d.stop().await;

    // Bigger chunks: the fingerprint changes, so the next start rebuilds.
    let toml_path = env.dir.path().join("pipelines/docs.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(
        &toml_path,
        toml.replace("max_size = 400", "max_size = 1200"),
    )
    .unwrap();
    let d = InProcessDaemon::start(&env);
    eventually("the alias points at the rebuilt collection", || async {
        env.store
            .resolve_alias(&env.collection)
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some(format!("{}_v2", env.collection).as_str())
    })
    .await;
    // The marker goes once the switch (alias, ledger copy, old drop) is complete.
    let marker = env.dir.path().join("state/reindex/docs.json");
    eventually("the reindex finishes", || async { !marker.exists() }).await;
    eventually("the ledger describes the live collection", || async {
        d.count(FileState::Indexed) == 2
    })
    .await;
    let chunks_after = env.points("long.md").await.len();
    assert!(
        chunks_after < chunks_before,
        "{chunks_after} vs {chunks_before}"
    );
    let rec = d.ledger.get("docs", "long.md").unwrap().unwrap();
    assert_eq!(rec.chunk_count as usize, chunks_after);
    // The server is shared: only this environment's collections are ours to count.
    let collections: Vec<String> = env
        .store
        .list_collections()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.starts_with(&env.collection))
        .collect();
    assert_eq!(
        collections,
        vec![format!("{}_v2", env.collection)],
        "the old version is dropped"
    );
    assert!(!env.dir.path().join("state/reindex/docs.json").exists());
    d.stop().await;

    // `ragd reindex` by hand: v3, same content.
    let app = env.app();
    let outcomes = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
        .await
        .unwrap();
    assert_eq!(outcomes[0].collection, format!("{}_v3", env.collection));
    assert_eq!(
        env.store
            .resolve_alias(&env.collection)
            .await
            .unwrap()
            .as_deref(),
        Some(format!("{}_v3", env.collection).as_str())
    );
    assert_eq!(env.points("long.md").await.len(), chunks_after);
    assert_eq!(env.points("short.md").await.len(), 1);
    assert_eq!(
        app.ledger
            .count_by_state("docs")
            .unwrap()
            .get(&FileState::Indexed),
        Some(&2)
    );
}

/// The real binary: drop files, SIGTERM while it is embedding them, restart, and
/// check nothing is left half-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_work_then_restart_leaves_nothing_half_done() {
    // 20 ms per text, one request at a time: 200 files take several seconds.
    let env = BinEnv::new(Duration::from_millis(20)).await;
    let mut ragd = env.start(1);
    eventually("the daemon becomes ready", || async {
        env.http_status("/readyz").await == Some(200)
    })
    .await;
    assert_eq!(env.http_status("/healthz").await, Some(200));

    write_many(&env.docs().join("drop"), "f", 200);
    eventually("indexing has started", || async {
        env.ledger()
            .and_then(|l| l.count_by_state("docs").ok())
            .is_some_and(|m| m.get(&FileState::Indexed).copied().unwrap_or(0) > 0)
    })
    .await;
    sigterm(&ragd);
    let status = wait_exit(&mut ragd, Duration::from_secs(90)).await;
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        env.log(1)
    );
    let indexed_at_stop = count(&env, FileState::Indexed);
    assert!(
        indexed_at_stop < 200,
        "stopped mid-work, not after: {indexed_at_stop}\n{}",
        env.log(1)
    );

    let mut ragd = env.start(2);
    eventually_within(
        "all files indexed after the restart",
        Duration::from_secs(180),
        || async {
            count(&env, FileState::Indexed) == 200 && count(&env, FileState::Indexing) == 0
        },
    )
    .await;
    sigterm(&ragd);
    let status = wait_exit(&mut ragd, Duration::from_secs(90)).await;
    assert!(status.success(), "{}", env.log(2));

    // Points match the ledger exactly: every file's chunks, nothing extra.
    let ledger = Ledger::open(&env.state_dir().join("ledger.sqlite")).unwrap();
    let rows = ledger.files("docs").unwrap();
    assert_eq!(rows.len(), 200);
    assert!(
        rows.values().all(|r| r.state == FileState::Indexed),
        "no half-done rows"
    );
    let store = EdgeStore::open(&env.state_dir().join("qdrant")).unwrap();
    let expected: u64 = rows.values().map(|r| r.chunk_count as u64).sum();
    assert_eq!(
        store.count("docs", &PointFilter::default()).await.unwrap(),
        expected
    );
    for r in rows.values().take(20) {
        let n = store
            .count("docs", &PointFilter::file("docs", &r.path))
            .await
            .unwrap();
        assert_eq!(n, r.chunk_count as u64, "{}", r.path);
    }
}

fn count(env: &BinEnv, state: FileState) -> u64 {
    env.ledger()
        .and_then(|l| l.count_by_state("docs").ok())
        .and_then(|m| m.get(&state).copied())
        .unwrap_or(0)
}

/// With a knowledge base, a file change is published from the ledger alone:
/// the knowledge base is listed in full at startup, not on every edit (its
/// interval, `verify_interval_secs`, is 600 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_is_published_without_listing_the_knowledge_base() {
    let fake = crate::support::fake_openwebui::spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "daemon", 30).await;
    env.write("keep.md", note("kestrel"));
    let d = InProcessDaemon::start(&env);
    let kb_linked = |rel: &'static str| {
        let ledger = d.ledger.clone();
        move || {
            let ledger = ledger.clone();
            async move {
                ledger
                    .kb_files("docs")
                    .ok()
                    .and_then(|rows| rows.get(rel).map(|r| r.state))
                    == Some(ragd::ledger::KbState::Linked)
            }
        }
    };
    eventually("the startup run links the first file", kb_linked("keep.md")).await;
    // The startup sync lists the base after it links (verify), and the row is
    // linked first: wait for the listing rather than race it.
    eventually("startup lists the knowledge base", || {
        let n = fake.counters().listings;
        async move { n >= 1 }
    })
    .await;
    let listed = fake.counters().listings;

    env.write("a.md", note("albatross"));
    eventually("a dropped file is linked", kb_linked("a.md")).await;
    assert_eq!(
        fake.counters().listings,
        listed,
        "an edit listed the knowledge base"
    );
    d.stop().await;
}

/// `ragd run` with a knowledge base, against the fake and the real Open WebUI:
/// files dropped, edited, moved with their folder and deleted while it runs;
/// each time the knowledge base ends listing every file once, at its current
/// version, under the id the ledger recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_the_knowledge_base_equal_to_the_folder() {
    on_fake_and_real(daemon_follows_the_folder).await;
}

async fn daemon_follows_the_folder(url: String, key: String) {
    let (url, key) = (url.as_str(), key.as_str());
    use crate::support::owui::{client, unique};
    let env = TestEnv::with_knowledge(url, key, &unique("daemon"), 120).await;
    let topic = unique("numbat");
    env.write(
        "top.md",
        format!("# Top\n\nThe top file, about the {topic}.\n"),
    );
    env.write(
        "d/a.md",
        format!("# A\n\nVersion 1 of a, about the {topic}.\n"),
    );
    env.write("d/b.md", format!("# B\n\nFile b, about the {topic}.\n"));
    let d = InProcessDaemon::start(&env);
    let c = Arc::new(client(url, key));
    let equals = |want: &'static [&'static str]| kb_equals_check(&d, &c, want);
    let within = Duration::from_secs(120);
    let all = &["d/a.md", "d/b.md", "top.md"];
    eventually_within("startup publishes", within, equals(all)).await;

    let version = |ledger: &Ledger| {
        ledger.kb_files("docs").unwrap()["d/a.md"]
            .content_hash
            .clone()
    };
    let before = version(&d.ledger);
    env.write(
        "d/a.md",
        format!("# A\n\nVersion 2 of a, about the {topic}.\n"),
    );
    eventually_within("an edit replaces the version", within, || {
        let (ledger, c) = (d.ledger.clone(), c.clone());
        let changed = version(&ledger) != before;
        async move { changed && kb_equals(&ledger, &c, all).await }
    })
    .await;

    let ids = |ledger: &Ledger, dir: &str| {
        let rows = ledger.kb_files("docs").unwrap();
        ["a.md", "b.md"].map(|n| rows[&format!("{dir}/{n}")].file_id.clone())
    };
    let uploaded = ids(&d.ledger, "d");
    std::fs::rename(env.docs().join("d"), env.docs().join("e")).unwrap();
    let moved = &["e/a.md", "e/b.md", "top.md"];
    eventually_within("a folder move follows", within, equals(moved)).await;
    // Moved with their names: the same uploads, not uploaded again.
    assert_eq!(ids(&d.ledger, "e"), uploaded);

    env.remove("top.md");
    eventually_within("a deletion follows", within, equals(&["e/a.md", "e/b.md"])).await;
    d.stop().await;
}

/// Run `case(url, key)` against the fake Open WebUI, then against the real one
/// when `RAGD_OWUI_URL` names one.
async fn on_fake_and_real<F, Fut>(case: F)
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let fake = crate::support::fake_openwebui::spawn_fake("sk-fake").await;
    case(fake.url.clone(), fake.api_key.clone()).await;
    if let Some((url, key)) = crate::support::owui::real_server() {
        case(url, key).await;
    }
}

/// A check for `eventually`: [`kb_equals`] over the daemon's ledger.
fn kb_equals_check(
    d: &InProcessDaemon,
    c: &Arc<OpenWebUi>,
    want: &'static [&'static str],
) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
    let (ledger, c) = (d.ledger.clone(), c.clone());
    move || {
        let (ledger, c) = (ledger.clone(), c.clone());
        Box::pin(async move { kb_equals(&ledger, &c, want).await })
    }
}

/// The knowledge base equals `want` (sorted): each listed once, under the id
/// its row recorded, the row linked at the file's current text.
async fn kb_equals(ledger: &Ledger, c: &OpenWebUi, want: &[&str]) -> bool {
    let (Ok(rows), Ok(files)) = (ledger.kb_files("docs"), ledger.files("docs")) else {
        return false;
    };
    let Some(kb) = rows.values().next().map(|r| r.kb_id.clone()) else {
        return false;
    };
    let listed = crate::support::owui::listing_of(c, &kb, &rows).await;
    listed.keys().map(String::as_str).eq(want.iter().copied())
        && rows.len() == want.len()
        && want.iter().all(|p| {
            let Some(row) = rows.get(*p) else {
                return false;
            };
            listed[*p].len() == 1
                && Some(listed[*p][0].id.as_str()) == row.file_id.as_deref()
                && row.state == ragd::ledger::KbState::Linked
                && row.old_file_id.is_none()
                && files.get(*p).and_then(|f| f.content_hash.as_ref()) == Some(&row.content_hash)
        })
}

/// The knowledge base is deleted in Open WebUI while `ragd run` goes on: the
/// next change finds it gone, creates it again by name and publishes every
/// file there — no restart, no file left out. Against the fake and the real
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knowledge_base_deleted_while_running_is_created_again_and_refilled() {
    on_fake_and_real(daemon_recreates_the_knowledge_base).await;
}

async fn daemon_recreates_the_knowledge_base(url: String, key: String) {
    let (url, key) = (url.as_str(), key.as_str());
    use crate::support::owui::{client, unique};
    let env = TestEnv::with_knowledge(url, key, &unique("gone"), 120).await;
    let topic = unique("pangolin");
    env.write("a.md", format!("# A\n\nFile a, about the {topic}.\n"));
    env.write("b.md", format!("# B\n\nFile b, about the {topic}.\n"));
    let d = InProcessDaemon::start(&env);
    let c = Arc::new(client(url, key));
    let within = Duration::from_secs(120);
    let equals = |want: &'static [&'static str]| kb_equals_check(&d, &c, want);
    eventually_within("startup publishes", within, equals(&["a.md", "b.md"])).await;
    let old = d.ledger.kb_files("docs").unwrap()["a.md"].kb_id.clone();

    c.delete_knowledge(&old).await.unwrap();
    env.write("c.md", format!("# C\n\nFile c, about the {topic}.\n"));
    eventually_within("every file is in a new base", within, || {
        let (ledger, c, old) = (d.ledger.clone(), c.clone(), old.clone());
        async move {
            ledger
                .kb_files("docs")
                .is_ok_and(|rows| rows.values().all(|r| r.kb_id != old))
                && kb_equals(&ledger, &c, &["a.md", "b.md", "c.md"]).await
        }
    })
    .await;
    d.stop().await;
}

/// The first publish of a large folder to a slow Open WebUI can take hours; a
/// file edited meanwhile must reach the vector index without waiting for it.
/// Publishing gives way once it has run for `publish_slice_secs` and newer
/// changes wait, and goes on after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_publish_gives_way_to_newer_changes() {
    use crate::support::fake_openwebui::spawn_fake;
    const FILES: usize = 60;
    let fake = spawn_fake("sk-fake").await;
    // At least 0.6 s a file, four at a time: the whole publish takes ≥ 9 s.
    fake.set_processing(0, Duration::from_millis(600));
    let env = TestEnv::with_knowledge_and(
        &fake.url,
        &fake.api_key,
        "slow",
        60,
        "publish_slice_secs = 1\n",
    )
    .await;
    for i in 0..FILES {
        env.write(&format!("f{i:02}.md"), note(&format!("okapi number {i}")));
    }
    let d = InProcessDaemon::start(&env);
    let linked = |d: &InProcessDaemon| {
        d.ledger.kb_files("docs").map_or(0, |rows| {
            rows.values()
                .filter(|r| r.state == ragd::ledger::KbState::Linked)
                .count()
        })
    };
    eventually("publishing has started", || async { linked(&d) > 0 }).await;

    env.write("late.md", note("latecomer"));
    eventually("the late file is indexed", || async {
        d.state("late.md") == Some(FileState::Indexed)
    })
    .await;
    let when_indexed = linked(&d);
    assert!(
        when_indexed < FILES,
        "the late file waited for the whole publish ({when_indexed} of {FILES} linked)"
    );
    // A shutdown stops publishing too: it does not wait for the rest.
    d.stop().await;
    let ledger = env.app().ledger.clone();
    let at_stop = ledger.kb_files("docs").unwrap();
    let linked_at_stop = at_stop
        .values()
        .filter(|r| r.state == ragd::ledger::KbState::Linked)
        .count();
    assert!(
        linked_at_stop < FILES + 1,
        "the shutdown waited for the whole publish"
    );
    drop(ledger);

    // The next start goes on where it stopped: every file once, nothing twice.
    let d = InProcessDaemon::start(&env);
    eventually("every file is published after all", || async {
        linked(&d) == FILES + 1
    })
    .await;
    d.stop().await;
    let kb = kb_id_of(&env);
    assert_eq!(fake.knowledge_file_ids(&kb).len(), FILES + 1);
    assert_eq!(fake.files().len(), FILES + 1, "no upload left over");
}

fn kb_id_of(env: &TestEnv) -> String {
    let rows = env.app().ledger.kb_files("docs").unwrap();
    rows.values().next().expect("a row").kb_id.clone()
}

/// A rebuild that cannot index files the live collection has (the embedder
/// down for the whole build) does not switch: search keeps answering from the
/// live version, the ledger keeps its rows, and the next reindex, with the
/// embedder back, finishes the same build and switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_fails_indexed_files_is_not_switched_in() {
    let env = TestEnv::new("").await;
    env.write("a.md", note("heron"));
    env.write("b.md", note("egret"));
    {
        let app = env.app();
        let first = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .unwrap();
        assert!(first[0].switched());
    }
    let live = env.store.resolve_alias(&env.collection).await.unwrap();
    let before = env.total_points().await;
    assert!(before >= 2);

    env.embed.set_fail_rate(1.0);
    {
        let app = env.app();
        let held = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .unwrap();
        assert!(!held[0].switched());
        assert_eq!(held[0].held_back.failed, vec!["a.md", "b.md"]);
        assert_eq!(
            (held[0].held_back.unsure, held[0].held_back.mass_delete),
            (0, None)
        );
        assert_eq!(
            app.ledger.count_by_state("docs").unwrap()[&FileState::Indexed],
            2
        );
    }
    assert_eq!(
        env.store.resolve_alias(&env.collection).await.unwrap(),
        live
    );
    assert_eq!(env.total_points().await, before);
    assert_eq!(env.points("a.md").await.len(), 1);

    env.embed.set_fail_rate(0.0);
    let app = env.app();
    let done = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
        .await
        .unwrap();
    assert!(done[0].switched(), "{:?}", done[0].held_back);
    assert_eq!(done[0].collection, held_target(&live));
    assert_eq!(
        env.store
            .resolve_alias(&env.collection)
            .await
            .unwrap()
            .as_deref(),
        Some(done[0].collection.as_str())
    );
    assert_eq!(env.points("a.md").await.len(), 1);
    assert_eq!(env.points("b.md").await.len(), 1);
}

/// The version after `live` (`C_v1` → `C_v2`): the held-back build is resumed,
/// not begun again.
fn held_target(live: &Option<String>) -> String {
    let live = live.as_deref().expect("an alias");
    let (stem, n) = live.rsplit_once("_v").expect("a versioned collection");
    format!("{stem}_v{}", n.parse::<u64>().unwrap() + 1)
}

/// A rebuild whose source folder is gone (moved away: a vanished mount) or
/// turned up empty would switch in an empty collection. `ragd reindex` refuses
/// and says why; `ragd search` keeps answering from the live collection, and
/// the marker stays, so the reindex once the folder is back resumes the build
/// and switches. All through the binary, as an operator runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_a_vanished_or_emptied_folder_is_not_switched_in() {
    let env = TestEnv::new("").await;
    env.write("a.md", note("heron"));
    env.write("b.md", note("egret"));
    let out = env.ragd(&["reindex"]);
    assert!(out.status.success(), "{}", report(&out));
    let search = || {
        let out = env.ragd(&["search", "-p", "docs", "heron"]);
        assert!(out.status.success(), "{}", report(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(search().contains("about the heron"), "{}", search());
    let alias = || async {
        let store = env.fresh_store();
        store.resolve_alias(&env.collection).await.unwrap()
    };
    let live = alias().await;
    assert!(live.is_some());
    let marker = env.dir.path().join("state/reindex/docs.json");

    let aside = env.dir.path().join("docs-aside");
    std::fs::rename(env.docs(), &aside).unwrap();
    for (what, emptied) in [("moved away", false), ("emptied", true)] {
        if emptied {
            std::fs::create_dir(env.docs()).unwrap();
        }
        let out = env.ragd(&["reindex"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", report(&out));
        assert!(stdout.contains("alias NOT switched"), "{what}: {stdout}");
        assert!(
            stdout.contains(
                "2 live file(s) are under a folder the build could not read, or their source \
                 folder turned up empty"
            ),
            "{what}: {stdout}"
        );
        if !emptied {
            assert!(
                stdout.contains("scan: ") && stdout.contains("cannot open source folder"),
                "{what}: {stdout}"
            );
        }
        assert_eq!(alias().await, live, "{what}: the alias moved");
        assert!(
            search().contains("about the heron"),
            "{what}: search lost the live collection"
        );
        assert!(marker.exists(), "{what}: the marker went");
    }

    std::fs::remove_dir(env.docs()).unwrap();
    std::fs::rename(&aside, env.docs()).unwrap();
    let out = env.ragd(&["reindex"]);
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("alias switched"),
        "{}",
        report(&out)
    );
    assert_eq!(alias().await.as_deref(), Some(held_target(&live).as_str()));
    assert!(!marker.exists());
    assert!(search().contains("about the heron"));
}

/// A scan problem during the build (a folder behind a link whose target
/// vanished: an unmounted share; root reads every folder, so an unreadable one
/// cannot be made here) holds the switch back while live files are under it.
/// The live collection keeps answering for them; once the folder is back the
/// next reindex switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_scan_could_not_read_a_folder_is_not_switched_in() {
    use std::os::unix::fs::symlink;
    let env = TestEnv::new("follow_symlinks = true").await;
    env.write("a.md", note("heron"));
    let share = env.docs().join(".share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("b.md"), note("egret")).unwrap();
    std::fs::write(share.join("c.md"), note("ibis")).unwrap();
    symlink(&share, env.docs().join("share")).unwrap();
    {
        let app = env.app();
        let first = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .unwrap();
        assert!(first[0].switched(), "{:?}", first[0].held_back);
        assert_eq!(first[0].files_indexed, 3);
    }
    let live = env.store.resolve_alias(&env.collection).await.unwrap();
    assert_eq!(env.points("share/b.md").await.len(), 1);

    // The share is unmounted: the link's target is gone.
    let aside = env.dir.path().join("share-aside");
    std::fs::rename(&share, &aside).unwrap();
    {
        let app = env.app();
        let held = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .unwrap();
        assert!(!held[0].switched());
        assert_eq!(held[0].held_back.unsure, 2, "{:?}", held[0].held_back);
        assert!(held[0].held_back.failed.is_empty());
        assert!(
            held[0].scan_problems.iter().any(|p| p.contains("share")),
            "{:?}",
            held[0].scan_problems
        );
        let hits = env.pipeline(&app).search("egret", 3).await.unwrap();
        assert!(
            hits.iter().any(|h| h.payload.path == "share/b.md"),
            "{hits:?}"
        );
    }
    assert_eq!(
        env.store.resolve_alias(&env.collection).await.unwrap(),
        live
    );
    assert_eq!(env.points("share/b.md").await.len(), 1);
    assert_eq!(env.points("share/c.md").await.len(), 1);

    std::fs::rename(&aside, &share).unwrap();
    let app = env.app();
    let done = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
        .await
        .unwrap();
    assert!(done[0].switched(), "{:?}", done[0].held_back);
    assert_eq!(done[0].collection, held_target(&live));
    assert_eq!(env.points("share/b.md").await.len(), 1);
    assert_eq!(env.points("a.md").await.len(), 1);
}

/// A rebuild that lacks most of the live files (8 of 10 removed) trips the
/// mass-delete rail `ragd index` has, and is not switched in; the operator's
/// `--allow-mass-delete` lets the deliberate shrink switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_missing_most_files_is_switched_in_only_when_allowed() {
    let env = TestEnv::new("").await;
    for i in 0..10 {
        env.write(&format!("n{i}.md"), note(&format!("word{i}")));
    }
    {
        let app = env.app();
        let first = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .unwrap();
        assert!(first[0].switched());
    }
    let live = env.store.resolve_alias(&env.collection).await.unwrap();
    for i in 0..8 {
        env.remove(&format!("n{i}.md"));
    }
    {
        let app = env.app();
        let held = ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .unwrap();
        assert!(!held[0].switched());
        assert_eq!(held[0].held_back.mass_delete, Some((8, 10)));
        assert_eq!(held[0].held_back.unsure, 0);
        // The reconcile after it holds the same deletes back in the live collection.
        assert_eq!(app.ledger.files("docs").unwrap().len(), 10);
    }
    assert_eq!(
        env.store.resolve_alias(&env.collection).await.unwrap(),
        live
    );
    assert_eq!(env.points("n0.md").await.len(), 1);

    let app = env.app();
    let done = ragd::daemon::reindex_pipelines(&app, Some("docs"), true)
        .await
        .unwrap();
    assert!(done[0].switched(), "{:?}", done[0].held_back);
    assert_eq!(done[0].collection, held_target(&live));
    assert_eq!(app.ledger.files("docs").unwrap().len(), 2);
    assert!(env.points("n0.md").await.is_empty());
    assert_eq!(env.points("n9.md").await.len(), 1);
}

/// The daemon's reconcile holds a mass delete back as `ragd index` does, and
/// its summary says so (the daemon logs and counts it from there).
///
/// It is counted once, under its own reason: the metric read from a recorder
/// of this test's own (what `/metrics` renders).
#[test]
fn the_daemons_reconcile_holds_a_mass_delete_back() {
    let ((), metrics) = crate::support::metrics::own_metrics(async {
        let env = TestEnv::new("").await;
        for i in 0..10 {
            env.write(&format!("n{i}.md"), note(&format!("word{i}")));
        }
        env.index().await;
        for i in 0..8 {
            env.remove(&format!("n{i}.md"));
        }
        let app = env.app();
        let s = env
            .pipeline(&app)
            .run(&ragd::pipeline::RunRequest::reconcile())
            .await
            .unwrap();
        assert_eq!(s.mass_delete_blocked, Some((8, 10)));
        assert_eq!(s.held_back, 0, "a mass delete is not an unreadable folder");
        assert_eq!(s.deleted, 0);
        assert_eq!(app.ledger.files("docs").unwrap().len(), 10);
        assert_eq!(env.points("n0.md").await.len(), 1);
    });
    let series = |reason: &str| {
        crate::support::metrics::value(
            &metrics,
            &format!("ragd_deletes_held_back_total{{pipeline=\"docs\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(series("mass_delete"), Some(8.0), "{metrics}");
    assert_eq!(series("unreadable"), None, "{metrics}");
}
