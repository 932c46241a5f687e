//! The composition root: validated config → components (ledger, store,
//! embedders, chunkers) → pipelines ready to run.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::chunk::{ChunkSettings, Chunker, SizeUnit, load_tokenizer};
use crate::config::{
    ChunkUnit, Config, EmbedProvider, OpenWebUiSettings, PipelineConfig, QdrantSettings,
};
use crate::embed::Embedder;
use crate::embed::local::LocalEmbedder;
use crate::embed::ollama::{OllamaEmbedder, OllamaSettings};
use crate::ledger::{Ledger, LedgerError};
use crate::open_webui::OpenWebUi;
use crate::pipeline::Pipeline;
use crate::pipeline::external::ExternalPublisher;
use crate::publish::Publisher;
use crate::store::edge::{EdgeStore, EdgeTuning};
use crate::store::layer::Layered;
use crate::store::qdrant::{CreationJournal, QdrantStore, ServerOptions};
use crate::store::retry::Retry;
use crate::store::{StoreError, VectorStore};

/// Failures while building components. All are fatal for the command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state directory {0} is in use by another ragd process (it holds {0}/ragd.lock); \
         stop it or use another state_dir"
    )]
    Locked(PathBuf),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("vector store: {0}")]
    Store(#[from] StoreError),
    #[error("pipeline {pipeline}: {message}")]
    Pipeline { pipeline: String, message: String },
    #[error("no pipeline named {0:?} (see `ragd validate`)")]
    NoSuchPipeline(String),
}

/// Shared components, opened once per process.
pub struct App {
    pub config: Config,
    pub ledger: Arc<Ledger>,
    pub store: Arc<dyn VectorStore>,
    /// This installation's id ([`instance_id`]): marks its Qdrant collections
    /// and its Open WebUI uploads, so that two installations sharing a server
    /// never take each other's data for their own.
    pub instance: String,
    /// The in-process model, loaded once and shared by every pipeline.
    local: OnceLock<Arc<LocalEmbedder>>,
    /// One Open WebUI client for every pipeline (shares connections).
    open_webui: OnceLock<Arc<OpenWebUi>>,
    /// Held for the life of the process: one ragd per state directory, because
    /// embedded Qdrant and the ledger's write-ahead states assume one writer.
    _lock: File,
}

/// The ledger as the record of collections being created on a server.
struct LedgerJournal(Arc<Ledger>);

impl CreationJournal for LedgerJournal {
    fn begin(&self, collection: &str) -> Result<(), String> {
        self.0
            .begin_collection(collection)
            .map_err(|e| e.to_string())
    }
    fn begun(&self, collection: &str) -> Result<bool, String> {
        self.0
            .collection_begun(collection)
            .map_err(|e| e.to_string())
    }
    fn end(&self, collection: &str) -> Result<(), String> {
        self.0.end_collection(collection).map_err(|e| e.to_string())
    }
}

impl App {
    /// Create the state directory, take its lock, open the ledger and the store.
    pub fn open(config: Config) -> Result<Self, AppError> {
        Self::open_with(config, None)
    }

