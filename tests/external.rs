//! `[knowledge] mode = "external"`: Open WebUI searches ragd's collection on the
//! real Qdrant server through an external knowledge base ragd registers. Each test
//! runs against the fake Open WebUI (whose retrieval really queries Qdrant over REST,
//! as the server's does) and, when it is at hand, against the real Open WebUI 0.12.4
//! (`scripts/openwebui-up.sh`, with `qdrant-client` in its venv).

use std::path::PathBuf;
use std::time::Duration;

use ragd::app::App;
use ragd::embed::server::{EmbedServerHandle, HashEmbedder};
use ragd::open_webui::OpenWebUi;
use ragd::open_webui::external::Retrieved;
use ragd::pipeline::{RunRequest, RunSummary};
use ragd::store::{PointFilter, PointPayload, StoredPoint, VectorStore};
use serde_json::Value;
use uuid::Uuid;

use crate::support::embed::{MODEL, start_embed_server};
use crate::support::fake_openwebui::{FakeHandle, spawn_fake};
use crate::support::owui;
use crate::support::real;

/// The dimension of Open WebUI's RAG model in the test setup (`hash-embed=384`
/// behind `scripts/openwebui-up.sh`): ragd must embed alike.
const DIM: usize = 384;

/// A ragd installation with one external-mode pipeline `docs` on the shared Qdrant.
struct ExternalEnv {
    dir: tempfile::TempDir,
    embed: EmbedServerHandle,
    /// The pipeline's collection (the alias Open WebUI searches).
    collection: String,
    base_name: String,
    client: OpenWebUi,
    qdrant: ragd::store::qdrant::QdrantStore,
    /// The fake, for a fake run (kept alive with the env).
    fake: Option<FakeHandle>,
}

