//! Hostile input (issue 6): broken, encrypted, binary, oddly named and
//! vanishing files, links and parser crashes. Each case asserts the reason the
//! ledger records (what `ragd status` shows) and that the rest of the folder is
//! indexed as usual.

use std::path::PathBuf;
use std::time::Duration;

use ragd::app::App;
use ragd::config::Config;
use ragd::extract::isolate::{
    IsolationLimits, TEST_FAULT_ENV, TEST_FAULT_MARKER, extract_isolated, workers_spawned,
};
use ragd::extract::{self, ExtractError};
use ragd::ledger::{FailKind, FileRecord, FileState};
use ragd::pipeline::{RunRequest, RunSummary};

use crate::support::env::TestEnv;
use crate::support::fake_openwebui::spawn_fake;
use crate::support::pdf::{make_encrypted_pdf, make_pdf, make_pdf_without_text};

/// The file every test keeps next to the hostile ones: it must be indexed.
const GOOD: &str = "good.md";
const GOOD_TEXT: &str = "# Good\n\nThe kingfisher dives for fish in the clear river.\n";

async fn env_with(pipeline_toml: &str, daemon_toml: &str) -> TestEnv {
    let env = TestEnv::with(pipeline_toml, daemon_toml).await;
    env.write(GOOD, GOOD_TEXT);
    env
}

async fn run(env: &TestEnv, app: &App) -> RunSummary {
    env.pipeline(app)
        .run(&RunRequest::default())
        .await
        .expect("run")
}

fn row(app: &App, path: &str) -> FileRecord {
    app.ledger
        .get("docs", path)
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger row for {path:?}"))
}

/// Assert the ledger's verdict on `path`, and that the good file was indexed.
async fn assert_failed(env: &TestEnv, app: &App, path: &str, kind: &str, reason: &str) {
    let r = row(app, path);
    assert_eq!(r.state, FileState::Failed, "{path}: {r:?}");
    assert_eq!(
        r.error_kind.as_ref().map(FailKind::as_str),
        Some(kind),
        "{path}: {r:?}"
    );
    let error = r.error.clone().unwrap_or_default();
    assert!(error.contains(reason), "{path}: {error:?} lacks {reason:?}");
    assert!(env.points(path).await.is_empty(), "{path} has points");
    assert_good_indexed(env, app).await;
}

async fn assert_good_indexed(env: &TestEnv, app: &App) {
    assert_eq!(row(app, GOOD).state, FileState::Indexed);
    assert_eq!(env.points(GOOD).await.len(), 1, "good.md is not indexed");
}

/// Deterministic "random" bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn broken_pdfs_each_get_a_specific_reason() {
    let env = env_with("", "").await;
    env.write(
        "encrypted.pdf",
        make_encrypted_pdf(&["secret"], "user-pw", "owner-pw"),
    );
    let good_pdf = make_pdf(&["A page about herons and their nests."]);
    env.write("truncated.pdf", &good_pdf[..10]);
    let mut corrupt = b"%PDF-1.7\n".to_vec();
    corrupt.extend(noise(4096, 7));
    env.write("corrupt.pdf", corrupt);
    env.write("random.pdf", noise(8192, 42));
    env.write("scanned.pdf", make_pdf_without_text(3));
    env.write("fine.pdf", &good_pdf);
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (2, 5), "{s:?}");

    assert_failed(
        &env,
        &app,
        "encrypted.pdf",
        "encrypted",
        "encrypted PDF: it needs a password",
    )
    .await;
    assert_failed(&env, &app, "truncated.pdf", "corrupt", "corrupt file:").await;
    assert_failed(&env, &app, "corrupt.pdf", "corrupt", "corrupt file:").await;
    assert_failed(&env, &app, "random.pdf", "corrupt", "corrupt file:").await;
    assert_failed(
        &env,
        &app,
        "scanned.pdf",
        "no_text_layer",
        "scanned PDF, no text layer",
    )
    .await;
    // A good PDF goes through the worker too, pages intact.
    let pts = env.points("fine.pdf").await;
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].payload.page, Some(1));
    assert!(pts[0].payload.text.contains("herons"));
}

#[tokio::test]
async fn text_files_binary_encodings_bom_and_empty() {
    let env = env_with("", "").await;
    // An ELF header renamed to .txt.
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0".to_vec();
    elf.extend(noise(2048, 3));
    env.write("program.txt", elf);
    // Latin-1 / Windows-1252, not UTF-8.
    env.write(
        "latin1.txt",
        b"Le caf\xE9 est tr\xE8s bon, \xE0 la fran\xE7aise, dit le gar\xE7on.\n".as_slice(),
    );
    env.write(
        "bom.md",
        b"\xEF\xBB\xBF# Bom\n\nByte order marks are invisible.\n".as_slice(),
    );
    env.write("empty.txt", "");
    env.write("blank.md", " \n\t\n");
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (3, 3), "{s:?}");

    assert_failed(
        &env,
        &app,
        "program.txt",
        "binary",
        "binary data in a text file",
    )
    .await;
    assert_failed(&env, &app, "empty.txt", "empty", "empty file: no text").await;
    assert_failed(&env, &app, "blank.md", "empty", "empty file: no text").await;

    let latin = env.points("latin1.txt").await;
    assert!(latin[0].payload.text.contains("café"), "{latin:?}");
    assert!(latin[0].payload.text.contains("garçon"), "{latin:?}");
    let bom = env.points("bom.md").await;
    assert!(!bom[0].payload.text.starts_with('\u{feff}'), "{bom:?}");
    assert!(bom[0].payload.text.starts_with("# Bom"), "{bom:?}");
}

