//! Crash safety: `ragd index` killed with SIGKILL at random moments, or aborted at
//! each named step boundary, must still end — after a clean rerun — with the folder,
//! the ledger, Qdrant and the knowledge base in agreement: nothing missing, nothing
//! duplicated, no orphan uploads, exactly one upload per file version.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use ragd::ledger::{FileState, KbRecord, KbState, Ledger};
use ragd::store::edge::EdgeStore;
use ragd::store::{PointFilter, VectorStore};
use rand::Rng;

use crate::support::env::{Backend, TestEnv};
use crate::support::fake_openwebui::{FakeHandle, spawn_fake};
use crate::support::owui::{
    client, entry_counts, knowledge_id, listing, listing_of, places, real_server, unique,
};
use crate::support::real;
use crate::support::report;

/// What a check found; every count must be 0 except `files` and `uploads`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invariants {
    pub files: usize,
    /// Files on disk not indexed, or without their points, or not in the knowledge base.
    pub missing: usize,
    /// Points beyond one per chunk of the current version.
    pub duplicate_points: usize,
    /// Knowledge-base entries beyond one per file.
    pub duplicate_kb: usize,
    /// Uploads carrying ragd's marker that are not linked to the knowledge base.
    pub orphans: usize,
    /// Ledger rows left in an intermediate state.
    pub unfinished: usize,
}

