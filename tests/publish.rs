//! Publishing to Open WebUI knowledge bases through `ragd index`: the knowledge
//! base ends equal to the folder, through changes, duplicates and reruns.
//!
//! Each case is written once over (url, key) and runs against the in-process fake
//! always, and against a real Open WebUI when `RAGD_OWUI_URL` / `RAGD_OWUI_KEY` are
//! set (`scripts/openwebui-up.sh`; otherwise that half prints a skip note).

use std::time::Duration;

use ragd::ledger::{FailKind, FileState, KbRecord, KbState};
use ragd::open_webui::OwuiError;
use ragd::pipeline::RunRequest;
use ragd::publish::Verify;
use serde_json::json;

use crate::support::env::TestEnv;
use crate::support::fake_openwebui::spawn_fake;
use crate::support::owui::{client, entry_counts, knowledge_id, listing, real_server, unique};

macro_rules! against_both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test]
            async fn fake() {
                let fake = super::spawn_fake("sk-fake").await;
                super::$case(&fake.url, &fake.api_key).await;
            }
            #[tokio::test]
            async fn real() {
                if let Some((url, key)) = super::real_server() {
                    super::$case(&url, &key).await;
                }
            }
        }
    };
}

against_both!(knowledge_base_equals_the_folder, kb_equals_folder);
against_both!(changes_and_deletions_propagate, changes_propagate);
against_both!(duplicate_text_is_recorded_not_retried, duplicate_recorded);
against_both!(files_uploaded_by_hand_survive, hand_files_survive);
against_both!(identical_copies_are_linked_exactly_once, copies_linked_once);
against_both!(
    a_refused_copy_is_published_in_the_run_that_changes_its_twin,
    copy_follows_changed_twin
);
against_both!(
    reconcile_deletes_unlisted_orphan_uploads,
    unlisted_orphans_deleted
);
against_both!(
    a_lost_ledger_adopts_the_uploads_instead_of_duplicating_them,
    lost_ledger_adopts
);
against_both!(a_moved_folder_keeps_its_uploads, moved_folder_keeps_uploads);
against_both!(
    a_lost_ledger_after_a_move_adopts_the_moved_uploads,
    lost_ledger_after_move
);
against_both!(
    a_change_reverted_after_a_crash_after_a_move_keeps_the_file,
    reverted_after_move
);

/// Generous: a real server processes files in the background on a loaded box.
const PROCESS_TIMEOUT_SECS: u64 = 120;

async fn kb_equals_folder(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("equal"), PROCESS_TIMEOUT_SECS).await;
    env.write(
        "guide.md",
        "# Guide\n\nHow to feed the capybara in winter.\n",
    );
    env.write("sub dir/notes.txt", "Notes on the quokka census.\n");
    env.write(
        "page.html",
        "<html><body><p>The narwhal tusk is a tooth.</p></body></html>",
    );
    env.write("empty.txt", "");
    let s = env.index().await;
    let kb = s.knowledge.clone().expect("published");
    assert_eq!((kb.uploads, kb.linked, kb.failed), (3, 3, 0), "{kb:?}");
    // The empty file never reaches Open WebUI; the ledger says why.
    assert_eq!(
        env.app()
            .ledger
            .get("docs", "empty.txt")
            .unwrap()
            .unwrap()
            .error_kind
            .as_ref()
            .map(FailKind::as_str),
        Some("empty")
    );

    let c = client(url, key);
    let listed = listing(&c, &env).await;
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        vec!["guide.md", "page.html", "sub dir/notes.txt"]
    );
    for (path, files) in &listed {
        assert_eq!(files.len(), 1, "one entry per file: {path}");
        let marker = &files[0].metadata["ragd"];
        assert_eq!(marker["pipeline"], "docs");
        let rec = env.app().ledger.get("docs", path).unwrap().unwrap();
        assert_eq!(marker["content_hash"], json!(rec.content_hash.unwrap()));
    }
    assert_eq!(listed["sub dir/notes.txt"][0].filename, "notes.txt");

    // A rerun over the unchanged folder uploads nothing.
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.removed), (0, 0, 0), "{kb:?}");
}

async fn changes_propagate(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("changes"), PROCESS_TIMEOUT_SECS).await;
    env.write("a.md", "# A\n\nThe first version mentions the axolotl.\n");
    env.write("b.md", "# B\n\nThis one is about the pangolin.\n");
    env.index().await;
    let c = client(url, key);
    let before = listing(&c, &env).await;
    let old_a = before["a.md"][0].id.clone();

    env.write(
        "a.md",
        "# A\n\nThe second version mentions the okapi instead.\n",
    );
    env.remove("b.md");
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked), (1, 1), "{kb:?}");
    assert_eq!(kb.removed, 2, "old a.md and b.md: {kb:?}");

    let after = listing(&c, &env).await;
    assert_eq!(after.keys().collect::<Vec<_>>(), vec!["a.md"]);
    assert_eq!(after["a.md"].len(), 1);
    assert_ne!(after["a.md"][0].id, old_a);
    let rec = env.app().ledger.get("docs", "a.md").unwrap().unwrap();
    assert_eq!(
        after["a.md"][0].metadata["ragd"]["content_hash"],
        json!(rec.content_hash.unwrap())
    );
    // The old version is gone from Open WebUI altogether, not just unlinked.
    assert!(matches!(
        c.get_file(&old_a).await,
        Err(OwuiError::NotFound { .. })
    ));
}

