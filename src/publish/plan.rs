//! The publish planner: from the ledger alone (the pipeline's files and the
//! `kb_files` rows, read as two path-ordered streams and merged), what each path
//! needs in the knowledge base — publish, remove, move (a linked upload follows
//! its file), or replace (same text, other bytes). Pure: no I/O, unit-tested here.

use std::collections::HashSet;

use super::MAX_DUPLICATE_ATTEMPTS;
use crate::ledger::{FailKind, FileRecord, KbRecord, KbState};
use crate::open_webui::sanitize_filename;
use crate::pairing::Pairing;

/// What to do with one path.
pub(super) enum Action {
    Publish {
        file: Box<FileRecord>,
        prev: Option<KbRecord>,
    },
    Remove(KbRecord),
    /// A linked file moved to a path with no row, same text (and, on a server
    /// that cannot rename files, the same base name): its upload stays, the
    /// ledger row follows it, and [`super::Publisher::place_files`] moves and renames
    /// it in the knowledge base.
    Move {
        row: KbRecord,
        to: String,
    },
    /// A linked file whose bytes changed but not its text: Open WebUI keeps the
    /// bytes hash of the upload (`meta.file_hash`), which its folder sync
    /// (`sync/diff`) compares with the folder's file, and has no route that
    /// changes it. So the upload is replaced: removed first (the server refuses
    /// a second file of one text), then the new bytes uploaded. Only on servers
    /// with that sync (0.12, [`crate::open_webui::OpenWebUi::supports_directories`]).
    Replace {
        row: KbRecord,
        file: Box<FileRecord>,
    },
}

/// A publish of a file refused as a copy of another, at the same text.
pub(super) fn is_refused_copy(a: &Action) -> bool {
    match a {
        Action::Publish {
            file,
            prev: Some(r),
        } => {
            r.state == KbState::Failed
                && r.error_kind == Some(FailKind::DuplicateContent)
                && file.content_hash.as_deref() == Some(r.content_hash.as_str())
        }
        _ => false,
    }
}

pub(super) fn publish_text(a: &Action) -> Option<&str> {
    match a {
        Action::Publish { file, .. } | Action::Replace { file, .. } => file.content_hash.as_deref(),
        Action::Remove(_) | Action::Move { .. } => None,
    }
}

/// What [`plan`] decided, before refused duplicates are checked for twins.
pub(super) struct Planned {
    /// Removals, then publishes, each in path order.
    pub(super) actions: Vec<Action>,
    /// Files refused as duplicate content, with their rows: published again
    /// only if no linked twin is left ([`Planned::finish`]).
    pub(super) refused: Vec<(FileRecord, KbRecord)>,
}