#[tokio::test]
async fn each_limit_has_its_reason() {
    let env = env_with(
        "",
        "[limits]\nmax_file_bytes = 2000\nmax_text_bytes = 1200\nmax_chunks_per_file = 3\n",
    )
    .await;
    env.write("huge.txt", "x ".repeat(1500)); // 3000 bytes on disk
    env.write("wordy.txt", "word ".repeat(260)); // 1300 bytes on disk and of text
    // About 1000 bytes of text in four paragraphs of 253 characters: chunks hold
    // at most 400 characters, so one paragraph each, four chunks.
    let many = (0..4)
        .map(|i| format!("Paragraph {i}: {}", "some words here ".repeat(15)))
        .collect::<Vec<_>>()
        .join("\n\n");
    env.write("many.txt", &many);
    let app = env.app();
    run(&env, &app).await;

    let huge = row(&app, "huge.txt");
    assert_eq!(huge.state, FileState::Skipped, "{huge:?}");
    assert_eq!(
        huge.error_kind.as_ref().map(FailKind::as_str),
        Some("too_large")
    );
    assert!(
        huge.error
            .unwrap()
            .contains("file is 3000 bytes, over the limit of 2000 (limits.max_file_bytes)")
    );
    assert_failed(
        &env,
        &app,
        "wordy.txt",
        "text_too_large",
        "over the limit of 1200 (limits.max_text_bytes)",
    )
    .await;
    assert_failed(
        &env,
        &app,
        "many.txt",
        "too_many_chunks",
        "over the limit of 3 (limits.max_chunks_per_file)",
    )
    .await;
}

/// Run the `docs` pipeline with the extraction worker failing on purpose.
async fn run_with_fault(env: &TestEnv, fault: &str, adjust: impl FnOnce(&mut Config)) -> App {
    let app = env.app_with(|c| {
        c.limits
            .extract
            .worker_env
            .push((TEST_FAULT_ENV.to_owned(), fault.to_owned()));
        adjust(c);
    });
    run(env, &app).await;
    app
}

#[tokio::test]
async fn worker_panic_abort_and_stack_overflow_are_contained() {
    for (fault, kind, reason) in [
        (
            "panic",
            "panicked",
            "the parser crashed on this file: test fault: a parser panicked",
        ),
        ("abort", "crashed", "killed by signal 6 (SIGABRT, aborted)"),
        (
            "stack",
            "crashed",
            "the extraction worker crashed on this file: stack overflow",
        ),
    ] {
        let env = env_with("", "").await;
        env.write("victim.pdf", make_pdf(&["never read"]));
        let app = run_with_fault(&env, fault, |_| {}).await;
        assert_failed(&env, &app, "victim.pdf", kind, reason).await;
    }
}

#[tokio::test]
async fn worker_memory_blow_up_is_contained() {
    let env = env_with("", "").await;
    env.write("victim.pdf", make_pdf(&["never read"]));
    let app = run_with_fault(&env, "oom", |c| c.limits.extract.memory_mb = 256).await;
    assert_failed(
        &env,
        &app,
        "victim.pdf",
        "out_of_memory",
        "extraction ran out of memory: over the limit of 256 MiB (limits.extract_memory_mb)",
    )
    .await;
}

#[tokio::test]
async fn an_endless_loop_times_out_is_retried_once_then_left_alone() {
    let env = env_with("", "[limits]\nextract_timeout_secs = 1\n").await;
    env.write("victim.pdf", make_pdf(&["never read"]));
    let started = std::time::Instant::now();
    let app = run_with_fault(&env, "loop", |_| {}).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the loop was not cut short"
    );
    // First timeout: maybe a busy machine, so the next run tries again.
    assert_failed(
        &env,
        &app,
        "victim.pdf",
        "transient",
        "extraction timed out after 1 s",
    )
    .await;
    assert_eq!(row(&app, "victim.pdf").attempts, 1);
    drop(app); // one App at a time holds the state directory

    let app = run_with_fault(&env, "loop", |_| {}).await;
    assert_failed(
        &env,
        &app,
        "victim.pdf",
        "timeout",
        "extraction timed out after 1 s",
    )
    .await;
    assert_eq!(row(&app, "victim.pdf").attempts, 2);
    drop(app);

    // Twice slow is the file: no third attempt while it is unchanged.
    let app = run_with_fault(&env, "loop", |_| {}).await;
    let s = run(&env, &app).await;
    assert_eq!((s.failed, s.unchanged), (0, 2), "{s:?}");
    assert_eq!(row(&app, "victim.pdf").attempts, 2);
}

