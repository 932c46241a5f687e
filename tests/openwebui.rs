//! Contract tests of the Open WebUI client.
//!
//! Each case is written once over a base URL and key, and runs against the in-process fake
//! always and against a real Open WebUI when `RAGD_OWUI_URL` and `RAGD_OWUI_KEY` are set
//! (`scripts/openwebui-up.sh` starts one and writes them to `$RAGD_CI_DIR/owui.env`);
//! without them the real half prints "skipped: no real Open WebUI". The fault-injection
//! tests at the end need the fake.

use std::time::Duration;

use ragd::open_webui::{FileStatus, OwuiError, ProcessOutcome, ServerVersion};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::fake_openwebui::{FakeOp, Fault, spawn_fake};
use crate::support::owui::{client, real_server, unique};

/// Long enough for a real server's background processing of a small text file.
const PROCESS_WAIT: Duration = Duration::from_secs(60);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Runs `$case(url, key)` as two tests: against the fake, and against the real server.
macro_rules! contract {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test]
            async fn fake() {
                let fake = super::spawn_fake("sk-fake-key").await;
                super::$case(&fake.url, &fake.api_key).await;
            }

            #[tokio::test]
            async fn real() {
                if let Some((url, key)) = super::real_server() {
                    super::$case(&url, &key).await;
                }
            }
        }
    };
}

contract!(version_and_identity, case_version_and_identity);
async fn case_version_and_identity(url: &str, key: &str) {
    let owui = client(url, key);
    assert!(!owui.supports_auto_link(), "unknown before asking");
    let version = owui.version().await.expect("version");
    assert!(version >= ServerVersion::new(0, 12, 0), "{version}");
    assert!(owui.supports_auto_link());
    let me = owui.whoami().await.expect("whoami with an API key");
    assert_eq!(me.role, "admin");
    assert!(!me.id.is_empty());
}

contract!(upload_wait_add_lists_with_metadata, case_upload_wait_add);
async fn case_upload_wait_add(url: &str, key: &str) {
    let owui = client(url, key);
    let name = unique("ragd-contract");
    let kb = owui
        .find_or_create_knowledge_by_name(&name, "contract test")
        .await
        .unwrap();
    let again = owui
        .find_or_create_knowledge_by_name(&name, "contract test")
        .await
        .unwrap();
    assert_eq!(kb.id, again.id, "found, not created twice");
    assert_eq!(owui.get_knowledge(&kb.id).await.unwrap().name, name);

    let bytes = format!("ragd contract text {}\n", unique("body")).into_bytes();
    let marker = json!({"ragd": {"pipeline": "docs", "path": "a/b.txt", "content_hash": "abc"}});
    let uploaded = owui
        .upload_file("b.txt", bytes.clone(), marker.clone(), true)
        .await
        .unwrap();
    assert_eq!(uploaded.filename, "b.txt");
    assert!(
        matches!(
            uploaded.status,
            Some(FileStatus::Pending | FileStatus::Processing | FileStatus::Completed)
        ),
        "{:?}",
        uploaded.status
    );
    assert_eq!(
        uploaded.file_hash.as_deref(),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(uploaded.metadata, marker);

    let outcome = owui
        .wait_processed(&uploaded.id, PROCESS_WAIT)
        .await
        .unwrap();
    assert_eq!(outcome, ProcessOutcome::Completed);
    let linked = owui
        .add_file_to_knowledge(&kb.id, &uploaded.id)
        .await
        .unwrap();
    assert!(linked.file_ids.unwrap_or_default().contains(&uploaded.id));
    // Adding the same file again is accepted.
    owui.add_file_to_knowledge(&kb.id, &uploaded.id)
        .await
        .unwrap();

    let listed = owui.knowledge_files(&kb.id).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, uploaded.id);
    assert_eq!(listed[0].filename, "b.txt");
    assert_eq!(listed[0].metadata, marker);
    assert_eq!(listed[0].file_hash, uploaded.file_hash);
    assert!(
        owui.list_knowledge()
            .await
            .unwrap()
            .iter()
            .any(|k| k.id == kb.id)
    );
}