/// Decide, from the ledger alone, what each path needs. Removals come first and
/// run to completion before any publish (see [`super::Publisher::sync`]), so a path
/// never has two actions in flight. `files` and `rows` are read as streams, both
/// in path order (from [`crate::ledger::Ledger::with_files_and_kb`]), and merged: only what
/// needs work is kept, not a copy of every row, so a sync's memory does not grow
/// with the folder.
pub(super) fn plan(
    files: &mut dyn Iterator<Item = FileRecord>,
    rows: &mut dyn Iterator<Item = KbRecord>,
    kb: &str,
    renames: bool,
) -> Planned {
    let mut rows = rows.peekable();
    let mut removes = Vec::new();
    let mut publishes = Vec::new();
    let mut refused = Vec::new();
    // Publishes of paths with no row at all: candidates for a move.
    let mut fresh = Vec::new();
    for file in files {
        // Rows of paths before this one have no file (any more): they go.
        while let Some(row) = rows.next_if(|r| r.path < file.path) {
            removes.push(Action::Remove(row));
        }
        let row = rows.next_if(|r| r.path == file.path);
        let unrowed = row.is_none();
        // The version to publish is what Qdrant holds. A file that failed after
        // an earlier success keeps its published old version.
        // (and a file without a reader, published for Open WebUI to read,
        // under the hash of its bytes: `FileRecord::published_hash`).
        let hash = match file.published_hash() {
            Some(h) => h,
            None => {
                removes.extend(row.map(Action::Remove));
                continue;
            }
        };
        // Moved to another knowledge base, or a removal a crash interrupted:
        // finish removing it, and publish afresh.
        let (prev, stale) = match row {
            Some(r) if r.kb_id == kb && r.state != KbState::Removing => (Some(r), None),
            other => (None, other),
        };
        removes.extend(stale.map(Action::Remove));
        match prev {
            Some(r)
                if r.content_hash == hash
                    && r.state == KbState::Failed
                    && r.error_kind == Some(FailKind::DuplicateContent)
                    && r.attempts < MAX_DUPLICATE_ATTEMPTS =>
            {
                refused.push((file, r));
            }
            // Same text, other bytes, on a server whose folder sync compares
            // bytes: the upload is replaced. A row that does not know its
            // upload's bytes (written before they were kept) is taken as current.
            Some(r)
                if renames
                    && r.content_hash == hash
                    && r.state == KbState::Linked
                    && r.old_file_id.is_none()
                    && r.file_id.is_some()
                    && r.file_hash.as_ref().is_some_and(|h| *h != file.file_hash) =>
            {
                publishes.push(Action::Replace {
                    row: r,
                    file: Box::new(file),
                });
            }
            // Done — unless a crash left the replaced version to remove.
            Some(r)
                if r.content_hash == hash
                    && (r.state == KbState::Failed
                        || (r.state == KbState::Linked && r.old_file_id.is_none())) => {}
            prev => {
                if unrowed {
                    fresh.push(publishes.len());
                }
                publishes.push(Action::Publish {
                    prev,
                    file: Box::new(file),
                });
            }
        }
    }
    removes.extend(rows.map(Action::Remove));
    let mut actions = pair_moves(removes, publishes, &fresh, kb, renames);
    let first_publish = actions
        .iter()
        .position(|a| matches!(a, Action::Publish { .. } | Action::Replace { .. }))
        .unwrap_or(actions.len());
    // `finish` sorts the publishes and expects them last.
    debug_assert!(
        actions[first_publish..]
            .iter()
            .all(|a| matches!(a, Action::Publish { .. } | Action::Replace { .. }))
    );
    actions.shrink_to_fit();
    Planned { actions, refused }
}

/// Moves first, then the removals and publishes left. A removal of a linked
/// file (its only version, nothing pending) and a publish of a new path with
/// no row, of the same text, are one file moved or renamed: uploading it again
/// would make the server extract and embed it again, for every file of a
/// moved folder. A server that renames files (`renames`, 0.12) gets the upload
/// moved and renamed in place ([`super::Publisher::place_files`]); on an older one
/// the upload keeps the name it was uploaded under, so only a file that kept
/// its base name is a move there. Its metadata marker keeps the old path (Open
/// WebUI cannot change an upload's metadata without processing it again);
/// nothing finds a linked upload by its marker.
fn pair_moves(
    removes: Vec<Action>,
    publishes: Vec<Action>,
    fresh: &[usize],
    kb: &str,
    renames: bool,
) -> Vec<Action> {
    let movable = |r: &KbRecord| {
        r.kb_id == kb
            && r.state == KbState::Linked
            && r.file_id.is_some()
            && r.old_file_id.is_none()
    };
    // (text, base name) → removals that could be the old place.
    let mut gone = Pairing::new(removes.iter().enumerate().filter_map(|(i, a)| match a {
        Action::Remove(r) if movable(r) => {
            Some(((r.content_hash.clone(), move_name(&r.path, renames)), i))
        }
        _ => None,
    }));
    if gone.is_empty() {
        let mut out = removes;
        out.extend(publishes);
        return out;
    }
    let mut removes: Vec<Option<Action>> = removes.into_iter().map(Some).collect();
    let mut publishes: Vec<Option<Action>> = publishes.into_iter().map(Some).collect();
    let mut moves = Vec::new();
    for &p in fresh {
        let Some(Action::Publish { file, .. }) = &publishes[p] else {
            continue;
        };
        let Some(hash) = file.content_hash.clone() else {
            continue;
        };
        let key = (hash, move_name(&file.path, renames));
        let Some(i) = gone.take(&key, |_| true) else {
            continue;
        };
        let (Some(Action::Remove(row)), Some(Action::Publish { file, .. })) =
            (removes[i].take(), publishes[p].take())
        else {
            unreachable!("paired a removal with a publish");
        };
        moves.push(Action::Move { row, to: file.path });
    }
    moves
        .into_iter()
        .chain(removes.into_iter().flatten())
        .chain(publishes.into_iter().flatten())
        .collect()
}

