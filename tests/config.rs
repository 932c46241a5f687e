//! The shipped configuration files load and validate; validation reports every
//! problem with its file and key.

use std::path::Path;

#[test]
fn every_shipped_config_file_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Only the defaults: no RAGD_* variables from the caller's environment.
    let config = ragd::config::load_with_env(&root.join("config/ragd.toml"), |_| None)
        .unwrap_or_else(|e| panic!("config/ragd.toml: {e}"));
    let shipped: Vec<_> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(!shipped.is_empty());
    assert_eq!(
        config.pipelines.len(),
        shipped.len(),
        "every pipelines/*.toml loads"
    );
}

#[test]
fn validate_command_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("config/ragd.toml"),
        "[embedding]\nprovider = \"magic\"\nbogus = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pipelines/bad.toml"),
        "sources = []\nschedule = \"whenever\"\n[chunking]\nmax_size = 10\noverlap = 20\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::ragd_bin())
        .args(["validate", "--config"])
        .arg(dir.path().join("config/ragd.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // The unknown key stops ragd.toml's parse; the pipeline's problems are all listed.
    assert!(err.contains("bogus"), "{err}");
    for key in ["sources", "schedule", "chunking.overlap", "embedding.model"] {
        assert!(
            err.contains(&format!("bad.toml: {key}")),
            "missing {key}: {err}"
        );
    }
}