fn ragd(env: &TestEnv) -> Command {
    let mut c = Command::new(crate::support::ragd_bin());
    c.arg("index")
        .arg("--config")
        .arg(env.config_path())
        .env_remove("RAGD_FAILPOINTS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Run `ragd index` armed with `RAGD_FAILPOINTS=spec`; panics unless it
/// aborted there.
fn crash_at(env: &TestEnv, spec: &str, context: &str) {
    let out = ragd(env).env("RAGD_FAILPOINTS", spec).output().unwrap();
    assert!(
        !out.status.success(),
        "{spec} was not reached ({context}): {}",
        report(&out)
    );
}

/// Run `ragd index` to completion; panics with its output if it fails.
fn index_to_completion(env: &TestEnv) {
    let out = ragd(env).output().expect("run ragd");
    assert!(out.status.success(), "ragd index failed: {}", report(&out));
}

/// Compare disk, ledger, Qdrant and the fake Open WebUI, through a freshly opened
/// store (ragd ran in another process).
/// The invariants of `files` files on disk with nothing wrong.
fn intact(files: usize) -> Invariants {
    Invariants {
        files,
        ..Default::default()
    }
}

pub async fn check(env: &TestEnv, fake: &FakeHandle) -> Invariants {
    let store = env.fresh_store();
    check_with(env, fake, store.as_ref()).await
}

/// [`check`] through a given store (ragd ran in this process, over `store`).
pub async fn check_with(env: &TestEnv, fake: &FakeHandle, store: &dyn VectorStore) -> Invariants {
    let mut inv = Invariants::default();
    let on_disk: Vec<String> = walkdir::WalkDir::new(env.docs())
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| ragd::triggers::key::rel_to_string(e.path().strip_prefix(env.docs()).unwrap()))
        .collect();
    inv.files = on_disk.len();

    let ledger = Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
    let files = ledger.files("docs").unwrap();
    let kb_rows = ledger.kb_files("docs").unwrap();
    inv.unfinished = files
        .values()
        .filter(|r| matches!(r.state, FileState::Indexing | FileState::Deleting))
        .count()
        + kb_rows
            .values()
            .filter(|r| r.state != KbState::Linked && r.state != KbState::Failed)
            .count();

    let points = store
        .scroll(&env.collection, &PointFilter::pipeline("docs"), false)
        .await
        .unwrap_or_default();
    let mut per_path: HashMap<&str, Vec<&ragd::store::StoredPoint>> = HashMap::new();
    for p in &points {
        per_path.entry(p.payload.path.as_str()).or_default().push(p);
    }
    let expected_points: usize = files
        .values()
        .filter(|r| r.state == FileState::Indexed)
        .map(|r| r.chunk_count as usize)
        .sum();
    inv.duplicate_points = points.len().saturating_sub(expected_points);

    let kb_id = kb_rows
        .values()
        .next()
        .map(|r| r.kb_id.clone())
        .unwrap_or_default();
    let linked = fake.knowledge_file_ids(&kb_id);
    let all_files = fake.files();
    // A linked upload counts for the path of the row that records it (a moved
    // file's marker keeps its old path), if it holds that row's text; one no
    // row records, for the path its marker names.
    let by_id: HashMap<&str, &KbRecord> = kb_rows
        .values()
        .filter_map(|r| r.file_id.as_deref().map(|id| (id, r)))
        .collect();
    let mut kb_per_path: BTreeMap<String, usize> = BTreeMap::new();
    for f in &all_files {
        let marker = f.metadata.get("ragd");
        let field = |k: &str| marker.and_then(|m| m.get(k)).and_then(|v| v.as_str());
        let Some(marker_path) = field("path") else {
            continue;
        };
        if !linked.contains(&f.id) {
            inv.orphans += 1;
            continue;
        }
        let path = match by_id.get(f.id.as_str()) {
            Some(r) if field("content_hash") == Some(r.content_hash.as_str()) => r.path.clone(),
            Some(r) => format!("wrong text: {}", r.path),
            None => marker_path.to_owned(),
        };
        *kb_per_path.entry(path).or_default() += 1;
    }
    inv.duplicate_kb = kb_per_path.values().map(|n| n.saturating_sub(1)).sum();

    for path in &on_disk {
        let ok = files.get(path).is_some_and(|r| {
            r.state == FileState::Indexed
                && r.chunk_count > 0
                && per_path.get(path.as_str()).is_some_and(|ps| {
                    ps.len() == r.chunk_count as usize
                        && ps
                            .iter()
                            .all(|p| Some(&p.payload.content_hash) == r.content_hash.as_ref())
                })
        }) && kb_per_path.get(path) == Some(&1);
        if !ok {
            inv.missing += 1;
        }
    }
    inv
}

fn write_corpus(env: &TestEnv, n: usize, round: usize) {
    for i in 0..n {
        let body: String = (0..(i % 7 + 1))
            .map(|p| {
                format!(
                    "## Part {p}\n\nFile {i} round {round} paragraph {p} describes item-{i}-{p} with words \
                     that make this chunk distinct from every other chunk in the corpus.\n\n"
                )
            })
            .collect();
        env.write(
            &format!("d{}/file-{i:04}.md", i % 10),
            format!("# Document {i}\n\n{body}"),
        );
    }
}

/// Start `ragd index` and SIGKILL it after `delay`; false if it had finished.
/// How one run of [`run_and_kill`] ended.
enum Run {
    Killed,
    /// It exited on its own before the kill: finished, or failed (with why).
    Exited(Result<(), String>),
}

impl Run {
    /// Whether the kill landed; a run that exited on its own must have
    /// finished: after a kill ragd recovers, it does not fail.
    fn landed(self, kills_so_far: usize) -> bool {
        match self {
            Run::Killed => true,
            Run::Exited(Ok(())) => false,
            Run::Exited(Err(why)) => panic!("ragd index after {kills_so_far} kills failed: {why}"),
        }
    }
}

/// Start `ragd index`, SIGKILL it after `delay` unless it already exited.
fn run_and_kill(env: &TestEnv, delay: Duration) -> Run {
    // stderr to a file, not a pipe: nobody reads it while the run goes on.
    let log = env.dir.path().join("kill-run.stderr");
    let mut child = ragd(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("spawn ragd");
    std::thread::sleep(delay);
    match child.try_wait() {
        Ok(Some(status)) if status.success() => Run::Exited(Ok(())),
        Ok(Some(status)) => Run::Exited(Err(format!(
            "{status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))),
        _ => {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            Run::Killed
        }
    }
}

/// Rename each of `d0`…`d9` to `e0`…`e9`, or back.
fn flip_folders(env: &TestEnv) {
    for k in 0..10 {
        let (d, e) = (
            env.docs().join(format!("d{k}")),
            env.docs().join(format!("e{k}")),
        );
        let (from, to) = if d.exists() { (d, e) } else { (e, d) };
        std::fs::rename(from, to).unwrap();
    }
}

/// Rename every fifth file of the corpus in place (`file-N.md` ↔
/// `renamed-N.md`), wherever its folder is now.
fn flip_names(env: &TestEnv) {
    for entry in walkdir::WalkDir::new(env.docs()) {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let (stem, other) = match name.split_once('-') {
            Some(("file", n)) => (n.to_owned(), "renamed"),
            Some(("renamed", n)) => (n.to_owned(), "file"),
            _ => continue,
        };
        let index: usize = stem.trim_end_matches(".md").parse().unwrap();
        if index.is_multiple_of(5) {
            let to = entry.path().with_file_name(format!("{other}-{stem}"));
            std::fs::rename(entry.path(), to).unwrap();
        }
    }
}

/// `RAGD_CRASH_FILES` / `RAGD_CRASH_KILLS` size the run (CI: 200 files, 10 kills;
/// `scripts/crash-soak.sh`: 1,000 files, 50 kills).
fn sized(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let started = std::time::Instant::now();
    let fake = spawn_fake("sk-crash").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "crash", 60).await;
    let files = sized("RAGD_CRASH_FILES", 200);
    let want_kills = sized("RAGD_CRASH_KILLS", 10);
    write_corpus(&env, files, 0);
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut attempts = 0;
    // Each run is killed after a random 0.1–1.5 s, which on this corpus lands in
    // every stage (scan, extract, embed, upsert, upload, link).
    while kills < want_kills && attempts < want_kills * 4 {
        attempts += 1;
        if run_and_kill(&env, Duration::from_millis(rng.random_range(100..1500))).landed(kills) {
            kills += 1;
        } else {
            // It finished before the kill: change some files so there is work again.
            write_corpus(&env, files / 4, attempts);
        }
    }
    assert!(kills >= want_kills, "only {kills} kills landed");
    index_to_completion(&env);
    let inv = check(&env, &fake).await;
    let uploads = fake.counters().uploads;
    // The figures the soak script reports.
    println!(
        "crash-soak: kills={kills} files={} missing={} duplicate_points={} duplicate_kb={} orphans={} \
         unfinished={} uploads={uploads} seconds={:.1}",
        inv.files,
        inv.missing,
        inv.duplicate_points,
        inv.duplicate_kb,
        inv.orphans,
        inv.unfinished,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(inv, intact(files));

    // Settled: a rerun changes nothing and uploads nothing.
    index_to_completion(&env);
    assert_eq!(fake.counters().uploads, uploads);
    assert_eq!(check(&env, &fake).await, intact(files));
}

/// How many times each failpoint is reached in one round of `failpoint_round`.
fn reach(point: &str) -> u32 {
    match point {
        p if p.starts_with("delete.") => 1,
        "kb.before_remove_old" => 2,
        _ => 3,
    }
}

/// `n` paragraphs of about 300 characters: one chunk each at the test
/// config's 400-character chunks.
fn paragraphs(n: usize, topic: &str) -> String {
    let mut text = format!("# {topic}\n\n");
    for i in 0..n {
        text.push_str(&format!(
            "Paragraph {i} about {topic}. {}\n\n",
            "The quick brown fox jumps over the lazy dog. ".repeat(6)
        ));
    }
    text
}

/// A longer version made durable in Qdrant but never recorded in the ledger
/// (killed after the store sync), then a shorter one: the longer version's
/// leftovers lie past anything the ledger knew, are found by id all the same,
/// and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_an_unrecorded_longer_version_are_removed() {
    let fake = spawn_fake("sk-hw").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "hw", 60).await;
    env.write("grow.md", paragraphs(1, "first"));
    index_to_completion(&env);

    env.write("grow.md", paragraphs(90, "long"));
    crash_at(&env, "index.after_sync:1", "the long version");
    {
        let ledger = Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
        let record = ledger.get("docs", "grow.md").unwrap().unwrap();
        assert_eq!((record.state, record.chunk_count), (FileState::Indexing, 1));
        let store = env.fresh_store();
        let long = store
            .count(&env.collection, &PointFilter::file("docs", "grow.md"))
            .await
            .unwrap();
        assert!(long > 64, "the long version is durable: {long} points");
    }

    env.write("grow.md", paragraphs(2, "short"));
    index_to_completion(&env);
    let inv = check(&env, &fake).await;
    assert_eq!(inv, intact(1));
}

/// One round of changes: two files modified, one deleted, one added.
fn failpoint_round(env: &TestEnv, round: usize) {
    env.write(
        "keep-a.md",
        format!("# A\n\nVersion {round} of file a, about the aardvark.\n"),
    );
    env.write(
        "keep-b.md",
        format!("# B\n\nVersion {round} of file b, about the bison.\n"),
    );
    env.write(
        &format!("new-{round}.md"),
        format!("# New {round}\n\nAdded in round {round}: the capybara.\n"),
    );
    if round > 0 {
        env.remove(&format!("new-{}.md", round - 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_boundary_recovers_exactly() {
    for point in ragd::failpoint::ALL {
        let fake = spawn_fake("sk-fp").await;
        let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, point, 60).await;
        env.write("stable.md", "# Stable\n\nNever changes: the dugong.\n");
        failpoint_round(&env, 0);
        index_to_completion(&env);
        for round in 1..=3 {
            failpoint_round(&env, round);
            let n = (round as u32).min(reach(point));
            crash_at(&env, &format!("{point}:{n}"), &format!("round {round}"));
            index_to_completion(&env);
            let inv = check(&env, &fake).await;
            assert_eq!(inv, intact(4), "{point}:{n} round {round}");
        }
        // One upload per file version: 4 files at start, then 3 new versions a round.
        assert_eq!(fake.counters().uploads, 4 + 3 * 3, "{point}: uploads");
    }
}

/// A crash right after Open WebUI renamed a directory or a file, before the
/// ledger recorded it, left the base with the new name while the ledger kept
/// the old; with the folder renamed back, nothing looked wrong to ragd and the
/// base kept the wrong name for good (seen in the kill -9 soak against the
/// real server). Directory renames are recorded before they are sent and
/// finished by the next sync; a file being placed has an unknown place until
/// it is recorded, and is placed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_rename_in_the_base_leaves_it_equal_to_the_folder() {
    let renames = [
        ("kb.after_dir_rename", "d3", "e3"),
        ("kb.after_file_rename", "d3/note-0.md", "d3/renamed-0.md"),
    ];
    assert_eq!(
        renames.map(|(point, ..)| point),
        ragd::failpoint::DIRECTORIES,
        "one case per failpoint"
    );
    for (point, from, to) in renames {
        let fake = spawn_fake("sk-dirs").await;
        let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "dirs", 60).await;
        for (i, animal) in ["aardvark", "bison", "capybara"].iter().enumerate() {
            env.write(
                &format!("d3/note-{i}.md"),
                format!("# Note {i}\n\nAbout the {animal}.\n"),
            );
        }
        env.write("top.md", "# Top\n\nAt the root: the dugong.\n");
        index_to_completion(&env);
        std::fs::rename(env.docs().join(from), env.docs().join(to)).unwrap();
        crash_at(&env, point, "renaming in the knowledge base");
        std::fs::rename(env.docs().join(to), env.docs().join(from)).unwrap();
        index_to_completion(&env);
        let c = client(&fake.url, &fake.api_key);
        let kb = knowledge_id(&env).await;
        let placed: Vec<String> = places(&c, &kb).await.into_keys().collect();
        assert_eq!(
            placed,
            ["d3/note-0.md", "d3/note-1.md", "d3/note-2.md", "top.md"],
            "{point}: the base's tree is not the folder's"
        );
        assert_eq!(check(&env, &fake).await, intact(4), "{point}");
    }
}

/// A crash between creating the collection on a Qdrant server and marking it
/// as ragd's leaves an empty unmarked collection. The ledger recorded the
/// creation before it was made, so the next run marks it and goes on instead
/// of refusing its own collection as somebody else's (seen in CI: every run
/// after such a kill failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_creating_the_collection_and_marking_it_recovers() {
    let Some((url, key)) = real::qdrant() else {
        return;
    };
    for point in ragd::failpoint::SERVER {
        let env = TestEnv::on(
            Backend::Server {
                url: url.clone(),
                key: key.clone(),
            },
            "",
            "",
        )
        .await;
        env.write("a.md", "# A\n\nThe dugong grazes on seagrass.\n");
        crash_at(&env, point, "the first run");
        index_to_completion(&env);
        let points = env
            .fresh_store()
            .count(&env.collection, &PointFilter::pipeline("docs"))
            .await
            .unwrap();
        assert!(points > 0, "{point}: nothing indexed");
        let ledger = Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
        // `ragd index` creates the collection under the pipeline's name; the
        // daemon creates `<name>_v1` behind an alias.
        for name in [env.collection.clone(), format!("{}_v1", env.collection)] {
            assert!(
                !ledger.collection_begun(&name).unwrap(),
                "{point}: the record of creating {name} outlived it"
            );
        }
    }
}

/// A vacuum killed after its copy is made, or after the directories are
/// swapped, leaves the collection's name holding a complete shard (old or
/// new) and its scratch directory as a leftover: the next runs remove the
/// leftover, finish the vacuum and end with everything in agreement and
/// nothing twice.
/// A crash after a batch of moves reached the store but before the ledger
/// recorded it, then the folders renamed back before the rerun: the old rows
/// still said `indexed` although their points were deleted, and the files
/// were back at those paths with their old size and mtime, so nothing looked
/// changed and every point was lost (seen in `kill_9_while_folders_*` when a
/// vacuum in the batch's sync widened the window). The old rows are
/// `deleting` from the batch's intent on, so the rerun indexes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_batch_of_moves_then_a_rename_back_loses_nothing() {
    for point in ragd::failpoint::MOVES {
        let fake = spawn_fake("sk-moves").await;
        let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, point, 60).await;
        let files = 20;
        write_corpus(&env, files, 0);
        index_to_completion(&env);
        flip_folders(&env);
        crash_at(&env, &format!("{point}:1"), "the batch of moves");
        flip_folders(&env);
        index_to_completion(&env);
        let inv = check(&env, &fake).await;
        assert_eq!(inv, intact(files), "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_vacuum_loses_and_duplicates_nothing() {
    for point in ragd::failpoint::VACUUM {
        let fake = spawn_fake("sk-vac").await;
        let env = TestEnv::with_knowledge_on(
            Backend::Edge,
            &fake.url,
            &fake.api_key,
            "vac",
            60,
            "[qdrant]\nvacuum_min_dead_points = 5\n",
        )
        .await;
        for i in 0..12 {
            env.write(
                &format!("f{i:02}.md"),
                format!("# F{i}\n\nNote {i}: the okapi.\n"),
            );
        }
        index_to_completion(&env);
        // 5 dead against 7 live: no vacuum yet.
        for i in 0..5 {
            env.remove(&format!("f{i:02}.md"));
        }
        index_to_completion(&env);
        // 7 dead against 5 live: this run's sync vacuums, and dies at `point`.
        for i in 5..7 {
            env.remove(&format!("f{i:02}.md"));
        }
        crash_at(&env, &format!("{point}:1"), "the vacuum");
        // A change, so the next run writes and syncs (and vacuums if the
        // crash came before the swap).
        env.write("f07.md", "# F7\n\nNote 7, edited: the okapi again.\n");
        index_to_completion(&env);
        let inv = check(&env, &fake).await;
        assert_eq!(inv, intact(5), "{point}");
        let root = env.dir.path().join("state/qdrant");
        let names: Vec<String> = std::fs::read_dir(root.join("collections"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{point}: leftovers in {names:?}");
        let store = EdgeStore::open(&root).unwrap();
        let (live, slots) = store.slots("docs").await.unwrap();
        assert_eq!(live, 5, "{point}");
        assert!(
            slots.is_some_and(|s| s <= 6),
            "{point}: the vacuum never finished: {slots:?} slots for 5 points"
        );
    }
}

/// Killed at random moments while every folder is renamed back and forth:
/// batched deletes, re-adds from the embedding cache, knowledge-base moves
/// and vacuums (at 20 dead points) are cut short again and again. The end
/// state agrees everywhere with nothing twice, and no vacuum scratch
/// directory is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_folders_move_and_vacuums_run_loses_and_duplicates_nothing() {
    let fake = spawn_fake("sk-churn").await;
    // Processing done at upload, as a real server does it in the background
    // whether polled or not (the soak above polls): an upload whose id a kill
    // lost is then linked at once, and would get its moved file refused as a
    // duplicate if the rerun did not find it by its marker.
    fake.set_processing(0, Duration::ZERO);
    let env = TestEnv::with_knowledge_on(
        Backend::Edge,
        &fake.url,
        &fake.api_key,
        "churn",
        60,
        "[qdrant]\nvacuum_min_dead_points = 20\n",
    )
    .await;
    let files = sized("RAGD_CRASH_FILES", 200) / 2;
    let want_kills = sized("RAGD_CRASH_KILLS", 10);
    write_corpus(&env, files, 0);
    index_to_completion(&env);
    // Kills land anywhere in a run: time one whole run after a flip (moves
    // re-upload nothing, so a run is short and its length varies by machine).
    flip_folders(&env);
    let started = std::time::Instant::now();
    index_to_completion(&env);
    let whole = (started.elapsed().as_millis() as u64).max(50);
    let mut rng = rand::rng();
    let (mut kills, mut attempts) = (0, 0);
    while kills < want_kills && attempts < want_kills * 4 {
        attempts += 1;
        flip_folders(&env);
        if run_and_kill(&env, Duration::from_millis(rng.random_range(10..whole))).landed(kills) {
            kills += 1;
        }
    }
    assert!(kills >= want_kills, "only {kills} kills landed");
    index_to_completion(&env);
    let inv = check(&env, &fake).await;
    assert_eq!(inv, intact(files));
    let collections = env.dir.path().join("state/qdrant/collections");
    let names: Vec<String> = std::fs::read_dir(&collections)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "leftovers: {names:?}"
    );
    // Every rename left a folder's worth of dead slots; the vacuums kept them
    // below the live count (or the minimum) as of the last sync.
    let store = EdgeStore::open(&env.dir.path().join("state/qdrant")).unwrap();
    let (live, slots) = store.slots("docs").await.unwrap();
    let slots = slots.expect("vector slots readable");
    // The figures the soak script reports.
    println!(
        "crash-soak (moves): kills={kills} renames={attempts} files={} missing={} \
         duplicate_points={} duplicate_kb={} orphans={} unfinished={} live_points={live} \
         vector_slots={slots}",
        inv.files, inv.missing, inv.duplicate_points, inv.duplicate_kb, inv.orphans, inv.unfinished
    );
    assert!(
        slots < (2 * live).max(live + 20),
        "{slots} vector slots for {live} live points after {attempts} renames"
    );
}

/// ragd killed after an upload was accepted but before its id was recorded,
/// then the folder renamed: the old path's row is removed while its upload is
/// still out there. Processed (and so auto-linked) before the rerun, as a real
/// server does in the background, it would get the moved file refused as
/// duplicate content; unprocessed, it would stay an orphan. Either way the
/// rerun must find it by its marker. Against the fake (processing finished at
/// once, then only when polled) and the real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_an_upload_then_a_rename_leaves_no_orphan_and_no_refusal() {
    invariants_hold_on_the_fake(3, |url, key| async move {
        upload_crash_then_rename(&url, &key).await
    })
    .await;
    if let Some((url, key)) = real_server() {
        let env = upload_crash_then_rename(&url, &key).await;
        let listed = listing(&client(&url, &key), &env).await;
        assert_eq!(
            entry_counts(&listed),
            [("f/a.md", 1), ("f/b.md", 1), ("f/c.md", 1)],
            "{listed:#?}"
        );
    }
}

/// Run `scenario(url, key)` against the fake, processing done at upload and on
/// the first poll, and check every invariant over its `files` files.
async fn invariants_hold_on_the_fake<F, Fut>(files: usize, scenario: F)
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = TestEnv>,
{
    for polls in [0, 1] {
        let fake = spawn_fake("sk-scenario").await;
        fake.set_processing(polls, Duration::ZERO);
        let env = scenario(fake.url.clone(), fake.api_key.clone()).await;
        let inv = check(&env, &fake).await;
        assert_eq!(inv, intact(files), "polls {polls}");
    }
}

/// Index `d/{a,b,c}.md`, rename `d` to `e` and edit the files, kill ragd at
/// its second upload, rename `e` to `f`, rerun; every knowledge-base row must
/// end linked.
async fn upload_crash_then_rename(url: &str, key: &str) -> TestEnv {
    let env = TestEnv::with_knowledge(url, key, &unique("moved"), 120).await;
    let topic = unique("okapi");
    for name in ["a", "b", "c"] {
        env.write(
            &format!("d/{name}.md"),
            format!("# {name}\n\nThe {name} file, about the {topic}.\n"),
        );
    }
    index_to_completion(&env);
    // Renamed and edited: each file is uploaded again (a rename alone keeps
    // its upload).
    std::fs::rename(env.docs().join("d"), env.docs().join("e")).unwrap();
    for name in ["a", "b", "c"] {
        env.write(
            &format!("e/{name}.md"),
            format!("# {name}\n\nThe {name} file, about the {topic}, edited.\n"),
        );
    }
    crash_at(&env, "kb.after_upload:2", url);
    std::fs::rename(env.docs().join("e"), env.docs().join("f")).unwrap();
    index_to_completion(&env);
    let ledger = Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
    let rows = ledger.kb_files("docs").unwrap();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(
        rows.values().all(|r| r.state == KbState::Linked),
        "{url}: {rows:#?}"
    );
    env
}

/// Every publish step boundary, against the real Open WebUI: ragd aborted
/// there while a changed file's new version and a new file are published,
/// then rerun, must leave each file listed once, at its current version, and
/// every row linked. (The fake stands in for the server in the tests above;
/// this pins what the real one does with a file re-added after a crash, an
/// upload whose id was lost, and a half-replaced version.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_step_boundary_recovers_against_the_real_server() {
    let Some((url, key)) = real_server() else {
        return;
    };
    let c = client(&url, &key);
    for point in ragd::failpoint::ALL.iter().filter(|p| p.starts_with("kb.")) {
        let env = TestEnv::with_knowledge(&url, &key, &unique("fp"), 120).await;
        let topic = unique("quokka");
        env.write(
            "a.md",
            format!("# A\n\nVersion 1 of a, about the {topic}.\n"),
        );
        env.write("b.md", format!("# B\n\nFile b, about the {topic}.\n"));
        index_to_completion(&env);
        env.write(
            "a.md",
            format!("# A\n\nVersion 2 of a, about the {topic}.\n"),
        );
        env.write("c.md", format!("# C\n\nFile c, about the {topic}.\n"));
        crash_at(&env, &format!("{point}:1"), point);
        index_to_completion(&env);

        let listed = listing(&c, &env).await;
        assert_eq!(
            entry_counts(&listed),
            [("a.md", 1), ("b.md", 1), ("c.md", 1)],
            "{point}: {listed:#?}"
        );
        let ledger = Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
        let rows = ledger.kb_files("docs").unwrap();
        let files = ledger.files("docs").unwrap();
        for (path, row) in &rows {
            assert_eq!(row.state, KbState::Linked, "{point}: {row:#?}");
            assert_eq!(row.old_file_id, None, "{point}: {row:#?}");
            assert_eq!(
                Some(&row.content_hash),
                files[path].content_hash.as_ref(),
                "{point}: {path} published at its current version"
            );
            let id = row.file_id.as_deref().unwrap();
            assert_eq!(
                listed[path][0].id, id,
                "{point}: {path} listed under its recorded id"
            );
        }
    }
}

/// `ragd index` killed at random moments against the real Open WebUI, while
/// folders and files are renamed back and forth and files edited: after a clean
/// rerun the knowledge base lists every file once, at its current version, under
/// its recorded id, in the directory of its path under its own name, with every
/// row linked, nothing extra and no unlinked upload of ours left. The real server processes in the background, so a kill leaves
/// uploads in states the fake only models. CI size: 30 files, 8 kills (about
/// 25 s); `scripts/crash-soak.sh` runs it at 60 files and 25 kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_against_the_real_server_while_files_move_and_change() {
    let Some((url, key)) = real_server() else {
        return;
    };
    let env = TestEnv::with_knowledge(&url, &key, &unique("soak"), 120).await;
    // Sized on their own: the real server processes every upload itself.
    let files = sized("RAGD_REAL_CRASH_FILES", 30);
    let want_kills = sized("RAGD_REAL_CRASH_KILLS", 8);
    write_corpus(&env, files, 0);
    index_to_completion(&env);
    let mut rng = rand::rng();
    let (mut kills, mut rounds) = (0, 0);
    while kills < want_kills && rounds < want_kills * 4 {
        rounds += 1;
        if rounds % 2 == 1 {
            flip_folders(&env);
            flip_names(&env);
        } else {
            // Edit about a third of the files, wherever they are now; half of
            // the edited ones go back to their previous text (a version that
            // may be linked, or uploaded by a killed run).
            for entry in walkdir::WalkDir::new(env.docs()) {
                let entry = entry.unwrap();
                if entry.file_type().is_file() && rng.random_range(0..3) == 0 {
                    let mut text = std::fs::read_to_string(entry.path()).unwrap();
                    match text.rfind("\nEdited in round ") {
                        Some(at) if rng.random_range(0..2) == 0 => text.truncate(at),
                        _ => text.push_str(&format!("\nEdited in round {rounds}.\n")),
                    }
                    std::fs::write(entry.path(), text).unwrap();
                }
            }
        }
        if run_and_kill(&env, Duration::from_millis(rng.random_range(200..4000))).landed(kills) {
            kills += 1;
        }
    }
    assert!(kills >= want_kills, "only {kills} kills landed");
    index_to_completion(&env);

    let ledger = Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
    let rows = ledger.kb_files("docs").unwrap();
    let indexed = ledger.files("docs").unwrap();
    let c = client(&url, &key);
    let kb = knowledge_id(&env).await;
    let listed = listing_of(&c, &kb, &rows).await;
    let on_disk: Vec<String> = walkdir::WalkDir::new(env.docs())
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| ragd::triggers::key::rel_to_string(e.path().strip_prefix(env.docs()).unwrap()))
        .collect();
    let wrong: Vec<&String> = on_disk
        .iter()
        .filter(|p| {
            !rows.get(*p).is_some_and(|r| {
                r.state == KbState::Linked
                    && r.old_file_id.is_none()
                    && Some(&r.content_hash)
                        == indexed.get(*p).and_then(|f| f.content_hash.as_ref())
                    && listed.get(*p).is_some_and(|l| {
                        l.len() == 1 && Some(l[0].id.as_str()) == r.file_id.as_deref()
                    })
            })
        })
        .collect();
    let extra: Vec<&String> = listed.keys().filter(|k| !on_disk.contains(k)).collect();
    // The base's tree is the folder's: every file in the directory of its path,
    // under its own name, after folders and files were renamed under the kills.
    let placed: Vec<String> = places(&c, &kb).await.into_keys().collect();
    let mut expected = on_disk.clone();
    expected.sort();
    assert_eq!(
        placed, expected,
        "the knowledge base's tree is not the folder's"
    );
    // Uploads carrying this base's marker that it does not list.
    let linked: std::collections::HashSet<&str> =
        listed.values().flatten().map(|f| f.id.as_str()).collect();
    let unlinked = c
        .list_files()
        .await
        .unwrap()
        .into_iter()
        .filter(|f| {
            f.metadata
                .get("ragd")
                .and_then(|m| m.get("kb"))
                .and_then(|k| k.as_str())
                == Some(kb.as_str())
                && !linked.contains(f.id.as_str())
        })
        .count();
    println!(
        "crash-soak (real server): kills={kills} rounds={rounds} files={} listed={} wrong={} \
         extra={} unlinked_uploads={unlinked}",
        on_disk.len(),
        listed.len(),
        wrong.len(),
        extra.len()
    );
    assert!(
        wrong.is_empty() && extra.is_empty() && unlinked == 0,
        "wrong: {wrong:?}\nextra: {extra:?}\nunlinked uploads: {unlinked}\nrows: {rows:#?}"
    );
}

