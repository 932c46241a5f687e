//! `[knowledge] access`: who may read or write a knowledge base, by user and group
//! names, resolved against the server, applied with `access/update` and kept equal
//! to the configuration on every sync (no request when it already is); `ragd
//! doctor` fails on a name the server does not know. Each case runs against the fake
//! and, when it is up, the real Open WebUI 0.12.4: the users and groups are made
//! through the server's own admin routes on both.

use std::collections::BTreeSet;

use ragd::pipeline::RunRequest;

use crate::support::env::TestEnv;
use crate::support::fake_openwebui::spawn_fake;
use crate::support::owui::{client, grant, grants, knowledge_id, principals, real_server, unique};

macro_rules! against_both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fake() {
                let fake = super::spawn_fake("sk-fake").await;
                super::$case(&fake.url, &fake.api_key).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                if let Some((url, key)) = super::real_server() {
                    super::$case(&url, &key).await;
                }
            }
        }
    };
}

against_both!(the_base_grants_what_the_config_says, follows_the_config);
against_both!(doctor_fails_on_an_unknown_group, doctor_checks_names);

const PROCESS_TIMEOUT_SECS: u64 = 120;

/// A pipeline publishing to `kb_name` with `access` (TOML array) as its access.
async fn env_with_access(url: &str, key: &str, kb_name: &str, access: &str) -> TestEnv {
    TestEnv::with(
        &knowledge_toml(kb_name, access),
        &format!(
            "[open_webui]\nurl = \"{url}\"\napi_key = \"{key}\"\nconcurrency = 4\n\
             process_timeout_secs = {PROCESS_TIMEOUT_SECS}\nrequest_timeout_secs = 60\n"
        ),
    )
    .await
}

fn knowledge_toml(kb_name: &str, access: &str) -> String {
    format!("[knowledge]\nname = \"{kb_name}\"\naccess = {access}\n")
}

/// Replace the pipeline's `[knowledge]` table (the rest of the file stays).
fn set_access(env: &TestEnv, kb_name: &str, access: &str) {
    let path = env.dir.path().join("pipelines/docs.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[knowledge]").unwrap();
    let end = start + text[start..].find("\n[embedding]").unwrap();
    let new = format!(
        "{}{}{}",
        &text[..start],
        knowledge_toml(kb_name, access),
        &text[end..]
    );
    std::fs::write(path, new).unwrap();
}

async fn follows_the_config(url: &str, key: &str) {
    let tag = unique("acc");
    let (user, group) = principals(url, key, &tag).await;
    let kb_name = unique("access");
    let env = env_with_access(
        url,
        key,
        &kb_name,
        &format!(
            "[{{ group = \"staff-{tag}\", permission = \"read\" }}, \
             {{ user = \"ana-{tag}@example.com\", permission = \"write\" }}]"
        ),
    )
    .await;
    env.write("a.md", format!("# A\n\nThe {tag} numbat.\n"));
    let kb = env.index().await.knowledge.unwrap();
    assert!(kb.access_updated, "{kb:?}");
    assert_eq!(kb.linked, 1, "{kb:?}");
    let c = client(url, key);
    let kb_id = knowledge_id(&env).await;
    // A writer gets a read grant too: the server checks permissions exactly.
    let want: BTreeSet<_> = [
        grant("group", &group, "read"),
        grant("user", &user, "read"),
        grant("user", &user, "write"),
    ]
    .into();
    assert_eq!(grants(&c, &kb_id).await, want);

    // Equal: nothing sent.
    let kb = env.index().await.knowledge.unwrap();
    assert!(!kb.access_updated, "{kb:?}");
    assert_eq!(grants(&c, &kb_id).await, want);

    // Changed by hand in Open WebUI: the next sync puts the configured access back.
    c.update_access(&kb_id, &BTreeSet::new()).await.unwrap();
    assert!(grants(&c, &kb_id).await.is_empty());
    let kb = env.index().await.knowledge.unwrap();
    assert!(kb.access_updated, "{kb:?}");
    assert_eq!(grants(&c, &kb_id).await, want);

    // The configuration changes: the group's grant goes, the user only reads.
    set_access(
        &env,
        &kb_name,
        &format!("[{{ user = \"Ana {tag}\", permission = \"read\" }}]"),
    );
    let kb = env.index().await.knowledge.unwrap();
    assert!(kb.access_updated, "{kb:?}");
    assert_eq!(
        grants(&c, &kb_id).await,
        [grant("user", &user, "read")].into()
    );

    // An unknown name stops publishing with the fix, and changes nothing.
    set_access(
        &env,
        &kb_name,
        &format!("[{{ group = \"nobody-{tag}\", permission = \"read\" }}]"),
    );
    let app = env.app();
    let err = env
        .pipeline(&app)
        .run(&RunRequest::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("Open WebUI has no group \"nobody-{tag}\"")),
        "{err}"
    );
    assert_eq!(
        grants(&c, &kb_id).await,
        [grant("user", &user, "read")].into()
    );
}

async fn doctor_checks_names(url: &str, key: &str) {
    let tag = unique("doc");
    principals(url, key, &tag).await;
    let env = env_with_access(
        url,
        key,
        &unique("access-doctor"),
        &format!(
            "[{{ group = \"staff-{tag}\", permission = \"read\" }}, \
             {{ user = \"ana-{tag}@example.com\", permission = \"write\" }}]"
        ),
    )
    .await;
    let doctor = |env: &TestEnv| {
        let config = env.config_path();
        async move {
            let out = tokio::process::Command::new(crate::support::ragd_bin())
                .arg("--config")
                .arg(config)
                .arg("doctor")
                .env_remove("RAGD_CONFIG")
                .env("RUST_LOG", "warn")
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let (_, out) = doctor(&env).await;
    assert!(
        out.contains("knowledge access for docs")
            && out.contains("2 rule(s) name existing users and groups (3 grants)"),
        "{out}"
    );
    set_access(
        &env,
        "whatever",
        &format!("[{{ group = \"nobody-{tag}\", permission = \"read\" }}]"),
    );
    let (code, out) = doctor(&env).await;
    assert_eq!(code, Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("knowledge access for docs"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("FAIL"), "{line}");
    assert!(
        line.contains(&format!("no group \"nobody-{tag}\"")),
        "{line}"
    );
    assert!(line.contains("Admin Panel → Users → Groups"), "{line}");
}
