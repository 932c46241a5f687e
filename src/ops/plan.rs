//! `ragd plan`: what the next sync would do, changing nothing.
//!
//! The same planner a run uses ([`crate::pipeline::plan::plan`]) over a fresh
//! scan and the ledger, including the "settings changed: rebuild everything"
//! decision. Moves (same bytes, new path) are found the way the daemon finds
//! them; `ragd index` re-embeds a moved file instead.

use std::io::Write;

use serde::Serialize;

use super::{OpsError, View};
use crate::config::PipelineConfig;
use crate::ledger::Ledger;
use crate::pipeline::moves::take_moves;
use crate::pipeline::plan::{self, Reason};
use crate::publish::tree::Place;
use crate::triggers::scan;

/// What will happen to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// New file.
    Add,
    /// Changed file (size or mtime differ); re-embedded only if its text changed.
    Update,
    /// An earlier attempt was interrupted or failed transiently.
    Retry,
    /// Settings that shape vectors changed: re-embedded.
    Rebuild,
    /// Same bytes at a new path (the daemon moves its points; `ragd index`
    /// re-embeds).
    Move,
    /// Gone from the folder: its points and knowledge-base file are removed.
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Retry => "retry",
            Action::Rebuild => "rebuild",
            Action::Move => "move",
            Action::Delete => "delete",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub action: Action,
    pub path: String,
    /// For a move: where the file was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With a knowledge base: where the file will sit in it after the sync
    /// (`dir/name`, as `ragd why` shows it); for a delete, where it sits now.
    /// The directories are the configured ones (`[knowledge] directories`): a
    /// server without directories keeps every file at the root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb_path: Option<String>,
    /// With a knowledge base: where the file sits in it now, when that is not
    /// `kb_path` (a moved or renamed file, or one an older ragd published flat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb_from: Option<String>,
}

/// One pipeline's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PipelinePlan {
    pub pipeline: String,
    /// Counts by action (every action present, zeros included).
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    pub changes: Vec<Change>,
    pub unchanged: usize,
    /// Deletions held back because a source folder could not be read or turned
    /// up empty (not those of the mass-delete rail).
    pub held_back: usize,
    /// The mass-delete rail would hold deletions back: `(would delete, of files)`.
    pub mass_delete_blocked: Option<(usize, usize)>,
    /// The pipeline's model or chunking changed since the last run.
    pub settings_changed: bool,
    pub scan_problems: Vec<String>,
}

impl PipelinePlan {
    /// Files the next run would touch.
    pub fn total(&self) -> usize {
        self.changes.len()
    }
}

/// Compute the plan of one pipeline. Blocking (scans the folder, hashes
/// move candidates).
pub fn compute(
    pipeline: &PipelineConfig,
    ledger: &Ledger,
    max_file_bytes: u64,
) -> Result<PipelinePlan, OpsError> {
    let scanned = scan::scan(pipeline);
    let settings_changed = ledger.pipeline_meta(&pipeline.name)?.is_some_and(|m| {
        m.fingerprint != crate::pipeline::fingerprint(pipeline)
            || m.collection != pipeline.collection
    });
    // The same rail as a run without `--allow-mass-delete`.
    let mut p = ledger.with_files(&pipeline.name, |rows| {
        plan::plan(
            &scanned,
            rows,
            settings_changed,
            plan::DeleteRail::default(),
        )
    })?;

    let moves = find_moves(&mut p, max_file_bytes);
    let mut changes: Vec<Change> = p
        .work
        .iter()
        .map(|w| Change {
            action: match w.reason {
                Reason::New => Action::Add,
                Reason::Changed => Action::Update,
                Reason::Resume => Action::Retry,
                Reason::Forced => Action::Rebuild,
            },
            path: w.file.key.to_string(),
            from: None,
            kb_path: None,
            kb_from: None,
        })
        .collect();
    changes.extend(moves);
    changes.extend(p.deletes.iter().map(|r| Change {
        action: Action::Delete,
        path: r.path.clone(),
        from: None,
        kb_path: None,
        kb_from: None,
    }));
    if pipeline.knowledge.is_some() {
        place_in_knowledge_base(&mut changes, pipeline, ledger)?;
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let mut counts = std::collections::BTreeMap::new();
    for a in [
        Action::Add,
        Action::Update,
        Action::Retry,
        Action::Rebuild,
        Action::Move,
        Action::Delete,
    ] {
        counts.insert(a.as_str(), changes.iter().filter(|c| c.action == a).count());
    }
    Ok(PipelinePlan {
        pipeline: pipeline.name.clone(),
        counts,
        changes,
        unchanged: p.unchanged,
        held_back: p.held_back,
        mass_delete_blocked: p.mass_delete_blocked,
        settings_changed,
        scan_problems: scanned
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path.display(), p.message))
            .collect(),
    })
}