#[tokio::test]
async fn deeply_nested_html_is_cut_short_in_the_worker() {
    let env = env_with("", "[limits]\nextract_timeout_secs = 2\n").await;
    // html5ever does not cap nesting: 20,000 nested <div>s take it tens of
    // seconds (quadratic in the depth), which only a worker can cut short.
    let depth = 20_000;
    env.write(
        "nested.html",
        format!(
            "{}deep text{}",
            "<div>".repeat(depth),
            "</div>".repeat(depth)
        ),
    );
    env.write(
        "shallow.html",
        "<html><body><p>A shallow page about voles.</p></body></html>",
    );
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (2, 1), "{s:?}");
    assert_failed(
        &env,
        &app,
        "nested.html",
        "transient",
        "extraction timed out after 2 s",
    )
    .await;
    assert!(
        env.points("shallow.html").await[0]
            .payload
            .text
            .contains("voles")
    );
}

#[tokio::test]
async fn a_permanently_bad_unchanged_file_is_not_retried() {
    let env = env_with("", "").await;
    env.write(
        "encrypted.pdf",
        make_encrypted_pdf(&["secret"], "pw", "owner"),
    );
    env.write("program.txt", b"\0\x01\x02binary\0\0".as_slice());
    let app = env.app();
    run(&env, &app).await;
    let before = (row(&app, "encrypted.pdf"), row(&app, "program.txt"));
    assert_eq!(before.0.attempts, 1);
    drop(app); // one App at a time holds the state directory

    // A worker that would crash proves no extraction happens: the rows keep
    // their reason and attempt count.
    let app = run_with_fault(&env, "abort", |_| {}).await;
    let s = run(&env, &app).await;
    assert_eq!((s.failed, s.unchanged, s.added), (0, 3, 0), "{s:?}");
    assert_eq!(row(&app, "encrypted.pdf"), before.0);
    assert_eq!(row(&app, "program.txt"), before.1);
}

#[tokio::test]
async fn a_parser_printing_to_stdout_does_not_corrupt_the_reply() {
    let env = env_with("", "").await;
    env.write(
        "fine.pdf",
        make_pdf(&["A page about a chatty parser and a wren."]),
    );
    let app = run_with_fault(&env, "print", |_| {}).await;
    assert_eq!(row(&app, "fine.pdf").state, FileState::Indexed);
    assert!(
        env.points("fine.pdf").await[0]
            .payload
            .text
            .contains("wren")
    );
}

#[tokio::test]
async fn isolation_can_be_switched_off() {
    let env = env_with("", "[limits]\nisolate = false\n").await;
    env.write("fine.pdf", make_pdf(&["In-process extraction of a heron."]));
    // With isolation off the fault hook is never reached: no worker runs.
    let app = run_with_fault(&env, "abort", |_| {}).await;
    assert_eq!(row(&app, "fine.pdf").state, FileState::Indexed);
    assert_good_indexed(&env, &app).await;
}

