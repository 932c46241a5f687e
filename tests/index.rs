//! `ragd index`: a folder of mixed documents into embedded Qdrant, through the
//! project's Ollama-API embedding server, asserted on what ends up in Qdrant.

use std::time::{Duration, SystemTime};

use ragd::ledger::{FailKind, FileState};
use ragd::pipeline::RunRequest;

use crate::support::env::TestEnv;
use crate::support::pdf::make_pdf;

const GUIDE_MD: &str = "# Installation Guide\n\nInstall the zebrafish package with the usual tools.\n\n\
## Configuration\n\nSet the marmalade option to true before the first start.\n";

fn long_markdown(paragraphs: usize, word: &str) -> String {
    let mut s = String::from("# Long document\n\n");
    for i in 0..paragraphs {
        s.push_str(&format!(
            "## Section {i}\n\nParagraph {i} talks about {word} number {i} in some detail, \
             with enough words to take up space in a chunk of four hundred characters. \
             It continues for a while so that chunks are filled.\n\n"
        ));
    }
    s
}

async fn seed(env: &TestEnv) {
    env.write("guide.md", GUIDE_MD);
    env.write(
        "notes/plain.txt",
        "Plain text about the walrus migration season.\n",
    );
    env.write(
        "page.html",
        "<html><head><title>T</title><style>.x{color:red}</style><script>var hidden = 1;</script></head>\
         <body><h1>Harbour</h1><p>The lighthouse keeper logs every ship.</p></body></html>",
    );
    env.write(
        "report.pdf",
        make_pdf(&[
            "Quarterly figures for the orchard.",
            "Appendix about pelican nesting habits.",
        ]),
    );
    env.write("long.md", long_markdown(12, "astronomy"));
}

#[tokio::test]
async fn index_mixed_folder_stores_every_file_with_citable_payloads() {
    let env = TestEnv::new("").await;
    seed(&env).await;
    let s = env.index().await;
    assert_eq!((s.added, s.failed, s.skipped), (5, 0, 0), "{s:?}");

    // Exact point counts: small files are one chunk (PDF: one per page); the
    // long file has as many points as the ledger says it has chunks.
    assert_eq!(env.points("guide.md").await.len(), 1);
    assert_eq!(env.points("notes/plain.txt").await.len(), 1);
    assert_eq!(env.points("page.html").await.len(), 1);
    assert_eq!(env.points("report.pdf").await.len(), 2);
    let app = env.app();
    let long = app.ledger.get("docs", "long.md").unwrap().unwrap();
    assert_eq!(long.state, FileState::Indexed);
    let long_points = env.points("long.md").await;
    assert!(
        long.chunk_count > 3,
        "long.md should split: {}",
        long.chunk_count
    );
    assert_eq!(long_points.len(), long.chunk_count as usize);
    let indexes: Vec<u32> = long_points.iter().map(|p| p.payload.chunk_index).collect();
    assert_eq!(indexes, (0..long.chunk_count).collect::<Vec<_>>());
    assert_eq!(env.total_points().await, 5 + long.chunk_count as u64);

    // Payloads carry what a citation needs.
    let pdf = env.points("report.pdf").await;
    assert_eq!(pdf[0].payload.page, Some(1));
    assert_eq!(pdf[1].payload.page, Some(2));
    assert!(pdf[1].payload.text.contains("pelican"));
    let guide = &env.points("guide.md").await[0];
    assert_eq!(guide.payload.pipeline, "docs");
    assert_eq!(guide.payload.model, "hash-embed");
    assert!(
        guide
            .payload
            .headings
            .first()
            .is_some_and(|h| h.contains("Installation Guide"))
    );
    assert_eq!(guide.payload.content_hash.len(), 64);
    assert_eq!(
        guide.payload.file_hash,
        ragd::document::sha256_hex(GUIDE_MD.as_bytes())
    );
    assert!(guide.payload.modified > 1_600_000_000);
    let html = &env.points("page.html").await[0];
    assert!(html.payload.text.contains("lighthouse keeper"));
    assert!(
        !html.payload.text.contains("hidden"),
        "script text leaked: {}",
        html.payload.text
    );

    // Search finds the right file (and page).
    let pipeline = env.pipeline(&app);
    let hits = pipeline.search("pelican nesting habits", 3).await.unwrap();
    assert_eq!(hits[0].payload.path, "report.pdf");
    assert_eq!(hits[0].payload.page, Some(2));
    let hits = pipeline.search("walrus migration", 3).await.unwrap();
    assert_eq!(hits[0].payload.path, "notes/plain.txt");
}