/// A changed file's new version is uploaded, ragd is killed before the upload
/// is recorded, and the file is changed back. The rerun replaces the unfinished
/// upload with the old text again, whose upload is still linked as the version
/// being replaced: it must not adopt that upload as the new one and then
/// delete it as the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reverted_after_a_crash_keeps_the_file_in_the_knowledge_base() {
    invariants_hold_on_the_fake(
        2,
        |url, key| async move { crash_then_revert(&url, &key).await },
    )
    .await;
    let Some((url, key)) = real_server() else {
        return;
    };
    let env = crash_then_revert(&url, &key).await;
    let listed = listing(&client(&url, &key), &env).await;
    let rows = Ledger::open(&env.dir.path().join("state/ledger.sqlite"))
        .unwrap()
        .kb_files("docs")
        .unwrap();
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["a.md", "b.md"],
        "{listed:#?}"
    );
    for (path, files) in &listed {
        assert_eq!(files.len(), 1, "{listed:#?}");
        assert_eq!(Some(&files[0].id), rows[path].file_id.as_ref(), "{rows:#?}");
        assert_eq!(rows[path].state, KbState::Linked);
    }
}

/// Index `a.md` and `b.md`, change `a.md`, kill ragd right after the new
/// version's upload, change `a.md` back, and rerun to completion.
async fn crash_then_revert(url: &str, key: &str) -> TestEnv {
    let env = TestEnv::with_knowledge(url, key, &unique("revert"), 120).await;
    let v1 = format!("# A\n\nThe first words about the {} heron.\n", unique("h"));
    env.write("a.md", &v1);
    env.write("b.md", format!("# B\n\nThe {} egret stays.\n", unique("e")));
    index_to_completion(&env);
    env.write("a.md", "# A\n\nThe second words about the heron.\n");
    crash_at(&env, "kb.after_upload:1", url);
    env.write("a.md", &v1);
    index_to_completion(&env);
    env
}
