//! `ragd status`: per pipeline — files by state, chunks, last run, backlog,
//! failures grouped by kind, knowledge-base states.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::plan::{self, PipelinePlan};
use super::{OpsError, View, human_age, human_bytes, human_time};
use crate::config::QdrantSettings;
use crate::config::{KnowledgeTarget, PipelineConfig};
use crate::ledger::{FailKind, FileState, KbState, RunRecord};
use crate::publish::tree::Place;
use crate::store::edge::{DiskUsage, disk_usage};

/// Example paths shown per failure kind.
const EXAMPLES: usize = 3;

/// Everything `ragd status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state_dir: String,
    /// A ragd process (normally `ragd run`) holds the state directory.
    pub daemon_running: bool,
    pub pipelines: Vec<PipelineStatus>,
}

/// One pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub collection: String,
    pub sources: Vec<String>,
    /// Ledger rows by state; every state present, zeros included.
    pub files: BTreeMap<&'static str, u64>,
    pub total_files: u64,
    /// Chunks (= Qdrant points) of indexed files, per the ledger.
    pub chunks: u64,
    /// Bytes of the indexed source files.
    pub indexed_bytes: u64,
    pub last_run: Option<LastRun>,
    /// What the next run would do.
    pub backlog: Backlog,
    /// Failed files grouped by `error_kind`, most frequent first.
    pub failures: Vec<Group>,
    /// Skipped files grouped by reason.
    pub skipped: Vec<Group>,
    pub knowledge: Option<KnowledgeStatus>,
    /// Embedded Qdrant only: the collection's size on disk and vector slots
    /// (the live points plus the dead ones a vacuum will drop).
    pub qdrant_disk: Option<DiskUsage>,
}

/// The last finished run.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// `index` or `reconcile`.
    pub kind: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub elapsed_ms: u64,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    pub chunks_written: u64,
}

impl From<RunRecord> for LastRun {
    fn from(r: RunRecord) -> Self {
        LastRun {
            finished_at: r.started_at + (r.elapsed_ms / 1000) as i64,
            kind: r.kind,
            started_at: r.started_at,
            elapsed_ms: r.elapsed_ms,
            added: r.added,
            updated: r.updated,
            deleted: r.deleted,
            unchanged: r.unchanged,
            skipped: r.skipped,
            failed: r.failed,
            chunks_written: r.chunks_written,
        }
    }
}

/// What the next run would do: counts by action.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub total: usize,
    pub counts: BTreeMap<&'static str, usize>,
    pub settings_changed: bool,
    /// Deletions the next run would hold back, for either reason (an
    /// unreadable folder or empty source, or the mass-delete rail).
    pub held_back: usize,
}

impl From<&PipelinePlan> for Backlog {
    fn from(p: &PipelinePlan) -> Self {
        Backlog {
            total: p.total(),
            counts: p.counts.clone(),
            settings_changed: p.settings_changed,
            held_back: p.held_back + p.mass_delete_blocked.map_or(0, |(n, _)| n),
        }
    }
}

/// Files sharing one kind of failure.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub kind: String,
    pub count: u64,
    /// Up to three paths, sorted.
    pub examples: Vec<String>,
    /// The message of the first example.
    pub example_error: String,
}

/// The pipeline's knowledge base.
#[derive(Debug, Clone, Serialize)]
pub struct KnowledgeStatus {
    /// `name "…"` or `id …`, as configured.
    pub target: String,
    /// The id files were published to, once known.
    pub kb_id: Option<String>,
    /// kb_files rows by state; every state present.
    pub files: BTreeMap<&'static str, u64>,
    /// Indexed files (and files without a reader) with no knowledge-base row
    /// yet: the next sync publishes them.
    pub unpublished: u64,
    /// Linked files where the folder has them (the directory of their path,
    /// under their own name), and those elsewhere: moved or renamed since, in a
    /// base an older ragd published flat, or on a server without directories
    /// (which keeps every file at the root).
    pub placed: u64,
    pub unplaced: u64,
    /// Up to three of the `unplaced`, by path.
    pub unplaced_examples: Vec<Placement>,
    /// Knowledge-base directories the pipeline's files are in (made by ragd or
    /// found there), and how many of them ragd made (removed once emptied).
    pub directories: u64,
    pub directories_made: u64,
    pub failures: Vec<Group>,
}

/// Where a linked file sits in the knowledge base, and where the folder has it.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub path: String,
    /// `dir/name` in the knowledge base, as ragd last put it.
    pub kb_path: String,
    /// `dir/name` the next sync puts it at (where the folder has it).
    pub wanted: String,
}