/// The name part of a move's key: none when the server can rename the upload.
fn move_name(path: &str, renames: bool) -> String {
    if renames {
        String::new()
    } else {
        sanitize_filename(path)
    }
}

impl Planned {
    /// The actions, with each refused duplicate whose twin was deleted or
    /// changed published again: it is the only copy of its text now. `rows` are
    /// the pipeline's knowledge-base rows (the removals run first, so a row
    /// being removed is no twin).
    pub(super) fn finish(self, rows: &mut dyn Iterator<Item = KbRecord>, kb: &str) -> Vec<Action> {
        let Planned {
            mut actions,
            refused,
        } = self;
        if refused.is_empty() {
            return actions;
        }
        let removed: HashSet<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove(r) => Some(r.path.as_str()),
                Action::Publish { .. } | Action::Move { .. } | Action::Replace { .. } => None,
            })
            .collect();
        let texts: HashSet<&str> = refused
            .iter()
            .map(|(_, r)| r.content_hash.as_str())
            .collect();
        let twinned: HashSet<String> = rows
            .filter(|r| {
                r.kb_id == kb
                    && r.state == KbState::Linked
                    && texts.contains(r.content_hash.as_str())
                    && !removed.contains(r.path.as_str())
            })
            .map(|r| r.content_hash)
            .collect();
        let again: Vec<Action> = refused
            .into_iter()
            .filter(|(_, row)| !twinned.contains(&row.content_hash))
            .map(|(file, row)| Action::Publish {
                file: Box::new(file),
                prev: Some(row),
            })
            .collect();
        actions.extend(again);
        // Publishes in path order, after the removals.
        let first_publish = actions
            .iter()
            .position(|a| matches!(a, Action::Publish { .. } | Action::Replace { .. }))
            .unwrap_or(actions.len());
        actions[first_publish..].sort_by(|a, b| action_path(a).cmp(action_path(b)));
        actions
    }
}