contract!(same_text_under_another_file_is_duplicate, case_duplicate);
async fn case_duplicate(url: &str, key: &str) {
    let owui = client(url, key);
    let kb = owui
        .create_knowledge(&unique("ragd-dup"), "")
        .await
        .unwrap();
    let text = format!("the same words {}\n", unique("dup")).into_bytes();
    let first = owui
        .upload_file("one.txt", text.clone(), Value::Null, true)
        .await
        .unwrap();
    owui.wait_processed(&first.id, PROCESS_WAIT)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    owui.add_file_to_knowledge(&kb.id, &first.id).await.unwrap();

    let second = owui
        .upload_file("two.txt", text, Value::Null, true)
        .await
        .unwrap();
    assert_eq!(
        owui.wait_processed(&second.id, PROCESS_WAIT).await.unwrap(),
        ProcessOutcome::Completed,
        "processing alone does not look at the knowledge base"
    );
    let err = owui
        .add_file_to_knowledge(&kb.id, &second.id)
        .await
        .unwrap_err();
    assert!(matches!(err, OwuiError::DuplicateContent { .. }), "{err:?}");
    assert!(err.is_permanent_for_file() && !err.is_transient());
    // The server marks the refused file failed, with the reason.
    let refused = owui.get_file(&second.id).await.unwrap();
    assert_eq!(refused.status, Some(FileStatus::Failed));
    assert!(
        refused
            .error
            .unwrap_or_default()
            .contains("Duplicate content")
    );
    let listed = owui.knowledge_files(&kb.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        [first.id.as_str()]
    );
    owui.delete_file(&second.id).await.unwrap();
}

contract!(empty_file_is_empty_content, case_empty);
async fn case_empty(url: &str, key: &str) {
    let owui = client(url, key);
    let err = owui
        .upload_file("empty.txt", Vec::new(), Value::Null, true)
        .await
        .unwrap_err();
    assert!(matches!(err, OwuiError::EmptyContent { .. }), "{err:?}");
}

contract!(binary_pdf_fails_processing, case_binary_pdf);
async fn case_binary_pdf(url: &str, key: &str) {
    let owui = client(url, key);
    let junk: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = owui
        .upload_file("junk.pdf", junk, Value::Null, true)
        .await
        .unwrap();
    match owui.wait_processed(&file.id, PROCESS_WAIT).await.unwrap() {
        ProcessOutcome::Failed { reason } => assert!(!reason.is_empty()),
        other => panic!("expected failed processing, got {other:?}"),
    }
    owui.delete_file(&file.id).await.unwrap();
}

contract!(remove_also_deletes_the_file, case_remove_deletes);
async fn case_remove_deletes(url: &str, key: &str) {
    let owui = client(url, key);
    let kb = owui
        .create_knowledge(&unique("ragd-remove"), "")
        .await
        .unwrap();
    let bytes = format!("to be removed {}\n", unique("rm")).into_bytes();
    let file = owui
        .upload_file("gone.md", bytes, Value::Null, true)
        .await
        .unwrap();
    owui.wait_processed(&file.id, PROCESS_WAIT)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    owui.add_file_to_knowledge(&kb.id, &file.id).await.unwrap();

    owui.remove_file_from_knowledge(&kb.id, &file.id, true)
        .await
        .unwrap();
    assert!(owui.knowledge_files(&kb.id).await.unwrap().is_empty());
    let err = owui.get_file(&file.id).await.unwrap_err();
    assert!(matches!(err, OwuiError::NotFound { .. }), "{err:?}");
    // Removing again: the knowledge endpoints answer a missing file with a 400.
    let err = owui
        .remove_file_from_knowledge(&kb.id, &file.id, true)
        .await
        .unwrap_err();
    assert!(matches!(err, OwuiError::NotFound { .. }), "{err:?}");
}

contract!(remove_without_delete_keeps_the_file, case_remove_keeps);
async fn case_remove_keeps(url: &str, key: &str) {
    let owui = client(url, key);
    let kb = owui
        .create_knowledge(&unique("ragd-keep"), "")
        .await
        .unwrap();
    let bytes = format!("kept {}\n", unique("keep")).into_bytes();
    let file = owui
        .upload_file("kept.txt", bytes, Value::Null, true)
        .await
        .unwrap();
    owui.wait_processed(&file.id, PROCESS_WAIT)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    owui.add_file_to_knowledge(&kb.id, &file.id).await.unwrap();
    owui.remove_file_from_knowledge(&kb.id, &file.id, false)
        .await
        .unwrap();
    assert!(owui.knowledge_files(&kb.id).await.unwrap().is_empty());
    assert_eq!(owui.get_file(&file.id).await.unwrap().id, file.id);
    owui.delete_file(&file.id).await.unwrap();
    let err = owui.delete_file(&file.id).await.unwrap_err();
    assert!(matches!(err, OwuiError::NotFound { .. }), "{err:?}");
}

