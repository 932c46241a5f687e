//! Fault injection between ragd and each server, and the repair commands:
//! whatever fails in between, the end state is right and each file version is
//! uploaded exactly once.

use std::time::Duration;

use ragd::document::point_id;
use ragd::ledger::{FailKind, FileState};
use ragd::pipeline::RunRequest;
use ragd::store::{PointFilter, PointPayload, StoredPoint, VectorStore};

use crate::crash::{Invariants, check_with};
use crate::support::env::{DIM, TestEnv};
use crate::support::fake_openwebui::{FakeOp, Fault, spawn_fake};

fn corpus(env: &TestEnv, n: usize) {
    for i in 0..n {
        env.write(
            &format!("f{i:03}.md"),
            format!("# File {i}\n\nUnique text {i}: the {i}th report on river otters, item-{i}.\n"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_servers_end_in_the_right_state_with_one_upload_per_file() {
    let fake = spawn_fake("sk-faults").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "faults", 30).await;
    let files = 40;
    corpus(&env, files);
    // 30% of embedding requests answer 5xx.
    env.embed.set_fail_rate(0.3);
    // Open WebUI: 500s and locked-database 400s on upload, answers lost after the
    // upload or the link was applied, reset connections on status polls, and
    // slow processing.
    fake.fail_uploads_500(6);
    fake.fail_uploads_locked(6);
    fake.drop_after_write(FakeOp::Upload, 5);
    fake.drop_after_write(FakeOp::Add, 5);
    fake.inject(FakeOp::Status, Fault::Http500, 10);
    fake.set_processing(3, Duration::from_millis(50));

    // Transient failures are retried within a run and across runs; a bounded
    // number of runs settles everything.
    let mut runs = 0;
    loop {
        runs += 1;
        let s = env.index().await;
        let kb = s.knowledge.clone().unwrap_or_default();
        if s.failed == 0 && kb.deferred == 0 && kb.failed == 0 {
            break;
        }
        assert!(runs < 8, "not settled after {runs} runs: {s:?}");
    }
    env.embed.set_fail_rate(0.0);
    let inv = check_with(&env, &fake, env.store.as_ref()).await;
    assert_eq!(
        inv,
        Invariants {
            files,
            ..Default::default()
        },
        "after {runs} runs"
    );
    // Exactly one stored upload per file: lost answers were recovered, not repeated.
    let ours = fake
        .files()
        .into_iter()
        .filter(|f| f.metadata.get("ragd").is_some())
        .count();
    assert_eq!(ours, files);
}

#[tokio::test]
async fn reconcile_repairs_missing_stale_and_orphan_points() {
    let env = TestEnv::new("").await;
    env.write("a.md", "# A\n\nAlpha text about the albatross.\n");
    env.write("b.md", "# B\n\nBeta text about the beaver.\n");
    env.write("c.md", "# C\n\nGamma text about the gannet.\n");
    env.index().await;

    // Drift behind ragd's back: a's points deleted, a stale point for b, points
    // of a file the ledger never knew.
    env.store
        .delete(&env.collection, &PointFilter::file("docs", "a.md"))
        .await
        .unwrap();
    let stray = |path: &str, index: u32, hash: &str| StoredPoint {
        id: point_id("docs", path, index),
        vector: vec![0.5; DIM],
        payload: PointPayload {
            pipeline: "docs".into(),
            path: path.into(),
            chunk_index: index,
            text: "stray".into(),
            page: None,
            headings: vec![],
            ocr: false,
            language: None,
            content_hash: hash.into(),
            file_hash: "x".into(),
            modified: 0,
            model: "hash-embed".into(),
        },
    };
    env.store
        .upsert(
            &env.collection,
            vec![stray("b.md", 7, "old-version"), stray("ghost.md", 0, "g")],
        )
        .await
        .unwrap();

    let app = env.app();
    let (report, summary) = env
        .pipeline(&app)
        .repair(RunRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (
            report.missing_vectors,
            report.stale_points,
            report.orphan_points
        ),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        summary.updated + summary.added,
        1,
        "a.md re-indexed: {summary:?}"
    );
    for path in ["a.md", "b.md", "c.md"] {
        let rec = app.ledger.get("docs", path).unwrap().unwrap();
        let pts = env.points(path).await;
        assert_eq!(pts.len(), rec.chunk_count as usize, "{path}");
        assert!(
            pts.iter()
                .all(|p| Some(&p.payload.content_hash) == rec.content_hash.as_ref())
        );
    }
    assert!(env.points("ghost.md").await.is_empty());
    // A second reconcile finds nothing.
    let (report, _) = env
        .pipeline(&app)
        .repair(RunRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (
            report.missing_vectors,
            report.stale_points,
            report.orphan_points
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn transient_failures_are_quarantined_after_the_limit_and_retry_puts_them_back() {
    let env = TestEnv::new("").await;
    env.write(
        "a.md",
        "# A\n\nThe embedder is down for this one: the aye-aye.\n",
    );
    env.embed.set_fail_rate(1.0);
    let limit = ragd::ledger::MAX_TRANSIENT_ATTEMPTS;
    for run in 1..=limit {
        let s = env.index().await;
        assert_eq!(s.failed, 1, "run {run}");
    }
    let app = env.app();
    let rec = app.ledger.get("docs", "a.md").unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (FileState::Failed, limit));
    assert_eq!(
        rec.error_kind.as_ref().map(FailKind::as_str),
        Some("transient")
    );
    drop(app);

    // Quarantined: the next run leaves it alone (no embedding request at all).
    let before = env.embed.stats().requests;
    let s = env.index().await;
    assert_eq!((s.failed, s.unchanged), (0, 1));
    assert_eq!(env.embed.stats().requests, before);

    // `ragd retry --all` puts it back; with the embedder healthy it is indexed.
    env.embed.set_fail_rate(0.0);
    let app = env.app();
    assert_eq!(env.pipeline(&app).retry(None).unwrap(), (1, 0));
    drop(app);
    let s = env.index().await;
    assert_eq!(s.added, 1, "{s:?}");
}

#[test]
fn an_unusable_state_directory_is_a_clear_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    // The state directory's path is taken by a regular file.
    std::fs::write(dir.path().join("state"), "not a directory").unwrap();
    std::fs::write(
        dir.path().join("config/ragd.toml"),
        "state_dir = \"../state\"\n[embedding]\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pipelines/p.toml"),
        "sources = [\"../docs\"]\n[embedding]\nmodel = \"m\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::ragd_bin())
        .args(["index", "--config"])
        .arg(dir.path().join("config/ragd.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state directory"), "{err}");
}

/// A store that fails a share of writes and syncs transiently — half of them
/// after the write was applied ("outcome unknown", like a timeout) — over a
/// real store.
type FlakyStore = ragd::store::layer::Layered<Faults>;

/// The faults [`FlakyStore`] injects.
struct Faults {
    /// Share of writes and syncs that fail.
    rate: f64,
    failures: std::sync::atomic::AtomicU64,
    /// Failures in a row so far; see [`MAX_FAILURES_IN_A_ROW`].
    streak: std::sync::atomic::AtomicU32,
    /// Every sync fails for good (a disk that stopped taking writes).
    sync_broken: bool,
}

/// Transient means it passes: never this many failures in a row, fewer than
/// the 5 tries ragd gives a store call. Unbounded random failures made the
/// test fail now and then (0.3^5 per call, over a few dozen calls), which
/// says nothing about ragd. The pipeline's writes and syncs run one at a
/// time, so a streak across calls bounds each call's own.
const MAX_FAILURES_IN_A_ROW: u32 = 3;

impl Faults {
    /// `None`: no fault this time; `Some(applied)`: fail, after applying the
    /// write if `applied`.
    fn roll(&self) -> Option<bool> {
        use rand::Rng;
        use std::sync::atomic::Ordering::SeqCst;
        let mut rng = rand::rng();
        // The first call always fails: a run makes only a handful of store
        // calls (writes are grouped, a sync covers many), so at 30% a test
        // run could otherwise see no fault at all (0.7^6 = 12%).
        let first = self.failures.load(SeqCst) == 0 && self.rate > 0.0;
        if !first
            && (self.streak.load(SeqCst) >= MAX_FAILURES_IN_A_ROW || !rng.random_bool(self.rate))
        {
            self.streak.store(0, SeqCst);
            return None;
        }
        self.streak.fetch_add(1, SeqCst);
        self.failures.fetch_add(1, SeqCst);
        Some(rng.random_bool(0.5))
    }
}

/// Over `env`'s real store, failing a share `rate` of writes and syncs.
fn flaky_over(env: &TestEnv, rate: f64, sync_broken: bool) -> std::sync::Arc<FlakyStore> {
    std::sync::Arc::new(ragd::store::layer::Layered::new(
        env.store.clone(),
        Faults {
            rate,
            failures: Default::default(),
            streak: Default::default(),
            sync_broken,
        },
    ))
}

/// The failure a backend reports when it cannot tell whether a write applied.
/// Injected here to test the pipeline's answer to it; that each backend really
/// classifies its own failures so is tested on the backends
/// (`store::the_server_backend_classifies_real_failures`,
/// `store::every_backend::a_vector_of_the_wrong_length_is_a_permanent_error`).
fn unknown() -> ragd::store::StoreError {
    ragd::store::StoreError::Transient("injected: deadline exceeded".into())
}

impl ragd::store::layer::Layer for Faults {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        call: ragd::store::layer::Call<'a>,
        attempt: impl Fn() -> ragd::store::layer::Attempt<'a, T> + Send + Sync + 'a,
    ) -> Result<T, ragd::store::StoreError> {
        use ragd::store::layer::CallKind;
        let faulty = match call.kind {
            CallKind::Sync if self.sync_broken => {
                return Err(ragd::store::StoreError::Backend(
                    "injected: flush failed".into(),
                ));
            }
            CallKind::Upsert | CallKind::Delete | CallKind::Write(_) | CallKind::Sync => true,
            CallKind::Read | CallKind::Collection => false,
        };
        match faulty.then(|| self.roll()).flatten() {
            None => attempt().await,
            Some(applied) => {
                if applied {
                    attempt().await?;
                }
                Err(unknown())
            }
        }
    }

    fn backend(&self, _inner: &'static str) -> &'static str {
        "flaky"
    }
}

#[tokio::test]
async fn qdrant_timeouts_and_failures_are_retried_to_the_same_end_state() {
    let env = TestEnv::new("").await;
    corpus(&env, 30);
    let flaky = flaky_over(&env, 0.3, false);
    let run = || async {
        let config = ragd::config::load(&env.config_path()).unwrap();
        let app = ragd::app::App::open_with(config, Some(flaky.clone())).unwrap();
        env.pipeline(&app).run(&RunRequest::default()).await
    };
    run()
        .await
        .expect("transient store failures are retried within the run");
    // Change a third of the files so old versions must be deleted through faults too.
    for i in 0..10 {
        env.write(
            &format!("f{i:03}.md"),
            format!("# File {i}\n\nSecond version {i}: sea otters.\n"),
        );
    }
    run().await.expect("second run");
    assert!(
        flaky
            .layer()
            .failures
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0,
        "faults were injected"
    );
    let app = env.app();
    for i in 0..30 {
        let path = format!("f{i:03}.md");
        let rec = app.ledger.get("docs", &path).unwrap().unwrap();
        assert_eq!(rec.state, FileState::Indexed);
        let pts = env.points(&path).await;
        assert_eq!(pts.len(), rec.chunk_count as usize, "{path}");
        assert!(
            pts.iter()
                .all(|p| Some(&p.payload.content_hash) == rec.content_hash.as_ref()),
            "{path}"
        );
    }
}

/// Written but never made durable: the ledger must not call the files indexed,
/// and the next run (with a store that syncs) completes them.
#[tokio::test]
async fn files_are_indexed_only_once_a_store_sync_covers_them() {
    let env = TestEnv::new("").await;
    corpus(&env, 12);
    let broken = flaky_over(&env, 0.0, true);
    let config = ragd::config::load(&env.config_path()).unwrap();
    let app = ragd::app::App::open_with(config, Some(broken)).unwrap();
    let err = env
        .pipeline(&app)
        .run(&RunRequest::default())
        .await
        .expect_err("a store that cannot sync fails the run");
    assert!(err.to_string().contains("flush failed"), "{err}");
    for i in 0..12 {
        let rec = app.ledger.get("docs", &format!("f{i:03}.md")).unwrap();
        assert!(
            rec.as_ref().is_none_or(|r| r.state != FileState::Indexed),
            "f{i:03}.md is indexed without a sync: {rec:?}"
        );
    }
    drop(app);

    let app = env.app();
    env.pipeline(&app)
        .run(&RunRequest::default())
        .await
        .expect("the next run completes");
    for i in 0..12 {
        let path = format!("f{i:03}.md");
        let rec = app.ledger.get("docs", &path).unwrap().unwrap();
        assert_eq!(rec.state, FileState::Indexed, "{path}");
        assert_eq!(env.points(&path).await.len(), rec.chunk_count as usize);
    }
}