fn action_path(a: &Action) -> &str {
    match a {
        Action::Remove(r) => &r.path,
        Action::Publish { file, .. } | Action::Replace { file, .. } => &file.path,
        Action::Move { to, .. } => to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::FileState;

    fn file(path: &str, hash: &str) -> FileRecord {
        let mut f = FileRecord::new("p", path, 0, 1, 1, "bytes".into());
        f.state = FileState::Indexed;
        f.content_hash = Some(hash.into());
        f
    }

    fn row(path: &str, hash: &str, state: KbState) -> KbRecord {
        KbRecord {
            file_id: (state == KbState::Linked).then(|| format!("id-{path}")),
            state,
            ..KbRecord::uploading("p", path, "kb", hash)
        }
    }

    fn refused(path: &str, hash: &str, attempts: u32) -> KbRecord {
        KbRecord {
            error_kind: Some(FailKind::DuplicateContent),
            attempts,
            ..row(path, hash, KbState::Failed)
        }
    }

    /// `(action, path)` of each planned action, in order.
    fn planned(files: Vec<FileRecord>, rows: Vec<KbRecord>) -> Vec<(&'static str, String)> {
        planned_with(files, rows, false)
    }

    fn planned_with(
        mut files: Vec<FileRecord>,
        mut rows: Vec<KbRecord>,
        renames: bool,
    ) -> Vec<(&'static str, String)> {
        // As the ledger reads them: in path order.
        files.sort_by(|a, b| a.path.cmp(&b.path));
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        plan(
            &mut files.into_iter(),
            &mut rows.clone().into_iter(),
            "kb",
            renames,
        )
        .finish(&mut rows.into_iter(), "kb")
        .iter()
        .map(|a| match a {
            Action::Remove(r) => ("remove", r.path.clone()),
            Action::Publish { file, .. } => ("publish", file.path.clone()),
            Action::Move { row, to } => ("move", format!("{} -> {to}", row.path)),
            Action::Replace { file, .. } => ("replace", file.path.clone()),
        })
        .collect()
    }

    /// Same text, other bytes: replaced where Open WebUI's folder sync compares
    /// bytes (0.12); left alone on older servers, and when the row does not know
    /// what its upload was made from.
    #[test]
    fn a_byte_only_change_replaces_the_upload_where_the_folder_sync_compares_bytes() {
        let uploaded_from = |h: Option<&str>| KbRecord {
            file_hash: h.map(str::to_owned),
            ..row("a.md", "t", KbState::Linked)
        };
        // `file()`'s bytes hash is "bytes".
        let changed = || vec![file("a.md", "t")];
        assert_eq!(
            planned_with(changed(), vec![uploaded_from(Some("older"))], true),
            [("replace", "a.md".to_owned())]
        );
        assert!(planned_with(changed(), vec![uploaded_from(Some("older"))], false).is_empty());
        assert!(planned_with(changed(), vec![uploaded_from(Some("bytes"))], true).is_empty());
        assert!(planned_with(changed(), vec![uploaded_from(None)], true).is_empty());
    }

    #[test]
    fn a_linked_file_moved_with_its_name_and_text_is_a_move() {
        let pending = KbRecord {
            old_file_id: Some("id-older".into()),
            ..row("old/p.md", "p", KbState::Linked)
        };
        let actions = planned(
            vec![
                file("new/a.md", "a"),   // moved: same name, same text
                file("new/b2.md", "b"),  // renamed: a new upload
                file("new/c.md", "c2"),  // moved and edited
                file("new/p.md", "p"),   // the old place still has a version to remove
                file("new/u.md", "u"),   // the old place is not linked
                file("old2/a.md", "a2"), // same name, other text
            ],
            vec![
                row("old/a.md", "a", KbState::Linked),
                row("old/b.md", "b", KbState::Linked),
                row("old/c.md", "c", KbState::Linked),
                pending,
                row("old/u.md", "u", KbState::Uploading),
            ],
        );
        let strs: Vec<(&str, &str)> = actions.iter().map(|(a, p)| (*a, p.as_str())).collect();
        assert_eq!(
            strs,
            [
                ("move", "old/a.md -> new/a.md"),
                ("remove", "old/b.md"),
                ("remove", "old/c.md"),
                ("remove", "old/p.md"),
                ("remove", "old/u.md"),
                ("publish", "new/b2.md"),
                ("publish", "new/c.md"),
                ("publish", "new/p.md"),
                ("publish", "new/u.md"),
                ("publish", "old2/a.md"),
            ]
        );
    }

    #[test]
    fn a_server_that_renames_makes_a_renamed_file_a_move() {
        let actions = planned_with(
            vec![
                file("new/b2.md", "b"), // moved and renamed
                file("c2.md", "c"),     // renamed in place
                file("d.md", "d2"),     // edited: a new version, no move
            ],
            vec![
                row("old/b.md", "b", KbState::Linked),
                row("c.md", "c", KbState::Linked),
                row("d.md", "d", KbState::Linked),
            ],
            true,
        );
        let strs: Vec<(&str, &str)> = actions.iter().map(|(a, p)| (*a, p.as_str())).collect();
        assert_eq!(
            strs,
            [
                ("move", "c.md -> c2.md"),
                ("move", "old/b.md -> new/b2.md"),
                ("publish", "d.md"),
            ]
        );
    }

    #[test]
    fn two_copies_moved_pair_with_one_old_place_each() {
        let actions = planned(
            vec![
                file("x/a.md", "t"),
                file("y/a.md", "t"),
                file("z/a.md", "t"),
            ],
            vec![
                row("p/a.md", "t", KbState::Linked),
                row("q/a.md", "t", KbState::Linked),
            ],
        );
        let moves = actions.iter().filter(|(a, _)| *a == "move").count();
        let publishes = actions.iter().filter(|(a, _)| *a == "publish").count();
        assert_eq!((moves, publishes, actions.len()), (2, 1, 3), "{actions:?}");
    }

    #[test]
    fn the_merge_removes_rows_without_a_file_and_publishes_what_changed() {
        let mut indexing = file("c.md", "c");
        indexing.state = FileState::Indexing;
        let mut no_text = file("e.md", "e");
        no_text.content_hash = None;
        let other_kb = KbRecord {
            kb_id: "elsewhere".into(),
            ..row("f.md", "f", KbState::Linked)
        };
        let actions = planned(
            vec![
                file("b.md", "b2"),
                indexing,
                file("d.md", "d"),
                no_text,
                file("f.md", "f"),
                file("g.md", "g"),
                file("h.md", "h"),
            ],
            vec![
                row("a.md", "a", KbState::Linked),   // file gone
                row("b.md", "b1", KbState::Linked),  // new text
                row("c.md", "c", KbState::Linked),   // not indexed now
                row("cc.md", "x", KbState::Linked),  // file gone, between files
                row("d.md", "d", KbState::Linked),   // unchanged
                row("e.md", "e", KbState::Linked),   // no text now
                other_kb,                            // linked to another base
                row("g.md", "g", KbState::Removing), // a removal cut short
                row("z.md", "z", KbState::Linked),   // file gone, after every file
            ],
        );
        assert_eq!(
            actions,
            [
                ("remove", "a.md".into()),
                ("remove", "c.md".into()),
                ("remove", "cc.md".into()),
                ("remove", "e.md".into()),
                ("remove", "f.md".into()),
                ("remove", "g.md".into()),
                ("remove", "z.md".into()),
                ("publish", "b.md".into()),
                ("publish", "f.md".into()),
                ("publish", "g.md".into()),
                ("publish", "h.md".into()),
            ]
        );
    }

    #[test]
    fn a_refused_duplicate_waits_while_its_twin_is_linked() {
        let actions = planned(
            vec![file("a.md", "h"), file("b.md", "h")],
            vec![row("a.md", "h", KbState::Linked), refused("b.md", "h", 1)],
        );
        assert_eq!(actions, []);
    }

    #[test]
    fn a_refused_duplicate_is_published_once_its_twin_goes() {
        // a.md deleted: its row is removed first, then b.md published.
        let actions = planned(
            vec![file("b.md", "h")],
            vec![row("a.md", "h", KbState::Linked), refused("b.md", "h", 1)],
        );
        assert_eq!(
            actions,
            [("remove", "a.md".into()), ("publish", "b.md".into())]
        );
        // a.md changed its text: b.md holds the only copy once a.md's new
        // version replaces the old one, which a later sync sees.
        let actions = planned(
            vec![file("a.md", "h2"), file("b.md", "h")],
            vec![row("a.md", "h", KbState::Linked), refused("b.md", "h", 1)],
        );
        assert_eq!(actions, [("publish", "a.md".into())]);
        let actions = planned(
            vec![file("a.md", "h2"), file("b.md", "h")],
            vec![row("a.md", "h2", KbState::Linked), refused("b.md", "h", 1)],
        );
        assert_eq!(actions, [("publish", "b.md".into())]);
    }

    #[test]
    fn a_duplicate_of_something_ragd_does_not_know_is_retried_a_bounded_number_of_times() {
        // No linked twin in the ledger: perhaps a file put in the base by hand.
        let retry = planned(vec![file("b.md", "h")], vec![refused("b.md", "h", 1)]);
        assert_eq!(retry, [("publish", "b.md".into())]);
        let done = planned(
            vec![file("b.md", "h")],
            vec![refused("b.md", "h", MAX_DUPLICATE_ATTEMPTS)],
        );
        assert_eq!(done, []);
        // Other permanent refusals wait for new text.
        let empty = KbRecord {
            error_kind: Some(FailKind::EmptyContent),
            ..refused("b.md", "h", 1)
        };
        assert_eq!(planned(vec![file("b.md", "h")], vec![empty]), []);
    }
}
