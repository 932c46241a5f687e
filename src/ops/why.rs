//! `ragd why PATH`: one file's journey — on disk, globs, ledger state, Qdrant
//! points, Open WebUI file — and a one-line verdict.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{OpsError, Outcome, StoreAccess, View, human_bytes, human_time};
use crate::config::PipelineConfig;
use crate::ledger::{FailKind, FileRecord, FileState, KbRecord, MAX_TRANSIENT_ATTEMPTS};
use crate::triggers::key::{FileKey, rel_to_string};
use crate::triggers::scan;

/// One file as one pipeline sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Journey {
    pub pipeline: String,
    /// The ledger key: relative to the source folder, `/`-separated.
    pub path: String,
    pub abs_path: String,
    pub on_disk: Option<DiskFile>,
    /// The pipeline's include/exclude globs (and the built-in ignores) want it.
    pub matches_globs: bool,
    pub ledger: Option<LedgerRow>,
    pub qdrant: Qdrant,
    pub knowledge: Option<KbRow>,
    /// What happens next, in one line.
    pub verdict: String,
}

/// The file as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct DiskFile {
    pub size: u64,
    pub modified: i64,
}

/// The ledger's row.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerRow {
    pub state: &'static str,
    pub size: u64,
    pub modified: i64,
    pub file_sha256: String,
    pub content_hash: Option<String>,
    pub target_hash: Option<String>,
    pub chunks: u32,
    pub error_kind: Option<FailKind>,
    pub error: Option<String>,
    pub attempts: u32,
    pub updated_at: i64,
    /// What the indexed text lacks (pages left out), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<&FileRecord> for LedgerRow {
    fn from(r: &FileRecord) -> Self {
        LedgerRow {
            state: r.state.as_str(),
            size: r.size,
            modified: r.mtime_ns / 1_000_000_000,
            file_sha256: r.file_hash.clone(),
            content_hash: r.content_hash.clone(),
            target_hash: r.target_hash.clone(),
            chunks: r.chunk_count,
            error_kind: r.error_kind.clone(),
            error: r.error.clone(),
            attempts: r.attempts,
            updated_at: r.updated_at,
            warnings: r
                .warning
                .as_deref()
                .map(|w| w.lines().map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }
}

/// The file's points.
#[derive(Debug, Clone, Serialize)]
pub struct Qdrant {
    pub collection: String,
    /// `None` when the store could not be read (see `error`).
    pub points: Option<u64>,
    pub error: Option<String>,
}

/// The knowledge-base row.
#[derive(Debug, Clone, Serialize)]
pub struct KbRow {
    pub kb_id: String,
    pub state: &'static str,
    pub file_id: Option<String>,
    pub old_file_id: Option<String>,
    pub error_kind: Option<FailKind>,
    pub error: Option<String>,
    pub attempts: u32,
    /// Where the file sits in the knowledge base (`dir/name`), as ragd last put it.
    pub kb_path: String,
}

impl From<&KbRecord> for KbRow {
    fn from(r: &KbRecord) -> Self {
        KbRow {
            kb_id: r.kb_id.clone(),
            state: r.state.as_str(),
            file_id: r.file_id.clone(),
            old_file_id: r.old_file_id.clone(),
            error_kind: r.error_kind.clone(),
            error: r.error.clone(),
            attempts: r.attempts,
            kb_path: crate::publish::tree::Place::recorded(r.kb_path.as_deref(), &r.path).kb_path(),
        }
    }
}

/// The (pipeline, ledger key) pairs `input` may mean: an absolute path (or one
/// relative to the working directory that exists) under a source folder, or a
/// path relative to a source folder.
fn candidates<'a>(view: &'a View, input: &Path) -> Vec<(&'a PipelineConfig, FileKey)> {
    let mut out: Vec<(&PipelineConfig, FileKey)> = Vec::new();
    let mut push = |p: &'a PipelineConfig, key: FileKey| {
        if !out.iter().any(|(q, k)| q.name == p.name && *k == key) {
            out.push((p, key));
        }
    };
    let mut absolutes = Vec::new();
    if input.is_absolute() {
        absolutes.push(input.to_owned());
    } else if input.exists()
        && let Ok(cwd) = std::env::current_dir()
    {
        absolutes.push(cwd.join(input));
    }
    if let Some(c) = absolutes.first().and_then(|a| a.canonicalize().ok()) {
        absolutes.push(c);
    }
    for p in &view.config.pipelines {
        // Sources may be written with or without symlinks resolved.
        let canonical = PipelineConfig {
            sources: p
                .sources
                .iter()
                .map(|s| s.canonicalize().unwrap_or_else(|_| s.clone()))
                .collect(),
            ..p.clone()
        };
        for abs in &absolutes {
            for cfg in [p, &canonical] {
                if let Some((_, key)) = FileKey::of(&cfg.sources, abs) {
                    push(p, key);
                }
            }
        }
        if !input.is_absolute() {
            // Typed as the key itself.
            let key = FileKey::stored(rel_to_string(input));
            let known = view
                .ledger
                .get(&p.name, key.as_str())
                .ok()
                .flatten()
                .is_some();
            let on_disk = (0..p.sources.len() as u32)
                .any(|i| key.source_path(&p.sources, i).is_some_and(|f| f.exists()));
            if known || on_disk {
                push(p, key);
            }
        }
    }
    out
}

