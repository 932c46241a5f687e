//! Where a published file sits in its knowledge base: Open WebUI 0.12 gives a base a
//! directory tree, and ragd mirrors the source folder in it, so the UI and the model's
//! knowledge tools (`ls`, `tree`, `find`) see the folder's tree, and Open WebUI's own
//! folder sync (`sync/diff`, keyed by directory path and file name) finds each file
//! where the folder has it.
//!
//! A pipeline's relative path is already the tree to mirror: with several sources it
//! starts with the source's label, so each source gets one top-level directory.

use crate::open_webui::sanitize_filename;

/// A file's place in a knowledge base: a directory path (`""` is the root) and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `/`-separated directory names from the root; empty for the root.
    pub dir: String,
    /// The file's name in Open WebUI: its own name, as the folder (and the
    /// browser's `sync/diff` manifest) has it. Uploads go under
    /// [`sanitize_filename`] (a multipart header cannot carry every name) and are
    /// renamed to this where the server can rename files (0.12).
    pub name: String,
}

impl Place {
    /// Where the file at `rel_path` belongs: in the directory of its relative path, or,
    /// with `directories` off (a server without them, or `[knowledge] directories =
    /// false`), at the root.
    pub fn of(rel_path: &str, directories: bool) -> Self {
        let dir = match rel_path.rsplit_once('/') {
            Some((parent, _)) if directories => parent
                .split('/')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("/"),
            _ => String::new(),
        };
        Place {
            dir,
            name: own_name(rel_path),
        }
    }

    /// Where a row records its file: `kb_path` as written by [`Place::kb_path`], or,
    /// for a row without one (published flat by an older ragd, or never placed), the
    /// root under the name of `rel_path`: where older ragd linked every file.
    pub fn recorded(kb_path: Option<&str>, rel_path: &str) -> Self {
        match kb_path {
            Some(p) => match p.rsplit_once('/') {
                Some((dir, name)) => Place {
                    dir: dir.to_owned(),
                    name: name.to_owned(),
                },
                None => Place {
                    dir: String::new(),
                    name: p.to_owned(),
                },
            },
            None => Place {
                dir: String::new(),
                name: sanitize_filename(rel_path),
            },
        }
    }

    /// The place as one path, `dir/name` (or `name` at the root), as the ledger keeps it
    /// and `ragd why` shows it.
    pub fn kb_path(&self) -> String {
        if self.dir.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.dir, self.name)
        }
    }
}

/// The last segment of a relative path: the file's own name.
fn own_name(rel_path: &str) -> String {
    rel_path
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or(rel_path)
        .to_owned()
}

/// The names an upload of `rel_path` may have in Open WebUI: the one it was
/// uploaded under and, if that differs, the file's own name it is renamed to.
pub fn upload_names(rel_path: &str) -> Vec<String> {
    let upload = sanitize_filename(rel_path);
    let own = own_name(rel_path);
    if own == upload {
        vec![upload]
    } else {
        vec![upload, own]
    }
}

/// `dir` and each of its ancestors, shortest first: `a/b/c` → `a`, `a/b`, `a/b/c`.
pub fn ancestry(dir: &str) -> impl Iterator<Item = &str> {
    dir.match_indices('/')
        .map(move |(i, _)| &dir[..i])
        .chain((!dir.is_empty()).then_some(dir))
}

/// The parent directory path of `dir` (`""` for a top-level one) and its last name.
pub fn split_dir(dir: &str) -> (&str, &str) {
    dir.rsplit_once('/').unwrap_or(("", dir))
}

