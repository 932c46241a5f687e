//! The planner: compare a scan with the ledger and decide what each file needs.
//!
//! Pure: no IO beyond what was scanned and read from the ledger, so `ragd plan`
//! can show exactly what a run would do.

use std::collections::{HashMap, HashSet};

use crate::ledger::{FailKind, FileRecord, FileState};
use crate::triggers::scan::{ScanResult, ScannedFile};

/// Why a file is in the work list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not in the ledger.
    New,
    /// Size or mtime differ from the ledger.
    Changed,
    /// A crash or error left it mid-way (`indexing`), or a transient failure is due a retry.
    Resume,
    /// Settings that shape vectors changed: rebuild.
    Forced,
}

/// A file that must be read.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub file: ScannedFile,
    /// Boxed: a first index has none, and the whole work list is held for the
    /// run, so an inline record (about 200 bytes) would cost that per file.
    pub previous: Option<Box<FileRecord>>,
    pub reason: Reason,
}

/// What one run will do.
#[derive(Debug, Default)]
pub struct Plan {
    pub work: Vec<WorkItem>,
    /// Ledger rows whose files are gone.
    pub deletes: Vec<FileRecord>,
    /// Rows left as they are.
    pub unchanged: usize,
    /// Deletions held back because their source folder could not be read or
    /// turned up empty. Not those of the mass-delete rail, which are
    /// `mass_delete_blocked`'s: each held-back delete has one reason, logged
    /// and counted once under it.
    pub held_back: usize,
    /// Deletions held back by the mass-delete rail: `(would delete, of files)`.
    pub mass_delete_blocked: Option<(usize, usize)>,
}

impl Plan {
    /// What became of the plan's deletes.
    pub fn verdict(&self) -> DeleteVerdict {
        DeleteVerdict {
            deletes: self.deletes.len(),
            held_back: self.held_back,
            mass_delete_blocked: self.mass_delete_blocked,
        }
    }
}

/// A plan's deletes judged, without the plan. A reindex plans the live ledger
/// against its build's scan to learn what switching to the build would delete
/// (the switch drops every live row the build lacks), by the same rules as any
/// run's deletes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteVerdict {
    /// Deletes the rules let through.
    pub deletes: usize,
    /// Held back: under a folder the scan could not read, or of a source that
    /// turned up empty ([`Plan::held_back`]).
    pub held_back: usize,
    /// Held back by the mass-delete rail: `(would delete, of files)`.
    pub mass_delete_blocked: Option<(usize, usize)>,
}

impl DeleteVerdict {
    /// Whether any delete was held back, for either reason.
    pub fn holds_back(&self) -> bool {
        self.held_back > 0 || self.mass_delete_blocked.is_some()
    }
}

/// The mass-delete safety rail: a run that would delete more than `max_share` of a
/// pipeline's files deletes nothing (unless allowed), because a vanished mount or
/// a bad glob looks exactly like "everything was deleted".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeleteRail {
    /// Largest share of the pipeline's files one run may delete (0..=1).
    pub max_share: f64,
    /// Pipelines with fewer files than this are exempt: deleting 3 of 4 notes is
    /// routine, not a disaster.
    pub min_files: usize,
    /// `--allow-mass-delete`: the operator confirmed.
    pub allow: bool,
}

impl Default for DeleteRail {
    fn default() -> Self {
        DeleteRail {
            max_share: 0.5,
            min_files: 10,
            allow: false,
        }
    }
}