async fn duplicate_recorded(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("dup"), PROCESS_TIMEOUT_SECS).await;
    let text = format!(
        "# Same\n\nIdentical words about the {} wombat.\n",
        unique("w")
    );
    env.write("one.md", &text);
    env.write("two.md", &text);
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    assert_eq!((kb.linked, kb.failed), (1, 1), "{kb:?}");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    let failed: Vec<&KbRecord> = rows
        .values()
        .filter(|r| r.state == KbState::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error_kind.as_ref().map(FailKind::as_str),
        Some("duplicate_content")
    );
    let twin = if failed[0].path == "one.md" {
        "two.md"
    } else {
        "one.md"
    };
    assert!(
        failed[0].error.as_deref().unwrap().contains(twin),
        "{:?}",
        failed[0].error
    );

    // A rerun makes no upload: the refusal is permanent for this text.
    let s = env.index().await;
    assert_eq!(s.knowledge.unwrap().uploads, 0);
    let c = client(url, key);
    let listed = listing(&c, &env).await;
    assert_eq!(
        listed.values().map(Vec::len).sum::<usize>(),
        1,
        "{listed:?}"
    );
    // The refused upload was deleted, not left behind.
    assert!(failed[0].file_id.is_none());

    // The linked twin is deleted: the refused file now holds the only copy of
    // the text, so it is published (in the same run that removes the twin).
    let refused = failed[0].path.clone();
    env.remove(twin);
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    assert_eq!(
        (kb.removed, kb.uploads, kb.linked, kb.failed),
        (1, 1, 1, 0),
        "{kb:?}"
    );
    let listed = listing(&c, &env).await;
    assert_eq!(listed.keys().collect::<Vec<_>>(), [&refused], "{listed:?}");
    assert_eq!(listed[&refused].len(), 1, "{listed:?}");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[&refused].state, KbState::Linked);
    assert_eq!(rows[&refused].attempts, 0);
}

/// Six files with one text, published by one run with four uploads in flight:
/// Open WebUI's duplicate check reads the base before it writes, so copies
/// processed at once could all get in (or all be refused). ragd publishes one
/// text's files one after another: exactly one is linked, and the others are
/// not even uploaded.
async fn copies_linked_once(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("copies"), PROCESS_TIMEOUT_SECS).await;
    let text = format!("# Copy\n\nThe {} dugong, six times.\n", unique("c"));
    for i in 0..6 {
        env.write(&format!("copy{i}.md"), &text);
    }
    env.write("own.md", format!("# Own\n\nThe {} okapi.\n", unique("o")));
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    // The copies after the first are refused without an upload: the linked
    // first copy holds their text.
    assert_eq!((kb.uploads, kb.linked, kb.failed), (2, 2, 5), "{kb:?}");
    let listed = listing(&client(url, key), &env).await;
    let copies: Vec<&String> = listed.keys().filter(|p| p.starts_with("copy")).collect();
    assert_eq!(copies.len(), 1, "{listed:?}");
    assert_eq!(listed[copies[0]].len(), 1, "{listed:?}");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    assert_eq!(rows[copies[0]].state, KbState::Linked);
    let refused = rows
        .values()
        .filter(|r| r.error_kind.as_ref().map(FailKind::as_str) == Some("duplicate_content"))
        .count();
    assert_eq!(refused, 5);
}

/// `b.md` is refused as a copy of `a.md`. When `a.md` changes, `b.md` holds the
/// only copy of the old text: the run that publishes `a.md`'s new version
/// publishes `b.md` too, not a later one (the daemon runs again only on the next
/// change).
async fn copy_follows_changed_twin(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("twin"), PROCESS_TIMEOUT_SECS).await;
    let text = format!("# Twin\n\nThe {} tapir.\n", unique("t"));
    env.write("a.md", &text);
    env.write("b.md", &text);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.linked, kb.failed), (1, 1), "{kb:?}");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    assert_eq!(rows["b.md"].state, KbState::Failed, "{rows:?}");

    env.write(
        "a.md",
        format!("# Twin\n\nThe {} tapir, revised.\n", unique("t")),
    );
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.linked, kb.failed),
        (2, 0),
        "a.md's new version and b.md: {kb:?}"
    );
    let listed = listing(&client(url, key), &env).await;
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["a.md", "b.md"],
        "{listed:?}"
    );
    assert!(listed.values().all(|v| v.len() == 1), "{listed:?}");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    assert!(
        rows.values().all(|r| r.state == KbState::Linked),
        "{rows:?}"
    );
}

/// On 0.12+ the server links an upload carrying `metadata.knowledge_id` itself;
/// a `file/add` after that would embed the file into the base a second time
/// and answer with every file of the base. Older servers get the add.
#[tokio::test]
async fn an_auto_linked_upload_is_not_added_a_second_time() {
    for (version, adds) in [("0.12.4", 0), ("0.11.2", 3)] {
        let fake = spawn_fake("sk-fake").await;
        fake.set_version(version);
        let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "auto", 30).await;
        for name in ["a", "b", "c"] {
            env.write(&format!("{name}.md"), format!("# {name}\n\nText {name}.\n"));
        }
        let kb = env.index().await.knowledge.unwrap();
        assert_eq!(
            (kb.uploads, kb.linked, kb.failed),
            (3, 3, 0),
            "{version}: {kb:?}"
        );
        assert_eq!(fake.counters().adds, adds, "{version}");
        let id = knowledge_id(&env).await;
        assert_eq!(fake.knowledge_file_ids(&id).len(), 3, "{version}");
    }
}

async fn hand_files_survive(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("hand"), PROCESS_TIMEOUT_SECS).await;
    env.write(
        "ours.md",
        "# Ours\n\nA file ragd manages, about the tapir.\n",
    );
    // A second file keeps the folder from turning up empty, which would hold the
    // deletion back (safety rail).
    env.write(
        "stays.md",
        "# Stays\n\nAnother file ragd manages, about the tarsier.\n",
    );
    env.index().await;
    let c = client(url, key);
    let kb = knowledge_id(&env).await;
    let hand = c
        .upload_file(
            "by-hand.txt",
            format!("Uploaded by a person: {}\n", unique("h")).into_bytes(),
            json!({}),
            true,
        )
        .await
        .unwrap();
    c.wait_processed(&hand.id, Duration::from_secs(PROCESS_TIMEOUT_SECS))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    c.add_file_to_knowledge(&kb, &hand.id).await.unwrap();

    env.remove("ours.md");
    let s = env.index().await;
    assert_eq!(s.knowledge.unwrap().removed, 1);
    let listed = listing(&c, &env).await;
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        vec!["hand:by-hand.txt", "stays.md"]
    );
}

