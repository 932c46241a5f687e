//! A throwaway ragd installation: a temp folder with `config/ragd.toml`,
//! `pipelines/*.toml`, a documents folder and the project's embedding server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ragd::app::App;
use ragd::embed::server::EmbedServerHandle;
use ragd::pipeline::{Pipeline, RunRequest, RunSummary};
use ragd::store::edge::EdgeStore;
use ragd::store::layer::{Attempt, Call, CallKind, Layer, Layered};
use ragd::store::qdrant::{QdrantStore, ServerOptions};
use ragd::store::{PointFilter, StoreError, StoredPoint, VectorStore, WriteOp};
use uuid::Uuid;

use super::embed::{MODEL, start_embed_server};
use super::real;

/// Which store a [`TestEnv`] indexes into. End-to-end tests run on the embedded
/// store, and again on the real Qdrant server when `RAGD_TEST_STORE=qdrant`
/// (`scripts/test.sh` runs the end-to-end modules a second time that way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// qdrant-edge in the environment's state directory.
    Edge,
    /// The shared Qdrant server: gRPC url and API key. Each environment has a
    /// collection of its own there, dropped when the environment is.
    Server { url: String, key: Option<String> },
}

impl Backend {
    /// The backend `RAGD_TEST_STORE` asks for (`edge`, the default, or
    /// `qdrant`). Asking for the server without one at hand fails the test:
    /// a server pass that quietly ran on the embedded store would prove nothing.
    pub fn from_env() -> Backend {
        match std::env::var("RAGD_TEST_STORE").as_deref() {
            Ok("qdrant") => {
                let (url, key) = real::qdrant().unwrap_or_else(|| {
                    panic!("RAGD_TEST_STORE=qdrant but no Qdrant server (QDRANT_URL unset)")
                });
                Backend::Server { url, key }
            }
            Ok("edge") | Ok("") | Err(_) => Backend::Edge,
            Ok(other) => panic!("RAGD_TEST_STORE={other}: expected edge or qdrant"),
        }
    }
}

/// Dimension of the test embedding model.
pub const DIM: usize = 64;

/// Fields drop in order: the store must flush before its folder is removed.
pub struct TestEnv {
    /// Counts the writes that reach the store.
    pub store: Arc<CountingStore>,
    /// The `docs` pipeline's collection (its alias): `docs` on the embedded
    /// store, a name of this environment's own on the shared server.
    pub collection: String,
    pub backend: Backend,
    pub embed: EmbedServerHandle,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    /// One pipeline `docs` over `<dir>/docs`, extra pipeline TOML appended.
    pub async fn new(extra_pipeline_toml: &str) -> Self {
        Self::with(extra_pipeline_toml, "").await
    }

    /// A pipeline that publishes to the knowledge base `kb_name` on the Open WebUI
    /// at `url` (process timeout `process_timeout_secs`).
    pub async fn with_knowledge(
        url: &str,
        key: &str,
        kb_name: &str,
        process_timeout_secs: u64,
    ) -> Self {
        Self::with_knowledge_and(url, key, kb_name, process_timeout_secs, "").await
    }

    /// [`TestEnv::with_knowledge`] plus more ragd.toml tables after `[open_webui]`.
    pub async fn with_knowledge_and(
        url: &str,
        key: &str,
        kb_name: &str,
        process_timeout_secs: u64,
        extra_daemon_toml: &str,
    ) -> Self {
        Self::with_knowledge_on(
            Backend::from_env(),
            url,
            key,
            kb_name,
            process_timeout_secs,
            extra_daemon_toml,
        )
        .await
    }

    /// [`TestEnv::with_knowledge_and`] on `backend`.
    pub async fn with_knowledge_on(
        backend: Backend,
        url: &str,
        key: &str,
        kb_name: &str,
        process_timeout_secs: u64,
        extra_daemon_toml: &str,
    ) -> Self {
        Self::on(
            backend,
            &format!("[knowledge]\nname = \"{kb_name}\"\n"),
            &format!(
                "[open_webui]\nurl = \"{url}\"\napi_key = \"{key}\"\nconcurrency = 4\n\
                 process_timeout_secs = {process_timeout_secs}\nrequest_timeout_secs = 60\n\
                 {extra_daemon_toml}"
            ),
        )
        .await
    }

    /// Extra TOML for the pipeline (before its tables) and for ragd.toml (after),
    /// on the store `RAGD_TEST_STORE` names.
    pub async fn with(extra_pipeline_toml: &str, extra_daemon_toml: &str) -> Self {
        Self::on(Backend::from_env(), extra_pipeline_toml, extra_daemon_toml).await
    }

