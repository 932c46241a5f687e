//! The planner: compare a scan with the ledger and decide what each file needs.
//!
//! Pure: no IO beyond what was scanned and read from the ledger, so `ragd plan`
//! can show exactly what a run would do.

use std::collections::HashMap;

use crate::ledger::{FileRecord, FileState};
use crate::triggers::scan::{ScanResult, ScannedFile};

/// How many failed attempts of a transient kind before a file is left alone
/// until it changes (or an operator retries it).
pub const MAX_TRANSIENT_ATTEMPTS: u32 = 5;

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
    pub previous: Option<FileRecord>,
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
    /// Deletions held back because their source folder could not be read.
    pub held_back: usize,
}

/// Build the plan. `force` re-processes every file (settings changed).
pub fn plan(scan: &ScanResult, ledger: &HashMap<String, FileRecord>, force: bool) -> Plan {
    let mut plan = Plan::default();
    let mut seen = std::collections::HashSet::with_capacity(scan.files.len());
    for file in &scan.files {
        seen.insert(file.rel_path.as_str());
        let previous = ledger.get(&file.rel_path);
        let reason = match previous {
            None => Some(Reason::New),
            Some(_) if force => Some(Reason::Forced),
            Some(r) => needs_work(r, file),
        };
        match reason {
            Some(reason) => plan.work.push(WorkItem {
                file: file.clone(),
                previous: previous.cloned(),
                reason,
            }),
            None => plan.unchanged += 1,
        }
    }
    for (path, record) in ledger {
        if seen.contains(path.as_str()) {
            continue;
        }
        // A folder that could not be read says nothing about its files: never
        // delete on the strength of a failed scan.
        if scan.missing_sources.contains(&record.source) {
            plan.held_back += 1;
            continue;
        }
        plan.deletes.push(record.clone());
    }
    plan.deletes.sort_by(|a, b| a.path.cmp(&b.path));
    plan
}

fn needs_work(r: &FileRecord, file: &ScannedFile) -> Option<Reason> {
    let same_meta = r.size == file.size && r.mtime_ns == file.mtime_ns;
    match r.state {
        FileState::Indexing | FileState::Deleting => Some(Reason::Resume),
        _ if !same_meta => Some(Reason::Changed),
        FileState::Indexed | FileState::Skipped => None,
        FileState::Failed => {
            let transient = r.error_kind.as_deref() == Some(TRANSIENT_KIND);
            (transient && r.attempts < MAX_TRANSIENT_ATTEMPTS).then_some(Reason::Resume)
        }
    }
}

/// `error_kind` of failures that may go away by themselves (server down, timeouts).
pub const TRANSIENT_KIND: &str = "transient";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::FileRecord;

    fn scanned(path: &str, size: u64, mtime: i64) -> ScannedFile {
        ScannedFile {
            source: 0,
            rel_path: path.into(),
            abs_path: path.into(),
            size,
            mtime_ns: mtime,
        }
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
        let ledger: HashMap<_, _> = [
            record("same.md", 2, 2, FileState::Indexed),
            record("changed.md", 3, 4, FileState::Indexed),
            record("gone.md", 1, 1, FileState::Indexed),
        ]
        .into_iter()
        .map(|r| (r.path.clone(), r))
        .collect();
        let p = plan(&scan, &ledger, false);
        let work: Vec<_> = p
            .work
            .iter()
            .map(|w| (w.file.rel_path.as_str(), w.reason))
            .collect();
        assert_eq!(
            work,
            vec![("new.md", Reason::New), ("changed.md", Reason::Changed)]
        );
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(p.deletes[0].path, "gone.md");
    }

    #[test]
    fn missing_source_holds_back_deletes() {
        let scan = ScanResult {
            missing_sources: vec![0],
            ..Default::default()
        };
        let ledger: HashMap<_, _> = [record("a.md", 1, 1, FileState::Indexed)]
            .into_iter()
            .map(|r| (r.path.clone(), r))
            .collect();
        let p = plan(&scan, &ledger, false);
        assert!(p.deletes.is_empty());
        assert_eq!(p.held_back, 1);
    }

    #[test]
    fn permanent_failures_wait_for_a_change_transient_ones_retry() {
        let scan = ScanResult {
            files: vec![scanned("bad.pdf", 1, 1), scanned("flaky.md", 1, 1)],
            ..Default::default()
        };
        let mut bad = record("bad.pdf", 1, 1, FileState::Failed);
        bad.error_kind = Some("encrypted".into());
        let mut flaky = record("flaky.md", 1, 1, FileState::Failed);
        flaky.error_kind = Some(TRANSIENT_KIND.into());
        flaky.attempts = 1;
        let ledger: HashMap<_, _> = [bad, flaky]
            .into_iter()
            .map(|r| (r.path.clone(), r))
            .collect();
        let p = plan(&scan, &ledger, false);
        let work: Vec<_> = p.work.iter().map(|w| w.file.rel_path.as_str()).collect();
        assert_eq!(work, vec!["flaky.md"]);
    }
}
