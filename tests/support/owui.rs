//! Shared by the Open WebUI test groups: where the real server is, a client with
//! test-friendly retries, names no earlier run against it used, and a knowledge
//! base's files by ragd path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ragd::ledger::KbRecord;
use ragd::open_webui::{FileInfo, OpenWebUi, RetryPolicy};
use serde_json::{Value, json};

use crate::support::env::TestEnv;

/// The real server from `scripts/openwebui-up.sh`; `None` only when it is not
/// required (see [`crate::support::real`]).
pub fn real_server() -> Option<(String, String)> {
    crate::support::real::open_webui()
}

/// A client with short backoffs and a generous timeout (a loaded machine).
pub fn client(url: &str, key: &str) -> OpenWebUi {
    OpenWebUi::new(url, key.to_owned(), Duration::from_secs(60))
        .expect("valid client config")
        .with_retry(RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(300),
        })
}

/// A name no earlier run against the same real server used.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The knowledge base's files by their ragd path (see [`listing_of`]).
pub async fn listing(c: &OpenWebUi, env: &TestEnv) -> BTreeMap<String, Vec<FileInfo>> {
    let rows = env.app().ledger.kb_files("docs").unwrap();
    listing_of(c, &knowledge_id(env).await, &rows).await
}

/// Each listed path with how many entries it has, in path order.
pub fn entry_counts(listed: &BTreeMap<String, Vec<FileInfo>>) -> Vec<(&str, usize)> {
    listed.iter().map(|(p, f)| (p.as_str(), f.len())).collect()
}

/// The id of `env`'s knowledge base (found or created by name).
pub async fn knowledge_id(env: &TestEnv) -> String {
    let app = env.app();
    let publisher = env.pipeline(&app).publisher.clone().unwrap();
    drop(app);
    publisher.knowledge_id().await.unwrap()
}

/// The files of the knowledge base `kb` (by id) by ragd path: a file a row
/// records under that row's path (a moved file's marker keeps its old path),
/// or `wrong text: PATH` if its marker's text is not the row's; one no row
/// records under its marker's path; files without a marker under their file
/// name, prefixed `hand:`.
pub async fn listing_of(
    c: &OpenWebUi,
    kb: &str,
    rows: &HashMap<String, KbRecord>,
) -> BTreeMap<String, Vec<FileInfo>> {
    let by_id: HashMap<&str, &KbRecord> = rows
        .values()
        .filter_map(|r| r.file_id.as_deref().map(|id| (id, r)))
        .collect();
    let mut out: BTreeMap<String, Vec<FileInfo>> = BTreeMap::new();
    for f in c.knowledge_files(kb).await.unwrap() {
        let marker = f.metadata.get("ragd");
        let field = |k: &str| marker.and_then(|m| m.get(k)).and_then(|v| v.as_str());
        let key = match (by_id.get(f.id.as_str()), field("path")) {
            (Some(r), _) if field("content_hash") == Some(r.content_hash.as_str()) => {
                r.path.clone()
            }
            (Some(r), _) => format!("wrong text: {}", r.path),
            (None, Some(p)) => p.to_owned(),
            (None, None) => format!("hand:{}", f.filename),
        };
        out.entry(key).or_default().push(f);
    }
    out
}

/// Each linked file's place in the knowledge base (`dir/name`) → its file id.
pub async fn places(c: &OpenWebUi, kb: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in c.knowledge_files(kb).await.unwrap() {
        let dir = f.directory_path.clone().unwrap_or_default();
        let place = if dir.is_empty() {
            f.filename.clone()
        } else {
            format!("{dir}/{}", f.filename)
        };
        assert!(
            out.insert(place.clone(), f.id).is_none(),
            "two files at {place}"
        );
    }
    out
}

// ---- users, groups and grants (`[knowledge] access`) ----------------------------