contract!(auto_link_completes_only_when_linked, case_auto_link);
async fn case_auto_link(url: &str, key: &str) {
    let owui = client(url, key);
    owui.version().await.unwrap();
    assert!(owui.supports_auto_link());
    let kb = owui
        .create_knowledge(&unique("ragd-auto"), "")
        .await
        .unwrap();
    let bytes = format!("auto linked {}\n", unique("auto")).into_bytes();
    let meta = json!({"knowledge_id": kb.id, "ragd": {"path": "x.txt"}});
    let file = owui
        .upload_file("x.txt", bytes.clone(), meta.clone(), true)
        .await
        .unwrap();
    assert_eq!(
        owui.wait_processed(&file.id, PROCESS_WAIT).await.unwrap(),
        ProcessOutcome::Completed
    );
    let listed = owui.knowledge_files(&kb.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        [file.id.as_str()]
    );

    // A second file with the same text: processing fails with the duplicate reason.
    let twin = owui
        .upload_file("y.txt", bytes, json!({"knowledge_id": kb.id}), true)
        .await
        .unwrap();
    let outcome = owui.wait_processed(&twin.id, PROCESS_WAIT).await.unwrap();
    let err = outcome.into_result().unwrap_err();
    assert!(matches!(err, OwuiError::DuplicateContent { .. }), "{err:?}");
    assert_eq!(owui.knowledge_files(&kb.id).await.unwrap().len(), 1);
    owui.delete_file(&twin.id).await.unwrap();
}

contract!(wrong_key_is_unauthorized, case_wrong_key);
async fn case_wrong_key(url: &str, _key: &str) {
    let owui = client(url, "sk-definitely-not-a-key");
    let err = owui.list_knowledge().await.unwrap_err();
    assert!(
        matches!(err, OwuiError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.stops_pipeline());
    let err = owui.whoami().await.unwrap_err();
    assert!(err.stops_pipeline(), "{err:?}");
}

contract!(missing_knowledge_is_not_found, case_missing_knowledge);
async fn case_missing_knowledge(url: &str, key: &str) {
    let owui = client(url, key);
    let err = owui.get_knowledge("no-such-kb").await.unwrap_err();
    assert!(matches!(err, OwuiError::NotFound { .. }), "{err:?}");
    let err = owui.knowledge_files("no-such-kb").await.unwrap_err();
    assert!(matches!(err, OwuiError::NotFound { .. }), "{err:?}");
}

contract!(unicode_file_names_arrive_intact, case_unicode_name);
async fn case_unicode_name(url: &str, key: &str) {
    let owui = client(url, key);
    let name = ragd::open_webui::sanitize_filename("docs/Überblick \"日本\".md");
    let bytes = format!("unicode {}\n", unique("u")).into_bytes();
    let file = owui
        .upload_file(&name, bytes, Value::Null, false)
        .await
        .unwrap();
    assert_eq!(file.filename, name);
    assert_eq!(file.status, None, "process=false leaves no status");
    assert_eq!(owui.find_files_by_name(&name).await.unwrap()[0].id, file.id);
    owui.delete_file(&file.id).await.unwrap();
}

// ---- fault injection (fake only) ------------------------------------------------------

#[tokio::test]
async fn locked_database_uploads_are_retried() {
    let fake = spawn_fake("sk-k").await;
    fake.fail_uploads_locked(2);
    let owui = client(&fake.url, &fake.api_key);
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), Value::Null, true)
        .await
        .unwrap();
    assert!(!file.id.is_empty());
    let counters = fake.counters();
    assert_eq!((counters.upload_requests, counters.uploads), (3, 1));
}

#[tokio::test]
async fn an_upload_whose_answer_was_lost_is_not_uploaded_twice() {
    lost_answer_is_adopted(0).await;
}

/// The lost upload is found by its name, bytes and metadata, not by the time
/// the server stamped on it: a server whose clock is an hour behind (another
/// machine, another time zone set wrong) made ragd upload a second copy.
#[tokio::test]
async fn a_lost_upload_is_found_whatever_the_servers_clock_says() {
    lost_answer_is_adopted(-3600).await;
}