#[tokio::test]
async fn files_deleted_replaced_or_truncated_while_a_run_reads() {
    // One file at a time, in path order; the worker for a.pdf is held for three
    // seconds, and the files after it change in that window: after the scan,
    // before they are read.
    let env = env_with("", "[limits]\nextract_concurrency = 1\n").await;
    env.write("a.pdf", make_pdf(&["The slow one about otters."]));
    env.write("b-deleted.md", "# Deleted\n\nGone before it is read.\n");
    env.write("c-replaced.md", "# Old\n\nThe old text about badgers.\n");
    env.write(
        "d-truncated.md",
        "# Truncated\n\nSoon to be nothing at all.\n",
    );
    let app = env.app_with(|c| {
        c.limits
            .extract
            .worker_env
            .push((TEST_FAULT_ENV.to_owned(), "sleep".to_owned()));
    });
    let pipeline = env.pipeline(&app);
    let running = tokio::spawn(async move { pipeline.run(&RunRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    env.remove("b-deleted.md");
    env.write(
        "c-replaced.md",
        "# New\n\nThe new and longer text about beavers and dams.\n",
    );
    std::fs::File::create(env.docs().join("d-truncated.md")).unwrap();
    running.await.unwrap().expect("run");

    assert!(env.points("a.pdf").await[0].payload.text.contains("otters"));
    assert_failed(
        &env,
        &app,
        "b-deleted.md",
        "transient",
        "cannot read file: No such file or directory",
    )
    .await;
    // What was read is what is indexed: the hash and the text belong together.
    let c = env.points("c-replaced.md").await;
    assert!(c[0].payload.text.contains("beavers"), "{c:?}");
    assert_failed(&env, &app, "d-truncated.md", "empty", "empty file: no text").await;

    // The next run sees the folder as it is now: the deleted file's row goes.
    run(&env, &app).await;
    assert!(app.ledger.get("docs", "b-deleted.md").unwrap().is_none());
    assert!(
        env.points("c-replaced.md").await[0]
            .payload
            .text
            .contains("beavers")
    );
}

#[tokio::test]
async fn permission_denied_is_recorded() {
    use std::os::unix::fs::PermissionsExt;
    let env = env_with("", "").await;
    env.write("locked.md", "# Locked\n\nNobody may read this.\n");
    let path = env.docs().join("locked.md");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let app = env.app();
    run(&env, &app).await;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root reads any file whatever its mode: nothing to deny here.
        println!("note: running as root, permission denied cannot happen; assertion skipped");
        assert_eq!(row(&app, "locked.md").state, FileState::Indexed);
        assert_good_indexed(&env, &app).await;
    } else {
        assert_failed(
            &env,
            &app,
            "locked.md",
            "permission_denied",
            "cannot read file: Permission denied",
        )
        .await;
    }
}

#[tokio::test]
async fn odd_names_are_sanitized_for_open_webui_and_kept_whole_in_metadata() {
    let fake = spawn_fake("sk-fake").await;
    let env = TestEnv::with_knowledge(&fake.url, &fake.api_key, "names", 30).await;
    let long = format!("{}.md", "l".repeat(252)); // 255 bytes, the usual limit
    let names: Vec<(String, String)> = vec![
        ("with space.md".into(), "with space.md".into()),
        ("ünïcødé 文档.md".into(), "ünïcødé 文档.md".into()),
        ("new\nline.md".into(), "new_line.md".into()),
        ("-leading-dash.md".into(), "leading-dash.md".into()),
        (format!("sub dir/{long}"), format!("{}.md", "l".repeat(197))),
    ];
    for (i, (name, _)) in names.iter().enumerate() {
        env.write(
            name,
            format!("# Note {i}\n\nOddly named note number {i} about moths.\n"),
        );
    }
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (names.len(), 0), "{s:?}");
    let kb = s.knowledge.expect("published");
    assert_eq!(kb.failed, 0, "{kb:?}");

    let files = fake.files();
    for (name, sanitized) in &names {
        assert_eq!(row(&app, name).state, FileState::Indexed, "{name:?}");
        assert_eq!(env.points(name).await[0].payload.path, *name);
        let uploaded = files
            .iter()
            .find(|f| f.metadata["ragd"]["path"] == name.as_str())
            .unwrap_or_else(|| panic!("{name:?} not uploaded: {files:?}"));
        // Uploaded under the sanitized name, then (0.12+) renamed in the base
        // to the file's own name, as the browser's folder sync names it.
        let _ = sanitized;
        let own = name.rsplit('/').next().unwrap();
        assert_eq!(uploaded.filename, own, "{name:?}");
    }
}

/// `docs/` plus a folder beside it that links may point into.
fn outside(env: &TestEnv) -> PathBuf {
    let dir = env.dir.path().join("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("secret.md"),
        "# Secret\n\nOutside the folder: a lynx.\n",
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn symlinks_are_not_followed_by_default() {
    use std::os::unix::fs::symlink;
    let env = env_with("", "").await;
    let out = outside(&env);
    symlink(out.join("secret.md"), env.docs().join("to-outside.md")).unwrap();
    symlink(env.docs().join(GOOD), env.docs().join("to-inside.md")).unwrap();
    symlink(&out, env.docs().join("outside-dir")).unwrap();
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, 0), "{s:?}");
    for link in ["to-outside.md", "to-inside.md", "outside-dir/secret.md"] {
        assert!(app.ledger.get("docs", link).unwrap().is_none(), "{link}");
    }
    assert_good_indexed(&env, &app).await;
}

#[tokio::test]
async fn followed_symlinks_never_leave_the_folder() {
    use std::os::unix::fs::symlink;
    let env = env_with("follow_symlinks = true", "").await;
    let out = outside(&env);
    symlink(out.join("secret.md"), env.docs().join("to-outside.md")).unwrap();
    symlink(&out, env.docs().join("outside-dir")).unwrap();
    symlink(env.docs().join(GOOD), env.docs().join("to-inside.md")).unwrap();
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (2, 0), "{s:?}");
    assert_eq!(row(&app, "to-inside.md").state, FileState::Indexed);
    for link in ["to-outside.md", "outside-dir/secret.md"] {
        assert!(app.ledger.get("docs", link).unwrap().is_none(), "{link}");
        assert!(
            s.scan_problems.iter().any(|p| p.contains(link)
                && p.contains("symbolic link points outside the source folder; not followed")),
            "{link}: {:?}",
            s.scan_problems
        );
    }
    assert_good_indexed(&env, &app).await;
}

