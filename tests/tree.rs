//! The knowledge base looks like the folder (Open WebUI 0.12 directories): each
//! file in the directory of its path under its own name, moves and renames done
//! in place without uploading or processing anything, a base an older ragd
//! published flat moved into directories, and Open WebUI's own folder sync
//! (`sync/diff`) finding nothing to do. Each case runs against the fake and,
//! when it is up, the real Open WebUI 0.12.4.

use std::path::Path;

use ragd::document::sha256_hex;
use ragd::open_webui::{ManifestEntry, OpenWebUi, SyncDiff};

use crate::support::env::TestEnv;
use crate::support::fake_openwebui::spawn_fake;
use crate::support::owui::{client, knowledge_id, places, real_server, unique};

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

against_both!(the_knowledge_base_mirrors_the_folder_tree, mirrors_tree);
against_both!(moves_and_renames_upload_nothing, moves_and_renames);
against_both!(
    a_flat_base_moves_into_directories_without_uploads,
    flat_migrates
);

against_both!(
    a_byte_only_change_leaves_the_folder_sync_nothing_to_do,
    byte_only_change
);
against_both!(a_sanitized_upload_takes_its_own_name_in_the_base, own_names);

/// Generous: a real server processes files in the background on a loaded box.
const PROCESS_TIMEOUT_SECS: u64 = 120;

/// The manifest Open WebUI's browser sync sends for the folder `root`.
fn manifest(root: &Path) -> Vec<ManifestEntry> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap();
            let parent = rel.parent().map(|p| p.to_string_lossy().into_owned());
            out.push(ManifestEntry {
                path: parent.unwrap_or_default(),
                filename: rel.file_name().unwrap().to_string_lossy().into_owned(),
                checksum: sha256_hex(&bytes),
                size: bytes.len() as u64,
            });
        }
    }
    out
}

/// What Open WebUI's own sync of the folder would do: nothing.
async fn assert_nothing_to_sync(c: &OpenWebUi, kb: &str, env: &TestEnv) {
    let m = manifest(&env.docs());
    let diff = c.sync_diff(kb, &m).await.unwrap();
    let SyncDiff {
        added,
        modified,
        deleted,
        mkdir,
        rmdir,
        unmodified_count,
        ..
    } = &diff;
    assert!(
        added.is_empty()
            && modified.is_empty()
            && deleted.is_empty()
            && mkdir.is_empty()
            && rmdir.is_empty(),
        "{diff:?}"
    );
    assert_eq!(*unmodified_count, m.len() as u64, "{diff:?}");
}

/// Texts no earlier run against the same server used (the server refuses a
/// second file with the text of one it has).
fn write_tree(env: &TestEnv, paths: &[&str]) {
    let tag = unique("t");
    for p in paths {
        env.write(p, format!("# {p}\n\nThe {tag} {p} quokka.\n"));
    }
}

fn sorted(paths: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    v.sort();
    v
}

async fn mirrors_tree(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("tree"), PROCESS_TIMEOUT_SECS).await;
    let paths = [
        "README.md",
        "guide/README.md",
        "guide/install/README.md",
        "guide/install/linux.md",
        "api/README.md",
        "api/v2/endpoints.txt",
    ];
    write_tree(&env, &paths);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.linked, kb.failed, kb.dirs_created),
        (6, 6, 0, 4),
        "{kb:?}"
    );
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    assert_eq!(
        places(&c, &kb_id).await.into_keys().collect::<Vec<_>>(),
        sorted(&paths)
    );
    assert_nothing_to_sync(&c, &kb_id, &env).await;
    // `ragd why` has the same place.
    let rows = env.app().ledger.kb_files("docs").unwrap();
    assert_eq!(
        rows["guide/install/linux.md"].kb_path.as_deref(),
        Some("guide/install/linux.md")
    );

    // A rerun does nothing; a folder emptied loses its directory.
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.placed, kb.dirs_created),
        (0, 0, 0),
        "{kb:?}"
    );
    env.remove("api/v2/endpoints.txt");
    std::fs::remove_dir(env.docs().join("api/v2")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.removed, kb.dirs_removed), (1, 1), "{kb:?}");
    assert_nothing_to_sync(&c, &kb_id, &env).await;
}