#[tokio::test]
async fn rerun_over_unchanged_folder_embeds_and_writes_nothing() {
    let env = TestEnv::new("").await;
    seed(&env).await;
    env.index().await;
    let embeds = env.embed.stats().requests;
    let upserts = env.store.layer().upserts();
    let deletes = env.store.layer().deletes();

    let s = env.index().await;
    assert_eq!(s.unchanged, 5, "{s:?}");
    assert_eq!((s.added, s.updated, s.deleted, s.touched), (0, 0, 0, 0));
    assert_eq!(env.embed.stats().requests, embeds, "no embedding calls");
    assert_eq!(env.store.layer().upserts(), upserts, "no upserts");
    assert_eq!(env.store.layer().deletes(), deletes, "no deletes");
}

#[tokio::test]
async fn modified_file_replaces_its_chunks_and_deleted_file_leaves_none() {
    let env = TestEnv::new("").await;
    seed(&env).await;
    env.index().await;
    let before = env.points("long.md").await;
    let old_hash = before[0].payload.content_hash.clone();

    // Shorter new version: the leftovers of the old one must go.
    env.write("long.md", long_markdown(4, "geology"));
    let s = env.index().await;
    assert_eq!(s.updated, 1, "{s:?}");
    let after = env.points("long.md").await;
    assert!(after.len() < before.len());
    assert!(
        after.iter().all(|p| p.payload.content_hash != old_hash),
        "old chunks remain"
    );
    assert!(after.iter().any(|p| p.payload.text.contains("geology")));
    assert!(after.iter().all(|p| !p.payload.text.contains("astronomy")));
    let rec = env.app().ledger.get("docs", "long.md").unwrap().unwrap();
    assert_eq!(rec.chunk_count as usize, after.len());

    env.remove("report.pdf");
    let s = env.index().await;
    assert_eq!(s.deleted, 1);
    assert!(env.points("report.pdf").await.is_empty());
    assert!(
        env.app()
            .ledger
            .get("docs", "report.pdf")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn same_text_with_new_bytes_or_mtime_is_not_re_embedded() {
    let env = TestEnv::new("").await;
    seed(&env).await;
    env.index().await;
    let embeds = env.embed.stats().requests;
    let upserts = env.store.layer().upserts();

    // Same bytes, new mtime.
    let f = std::fs::File::options()
        .write(true)
        .open(env.docs().join("guide.md"))
        .unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    // New bytes, same visible text (an HTML comment).
    env.write(
        "page.html",
        "<html><head><title>T</title><style>.x{color:red}</style><script>var hidden = 1;</script></head>\
         <body><!-- edited --><h1>Harbour</h1><p>The lighthouse keeper logs every ship.</p></body></html>",
    );
    let s = env.index().await;
    assert_eq!(s.touched, 2, "{s:?}");
    assert_eq!(env.embed.stats().requests, embeds);
    assert_eq!(env.store.layer().upserts(), upserts);
    let rec = env.app().ledger.get("docs", "page.html").unwrap().unwrap();
    assert_eq!(
        rec.file_hash,
        ragd::document::sha256_hex(&std::fs::read(env.docs().join("page.html")).unwrap())
    );
}

#[tokio::test]
async fn unsupported_and_bad_files_get_a_recorded_reason_and_the_rest_is_indexed() {
    let env = TestEnv::new("include = [\"**/*\"]\n").await;
    env.write("ok.md", "# Fine\n\nA perfectly good file about otters.\n");
    env.write("archive.zip", [b'P', b'K', 3u8, 4, 0, 1, 2, 3]);
    env.write("broken.pdf", b"this is not a pdf at all, just bytes");
    env.write("empty.txt", "");
    let s = env.index().await;
    assert_eq!(s.added, 1, "{s:?}");
    assert_eq!(s.skipped, 1);
    assert_eq!(s.failed, 2);
    let app = env.app();
    let zip = app.ledger.get("docs", "archive.zip").unwrap().unwrap();
    assert_eq!(zip.state, FileState::Skipped);
    assert_eq!(
        zip.error_kind.as_ref().map(FailKind::as_str),
        Some("unsupported_type")
    );
    let pdf = app.ledger.get("docs", "broken.pdf").unwrap().unwrap();
    assert_eq!(pdf.state, FileState::Failed);
    assert_eq!(
        pdf.error_kind.as_ref().map(FailKind::as_str),
        Some("corrupt")
    );
    let empty = app.ledger.get("docs", "empty.txt").unwrap().unwrap();
    assert_eq!(
        empty.error_kind.as_ref().map(FailKind::as_str),
        Some("empty")
    );
    drop(app); // one ragd per state directory: release the lock

    // Permanent failures are not retried while the files are unchanged.
    let embeds = env.embed.stats().requests;
    let s = env.index().await;
    assert_eq!((s.failed, s.skipped, s.unchanged), (0, 0, 4), "{s:?}");
    assert_eq!(env.embed.stats().requests, embeds);
}

#[tokio::test]
async fn unknown_model_is_a_clear_error_naming_the_model() {
    let env = TestEnv::new("").await;
    env.write("a.md", "# A\n\ntext\n");
    let toml = std::fs::read_to_string(env.dir.path().join("pipelines/docs.toml")).unwrap();
    std::fs::write(
        env.dir.path().join("pipelines/docs.toml"),
        toml.replace("model = \"hash-embed\"", "model = \"no-such-model\""),
    )
    .unwrap();
    let app = env.app();
    let err = env
        .pipeline(&app)
        .run(&RunRequest::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-model"), "{err}");
    // Nothing recorded as indexed; the next run with a good model indexes it.
    assert_ne!(
        app.ledger.get("docs", "a.md").unwrap().map(|r| r.state),
        Some(FileState::Indexed)
    );
}

#[tokio::test]
async fn editing_one_paragraph_re_embeds_only_the_chunks_around_it() {
    let env = TestEnv::new("").await;
    let paragraphs: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "## Topic {i}\n\nParagraph {i} covers subject-{i} in enough words to fill most of a \
                 chunk: details, caveats, examples and a closing remark about item {i}. A second \
                 sentence makes each section too long to share a chunk with its neighbour.\n"
            )
        })
        .collect();
    env.write("big.md", paragraphs.join("\n"));
    let s = env.index().await;
    assert!(s.chunks_written >= 90, "{} chunks", s.chunks_written);
    let before = env.embed.stats().texts;

    let mut edited = paragraphs.clone();
    edited[50] = "## Topic 50\n\nThis paragraph was rewritten entirely by an editor.\n".to_owned();
    env.write("big.md", edited.join("\n"));
    let s = env.index().await;
    let re_embedded = env.embed.stats().texts - before;
    assert_eq!(s.updated, 1);
    assert!(re_embedded <= 3, "re-embedded {re_embedded} chunks");
    assert!(s.cache_hits >= 85, "{s:?}");
}

