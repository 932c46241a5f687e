//! Where files sit in the knowledge base's directory tree (Open WebUI 0.12+):
//! directories made as needed and removed once emptied, moved and renamed files
//! and folders put in place with `file/move`, renames and directory updates —
//! nothing is uploaded or processed again.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};

use super::tree::{Place, ancestry, folder_renames, split_dir};
use super::{Outcome, PublishError, PublishSummary, Publisher, UNKNOWN_PLACE};
use crate::config::PipelineConfig;
use crate::ledger::{KbDir, KbRecord, KbState, Ledger};
use crate::open_webui::OwuiError;

impl Publisher {
    /// The id of the knowledge-base directory `dir` (`a/b`), made with its parents
    /// as needed and recorded in the ledger; `None` for the root. Each level is
    /// looked for before it is created: a creation whose answer was lost, one
    /// made by another pipeline or by hand (used, but never removed by ragd), since
    /// Open WebUI accepts a second root directory of the same name. An intent is
    /// recorded before each creation, so that the one a crash leaves unrecorded is
    /// known as ragd's when it is found.
    pub(super) async fn ensure_dir(
        &self,
        ledger: &Ledger,
        pipeline: &str,
        kb: &str,
        dir: &str,
        out: &mut Outcome,
    ) -> Result<Result<Option<String>, OwuiError>, PublishError> {
        if dir.is_empty() {
            return Ok(Ok(None));
        }
        // The common case, a directory made before: one lookup by key.
        if let Some(d) = ledger.kb_dir(pipeline, kb, dir)?
            && !d.dir_id.is_empty()
        {
            return Ok(Ok(Some(d.dir_id)));
        }
        let _one_at_a_time = self.dirs.lock().await;
        let known = ledger.kb_dirs(pipeline, kb)?;
        let mut parent: Option<String> = None;
        let mut parent_path = "";
        for path in ancestry(dir) {
            let intended = match known.get(path) {
                Some(d) if !d.dir_id.is_empty() => {
                    parent = Some(d.dir_id.clone());
                    parent_path = path;
                    continue;
                }
                Some(_) => true,
                None => false,
            };
            let (_, name) = split_dir(path);
            let found = match self.client.subdirectories(kb, parent.as_deref()).await {
                Ok(dirs) => dirs.into_iter().find(|d| d.name == name),
                Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
                Err(e) => return Ok(Err(e)),
            };
            let (dir_id, made) = match found {
                Some(d) => (d.id, intended),
                None => {
                    let intent = KbDir {
                        path: path.to_owned(),
                        dir_id: String::new(),
                        made: true,
                    };
                    ledger.put_kb_dir(pipeline, kb, &intent)?;
                    match self
                        .client
                        .create_directory(kb, name, parent.as_deref())
                        .await
                    {
                        Ok(d) => {
                            out.dirs_created += 1;
                            (d.id, true)
                        }
                        Err(e) if e.stops_pipeline() => {
                            return Err(PublishError::Refused(e));
                        }
                        Err(e) => {
                            if matches!(&e, OwuiError::NotFound { detail } if detail.contains("directory"))
                            {
                                // The parent was deleted in Open WebUI since ragd
                                // made it: made again on the next try.
                                ledger.forget_kb_dirs(pipeline, kb, parent_path)?;
                            }
                            return Ok(Err(e));
                        }
                    }
                }
            };
            ledger.put_kb_dir(
                pipeline,
                kb,
                &KbDir {
                    path: path.to_owned(),
                    dir_id: dir_id.clone(),
                    made,
                },
            )?;
            parent = Some(dir_id);
            parent_path = path;
        }
        Ok(Ok(parent))
    }