/// Qdrant's REST URL: `QDRANT_REST_URL` (scripts/qdrant-up.sh writes it), else the
/// gRPC URL with the default REST port.
fn rest_url(grpc: &str) -> String {
    std::env::var("QDRANT_REST_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| grpc.replace(":6334", ":6333"))
}

impl ExternalEnv {
    /// `None` without a Qdrant server (reported by `real::qdrant`). With `real`, the
    /// real Open WebUI, else the fake (`None` when the real one is not at hand).
    async fn new(real_owui: bool, pipeline_extra: &str) -> Option<Self> {
        let (qdrant_url, qdrant_key) = real::qdrant()?;
        let (owui_url, owui_key, fake) = if real_owui {
            let (url, key) = owui::real_server()?;
            (url, key, None)
        } else {
            let fake = spawn_fake("sk-external-test").await;
            fake.set_rag_embedder(MODEL, HashEmbedder::new(DIM));
            (fake.url.clone(), fake.api_key.clone(), Some(fake))
        };
        let tag = &Uuid::new_v4().simple().to_string()[..8];
        let collection = format!("ragdtest_ext_{tag}");
        let base_name = format!("ragd external test {tag}");
        let dir = tempfile::tempdir().expect("tempdir");
        let embed = start_embed_server(DIM).await;
        for sub in ["config", "pipelines", "docs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let key_line = qdrant_key
            .as_deref()
            .map(|k| format!("api_key = \"{k}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("config/ragd.toml"),
            format!(
                "state_dir = \"../state\"\npipelines_dir = \"../pipelines\"\n\
                 [qdrant]\nurl = \"{qdrant_url}\"\n{key_line}\
                 [embedding]\nurl = \"{}\"\nmax_retries = 3\n\
                 [open_webui]\nurl = \"{owui_url}\"\napi_key = \"{owui_key}\"\nrequest_timeout_secs = 60\n",
                embed.url()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pipelines/docs.toml"),
            format!(
                "sources = [\"../docs\"]\n[qdrant]\ncollection = \"{collection}\"\n\
                 [knowledge]\nname = \"{base_name}\"\nmode = \"external\"\n\
                 qdrant_url_for_openwebui = \"{}\"\n\
                 [embedding]\nmodel = \"{MODEL}\"\nbatch_size = 8\n\
                 [chunking]\nmax_size = 400\noverlap = 40\n{pipeline_extra}",
                rest_url(&qdrant_url)
            ),
        )
        .unwrap();
        let client = owui::client(&owui_url, &owui_key);
        let qdrant =
            ragd::store::qdrant::QdrantStore::connect(&qdrant_url, qdrant_key, &Default::default())
                .expect("connect to Qdrant");
        Some(ExternalEnv {
            dir,
            embed,
            collection,
            base_name,
            client,
            qdrant,
            fake,
        })
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config/ragd.toml")
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.dir.path().join("docs").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join("docs").join(rel)).unwrap();
    }

    fn app(&self) -> App {
        let mut config = ragd::config::load(&self.config_path()).expect("valid config");
        config.limits.extract.worker_exe = crate::support::ragd_bin();
        App::open(config).expect("open app")
    }

    async fn index(&self) -> RunSummary {
        let app = self.app();
        let pipeline = app
            .pipeline(app.config.pipeline("docs").unwrap())
            .expect("pipeline");
        pipeline.run(&RunRequest::default()).await.expect("run")
    }

    /// The id of the one connection ragd registered for the base named `base`.
    async fn connection_id(&self, base: &str) -> String {
        let name = format!("ragd: {base}");
        let found: Vec<_> = self
            .client
            .external_connections()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.name == name)
            .collect();
        assert_eq!(found.len(), 1, "one connection named {name:?}: {found:?}");
        found[0].id.clone()
    }

    /// What a chat with the base would retrieve for `query`: Open WebUI embeds it
    /// with its own RAG embedding and searches the alias.
    async fn ask(&self, query: &str, count: usize) -> Retrieved {
        self.ask_base(&self.base_name, query, count).await
    }

    /// [`Self::ask`] through the connection of the base named `base`.
    async fn ask_base(&self, base: &str, query: &str, count: usize) -> Retrieved {
        let id = self.connection_id(base).await;
        self.client
            .retrieve_external(&id, &self.collection, query, count)
            .await
            .unwrap_or_else(|e| panic!("retrieve {query:?}: {e}"))
    }

    /// Remove what the test made on the shared servers (bases first: a connection
    /// in use cannot be deleted).
    async fn cleanup(&self) {
        for base in self.client.list_knowledge().await.unwrap_or_default() {
            if base.name.starts_with(&self.base_name) {
                let _ = self.client.delete_knowledge(&base.id).await;
            }
        }
        let ours = format!("ragd: {}", self.base_name);
        if let Ok(connections) = self.client.external_connections().await {
            for c in connections.iter().filter(|c| c.name.starts_with(&ours)) {
                let _ = self.client.delete_external_connection(&c.id).await;
            }
        }
        if let Ok(all) = self.qdrant.list_collections().await {
            for c in all.iter().filter(|c| c.starts_with(&self.collection)) {
                let _ = self.qdrant.delete_collection(c).await;
            }
        }
        let _ = self.qdrant.delete_collection(&self.collection).await;
    }
}

/// `manual.pdf`: two pages, the capybara schedule on the second.
fn write_manual(env: &ExternalEnv) {
    env.write(
        "manual.pdf",
        crate::support::pdf::make_pdf(&[
            "The first page talks about llamas.",
            "The second page explains the capybara feeding schedule in detail.",
        ]),
    );
}

fn sources(r: &Retrieved) -> Vec<String> {
    r.metadatas
        .iter()
        .map(|m| m["source"].as_str().unwrap_or("").to_owned())
        .collect()
}

const INSTALL: &str = "# Installing\n\n## On Debian\n\nThe walrus package installs with apt. \
    Run apt install walrus and then walrus --configure to finish the walrus setup.\n";
const ZEBRA: &str = "Zebra crossings: a zebra crossing is striped. Zebras have stripes too.\n";

async fn citations_edits_and_deletes(real_owui: bool) {
    let Some(env) = ExternalEnv::new(real_owui, "").await else {
        return;
    };
    env.write("guide/install.md", INSTALL);
    env.write("notes/zebra.md", ZEBRA);
    write_manual(&env);

    let first = env.index().await;
    assert_eq!(first.failed, 0, "{:?}", first.failures);
    let ext = first.external.clone().expect("external base synced");
    assert!(ext.created, "{ext:?}");
    let bases: Vec<_> = env
        .client
        .external_bases()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.name == env.base_name)
        .collect();
    assert_eq!(bases.len(), 1);
    assert_eq!(bases[0].id, ext.base_id);
    assert_eq!(
        bases[0].collection.as_deref(),
        Some(env.collection.as_str())
    );

    // The right file's chunk first, cited with its name, path and heading trail.
    let r = env.ask("walrus package apt install", 3).await;
    assert!(!r.documents.is_empty(), "{r:?}");
    assert!(r.documents[0].contains("walrus"), "{r:?}");
    let m = &r.metadatas[0];
    assert_eq!(m["name"], "install.md", "{m}");
    assert_eq!(m["source"], "guide/install.md", "{m}");
    // The trail where the chunk starts (its text holds "## On Debian").
    assert_eq!(m["heading"], "Installing", "{m}");
    assert_eq!(m["headings"], serde_json::json!(["Installing"]), "{m}");
    assert_eq!(m["pipeline"], "docs", "{m}");
    // The point itself: the citation is that of the point the text came from.
    let id: Uuid = m["document_id"]
        .as_str()
        .expect("document_id")
        .parse()
        .unwrap();
    let stored = env
        .qdrant
        .retrieve(&env.collection, &[id], false)
        .await
        .unwrap();
    assert_eq!(stored[0].payload.path, "guide/install.md");
    assert_eq!(stored[0].payload.text, r.documents[0]);

    // A PDF page: Open WebUI counts pages from 0 (its UI shows page + 1).
    let r = env.ask("capybara feeding schedule", 3).await;
    assert_eq!(sources(&r)[0], "manual.pdf", "{r:?}");
    assert_eq!(r.metadatas[0]["page"], 1, "{:?}", r.metadatas[0]);
    assert_eq!(r.metadatas[0]["page_label"], "2", "{:?}", r.metadatas[0]);

    // Idempotent: nothing created or repaired, still one base and one connection.
    let again = env.index().await;
    let ext2 = again.external.expect("external base synced");
    assert!(!ext2.created && !ext2.repaired, "{ext2:?}");
    assert_eq!(ext2.base_id, ext.base_id);
    env.connection_id(&env.base_name).await;

    // Edit: retrieval follows at once (no processing on Open WebUI's side).
    env.write("guide/install.md", INSTALL.replace("walrus", "narwhal"));
    env.index().await;
    let r = env.ask("narwhal package apt install", 3).await;
    assert_eq!(sources(&r)[0], "guide/install.md", "{r:?}");
    assert!(r.documents[0].contains("narwhal"), "{r:?}");
    let r = env.ask("walrus", 10).await;
    assert!(
        r.documents.iter().all(|d| !d.contains("walrus")),
        "the old version is gone: {r:?}"
    );

    // Delete: the file's chunks no longer come back.
    env.remove("notes/zebra.md");
    env.index().await;
    let r = env.ask("zebra crossing stripes", 10).await;
    assert!(
        !sources(&r).iter().any(|s| s == "notes/zebra.md"),
        "a deleted file is still cited: {r:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_base_cites_the_right_file_and_follows_edits_and_deletes() {
    citations_edits_and_deletes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_open_webui_external_base_cites_the_right_file_and_follows_edits_and_deletes() {
    citations_edits_and_deletes(true).await;
}

async fn reindex_keeps_answering(real_owui: bool) {
    let Some(env) = ExternalEnv::new(real_owui, "").await else {
        return;
    };
    for i in 0..40 {
        env.write(
            &format!("filler/f{i:02}.md"),
            format!("Filler note {i} about gardening, soil and compost number {i}.\n"),
        );
    }
    env.write("guide/install.md", INSTALL);
    env.index().await;
    let before = env.ask("walrus package apt install", 3).await;
    assert_eq!(sources(&before)[0], "guide/install.md", "{before:?}");
    let old_collection = env.qdrant.resolve_alias(&env.collection).await.unwrap();

    // Smaller chunks: a new fingerprint, so the new collection's chunks differ.
    let pipeline = env.dir.path().join("pipelines/docs.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace(
            "max_size = 400\noverlap = 40",
            "max_size = 120\noverlap = 10",
        ),
    )
    .unwrap();
    // Slow embedding makes the build last while Open WebUI is asked.
    env.embed.set_delay(Duration::from_millis(40));
    let app = env.app();
    let rebuild = tokio::spawn(async move {
        ragd::daemon::reindex_pipelines(&app, Some("docs"), false)
            .await
            .map_err(|e| e.to_string())
    });
    let mut answered = 0;
    while !rebuild.is_finished() {
        let r = env.ask("walrus package apt install", 3).await;
        assert_eq!(
            sources(&r).first().map(String::as_str),
            Some("guide/install.md"),
            "no answer during the rebuild: {r:?}"
        );
        answered += 1;
    }
    let outcomes = rebuild.await.unwrap().expect("reindex");
    assert!(
        answered >= 2,
        "the rebuild was too quick to observe ({answered})"
    );
    let new_collection = outcomes[0].collection.clone();
    assert_ne!(Some(&new_collection), old_collection.as_ref());
    assert_eq!(
        env.qdrant.resolve_alias(&env.collection).await.unwrap(),
        Some(new_collection.clone())
    );

    // Now answered from the new collection: its (smaller) chunks, its points.
    let after = env.ask("walrus package apt install", 3).await;
    assert_eq!(sources(&after)[0], "guide/install.md", "{after:?}");
    assert!(after.documents[0].chars().count() <= 120, "{after:?}");
    let id: Uuid = after.metadatas[0]["document_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let in_new = env
        .qdrant
        .retrieve(&new_collection, &[id], false)
        .await
        .unwrap();
    assert_eq!(in_new.len(), 1, "the hit is a point of {new_collection}");
    assert_eq!(in_new[0].payload.text, after.documents[0]);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reindex_behind_the_alias_keeps_the_external_base_answering() {
    reindex_keeps_answering(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_open_webui_keeps_answering_through_a_reindex() {
    reindex_keeps_answering(true).await;
}

/// Points an older ragd wrote (no `metadata`) get their citation on the next run,
/// vectors unchanged; points that have it are not rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_points_get_their_citation_metadata_on_the_next_run() {
    let Some(env) = ExternalEnv::new(false, "").await else {
        return;
    };
    env.write("guide/install.md", INSTALL);
    env.index().await;
    let points = env
        .qdrant
        .scroll(&env.collection, &PointFilter::default(), true)
        .await
        .unwrap();
    assert!(!points.is_empty());

    // Make them look like an older ragd's: the same payload without `metadata`.
    let rest = rest_url(&real::qdrant().unwrap().0);
    let http = reqwest::Client::new();
    let answer = http
        .post(format!(
            "{rest}/collections/{}/points/payload/delete?wait=true",
            env.collection
        ))
        .json(&serde_json::json!({"keys": ["metadata"], "filter": {}}))
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
    let raw_payloads = |points: Value| -> Vec<Value> {
        points["result"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["payload"].clone())
            .collect()
    };
    let scroll = || async {
        http.post(format!(
            "{rest}/collections/{}/points/scroll",
            env.collection
        ))
        .json(&serde_json::json!({"limit": 100, "with_payload": true}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
    };
    assert!(
        raw_payloads(scroll().await)
            .iter()
            .all(|p| p.get("metadata").is_none())
    );

    let run = env.index().await;
    let ext = run.external.expect("external base synced");
    assert_eq!(ext.citations_added, points.len() as u64);
    for p in raw_payloads(scroll().await) {
        let payload: PointPayload = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(p["metadata"], payload.citation(), "{p}");
    }
    let after: Vec<StoredPoint> = env
        .qdrant
        .scroll(&env.collection, &PointFilter::default(), true)
        .await
        .unwrap();
    let vectors = |ps: &[StoredPoint]| {
        let mut v: Vec<_> = ps.iter().map(|p| (p.id, p.vector.clone())).collect();
        v.sort_by_key(|(id, _)| *id);
        v
    };
    assert_eq!(vectors(&after), vectors(&points), "vectors unchanged");
    // Done once: the store has nothing left to add.
    assert_eq!(env.qdrant.add_citations(&env.collection).await.unwrap(), 0);
    env.cleanup().await;
}

/// `ragd doctor` asks Open WebUI for a stored chunk by its own text: the same model
/// gives back that point with cosine 1; a query prefix (or another model) does not,
/// and that is a FAIL that says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_when_open_webui_embeds_otherwise_than_ragd() {
    use ragd::ops::doctor::{Verdict, check};
    let Some(env) = ExternalEnv::new(false, "").await else {
        return;
    };
    env.write("guide/install.md", INSTALL);
    env.index().await;
    let name = "external knowledge for docs";
    let report = check(&env.config_path()).await;
    let vectors = report
        .checks
        .iter()
        .find(|c| c.name == name)
        .expect("checked");
    assert_eq!(vectors.verdict, Verdict::Ok, "{:?}", report.checks);
    assert!(vectors.detail.contains("cosine 1.0000"), "{vectors:?}");
    let embedding = report
        .checks
        .iter()
        .find(|c| c.name == "open webui embedding")
        .expect("reported");
    assert!(embedding.detail.contains("\"hash-embed\""), "{embedding:?}");
    assert!(embedding.detail.contains("query prefix"), "{embedding:?}");

    env.fake.as_ref().unwrap().set_rag_query_prefix("query: ");
    let report = check(&env.config_path()).await;
    let vectors = report
        .checks
        .iter()
        .find(|c| c.name == name)
        .expect("checked");
    assert_eq!(vectors.verdict, Verdict::Fail, "{vectors:?}");
    assert!(
        vectors.detail.contains("RAG_EMBEDDING_MODEL=hash-embed")
            && vectors.detail.contains("RAG_EMBEDDING_QUERY_PREFIX"),
        "the fix is spelled out: {vectors:?}"
    );
    assert!(report.failed());
    env.cleanup().await;
}

/// The cosine `ragd doctor` reports in a vector check's detail.
fn reported_cosine(detail: &str) -> f64 {
    let at = detail.find("cosine ").expect("a cosine in the detail") + "cosine ".len();
    detail[at..]
        .split(|c: char| c != '.' && !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after \"cosine\": {detail}"))
}

/// The same check on the real Open WebUI 0.12.4, whose RAG embedding is the
/// test setup's `hash-embed` (`scripts/openwebui-up.sh`: Ollama engine, ragd's
/// embed-server), the model ragd's pipeline uses: OK with cosine ≥ 0.999, and
/// the engine and model read from `GET /api/v1/retrieval/embedding`. Then ragd
/// embeds with another model of the same dimension (the real all-MiniLM-L6-v2,
/// in-process) while Open WebUI keeps `hash-embed`: the vectors disagree and
/// that is a FAIL naming what to set (for an in-process model, Open WebUI's
/// built-in engine with the same model). Open WebUI's own settings are not
/// changed: the server is shared by the other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_open_webui_doctor_compares_its_vectors_with_ragds() {
    use ragd::ops::doctor::{Verdict, check};
    let Some(env) = ExternalEnv::new(true, "").await else {
        return;
    };
    let name = "external knowledge for docs";
    env.write("guide/install.md", INSTALL);
    env.index().await;
    let report = check(&env.config_path()).await;
    let find = |report: &ragd::ops::doctor::Report, name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} checked: {:?}", report.checks))
            .clone()
    };
    let vectors = find(&report, name);
    assert_eq!(vectors.verdict, Verdict::Ok, "{:?}", report.checks);
    let cosine = reported_cosine(&vectors.detail);
    assert!(cosine >= 0.999, "{vectors:?}");
    let embedding = find(&report, "open webui embedding");
    assert!(
        embedding.detail.contains("engine ollama") && embedding.detail.contains("\"hash-embed\""),
        "{embedding:?}"
    );
    assert!(embedding.detail.contains("query prefix"), "{embedding:?}");
    env.cleanup().await;

    let Some(model_dir) = real::model_dir() else {
        return;
    };
    let Some(env) = ExternalEnv::new(true, "").await else {
        return;
    };
    let config = env.config_path();
    let toml = std::fs::read_to_string(&config).unwrap();
    let embed_url = format!("url = \"{}\"\n", env.embed.url());
    assert!(toml.contains(&embed_url), "{toml}");
    std::fs::write(
        &config,
        toml.replace(
            &embed_url,
            &format!(
                "provider = \"local\"\nmodel_dir = \"{}\"\n",
                model_dir.display()
            ),
        ),
    )
    .unwrap();
    let pipeline = env.dir.path().join("pipelines/docs.toml");
    let toml = std::fs::read_to_string(&pipeline).unwrap();
    let model_line = format!("model = \"{MODEL}\"\n");
    assert!(toml.contains(&model_line), "{toml}");
    std::fs::write(&pipeline, toml.replace(&model_line, "")).unwrap();
    env.write("guide/install.md", INSTALL);
    let summary = env.index().await;
    assert_eq!(summary.failed, 0, "{:?}", summary.failures);
    let report = check(&env.config_path()).await;
    let vectors = find(&report, name);
    assert_eq!(vectors.verdict, Verdict::Fail, "{vectors:?}");
    // ragd's model runs in-process: the fix is Open WebUI's built-in engine with
    // the same model, not an Ollama server ragd does not use.
    assert!(
        vectors.detail.contains("(ollama \"hash-embed\")")
            && vectors.detail.contains("RAG_EMBEDDING_ENGINE empty")
            && vectors
                .detail
                .contains("RAG_EMBEDDING_MODEL to the hub name")
            && vectors
                .detail
                .contains("sentence-transformers/all-MiniLM-L6-v2"),
        "the fix is spelled out: {vectors:?}"
    );
    assert!(report.failed());
    env.cleanup().await;
}

/// `mode = "both"`: the uploads' base and the external base side by side, told apart
/// by name, each found again on the next run (the files base never mistaken for
/// the external one of the same stem).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_modes_on_one_pipeline_keep_two_bases() {
    let Some(env) = ExternalEnv::new(false, "").await else {
        return;
    };
    let pipeline = env.dir.path().join("pipelines/docs.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("mode = \"external\"", "mode = \"both\""),
    )
    .unwrap();
    env.write("guide/install.md", INSTALL);
    for run in 0..2 {
        let summary = env.index().await;
        let kb = summary.knowledge.expect("files base published");
        assert_eq!(kb.failed, 0, "{kb:?}");
        let ext = summary.external.expect("external base synced");
        assert_eq!(ext.created, run == 0, "{ext:?}");
    }
    let all = env.client.list_knowledge().await.unwrap();
    let files: Vec<_> = all.iter().filter(|k| k.name == env.base_name).collect();
    let external: Vec<_> = all
        .iter()
        .filter(|k| k.name == format!("{} (external)", env.base_name))
        .collect();
    assert_eq!(files.len(), 1, "{all:?}");
    assert!(!files[0].external);
    assert_eq!(external.len(), 1, "{all:?}");
    assert!(external[0].external);
    assert_eq!(
        env.fake
            .as_ref()
            .unwrap()
            .knowledge_file_ids(&files[0].id)
            .len(),
        1
    );
    let r = env
        .ask_base(&format!("{} (external)", env.base_name), "walrus apt", 3)
        .await;
    assert_eq!(sources(&r)[0], "guide/install.md", "{r:?}");
    env.cleanup().await;
}