async fn moves_and_renames(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("moves"), PROCESS_TIMEOUT_SECS).await;
    write_tree(
        &env,
        &["a/one.md", "a/two.md", "a/three.md", "b/four.md", "top.md"],
    );
    env.index().await;
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    let before = places(&c, &kb_id).await;

    // Moved between folders, renamed, moved and renamed.
    let docs = env.docs();
    std::fs::rename(docs.join("a/two.md"), docs.join("b/two.md")).unwrap();
    std::fs::rename(docs.join("top.md"), docs.join("top-renamed.md")).unwrap();
    std::fs::rename(docs.join("a/three.md"), docs.join("b/three-renamed.md")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.linked, kb.removed, kb.moved, kb.placed),
        (0, 0, 0, 3, 3),
        "{kb:?}"
    );
    let after = places(&c, &kb_id).await;
    for (was, now) in [
        ("a/one.md", "a/one.md"),
        ("a/two.md", "b/two.md"),
        ("top.md", "top-renamed.md"),
        ("a/three.md", "b/three-renamed.md"),
        ("b/four.md", "b/four.md"),
    ] {
        assert_eq!(after.get(now), before.get(was), "{was} → {now}: {after:?}");
    }
    assert_nothing_to_sync(&c, &kb_id, &env).await;

    // A folder renamed: its directory is renamed (one request), its files stay
    // in it with their uploads.
    std::fs::rename(docs.join("b"), docs.join("c")).unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.linked, kb.moved, kb.placed, kb.dirs_renamed),
        (0, 0, 3, 0, 1),
        "{kb:?}"
    );
    assert_eq!((kb.dirs_created, kb.dirs_removed), (0, 0), "{kb:?}");
    let renamed = places(&c, &kb_id).await;
    assert_eq!(renamed.get("c/four.md"), before.get("b/four.md"));
    assert_eq!(renamed.get("c/two.md"), before.get("a/two.md"));
    assert_nothing_to_sync(&c, &kb_id, &env).await;
}

/// The pipeline's file with `[knowledge] directories` set.
fn set_directories(env: &TestEnv, on: bool) {
    let path = env
        .config_path()
        .parent()
        .unwrap()
        .join("../pipelines/docs.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("directories = false\n", "");
    let text = if on {
        text
    } else {
        text.replacen("[knowledge]\n", "[knowledge]\ndirectories = false\n", 1)
    };
    std::fs::write(&path, text).unwrap();
}

async fn flat_migrates(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("flat"), PROCESS_TIMEOUT_SECS).await;
    let paths = [
        "README.md",
        "guide/README.md",
        "guide/install/README.md",
        "api/endpoints.txt",
    ];
    write_tree(&env, &paths);
    // Published the way ragd did before directories: every file at the root
    // under its base name, rows without a place.
    set_directories(&env, false);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.linked, kb.dirs_created),
        (4, 4, 0),
        "{kb:?}"
    );
    let app = env.app();
    for (_, mut row) in app.ledger.kb_files("docs").unwrap() {
        row.kb_path = None;
        app.ledger.put_kb(&row).unwrap();
    }
    drop(app);
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    let flat: Vec<String> = c
        .knowledge_files(&kb_id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.directory_path.unwrap_or_default())
        .collect();
    assert!(flat.iter().all(String::is_empty), "{flat:?}");
    let ids: std::collections::BTreeSet<String> = places_ids(&c, &kb_id).await;

    set_directories(&env, true);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (
            kb.uploads,
            kb.linked,
            kb.removed,
            kb.placed,
            kb.dirs_created
        ),
        (0, 0, 0, 3, 3),
        "{kb:?}"
    );
    assert_eq!(
        places(&c, &kb_id).await.into_keys().collect::<Vec<_>>(),
        sorted(&paths)
    );
    assert_eq!(places_ids(&c, &kb_id).await, ids, "the same uploads");
    assert_nothing_to_sync(&c, &kb_id, &env).await;
}

async fn places_ids(c: &OpenWebUi, kb: &str) -> std::collections::BTreeSet<String> {
    c.knowledge_files(kb)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect()
}

/// A server without directories (before 0.12) keeps the flat layout and is sent
/// no directory call; once it is upgraded, the next run moves the files into
/// their directories: moves only, nothing uploaded or added.
#[tokio::test]
async fn an_older_server_stays_flat_until_upgraded() {
    let fake = spawn_fake("sk-fake").await;
    fake.set_version("0.11.2");
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "older", 30).await;
    write_tree(&env, &["a.md", "x/b.md", "x/y/c.md"]);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.linked, kb.dirs_created),
        (3, 3, 0),
        "{kb:?}"
    );
    let kb_id = knowledge_id(&env).await;
    let flat: Vec<String> = fake.knowledge_places(&kb_id).into_values().collect();
    assert_eq!(flat.len(), 3);
    assert!(flat.iter().all(|p| !p.contains('/')), "{flat:?}");
    let before = fake.counters();
    assert_eq!((before.moves, before.dir_creates), (0, 0));

    fake.set_version("0.12.4");
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.placed), (0, 0, 2), "{kb:?}");
    let after = fake.counters();
    assert_eq!(
        (after.uploads, after.adds, after.moves, after.dir_creates),
        (before.uploads, before.adds, 2, 2)
    );
    let mut placed: Vec<String> = fake.knowledge_places(&kb_id).into_values().collect();
    placed.sort();
    assert_eq!(placed, ["a.md", "x/b.md", "x/y/c.md"]);
    assert_eq!(fake.knowledge_dirs(&kb_id), ["x", "x/y"]);
}

