//! Triggers: deciding which files must be looked at.
//!
//! - [`scan`]: walk a pipeline's source folders (include/exclude globs, ignored
//!   temporary files, symlink policy) and list what is there with size and mtime.
pub mod scan;