    /// [`TestEnv::with`] on the embedded store whatever `RAGD_TEST_STORE` says:
    /// for tests of what only the embedded store has (its files, its vacuum).
    pub async fn edge(extra_pipeline_toml: &str, extra_daemon_toml: &str) -> Self {
        Self::on(Backend::Edge, extra_pipeline_toml, extra_daemon_toml).await
    }

    /// [`TestEnv::with`] on `backend`.
    pub async fn on(backend: Backend, extra_pipeline_toml: &str, extra_daemon_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let embed = start_embed_server(DIM).await;
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        std::fs::create_dir_all(dir.path().join("docs")).unwrap();
        // On the server, the `[qdrant]` tables name the server and a collection
        // of this environment's own (the server is shared by parallel tests and
        // by earlier runs); the embedded store needs neither.
        let (collection, server_daemon_toml, server_pipeline_toml) = match &backend {
            Backend::Edge => ("docs".to_owned(), String::new(), String::new()),
            Backend::Server { url, key } => {
                assert!(
                    !extra_daemon_toml.contains("[qdrant]")
                        && !extra_pipeline_toml.contains("[qdrant]"),
                    "a test with its own [qdrant] settings runs on TestEnv::edge"
                );
                let collection = format!(
                    "ragdtest_e2e_{}",
                    &Uuid::new_v4().simple().to_string()[..12]
                );
                let key = key
                    .as_ref()
                    .map(|k| format!("api_key = \"{k}\"\n"))
                    .unwrap_or_default();
                (
                    collection.clone(),
                    format!("[qdrant]\nurl = \"{url}\"\n{key}"),
                    format!("[qdrant]\ncollection = \"{collection}\"\n"),
                )
            }
        };
        std::fs::write(
            dir.path().join("config/ragd.toml"),
            format!(
                "state_dir = \"../state\"\npipelines_dir = \"../pipelines\"\n\
                 [embedding]\nurl = \"{}\"\nmax_retries = 3\n{server_daemon_toml}{extra_daemon_toml}",
                embed.url()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pipelines/docs.toml"),
            format!(
                "sources = [\"../docs\"]\n{extra_pipeline_toml}\n[embedding]\nmodel = \"{MODEL}\"\n\
                 batch_size = 8\n[chunking]\nmax_size = 400\noverlap = 40\n{server_pipeline_toml}"
            ),
        )
        .unwrap();
        let store = match &backend {
            Backend::Edge => Layered::new(
                Arc::new(
                    EdgeStore::open(&dir.path().join("state/qdrant")).expect("open edge store"),
                ),
                Counts::default(),
            ),
            Backend::Server { url, key } => Layered::new(
                Arc::new(
                    QdrantStore::connect(url, key.clone(), &ServerOptions::default())
                        .expect("connect to the Qdrant server"),
                ),
                Counts::default(),
            ),
        };
        TestEnv {
            store: Arc::new(store),
            collection,
            backend,
            embed,
            dir,
        }
    }

    pub fn docs(&self) -> PathBuf {
        self.dir.path().join("docs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config/ragd.toml")
    }

    /// Write a document (creating folders).
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.docs().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.docs().join(rel)).unwrap();
    }

    /// Run the `ragd` binary on this installation: `ragd --config <config> ARGS`.
    /// Nothing in this process may hold the embedded store meanwhile (its
    /// shards admit one process): drive such a test through the binary alone,
    /// and read the store afterwards with [`TestEnv::fresh_store`].
    pub fn ragd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(super::ragd_bin())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("RAGD_CONFIG")
            .env_remove("RAGD_FAILPOINTS")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run ragd")
    }

    /// Upload metadata carrying the marker this installation's pipeline
    /// `docs` stamps on an upload of `path` at `content_hash` for `kb`: what a
    /// crash between an upload and recording it leaves on the server.
    pub fn upload_marker(&self, path: &str, content_hash: &str, kb: &str) -> serde_json::Value {
        let instance = ragd::app::instance_id(&self.dir.path().join("state"))
            .expect("the state directory's instance id");
        let marker = ragd::open_webui::UploadMarker {
            pipeline: "docs".into(),
            path: path.into(),
            content_hash: content_hash.into(),
            kb: kb.into(),
            instance: Some(instance),
        };
        serde_json::json!({ ragd::open_webui::MARKER: marker.to_json() })
    }

    /// Open the app the way the CLI does, but over the counting store.
    pub fn app(&self) -> App {
        self.app_with(|_| {})
    }

    /// [`Self::app`] with the validated config adjusted first (extraction
    /// worker faults and limits, say).
    pub fn app_with(&self, adjust: impl FnOnce(&mut ragd::config::Config)) -> App {
        let mut config = ragd::config::load(&self.config_path()).expect("valid config");
        // This test binary is the harness, not ragd: the extraction worker must
        // be the real binary.
        config.limits.extract.worker_exe = crate::support::ragd_bin();
        adjust(&mut config);
        // Another test in this process may be forking an extraction worker or a
        // ragd child at this instant: between fork and exec the child holds a copy
        // of every open descriptor, our state-directory lock included, for a
        // moment. Wait that out instead of failing.
        let mut tries = 0;
        loop {
            match App::open_with(config.clone(), Some(self.store.clone())) {
                Err(ragd::app::AppError::Locked(_)) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other.expect("open app"),
            }
        }
    }

    /// Run the `docs` pipeline once, like `ragd index`.
    pub async fn index(&self) -> RunSummary {
        let app = self.app();
        let pipeline = self.pipeline(&app);
        pipeline.run(&RunRequest::default()).await.expect("run")
    }

    pub fn pipeline(&self, app: &App) -> Pipeline {
        app.pipeline(app.config.pipeline("docs").expect("docs pipeline"))
            .expect("build pipeline")
    }

    /// The store opened anew, for reading what a `ragd` child process wrote
    /// (the embedded store's files as they are now; the server as it is).
    pub fn fresh_store(&self) -> Box<dyn VectorStore> {
        match &self.backend {
            Backend::Edge => Box::new(
                EdgeStore::open(&self.dir.path().join("state/qdrant")).expect("open edge store"),
            ),
            Backend::Server { url, key } => Box::new(
                QdrantStore::connect(url, key.clone(), &ServerOptions::default())
                    .expect("connect to the Qdrant server"),
            ),
        }
    }

    /// Points stored for one file.
    pub async fn points(&self, rel: &str) -> Vec<StoredPoint> {
        let mut pts = self
            .store
            .scroll(&self.collection, &PointFilter::file("docs", rel), false)
            .await
            .unwrap_or_default();
        pts.sort_by_key(|p| p.payload.chunk_index);
        pts
    }

    pub async fn total_points(&self) -> u64 {
        self.store
            .count(&self.collection, &PointFilter::default())
            .await
            .unwrap_or(0)
    }
}