    /// Put every linked file where the folder has it in the knowledge base: in
    /// the directory of its path, under its own name. This moves and renames what
    /// [`Action::Move`] moved in the ledger, and, on the first run over a base an
    /// older ragd published flat, every file into its directory: `file/move` and
    /// `files/{id}/rename` only, nothing uploaded or processed again. Then the
    /// directories ragd made that nothing needs any more are removed.
    pub(super) async fn place_files(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        stopping: &(dyn Fn() -> bool + Sync),
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        if !self.client.supports_directories() {
            return Ok(());
        }
        let tree = pipeline.kb_directories;
        // A directory rename a crash cut short is finished first: until it is,
        // the ledger's tree and the base's differ without either knowing.
        for (from, to) in ledger.pending_dir_renames(&pipeline.name, kb)? {
            self.rename_dir(pipeline, ledger, kb, &from, &to, summary)
                .await?;
        }
        let misplaced_rows = || {
            ledger.with_kb_files(&pipeline.name, |rows| {
                rows.filter(|r| r.kb_id == kb && r.state == KbState::Linked && r.file_id.is_some())
                    .filter_map(|r| {
                        let want = Place::of(&r.path, tree);
                        (Place::recorded(r.kb_path.as_deref(), &r.path) != want)
                            .then_some((r, want))
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut misplaced = misplaced_rows()?;
        if misplaced.len() > 1
            && self
                .rename_folders(pipeline, ledger, kb, &misplaced, summary)
                .await?
        {
            misplaced = misplaced_rows()?;
        }
        let planned = misplaced.len();
        let results: Vec<Result<Outcome, PublishError>> = stream::iter(misplaced)
            .take_while(|_| std::future::ready(!stopping()))
            .map(|(row, want)| self.place(row, want, ledger, kb))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        summary.postponed += planned - results.len();
        let mut settled = planned == results.len();
        for r in results {
            let o = r?;
            summary.placed += o.placed;
            summary.dirs_created += o.dirs_created;
            if let Some(why) = o.deferred {
                settled = false;
                summary.deferred += 1;
                summary.problems.push((o.path, why));
            }
        }
        if settled {
            self.prune_dirs(pipeline, ledger, kb, summary).await?;
        }
        Ok(())
    }

    /// Rename (or move) in Open WebUI each directory ragd made whose folder was
    /// renamed or moved whole ([`folder_renames`]): one request where moving the
    /// files would take one a file. Whether any was; a folder this cannot do
    /// (a name taken there, say) is left to the moves file by file.
    pub(super) async fn rename_folders(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        misplaced: &[(KbRecord, Place)],
        summary: &mut PublishSummary,
    ) -> Result<bool, PublishError> {
        let moving: HashSet<&str> = misplaced.iter().map(|(r, _)| r.path.as_str()).collect();
        let moves: Vec<(Place, Place)> = misplaced
            .iter()
            .map(|(r, want)| (Place::recorded(r.kb_path.as_deref(), &r.path), want.clone()))
            .collect();
        let settled: Vec<Place> = ledger.with_kb_files(&pipeline.name, |rows| {
            rows.filter(|r| r.kb_id == kb && !moving.contains(r.path.as_str()))
                .map(|r| Place::recorded(r.kb_path.as_deref(), &r.path))
                .collect()
        })?;
        let mut renamed = false;
        for (from, to) in folder_renames(&moves, settled.iter()) {
            renamed |= self
                .rename_dir(pipeline, ledger, kb, &from, &to, summary)
                .await?;
        }
        Ok(renamed)
    }

    /// Rename (or move) the directory ragd made at `from` to `to`, write-ahead:
    /// the intent is recorded before the request and ended with the ledger's
    /// rename, so a crash in between is finished by the next sync
    /// ([`Self::place_files`]). Whether it was renamed; one that cannot be (not
    /// ragd's, `to` taken, refused by the server) is left to the moves file by
    /// file.
    async fn rename_dir(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        from: &str,
        to: &str,
        summary: &mut PublishSummary,
    ) -> Result<bool, PublishError> {
        let dirs = ledger.kb_dirs(&pipeline.name, kb)?;
        let Some(dir) = dirs.get(from).filter(|d| d.made && !d.dir_id.is_empty()) else {
            ledger.drop_dir_rename(&pipeline.name, kb, from)?;
            return Ok(false);
        };
        if dirs.contains_key(to) {
            ledger.drop_dir_rename(&pipeline.name, kb, from)?;
            return Ok(false);
        }
        let (parent, name) = split_dir(to);
        let mut out = Outcome::default();
        let parent_id = match self
            .ensure_dir(ledger, &pipeline.name, kb, parent, &mut out)
            .await?
        {
            Ok(id) => id,
            Err(_) => return Ok(false),
        };
        summary.dirs_created += out.dirs_created;
        ledger.begin_dir_rename(&pipeline.name, kb, from, to)?;
        match self
            .client
            .update_directory(kb, &dir.dir_id, Some(name), Some(parent_id.as_deref()))
            .await
        {
            Ok(_) => {}
            Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
            Err(e) => {
                tracing::info!(pipeline = %pipeline.name, from = %from, to = %to, error = %e,
                    "could not rename the directory; moving its files one by one");
                ledger.drop_dir_rename(&pipeline.name, kb, from)?;
                return Ok(false);
            }
        }
        crate::failpoint::hit("kb.after_dir_rename");
        ledger.rename_kb_dirs(&pipeline.name, kb, from, to)?;
        summary.dirs_renamed += 1;
        Ok(true)
    }

    /// Move and rename one linked file to `want`; see [`Self::place_files`].
    pub(super) async fn place(
        &self,
        row: KbRecord,
        want: Place,
        ledger: &Ledger,
        kb: &str,
    ) -> Result<Outcome, PublishError> {
        let at = Place::recorded(row.kb_path.as_deref(), &row.path);
        // Not known (an adopted upload, or a placement a crash cut short): it
        // is moved and named where it belongs, whatever it was.
        let unknown = row.kb_path.as_deref() == Some(UNKNOWN_PLACE);
        // Write-ahead: the place is unknown from the first request on, so that
        // a crash between Open WebUI's move or rename and the record below is
        // placed again by the next sync, not taken as done or as never begun.
        let moving = |ledger: &Ledger| {
            if unknown {
                Ok(())
            } else {
                ledger.set_kb_path(&row.pipeline, &row.path, UNKNOWN_PLACE)
            }
        };
        let file_id = row.file_id.clone().unwrap_or_default();
        let mut out = Outcome {
            path: row.path.clone(),
            ..Default::default()
        };
        let defer = |e: OwuiError, what: &str, mut out: Outcome| {
            if e.stops_pipeline() {
                return Err(PublishError::Refused(e));
            }
            out.deferred = Some(format!("{what}: {e}"));
            Ok(out)
        };
        if unknown || at.dir != want.dir {
            let dir = match self
                .ensure_dir(ledger, &row.pipeline, kb, &want.dir, &mut out)
                .await?
            {
                Ok(dir) => dir,
                Err(OwuiError::Unsupported { .. }) => return Ok(out),
                Err(e) => return defer(e, "making its directory", out),
            };
            moving(ledger)?;
            match self.client.move_file(kb, &file_id, dir.as_deref()).await {
                Ok(()) => {}
                Err(OwuiError::NotFound { detail }) if detail.contains("directory") => {
                    // Deleted in Open WebUI since ragd made it: made again next time.
                    ledger.forget_kb_dirs(&row.pipeline, kb, &want.dir)?;
                    out.deferred = Some(format!(
                        "its directory {:?} is gone from the knowledge base; made again on the next sync",
                        want.dir
                    ));
                    return Ok(out);
                }
                Err(e) => return defer(e, "moving it in the knowledge base", out),
            }
        }
        if unknown || at.name != want.name {
            moving(ledger)?;
            if let Err(e) = self.client.rename_file(&file_id, &want.name).await {
                return defer(e, "renaming it in the knowledge base", out);
            }
            crate::failpoint::hit("kb.after_file_rename");
        }
        ledger.set_kb_path(&row.pipeline, &row.path, &want.kb_path())?;
        out.placed = 1;
        Ok(out)
    }

    /// Remove the directories ragd made that no file of the pipeline is in or
    /// goes to any more, deepest first, and only once Open WebUI lists nothing in
    /// them: a directory someone put a file in stays (ragd forgets it). Removed
    /// with `move_files`, so that a file put there meanwhile goes up a level
    /// instead of being deleted.
    pub(super) async fn prune_dirs(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        let dirs = ledger.kb_dirs(&pipeline.name, kb)?;
        if dirs.is_empty() {
            return Ok(());
        }
        let tree = pipeline.kb_directories;
        let needed: HashSet<String> = ledger.with_kb_files(&pipeline.name, |rows| {
            let mut needed = HashSet::new();
            for r in rows.filter(|r| r.kb_id == kb) {
                // Where it goes, and where it is until it is moved there.
                let at = Place::recorded(r.kb_path.as_deref(), &r.path);
                for place in [Place::of(&r.path, tree), at] {
                    for dir in ancestry(&place.dir) {
                        if !needed.contains(dir) {
                            needed.insert(dir.to_owned());
                        }
                    }
                }
            }
            needed
        })?;
        let mut unused: Vec<&KbDir> = dirs
            .values()
            .filter(|d| !needed.contains(&d.path))
            .collect();
        unused.sort_by_key(|d| std::cmp::Reverse(d.path.matches('/').count()));
        let _one_at_a_time = self.dirs.lock().await;
        for d in unused {
            if d.made && !d.dir_id.is_empty() {
                let empty = match self.client.directory_is_empty(kb, &d.dir_id).await {
                    Ok(empty) => empty,
                    Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
                    Err(e) => {
                        summary
                            .problems
                            .push((d.path.clone(), format!("checking an unused directory: {e}")));
                        continue;
                    }
                };
                if empty {
                    match self.client.delete_directory(kb, &d.dir_id, true).await {
                        Ok(()) | Err(OwuiError::NotFound { .. }) => summary.dirs_removed += 1,
                        Err(e) if e.stops_pipeline() => {
                            return Err(PublishError::Refused(e));
                        }
                        Err(e) => {
                            summary.problems.push((
                                d.path.clone(),
                                format!("removing an emptied directory: {e}"),
                            ));
                            continue;
                        }
                    }
                } else {
                    tracing::info!(pipeline = %pipeline.name, directory = %d.path,
                        "a directory ragd made and no longer needs holds files it did not put there; left in place");
                }
            }
            ledger.forget_kb_dirs(&pipeline.name, kb, &d.path)?;
        }
        Ok(())
    }
}