#[tokio::test]
async fn slow_processing_is_resumed_without_a_second_upload() {
    let fake = spawn_fake("sk-fake").await;
    // Processing takes longer than ragd waits: the first run defers.
    fake.set_processing(1_000_000, Duration::from_secs(3600));
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "slow", 1).await;
    env.write("a.md", "# A\n\nSlow to process: the sloth.\n");
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.deferred), (1, 0, 1), "{kb:?}");
    let row = env.app().ledger.kb_files("docs").unwrap()["a.md"].clone();
    assert_eq!(row.state, KbState::Uploaded);
    assert!(
        row.file_id.is_some(),
        "the file id is recorded before waiting"
    );

    // The server catches up; the next run links the recorded upload.
    fake.set_processing(0, Duration::ZERO);
    let s = env.index().await;
    let kb = s.knowledge.unwrap();
    assert_eq!(kb.uploads, 0, "resumed from the recorded id: {kb:?}");
    assert_eq!(fake.counters().uploads, 1);
}

#[tokio::test]
async fn an_upload_whose_id_was_never_recorded_is_adopted_not_repeated() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "adopt", 30).await;
    env.write("a.md", "# A\n\nThe heron waits.\n");
    // Index into Qdrant only (no publishing yet) by running once, then rewind
    // the knowledge-base row to the intent a crash right after the upload leaves.
    env.index().await;
    let app = env.app();
    let mut row = app.ledger.kb_files("docs").unwrap()["a.md"].clone();
    let c = client(&fake.url, &fake.api_key);
    let kb = row.kb_id.clone();
    let linked_id = row.file_id.clone().unwrap();
    c.remove_file_from_knowledge(&kb, &linked_id, true)
        .await
        .unwrap();
    let rec = app.ledger.get("docs", "a.md").unwrap().unwrap();
    assert_eq!(rec.state, FileState::Indexed);
    let marker = env.upload_marker("a.md", rec.content_hash.as_deref().unwrap(), &kb);
    let bytes = std::fs::read(env.docs().join("a.md")).unwrap();
    let lost = c.upload_file("a.md", bytes, marker, true).await.unwrap();
    row.state = KbState::Uploading;
    row.file_id = None;
    app.ledger.put_kb(&row).unwrap();
    drop(app);
    let uploads_before = fake.counters().uploads;

    let s = env.index().await;
    let kbs = s.knowledge.unwrap();
    assert_eq!((kbs.uploads, kbs.adopted, kbs.linked), (0, 1, 1), "{kbs:?}");
    assert_eq!(fake.counters().uploads, uploads_before);
    assert_eq!(fake.knowledge_file_ids(&kb), vec![lost.id]);
}

#[tokio::test]
async fn a_marked_upload_unknown_to_the_ledger_is_deleted_as_an_orphan() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "orphans", 30).await;
    env.write("a.md", "# A\n\nThe ibis.\n");
    env.index().await;
    let c = client(&fake.url, &fake.api_key);
    let app = env.app();
    let kb = env
        .pipeline(&app)
        .publisher
        .clone()
        .unwrap()
        .knowledge_id()
        .await
        .unwrap();
    drop(app);
    let marker = env.upload_marker("gone.md", "x", &kb);
    let orphan = c
        .upload_file(
            "gone.md",
            b"An orphan about the egret.\n".to_vec(),
            marker,
            true,
        )
        .await
        .unwrap();
    c.wait_processed(&orphan.id, Duration::from_secs(30))
        .await
        .unwrap();
    c.add_file_to_knowledge(&kb, &orphan.id).await.unwrap();

    let s = env.index().await;
    assert_eq!(s.knowledge.unwrap().orphans_deleted, 1);
    assert_eq!(fake.knowledge_file_ids(&kb).len(), 1);
    assert!(matches!(
        c.get_file(&orphan.id).await,
        Err(OwuiError::NotFound { .. })
    ));
}

/// Two installations (two state directories, so two instance ids) with the
/// same pipeline name, the default `docs`, publishing to one knowledge base:
/// each one's uploads carry the same pipeline in their marker, and before
/// markers carried the installation, each took the other's files for orphans
/// of its own and deleted them — in every index run, and in a repair's sweep.
#[tokio::test]
async fn another_installations_uploads_are_not_taken_for_orphans() {
    let fake = spawn_fake("sk-fake").await;
    let first = TestEnv::with_knowledge(&fake.url, &fake.api_key, "shared", 30).await;
    let second = TestEnv::with_knowledge(&fake.url, &fake.api_key, "shared", 30).await;
    first.write("a.md", "# A\n\nThe heron of the first.\n");
    second.write("b.md", "# B\n\nThe egret of the second.\n");
    first.index().await;
    let s = second.index().await;
    assert_eq!(s.knowledge.unwrap().orphans_deleted, 0);
    let app = second.app();
    let (_, repaired) = second
        .pipeline(&app)
        .repair(RunRequest::default())
        .await
        .unwrap();
    drop(app);
    assert_eq!(repaired.knowledge.unwrap().orphans_deleted, 0);
    let s = first.index().await;
    assert_eq!(s.knowledge.unwrap().orphans_deleted, 0);
    let c = client(&fake.url, &fake.api_key);
    let kb = knowledge_id(&first).await;
    assert_eq!(kb, knowledge_id(&second).await, "one base");
    let mut names: Vec<String> = c
        .knowledge_files(&kb)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.filename)
        .collect();
    names.sort();
    assert_eq!(names, ["a.md", "b.md"]);
}

#[tokio::test]
async fn a_wrong_key_stops_the_pipeline_with_a_clear_message() {
    let fake = spawn_fake("sk-right").await;
    let env = TestEnv::with_knowledge(&fake.url, "sk-wrong", "auth", 30).await;
    env.write("a.md", "# A\n\nThe kiwi.\n");
    let app = env.app();
    let err = env
        .pipeline(&app)
        .run(&Default::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("api_key") && msg.contains("401"), "{msg}");
    // The Qdrant side still indexed the file.
    assert_eq!(
        app.ledger.get("docs", "a.md").unwrap().unwrap().state,
        FileState::Indexed
    );
}