/// `[knowledge] access` applies to the external base as to a files base: who may
/// chat with it is who may read the folder. Set on the first run, left alone
/// (no request) when it already holds, and replaced when the config changes.
async fn access_follows_the_config(real_owui: bool) {
    let Some(env) = ExternalEnv::new(real_owui, "").await else {
        return;
    };
    let (url, key) = match (&env.fake, real_owui) {
        (Some(fake), _) => (fake.url.clone(), fake.api_key.clone()),
        (None, _) => owui::real_server().expect("the real Open WebUI"),
    };
    let tag = owui::unique("extacc");
    let (user, group) = owui::principals(&url, &key, &tag).await;
    let pipeline = env.dir.path().join("pipelines/docs.toml");
    let original = std::fs::read_to_string(&pipeline).unwrap();
    let set_access = |access: &str| {
        std::fs::write(
            &pipeline,
            original.replace(
                "mode = \"external\"",
                &format!("mode = \"external\"\naccess = {access}"),
            ),
        )
        .unwrap()
    };
    set_access(&format!(
        "[{{ group = \"staff-{tag}\", permission = \"read\" }}, \
         {{ user = \"ana-{tag}@example.com\", permission = \"write\" }}]"
    ));
    env.write("guide/install.md", INSTALL);
    let first = env.index().await.external.expect("external base synced");
    assert!(first.access_updated, "{first:?}");
    assert_eq!(
        owui::grants(&env.client, &first.base_id).await,
        [
            owui::grant("group", &group, "read"),
            owui::grant("user", &user, "read"),
            owui::grant("user", &user, "write"),
        ]
        .into_iter()
        .collect()
    );
    let again = env.index().await.external.unwrap();
    assert!(!again.access_updated, "nothing to change: {again:?}");

    set_access(&format!(
        "[{{ group = \"staff-{tag}\", permission = \"read\" }}]"
    ));
    let changed = env.index().await.external.unwrap();
    assert!(changed.access_updated, "{changed:?}");
    assert_eq!(
        owui::grants(&env.client, &changed.base_id).await,
        [owui::grant("group", &group, "read")].into_iter().collect()
    );
    // Still answering, with the grants in place.
    let r = env.ask("walrus apt", 3).await;
    assert_eq!(sources(&r)[0], "guide/install.md", "{r:?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_base_grants_what_the_config_says() {
    access_follows_the_config(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_open_webui_external_base_grants_what_the_config_says() {
    access_follows_the_config(true).await;
}

/// The chat path itself, on the real Open WebUI: a chat with the external base
/// attached retrieves from ragd's collection through the base's *stored* source
/// (the middleware's `get_sources_from_items`, not the retrieve-test route), and
/// the model is given the right file's text under its name. The model is a pipe
/// function that echoes what it is given: no language model is needed to see
/// what one would be told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_open_webui_chat_with_the_external_base_is_given_ragds_chunks() {
    let Some(env) = ExternalEnv::new(true, "").await else {
        return;
    };
    let (url, key) = owui::real_server().expect("the real Open WebUI");
    env.write("guide/install.md", INSTALL);
    env.write("notes/zebra.md", ZEBRA);
    write_manual(&env);
    let summary = env.index().await;
    assert_eq!(summary.failed, 0, "{:?}", summary.failures);
    let base = summary.external.expect("external base synced").base_id;

    // The page a passage is on, as Open WebUI's citations read it (0-based
    // `page`, shown as `page_label`).
    let chat = owui::chat_context(&url, &key, &base, "capybara feeding schedule").await;
    let page = chat
        .citations
        .iter()
        .find(|m| m["source"] == "manual.pdf" && m["page_label"] == "2")
        .unwrap_or_else(|| panic!("no citation of manual.pdf page 2: {:?}", chat.citations));
    assert_eq!(page["page"], 1, "{page}");

    let chat = owui::chat_context(&url, &key, &base, "How do I install walrus with apt?").await;
    assert!(
        chat.text.contains("walrus --configure"),
        "the install guide's text is not in the chat's context: {}",
        chat.text
    );
    let cited: Vec<&str> = chat
        .citations
        .iter()
        .filter_map(|m| m["source"].as_str())
        .collect();
    assert!(
        cited.contains(&"guide/install.md"),
        "the chat does not cite guide/install.md: {:?}",
        chat.citations
    );
    let install = chat
        .citations
        .iter()
        .find(|m| m["source"] == "guide/install.md")
        .unwrap();
    assert_eq!(install["name"], "install.md", "{install}");

    // A deleted file stops being told to the model.
    env.remove("guide/install.md");
    env.index().await;
    let chat = owui::chat_context(&url, &key, &base, "How do I install walrus with apt?").await;
    assert!(
        !chat.text.contains("walrus --configure"),
        "a deleted file is still in the chat's context: {}",
        chat.text
    );
    env.cleanup().await;
}

/// A scanned PDF (an image-only page, `tests/data/formats/scanned.pdf`) in an
/// external base: Open WebUI reads nothing from such a file itself (in files mode
/// 0.12.4 refuses it, see docs/formats.md), but here it searches ragd's own
/// collection, where the page's OCR text is: `retrieve-test` on the real Open
/// WebUI returns that text, cited with the file's name, path and page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_open_webui_external_base_returns_a_scanned_pdfs_ocr_text() {
    if real::ocr().is_none() {
        return;
    }
    let Some(env) = ExternalEnv::new(true, "").await else {
        return;
    };
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");
    env.write(
        "scans/inspection.pdf",
        std::fs::read(format!("{data}/scanned.pdf")).unwrap(),
    );
    env.write("notes/zebra.md", ZEBRA);
    let summary = env.index().await;
    assert_eq!(
        (summary.added, summary.failed),
        (2, 0),
        "{:?}",
        summary.failures
    );

    let r = env
        .ask(
            "pumping station inspection main valve spare filter cartridges",
            3,
        )
        .await;
    let i = sources(&r)
        .iter()
        .position(|s| s == "scans/inspection.pdf")
        .unwrap_or_else(|| panic!("the scanned PDF is not retrieved: {r:?}"));
    assert_eq!(i, 0, "the scanned PDF is not the first hit: {r:?}");
    // The words of the page (tests/data/formats/src/ocr.md), read by Tesseract.
    for words in [
        "pumping station",
        "spare filter cartridges",
        "northern outlet",
    ] {
        assert!(r.documents[0].contains(words), "{words:?}: {r:?}");
    }
    let m = &r.metadatas[0];
    assert_eq!(m["name"], "inspection.pdf", "{m}");
    assert_eq!(m["source"], "scans/inspection.pdf", "{m}");
    // The one page, 0-based as Open WebUI counts it, shown as "1".
    assert_eq!(m["page"], 0, "{m}");
    assert_eq!(m["page_label"], "1", "{m}");
    assert_eq!(m["ocr"], true, "{m}");

    // The text file beside it is cited as itself.
    let r = env.ask("zebra crossing stripes", 3).await;
    assert_eq!(sources(&r)[0], "notes/zebra.md", "{r:?}");
    assert_eq!(r.metadatas[0]["name"], "zebra.md", "{:?}", r.metadatas[0]);
    assert!(r.metadatas[0].get("page").is_none(), "{:?}", r.metadatas[0]);
    env.cleanup().await;
}