/// Trace one (pipeline, key).
async fn trace(
    view: &View,
    p: &PipelineConfig,
    file_key: &FileKey,
    store: &Result<StoreAccess, String>,
) -> Result<Journey, OpsError> {
    let key = file_key.as_str();
    let record = view.ledger.get(&p.name, key)?;
    let source = record.as_ref().map_or(0, |r| r.source);
    let abs = file_key
        .source_path(&p.sources, source)
        .unwrap_or_else(|| PathBuf::from(key));
    let on_disk = std::fs::metadata(&abs)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| DiskFile {
            size: m.len(),
            modified: scan::mtime_ns(&m) / 1_000_000_000,
        });
    let matches_globs = scan::wanted(&p.include, &p.exclude, file_key.in_source(&p.sources));
    let qdrant = match store {
        Err(why) => Qdrant {
            collection: p.collection.clone(),
            points: None,
            error: Some(why.clone()),
        },
        // By id, as a run finds them (`pipeline::points`): a filter on `path`
        // would read every payload of the collection (measured: 2.7 s at 131k
        // points). A stray point past a gap is `ragd reconcile`'s to find.
        Ok(access) => match crate::pipeline::points::file_points(
            &*access.store,
            &p.collection,
            &p.name,
            key,
            0,
            record.as_ref().map_or(0, |r| r.chunk_count),
            false,
        )
        .await
        {
            Ok(found) => Qdrant {
                collection: p.collection.clone(),
                points: Some(found.len() as u64),
                error: None,
            },
            Err(crate::store::StoreError::NoSuchCollection(_)) => Qdrant {
                collection: p.collection.clone(),
                points: Some(0),
                error: Some("the collection does not exist yet".into()),
            },
            Err(e) => Qdrant {
                collection: p.collection.clone(),
                points: None,
                error: Some(e.to_string()),
            },
        },
    };
    let kb_record = if p.knowledge.is_some() {
        view.ledger.kb_files(&p.name)?.remove(key)
    } else {
        None
    };
    let verdict = match &record {
        // Up to date, but not in Qdrant: where it is is the knowledge base.
        Some(r) if r.has_no_reader() && on_disk.as_ref().is_some_and(|d| !changed(r, d)) => {
            super::no_reader_note(r, kb_record.as_ref(), p.knowledge.is_some())
        }
        _ => verdict(record.as_ref(), on_disk.as_ref(), matches_globs),
    };
    let knowledge = kb_record.as_ref().map(KbRow::from);
    Ok(Journey {
        pipeline: p.name.clone(),
        path: key.to_owned(),
        abs_path: super::display_path(&abs),
        on_disk,
        matches_globs,
        ledger: record.as_ref().map(LedgerRow::from),
        qdrant,
        knowledge,
        verdict,
    })
}

/// Whether the file on disk differs from the ledger's row (size, or mtime to
/// the second).
fn changed(r: &FileRecord, d: &DiskFile) -> bool {
    d.size != r.size || d.modified != r.mtime_ns / 1_000_000_000
}

/// What happens to the file next, in one line.
fn verdict(r: Option<&FileRecord>, disk: Option<&DiskFile>, wanted: bool) -> String {
    let changed = |r: &FileRecord| disk.is_some_and(|d| changed(r, d));
    match (r, disk) {
        (None, None) => "unknown: not on disk and not in the ledger".into(),
        (None, Some(_)) if !wanted => {
            "not indexed: excluded by the pipeline's include/exclude globs or ragd's ignore list \
             (dotfiles, *.tmp, *.part, …)"
                .into()
        }
        (None, Some(_)) => "not indexed yet: the next run adds it".into(),
        (Some(_), None) => "gone from the folder: the next run deletes its points".into(),
        (Some(r), Some(_)) => match r.state {
            FileState::Indexing | FileState::Deleting => {
                "interrupted mid-way: the next run resumes it".into()
            }
            _ if changed(r) => {
                "changed on disk since it was indexed: the next run updates it".into()
            }
            FileState::Indexed if r.warning.is_some() => {
                "indexed and up to date, with parts left out (see warning)".into()
            }
            FileState::Indexed => "indexed and up to date".into(),
            FileState::Skipped => format!(
                "skipped on purpose ({}): change the limits or the file",
                r.error_kind.as_ref().map_or("?", FailKind::as_str)
            ),
            FileState::Failed => {
                let kind = r.error_kind.as_ref().map_or("?", FailKind::as_str);
                if r.is_retried() {
                    format!(
                        "failed ({kind}), attempt {} of {MAX_TRANSIENT_ATTEMPTS}: the next run retries it",
                        r.attempts
                    )
                } else {
                    format!("failed ({kind}): left alone until the file changes")
                }
            }
        },
    }
}

