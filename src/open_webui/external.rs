//! Open WebUI's external knowledge (0.12, marked experimental upstream): a knowledge
//! base that searches a vector collection Open WebUI does not own, here the
//! pipeline's Qdrant collection, so nothing is uploaded, extracted or embedded twice.
//!
//! Shapes read in 0.12.4's `routers/knowledge.py` (`/api/v1/knowledge/external/…`,
//! admin only) and `retrieval/external.py`: a *connection* (provider `qdrant`, the
//! REST endpoint as Open WebUI reaches it, `auth_config.api_key`) is kept in the
//! server's config, a knowledge base with `meta.source = "external"` names the
//! connection and the collection. A question is embedded by Open WebUI's own RAG
//! embedding function (with `RAG_EMBEDDING_QUERY_PREFIX`), searched with
//! `query_points` and no filter; the text is read from [`CONTENT_FIELD`] and the
//! citation from [`METADATA_FIELD`].

use serde::Deserialize;
use serde_json::{Value, json};

use super::OwuiError;
use super::client::{OpenWebUi, Retry, decode, seg};

/// Where Open WebUI reads a point's text: ragd's payload `text`.
pub const CONTENT_FIELD: &str = "payload.text";
/// Where Open WebUI reads a point's citation: ragd's payload `metadata`
/// ([`crate::store::PointPayload::citation`]).
pub const METADATA_FIELD: &str = "payload.metadata";

/// An external knowledge connection as the server lists it (its key is never sent
/// back, only whether one is set).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExternalConnection {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub auth_configured: bool,
}

const fn yes() -> bool {
    true
}

/// An external knowledge base: which connection and collection it searches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalBase {
    pub id: String,
    pub name: String,
    pub created_at: Option<i64>,
    pub connection_id: Option<String>,
    /// The source collection (ragd: the pipeline's alias).
    pub collection: Option<String>,
    pub content_field: Option<String>,
    pub metadata_field: Option<String>,
}

impl ExternalBase {
    /// Whether it searches `collection` through `connection_id` with ragd's fields.
    pub fn searches(&self, connection_id: &str, collection: &str) -> bool {
        self.connection_id.as_deref() == Some(connection_id)
            && self.collection.as_deref() == Some(collection)
            && self.content_field.as_deref() == Some(CONTENT_FIELD)
            && self.metadata_field.as_deref() == Some(METADATA_FIELD)
    }
}

#[derive(Deserialize)]
struct RawBase {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    meta: Option<Value>,
}

impl RawBase {
    /// `None` unless it is an external base.
    fn into_external(self) -> Option<ExternalBase> {
        let meta = self.meta?;
        if meta.get("source").and_then(Value::as_str) != Some("external") {
            return None;
        }
        let ext = meta.get("external");
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let source = ext.and_then(|e| e.get("source"));
        let config = source.and_then(|s| s.get("config"));
        Some(ExternalBase {
            id: self.id,
            name: self.name,
            created_at: self.created_at,
            connection_id: text(ext.and_then(|e| e.get("connection_id"))),
            collection: text(source.and_then(|s| s.get("name"))),
            content_field: text(config.and_then(|c| c.get("content_field"))),
            metadata_field: text(config.and_then(|c| c.get("metadata_field"))),
        })
    }
}

/// What a retrieval answered, best first.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Retrieved {
    #[serde(default)]
    pub documents: Vec<String>,
    /// Each hit's citation as Open WebUI shows it (`name`, `source`, `page`, … plus
    /// `document_id`: the point id).
    #[serde(default)]
    pub metadatas: Vec<Value>,
    /// The search score (Qdrant's cosine similarity).
    #[serde(default)]
    pub distances: Vec<Option<f64>>,
}

/// Open WebUI's RAG embedding settings (`GET /api/v1/retrieval/embedding`, admin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RagEmbedding {
    /// `""` (its built-in sentence-transformers), `ollama`, `openai`, `azure_openai`.
    pub engine: String,
    pub model: String,
    /// Texts per embedding request while Open WebUI processes a file (default 1).
    pub batch_size: Option<u64>,
    /// The Ollama URL the RAG embedding goes to, when the engine is `ollama`.
    pub ollama_url: Option<String>,
}