/// Regression: an identical file published by another installation to another
/// knowledge base on the same server carries the same path and text; it must not
/// be adopted (and later removed) as if it were this pipeline's lost upload.
#[tokio::test]
async fn an_identical_upload_in_another_knowledge_base_is_not_adopted() {
    let fake = spawn_fake("sk-fake").await;
    let first = TestEnv::with_knowledge(&fake.url, &fake.api_key, "first", 30).await;
    let second = TestEnv::with_knowledge(&fake.url, &fake.api_key, "second", 30).await;
    for env in [&first, &second] {
        env.write(
            "same.md",
            "# Same\n\nThe same words in two installations: the quetzal.\n",
        );
    }
    let a = first.index().await.knowledge.unwrap();
    let b = second.index().await.knowledge.unwrap();
    assert_eq!((a.uploads, a.adopted), (1, 0));
    assert_eq!((b.uploads, b.adopted), (1, 0), "{b:?}");
}

fn change_run() -> RunRequest {
    RunRequest {
        verify_knowledge: Verify::WhenDue,
        ..RunRequest::reconcile()
    }
}

/// A daemon's runs for changed files publish from the ledger alone: the full
/// listing of the knowledge base, which re-links files unlinked by hand, waits
/// for `verify_interval_secs` (600 by default), while `Verify::Always` runs
/// (`ragd index`, startup, schedules) list it every time.
#[tokio::test]
async fn change_runs_list_the_knowledge_base_only_when_due() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "due", 30).await;
    env.write("a.md", "# A\n\nThe heron wades.\n");
    let app = env.app();
    let p = env.pipeline(&app);

    // Never listed yet: even a change run lists.
    p.run(&change_run()).await.unwrap();
    let listed = fake.counters().listings;
    assert!(listed >= 1, "the first run lists the knowledge base");

    env.write("b.md", "# B\n\nThe stork nests.\n");
    let s = p.run(&change_run()).await.unwrap();
    let kbs = s.knowledge.unwrap();
    assert_eq!((kbs.uploads, kbs.linked), (1, 1), "{kbs:?}");
    assert_eq!(fake.counters().listings, listed, "a change run listed");

    // Unlinked by hand: a change run does not notice, a full run re-links it.
    let kb = p.publisher.clone().unwrap().knowledge_id().await.unwrap();
    let a = app.ledger.kb_files("docs").unwrap()["a.md"]
        .file_id
        .clone()
        .unwrap();
    let c = client(&fake.url, &fake.api_key);
    c.remove_file_from_knowledge(&kb, &a, false).await.unwrap();
    p.run(&change_run()).await.unwrap();
    assert!(!fake.knowledge_file_ids(&kb).contains(&a));
    assert_eq!(fake.counters().listings, listed);

    let s = p.run(&RunRequest::reconcile()).await.unwrap();
    assert_eq!(s.knowledge.unwrap().linked, 1);
    assert!(fake.knowledge_file_ids(&kb).contains(&a));
    assert!(fake.counters().listings > listed);
}

/// `verify_interval_secs = 0`: every run lists, change runs included.
#[tokio::test]
async fn a_zero_verify_interval_lists_the_knowledge_base_on_every_run() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with(
        "[knowledge]\nname = \"always\"\n",
        &format!(
            "[open_webui]\nurl = \"{}\"\napi_key = \"{}\"\nverify_interval_secs = 0\n",
            fake.url, fake.api_key
        ),
    )
    .await;
    env.write("a.md", "# A\n\nThe ibis probes.\n");
    let app = env.app();
    let p = env.pipeline(&app);
    p.run(&change_run()).await.unwrap();
    let listed = fake.counters().listings;
    p.run(&change_run()).await.unwrap();
    assert!(fake.counters().listings > listed);
}

/// An upload with this pipeline's and this base's marker that no row knows and
/// the base does not list (left by a crash before ragd searched by marker): no
/// index run can see it; `ragd reconcile` lists every upload and deletes it.
/// Uploads by hand, and ragd's for another base, stay.
async fn unlisted_orphans_deleted(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("unlisted"), PROCESS_TIMEOUT_SECS).await;
    env.write("a.md", "# A\n\nA file ragd manages, about the saola.\n");
    env.index().await;
    let c = client(url, key);
    let kb = knowledge_id(&env).await;
    let upload = |name: &'static str, metadata: serde_json::Value| {
        let c = &c;
        async move {
            c.upload_file(
                name,
                format!("# {name}\n\nLeft behind.\n").into_bytes(),
                metadata,
                false,
            )
            .await
            .unwrap()
            .id
        }
    };
    let marker = |kb: &str| env.upload_marker("gone.md", "0", kb);
    let orphan = upload("gone.md", marker(&kb)).await;
    let elsewhere = upload("gone.md", marker("another-base")).await;
    let by_hand = upload("mine.md", json!({})).await;

    // An index run lists only the base: the orphan stays.
    let s = env.index().await;
    assert_eq!(s.knowledge.unwrap().orphans_deleted, 0);
    assert!(c.get_file(&orphan).await.is_ok());

    let app = env.app();
    let (_, summary) = env
        .pipeline(&app)
        .repair(RunRequest::default())
        .await
        .unwrap();
    drop(app);
    assert_eq!(summary.knowledge.unwrap().orphans_deleted, 1);
    assert!(matches!(
        c.get_file(&orphan).await,
        Err(OwuiError::NotFound { .. })
    ));
    assert!(c.get_file(&elsewhere).await.is_ok());
    assert!(c.get_file(&by_hand).await.is_ok());
    let listed = listing(&c, &env).await;
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["a.md"], "{listed:?}");
    for id in [elsewhere, by_hand] {
        c.delete_file(&id).await.unwrap();
    }
}

