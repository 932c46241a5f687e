//! `[knowledge] mode = "external"`: instead of uploading files for Open WebUI to
//! extract and embed again, ragd registers an external knowledge base that searches
//! the pipeline's collection alias on the Qdrant server, and keeps it registered.
//!
//! Every sync checks (two listings) and repairs, idempotently, found by name:
//! - the connection `ragd: <base name>` (provider `qdrant`, endpoint
//!   `qdrant_url_for_openwebui`, ragd's Qdrant API key), created or corrected;
//! - the base (`meta.source = "external"`) searching the alias with ragd's payload
//!   fields, created, or pointed back at the alias through the same connection.
//!
//! The source is the *alias*, never a versioned collection: a reindex builds
//! `C_v<N+1>` behind it and switches atomically, so Open WebUI answers from the
//! old collection during the build and from the new one after, without a change
//! on its side. The first sync of a process also gives points written by an older
//! ragd their citation metadata ([`VectorStore::add_citations`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::ExternalKnowledge;
use crate::open_webui::access::{AccessError, AccessRule, keep_access};
use crate::open_webui::external::{ExternalBase, ExternalConnection};
use crate::open_webui::{OpenWebUi, OwuiError};
use crate::store::{StoreError, VectorStore};

/// Why the external base could not be kept registered.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("external knowledge base {name:?}: {source} (external knowledge needs an admin key)")]
    OpenWebUi {
        name: String,
        #[source]
        source: OwuiError,
    },
    #[error("external knowledge base {name:?}: {source}")]
    Access {
        name: String,
        #[source]
        source: AccessError,
    },
    #[error("external knowledge base {name:?}: adding citation metadata to older points: {source}")]
    Store {
        name: String,
        #[source]
        source: StoreError,
    },
}

/// What one sync of the external base did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalSummary {
    pub base_id: String,
    pub connection_id: String,
    /// The connection or the base was created.
    pub created: bool,
    /// The connection or the base was corrected (endpoint, key, collection, fields).
    pub repaired: bool,
    /// Older points given their citation metadata.
    pub citations_added: u64,
    /// The base's access was changed to match `[knowledge] access`.
    pub access_updated: bool,
}

/// Keeps one pipeline's external knowledge base registered.
pub struct ExternalPublisher {
    client: Arc<OpenWebUi>,
    target: ExternalKnowledge,
    /// The pipeline's collection name: the alias on the server.
    collection: String,
    /// ragd's Qdrant API key, handed to Open WebUI for the same server.
    qdrant_api_key: Option<String>,
    /// `[knowledge] access`: kept on the base as on a files-mode base.
    access: Option<Vec<AccessRule>>,
    /// Older points were given citations by this process.
    citations_done: AtomicBool,
}

impl ExternalPublisher {
    pub fn new(
        client: Arc<OpenWebUi>,
        target: ExternalKnowledge,
        collection: String,
        qdrant_api_key: Option<String>,
        access: Option<Vec<AccessRule>>,
    ) -> Self {
        ExternalPublisher {
            client,
            target,
            collection,
            qdrant_api_key,
            access,
            citations_done: AtomicBool::new(false),
        }
    }

    /// The connection's name: one per base, so pipelines never share one.
    pub fn connection_name(&self) -> String {
        format!("ragd: {}", self.target.name)
    }

    /// Make sure the base exists and searches the alias. Idempotent: a second
    /// call with nothing changed makes only the two listings.
    pub async fn sync(&self, store: &dyn VectorStore) -> Result<ExternalSummary, ExternalError> {
        let mut summary = ExternalSummary::default();
        if !self.citations_done.load(Ordering::Relaxed) {
            summary.citations_added = match store.add_citations(&self.collection).await {
                Ok(n) => n,
                // Nothing indexed yet: nothing to upgrade.
                Err(StoreError::NoSuchCollection(_)) => 0,
                Err(source) => {
                    return Err(ExternalError::Store {
                        name: self.target.name.clone(),
                        source,
                    });
                }
            };
            self.citations_done.store(true, Ordering::Relaxed);
            if summary.citations_added > 0 {
                tracing::info!(collection = %self.collection, points = summary.citations_added,
                    "gave older points their citation metadata");
            }
        }
        let owui = |source| ExternalError::OpenWebUi {
            name: self.target.name.clone(),
            source,
        };
        let connection = self.connection(&mut summary).await.map_err(owui)?;
        let base = self.base(&connection, &mut summary).await.map_err(owui)?;
        // The same grants as a files-mode base, by the same idempotent call:
        // who may chat with the base is who may read the folder's text.
        if let Some(rules) = &self.access {
            summary.access_updated =
                keep_access(&self.client, &base.id, rules)
                    .await
                    .map_err(|source| ExternalError::Access {
                        name: self.target.name.clone(),
                        source,
                    })?;
        }
        summary.connection_id = connection.id;
        summary.base_id = base.id;
        Ok(summary)
    }

    async fn connection(
        &self,
        summary: &mut ExternalSummary,
    ) -> Result<ExternalConnection, OwuiError> {
        let name = self.connection_name();
        let endpoint = &self.target.qdrant_url;
        let key = self.qdrant_api_key.as_deref();
        let found = self
            .client
            .external_connections()
            .await?
            .into_iter()
            .find(|c| c.name == name);
        match found {
            None => {
                summary.created = true;
                tracing::info!(connection = %name, endpoint = %endpoint, "creating the external knowledge connection");
                self.client
                    .create_external_connection(&name, endpoint, key)
                    .await
            }
            Some(c)
                if c.provider == "qdrant"
                    && c.endpoint == *endpoint
                    && c.enabled
                    && c.auth_configured == key.is_some() =>
            {
                Ok(c)
            }
            Some(c) => {
                summary.repaired = true;
                tracing::info!(connection = %name, endpoint = %endpoint, "correcting the external knowledge connection");
                self.client
                    .update_external_connection(&c.id, &name, endpoint, key)
                    .await
            }
        }
    }

    async fn base(
        &self,
        connection: &ExternalConnection,
        summary: &mut ExternalSummary,
    ) -> Result<ExternalBase, OwuiError> {
        let t = &self.target;
        let mut matching: Vec<ExternalBase> = self
            .client
            .external_bases()
            .await?
            .into_iter()
            .filter(|b| b.name == t.name)
            .collect();
        matching.sort_by_key(|b| (b.created_at, b.id.clone()));
        match matching.into_iter().next() {
            None => {
                summary.created = true;
                tracing::info!(base = %t.name, collection = %self.collection, "creating the external knowledge base");
                self.client
                    .create_external_base(&t.name, &t.description, &connection.id, &self.collection)
                    .await
            }
            Some(b) if b.searches(&connection.id, &self.collection) => Ok(b),
            Some(b) => {
                summary.repaired = true;
                tracing::info!(base = %t.name, collection = %self.collection,
                    "pointing the external knowledge base back at the collection");
                // The server tests the source with this query and refuses an empty
                // collection; the next sync tries again.
                self.client
                    .update_external_base(
                        &b.id,
                        &t.name,
                        &t.description,
                        (
                            &connection.name,
                            &t.qdrant_url,
                            self.qdrant_api_key.as_deref(),
                        ),
                        &self.collection,
                        &t.name,
                    )
                    .await
            }
        }
    }
}
