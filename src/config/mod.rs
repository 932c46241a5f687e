//! Configuration: `config/ragd.toml` for the daemon, one `pipelines/NAME.toml` per
//! pipeline.
//!
//! Loading goes raw → validated in three steps, as in ripgrep's low/high args and
//! vector's config compiler:
//! 1. read each file and interpolate `${VAR}` / `${VAR:-default}` ([`vars`]);
//! 2. parse into the serde mirrors in [`raw`] (unknown keys are errors);
//! 3. [`validate`] checks everything and collects *every* problem, each with its
//!    file and key, before reporting.
//!
//! Nothing here touches the network. Relative paths are relative to the folder of
//! the file they are written in.

pub mod defaults;
pub mod raw;
mod secret;
pub mod validate;
pub mod vars;

use std::fmt;
use std::path::{Path, PathBuf};

pub use secret::Secret;
pub use validate::{
    ChunkUnit, ChunkingConfig, Config, EmbedProvider, EmbeddingSettings, ExternalKnowledge,
    KnowledgeTarget, Limits, OpenWebUiSettings, PipelineConfig, QdrantSettings,
};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key (`embedding.model`), or `-` for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Load and validate `config_path` and the pipelines it points at, using the
/// process environment for interpolation.
pub fn load(config_path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(config_path, |name| std::env::var(name).ok())
}

/// [`load`] with an explicit environment, for tests.
pub fn load_with_env(
    config_path: &Path,
    env: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let daemon: raw::RawDaemon = match read_toml(config_path, env) {
        Ok(d) => d,
        Err(e) => {
            errors.extend(e);
            raw::RawDaemon::default()
        }
    };
    let base = parent_dir(config_path);
    let pipelines_dir = base.join(daemon.pipelines_dir.as_deref().unwrap_or("../pipelines"));
    let mut pipelines = Vec::new();
    match pipeline_files(&pipelines_dir) {
        Ok(files) => {
            for file in files {
                match read_toml::<raw::RawPipeline>(&file, env) {
                    Ok(p) => pipelines.push((file, p)),
                    Err(e) => errors.extend(e),
                }
            }
        }
        Err(e) => errors.push(ConfigError {
            file: config_path.to_owned(),
            key: "pipelines_dir".into(),
            message: format!("cannot read {}: {e}", pipelines_dir.display()),
        }),
    }
    let result = validate::validate(config_path, daemon, pipelines, &|p: &Path| {
        std::fs::read_to_string(p)
    });
    match result {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The `*.toml` files of a pipelines folder, sorted so that errors and runs come
/// in a stable order.
fn pipeline_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn read_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, Vec<ConfigError>> {
    let err = |key: &str, message: String| ConfigError {
        file: file.to_owned(),
        key: key.to_owned(),
        message,
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![err("-", format!("cannot read: {e}"))])?;
    let text = vars::interpolate(&text, env).map_err(|errs| {
        errs.into_iter()
            .map(|(line, msg)| err(&format!("line {line}"), msg))
            .collect::<Vec<_>>()
    })?;
    toml::from_str(&text).map_err(|e| {
        let key = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_else(|| "-".to_owned());
        vec![err(&key, e.message().to_owned())]
    })
}
