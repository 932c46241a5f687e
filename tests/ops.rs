//! The operator commands on a real run: index a temp folder with the `ragd`
//! binary (embedding server and fake Open WebUI in this process, embedded Qdrant
//! in the child), then run `status`, `why`, `plan` and `doctor` and check what an
//! operator would read. Plus `/metrics` after a run, and the compose file.
//!
//! The binary, not the library, because exit codes and stdout are the contract
//! scripts rely on. Embedded Qdrant admits one process, so the test process never
//! opens the store itself.

use std::path::{Path, PathBuf};

use ragd::embed::server::EmbedServerHandle;
use serde_json::Value;

use crate::support::embed::{MODEL, start_embed_server};
use crate::support::env::TestEnv;
use crate::support::fake_openwebui::{FakeHandle, spawn_fake};

/// A throwaway installation driven through the binary.
struct Install {
    _embed: EmbedServerHandle,
    _fake: Option<FakeHandle>,
    dir: tempfile::TempDir,
}

/// What one `ragd` invocation did.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Install {
    /// One pipeline `docs` over `<dir>/docs`; with `knowledge`, publishing to a
    /// knowledge base on a fake Open WebUI.
    async fn new(knowledge: bool) -> Self {
        let embed = start_embed_server(64).await;
        let fake = if knowledge {
            Some(spawn_fake("sk-ops").await)
        } else {
            None
        };
        let dir = tempfile::tempdir().unwrap();
        for d in ["config", "pipelines", "docs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let owui = fake
            .as_ref()
            .map(|f| {
                format!(
                    "[open_webui]\nurl = \"{}\"\napi_key = \"{}\"\nprocess_timeout_secs = 30\n",
                    f.url, f.api_key
                )
            })
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("config/ragd.toml"),
            format!(
                "state_dir = \"../state\"\npipelines_dir = \"../pipelines\"\n\
                 [embedding]\nurl = \"{}\"\nmax_retries = 1\n{owui}",
                embed.url()
            ),
        )
        .unwrap();
        let kb = if knowledge {
            "[knowledge]\nname = \"ops docs\"\n"
        } else {
            ""
        };
        std::fs::write(
            dir.path().join("pipelines/docs.toml"),
            format!(
                "sources = [\"../docs\"]\n{kb}[embedding]\nmodel = \"{MODEL}\"\nbatch_size = 8\n\
                 [chunking]\nmax_size = 400\noverlap = 40\n"
            ),
        )
        .unwrap();
        Install {
            _embed: embed,
            _fake: fake,
            dir,
        }
    }

    fn docs(&self) -> PathBuf {
        self.dir.path().join("docs")
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.docs().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Three documents: two index, one is not a PDF at all.
    fn write_corpus(&self) {
        self.write("a.md", "# Cats\n\nCats sleep most of the day.\n");
        self.write("sub/b.txt", "Rivers run to the sea.\n");
        self.write("broken.pdf", b"this is not a PDF, whatever its name says");
    }

    /// Run `ragd --config <config> ARGS` and wait for it.
    async fn ragd(&self, args: &[&str]) -> Out {
        run_ragd(&self.dir.path().join("config/ragd.toml"), args).await
    }

    /// [`Install::ragd`] with `PATH` set to `path` (ragd and its extraction
    /// worker find tesseract and pdftoppm on it).
    async fn ragd_with_path(&self, path: &Path, args: &[&str]) -> Out {
        run_ragd_env(
            &self.dir.path().join("config/ragd.toml"),
            args,
            &[("PATH", path.as_os_str())],
        )
        .await
    }

    /// Append `toml` to ragd.toml.
    fn add_config(&self, toml: &str) {
        let path = self.dir.path().join("config/ragd.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\n{toml}")).unwrap();
    }
}

async fn run_ragd(config: &Path, args: &[&str]) -> Out {
    run_ragd_env(config, args, &[]).await
}

