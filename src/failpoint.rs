//! Named crash points, for the crash-safety tests.
//!
//! `RAGD_FAILPOINTS=name[:N][,name[:N]…]` makes the process abort — no
//! destructors, no flushes, like `kill -9` — the `N`th time (default 1st) it
//! reaches `hit(name)`. Unset (always, in production) it costs one atomic load per
//! call. The names mark the boundaries between side effects that cannot share a
//! transaction: the ledger, Qdrant and Open WebUI.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::OnceLock;

/// Every failpoint, for tests that crash at each one in turn.
pub const ALL: &[&str] = &[
    "index.after_intent",
    "index.after_upsert",
    "index.after_delete_old",
    "index.after_sync",
    "delete.after_intent",
    "delete.after_store",
    "kb.after_intent",
    "kb.after_upload",
    "kb.after_link",
    "kb.before_remove_old",
];

/// Failpoints of publishing that a round of small changes does not reach (a
/// folder renamed whole); `crash::a_crash_after_a_directory_rename_*` crashes
/// at each.
pub const DIRECTORIES: &[&str] = &["kb.after_dir_rename", "kb.after_file_rename"];

/// Failpoints of the Qdrant-server store only; `crash::a_crash_between_*`
/// crashes at each.
pub const SERVER: &[&str] = &["qdrant.after_create"];

/// Failpoints of a batch of moves, which a round of small changes does not
/// reach (a folder renamed whole); `crash::a_crash_in_a_batch_of_moves_*`
/// crashes at each.
pub const MOVES: &[&str] = &["moves.after_store"];

/// Failpoints inside an embedded-store vacuum, which a round of small changes
/// does not reach; `crash::a_crash_during_a_vacuum_*` crashes at each.
pub const VACUUM: &[&str] = &["vacuum.after_copy", "vacuum.after_exchange"];

fn armed() -> &'static Option<Mutex<HashMap<String, u32>>> {
    static ARMED: OnceLock<Option<Mutex<HashMap<String, u32>>>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var("RAGD_FAILPOINTS").ok()?;
        let map = spec
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|item| match item.trim().split_once(':') {
                Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
                None => (item.trim().to_owned(), 1),
            })
            .collect();
        Some(Mutex::new(map))
    })
}

/// Abort the process here if the failpoint `name` is armed and due.
pub fn hit(name: &'static str) {
    let Some(armed) = armed() else { return };
    let mut map = armed.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(left) = map.get_mut(name) {
        *left = left.saturating_sub(1);
        if *left == 0 {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
