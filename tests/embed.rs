//! The embedding client against the project's own Ollama-API server, over loopback
//! HTTP: what the pipeline gets back, how failures surface, how batches split.

use std::time::Duration;

use ragd::embed::server::{self, EmbedServerConfig};
use ragd::embed::{EmbedError, Embedder, OllamaEmbedder, OllamaSettings};

use crate::support::embed::{MODEL, direct_embedder, start_embed_server};

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn vectors_have_the_model_dimension_and_are_deterministic() {
    let server = start_embed_server(64).await;
    let embedder = direct_embedder(&server);
    let input = texts(&["alpha beta", "gamma", ""]);

    let first = embedder.embed(&input).await.unwrap();
    let second = embedder.embed(&input).await.unwrap();

    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|v| v.len() == 64));
    assert_eq!(first, second, "the same text must give the same vector");
    assert_eq!(embedder.probe_dimension().await.unwrap(), 64);
    // A fresh server and client agree too: nothing depends on process state.
    let other = start_embed_server(64).await;
    assert_eq!(direct_embedder(&other).embed(&input).await.unwrap(), first);
}

#[tokio::test]
async fn a_query_is_closest_to_the_document_containing_its_words() {
    let server = start_embed_server(384).await;
    let embedder = direct_embedder(&server);
    let v = embedder
        .embed(&texts(&[
            "the quick brown fox",
            "In the story the quick brown fox jumps over the lazy dog.",
            "Invoices are due thirty days after the end of the month.",
        ]))
        .await
        .unwrap();
    let (near, far) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(near > far + 0.3, "near {near}, far {far}");
}

#[tokio::test]
async fn an_unknown_model_is_model_not_found_naming_it() {
    let server = start_embed_server(16).await;
    let embedder =
        OllamaEmbedder::new(OllamaSettings::direct(server.url(), "no-such-model")).unwrap();
    let err = embedder.embed(&texts(&["x"])).await.unwrap_err();
    match &err {
        EmbedError::ModelNotFound { model, .. } => assert_eq!(model, "no-such-model"),
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-model"));
    assert!(!err.is_transient());
    assert_eq!(server.stats().requests, 1, "a missing model is not retried");
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let server = start_embed_server(16).await;
    let embedder = direct_embedder(&server);
    server.fail_next(2, 503);

    let out = embedder.embed(&texts(&["a", "b"])).await.unwrap();

    assert_eq!(out.len(), 2);
    assert_eq!(server.stats().requests, 3);
    assert_eq!(server.stats().texts, 2);
    let client = embedder.stats().snapshot();
    assert_eq!((client.requests, client.retries, client.texts), (3, 2, 2));
}

#[tokio::test]
async fn retries_are_bounded_and_end_transient() {
    let server = start_embed_server(16).await;
    let embedder = direct_embedder(&server); // max_retries 3
    server.fail_next(10, 502);
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(server.stats().requests, 4);
}

#[tokio::test]
async fn a_client_error_is_permanent_without_retry() {
    let server = start_embed_server(16).await;
    let embedder = direct_embedder(&server);
    server.fail_next(1, 400);

    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();

    assert!(
        matches!(&err, EmbedError::Permanent { detail, .. } if detail.contains("injected failure")),
        "{err:?}"
    );
    assert_eq!(server.stats().requests, 1);
}

#[tokio::test]
async fn rejected_credentials_are_unauthorized() {
    let server = start_embed_server(16).await;
    let embedder = direct_embedder(&server);
    server.fail_next(1, 401);
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    assert!(
        matches!(err, EmbedError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn large_inputs_are_split_into_batches() {
    // The server refuses more than 2 inputs, so an unsplit request would fail.
    let config = EmbedServerConfig {
        max_batch: Some(2),
        ..EmbedServerConfig::single(MODEL, 16)
    };
    let server = server::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut settings = OllamaSettings::direct(server.url(), MODEL);
    settings.max_batch = 2;
    let embedder = OllamaEmbedder::new(settings).unwrap();
    let input = texts(&["one", "two", "three", "four", "five"]);

    let out = embedder.embed(&input).await.unwrap();

    assert_eq!(server.stats().requests, 3);
    assert_eq!(server.stats().texts, 5);
    // Order is kept across batches.
    let single = embedder.embed(&texts(&["four"])).await.unwrap();
    assert_eq!(out[3], single[0]);
}

#[tokio::test]
async fn the_delay_is_per_text_and_counted_as_busy_time() {
    let server = start_embed_server(8).await;
    let embedder = direct_embedder(&server);
    server.set_delay(Duration::from_millis(20));
    embedder.embed(&texts(&["a", "b", "c"])).await.unwrap();
    // A lower bound only: a loaded machine can make it longer, never shorter.
    assert!(server.stats().busy >= Duration::from_millis(60));
    assert_eq!(server.stats().in_flight, 0);
}

#[tokio::test]
async fn models_are_listed_with_the_latest_tag() {
    let server = start_embed_server(8).await;
    let models = direct_embedder(&server).list_models().await.unwrap();
    assert_eq!(models, vec!["hash-embed:latest".to_string()]);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let server = start_embed_server(8).await;
    let embedder = {
        let mut s = OllamaSettings::direct(server.url(), MODEL);
        s.max_retries = 0;
        OllamaEmbedder::new(s).unwrap()
    };
    embedder.embed(&texts(&["a"])).await.unwrap();
    server.shutdown().await.unwrap();
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