#[tokio::test]
async fn duplicate_and_moved_files_are_not_embedded_again() {
    let env = TestEnv::new("").await;
    env.write("a/original.md", GUIDE_MD);
    env.write("other.md", "# Other\n\nSomething else entirely.\n");
    env.index().await;
    let before = env.embed.stats().texts;
    env.write("b/copy.md", GUIDE_MD);
    std::fs::rename(env.docs().join("other.md"), env.docs().join("moved.md")).unwrap();
    let s = env.index().await;
    assert_eq!(env.embed.stats().texts, before, "{s:?}");
    // `ragd index` takes the rename as a move, as the daemon does: the points
    // are carried over, nothing is read, extracted or embedded.
    assert_eq!((s.added, s.moved, s.deleted), (1, 1, 0), "{s:?}");
    assert_eq!(env.points("b/copy.md").await.len(), 1);
    assert_eq!(env.points("moved.md").await.len(), 1);
    assert!(env.points("other.md").await.is_empty());
}

/// Two pipelines writing to one collection: each searches only its own points,
/// also once the other is gone from the config but its points are not (a
/// renamed pipeline). A pipeline alone in its collection searches without the
/// filter, which the embedded store would answer by reading every payload.
#[tokio::test]
async fn search_stays_within_its_pipeline_in_a_shared_collection() {
    let env = TestEnv::edge("[qdrant]\ncollection = \"shared\"\n", "").await;
    let other_docs = env.dir.path().join("other");
    std::fs::create_dir_all(&other_docs).unwrap();
    std::fs::write(
        other_docs.join("walrus.md"),
        "# Walrus\n\nWalrus migration across the arctic shelf.\n",
    )
    .unwrap();
    let other_toml = env.dir.path().join("pipelines/other.toml");
    std::fs::write(
        &other_toml,
        "sources = [\"../other\"]\n[qdrant]\ncollection = \"shared\"\n[embedding]\nmodel = \"hash-embed\"\n\
         batch_size = 8\n[chunking]\nmax_size = 400\noverlap = 40\n",
    )
    .unwrap();
    env.write(
        "pelican.md",
        "# Pelican\n\nPelican nesting habits on the coast.\n",
    );

    let app = env.app();
    for name in ["docs", "other"] {
        let p = app.pipeline(app.config.pipeline(name).unwrap()).unwrap();
        assert!(p.shares_collection);
        p.run(&RunRequest::default()).await.unwrap();
    }
    let docs = env.pipeline(&app);
    let hits = docs.search("walrus migration", 5).await.unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.payload.pipeline == "docs"),
        "{hits:?}"
    );
    drop(docs);
    drop(app);

    // `other` leaves the config; its points and its ledger record stay.
    std::fs::remove_file(&other_toml).unwrap();
    let app = env.app();
    let docs = env.pipeline(&app);
    assert!(!docs.shares_collection);
    let hits = docs.search("walrus migration", 5).await.unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.payload.pipeline == "docs"),
        "{hits:?}"
    );
}