/// The moves the daemon would make (`pipeline::moves::take_moves`), as changes.
fn find_moves(p: &mut plan::Plan, max_file_bytes: u64) -> Vec<Change> {
    take_moves(p, max_file_bytes)
        .into_iter()
        .map(|m| Change {
            action: Action::Move,
            path: m.to.file.key.into_string(),
            from: Some(m.from.path),
            kb_path: None,
            kb_from: None,
        })
        .collect()
}

/// Each change's place in the knowledge base: where the folder puts it
/// ([`Place::of`], the rule publishing follows) and, from the file's
/// `kb_files` row, where it is now. A deleted file's place is where it is.
fn place_in_knowledge_base(
    changes: &mut [Change],
    pipeline: &PipelineConfig,
    ledger: &Ledger,
) -> Result<(), OpsError> {
    let rows = ledger.kb_files(&pipeline.name)?;
    for c in changes {
        let was = rows
            .get(c.from.as_deref().unwrap_or(&c.path))
            .map(|r| Place::recorded(r.kb_path.as_deref(), &r.path).kb_path());
        let will = match c.action {
            Action::Delete => was.clone(),
            _ => Some(Place::of(&c.path, pipeline.kb_directories).kb_path()),
        };
        c.kb_from = was.filter(|w| Some(w) != will.as_ref());
        c.kb_path = will;
    }
    Ok(())
}

/// Paths listed per action before the rest are summarised.
const LIST_LIMIT: usize = 50;

/// Write the plan as text.
pub fn render(out: &mut dyn Write, plans: &[PipelinePlan]) -> std::io::Result<()> {
    for p in plans {
        let summary: Vec<String> = p
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| format!("{n} {a}"))
            .collect();
        if summary.is_empty() {
            writeln!(
                out,
                "pipeline {}: nothing to do ({} unchanged)",
                p.pipeline, p.unchanged
            )?;
        } else {
            writeln!(
                out,
                "pipeline {}: {} ({} unchanged)",
                p.pipeline,
                summary.join(", "),
                p.unchanged
            )?;
        }
        if p.settings_changed {
            writeln!(
                out,
                "  model or chunking settings changed since the last run: every file is re-embedded"
            )?;
        }
        if let Some((n, total)) = p.mass_delete_blocked {
            writeln!(
                out,
                "  mass delete held back: {n} of {total} files are gone; check the source \
                 folders, then run `ragd index --allow-mass-delete`"
            )?;
        }
        if p.held_back > 0 {
            writeln!(
                out,
                "  {} deletion(s) held back: a source folder could not be read",
                p.held_back
            )?;
        }
        for s in &p.scan_problems {
            writeln!(out, "  scan: {s}")?;
        }
        for (i, c) in p.changes.iter().enumerate() {
            if i == LIST_LIMIT {
                writeln!(out, "  … and {} more", p.changes.len() - LIST_LIMIT)?;
                break;
            }
            let from = c
                .from
                .as_ref()
                .map(|f| format!(" (from {f})"))
                .unwrap_or_default();
            let kb = match (&c.kb_path, &c.kb_from) {
                (Some(to), Some(was)) => format!("  [knowledge base: {to}, from {was}]"),
                (Some(to), None) => format!("  [knowledge base: {to}]"),
                _ => String::new(),
            };
            writeln!(out, "  {:<7} {}{from}{kb}", c.action.as_str(), c.path)?;
        }
    }
    Ok(())
}

/// `ragd plan`: print the plan of every pipeline (or one).
pub fn run(view: &View, pipeline: Option<&str>, json: bool) -> Result<super::Outcome, OpsError> {
    let mut plans = Vec::new();
    for p in view.pipelines(pipeline)? {
        plans.push(compute(p, &view.ledger, view.config.limits.max_file_bytes)?);
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "pipelines": plans }))?;
        writeln!(out)?;
    } else {
        render(&mut out, &plans)?;
    }
    Ok(super::Outcome::Done)
}