/// An upload whose answer is dropped after the server stored it, on a server
/// whose clock runs `clock_offset` seconds from ours: one file, the one found.
async fn lost_answer_is_adopted(clock_offset: i64) {
    let fake = spawn_fake("sk-k").await;
    fake.set_clock_offset(clock_offset);
    fake.drop_after_write(FakeOp::Upload, 1);
    let owui = client(&fake.url, &fake.api_key);
    let meta = json!({"ragd": {"path": "a.txt"}});
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), meta, true)
        .await
        .unwrap();
    assert_eq!(fake.counters().uploads, 1);
    assert_eq!(fake.files().len(), 1);
    assert_eq!(fake.files()[0].id, file.id);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let fake = spawn_fake("sk-k").await;
    fake.fail_uploads_500(100);
    let owui = client(&fake.url, &fake.api_key);
    let err = owui
        .upload_file("a.txt", b"abc".to_vec(), Value::Null, true)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(fake.counters().upload_requests, 4);
    assert_eq!(fake.counters().uploads, 0);
}

#[tokio::test]
async fn a_lost_knowledge_creation_does_not_create_two() {
    let fake = spawn_fake("sk-k").await;
    fake.drop_after_write(FakeOp::CreateKnowledge, 1);
    let owui = client(&fake.url, &fake.api_key);
    let kb = owui
        .find_or_create_knowledge_by_name("docs", "")
        .await
        .unwrap();
    let all = owui.list_knowledge().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, kb.id);
}

#[tokio::test]
async fn lost_answers_to_removals_count_as_done() {
    let fake = spawn_fake("sk-k").await;
    let owui = client(&fake.url, &fake.api_key);
    let kb = owui.create_knowledge("kb", "").await.unwrap();
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), Value::Null, true)
        .await
        .unwrap();
    owui.wait_processed(&file.id, PROCESS_WAIT)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    fake.drop_after_write(FakeOp::Add, 1);
    owui.add_file_to_knowledge(&kb.id, &file.id).await.unwrap();
    assert_eq!(
        fake.knowledge_file_ids(&kb.id),
        std::slice::from_ref(&file.id)
    );
    fake.drop_after_write(FakeOp::Remove, 1);
    owui.remove_file_from_knowledge(&kb.id, &file.id, true)
        .await
        .unwrap();
    let counters = fake.counters();
    assert_eq!(
        (counters.adds, counters.removes, counters.deletes),
        (2, 1, 1)
    );
    assert!(fake.files().is_empty());
}

#[tokio::test]
async fn slow_processing_times_out_and_resumes() {
    let fake = spawn_fake("sk-k").await;
    fake.set_processing(1, Duration::from_secs(2));
    let owui = client(&fake.url, &fake.api_key);
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), Value::Null, true)
        .await
        .unwrap();
    let outcome = owui
        .wait_processed(&file.id, Duration::from_millis(600))
        .await
        .unwrap();
    assert!(
        matches!(outcome, ProcessOutcome::TimedOut { .. }),
        "{outcome:?}"
    );
    assert!(outcome.into_result().unwrap_err().is_transient());
    let outcome = owui
        .wait_processed(&file.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(outcome, ProcessOutcome::Completed);
}

#[tokio::test]
async fn status_polls_survive_transient_failures() {
    let fake = spawn_fake("sk-k").await;
    fake.set_processing(2, Duration::ZERO);
    fake.inject(FakeOp::Status, Fault::Http503, 2);
    let owui = client(&fake.url, &fake.api_key);
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), Value::Null, true)
        .await
        .unwrap();
    assert_eq!(
        owui.wait_processed(&file.id, PROCESS_WAIT).await.unwrap(),
        ProcessOutcome::Completed
    );
}

#[tokio::test]
async fn adding_before_processing_finished_is_refused_as_empty() {
    let fake = spawn_fake("sk-k").await;
    fake.set_processing(5, Duration::ZERO);
    let owui = client(&fake.url, &fake.api_key);
    let kb = owui.create_knowledge("kb", "").await.unwrap();
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), Value::Null, true)
        .await
        .unwrap();
    let err = owui
        .add_file_to_knowledge(&kb.id, &file.id)
        .await
        .unwrap_err();
    assert!(matches!(err, OwuiError::EmptyContent { .. }), "{err:?}");
}