/// Build the status of one pipeline. Blocking (the backlog scans the folder).
pub fn pipeline_status(view: &View, p: &PipelineConfig) -> Result<PipelineStatus, OpsError> {
    let rows = view.ledger.files(&p.name)?;
    let mut files: BTreeMap<&'static str, u64> = [
        FileState::Indexed,
        FileState::Indexing,
        FileState::Failed,
        FileState::Skipped,
        FileState::Deleting,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    let mut chunks = 0;
    let mut indexed_bytes = 0;
    for r in rows.values() {
        *files.entry(r.state.as_str()).or_default() += 1;
        if r.state == FileState::Indexed {
            chunks += u64::from(r.chunk_count);
            indexed_bytes += r.size;
        }
    }
    let group_rows = |state: FileState| {
        group(rows.values().filter(|r| r.state == state).map(|r| {
            (
                r.error_kind.as_ref().map(FailKind::as_str),
                r.path.as_str(),
                r.error.as_deref(),
            )
        }))
    };
    let plan = plan::compute(p, &view.ledger, view.config.limits.max_file_bytes)?;
    let kb_rows = match &p.knowledge {
        Some(_) => view.ledger.kb_files(&p.name)?,
        None => Default::default(),
    };
    // Files without a reader say whether the knowledge base has them.
    let notes: BTreeMap<&str, String> = rows
        .values()
        .filter(|r| r.has_no_reader())
        .map(|r| {
            let note = super::no_reader_note(r, kb_rows.get(&r.path), p.knowledge.is_some());
            (r.path.as_str(), note)
        })
        .collect();
    let skipped = group(
        rows.values()
            .filter(|r| r.state == FileState::Skipped)
            .map(|r| {
                let error = notes.get(r.path.as_str()).map(String::as_str);
                (
                    r.error_kind.as_ref().map(FailKind::as_str),
                    r.path.as_str(),
                    error.or(r.error.as_deref()),
                )
            }),
    );
    let knowledge =
        match &p.knowledge {
            None => None,
            Some(target) => {
                let mut kb_files: BTreeMap<&'static str, u64> = [
                    KbState::Linked,
                    KbState::Uploading,
                    KbState::Uploaded,
                    KbState::Failed,
                    KbState::Removing,
                ]
                .into_iter()
                .map(|s| (s.as_str(), 0))
                .collect();
                for r in kb_rows.values() {
                    *kb_files.entry(r.state.as_str()).or_default() += 1;
                }
                let kb_id = kb_rows.values().next().map(|r| r.kb_id.clone());
                let dirs = match &kb_id {
                    Some(id) => view.ledger.kb_dirs(&p.name, id)?,
                    None => Default::default(),
                };
                let mut placed = 0;
                let mut unplaced: Vec<Placement> = Vec::new();
                for r in kb_rows.values().filter(|r| r.state == KbState::Linked) {
                    let at = Place::recorded(r.kb_path.as_deref(), &r.path).kb_path();
                    let wanted = Place::of(&r.path, p.kb_directories).kb_path();
                    if at == wanted {
                        placed += 1;
                    } else {
                        unplaced.push(Placement {
                            path: r.path.clone(),
                            kb_path: at,
                            wanted,
                        });
                    }
                }
                let unplaced_count = unplaced.len() as u64;
                unplaced.sort_by(|a, b| a.path.cmp(&b.path));
                unplaced.truncate(EXAMPLES);
                let unpublished = rows
                    .values()
                    .filter(|r| {
                        (r.state == FileState::Indexed || r.has_no_reader())
                            && !kb_rows.contains_key(&r.path)
                    })
                    .count() as u64;
                Some(KnowledgeStatus {
                    target: match target {
                        KnowledgeTarget::Id(id) => format!("id {id}"),
                        KnowledgeTarget::Name { name, .. } => format!("name {name:?}"),
                    },
                    kb_id,
                    files: kb_files,
                    unpublished,
                    placed,
                    unplaced: unplaced_count,
                    unplaced_examples: unplaced,
                    directories: dirs.len() as u64,
                    directories_made: dirs.values().filter(|d| d.made).count() as u64,
                    failures: group(kb_rows.values().filter(|r| r.state == KbState::Failed).map(
                        |r| {
                            (
                                r.error_kind.as_ref().map(FailKind::as_str),
                                r.path.as_str(),
                                r.error.as_deref(),
                            )
                        },
                    )),
                })
            }
        };
    Ok(PipelineStatus {
        pipeline: p.name.clone(),
        collection: p.collection.clone(),
        sources: p.sources.iter().map(|s| super::display_path(s)).collect(),
        total_files: rows.len() as u64,
        files,
        chunks,
        indexed_bytes,
        last_run: view
            .ledger
            .recent_runs(&p.name, 1)?
            .into_iter()
            .next()
            .map(LastRun::from),
        backlog: Backlog::from(&plan),
        failures: group_rows(FileState::Failed),
        skipped,
        knowledge,
        qdrant_disk: match &view.config.qdrant {
            QdrantSettings::Embedded { path, .. } => disk_usage(path, &p.collection),
            QdrantSettings::Server { .. } => None,
        },
    })
}