/// Several sources in one pipeline: one top-level directory per source, named
/// after its folder.
#[tokio::test]
async fn each_source_is_a_top_level_directory() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "sources", 30).await;
    let root = env.docs().parent().unwrap().to_path_buf();
    let pipeline = root.join("pipelines/docs.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replacen(
            "sources = [\"../docs\"]",
            "sources = [\"../docs\", \"../more\"]",
            1,
        ),
    )
    .unwrap();
    write_tree(&env, &["a.md", "x/b.md"]);
    std::fs::create_dir_all(root.join("more/y")).unwrap();
    std::fs::write(root.join("more/y/c.md"), "# c\n\nThe more c quokka.\n").unwrap();
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked), (3, 3), "{kb:?}");
    let kb_id = knowledge_id(&env).await;
    let mut placed: Vec<String> = fake.knowledge_places(&kb_id).into_values().collect();
    placed.sort();
    assert_eq!(placed, ["docs/a.md", "docs/x/b.md", "more/y/c.md"]);
}

/// Same text, other bytes (CRLF line endings): ragd's index keeps the text, but
/// Open WebUI keeps each upload's bytes hash, which its folder sync compares, and
/// no route changes it. The upload is replaced (one upload; the old one removed
/// first, since the server refuses a second file of one text), and then the
/// browser's sync sees nothing to do.
async fn byte_only_change(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("bytes"), PROCESS_TIMEOUT_SECS).await;
    write_tree(&env, &["a.md", "docs/b.md"]);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.linked, kb.failed), (2, 2, 0), "{kb:?}");
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    assert_nothing_to_sync(&c, &kb_id, &env).await;
    let before = places(&c, &kb_id).await;

    let text = std::fs::read_to_string(env.docs().join("docs/b.md")).unwrap();
    env.write("docs/b.md", text.replace('\n', "\r\n"));
    let run = env.index().await;
    assert_eq!(run.updated, 0, "the text did not change: {run:?}");
    let kb = run.knowledge.unwrap();
    assert_eq!(
        (kb.replaced, kb.uploads, kb.linked, kb.removed, kb.failed),
        (1, 1, 1, 1, 0),
        "{kb:?}"
    );
    assert_nothing_to_sync(&c, &kb_id, &env).await;
    let after = places(&c, &kb_id).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert_eq!(after["a.md"], before["a.md"], "the other file is untouched");
    assert_ne!(after["docs/b.md"], before["docs/b.md"]);

    // And once is enough.
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.replaced, kb.uploads), (0, 0), "{kb:?}");
}

/// Names ragd cannot send as they are in a multipart header (a quote), or
/// shortens or trims (a leading dash or space, over 200 bytes): uploaded under
/// the sanitized name, then renamed to the file's own (a rename, nothing
/// processed again), so that Open WebUI's folder sync, which keys files by
/// their own names, sees nothing to add or delete.
async fn own_names(url: &str, key: &str) {
    let env = TestEnv::with_knowledge(url, key, &unique("names"), PROCESS_TIMEOUT_SECS).await;
    let long = format!("long/{}.md", "a".repeat(230));
    let paths = [
        "-draft.md",
        "notes/say \"hi\".md",
        "notes/ lead.md",
        long.as_str(),
        "plain.md",
    ];
    write_tree(&env, &paths);
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!(
        (kb.uploads, kb.linked, kb.failed, kb.placed),
        (5, 5, 0, 4),
        "{kb:?}"
    );
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    assert_eq!(
        places(&c, &kb_id).await.into_keys().collect::<Vec<_>>(),
        sorted(&paths)
    );
    assert_nothing_to_sync(&c, &kb_id, &env).await;
    let kb = env.index().await.knowledge.unwrap();
    assert_eq!((kb.uploads, kb.placed), (0, 0), "{kb:?}");
}