/// A name search before an upload finds a lost upload of that version, but
/// names are base names: with many `README.md` each search answered all of
/// them (O(N²) bytes), and every upload paid a request. Only rows an earlier
/// attempt may have uploaded for (an intent left behind) search first.
#[tokio::test]
async fn a_fresh_upload_does_not_search_by_name_first() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "nosearch", 30).await;
    for dir in ["a", "b", "c", "d"] {
        env.write(
            &format!("{dir}/README.md"),
            format!("# {dir}\n\nThe {dir} pangolin.\n"),
        );
    }
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked), (4, 4), "{kb:?}");
    assert_eq!(fake.counters().searches, 0, "new files");

    env.write("b/README.md", "# b\n\nThe b pangolin, revised.\n");
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.removed), (1, 1, 1), "{kb:?}");
    assert_eq!(fake.counters().searches, 0, "a changed file");

    // An intent a crash left behind is looked for before uploading again.
    let app = env.app();
    let mut row = app.ledger.kb_files("docs").unwrap()["c/README.md"].clone();
    let old = row.file_id.take();
    row.state = KbState::Uploading;
    row.old_file_id = old.clone();
    app.ledger.put_kb(&row).unwrap();
    drop(app);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.adopted), (0, 1), "{kb:?}");
    assert_eq!(fake.counters().searches, 1, "the resumed intent");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    assert_eq!(rows["c/README.md"].file_id, old, "its own upload, kept");
    assert_eq!(rows["c/README.md"].state, KbState::Linked);
    assert_eq!(fake.knowledge_file_ids(&row.kb_id).len(), 4);
}

/// The ledger's rows for the base are lost (a restored or deleted state
/// folder): each file's upload is still in the base, carrying ragd's marker.
/// The fresh uploads are refused as duplicates; ragd then finds its own
/// upload by the marker and adopts it, deleting the refused one, rather than
/// recording every file as a duplicate and sweeping the base empty.
async fn lost_ledger_adopts(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("lost"), PROCESS_TIMEOUT_SECS).await;
    let tag = unique("l");
    for name in ["one.md", "two.md", "three.md"] {
        env.write(name, format!("# {name}\n\nThe {tag} {name} axolotl.\n"));
    }
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked), (3, 3), "{kb:?}");
    forget_the_rows_then_adopt(&env, url, key, &["one.md", "two.md", "three.md"]).await;
    let listed = listing(&client(url, key), &env).await;
    assert_eq!(
        entry_counts(&listed),
        vec![("one.md", 1), ("three.md", 1), ("two.md", 1)]
    );
    // And a rerun has nothing to do.
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.adopted), (0, 0, 0), "{kb:?}");
}

/// Moving a folder: each file keeps its upload (same base name, same text),
/// not uploaded again for the server to extract and embed again. A renamed
/// file is uploaded again: Open WebUI shows the upload's name.
async fn moved_folder_keeps_uploads(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("moved"), PROCESS_TIMEOUT_SECS).await;
    let tag = unique("m");
    for name in ["a.md", "b.md", "c.txt"] {
        env.write(
            &format!("old/{name}"),
            format!("# {name}\n\nThe {tag} {name} wombat.\n"),
        );
        env.write(
            &format!("stay/{name}"),
            format!("# {name}\n\nThe {tag} {name} numbat.\n"),
        );
    }
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked), (6, 6), "{kb:?}");
    let before = env.app().ledger.kb_files("docs").unwrap();

    std::fs::rename(env.docs().join("old"), env.docs().join("new")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.moved, kb.removed, kb.linked, kb.failed),
        (0, 3, 0, 0, 0),
        "{kb:?}"
    );
    let rows = env.app().ledger.kb_files("docs").unwrap();
    let paths: Vec<&str> = rows
        .keys()
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        paths,
        [
            "new/a.md",
            "new/b.md",
            "new/c.txt",
            "stay/a.md",
            "stay/b.md",
            "stay/c.txt"
        ]
    );
    for name in ["a.md", "b.md", "c.txt"] {
        let (was, now) = (
            &before[&format!("old/{name}")],
            &rows[&format!("new/{name}")],
        );
        assert_eq!(now.file_id, was.file_id, "{name}: the same upload");
        assert_eq!(now.state, KbState::Linked);
    }
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    let mut listed: Vec<String> = c
        .knowledge_files(&kb_id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    let mut expected: Vec<String> = rows.values().filter_map(|r| r.file_id.clone()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "the base lists the same six uploads");

    // Nothing left to do; a change after the move replaces the upload as usual.
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.moved, kb.removed), (0, 0, 0), "{kb:?}");
    env.write(
        "new/a.md",
        format!("# a.md\n\nThe {tag} a.md wombat, revised.\n"),
    );
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.removed), (1, 1, 1), "{kb:?}");

    // A new name is a rename of the same upload (0.12 renames files in place).
    std::fs::rename(env.docs().join("new/b.md"), env.docs().join("new/b2.md")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.moved, kb.placed, kb.linked, kb.removed),
        (0, 1, 1, 0, 0),
        "{kb:?}"
    );
    let files = c.knowledge_files(&kb_id).await.unwrap();
    assert_eq!(files.len(), 6);
    let b2 = &env.app().ledger.kb_files("docs").unwrap()["new/b2.md"];
    assert_eq!(
        files
            .iter()
            .find(|f| Some(&f.id) == b2.file_id.as_ref())
            .map(|f| f.filename.as_str()),
        Some("b2.md")
    );
}

/// After a move the upload's marker still names the old path. A change of the
/// moved file, killed after its intent, then reverted: the marker search for
/// the reverted text misses the replaced version's upload, and the server
/// refuses a new upload as its duplicate. That upload is this version: it is
/// kept, not the file recorded as a duplicate of itself.
async fn reverted_after_move(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("revmove"), PROCESS_TIMEOUT_SECS).await;
    let tag = unique("r");
    env.write("old/a.md", format!("# a\n\nThe {tag} potoroo.\n"));
    env.write("stay/b.md", format!("# b\n\nThe {tag} bettong.\n"));
    env.index().await;
    std::fs::rename(env.docs().join("old"), env.docs().join("new")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.moved), (0, 1), "{kb:?}");

    // The intent a crash leaves for a next version (another text), with the
    // moved upload as the version it replaces; the file is back at that text.
    let app = env.app();
    let mut row = app.ledger.kb_files("docs").unwrap()["new/a.md"].clone();
    let moved = row.file_id.clone().unwrap();
    row.state = KbState::Uploading;
    row.old_file_id = Some(moved.clone());
    row.file_id = None;
    row.content_hash = "0".repeat(64);
    app.ledger.put_kb(&row).unwrap();
    drop(app);

    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.linked, kb.failed, kb.adopted), (1, 0, 1), "{kb:?}");
    let rows = env.app().ledger.kb_files("docs").unwrap();
    let now = &rows["new/a.md"];
    assert_eq!(now.state, KbState::Linked, "{now:?}");
    assert_eq!(now.file_id.as_deref(), Some(moved.as_str()));
    assert_eq!(now.old_file_id, None);
    let c = client(url, key);
    let ids: Vec<String> = c
        .knowledge_files(&row.kb_id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&moved), "{ids:?}");
    // The refused upload is gone from the server too.
    let named: Vec<_> = c
        .find_files_by_name("a.md")
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.metadata["ragd"]["kb"] == json!(row.kb_id))
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
}