#[tokio::test]
async fn a_symlink_loop_is_a_scan_problem_not_a_hang() {
    use std::os::unix::fs::symlink;
    let env = env_with("follow_symlinks = true", "").await;
    std::fs::create_dir_all(env.docs().join("sub")).unwrap();
    symlink(env.docs(), env.docs().join("sub/back-to-top")).unwrap();
    symlink("self.md", env.docs().join("self.md")).unwrap();
    let app = env.app();
    let s = tokio::time::timeout(Duration::from_secs(60), run(&env, &app))
        .await
        .expect("the scan hung on a symlink loop");
    assert_eq!((s.added, s.failed), (1, 0), "{s:?}");
    assert!(
        s.scan_problems
            .iter()
            .any(|p| p.contains("back-to-top") && p.contains("loop")),
        "{:?}",
        s.scan_problems
    );
    assert!(
        s.scan_problems.iter().any(|p| p.contains("self.md")),
        "{:?}",
        s.scan_problems
    );
    assert_good_indexed(&env, &app).await;
}

/// Limits that start the real `ragd` binary as the worker, with `env` added to
/// its environment (which also keys the pool: workers are not shared with
/// other tests that run at the same time).
fn worker_limits(env: &[(&str, &str)]) -> IsolationLimits {
    IsolationLimits {
        worker_exe: crate::support::ragd_bin(),
        worker_env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..IsolationLimits::default()
    }
}

/// The same worker without a pipeline: the timing a user pays per PDF and per
/// HTML file, with a fresh worker per file (as before the pool) and with a
/// pooled one.
#[test]
fn worker_spawn_cost() {
    let pdf = make_pdf(&["One page about a cormorant."]);
    let html = b"<html><body><p>A small page about a cormorant.</p></body></html>";
    let files = [
        (ragd::document::Format::Pdf, pdf.as_slice()),
        (ragd::document::Format::Html, html.as_slice()),
    ];
    let n = 20;
    for (format, bytes) in files {
        // A worker environment of its own per file: nothing to reuse.
        let started = std::time::Instant::now();
        for i in 0..n {
            let nonce = i.to_string();
            let limits = worker_limits(&[("RAGD_TEST_SPAWN_COST_FRESH", &nonce)]);
            let doc = extract_isolated("x".as_ref(), bytes, format, &limits).unwrap();
            assert!(doc.sections[0].text.contains("cormorant"));
        }
        let fresh = started.elapsed() / n;
        let limits = worker_limits(&[("RAGD_TEST_SPAWN_COST_POOLED", "1")]);
        // The first one starts the worker the others reuse.
        extract_isolated("x".as_ref(), bytes, format, &limits).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..n {
            let doc = extract_isolated("x".as_ref(), bytes, format, &limits).unwrap();
            assert!(doc.sections[0].text.contains("cormorant"));
        }
        let pooled = started.elapsed() / n;
        let started = std::time::Instant::now();
        for _ in 0..n {
            extract::extract(bytes, format).unwrap();
        }
        let in_process = started.elapsed() / n;
        println!(
            "{format:?} extraction: {fresh:?} in a fresh worker, {pooled:?} in a pooled \
             worker, {in_process:?} in process"
        );
        // Not a benchmark: only a guard against a worker that costs seconds.
        assert!(fresh < Duration::from_secs(2), "{fresh:?}");
        assert!(pooled < Duration::from_secs(2), "{pooled:?}");
    }
}

#[test]
fn workers_are_reused_across_files() {
    let limits = worker_limits(&[("RAGD_TEST_POOL", "reuse")]);
    let n = 40;
    let before = workers_spawned();
    for i in 0..n {
        let page = format!("<html><body><p>Page {i} about a dipper.</p></body></html>");
        let doc = extract_isolated(
            "x.html".as_ref(),
            page.as_bytes(),
            ragd::document::Format::Html,
            &limits,
        )
        .unwrap();
        assert_eq!(doc.sections[0].text, format!("Page {i} about a dipper."));
    }
    let spawned = workers_spawned() - before;
    // One would do; the counter is shared with the tests running alongside,
    // and a busy pool may evict this test's idle worker now and then.
    assert!(spawned < n / 2, "{spawned} workers for {n} files");
}

/// A worker's answer is read only up to the cap (twice `max_text_bytes` and
/// 1 MiB in the daemon): a parser that announces or streams more gets the file
/// refused as too large, and the next file a fresh worker.
#[test]
fn a_worker_answer_over_the_cap_is_refused_not_buffered() {
    let mut limits = worker_limits(&[]);
    limits.max_reply_bytes = 200;
    let extract = |bytes: &[u8]| {
        extract_isolated(
            "x.html".as_ref(),
            bytes,
            ragd::document::Format::Html,
            &limits,
        )
    };
    let big = format!("<p>{}</p>", "the aardvark digs ".repeat(50));
    let err = extract(big.as_bytes()).unwrap_err();
    assert_eq!(err.kind().as_str(), "too_large", "{err}");
    let doc = extract(b"<p>A small aardvark.</p>").unwrap();
    assert!(doc.sections[0].text.contains("aardvark"));
}