/// Build the plan. `force` re-processes every file (settings changed).
///
/// `ledger` is the pipeline's rows in path order (byte-wise, as the ledger
/// returns them and as `str` orders), and is merged with the scan in one pass:
/// a row is kept only if its file needs work or is gone, so planning a folder
/// where nothing changed holds no copy of the ledger (about 0.6 KB a file).
pub fn plan(
    scan: &ScanResult,
    ledger: impl IntoIterator<Item = FileRecord>,
    force: bool,
    rail: DeleteRail,
) -> Plan {
    let mut plan = Plan::default();
    // The scan comes sorted; sorting references again is cheap and keeps the
    // merge right whatever the caller passed.
    let mut files: Vec<&ScannedFile> = scan.files.iter().collect();
    files.sort_by(|a, b| a.key.cmp(&b.key));
    let mut rows = ledger.into_iter().peekable();
    let mut total = 0usize;
    let mut gone = Vec::new();
    for file in files {
        while let Some(row) = rows.next_if(|r| r.path.as_str() < file.key.as_str()) {
            total += 1;
            gone.push(row);
        }
        let previous = rows.next_if(|r| r.path == file.key.as_str());
        total += usize::from(previous.is_some());
        let reason = match &previous {
            None => Some(Reason::New),
            Some(_) if force => Some(Reason::Forced),
            Some(r) => needs_work(r, file),
        };
        match reason {
            Some(reason) => plan.work.push(WorkItem {
                file: file.clone(),
                previous: previous.map(Box::new),
                reason,
            }),
            None => plan.unchanged += 1,
        }
    }
    for row in rows {
        total += 1;
        gone.push(row);
    }
    let scanned_sources: HashSet<u32> = scan.files.iter().map(|f| f.source).collect();
    for record in gone {
        // A folder that could not be read says nothing about its files: never
        // delete on the strength of a failed scan. And a source that held
        // files and now shows none is a vanished mount or an unreadable share
        // far more often than a deliberate wipe.
        if scan.unsure_of(record.source, &record.path) || !scanned_sources.contains(&record.source)
        {
            plan.held_back += 1;
            continue;
        }
        plan.deletes.push(record);
    }
    // The work list lives for the whole run; growth by doubling left up to
    // half of it unused (0.6 MB of 1.4 MB at 10,000 new files).
    plan.work.shrink_to_fit();
    let share = unpaired_deletes(&plan) as f64 / total.max(1) as f64;
    if !rail.allow && total >= rail.min_files && share > rail.max_share {
        plan.mass_delete_blocked = Some((plan.deletes.len(), total));
        plan.deletes.clear();
    }
    plan
}

