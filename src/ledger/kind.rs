//! [`FailKind`]: why a file failed, was skipped or was refused, as the
//! `error_kind` column of `files` and `kb_files` stores it.
//!
//! The text of each kind is what the ledger, `ragd status` / `ragd why`, the
//! metrics labels and operators' scripts see: a kind may be added, never
//! renamed. Each kind is named once, in the table below, so its variant, its
//! text and its parse cannot drift apart.
//!
//! Only `std` here: the fuzz targets compile `extract` from source, and its
//! errors name their kind. The ledger column and JSON output are `super`'s.

macro_rules! fail_kinds {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// Why a file is not (or not yet) indexed or published. Stored as text.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FailKind {
            $($(#[$doc])* $variant,)*
            /// A kind this ragd does not know, read from a ledger another
            /// (newer or older) ragd wrote. Kept as written, so the row reads
            /// and is written back unchanged; never retried without a change,
            /// which is what every ragd does with a kind that is not
            /// [`FailKind::Transient`].
            Other(String),
        }

        impl FailKind {
            /// The stored text of a kind this ragd names; `None` for [`FailKind::Other`].
            const fn known(&self) -> Option<&'static str> {
                match self {
                    $(FailKind::$variant => Some($text),)*
                    FailKind::Other(_) => None,
                }
            }

            /// The kind stored as `s`: unknown text is [`FailKind::Other`], not an
            /// error, so a ledger from another ragd stays readable.
            pub fn parse(s: &str) -> FailKind {
                match s {
                    $($text => FailKind::$variant,)*
                    other => FailKind::Other(other.to_owned()),
                }
            }

            /// Every kind this ragd names, for tests.
            #[cfg(test)]
            const KNOWN: &[FailKind] = &[$(FailKind::$variant),*];
        }
    };
}

fail_kinds! {
    // Before reading: decided from the scan and the open file.
    /// Over `limits.max_file_bytes` (skipped), or the extracted answer over
    /// what the daemon takes from a worker (failed).
    TooLarge => "too_large",
    /// A path that is not UTF-8: keys, payloads and Open WebUI names are.
    FileNameNotUtf8 => "file_name_not_utf8",
    /// A format ragd neither reads nor publishes.
    UnsupportedType => "unsupported_type",
    /// A link, device or pipe where the scan saw a file.
    NotARegularFile => "not_a_regular_file",
    PermissionDenied => "permission_denied",
    ReadError => "read_error",
    /// No reader, but Open WebUI reads it: published as it is (see
    /// [`super::FileRecord::has_no_reader`]).
    NoReader => "no_reader",
    // Extraction ([`crate::extract::ExtractError::kind`]).
    Encrypted => "encrypted",
    NoTextLayer => "no_text_layer",
    OcrUnavailable => "ocr_unavailable",
    OcrFailed => "ocr_failed",
    Corrupt => "corrupt",
    Binary => "binary",
    /// No text: nothing extracted, or nothing to chunk.
    Empty => "empty",
    Panicked => "panicked",
    /// Extraction over its deadline on every attempt allowed.
    Timeout => "timeout",
    OutOfMemory => "out_of_memory",
    Crashed => "crashed",
    WorkerUnavailable => "worker_unavailable",
    // After extraction.
    TextTooLarge => "text_too_large",
    TooManyChunks => "too_many_chunks",
    /// The embedder refused the file's texts.
    Embed => "embed",
    /// May go away by itself (a server down, a timeout, a file gone between
    /// scan and read): retried, in `files` and `kb_files` alike, up to
    /// [`super::MAX_TRANSIENT_ATTEMPTS`].
    Transient => "transient",
    // Refused by the knowledge base.
    DuplicateContent => "duplicate_content",
    EmptyContent => "empty_content",
    ProcessingFailed => "processing_failed",
}

impl FailKind {
    /// The stored text, as the ledger column and every output show it.
    pub fn as_str(&self) -> &str {
        match self {
            FailKind::Other(s) => s,
            known => known.known().unwrap_or_default(),
        }
    }

    /// The kind as a metrics label: a kind from another ragd's ledger is
    /// `other`, so a label's values stay the closed set named here.
    pub const fn label(&self) -> &'static str {
        match self.known() {
            Some(text) => text,
            None => "other",
        }
    }

    /// Whether a failure of this kind may go away by itself, so that it is
    /// tried again (within the attempt limit) without the file changing. The
    /// one home of that rule for files and knowledge-base rows.
    pub const fn is_transient(&self) -> bool {
        matches!(self, FailKind::Transient)
    }
}

impl std::fmt::Display for FailKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_as_itself_and_unknown_text_is_kept() {
        for kind in FailKind::KNOWN {
            assert_eq!(&FailKind::parse(kind.as_str()), kind);
            assert_eq!(kind.label(), kind.as_str());
        }
        let texts: std::collections::HashSet<&str> =
            FailKind::KNOWN.iter().map(FailKind::as_str).collect();
        assert_eq!(texts.len(), FailKind::KNOWN.len(), "two kinds share a text");
        // The texts the ledger has always held.
        assert_eq!(FailKind::Transient.as_str(), "transient");
        assert_eq!(FailKind::UnsupportedType.as_str(), "unsupported_type");
        assert_eq!(FailKind::DuplicateContent.as_str(), "duplicate_content");

        let future = FailKind::parse("pdf_xfa_form");
        assert_eq!(future, FailKind::Other("pdf_xfa_form".into()));
        assert_eq!(future.as_str(), "pdf_xfa_form");
        assert!(!future.is_transient());
        // Labels stay bounded whatever a ledger holds.
        assert_eq!(FailKind::parse("/srv/docs/secret.pdf").label(), "other");
        assert!(FailKind::Transient.is_transient());
        assert!(!FailKind::Timeout.is_transient());
    }
}
