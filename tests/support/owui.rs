//! Shared by the Open WebUI test groups: where the real server is, a client with
//! test-friendly retries, names no earlier run against it used, and a knowledge
//! base's files by ragd path.

use std::collections::BTreeMap;
use std::time::Duration;

use ragd::open_webui::{FileInfo, OpenWebUi, RetryPolicy};

use crate::support::env::TestEnv;

/// The real server from `scripts/openwebui-up.sh` (`RAGD_OWUI_URL`, `RAGD_OWUI_KEY`).
pub fn real_server() -> Option<(String, String)> {
    let url = std::env::var("RAGD_OWUI_URL")
        .ok()
        .filter(|v| !v.is_empty())?;
    let key = std::env::var("RAGD_OWUI_KEY")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some((url, key))
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

/// The knowledge base's files by their ragd path (files without a marker under
/// their file name, prefixed `hand:`).
pub async fn listing(c: &OpenWebUi, env: &TestEnv) -> BTreeMap<String, Vec<FileInfo>> {
    listing_of(c, &knowledge_id(env).await).await
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

/// [`listing`] of the knowledge base `kb` (by id), for callers that cannot
/// open the installation (a daemon holds it).
pub async fn listing_of(c: &OpenWebUi, kb: &str) -> BTreeMap<String, Vec<FileInfo>> {
    let mut out: BTreeMap<String, Vec<FileInfo>> = BTreeMap::new();
    for f in c.knowledge_files(kb).await.unwrap() {
        let key = match f
            .metadata
            .get("ragd")
            .and_then(|m| m.get("path"))
            .and_then(|p| p.as_str())
        {
            Some(p) => p.to_owned(),
            None => format!("hand:{}", f.filename),
        };
        out.entry(key).or_default().push(f);
    }
    out
}