/// Deletes that no new file of the same size and name could be the move of.
/// The rail guards against a vanished mount, a wiped folder or a glob that
/// stopped matching, none of which brings new files; a renamed folder brings
/// one new file per delete, with its name and size, and is not a mass delete
/// (the daemon then moves the points; `ragd index` re-adds them from the
/// embedding cache). Size alone paired a wipe with any unrelated new files of
/// the same sizes, which generated or fixed-size files often have.
fn unpaired_deletes(plan: &Plan) -> usize {
    let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
    let mut new_files: HashMap<(u64, String), usize> = HashMap::new();
    for w in plan.work.iter().filter(|w| w.reason == Reason::New) {
        *new_files
            .entry((w.file.size, base(w.file.key.as_str())))
            .or_default() += 1;
    }
    plan.deletes
        .iter()
        .filter(|r| match new_files.get_mut(&(r.size, base(&r.path))) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .count()
}

fn needs_work(r: &FileRecord, file: &ScannedFile) -> Option<Reason> {
    let same_meta = r.size == file.size && r.mtime_ns == file.mtime_ns;
    match r.state {
        FileState::Indexing | FileState::Deleting => Some(Reason::Resume),
        _ if !same_meta => Some(Reason::Changed),
        // Skipped as unsupported by a ragd that could not read or publish its
        // format: this one looks again.
        FileState::Skipped if r.error_kind == Some(FailKind::UnsupportedType) => {
            let path = std::path::Path::new(&r.path);
            (crate::extract::format_for(path).is_some()
                || crate::extract::published_without_reader(path))
            .then_some(Reason::Resume)
        }
        FileState::Indexed | FileState::Skipped => None,
        FileState::Failed => r.is_retried().then_some(Reason::Resume),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::FileRecord;
    use crate::triggers::key::FileKey;

    fn scanned(path: &str, size: u64, mtime: i64) -> ScannedFile {
        ScannedFile {
            source: 0,
            key: FileKey::stored(path),
            abs_path: path.into(),
            size,
            mtime_ns: mtime,
        }
    }

    /// Ledger rows as the ledger gives them: in path order.
    fn sorted(mut rows: Vec<FileRecord>) -> Vec<FileRecord> {
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        rows
    }

    fn record(path: &str, size: u64, mtime: i64, state: FileState) -> FileRecord {
        let mut r = FileRecord::new("p", path, 0, size, mtime, "h".into());
        r.state = state;
        r
    }

    #[test]
    fn classifies_new_changed_unchanged_deleted() {
        let scan = ScanResult {
            files: vec![
                scanned("new.md", 1, 1),
                scanned("same.md", 2, 2),
                scanned("changed.md", 3, 3),
            ],
            ..Default::default()
        };
        let ledger = sorted(vec![
            record("same.md", 2, 2, FileState::Indexed),
            record("changed.md", 3, 4, FileState::Indexed),
            record("gone.md", 1, 1, FileState::Indexed),
        ]);
        let p = plan(&scan, ledger.clone(), false, DeleteRail::default());
        let work: Vec<_> = p
            .work
            .iter()
            .map(|w| (w.file.key.as_str(), w.reason))
            .collect();
        assert_eq!(
            work,
            vec![("changed.md", Reason::Changed), ("new.md", Reason::New)]
        );
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(p.deletes[0].path, "gone.md");
    }

    #[test]
    fn files_an_older_ragd_could_not_read_are_looked_at_again() {
        let names = ["old.doc", "old.docx", "old.xyz"];
        let scan = ScanResult {
            files: names.iter().map(|n| scanned(n, 1, 1)).collect(),
            ..Default::default()
        };
        let ledger = sorted(
            names
                .iter()
                .map(|n| {
                    let mut r = record(n, 1, 1, FileState::Skipped);
                    r.error_kind = Some(FailKind::UnsupportedType);
                    r
                })
                .collect(),
        );
        let p = plan(&scan, ledger, false, DeleteRail::default());
        let work: Vec<_> = p.work.iter().map(|w| w.file.key.as_str()).collect();
        // doc is published now, docx read; .xyz is still nobody's.
        assert_eq!(work, ["old.doc", "old.docx"]);
        assert_eq!(p.unchanged, 1);
    }

    #[test]
    fn missing_source_holds_back_deletes() {
        let scan = ScanResult {
            missing_sources: vec![0],
            ..Default::default()
        };
        let ledger = vec![record("a.md", 1, 1, FileState::Indexed)];
        let p = plan(&scan, ledger.clone(), false, DeleteRail::default());
        assert!(p.deletes.is_empty());
        assert_eq!(p.held_back, 1);
    }

    #[test]
    fn a_source_that_turned_up_empty_deletes_nothing() {
        let scan = ScanResult::default();
        let ledger = vec![record("a.md", 1, 1, FileState::Indexed)];
        let p = plan(&scan, ledger.clone(), false, DeleteRail::default());
        assert!(p.deletes.is_empty());
        assert_eq!(p.held_back, 1);
    }

    #[test]
    fn mass_delete_is_held_back_unless_allowed() {
        let keep: Vec<_> = (0..4).map(|i| scanned(&format!("k{i}.md"), 1, 1)).collect();
        let scan = ScanResult {
            files: keep,
            ..Default::default()
        };
        let ledger = sorted(
            (0..4)
                .map(|i| record(&format!("k{i}.md"), 1, 1, FileState::Indexed))
                .chain((0..8).map(|i| record(&format!("d{i}.md"), 1, 1, FileState::Indexed)))
                .collect(),
        );
        let p = plan(&scan, ledger.clone(), false, DeleteRail::default());
        assert!(p.deletes.is_empty());
        assert_eq!(p.mass_delete_blocked, Some((8, 12)));
        // Held back by the rail, not as unreadable: counted once, under its reason.
        assert_eq!(p.held_back, 0);
        let allowed = DeleteRail {
            allow: true,
            ..Default::default()
        };
        assert_eq!(plan(&scan, ledger.clone(), false, allowed).deletes.len(), 8);
    }

    #[test]
    fn a_renamed_folder_is_not_a_mass_delete_but_other_new_files_do_not_excuse_one() {
        // 8 of 12 files renamed: 8 deletes, each with a new file of its size.
        let mut files: Vec<_> = (0..4).map(|i| scanned(&format!("k{i}.md"), 1, 1)).collect();
        files.extend((0..8).map(|i| scanned(&format!("renamed/d{i}.md"), 100 + i, 1)));
        let ledger = sorted(
            (0..4)
                .map(|i| record(&format!("k{i}.md"), 1, 1, FileState::Indexed))
                .chain((0..8).map(|i| record(&format!("d{i}.md"), 100 + i, 1, FileState::Indexed)))
                .collect(),
        );
        let scan = ScanResult {
            files: files.clone(),
            ..Default::default()
        };
        let p = plan(&scan, ledger.clone(), false, DeleteRail::default());
        assert_eq!(p.mass_delete_blocked, None);
        assert_eq!((p.deletes.len(), p.work.len()), (8, 8));

        // The same 8 deletes next to 8 new files of other sizes: held back.
        files.truncate(4);
        files.extend((0..8).map(|i| scanned(&format!("other/n{i}.md"), 500 + i, 1)));
        let scan = ScanResult {
            files,
            ..Default::default()
        };
        let p = plan(&scan, ledger, false, DeleteRail::default());
        assert_eq!(p.mass_delete_blocked, Some((8, 12)));
        assert!(p.deletes.is_empty());
    }

    #[test]
    fn new_files_of_the_same_sizes_but_other_names_do_not_excuse_a_mass_delete() {
        // A wipe of 8 generated files of fixed sizes, and 8 unrelated new
        // files that happen to have those sizes: not a move.
        let mut files: Vec<_> = (0..4).map(|i| scanned(&format!("k{i}.md"), 1, 1)).collect();
        files.extend((0..8).map(|i| scanned(&format!("other/n{i}.md"), 100 + i, 1)));
        let ledger = sorted(
            (0..4)
                .map(|i| record(&format!("k{i}.md"), 1, 1, FileState::Indexed))
                .chain((0..8).map(|i| record(&format!("d{i}.md"), 100 + i, 1, FileState::Indexed)))
                .collect(),
        );
        let scan = ScanResult {
            files,
            ..Default::default()
        };
        let p = plan(&scan, ledger, false, DeleteRail::default());
        assert_eq!(p.mass_delete_blocked, Some((8, 12)));
    }

    #[test]
    fn files_under_a_folder_the_scan_could_not_read_are_not_deleted() {
        // `sub/` could not be read and `odd.md`'s metadata could not: their
        // rows are held back; `gone.md` and `subway.md` (no folder of the
        // same name) are deleted.
        let scan = ScanResult {
            files: vec![scanned("keep.md", 1, 1)],
            incomplete: vec![(0, FileKey::stored("sub")), (0, FileKey::stored("odd.md"))],
            ..Default::default()
        };
        let ledger = sorted(vec![
            record("keep.md", 1, 1, FileState::Indexed),
            record("gone.md", 1, 1, FileState::Indexed),
            record("odd.md", 1, 1, FileState::Indexed),
            record("sub/a.md", 1, 1, FileState::Indexed),
            record("sub/deep/b.md", 1, 1, FileState::Indexed),
            record("subway.md", 1, 1, FileState::Indexed),
        ]);
        let p = plan(&scan, ledger, false, DeleteRail::default());
        let deleted: Vec<_> = p.deletes.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(deleted, ["gone.md", "subway.md"]);
        assert_eq!(p.held_back, 3);
    }

    #[test]
    fn permanent_failures_wait_for_a_change_transient_ones_retry() {
        let scan = ScanResult {
            files: vec![scanned("bad.pdf", 1, 1), scanned("flaky.md", 1, 1)],
            ..Default::default()
        };
        let mut bad = record("bad.pdf", 1, 1, FileState::Failed);
        bad.error_kind = Some(FailKind::Encrypted);
        let mut flaky = record("flaky.md", 1, 1, FileState::Failed);
        flaky.error_kind = Some(FailKind::Transient);
        flaky.attempts = 1;
        let ledger = sorted(vec![bad, flaky]);
        let p = plan(&scan, ledger.clone(), false, DeleteRail::default());
        let work: Vec<_> = p.work.iter().map(|w| w.file.key.as_str()).collect();
        assert_eq!(work, vec!["flaky.md"]);
    }
}