/// The worker parses hostile files: it must not see the daemon's secrets
/// (`OPENWEBUI_API_KEY`, `QDRANT_API_KEY`, ...), only a short list of
/// variables plus what the limits pass explicitly.
#[test]
fn the_worker_does_not_inherit_the_daemons_environment() {
    let parent: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    // cargo runs tests with CARGO_* set; a daemon has its keys.
    assert!(parent.iter().any(|k| k.starts_with("CARGO")), "{parent:?}");
    let limits = worker_limits(&[(TEST_FAULT_ENV, "env"), ("RAGD_PASSED_ON", "1")]);
    let err = extract_isolated(
        "x.html".as_ref(),
        b"<p>x</p>",
        ragd::document::Format::Html,
        &limits,
    )
    .unwrap_err();
    let text = err.to_string();
    let names = text
        .split_once("worker environment: ")
        .map(|(_, n)| n.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .unwrap_or_else(|| panic!("{text}"));
    let names: Vec<&str> = names.split(',').collect();
    // What the worker inherits, what the daemon sets for it (a backtrace
    // switch, its options), and what the limits pass on.
    let set_for_it = [
        "RUST_BACKTRACE",
        "RAGD_EXTRACT_OPTIONS",
        TEST_FAULT_ENV,
        "RAGD_PASSED_ON",
    ];
    for n in &names {
        assert!(
            ragd::extract::isolate::WORKER_INHERITS.contains(n) || set_for_it.contains(n),
            "the worker sees {n}: {names:?}"
        );
    }
    // The parent has variables the worker must not see.
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{names:?}");
    assert!(names.contains(&"RAGD_PASSED_ON"), "{names:?}");
}

#[test]
fn a_worker_that_failed_is_replaced_not_reused() {
    let marked = format!("<html><body><p>{TEST_FAULT_MARKER}</p></body></html>");
    for (fault, kind, timeout) in [
        ("marked-panic", "panicked", 60),
        ("marked-abort", "crashed", 60),
        ("marked-stack", "crashed", 60),
        ("marked-oom", "out_of_memory", 60),
        ("marked-loop", "timeout", 2),
    ] {
        let mut limits = worker_limits(&[(TEST_FAULT_ENV, fault)]);
        limits.timeout = Duration::from_secs(timeout);
        if fault == "marked-oom" {
            limits.memory_mb = 256;
        }
        let extract = |i: usize, bytes: &[u8]| {
            extract_isolated(
                format!("{i}.html").as_ref(),
                bytes,
                ragd::document::Format::Html,
                &limits,
            )
        };
        for round in 0..2 {
            // Two good files first, so that the fault hits a worker that has
            // served before, then a good file that needs a fresh worker.
            for i in 0..2 {
                let good = format!("<p>Good page {round}.{i} about a grebe.</p>");
                let doc = extract(i, good.as_bytes()).unwrap_or_else(|e| panic!("{fault}: {e}"));
                assert!(doc.sections[0].text.contains("grebe"), "{fault}");
            }
            let err = extract(9, marked.as_bytes()).unwrap_err();
            assert_eq!(err.kind().as_str(), kind, "{fault}: {err}");
        }
        let doc = extract(0, b"<p>After the faults, a grebe.</p>").unwrap();
        assert!(doc.sections[0].text.contains("grebe"), "{fault}");
    }
}

#[test]
fn a_test_harness_is_not_taken_for_a_worker() {
    // The failure every test would hit without `worker_exe` set: retried, and
    // the message says why.
    let limits = IsolationLimits {
        worker_exe: std::env::current_exe().unwrap(),
        ..IsolationLimits::default()
    };
    let err = extract_isolated(
        "x.pdf".as_ref(),
        &make_pdf(&["x"]),
        ragd::document::Format::Pdf,
        &limits,
    )
    .unwrap_err();
    assert!(
        matches!(err, ExtractError::WorkerUnavailable { .. }),
        "{err:?}"
    );
    assert!(!err.is_permanent());
}

// ---- The readers of issue 22: Office, OpenDocument, EPUB, sheets, mail, RTF.

const FORMATS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FORMATS}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// 64 KiB of one letter: repeated, the body of a zip bomb's part.
fn filler() -> Vec<u8> {
    vec![b'x'; 64 << 10]
}

/// Times [`filler`] is repeated for 300 MiB: over the 256 MiB a package
/// may inflate to.
const BOMB_UNITS: usize = 4800;