/// A moved file's upload keeps the old path in its marker. The ledger's rows
/// are then lost: the fresh upload is refused as a duplicate of the moved
/// upload, which the marker search (new path) misses; it is found by name and
/// text, recorded by no row, and adopted.
async fn lost_ledger_after_move(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("lostmove"), PROCESS_TIMEOUT_SECS).await;
    let tag = unique("lm");
    for name in ["one.md", "two.md"] {
        env.write(
            &format!("old/{name}"),
            format!("# {name}\n\nThe {tag} {name} quoll.\n"),
        );
    }
    env.index().await;
    std::fs::rename(env.docs().join("old"), env.docs().join("new")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.moved), (0, 2), "{kb:?}");
    forget_the_rows_then_adopt(&env, url, key, &["one.md", "two.md"]).await;
    let listed = listing(&client(url, key), &env).await;
    assert_eq!(
        entry_counts(&listed),
        vec![("new/one.md", 1), ("new/two.md", 1)]
    );
}

/// Delete the base's ledger rows, rerun, and check every file's upload was
/// adopted back (the same file ids, linked), none refused or swept, and that
/// each of `names` has exactly one upload of this base left on the server.
async fn forget_the_rows_then_adopt(env: &TestEnv, url: &str, key: &str, names: &[&str]) {
    let app = env.app();
    let before = app.ledger.kb_files("docs").unwrap();
    for path in before.keys() {
        app.ledger.remove_kb("docs", path).unwrap();
    }
    drop(app);

    let kb = env.index().await.knowledge.unwrap();
    let n = before.len();
    assert_eq!(
        (kb.adopted, kb.linked, kb.failed, kb.orphans_deleted),
        (n, n, 0, 0),
        "{kb:?}"
    );
    let rows = env.app().ledger.kb_files("docs").unwrap();
    for (path, row) in &before {
        assert_eq!(rows[path].state, KbState::Linked, "{path}");
        assert_eq!(rows[path].file_id, row.file_id, "{path}: the upload it had");
    }
    // The refused uploads are gone from the server, not only from the base.
    let c = client(url, key);
    let kb_id = knowledge_id(env).await;
    for name in names {
        let ours = c
            .find_files_by_name(name)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.metadata["ragd"]["kb"] == json!(kb_id))
            .count();
        assert_eq!(ours, 1, "{name}: uploads left on the server");
    }
}

/// A base of the configured name that another user owns is never taken by
/// name, even by an admin's key that sees it as writable: ragd makes its own,
/// and the other one stays as it was.
async fn another_users_base_is_not_taken(url: &str, key: &str, name: &str, theirs: &str) {
    let env = TestEnv::with_knowledge(url, key, name, PROCESS_TIMEOUT_SECS).await;
    env.write(
        "otter.md",
        "# Otter\n\nThe otter cracks shellfish on a stone.\n",
    );
    let s = env.index().await;
    assert_eq!(s.failed, 0, "{s:?}");
    let ours = knowledge_id(&env).await;
    assert_ne!(ours, theirs, "ragd published into another user's base");
    let c = client(url, key);
    assert_eq!(c.knowledge_files(theirs).await.unwrap().len(), 0);
    assert_eq!(c.knowledge_files(&ours).await.unwrap().len(), 1);
}

#[tokio::test]
async fn another_users_base_of_the_same_name_is_not_taken_fake() {
    let fake = spawn_fake("sk-fake").await;
    let name = unique("theirs");
    let theirs = fake.add_knowledge_of("someone-else", &name);
    another_users_base_is_not_taken(&fake.url, &fake.api_key, &name, &theirs).await;
}