async fn run_ragd_env(config: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Out {
    let out = tokio::process::Command::new(crate::support::ragd_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RAGD_CONFIG")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run ragd");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", out.stdout, out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_states_failures_last_run_and_backlog() {
    let env = Install::new(false).await;
    env.write_corpus();
    let never = env.ragd(&["status"]).await;
    assert_eq!(never.code, 0, "{}", never.stderr);
    assert!(
        never.stdout.contains("last run:  never"),
        "{}",
        never.stdout
    );
    assert!(
        never.stdout.contains("backlog:   3 add"),
        "{}",
        never.stdout
    );

    let index = env.ragd(&["index"]).await;
    assert_eq!(
        index.code, 1,
        "one file fails: {}{}",
        index.stdout, index.stderr
    );

    let text = env.ragd(&["status"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    let s = &text.stdout;
    assert!(s.contains("pipeline docs → collection \"docs\""), "{s}");
    assert!(
        s.contains("files:     1 failed, 2 indexed (3 in total)"),
        "{s}"
    );
    assert!(s.contains("last run:  index finished"), "{s}");
    assert!(s.contains("2 added, 0 updated, 0 deleted, 1 failed"), "{s}");
    assert!(s.contains("backlog:   nothing to do"), "{s}");
    assert!(s.contains("failures:\n    corrupt (1): broken.pdf"), "{s}");
    assert!(s.contains("daemon not running"), "{s}");
    assert!(s.contains("qdrant:    "), "{s}");
    assert!(s.contains(" on disk, "), "{s}");

    let j = json(&env.ragd(&["status", "--json", "--pipeline", "docs"]).await);
    let p = &j["pipelines"][0];
    assert_eq!(p["pipeline"], "docs");
    assert_eq!(p["files"]["indexed"], 2);
    assert_eq!(p["files"]["failed"], 1);
    assert_eq!(p["total_files"], 3);
    assert!(p["chunks"].as_u64().unwrap() >= 2);
    assert_eq!(p["last_run"]["kind"], "index");
    assert_eq!(p["last_run"]["added"], 2);
    assert_eq!(p["last_run"]["failed"], 1);
    assert_eq!(p["backlog"]["total"], 0);
    assert_eq!(p["failures"][0]["kind"], "corrupt");
    assert_eq!(p["failures"][0]["count"], 1);
    assert_eq!(p["failures"][0]["examples"][0], "broken.pdf");
    assert_eq!(j["daemon_running"], false);
    // Read from the files, not through the store: one slot per point here.
    assert!(p["qdrant_disk"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(p["qdrant_disk"]["vector_slots"], p["chunks"]);
    assert!(s.contains(&format!(
        "{} vector slots for {} chunks",
        p["chunks"], p["chunks"]
    )));

    let unknown = env.ragd(&["status", "--pipeline", "nope"]).await;
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no pipeline named \"nope\""),
        "{}",
        unknown.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_explains_an_indexed_a_failed_and_an_unknown_file() {
    let env = Install::new(false).await;
    env.write_corpus();
    env.write("notes.tmp", "an editor's scratch file");
    assert_eq!(env.ragd(&["index"]).await.code, 1);

    let indexed = env.ragd(&["why", "a.md"]).await;
    assert_eq!(indexed.code, 0, "{}", indexed.stderr);
    let s = &indexed.stdout;
    assert!(s.contains("a.md (pipeline docs)"), "{s}");
    assert!(s.contains("verdict:   indexed and up to date"), "{s}");
    assert!(s.contains("ledger:    indexed, 1 chunks"), "{s}");
    assert!(
        s.contains("qdrant:    1 point(s) in collection \"docs\""),
        "{s}"
    );
    assert!(s.contains("file sha256  "), "{s}");

    // An absolute path means the same file; --json carries the numbers.
    let abs = env.docs().join("sub/b.txt");
    let j = json(&env.ragd(&["why", "--json", abs.to_str().unwrap()]).await);
    let f = &j["files"][0];
    assert_eq!(f["path"], "sub/b.txt");
    assert_eq!(f["ledger"]["state"], "indexed");
    assert_eq!(f["qdrant"]["points"], 1);
    assert_eq!(f["matches_globs"], true);
    assert!(f["on_disk"]["size"].as_u64().unwrap() > 0);

    let failed = env.ragd(&["why", "broken.pdf"]).await;
    assert_eq!(failed.code, 0);
    let s = &failed.stdout;
    assert!(
        s.contains("verdict:   failed (corrupt): left alone until the file changes"),
        "{s}"
    );
    assert!(s.contains("error:     [corrupt]"), "{s}");
    assert!(s.contains("qdrant:    0 point(s)"), "{s}");
    assert!(s.contains("1 attempt(s)"), "{s}");

    let ignored = env.ragd(&["why", "notes.tmp"]).await;
    assert_eq!(ignored.code, 0);
    assert!(
        ignored.stdout.contains("globs:     excluded"),
        "{}",
        ignored.stdout
    );
    assert!(
        ignored.stdout.contains("not indexed: excluded"),
        "{}",
        ignored.stdout
    );

    let unknown = env.ragd(&["why", "no/such/file.md"]).await;
    assert_eq!(unknown.code, 4, "{}{}", unknown.stdout, unknown.stderr);
    assert!(
        unknown
            .stdout
            .contains("not under any pipeline's source folders")
    );
}

/// A legacy Word file, made by LibreOffice (tests/data/formats/make.sh).
const LEGACY_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats/report.doc");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_why_say_a_doc_is_published_but_not_in_ragds_index() {
    let env = Install::new(true).await;
    env._fake.as_ref().unwrap().set_unstructured(true);
    env.write("a.md", "# Cats\n\nCats sleep most of the day.\n");
    env.write("old.doc", std::fs::read(LEGACY_DOC).unwrap());
    let index = env.ragd(&["index"]).await;
    assert_eq!(index.code, 0, "{}{}", index.stdout, index.stderr);

    let note = "published; not in ragd's own index: no reader for .doc";
    let status = env.ragd(&["status"]).await;
    let s = &status.stdout;
    assert!(
        s.contains("files:     1 indexed, 1 skipped (2 in total)"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "skipped:\n    no_reader (1): old.doc\n      e.g. {note}"
        )),
        "{s}"
    );
    assert!(s.contains("knowledge: name \"ops docs\""), "{s}");
    assert!(s.contains("2 linked"), "{s}");
    assert!(!s.contains("not published yet"), "{s}");

    let why = env.ragd(&["why", "old.doc"]).await;
    assert_eq!(why.code, 0, "{}", why.stderr);
    let s = &why.stdout;
    assert!(s.contains(&format!("verdict:   {note}")), "{s}");
    assert!(s.contains("ledger:    skipped, 0 chunks"), "{s}");
    assert!(s.contains("qdrant:    0 point(s)"), "{s}");
    assert!(s.contains("open webui: linked in knowledge base"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_adds_updates_moves_and_deletes_without_changing_anything() {
    let env = Install::new(false).await;
    env.write("a.md", "# A\n\nfirst version\n");
    env.write("sub/b.txt", "bee\n");
    env.write("c.md", "sea\n");
    env.write("d.md", "dee, which will be renamed\n");
    assert_eq!(env.ragd(&["index"]).await.code, 0);
    let calm = env.ragd(&["plan"]).await;
    assert_eq!(calm.stdout, "pipeline docs: nothing to do (4 unchanged)\n");

    env.write("a.md", "# A\n\nsecond, longer version\n");
    env.write("new.md", "brand new\n");
    std::fs::remove_file(env.docs().join("sub/b.txt")).unwrap();
    std::fs::create_dir_all(env.docs().join("moved")).unwrap();
    std::fs::rename(env.docs().join("d.md"), env.docs().join("moved/d.md")).unwrap();

    let plan = env.ragd(&["plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan.stdout,
        "pipeline docs: 1 add, 1 delete, 1 move, 1 update (1 unchanged)\n\
         \x20 update  a.md\n\
         \x20 move    moved/d.md (from d.md)\n\
         \x20 add     new.md\n\
         \x20 delete  sub/b.txt\n"
    );
    // Planning twice gives the same answer: nothing was changed.
    assert_eq!(env.ragd(&["plan"]).await.stdout, plan.stdout);

    let j = json(&env.ragd(&["plan", "--json", "--pipeline", "docs"]).await);
    let p = &j["pipelines"][0];
    assert_eq!(p["counts"]["add"], 1);
    assert_eq!(p["counts"]["update"], 1);
    assert_eq!(p["counts"]["delete"], 1);
    assert_eq!(p["counts"]["move"], 1);
    assert_eq!(p["unchanged"], 1);

    let status = json(&env.ragd(&["status", "--json"]).await);
    assert_eq!(status["pipelines"][0]["backlog"]["total"], 4);

    // After the run, the plan is empty again.
    assert_eq!(env.ragd(&["index"]).await.code, 0);
    assert!(env.ragd(&["plan"]).await.stdout.contains("nothing to do"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_against_live_servers_and_fails_on_a_dead_one() {
    let env = Install::new(true).await;
    env.write_corpus();
    let before = env.ragd(&["doctor"]).await;
    assert_eq!(before.code, 0, "{}{}", before.stdout, before.stderr);
    assert!(
        before
            .stdout
            .contains("ok    knowledge base for docs: \"ops docs\" does not exist yet"),
        "{}",
        before.stdout
    );

    assert_eq!(env.ragd(&["index"]).await.code, 1);
    let ok = env.ragd(&["doctor"]).await;
    let s = &ok.stdout;
    assert_eq!(ok.code, 0, "{s}{}", ok.stderr);
    for line in [
        "ok    config: ",
        "ok    state dir: ",
        "ok    ledger: ",
        "ok    qdrant: embedded Qdrant at ",
        "ok    collection docs: 64 dims",
        "ok    embedding: ",
        "ok    model hash-embed: present, 64 dims",
        "ok    open webui: ",
        "version 0.12.4",
        "ok    api key: valid: user ",
        "ok    knowledge base for docs: \"ops docs\" (",
        "exists and is writable",
        // Open WebUI's default: uploads embedded one chunk per request.
        "ok    open webui embedding: engine ollama, model \"hash-embed\"",
        "warn  open webui embedding: RAG_EMBEDDING_BATCH_SIZE is 1",
        " 0 failed, 1 warning(s)",
    ] {
        assert!(s.contains(line), "missing {line:?} in:\n{s}");
    }
    // OCR: the real tools when they are here (a missing one is a warning:
    // `doctor_and_index_without_tesseract_say_ocr_is_not_installed`).
    if crate::support::real::ocr().is_some() {
        assert!(s.contains("ok    ocr: on: tesseract 5."), "{s}");
        assert!(
            s.contains(", pdftoppm version ")
                && s.contains("; languages eng, 300 dpi, at most 50 pages per file"),
            "{s}"
        );
    }
    // Shown with --nocapture: the sample in docs/operations.md.
    println!("{s}");
    // The API key never shows.
    assert!(!s.contains("sk-ops"), "{s}");

    // The same installation with every server address dead.
    let config = env.dir.path().join("config/ragd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let dead = text
        .lines()
        .map(|l| {
            if l.starts_with("url = ") {
                "url = \"http://127.0.0.1:9\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, dead).unwrap();
    let bad = env.ragd(&["doctor"]).await;
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout.contains("FAIL  embedding: http://127.0.0.1:9"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains("FAIL  open webui: http://127.0.0.1:9"),
        "{}",
        bad.stdout
    );
    assert!(bad.stdout.contains("ok    qdrant: "), "{}", bad.stdout);
    println!("{}", bad.stdout);

    // A broken config is exit 2, like `ragd validate`.
    std::fs::write(&config, "state_dir = 1\n").unwrap();
    let broken = env.ragd(&["doctor"]).await;
    assert_eq!(broken.code, 2, "{}", broken.stdout);
    assert!(
        broken.stdout.starts_with("FAIL  config: "),
        "{}",
        broken.stdout
    );
}

const FORMATS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");

/// Without tesseract on `PATH` (how ragd finds it), `ragd doctor` warns that
/// scanned pages are not read (and fails when `[ocr] enabled = true` asked for
/// OCR), and a scanned PDF fails `no_text_layer` saying OCR is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_and_index_without_tesseract_say_ocr_is_not_installed() {
    let env = Install::new(false).await;
    env.write("a.md", "# Cats\n\nCats sleep most of the day.\n");
    env.write(
        "scanned.pdf",
        std::fs::read(format!("{FORMATS}/scanned.pdf")).unwrap(),
    );
    // A PATH with no tools at all: ragd itself is started by its full path.
    let empty = tempfile::tempdir().unwrap();

    let doctor = env.ragd_with_path(empty.path(), &["doctor"]).await;
    let s = &doctor.stdout;
    assert_eq!(doctor.code, 0, "{s}{}", doctor.stderr);
    assert!(
        s.contains(
            "warn  ocr: tesseract not found on PATH: scanned PDF pages and images are not read \
             (apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils)"
        ),
        "{s}"
    );

    let index = env.ragd_with_path(empty.path(), &["index"]).await;
    assert_eq!(index.code, 1, "{}{}", index.stdout, index.stderr);
    let why = env.ragd(&["why", "scanned.pdf"]).await;
    assert!(
        why.stdout.contains(
            "  error:     [no_text_layer] scanned PDF, no text layer: its pages hold no \
             extractable text, and OCR is not available: tesseract was not found on PATH \
             (install tesseract-ocr and a language pack such as tesseract-ocr-eng)"
        ),
        "{}",
        why.stdout
    );
    assert!(
        why.stdout
            .contains("verdict:   failed (no_text_layer): left alone until the file changes"),
        "{}",
        why.stdout
    );

    // Asked for by name, a missing tesseract is a failure.
    env.add_config("[ocr]\nenabled = true\n");
    let doctor = env.ragd_with_path(empty.path(), &["doctor"]).await;
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    assert!(
        doctor
            .stdout
            .contains("FAIL  ocr: tesseract not found on PATH"),
        "{}",
        doctor.stdout
    );
}

/// `[ocr] languages` naming one Tesseract has no data for: `ragd doctor` fails
/// and names it with the ones installed; `ragd index` then fails a scanned PDF
/// with Tesseract's words. A language code that is not one (or no language, or
/// a dpi out of range, or no pages) is refused by validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_languages_without_data_and_bad_ocr_settings_are_refused_clearly() {
    if crate::support::real::ocr().is_none() {
        return;
    }
    let env = Install::new(false).await;
    env.write(
        "scanned.pdf",
        std::fs::read(format!("{FORMATS}/scanned.pdf")).unwrap(),
    );
    let config = env.dir.path().join("config/ragd.toml");
    let base = std::fs::read_to_string(&config).unwrap();

    env.add_config("[ocr]\nlanguages = [\"eng\", \"qya\"]\n");
    let doctor = env.ragd(&["doctor"]).await;
    let s = &doctor.stdout;
    assert_eq!(doctor.code, 1, "{s}{}", doctor.stderr);
    let line = s
        .lines()
        .find(|l| l.starts_with("FAIL  ocr: tesseract 5."))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        line.contains(": no language data for qya (installed: ")
            && line.ends_with("; Debian: tesseract-ocr-LANG)"),
        "{line}"
    );
    // With eng beside it Tesseract reads with eng alone, which doctor's
    // failure is there to catch; with no language it can load, every page
    // fails, in Tesseract's words (before: "no text layer, and OCR found no
    // text on them either", which sent one looking at the PDF).
    std::fs::write(&config, format!("{base}\n[ocr]\nlanguages = [\"qya\"]\n")).unwrap();
    let index = env.ragd(&["index"]).await;
    assert_eq!(index.code, 1, "{}{}", index.stdout, index.stderr);
    let why = env.ragd(&["why", "scanned.pdf"]).await;
    assert!(
        why.stdout
            .contains("  error:     [ocr_failed] OCR failed: page 1: tesseract failed")
            && why.stdout.contains("Failed loading language 'qya'"),
        "{}",
        why.stdout
    );

    for (toml, key, words) in [
        (
            "[ocr]\ndpi = 20\n",
            "ocr.dpi",
            "must be between 70 and 1200",
        ),
        (
            "[ocr]\ndpi = 5000\n",
            "ocr.dpi",
            "must be between 70 and 1200",
        ),
        (
            "[ocr]\nlanguages = []\n",
            "ocr.languages",
            "must name at least one language",
        ),
        (
            "[ocr]\nlanguages = [\"eng+deu\"]\n",
            "ocr.languages",
            "\"eng+deu\" is not a Tesseract language code",
        ),
        (
            "[ocr]\nmax_pages = 0\n",
            "ocr.max_pages",
            "must be at least 1 (to read no scanned pages, set enabled = false)",
        ),
    ] {
        std::fs::write(&config, format!("{base}\n{toml}")).unwrap();
        let out = env.ragd(&["validate"]).await;
        assert_eq!(out.code, 2, "{toml}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!("ragd.toml: {key}: {words}")),
            "{toml}: {}",
            out.stderr
        );
        let doctor = env.ragd(&["doctor"]).await;
        assert_eq!(doctor.code, 2, "{toml}");
        assert!(
            doctor.stdout.starts_with("FAIL  config: "),
            "{}",
            doctor.stdout
        );
    }
}

/// A file indexed with pages left out says so in `ragd why`: the verdict, and
/// each left-out page with its reason (here: past `[ocr] max_pages`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_shows_the_pages_a_file_was_indexed_without() {
    if crate::support::real::ocr().is_none() {
        return;
    }
    let env = Install::new(false).await;
    env.write(
        "scans.pdf",
        std::fs::read(format!("{FORMATS}/scanned-pages.pdf")).unwrap(),
    );
    env.add_config("[ocr]\nmax_pages = 1\n");
    let index = env.ragd(&["index"]).await;
    assert_eq!(index.code, 0, "{}{}", index.stdout, index.stderr);
    let why = env.ragd(&["why", "scans.pdf"]).await;
    let s = &why.stdout;
    assert_eq!(why.code, 0, "{s}{}", why.stderr);
    for line in [
        "  verdict:   indexed and up to date, with parts left out (see warning)",
        "  warning:   pages 2-3 are not indexed: no text layer, and OCR reads at most 1 page(s) \
         per file (ocr.max_pages)",
    ] {
        assert!(s.contains(line), "missing {line:?} in:\n{s}");
    }
    println!("{s}");
    let j = json(&env.ragd(&["why", "--json", "scans.pdf"]).await);
    assert_eq!(
        j["files"][0]["ledger"]["warnings"][0],
        "pages 2-3 are not indexed: no text layer, and OCR reads at most 1 page(s) per file \
         (ocr.max_pages)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_run_name_every_stage_and_never_a_path() {
    let handle = ragd::telemetry::metrics::install();
    let env = TestEnv::new("").await;
    env.write("m1.md", "# Metrics\n\nCounting things.\n");
    env.write("m2-secret-name.txt", "More text to count.\n");
    env.write("m3.pdf", b"not a pdf");
    env.index().await;

    // Served the way the daemon serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, ragd::telemetry::metrics::metrics_router::<()>())
            .await
            .ok();
    });
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The route serves what the recorder renders.
    assert!(handle.render().contains("ragd_files_indexed_total"));
    for name in [
        "ragd_files_indexed_total{pipeline=\"docs\",outcome=\"added\"}",
        "ragd_files_failed_total{pipeline=\"docs\",kind=\"corrupt\"}",
        "ragd_chunks_written_total{pipeline=\"docs\"}",
        "ragd_chunks_embedded_total{pipeline=\"docs\"}",
        "ragd_embed_request_duration_seconds_bucket{pipeline=\"docs\",le=",
        "ragd_upsert_duration_seconds_bucket{pipeline=\"docs\",le=",
        "ragd_extract_duration_seconds_count{pipeline=\"docs\"}",
        "ragd_runs_total{pipeline=\"docs\",outcome=\"files_failed\"}",
        "ragd_backlog_files{pipeline=\"docs\"}",
        "ragd_last_run_timestamp_seconds{pipeline=\"docs\"}",
        "# HELP ragd_files_indexed_total",
    ] {
        assert!(text.contains(name), "missing {name:?} in:\n{text}");
    }
    assert!(
        !text.contains("m2-secret-name"),
        "a path leaked into a label"
    );
}

/// `ragd index 2>file` filled the file with ANSI colour escapes: colour belongs on a
/// terminal only. Stderr goes to a real file here, as in that report, with `NO_COLOR`
/// unset; once with human lines, once with `--log-format json` (every line an object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_colour_and_json_lines_stay_json() {
    let env = Install::new(false).await;
    env.write_corpus();
    for format in ["human", "json"] {
        let log = env.dir.path().join(format!("stderr-{format}.log"));
        let status = tokio::process::Command::new(crate::support::ragd_bin())
            .arg("--config")
            .arg(env.dir.path().join("config/ragd.toml"))
            .args(["--log-format", format, "index", "--force"])
            .env_remove("RAGD_CONFIG")
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .await
            .expect("run ragd");
        let text = std::fs::read_to_string(&log).unwrap();
        // broken.pdf fails: exit 1, and a WARN line with fields besides the INFO ones.
        assert_eq!(status.code(), Some(1), "{format}:\n{text}");
        assert!(
            text.contains("run finished"),
            "{format}: no log lines:\n{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "{format}: ANSI escapes in a log file:\n{text:?}"
        );
        if format == "json" {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
                assert!(v.is_object(), "{line}");
            }
        }
    }
}

/// Repository root (where Cargo.toml is).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compose_file_has_the_services_images_healthchecks_and_volumes() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    let services = doc["services"].as_mapping().expect("services");
    for (name, image) in [
        ("qdrant", "qdrant/qdrant"),
        ("ollama", "ollama/ollama"),
        ("open-webui", "ghcr.io/open-webui/open-webui"),
    ] {
        let s = &doc["services"][name];
        let img = s["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: image"));
        assert!(img.starts_with(image), "{name}: {img}");
        assert!(
            s["healthcheck"]["test"].is_sequence(),
            "{name}: healthcheck"
        );
        assert!(s["volumes"].is_sequence(), "{name}: volumes");
    }
    let ragd = &doc["services"]["ragd"];
    assert_eq!(ragd["build"]["dockerfile"].as_str(), Some("Dockerfile"));
    assert!(ragd["healthcheck"]["test"].is_sequence());
    let mounts: Vec<&str> = ragd["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for m in [
        ":/documents",
        ":/etc/ragd/config/ragd.toml",
        ":/etc/ragd/pipelines",
    ] {
        assert!(
            mounts.iter().any(|v| v.contains(m)),
            "ragd mounts {m}: {mounts:?}"
        );
    }
    // Every service that waits for another waits for it to be healthy.
    for (name, s) in services {
        if let Some(deps) = s["depends_on"].as_mapping() {
            for (dep, cond) in deps {
                assert!(
                    services.contains_key(dep),
                    "{name:?} depends on unknown {dep:?}"
                );
                assert_eq!(cond["condition"].as_str(), Some("service_healthy"));
            }
        }
    }
    // Named volumes used are declared.
    let declared = doc["volumes"].as_mapping().expect("top-level volumes");
    for (_, s) in services {
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap_or("").split(':').next().unwrap_or("");
            if !src.is_empty() && !src.starts_with('.') && !src.starts_with('/') {
                assert!(declared.contains_key(src), "volume {src} is not declared");
            }
        }
    }
    assert!(repo().join("Dockerfile").is_file());
    assert!(repo().join("deploy/ragd.service").is_file());
}

/// The quick start runs `docker compose up -d qdrant ollama open-webui` before the
/// Open WebUI key exists. Compose interpolates the whole file for every command, so
/// one required variable (`${VAR:?…}` or `${VAR?…}`) anywhere stops that first step.
#[test]
fn compose_file_requires_no_variable_before_the_key_exists() {
    fn strings<'a>(v: &'a serde_norway::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_norway::Value::String(s) => out.push(s),
            serde_norway::Value::Sequence(seq) => seq.iter().for_each(|v| strings(v, out)),
            serde_norway::Value::Mapping(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    let mut values = Vec::new();
    strings(&doc, &mut values);
    for v in values {
        for reference in v.split("${").skip(1) {
            let inner = reference.split('}').next().unwrap_or("");
            assert!(
                !inner.contains('?'),
                "required variable ${{{inner}}} in docker-compose.yml: compose refuses every \
                 command while it is unset"
            );
        }
    }
}

/// The container's layout, rebuilt in a temp folder: `/etc/ragd/config/ragd.toml`
/// is `config/ragd.docker.toml`, `/etc/ragd/pipelines` is `deploy/pipelines`.
#[test]
fn docker_config_validates_as_mounted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::copy(
        repo().join("config/ragd.docker.toml"),
        dir.path().join("config/ragd.toml"),
    )
    .unwrap();
    for f in std::fs::read_dir(repo().join("deploy/pipelines")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(
            &f,
            dir.path().join("pipelines").join(f.file_name().unwrap()),
        )
        .unwrap();
    }
    let env = |name: &str| match name {
        "OPENWEBUI_API_KEY" => Some("sk-test".to_owned()),
        _ => None,
    };
    let config = ragd::config::load_with_env(&dir.path().join("config/ragd.toml"), env)
        .unwrap_or_else(|e| panic!("config/ragd.docker.toml: {e}"));
    assert!(!config.pipelines.is_empty());
    assert!(config.open_webui.is_some());
    assert_eq!(config.listen.to_string(), "0.0.0.0:9321");
}

/// `ragd plan` names where each change lands in the knowledge base (and where
/// a moved file sits now); `ragd status` counts the linked files where the
/// folder has them and names those that are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_status_show_each_files_place_in_the_knowledge_base() {
    let env = Install::new(true).await;
    env.write("guide/intro.md", "# Intro\n\nWombats dig long burrows.\n");
    env.write("guide/deep/setup.md", "# Setup\n\nPlatypus lay eggs.\n");
    env.write("top.md", "# Top\n\nEchidnas eat ants.\n");

    let first = env.ragd(&["plan"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        first.stdout,
        "pipeline docs: 3 add (0 unchanged)\n\
         \x20 add     guide/deep/setup.md  [knowledge base: guide/deep/setup.md]\n\
         \x20 add     guide/intro.md  [knowledge base: guide/intro.md]\n\
         \x20 add     top.md  [knowledge base: top.md]\n"
    );
    let index = env.ragd(&["index"]).await;
    assert_eq!(index.code, 0, "{}{}", index.stdout, index.stderr);

    let s = env.ragd(&["status"]).await.stdout;
    assert!(
        s.contains(
            "kb tree:   3 of 3 linked files where the folder has them, in 2 directories (2 made by ragd)"
        ),
        "{s}"
    );

    // A move into another folder under a new name, and a deletion.
    std::fs::create_dir_all(env.docs().join("manual")).unwrap();
    std::fs::rename(
        env.docs().join("guide/intro.md"),
        env.docs().join("manual/start.md"),
    )
    .unwrap();
    std::fs::remove_file(env.docs().join("top.md")).unwrap();
    let plan = env.ragd(&["plan"]).await;
    assert_eq!(
        plan.stdout,
        "pipeline docs: 1 delete, 1 move (1 unchanged)\n\
         \x20 move    manual/start.md (from guide/intro.md)  \
         [knowledge base: manual/start.md, from guide/intro.md]\n\
         \x20 delete  top.md  [knowledge base: top.md]\n"
    );
    let j = json(&env.ragd(&["plan", "--json"]).await);
    let moved = &j["pipelines"][0]["changes"][0];
    assert_eq!(moved["kb_path"], "manual/start.md");
    assert_eq!(moved["kb_from"], "guide/intro.md");

    // A linked file away from its place: status names it with both places.
    // (The ledger is changed the way an older ragd left a flat base: at the
    // root under its name.)
    {
        let ledger =
            ragd::ledger::Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
        ledger
            .set_kb_path("docs", "guide/deep/setup.md", "setup.md")
            .unwrap();
    }
    let s = env.ragd(&["status"]).await.stdout;
    assert!(
        s.contains("kb tree:   2 of 3 linked files where the folder has them"),
        "{s}"
    );
    assert!(
        s.contains("guide/deep/setup.md: at setup.md, wanted at guide/deep/setup.md"),
        "{s}"
    );
    let j = json(&env.ragd(&["status", "--json"]).await);
    let kb = &j["pipelines"][0]["knowledge"];
    assert_eq!(kb["unplaced"], 1);
    assert_eq!(kb["unplaced_examples"][0]["kb_path"], "setup.md");
}