#[tokio::test]
async fn zip_bombs_in_office_ebook_and_sheet_packages_are_refused() {
    use crate::support::zipcraft::{read_part, repeated, with_parts};
    let env = env_with("", "").await;
    let x = filler();
    let bomb = |name: &str, head: &str, tail: &str| {
        repeated(name, head.as_bytes(), &x, BOMB_UNITS, tail.as_bytes())
    };
    let w = r#"<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>"#;
    let docx = with_parts(
        &fixture("report.docx"),
        vec![bomb(
            "word/document.xml",
            w,
            "</w:t></w:r></w:p></w:body></w:document>",
        )],
    );
    let odf = r#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text><text:p>"#;
    let odf_tail = "</text:p></office:text></office:body></office:document-content>";
    let odt = with_parts(
        &fixture("report.odt"),
        vec![bomb("content.xml", odf, odf_tail)],
    );
    let epub = with_parts(
        &fixture("report.epub"),
        vec![bomb(
            "EPUB/text/ch001.xhtml",
            "<html><body><p>",
            "</p></body></html>",
        )],
    );
    // Each part under the cap, but named a thousand times: 130 MiB of slide
    // (a comment, cheap to parse) for slide 2, then slides 3 to 1002 the same.
    let pptx = fixture("slides.pptx");
    let presentation = read_part(&pptx, "ppt/presentation.xml");
    let many: String = (0..1000)
        .map(|i| format!(r#"<p:sldId id="{}" r:id="rId3" />"#, 300 + i))
        .collect();
    let presentation = presentation.replace(r#"<p:sldId id="258" r:id="rId4" />"#, &many);
    assert!(presentation.contains(r#"id="999""#));
    let pptx = with_parts(
        &pptx,
        vec![
            crate::support::zipcraft::part("ppt/presentation.xml", presentation),
            repeated(
                "ppt/slides/slide2.xml",
                br#"<p:sld xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"><!--"#,
                &x,
                2080,
                b"--></p:sld>",
            ),
        ],
    );
    // calamine reads xlsx and ods itself: the package's declared sizes are
    // checked before it starts.
    let strings = with_parts(
        &fixture("sheets.xlsx"),
        vec![repeated(
            "xl/sharedStrings.xml",
            br#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
            &b"<si><t>a</t></si>".repeat(4096),
            4800,
            b"</sst>",
        )],
    );
    let ods = with_parts(
        &fixture("sheets.ods"),
        vec![bomb("content.xml", odf, odf_tail)],
    );
    for (name, bytes) in [
        ("bomb.docx", &docx),
        ("bomb.odt", &odt),
        ("bomb.epub", &epub),
        ("slides-loop.pptx", &pptx),
        ("strings.xlsx", &strings),
        ("bomb.ods", &ods),
    ] {
        assert!(bytes.len() < 2 << 20, "{name}: {} bytes", bytes.len());
        env.write(name, bytes);
    }
    let app = env.app();
    let started = std::time::Instant::now();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, 6), "{s:?}");
    for path in [
        "bomb.docx",
        "bomb.odt",
        "bomb.epub",
        "slides-loop.pptx",
        "strings.xlsx",
        "bomb.ods",
    ] {
        assert_failed(&env, &app, path, "corrupt", "MiB (a zip bomb?)").await;
    }
    // Refused, not ground through until the worker's deadline.
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_sheet_whose_cells_span_the_whole_grid_costs_one_worker_its_memory() {
    use crate::support::zipcraft::{part, read_part, with_parts};
    let env = env_with("", "").await;
    // Two cells, A1 and XFD1048576: calamine holds a sheet as the dense
    // rectangle around its cells, 17 billion of them. The worker's memory
    // limit refuses the allocation; the file gets its kind, the daemon goes on.
    let xlsx = fixture("sheets.xlsx");
    let sheet = read_part(&xlsx, "xl/worksheets/sheet1.xml");
    let start = sheet.find("<sheetData>").expect("sheetData");
    let end = sheet.find("</sheetData>").expect("/sheetData") + "</sheetData>".len();
    let sparse = format!(
        "{}<sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>corner</t></is></c></row>\
         <row r=\"1048576\"><c r=\"XFD1048576\" t=\"inlineStr\"><is><t>far corner</t></is></c></row>\
         </sheetData>{}",
        &sheet[..start].replace("A1:D41", "A1:XFD1048576"),
        &sheet[end..]
    );
    env.write(
        "corners.xlsx",
        with_parts(&xlsx, vec![part("xl/worksheets/sheet1.xml", sparse)]),
    );
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, 1), "{s:?}");
    assert_failed(
        &env,
        &app,
        "corners.xlsx",
        "out_of_memory",
        "extraction ran out of memory",
    )
    .await;
}

#[tokio::test]
async fn deep_nesting_in_documents_mail_and_rtf_is_read_or_refused_quickly() {
    use crate::support::zipcraft::{part, with_parts};
    let env = env_with("", "[limits]\nextract_timeout_secs = 20\n").await;
    // 5,000 tables nested in table cells, and 100,000 unknown elements: the
    // readers keep stacks, not recursion.
    let depth = 5_000;
    let document = format!(
        r#"<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{}{}<w:p><w:r><w:t>The bittern booms in the deepest cell.</w:t></w:r></w:p>{}{}</w:body></w:document>"#,
        "<w:sdt><w:sdtContent>".repeat(100_000),
        "<w:tbl><w:tr><w:tc>".repeat(depth),
        "</w:tc></w:tr></w:tbl>".repeat(depth),
        "</w:sdtContent></w:sdt>".repeat(100_000),
    );
    env.write(
        "deep.docx",
        with_parts(
            &fixture("report.docx"),
            vec![part("word/document.xml", document)],
        ),
    );
    // A MIME bomb: 2,000 multiparts one inside the other.
    let levels = 2_000;
    let mut mail = String::from(
        "From: Ada <ada@example.org>\r\nSubject: Nested\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n",
    );
    for i in 1..levels {
        mail.push_str(&format!(
            "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
            i - 1
        ));
    }
    mail.push_str(&format!(
        "--b{}\r\nContent-Type: text/plain\r\n\r\nThe curlew calls from the deepest part.\r\n",
        levels - 1
    ));
    for i in (0..levels).rev() {
        mail.push_str(&format!("--b{i}--\r\n"));
    }
    env.write("nested.eml", mail);
    // RTF: groups past the reader's bound, a `\bin` claiming more bytes than
    // the file has, and a picture whose raw `\bin` bytes hold a NUL and braces.
    env.write(
        "deep.rtf",
        format!(
            "{{\\rtf1 {}deep{}}}",
            "{".repeat(100_000),
            "}".repeat(100_000)
        ),
    );
    env.write(
        "huge-bin.rtf",
        r"{\rtf1 A picture {\pict\bin4000000000 ab}}",
    );
    let mut picture = br"{\rtf1 The snipe drums over the marsh.{\pict\pngblip\bin8 ".to_vec();
    picture.extend_from_slice(b"\x89PNG\0}{\\");
    picture.extend_from_slice(br"}\par}");
    env.write("picture.rtf", picture);
    let app = env.app();
    let started = std::time::Instant::now();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (4, 2), "{s:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    for (path, text) in [
        ("deep.docx", "The bittern booms in the deepest cell."),
        ("nested.eml", "The curlew calls from the deepest part."),
        ("picture.rtf", "The snipe drums over the marsh."),
    ] {
        let points = env.points(path).await;
        assert!(
            points.iter().any(|p| p.payload.text.contains(text)),
            "{path}: {points:?}"
        );
    }
    assert_failed(&env, &app, "deep.rtf", "corrupt", "groups nested too deep").await;
    assert_failed(
        &env,
        &app,
        "huge-bin.rtf",
        "corrupt",
        "truncated: \\bin data runs past the end",
    )
    .await;
}

#[tokio::test]
async fn truncated_presentations_workbooks_and_books_are_corrupt() {
    let env = env_with("", "").await;
    let cases = [
        ("slides.pptx", "not a valid PowerPoint presentation"),
        ("slides.odp", "OpenDocument presentation"),
        ("sheets.xls", "not a valid Excel 97-2003 workbook"),
        ("sheets.ods", "not a valid OpenDocument spreadsheet"),
        ("report.epub", "EPUB e-book"),
    ];
    for (name, _) in cases {
        let bytes = fixture(name);
        env.write(&format!("cut-{name}"), &bytes[..bytes.len() / 2]);
    }
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, cases.len()), "{s:?}");
    for (name, reason) in cases {
        assert_failed(&env, &app, &format!("cut-{name}"), "corrupt", reason).await;
    }
}