/// The body naming a collection source with ragd's fields.
fn source_form(collection: &str) -> Value {
    json!({
        "type": "collection",
        "name": collection,
        "config": { "content_field": CONTENT_FIELD, "metadata_field": METADATA_FIELD },
    })
}

/// The body of a connection: provider `qdrant`, `endpoint`, and always an
/// `auth_config` (the server keeps the stored one when it is left out, so `{}`
/// is what removes a key that is no longer configured).
fn connection_form(name: &str, endpoint: &str, api_key: Option<&str>) -> Value {
    let auth = match api_key {
        Some(key) => json!({ "api_key": key }),
        None => json!({}),
    };
    json!({ "name": name, "provider": "qdrant", "endpoint": endpoint, "enabled": true, "auth_config": auth })
}

impl OpenWebUi {
    /// `GET /api/v1/knowledge/external/connections`.
    pub async fn external_connections(&self) -> Result<Vec<ExternalConnection>, OwuiError> {
        #[derive(Deserialize)]
        struct List {
            items: Vec<ExternalConnection>,
        }
        self.get_json::<List>(
            "list external connections",
            "api/v1/knowledge/external/connections",
            &[],
        )
        .await
        .map(|l| l.items)
    }

    /// `POST /api/v1/knowledge/external/connections`. Not idempotent (names are not
    /// unique): sent once, a lost answer is found by name on the next sync.
    pub async fn create_external_connection(
        &self,
        name: &str,
        endpoint: &str,
        api_key: Option<&str>,
    ) -> Result<ExternalConnection, OwuiError> {
        let url = self.url("api/v1/knowledge/external/connections")?;
        let body = connection_form(name, endpoint, api_key);
        let bytes = self
            .send(Retry::IfNotApplied, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        decode("create external connection", &bytes)
    }

    /// `PATCH /api/v1/knowledge/external/connections/{id}`. Idempotent.
    pub async fn update_external_connection(
        &self,
        id: &str,
        name: &str,
        endpoint: &str,
        api_key: Option<&str>,
    ) -> Result<ExternalConnection, OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/external/connections/{}",
            seg(id)
        ))?;
        let body = connection_form(name, endpoint, api_key);
        let bytes = self
            .send(Retry::Always, false, || {
                self.http.patch(url.clone()).json(&body)
            })
            .await?;
        decode("update external connection", &bytes)
    }

    /// `DELETE /api/v1/knowledge/external/connections/{id}` (refused while a base
    /// uses it). ragd never deletes one; tests do.
    pub async fn delete_external_connection(&self, id: &str) -> Result<(), OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/external/connections/{}",
            seg(id)
        ))?;
        self.send(Retry::Always, true, || self.http.delete(url.clone()))
            .await
            .map(drop)
    }

    /// Every external knowledge base the key's user sees.
    pub async fn external_bases(&self) -> Result<Vec<ExternalBase>, OwuiError> {
        // `/knowledge/search?source=external` filters on the server, but the plain
        // listing is the one every version has.
        let raw: Vec<RawBase> = self
            .paginate("list knowledge", "api/v1/knowledge/", &[])
            .await?;
        Ok(raw.into_iter().filter_map(RawBase::into_external).collect())
    }

    /// `POST /api/v1/knowledge/external/knowledge/create`: a base searching
    /// `collection` through the connection. Needs no test query, so an empty
    /// collection can be registered. Not idempotent: found by name before.
    pub async fn create_external_base(
        &self,
        name: &str,
        description: &str,
        connection_id: &str,
        collection: &str,
    ) -> Result<ExternalBase, OwuiError> {
        let url = self.url("api/v1/knowledge/external/knowledge/create")?;
        let body = json!({
            "name": name,
            "description": description,
            "connection_id": connection_id,
            "source": source_form(collection),
        });
        let bytes = self
            .send(Retry::IfNotApplied, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        decode::<RawBase>("create external knowledge", &bytes)?
            .into_external()
            .ok_or_else(|| OwuiError::UnexpectedResponse {
                operation: "create external knowledge",
                detail: "the answer is not an external knowledge base".into(),
            })
    }

    /// `PATCH /api/v1/knowledge/external/source/{id}`: point an existing base at
    /// `collection` through the connection (its id is kept, so chats that use it
    /// keep working). The server runs `test_query` first and refuses (400 "Test
    /// query returned no results.") while the collection is empty.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_external_base(
        &self,
        id: &str,
        name: &str,
        description: &str,
        connection: (&str, &str, Option<&str>),
        collection: &str,
        test_query: &str,
    ) -> Result<ExternalBase, OwuiError> {
        let url = self.url(&format!("api/v1/knowledge/external/source/{}", seg(id)))?;
        let (conn_name, endpoint, api_key) = connection;
        let body = json!({
            "name": name,
            "description": description,
            "connection": connection_form(conn_name, endpoint, api_key),
            "source": source_form(collection),
            "test_query": test_query,
        });
        let bytes = self
            .send(Retry::Always, false, || {
                self.http.patch(url.clone()).json(&body)
            })
            .await?;
        decode::<RawBase>("update external knowledge", &bytes)?
            .into_external()
            .ok_or_else(|| OwuiError::UnexpectedResponse {
                operation: "update external knowledge",
                detail: "the answer is not an external knowledge base".into(),
            })
    }

    /// `POST /api/v1/knowledge/external/connections/{id}/retrieve-test`: what a chat
    /// with the base would retrieve for `query` (Open WebUI embeds it itself).
    pub async fn retrieve_external(
        &self,
        connection_id: &str,
        collection: &str,
        query: &str,
        count: usize,
    ) -> Result<Retrieved, OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/external/connections/{}/retrieve-test",
            seg(connection_id)
        ))?;
        let body = json!({ "query": query, "source": source_form(collection), "count": count });
        let bytes = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        decode("retrieve external knowledge", &bytes)
    }

    /// `POST /api/v1/knowledge/external/source/test`: [`Self::retrieve_external`]
    /// through a connection given inline, which the server does not store (what
    /// `ragd doctor` uses: it changes nothing).
    pub async fn test_external_source(
        &self,
        endpoint: &str,
        api_key: Option<&str>,
        collection: &str,
        query: &str,
        count: usize,
    ) -> Result<Retrieved, OwuiError> {
        let url = self.url("api/v1/knowledge/external/source/test")?;
        let body = json!({
            "connection": connection_form("ragd doctor", endpoint, api_key),
            "source": source_form(collection),
            "query": query,
            "count": count,
        });
        let bytes = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        decode("test external source", &bytes)
    }

    /// `GET /api/v1/retrieval/embedding` (admin): how Open WebUI embeds.
    pub async fn rag_embedding(&self) -> Result<RagEmbedding, OwuiError> {
        let v: Value = self
            .get_json(
                "retrieval embedding config",
                "api/v1/retrieval/embedding",
                &[],
            )
            .await?;
        let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        Ok(RagEmbedding {
            engine: text("RAG_EMBEDDING_ENGINE"),
            model: text("RAG_EMBEDDING_MODEL"),
            batch_size: v.get("RAG_EMBEDDING_BATCH_SIZE").and_then(Value::as_u64),
            ollama_url: v
                .pointer("/ollama_config/url")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_base_is_read_from_its_meta() {
        let raw: RawBase = serde_json::from_value(json!({
            "id": "k1", "name": "Docs", "created_at": 5,
            "meta": {"source": "external", "read_only": true, "external": {
                "connection_id": "c1", "provider": "qdrant",
                "source": {"type": "collection", "name": "docs",
                           "config": {"content_field": CONTENT_FIELD, "metadata_field": METADATA_FIELD}}}}
        }))
        .unwrap();
        let base = raw.into_external().unwrap();
        assert!(base.searches("c1", "docs"));
        assert!(!base.searches("c1", "other"));
        assert!(!base.searches("c2", "docs"));
        let local: RawBase =
            serde_json::from_value(json!({"id": "k2", "name": "Docs", "meta": null})).unwrap();
        assert!(local.into_external().is_none());
    }

    #[test]
    fn a_connection_always_says_which_key_it_has() {
        assert_eq!(
            connection_form("n", "http://q:6333", None)["auth_config"],
            json!({})
        );
        assert_eq!(
            connection_form("n", "http://q:6333", Some("k"))["auth_config"]["api_key"],
            "k"
        );
    }
}