#[tokio::test]
async fn older_servers_do_not_auto_link() {
    let fake = spawn_fake("sk-k").await;
    fake.set_version("0.6.5");
    let owui = client(&fake.url, &fake.api_key);
    assert_eq!(owui.version().await.unwrap(), ServerVersion::new(0, 6, 5));
    assert!(!owui.supports_auto_link());
    let kb = owui.create_knowledge("kb", "").await.unwrap();
    let meta = json!({"knowledge_id": kb.id});
    let file = owui
        .upload_file("a.txt", b"abc".to_vec(), meta, true)
        .await
        .unwrap();
    owui.wait_processed(&file.id, PROCESS_WAIT)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(owui.knowledge_files(&kb.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn knowledge_listings_read_every_page() {
    let fake = spawn_fake("sk-k").await;
    let owui = client(&fake.url, &fake.api_key);
    for i in 0..35 {
        owui.create_knowledge(&format!("kb-{i}"), "").await.unwrap();
    }
    assert_eq!(owui.list_knowledge().await.unwrap().len(), 35);
}

/// Upload names are base names, so a tree can hold thousands of `README.md`; the
/// search answers at most 1,000 a request (as the real one: `limit` ≤ 1000), and
/// the marker search must see every one of them.
#[tokio::test]
async fn a_name_search_pages_past_the_servers_limit() {
    let fake = spawn_fake("sk-k").await;
    let owui = client(&fake.url, &fake.api_key);
    let mut ids = Vec::new();
    for i in 0..1_005 {
        let f = owui
            .upload_file(
                "README.md",
                format!("readme {i}").into_bytes(),
                Value::Null,
                false,
            )
            .await
            .unwrap();
        ids.push(f.id);
    }
    owui.upload_file("other.md", b"other".to_vec(), Value::Null, false)
        .await
        .unwrap();
    let mut found: Vec<String> = owui
        .find_files_by_name("README.md")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
}

/// A server that answers every request with a redirect to `to`, and a listener
/// behind `to` that counts the requests reaching it.
async fn redirect_pair() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = target.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        }
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", redirector.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = redirector.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target_addr}/stolen\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (url, reached)
}

/// A redirect is not followed: reqwest would send the bearer token on to the
/// new location (kept on a same-host one, https to http included).
#[tokio::test]
async fn redirects_are_not_followed_with_the_key() {
    let (url, reached) = redirect_pair().await;
    let err = client(&url, "sk-secret").version().await.unwrap_err();
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed ({err})"
    );
    let embedder = ragd::embed::ollama::OllamaEmbedder::new(ragd::embed::ollama::OllamaSettings {
        api_key: Some("sk-secret".into()),
        via_open_webui: true,
        max_retries: 0,
        ..ragd::embed::ollama::OllamaSettings::direct(&url, "m")
    })
    .unwrap();
    let _ = ragd::embed::Embedder::embed(&embedder, &["x".to_owned()]).await;
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A private CA is trusted when `tls_ca_file` names it: the real Open WebUI
/// behind a TLS proxy on loopback whose certificate (for 127.0.0.1) a CA made
/// by the test issued. Without the file the certificate is refused, and the
/// error says what to do.
#[tokio::test]
async fn a_private_ca_named_in_tls_ca_file_is_trusted() {
    use crate::support::tls::{TlsProxy, target_of};
    let Some((url, key)) = real_server() else {
        return;
    };
    let proxy = TlsProxy::start(target_of(&url), &[b"http/1.1"]).await;
    let trusting = ragd::http::ClientSettings {
        ca_file: Some(proxy.ca_file.clone()),
        ..Default::default()
    };
    let owui = ragd::open_webui::OpenWebUi::with_http(
        &proxy.url(),
        key.clone(),
        Duration::from_secs(30),
        &trusting,
    )
    .unwrap();
    let version = owui.version().await.expect("version over TLS");
    assert!(version >= ServerVersion::new(0, 12, 0), "{version}");
    assert_eq!(owui.whoami().await.expect("whoami over TLS").role, "admin");

    let bare = ragd::open_webui::OpenWebUi::with_http(
        &proxy.url(),
        key,
        Duration::from_secs(30),
        &ragd::http::ClientSettings::default(),
    )
    .unwrap();
    let err = bare.version().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("tls_ca_file"), "{text}");
    // A configuration problem: not retried, and it stops the pipeline's
    // publishing instead of failing every file in turn.
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.stops_pipeline(), "{err:?}");
}