impl Drop for TestEnv {
    /// The server outlives the test: drop this environment's collections (the
    /// alias's and every `_v{N}` a reindex built) so a developer's server does
    /// not fill up with them. Best effort, on a thread of its own because a
    /// test's runtime may be the one dropping us.
    fn drop(&mut self) {
        let Backend::Server { url, key } = &self.backend else {
            return;
        };
        let (url, key, prefix) = (url.clone(), key.clone(), self.collection.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let store = QdrantStore::connect(&url, key, &ServerOptions::default()).ok()?;
                for c in store.list_collections().await.ok()? {
                    if c.starts_with(&prefix) {
                        let _ = store.delete_collection(&c).await;
                    }
                }
                Some(())
            })
        })
        .join();
    }
}

/// A vector store that counts the calls that change data, over a real store.
pub type CountingStore = Layered<Counts>;

/// The counts of a [`CountingStore`]: calls that write points, calls that delete
/// them (a group of writes counts each of its ops), and every call by its name.
#[derive(Default)]
pub struct Counts {
    upserts: AtomicU64,
    deletes: AtomicU64,
    calls: std::sync::Mutex<HashMap<&'static str, u64>>,
}

impl Counts {
    /// Calls of the store method `name` so far.
    pub fn calls(&self, name: &str) -> u64 {
        self.calls.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    pub fn upserts(&self) -> u64 {
        self.upserts.load(Ordering::SeqCst)
    }

    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::SeqCst)
    }
}

impl Layer for Counts {
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        attempt: impl Fn() -> Attempt<'a, T> + Send + Sync + 'a,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'a {
        let count = |counter: &AtomicU64| counter.fetch_add(1, Ordering::SeqCst);
        *self.calls.lock().unwrap().entry(call.name).or_default() += 1;
        match call.kind {
            CallKind::Upsert => _ = count(&self.upserts),
            CallKind::Delete => _ = count(&self.deletes),
            CallKind::Write(ops) => {
                for op in ops {
                    match op {
                        WriteOp::Upsert(_) => count(&self.upserts),
                        WriteOp::Delete(_) | WriteOp::DeletePoints(_) => count(&self.deletes),
                    };
                }
            }
            _ => {}
        }
        attempt()
    }
}