/// Write journeys as text.
pub fn render(out: &mut dyn Write, journeys: &[Journey]) -> std::io::Result<()> {
    for (i, j) in journeys.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{} (pipeline {})", j.path, j.pipeline)?;
        writeln!(out, "  verdict:   {}", j.verdict)?;
        match &j.on_disk {
            Some(d) => writeln!(
                out,
                "  on disk:   {} ({}, modified {})",
                j.abs_path,
                human_bytes(d.size),
                human_time(d.modified)
            )?,
            None => writeln!(out, "  on disk:   no ({})", j.abs_path)?,
        }
        writeln!(
            out,
            "  globs:     {}",
            if j.matches_globs {
                "included"
            } else {
                "excluded"
            }
        )?;
        match &j.ledger {
            None => writeln!(out, "  ledger:    no row")?,
            Some(l) => {
                writeln!(
                    out,
                    "  ledger:    {}, {} chunks, {} attempt(s), updated {}",
                    l.state,
                    l.chunks,
                    l.attempts,
                    human_time(l.updated_at)
                )?;
                writeln!(
                    out,
                    "             size {} B, modified {}",
                    l.size,
                    human_time(l.modified)
                )?;
                writeln!(
                    out,
                    "             file sha256  {}",
                    or_dash(Some(&l.file_sha256))
                )?;
                writeln!(
                    out,
                    "             text hash    {}",
                    or_dash(l.content_hash.as_ref())
                )?;
                if l.target_hash.is_some() {
                    writeln!(
                        out,
                        "             writing      {}",
                        or_dash(l.target_hash.as_ref())
                    )?;
                }
                if let Some(kind) = &l.error_kind {
                    writeln!(
                        out,
                        "  error:     [{kind}] {}",
                        l.error.as_deref().unwrap_or("")
                    )?;
                }
                for w in &l.warnings {
                    writeln!(out, "  warning:   {w}")?;
                }
            }
        }
        match (&j.qdrant.points, &j.qdrant.error) {
            (Some(n), _) => writeln!(
                out,
                "  qdrant:    {n} point(s) in collection {:?}",
                j.qdrant.collection
            )?,
            (None, Some(e)) => writeln!(
                out,
                "  qdrant:    collection {:?}: unknown ({e})",
                j.qdrant.collection
            )?,
            (None, None) => writeln!(
                out,
                "  qdrant:    collection {:?}: unknown",
                j.qdrant.collection
            )?,
        }
        if let Some(kb) = &j.knowledge {
            writeln!(
                out,
                "  open webui: {} in knowledge base {}, file id {}{}",
                kb.state,
                kb.kb_id,
                kb.file_id.as_deref().unwrap_or("-"),
                kb.old_file_id
                    .as_deref()
                    .map(|o| format!(" (replacing {o})"))
                    .unwrap_or_default()
            )?;
            if !kb.kb_path.is_empty() {
                writeln!(
                    out,
                    "             at {:?} in the knowledge base",
                    kb.kb_path
                )?;
            }
            if let Some(kind) = &kb.error_kind {
                writeln!(
                    out,
                    "             [{kind}] {}",
                    kb.error.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    Ok(())
}

fn or_dash(s: Option<&String>) -> &str {
    match s {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}

/// `ragd why PATH`: [`Outcome::NotFound`] when no pipeline knows the path.
pub async fn run(view: &View, input: &Path, json: bool) -> Result<Outcome, OpsError> {
    let found = candidates(view, input);
    let store = if found.is_empty() {
        Err("not needed".to_owned())
    } else {
        super::open_store(&view.config)
    };
    let mut journeys = Vec::new();
    for (p, key) in &found {
        journeys.push(trace(view, p, key, &store).await?);
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "files": journeys }))?;
        writeln!(out)?;
    } else if journeys.is_empty() {
        writeln!(
            out,
            "{}: not under any pipeline's source folders, and no ledger row",
            input.display()
        )?;
        for p in &view.config.pipelines {
            let sources: Vec<String> = p.sources.iter().map(|s| super::display_path(s)).collect();
            writeln!(out, "  pipeline {}: {}", p.name, sources.join(", "))?;
        }
    } else {
        render(&mut out, &journeys)?;
    }
    Ok(if journeys.is_empty() {
        Outcome::NotFound
    } else {
        Outcome::Done
    })
}