/// Deleted files go a batch at a time: one store write (and sync) per 256
/// files, not one durable delete per file.
#[tokio::test]
async fn deleting_many_files_writes_to_the_store_once_per_batch() {
    let env = TestEnv::new("").await;
    for i in 0..300 {
        env.write(&format!("many/f{i:03}.md"), format!("note number {i}\n"));
    }
    env.write("keep.md", "the one that stays\n");
    assert_eq!(env.index().await.added, 301);
    let deletes = env.store.layer().deletes();
    std::fs::remove_dir_all(env.docs().join("many")).unwrap();
    let app = env.app();
    let s = env
        .pipeline(&app)
        .run(&RunRequest {
            allow_mass_delete: true,
            ..RunRequest::default()
        })
        .await
        .unwrap();
    drop(app);
    assert_eq!(s.deleted, 300, "{s:?}");
    assert_eq!(
        env.store.layer().deletes() - deletes,
        2,
        "300 files in batches of 256"
    );
    assert_eq!(env.total_points().await, 1);
    assert!(env.points("keep.md").await.len() == 1);
}

/// A run that holds deletes back for both reasons (2 files under a folder the
/// scan could not read, a link to an unmounted share; 8 of 12 files removed,
/// the mass-delete rail) reports and counts each delete once, under its own
/// reason: `ragd_deletes_held_back_total` from a recorder of this test's own.
#[cfg(unix)]
#[test]
fn held_back_deletes_are_counted_once_under_their_own_reason() {
    use std::os::unix::fs::symlink;
    let (s, metrics) = crate::support::metrics::own_metrics(async {
        let env = TestEnv::new("follow_symlinks = true").await;
        for i in 0..10 {
            env.write(&format!("n{i}.md"), format!("note number {i}\n"));
        }
        let share = env.docs().join(".share");
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(share.join("s0.md"), "first shared note\n").unwrap();
        std::fs::write(share.join("s1.md"), "second shared note\n").unwrap();
        symlink(&share, env.docs().join("share")).unwrap();
        assert_eq!(env.index().await.added, 12);
        std::fs::rename(&share, env.dir.path().join("unmounted")).unwrap();
        for i in 0..8 {
            env.remove(&format!("n{i}.md"));
        }
        let s = env.index().await;
        assert_eq!(env.total_points().await, 12, "nothing deleted");
        s
    });
    assert_eq!(s.held_back, 2, "{s:?}");
    assert_eq!(s.mass_delete_blocked, Some((8, 12)), "{s:?}");
    assert_eq!(s.deleted, 0);
    let series = |reason: &str| {
        crate::support::metrics::value(
            &metrics,
            &format!("ragd_deletes_held_back_total{{pipeline=\"docs\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(series("unreadable"), Some(2.0), "{metrics}");
    assert_eq!(series("mass_delete"), Some(8.0), "{metrics}");
}

/// The state directory holds the full text of every chunk (ledger, embedded
/// Qdrant): it is created 0700, and one left open to others is closed.
#[cfg(unix)]
#[tokio::test]
async fn the_state_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new("").await;
    env.write("a.md", "# A\n\nAbout the dormouse.\n");
    let state = env.dir.path().join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // TestEnv made nothing yet: the first App opens it.
    drop(env.app());
    assert_eq!(mode(&state), 0o700);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.index().await;
    assert_eq!(mode(&state), 0o700);
}

/// A file name that is not UTF-8 is refused once with a clear kind, not
/// deferred forever; the other files index as usual.
#[cfg(unix)]
#[tokio::test]
async fn a_file_name_that_is_not_utf8_is_refused_once() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new("").await;
    env.write("good.md", "# Good\n\nAbout the pangolin.\n");
    let bad = env.docs().join(std::ffi::OsStr::from_bytes(b"bad\xff.md"));
    std::fs::write(&bad, "# Bad\n\nAbout the tapir.\n").unwrap();
    let s = env.index().await;
    assert_eq!(s.failed, 0, "{s:?}");
    let rows = env.app().ledger.files("docs").unwrap();
    let bad_row = rows
        .values()
        .find(|r| r.path.starts_with("bad"))
        .expect("a row for the file");
    assert_eq!(bad_row.state, FileState::Skipped);
    assert_eq!(
        bad_row.error_kind.as_ref().map(FailKind::as_str),
        Some("file_name_not_utf8")
    );
    assert_eq!(rows["good.md"].state, FileState::Indexed);
    // Nothing to do on the next run.
    let s = env.index().await;
    assert_eq!(s.unchanged, 2, "{s:?}");
}

/// Deleting files finds their points by id, without reading a payload, and
/// all files' probes share requests: 40 files of up to 7 chunks are one
/// `existing_ids` request (their windows come to fewer ids than one request
/// holds), not a payload scroll or a retrieve per file. On the Qdrant server
/// (the second pass) that is one round trip instead of forty, each with every
/// chunk's text.
#[tokio::test]
async fn deleting_files_probes_ids_in_shared_requests_without_payloads() {
    let env = TestEnv::new("").await;
    for i in 0..100 {
        let body: String = (0..(i % 7 + 1))
            .map(|p| format!("## Part {p}\n\nFile {i} part {p}: the heron, item {i}-{p}.\n\n"))
            .collect();
        env.write(&format!("f{i:03}.md"), format!("# File {i}\n\n{body}"));
    }
    env.index().await;
    for i in 0..40 {
        env.remove(&format!("f{i:03}.md"));
    }
    let counts = env.store.layer();
    let before = |name| counts.calls(name);
    let (ids, retrieves, scrolls) = (before("existing_ids"), before("retrieve"), before("scroll"));
    let s = env.index().await;
    assert_eq!(s.deleted, 40, "{s:?}");
    assert_eq!(counts.calls("existing_ids") - ids, 1, "id probes");
    assert_eq!(counts.calls("retrieve") - retrieves, 0, "payload reads");
    assert_eq!(counts.calls("scroll") - scrolls, 0, "payload scrolls");
    for i in 0..40 {
        assert!(env.points(&format!("f{i:03}.md")).await.is_empty());
    }
    assert!(!env.points("f040.md").await.is_empty());
}
