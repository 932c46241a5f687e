//! The project's embedding server, started for a test.

use std::time::Duration;

use ragd::embed::server::{self, EmbedServerConfig, EmbedServerHandle};
use ragd::embed::{OllamaEmbedder, OllamaSettings};

/// The model name the test server serves (as `hash-embed:latest`).
pub const MODEL: &str = "hash-embed";

/// Starts the embedding server on a free loopback port with one model, [`MODEL`], of
/// dimension `dim`, no delay and no batch limit. Dropping the handle stops it.
pub async fn start_embed_server(dim: usize) -> EmbedServerHandle {
    server::spawn(
        EmbedServerConfig::single(MODEL, dim),
        "127.0.0.1:0".parse().expect("loopback address"),
    )
    .await
    .expect("start the embedding server")
}

/// A direct-mode client for `server` and [`MODEL`], with a generous timeout (the
/// machine may be loaded) and millisecond backoff so retries do not slow tests.
pub fn direct_embedder(server: &EmbedServerHandle) -> OllamaEmbedder {
    let mut settings = OllamaSettings::direct(server.url(), MODEL);
    settings.timeout = Duration::from_secs(60);
    settings.max_retries = 3;
    OllamaEmbedder::new(settings)
        .expect("build the embedder")
        .with_backoff(Duration::from_millis(1), Duration::from_millis(10))
}