/// Folders renamed or moved whole, as `(from, to)` directory paths: every file
/// under `from` is among `moves` (each `(where it is, where it goes)`), goes to
/// the same place under `to` under the same name, and nothing is under `to` yet.
/// Such a folder is one directory update in Open WebUI instead of a `file/move`
/// per file. `settled`: where every other file of the base is. The outermost
/// folder wins; `to` is never inside `from`.
pub fn folder_renames<'a>(
    moves: &[(Place, Place)],
    settled: impl Iterator<Item = &'a Place>,
) -> Vec<(String, String)> {
    use std::collections::BTreeMap;
    // (from, to) → files it would carry.
    let mut candidates: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (at, want) in moves {
        if at.name != want.name || at.dir.is_empty() || want.dir.is_empty() || at.dir == want.dir {
            continue;
        }
        // Strip the trailing names both share, keeping a directory on each side:
        // `b/sub` → `c/sub` is `b` renamed `c`.
        let (mut from, mut to) = (at.dir.as_str(), want.dir.as_str());
        while let (Some((f, a)), Some((t, b))) = (from.rsplit_once('/'), to.rsplit_once('/')) {
            if a != b {
                break;
            }
            from = f;
            to = t;
        }
        *candidates
            .entry((from.to_owned(), to.to_owned()))
            .or_default() += 1;
    }
    let under = |dir: &str, p: &str| p == dir || p.starts_with(&format!("{dir}/"));
    let settled: Vec<&Place> = settled.collect();
    let mut chosen: Vec<(String, String)> = Vec::new();
    let mut by_depth: Vec<((String, String), usize)> = candidates.into_iter().collect();
    by_depth.sort_by_key(|((from, _), _)| from.matches('/').count());
    for ((from, to), n) in by_depth {
        if under(&from, &to) || chosen.iter().any(|(f, _)| under(f, &from)) {
            continue;
        }
        let inside = |p: &Place| under(&from, &p.dir);
        let all = moves.iter().filter(|(at, _)| inside(at)).count()
            + settled.iter().filter(|p| inside(p)).count();
        let target_used = moves.iter().any(|(at, _)| under(&to, &at.dir))
            || settled.iter().any(|p| under(&to, &p.dir));
        if all == n && !target_used {
            chosen.push((from, to));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_goes_in_the_directory_of_its_path() {
        let p = Place::of("docs/api/README.md", true);
        assert_eq!((p.dir.as_str(), p.name.as_str()), ("docs/api", "README.md"));
        assert_eq!(p.kb_path(), "docs/api/README.md");
        assert_eq!(Place::of("top.md", true).kb_path(), "top.md");
        // Flat: every file at the root, as older ragd and older servers have it.
        assert_eq!(
            Place::of("docs/api/README.md", false).kb_path(),
            "README.md"
        );
    }

    #[test]
    fn a_row_without_a_place_is_where_older_ragd_put_it() {
        assert_eq!(
            Place::recorded(None, "docs/api/README.md"),
            Place::of("README.md", true)
        );
        assert_eq!(
            Place::recorded(Some("a/b/c.md"), "x/y.md"),
            Place::of("a/b/c.md", true)
        );
        assert_eq!(Place::recorded(Some("c.md"), "x/y.md").dir, "");
    }

    /// Open WebUI's folder sync keys a file by its own name: the place keeps it
    /// even where the upload had to go under a sanitized one.
    #[test]
    fn a_file_keeps_its_own_name_where_the_upload_is_sanitized() {
        let p = Place::of("notes/say \"hi\".md", true);
        assert_eq!(p.name, "say \"hi\".md");
        assert_eq!(
            upload_names("notes/say \"hi\".md"),
            ["say _hi_.md", "say \"hi\".md"]
        );
        assert_eq!(Place::of("-draft.md", false).name, "-draft.md");
        assert_eq!(upload_names("a/README.md"), ["README.md"]);
        // A row an older ragd left names its upload.
        assert_eq!(Place::recorded(None, "x/-draft.md").name, "draft.md");
    }

    fn mv(from: &str, to: &str) -> (Place, Place) {
        (Place::of(from, true), Place::of(to, true))
    }

    #[test]
    fn a_folder_moved_whole_is_one_directory_rename() {
        let stay = [Place::of("a/one.md", true), Place::of("top.md", true)];
        // `b` renamed `c`, its subfolder with it.
        let moves = [mv("b/x.md", "c/x.md"), mv("b/sub/y.md", "c/sub/y.md")];
        assert_eq!(
            folder_renames(&moves, stay.iter()),
            [("b".to_owned(), "c".to_owned())]
        );
        // Moved into another folder.
        let moves = [mv("b/x.md", "a/b/x.md")];
        assert_eq!(
            folder_renames(&moves, stay.iter()),
            [("b".to_owned(), "a/b".to_owned())]
        );
        // Not every file of `b` goes: the files move one by one.
        let rest = [Place::of("b/z.md", true)];
        assert!(folder_renames(&moves, stay.iter().chain(&rest)).is_empty());
        // A renamed file, a target that holds files, a folder moved into itself:
        // no directory rename.
        assert!(folder_renames(&[mv("b/x.md", "c/x2.md")], stay.iter()).is_empty());
        assert!(folder_renames(&[mv("b/x.md", "a/x.md")], stay.iter()).is_empty());
        assert!(folder_renames(&[mv("b/x.md", "b/c/x.md")], stay.iter()).is_empty());
    }

    #[test]
    fn ancestry_lists_each_level() {
        assert_eq!(ancestry("a/b/c").collect::<Vec<_>>(), ["a", "a/b", "a/b/c"]);
        assert_eq!(ancestry("a").collect::<Vec<_>>(), ["a"]);
        assert_eq!(ancestry("").count(), 0);
        assert_eq!(split_dir("a/b/c"), ("a/b", "c"));
        assert_eq!(split_dir("a"), ("", "a"));
    }
}