/// Group `(kind, path, error)` by kind: most frequent first, examples sorted.
fn group<'a>(
    items: impl Iterator<Item = (Option<&'a str>, &'a str, Option<&'a str>)>,
) -> Vec<Group> {
    let mut by_kind: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (kind, path, error) in items {
        by_kind
            .entry(kind.unwrap_or("unknown"))
            .or_default()
            .push((path, error.unwrap_or("")));
    }
    let mut groups: Vec<Group> = by_kind
        .into_iter()
        .map(|(kind, mut items)| {
            items.sort();
            Group {
                kind: kind.to_owned(),
                count: items.len() as u64,
                example_error: items[0].1.to_owned(),
                examples: items
                    .iter()
                    .take(EXAMPLES)
                    .map(|(p, _)| (*p).to_owned())
                    .collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
    groups
}

/// Write the status as text.
pub fn render(out: &mut dyn Write, s: &Status) -> std::io::Result<()> {
    writeln!(
        out,
        "state {} — daemon {}",
        s.state_dir,
        if s.daemon_running {
            "running"
        } else {
            "not running"
        }
    )?;
    for p in &s.pipelines {
        writeln!(out)?;
        writeln!(
            out,
            "pipeline {} → collection {:?} ({})",
            p.pipeline,
            p.collection,
            p.sources.join(", ")
        )?;
        let states: Vec<String> = p
            .files
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            out,
            "  files:     {} ({} in total)",
            if states.is_empty() {
                "none".to_owned()
            } else {
                states.join(", ")
            },
            p.total_files
        )?;
        writeln!(
            out,
            "  chunks:    {} from {} of indexed files",
            p.chunks,
            human_bytes(p.indexed_bytes)
        )?;
        if let Some(d) = &p.qdrant_disk {
            let slots = d.vector_slots.map_or_else(String::new, |n| {
                format!(", {n} vector slots for {} chunks", p.chunks)
            });
            writeln!(out, "  qdrant:    {} on disk{slots}", human_bytes(d.bytes))?;
        }
        match &p.last_run {
            None => writeln!(out, "  last run:  never")?,
            Some(r) => writeln!(
                out,
                "  last run:  {} finished {} ({}), {:.1}s: {} added, {} updated, {} deleted, {} failed, {} chunks written",
                r.kind,
                human_time(r.finished_at),
                human_age(r.finished_at),
                r.elapsed_ms as f64 / 1000.0,
                r.added,
                r.updated,
                r.deleted,
                r.failed,
                r.chunks_written
            )?,
        }
        let todo: Vec<String> = p
            .backlog
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| format!("{n} {a}"))
            .collect();
        if todo.is_empty() {
            writeln!(out, "  backlog:   nothing to do")?;
        } else {
            writeln!(
                out,
                "  backlog:   {} (see `ragd plan --pipeline {}`)",
                todo.join(", "),
                p.pipeline
            )?;
        }
        if p.backlog.settings_changed {
            writeln!(
                out,
                "             settings changed: the next run re-embeds every file"
            )?;
        }
        write_groups(out, "failures", &p.failures)?;
        write_groups(out, "skipped", &p.skipped)?;
        if let Some(kb) = &p.knowledge {
            let states: Vec<String> = kb
                .files
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            writeln!(
                out,
                "  knowledge: {}{}: {}{}",
                kb.target,
                kb.kb_id
                    .as_ref()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default(),
                if states.is_empty() {
                    "no files yet".to_owned()
                } else {
                    states.join(", ")
                },
                if kb.unpublished > 0 {
                    format!(", {} not published yet", kb.unpublished)
                } else {
                    String::new()
                }
            )?;
            if kb.placed + kb.unplaced > 0 {
                writeln!(
                    out,
                    "  kb tree:   {} of {} linked files where the folder has them, in {} directories ({} made by ragd)",
                    kb.placed,
                    kb.placed + kb.unplaced,
                    kb.directories,
                    kb.directories_made
                )?;
            }
            if kb.unplaced > 0 {
                writeln!(
                    out,
                    "             {} elsewhere (the next sync moves them, unless the server has no directories):",
                    kb.unplaced
                )?;
                for u in &kb.unplaced_examples {
                    writeln!(
                        out,
                        "               {}: at {}, wanted at {}",
                        u.path, u.kb_path, u.wanted
                    )?;
                }
                if kb.unplaced as usize > kb.unplaced_examples.len() {
                    writeln!(out, "               …")?;
                }
            }
            write_groups(out, "refused", &kb.failures)?;
        }
    }
    Ok(())
}

fn write_groups(out: &mut dyn Write, title: &str, groups: &[Group]) -> std::io::Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    writeln!(out, "  {title}:")?;
    for g in groups {
        let more = if g.count as usize > g.examples.len() {
            ", …"
        } else {
            ""
        };
        writeln!(
            out,
            "    {} ({}): {}{more}",
            g.kind,
            g.count,
            g.examples.join(", ")
        )?;
        if !g.example_error.is_empty() {
            writeln!(out, "      e.g. {}", g.example_error)?;
        }
    }
    Ok(())
}

/// `ragd status`.
pub fn run(view: &View, pipeline: Option<&str>, json: bool) -> Result<super::Outcome, OpsError> {
    let mut pipelines = Vec::new();
    for p in view.pipelines(pipeline)? {
        pipelines.push(pipeline_status(view, p)?);
    }
    let status = Status {
        state_dir: super::display_path(&view.config.state_dir),
        daemon_running: super::daemon_running(&view.config),
        pipelines,
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else {
        render(&mut out, &status)?;
    }
    Ok(super::Outcome::Done)
}