/// A black greyscale PNG of `side` × `side` pixels, 1.5 MB for 30,000:
/// rows of zeros deflated as repeated blocks.
fn pixel_bomb_png(side: u32) -> Vec<u8> {
    use crate::support::zipcraft::deflate_repeated;
    let row = vec![0u8; side as usize + 1]; // filter byte 0, then the pixels
    let mut zlib = vec![0x78, 0xDA];
    zlib.extend(deflate_repeated(b"", &row, side as usize, b""));
    // Adler-32 of zeros: A stays 1, B adds 1 per byte.
    let n = (u64::from(side) + 1) * u64::from(side);
    let adler = (u32::try_from(n % 65521).unwrap() << 16) | 1;
    zlib.extend(adler.to_be_bytes());
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &zlib));
    png.extend(chunk(b"IEND", b""));
    png
}

#[tokio::test]
async fn a_pixel_bomb_image_fails_in_ocr_not_in_the_daemon() {
    if crate::support::real::ocr().is_none() {
        return;
    }
    let env = env_with("", "").await;
    // 900 megapixels in 1.5 MB: Leptonica cannot allocate the picture
    // under the worker's address-space limit, which Tesseract inherits.
    let png = pixel_bomb_png(30_000);
    assert!(png.len() < 2 << 20, "{}", png.len());
    env.write("poster.png", png);
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, 1), "{s:?}");
    assert_failed(
        &env,
        &app,
        "poster.png",
        "corrupt",
        "not an image Tesseract can read",
    )
    .await;
}

#[tokio::test]
async fn a_workbook_that_panics_calamine_is_panicked_with_or_without_a_worker() {
    // Found by the `sheet` fuzz target: calamine 0.38's compound-file reader
    // slices past the end of a sector chain.
    let xls = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz/xls-sector-chain-past-end.xls"
    ))
    .unwrap();
    for daemon_toml in ["", "[limits]\nisolate = false\n"] {
        let env = env_with("", daemon_toml).await;
        env.write("fuzzed.xls", &xls);
        let app = env.app();
        let s = run(&env, &app).await;
        assert_eq!((s.added, s.failed), (1, 1), "{daemon_toml:?}: {s:?}");
        assert_failed(
            &env,
            &app,
            "fuzzed.xls",
            "panicked",
            "the parser crashed on this file",
        )
        .await;
    }
}