/// `POST path` with the admin key, the answer's JSON.
pub async fn admin_post(url: &str, key: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/{path}", url.trim_end_matches('/')))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// A new account and a new group, by the admin routes; their ids.
pub async fn principals(url: &str, key: &str, tag: &str) -> (String, String) {
    let user = admin_post(
        url,
        key,
        "api/v1/auths/add",
        json!({"name": format!("Ana {tag}"), "email": format!("ana-{tag}@example.com"),
               "password": "Correct-horse-9", "role": "user"}),
    )
    .await;
    let group = admin_post(
        url,
        key,
        "api/v1/groups/create",
        json!({"name": format!("staff-{tag}"), "description": "ragd access test"}),
    )
    .await;
    (
        user["id"].as_str().unwrap().to_owned(),
        group["id"].as_str().unwrap().to_owned(),
    )
}

/// The base's grants as (principal type, principal id, permission).
pub async fn grants(c: &OpenWebUi, kb: &str) -> BTreeSet<(String, String, String)> {
    c.get_knowledge(kb)
        .await
        .unwrap()
        .access_grants
        .into_iter()
        .map(|g| (g.principal_type, g.principal_id, g.permission))
        .collect()
}

pub fn grant(t: &str, id: &str, p: &str) -> (String, String, String) {
    (t.to_owned(), id.to_owned(), p.to_owned())
}

// ---- the chat path, without a language model ------------------------------------

/// The id of a pipe function on the server that answers a chat with what it
/// was given, as JSON: the messages (the retrieved context in them) and the
/// chat's `sources` (what the UI shows as citations), with no language model
/// anywhere. Made, kept current and switched on idempotently (admin routes),
/// and the model list refreshed.
pub async fn echo_model(url: &str, key: &str) -> String {
    const ID: &str = "ragd_test_echo";
    const CODE: &str = "\"\"\"\ntitle: ragd test echo\n\"\"\"\nimport json\n\n\
        class Pipe:\n    def pipe(self, body: dict, __metadata__: dict = None):\n        \
        return json.dumps({\"messages\": body.get(\"messages\", []), \
        \"sources\": (__metadata__ or {}).get(\"sources\") or []}, default=str)\n";
    let http = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    let found = http
        .get(format!("{base}/api/v1/functions/id/{ID}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let form = json!({"id": ID, "name": "ragd test echo", "content": CODE,
                      "meta": {"description": "echoes what a chat gives the model (ragd tests)"}});
    let active = if found.status().is_success() {
        let function: Value = found.json().await.unwrap();
        if function["content"] != json!(CODE) {
            admin_post(url, key, &format!("api/v1/functions/id/{ID}/update"), form).await;
        }
        function["is_active"] == json!(true)
    } else {
        admin_post(url, key, "api/v1/functions/create", form).await;
        false
    };
    if !active {
        admin_post(
            url,
            key,
            &format!("api/v1/functions/id/{ID}/toggle"),
            json!({}),
        )
        .await;
    }
    // The chat looks models up in the list the server last built.
    let models: Value = http
        .get(format!("{base}/api/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == json!(ID))),
        "the echo pipe is not among the models: {models}"
    );
    ID.to_owned()
}

/// What Open WebUI's chat (`POST /api/chat/completions`) gives the model for
/// `question` with the knowledge base `kb` attached, through [`echo_model`].
pub struct ChatContext {
    /// The messages' text, the retrieved context in them.
    pub text: String,
    /// The metadata of every retrieved chunk the chat cites.
    pub citations: Vec<Value>,
}

pub async fn chat_context(url: &str, key: &str, kb: &str, question: &str) -> ChatContext {
    let model = echo_model(url, key).await;
    let answer = admin_post(
        url,
        key,
        "api/chat/completions",
        json!({
            "model": model,
            "stream": false,
            "messages": [{"role": "user", "content": question}],
            "files": [{"type": "collection", "id": kb}],
        }),
    )
    .await;
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {answer}"));
    let echoed: Value = serde_json::from_str(content).unwrap();
    let text = echoed["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let citations = echoed["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["metadata"].as_array().cloned().unwrap_or_default())
        .collect();
    ChatContext { text, citations }
}
