//! Triggers: deciding which files must be looked at.
//!
//! - [`key`]: [`key::FileKey`], a file's name in the ledger, built from and
//!   turned back into its path on disk.
//! - [`scan`]: walk a pipeline's source folders (include/exclude globs, ignored
//!   temporary files, symlink policy) and list what is there with size and mtime.
//! - [`watch`]: OS file events (or polling) bridged into a bounded channel, and the
//!   debouncer that says when a changed path has settled.
//! - [`schedule`]: cron loops that ask for a scheduled reconcile.
pub mod key;
pub mod scan;
pub mod schedule;
pub mod watch;