#[tokio::test]
async fn another_users_base_of_the_same_name_is_not_taken_real() {
    let Some((url, key)) = real_server() else {
        return;
    };
    // Another admin (plain users may not make bases by default), and a base of
    // theirs made with their own session.
    let http = reqwest::Client::new();
    let added: serde_json::Value = http
        .post(format!("{url}/api/v1/auths/add"))
        .bearer_auth(&key)
        .json(
            &json!({"name": "other admin", "email": format!("{}@example.com", unique("other")),
            "password": "Pw-other-12345", "role": "admin"}),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = added["token"].as_str().expect("a session token").to_owned();
    let name = unique("theirs");
    let theirs: serde_json::Value = http
        .post(format!("{url}/api/v1/knowledge/create"))
        .bearer_auth(&token)
        .json(&json!({"name": name, "description": ""}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let theirs = theirs["id"].as_str().unwrap().to_owned();
    another_users_base_is_not_taken(&url, &key, &name, &theirs).await;
}

/// A legacy file ragd has no reader for, made by LibreOffice
/// (tests/data/formats/make.sh), and what a server without `unstructured`
/// says when it refuses it.
struct Legacy {
    fixture: &'static str,
    /// Where it lies in the source folder.
    path: &'static str,
    name: &'static str,
    ext: &'static str,
    refusal: &'static str,
}

/// Word 97-2003: Open WebUI sends it to `unstructured` only.
const LEGACY_DOC: Legacy = Legacy {
    fixture: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats/report.doc"),
    path: "old/report.doc",
    name: "report.doc",
    ext: "doc",
    refusal: "unstructured",
};

/// PowerPoint 97-2003: without `unstructured`, python-pptx, which reads pptx only.
const LEGACY_PPT: Legacy = Legacy {
    fixture: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats/slides.ppt"),
    path: "old/slides.ppt",
    name: "slides.ppt",
    ext: "ppt",
    refusal: "Package not found",
};

#[tokio::test]
async fn a_legacy_doc_is_published_without_a_reader_fake_server_without_unstructured() {
    let fake = spawn_fake("sk-fake").await;
    legacy_published(&fake.url, &fake.api_key, Some(false), &LEGACY_DOC).await;
}

#[tokio::test]
async fn a_legacy_doc_is_published_without_a_reader_fake_server_with_unstructured() {
    let fake = spawn_fake("sk-fake").await;
    fake.set_unstructured(true);
    legacy_published(&fake.url, &fake.api_key, Some(true), &LEGACY_DOC).await;
}

#[tokio::test]
async fn a_legacy_doc_is_published_without_a_reader_real_server() {
    if let Some((url, key)) = real_server() {
        // Whether it reads doc files is the server's installation
        // (`open-webui[unstructured]` and LibreOffice); either way is checked.
        legacy_published(&url, &key, None, &LEGACY_DOC).await;
    }
}

#[tokio::test]
async fn a_legacy_ppt_is_published_without_a_reader_fake_server_without_unstructured() {
    let fake = spawn_fake("sk-fake").await;
    legacy_published(&fake.url, &fake.api_key, Some(false), &LEGACY_PPT).await;
}

#[tokio::test]
async fn a_legacy_ppt_is_published_without_a_reader_fake_server_with_unstructured() {
    let fake = spawn_fake("sk-fake").await;
    fake.set_unstructured(true);
    legacy_published(&fake.url, &fake.api_key, Some(true), &LEGACY_PPT).await;
}

#[tokio::test]
async fn a_legacy_ppt_is_published_without_a_reader_real_server() {
    if let Some((url, key)) = real_server() {
        legacy_published(&url, &key, None, &LEGACY_PPT).await;
    }
}

/// The status line of the pipeline's files without a reader.
fn no_reader_status(env: &TestEnv, path: &str) -> String {
    let config = ragd::config::load(&env.config_path()).unwrap();
    let view = ragd::ops::View::open(config).unwrap();
    let status = ragd::ops::status::pipeline_status(&view, &view.config.pipelines[0]).unwrap();
    let group = status
        .skipped
        .iter()
        .find(|g| g.kind == "no_reader")
        .unwrap_or_else(|| panic!("{:?}", status.skipped));
    assert_eq!(group.examples, [path]);
    group.example_error.clone()
}

/// A `.doc` or `.ppt`, which ragd cannot read, is skipped by ragd's own
/// index and uploaded to the knowledge base as it is (issue 22). `reads`:
/// whether the server reads such files, `None` for "find out from its answer".
async fn legacy_published(url: &str, key: &str, reads: Option<bool>, legacy: &Legacy) {
    let path = legacy.path;
    let env = TestEnv::with_knowledge(url, key, &unique("legacy"), PROCESS_TIMEOUT_SECS).await;
    let doc = std::fs::read(legacy.fixture).unwrap();
    let doc_hash = ragd::document::sha256_hex(&doc);
    env.write(path, &doc);
    env.write(
        "notes.md",
        format!("# Notes\n\nThe heron count is on {}.\n", unique("day")),
    );
    let s = env.index().await;
    assert_eq!((s.added, s.skipped, s.failed), (1, 1, 0), "{s:?}");
    let row = env.app().ledger.get("docs", path).unwrap();
    let row = row.expect("a ledger row for the doc");
    assert_eq!(row.state, FileState::Skipped);
    assert_eq!(
        row.error_kind.as_ref().map(FailKind::as_str),
        Some("no_reader")
    );
    assert_eq!(
        row.error.as_deref(),
        Some(format!("not in ragd's own index: no reader for .{}", legacy.ext).as_str())
    );
    assert_eq!(row.content_hash.as_deref(), Some(doc_hash.as_str()));
    assert_eq!(row.chunk_count, 0);
    assert!(env.points(path).await.is_empty());
    let kb = s.knowledge.clone().expect("published");
    assert_eq!(kb.uploads, 2, "{kb:?}");

    let kb_row = |env: &TestEnv| env.app().ledger.kb_files("docs").unwrap()[path].clone();
    assert_eq!(kb_row(&env).content_hash, doc_hash);
    let reads = reads.unwrap_or(kb_row(&env).state == KbState::Linked);
    eprintln!("the server reads .{} files: {reads}", legacy.ext);
    let c = client(url, key);
    if reads {
        assert_eq!((kb.linked, kb.failed), (2, 0), "{kb:?}");
        assert_eq!(kb_row(&env).state, KbState::Linked);
        let listed = listing(&c, &env).await;
        assert_eq!(entry_counts(&listed), [("notes.md", 1), (path, 1)]);
        let upload = &listed[path][0];
        assert_eq!(upload.file_hash.as_deref(), Some(doc_hash.as_str()));
        assert_eq!(upload.filename, legacy.name);
        assert_eq!(
            no_reader_status(&env, path),
            format!(
                "published; not in ragd's own index: no reader for .{}",
                legacy.ext
            )
        );
    } else {
        // Refused by the server's processing: tried once more, then recorded
        // with the server's reason, and the refused uploads deleted.
        assert_eq!((kb.linked, kb.deferred), (1, 1), "{kb:?}");
        let s = env.index().await;
        let kb = s.knowledge.unwrap();
        assert_eq!((kb.uploads, kb.failed), (1, 1), "{kb:?}");
        let r = kb_row(&env);
        assert_eq!(r.state, KbState::Failed);
        assert_eq!(
            r.error_kind.as_ref().map(FailKind::as_str),
            Some("processing_failed")
        );
        let reason = r.error.clone().unwrap_or_default();
        assert!(reason.contains(legacy.refusal), "{reason}");
        let listed = listing(&c, &env).await;
        assert_eq!(entry_counts(&listed), [("notes.md", 1)]);
        let note = no_reader_status(&env, path);
        assert!(
            note.starts_with("not published: the knowledge base refused it (processing_failed: ")
                && note.contains(legacy.refusal)
                && note.ends_with(&format!(
                    "; not in ragd's own index: no reader for .{}",
                    legacy.ext
                )),
            "{note}"
        );
    }
    // Nothing changed: nothing read, nothing uploaded.
    let s = env.index().await;
    assert_eq!((s.added, s.updated, s.skipped), (0, 0, 0), "{s:?}");
    assert_eq!(s.knowledge.unwrap().uploads, 0);

    // Gone from the folder: gone from the knowledge base and the ledger.
    env.remove(path);
    let s = env.index().await;
    assert_eq!(s.deleted, 1, "{s:?}");
    assert!(env.app().ledger.get("docs", path).unwrap().is_none());
    let listed = listing(&c, &env).await;
    assert_eq!(entry_counts(&listed), [("notes.md", 1)]);
}

/// The issue's folder (issue 22's "done when"): Office files, an e-book, a
/// message, code and a scanned PDF, made by real tools (tests/data/formats),
/// each indexed by ragd (found by the pipeline's search) and uploaded to the
/// knowledge base and linked there, one entry each, under its path.
const FORMATS_FOLDER: &[(&str, &str, &str)] = &[
    // (fixture, path in the folder, a query that finds it)
    (
        "report.docx",
        "word/report.docx",
        "binoculars shared between two counters",
    ),
    (
        "slides.pptx",
        "slides.pptx",
        "remember to thank the boardwalk volunteers",
    ),
    ("sheets.xlsx", "sheets.xlsx", "observation hide cost budget"),
    (
        "report.epub",
        "books/report.epub",
        "binoculars shared between two counters",
    ),
    (
        "message.eml",
        "mail/message.eml",
        "heron count for sunday ada keeper",
    ),
    (
        "code/nests.py",
        "code/nests.py",
        "nests counted at one site after removing the ones seen twice",
    ),
    (
        "scanned.pdf",
        "scans/scanned.pdf",
        "pumping station main valve spare filter cartridges",
    ),
];

/// What Open WebUI 0.12.4 as `pip install open-webui` makes of the folder: it
/// reads every file but the scanned PDF, whose pages it does not OCR
/// (`PDF_EXTRACT_IMAGES` is off by default); ragd records its refusal.
const REFUSED_BY_THE_SERVER: &[(&str, &str)] =
    &[("scans/scanned.pdf", "The content provided is empty")];

#[tokio::test]
async fn a_folder_of_every_format_is_published_fake_server() {
    let fake = spawn_fake("sk-fake").await;
    every_format_published(&fake.url, &fake.api_key, REFUSED_BY_THE_SERVER).await;
}

#[tokio::test]
async fn a_folder_of_every_format_is_published_real_server() {
    if let Some((url, key)) = real_server() {
        every_format_published(&url, &key, REFUSED_BY_THE_SERVER).await;
    }
}

/// `refused`: (path, words of the server's reason) for files the server's
/// installation cannot process (its own loaders, not ragd's readers).
async fn every_format_published(url: &str, key: &str, refused: &[(&str, &str)]) {
    if crate::support::real::ocr().is_none() {
        return;
    }
    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");
    let env = TestEnv::with_knowledge_and(
        url,
        key,
        &unique("formats"),
        PROCESS_TIMEOUT_SECS,
        // OCR of the scanned page takes some seconds on a loaded machine.
        "[limits]\nextract_timeout_secs = 300\n",
    )
    .await;
    for (fixture, path, _) in FORMATS_FOLDER {
        env.write(path, std::fs::read(format!("{DATA}/{fixture}")).unwrap());
    }
    let s = env.index().await;
    let n = FORMATS_FOLDER.len();
    assert_eq!((s.added, s.failed, s.skipped), (n, 0, 0), "{s:?}");
    let kb = s.knowledge.clone().expect("published");
    let refusals = refused.len();
    assert_eq!(
        (kb.uploads, kb.linked, kb.failed),
        (n, n - refusals, refusals),
        "{kb:?}"
    );

    // In ragd's own index: each file found by a query of its own words.
    let app = env.app();
    let pipeline = env.pipeline(&app);
    for (_, path, query) in FORMATS_FOLDER {
        let hits = pipeline.search(query, 4).await.unwrap();
        let paths: Vec<&str> = hits.iter().map(|h| h.payload.path.as_str()).collect();
        assert!(paths.contains(path), "{query:?} → {paths:?}, not {path}");
    }
    let scanned = env.points("scans/scanned.pdf").await;
    assert!(scanned.iter().all(|p| p.payload.ocr), "{scanned:#?}");

    // In the knowledge base: each uploaded and linked once, under its path.
    let rows = app.ledger.kb_files("docs").unwrap();
    let records = app.ledger.files("docs").unwrap();
    // One App at a time holds the state directory.
    drop((pipeline, app));
    let c = client(url, key);
    let listed = listing(&c, &env).await;
    for (_, path, _) in FORMATS_FOLDER {
        let row = &rows[*path];
        if let Some((_, words)) = refused.iter().find(|(p, _)| p == path) {
            assert_eq!(row.state, KbState::Failed, "{path}: {row:?}");
            let error = row.error.clone().unwrap_or_default();
            assert!(error.contains(words), "{path}: {error}");
            assert!(!listed.contains_key(*path), "{path}");
            continue;
        }
        assert_eq!(row.state, KbState::Linked, "{path}: {row:?}");
        let files = listed
            .get(*path)
            .unwrap_or_else(|| panic!("{path} not in {listed:#?}"));
        assert_eq!(files.len(), 1, "{path}");
        assert_eq!(
            files[0].metadata["ragd"]["content_hash"],
            json!(records[*path].content_hash),
            "{path}"
        );
        assert_eq!(
            files[0].filename,
            path.rsplit('/').next().unwrap(),
            "{path}"
        );
    }
    assert_eq!(listed.len(), n - refused.len(), "{listed:#?}");
}