    /// [`App::open`] with a given vector store instead of the configured one
    /// (tests wrap the real store to observe it).
    pub fn open_with(
        config: Config,
        store: Option<Arc<dyn VectorStore>>,
    ) -> Result<Self, AppError> {
        let dir = config.state_dir.clone();
        let io = |source| AppError::StateDir {
            path: dir.clone(),
            source,
        };
        create_private_dir(&dir).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("ragd.lock"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(AppError::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let ledger = Arc::new(Ledger::open(&dir.join("ledger.sqlite"))?);
        let instance = instance_id(&dir).map_err(io)?;
        for (service, url) in config.keys_in_clear() {
            crate::http::warn_key_in_clear(service, url);
        }
        let store: Arc<dyn VectorStore> = match (store, &config.qdrant) {
            (Some(s), _) => s,
            (
                None,
                QdrantSettings::Embedded {
                    path,
                    vacuum_min_dead,
                },
            ) => Arc::new(EdgeStore::open_tuned(
                path,
                EdgeTuning::with_vacuum_min_dead(*vacuum_min_dead),
            )?),
            (
                None,
                QdrantSettings::Server {
                    url,
                    api_key,
                    options,
                    ..
                },
            ) => {
                let options = ServerOptions {
                    adoptable: ledger.written_collections()?,
                    instance: Some(instance.clone()),
                    ..options.clone()
                };
                Arc::new(
                    QdrantStore::connect(
                        url,
                        api_key.as_ref().map(|k| k.expose().to_owned()),
                        &options,
                    )?
                    .with_journal(Arc::new(LedgerJournal(ledger.clone()))),
                )
            }
        };
        // Transient store failures (server restarts, timeouts whose write did
        // apply) are retried: every store write is idempotent by contract.
        let retry = match &config.qdrant {
            QdrantSettings::Server { retry, .. } => *retry,
            // Embedded: nothing restarts under ragd; only a full disk or the
            // like is transient, and briefly.
            QdrantSettings::Embedded { .. } => Duration::from_secs(10),
        };
        let store: Arc<dyn VectorStore> = Arc::new(Layered::new(
            store,
            Retry::new(retry, Duration::from_millis(200)),
        ));
        Ok(App {
            config,
            ledger,
            store,
            instance,
            local: OnceLock::new(),
            open_webui: OnceLock::new(),
            _lock: lock,
        })
    }

    /// Take a reloaded config. The clients it configures are made again when
    /// their settings changed (a rotated key, another url, another model), so
    /// nothing built from the old config goes on being used.
    pub fn reconfigure(&mut self, config: Config) {
        // Said again only for what the reload changed, as at start.
        let before = self.config.keys_in_clear();
        for (service, url) in config.keys_in_clear() {
            if !before.contains(&(service, url)) {
                crate::http::warn_key_in_clear(service, url);
            }
        }
        if config.open_webui != self.config.open_webui
            || config.tls_ca_file != self.config.tls_ca_file
        {
            self.open_webui = OnceLock::new();
        }
        if config.embedding != self.config.embedding {
            self.local = OnceLock::new();
        }
        self.config = config;
    }

    /// The pipelines to run: all, or the one named.
    pub fn select(&self, name: Option<&str>) -> Result<Vec<&PipelineConfig>, AppError> {
        match name {
            None => Ok(self.config.pipelines.iter().collect()),
            Some(n) => self
                .config
                .pipeline(n)
                .map(|p| vec![p])
                .ok_or_else(|| AppError::NoSuchPipeline(n.to_owned())),
        }
    }

    /// Build a runnable pipeline (loads its tokenizer, sets up its embedder).
    pub fn pipeline(&self, config: &PipelineConfig) -> Result<Pipeline, AppError> {
        let fail = |message: String| AppError::Pipeline {
            pipeline: config.name.clone(),
            message,
        };
        let unit = match &config.chunking.unit {
            ChunkUnit::Characters => SizeUnit::Characters,
            ChunkUnit::Tokens { tokenizer } => {
                SizeUnit::Tokens(load_tokenizer(tokenizer).map_err(|e| fail(e.to_string()))?)
            }
        };
        let chunker = Chunker::new(ChunkSettings {
            max_size: config.chunking.max_size,
            overlap: config.chunking.overlap,
            unit,
            markdown: config.chunking.markdown,
        })
        .map_err(|e| fail(e.to_string()))?;
        let embedder = self
            .embedder(&config.model, config.batch_size)
            .map_err(fail)?;
        Ok(Pipeline {
            config: Arc::new(config.clone()),
            limits: self.config.limits.clone(),
            chunker: Arc::new(chunker),
            embedder,
            store: self.store.clone(),
            ledger: self.ledger.clone(),
            embed_concurrency: self.config.embedding.concurrency,
            publisher: self.publisher(config).map_err(fail)?,
            external: self.external(config).map_err(fail)?,
            shares_collection: self
                .config
                .pipelines
                .iter()
                .any(|p| p.name != config.name && p.collection == config.collection),
        })
    }

    /// The one Open WebUI client, made on first use.
    fn open_webui_client(&self, settings: &OpenWebUiSettings) -> Result<Arc<OpenWebUi>, String> {
        if let Some(c) = self.open_webui.get() {
            return Ok(c.clone());
        }
        let c = OpenWebUi::with_http(
            &settings.url,
            settings.api_key.expose().to_owned(),
            settings.request_timeout,
            &self.config.http(),
        )
        .map_err(|e| e.to_string())?;
        Ok(self.open_webui.get_or_init(|| Arc::new(c)).clone())
    }

    /// The external knowledge base of a pipeline in `external` (or `both`) mode.
    fn external(&self, config: &PipelineConfig) -> Result<Option<Arc<ExternalPublisher>>, String> {
        let (Some(target), Some(settings)) = (&config.external, &self.config.open_webui) else {
            return Ok(None);
        };
        let api_key = match &self.config.qdrant {
            QdrantSettings::Server { api_key, .. } => {
                api_key.as_ref().map(|k| k.expose().to_owned())
            }
            QdrantSettings::Embedded { .. } => None,
        };
        Ok(Some(Arc::new(ExternalPublisher::new(
            self.open_webui_client(settings)?,
            target.clone(),
            config.collection.clone(),
            api_key,
            config.kb_access.clone(),
        ))))
    }

    /// The knowledge-base publisher of a pipeline that names one.
    fn publisher(&self, config: &PipelineConfig) -> Result<Option<Arc<Publisher>>, String> {
        let (Some(target), Some(settings)) = (&config.knowledge, &self.config.open_webui) else {
            return Ok(None);
        };
        let client = self.open_webui_client(settings)?;
        Ok(Some(Arc::new(Publisher::new(
            client,
            target.clone(),
            Some(self.instance.clone()),
            settings.concurrency,
            settings.process_timeout,
            settings.verify_interval,
            settings.publish_slice,
        ))))
    }

    fn embedder(&self, model: &str, batch: usize) -> Result<Arc<dyn Embedder>, String> {
        let e = &self.config.embedding;
        if e.provider == EmbedProvider::Local {
            let local = match self.local.get() {
                Some(l) => l.clone(),
                None => {
                    let dir = e
                        .model_dir
                        .as_deref()
                        .ok_or("provider \"local\" without model_dir")?;
                    let loaded = LocalEmbedder::load(dir, model.to_owned()).map_err(|err| {
                        format!("{err} (get a model with scripts/fetch-model.sh)")
                    })?;
                    self.local.get_or_init(|| Arc::new(loaded)).clone()
                }
            };
            return Ok(local);
        }
        let settings = OllamaSettings {
            url: e.url.clone(),
            via_open_webui: e.provider == EmbedProvider::OpenWebUi,
            api_key: e.api_key.as_ref().map(|k| k.expose().to_owned()),
            model: model.to_owned(),
            timeout: e.timeout,
            max_retries: e.max_retries,
            max_batch: batch,
            ca_file: self.config.tls_ca_file.clone(),
        };
        Ok(Arc::new(
            OllamaEmbedder::new(settings).map_err(|e| e.to_string())?,
        ))
    }
}

/// Create the state directory (and its parents) readable by ragd's user only,
/// and take group and other access away from one that exists: the ledger and
/// the embedded Qdrant hold the full text of every chunk indexed.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %dir.display(), mode = format!("{:o}", mode & 0o777),
                "state directory was open to other users; restricting it to 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// This installation's id: `<state_dir>/instance`, made once (a random UUID)
/// and kept. It tells this installation's collections on a shared Qdrant
/// server from another's with the same pipeline names.
pub fn instance_id(state_dir: &std::path::Path) -> std::io::Result<String> {
    let path = state_dir.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(text) if is_instance_id(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold an instance id", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    // Written whole or not at all: a torn file would give a new id next time.
    let tmp = state_dir.join("instance.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

fn is_instance_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = instance_id(dir.path()).unwrap();
        assert!(is_instance_id(&first));
        assert_eq!(instance_id(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("instance"), "garbage").unwrap();
        assert!(instance_id(dir.path()).is_err());
    }

    /// A config with an `[open_webui]` key and a pipeline publishing through it.
    fn config_with_key(dir: &std::path::Path, key: &str) -> Config {
        std::fs::create_dir_all(dir.join("pipelines")).unwrap();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(
            dir.join("ragd.toml"),
            format!(
                "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
                 [embedding]\nurl = \"http://127.0.0.1:9\"\n\
                 [open_webui]\nurl = \"http://127.0.0.1:9\"\napi_key = \"{key}\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("pipelines/docs.toml"),
            "sources = [\"../docs\"]\n[embedding]\nmodel = \"m\"\n[knowledge]\nname = \"K\"\n",
        )
        .unwrap();
        crate::config::load(&dir.join("ragd.toml")).unwrap()
    }

    /// A reload with a rotated key makes the Open WebUI client anew; one that
    /// changes nothing about it keeps the client (and its connections).
    #[test]
    fn a_reload_rebuilds_the_clients_whose_settings_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = App::open(config_with_key(dir.path(), "sk-old")).unwrap();
        let pc = app.config.pipelines[0].clone();
        app.publisher(&pc).unwrap();
        let first = app.open_webui.get().cloned().expect("client made");

        app.reconfigure(config_with_key(dir.path(), "sk-old"));
        app.publisher(&pc).unwrap();
        assert!(Arc::ptr_eq(&first, app.open_webui.get().unwrap()));

        app.reconfigure(config_with_key(dir.path(), "sk-new"));
        assert!(app.open_webui.get().is_none(), "the old client is gone");
        app.publisher(&pc).unwrap();
        assert!(!Arc::ptr_eq(&first, app.open_webui.get().unwrap()));
    }
}
