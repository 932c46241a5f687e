//! Bytes → text, per format.
//!
//! [`format_for`] decides the format from a file name; [`extract`] turns the
//! file's bytes into a [`Document`]. Every failure is an [`ExtractError`] that
//! tells a user, in words, why a file yields no text ("scanned PDF, no text
//! layer", "encrypted PDF", ...), so that the ledger and the status page can show
//! it instead of a parser's internals.
//!
//! Extraction is pure: the same bytes always give the same document or the same
//! error. Parsers that are known to panic on malformed input (pdf-extract) run
//! under `catch_unwind`, and the pipeline runs them in a separate worker process
//! ([`isolate::extract_isolated`]) so that an abort, a stack overflow, an endless
//! loop or a memory blow-up cannot take the daemon down either.

mod html;
pub mod isolate;
mod pdf;
mod text;

use std::path::Path;

use crate::document::{Document, Format};

/// Why a file's bytes could not be turned into text.
///
/// Nearly every variant is a property of the bytes, not of the moment:
/// extracting the same bytes again gives the same error. The exceptions are a
/// timeout (a loaded machine) and a worker that could not be started; see
/// [`ExtractError::is_permanent`] and [`ExtractError::gives_up_after`].
///
/// Serializable because the extraction worker sends it to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ExtractError {
    /// The PDF is encrypted and cannot be opened without a password.
    #[error("encrypted PDF: it needs a password to be read")]
    Encrypted,
    /// The PDF has pages but none of them holds extractable text.
    #[error("scanned PDF, no text layer: its pages hold no extractable text (OCR it first)")]
    NoTextLayer,
    /// The file is not a valid file of its format.
    #[error("corrupt file: {detail}")]
    Corrupt {
        /// What the parser reported.
        detail: String,
    },
    /// A text file (text, Markdown, HTML) that holds binary data.
    #[error("binary data in a text file (NUL bytes or control characters)")]
    Binary,
    /// The file holds no text at all (zero bytes, only whitespace, or a PDF
    /// without pages).
    #[error("empty file: no text")]
    Empty,
    /// The parser panicked on this file. Caught so the daemon goes on.
    #[error("the parser crashed on this file: {detail}")]
    Panicked {
        /// The panic message.
        detail: String,
    },
    /// The extraction worker ran past `limits.extract_timeout_secs` and was
    /// killed (a parser in an endless loop, or a very slow file).
    #[error(
        "extraction timed out after {secs} s (limits.extract_timeout_secs); the worker was killed"
    )]
    Timeout {
        /// The timeout that was exceeded.
        secs: u64,
    },
    /// The extraction worker hit its address-space limit.
    #[error(
        "extraction ran out of memory: over the limit of {limit_mb} MiB (limits.extract_memory_mb)"
    )]
    OutOfMemory {
        /// The limit that was exceeded.
        limit_mb: u64,
    },
    /// The extraction worker died: a stack overflow, an abort, a signal.
    #[error("the extraction worker crashed on this file: {detail}")]
    Crashed {
        /// How it died.
        detail: String,
    },
    /// The extraction worker could not be started or is not a ragd binary. Not
    /// the file's fault: retried.
    #[error("extraction worker unavailable: {detail}")]
    WorkerUnavailable {
        /// What went wrong.
        detail: String,
    },
}

impl ExtractError {
    /// True when retrying the same bytes cannot succeed, so a caller should
    /// record the error and wait for the file to change.
    ///
    /// A crash, an abort and running out of memory are permanent too: the same
    /// bytes drive the same parser the same way, and the memory limit is per
    /// worker, not shared with the rest of the machine. A timeout is not: a
    /// loaded machine can make a good file slow (see [`Self::gives_up_after`]).
    pub const fn is_permanent(&self) -> bool {
        match self {
            ExtractError::Encrypted
            | ExtractError::NoTextLayer
            | ExtractError::Corrupt { .. }
            | ExtractError::Binary
            | ExtractError::Empty
            | ExtractError::Panicked { .. }
            | ExtractError::OutOfMemory { .. }
            | ExtractError::Crashed { .. } => true,
            ExtractError::Timeout { .. } | ExtractError::WorkerUnavailable { .. } => false,
        }
    }

    /// True when a file that failed with this error `attempts` times in a row
    /// should be left alone until it changes. Permanent errors give up at once;
    /// a timeout after [`isolate::MAX_TIMEOUT_ATTEMPTS`] (twice slow is the
    /// file, not the machine); a missing worker never (the planner's cap on
    /// transient retries applies).
    pub const fn gives_up_after(&self, attempts: u32) -> bool {
        match self {
            ExtractError::Timeout { .. } => attempts >= isolate::MAX_TIMEOUT_ATTEMPTS,
            ExtractError::WorkerUnavailable { .. } => false,
            _ => self.is_permanent(),
        }
    }

    /// A short, stable name for the kind of error, for metrics labels and the
    /// ledger (bounded, unlike the message).
    pub const fn kind(&self) -> &'static str {
        match self {
            ExtractError::Encrypted => "encrypted",
            ExtractError::NoTextLayer => "no_text_layer",
            ExtractError::Corrupt { .. } => "corrupt",
            ExtractError::Binary => "binary",
            ExtractError::Empty => "empty",
            ExtractError::Panicked { .. } => "panicked",
            ExtractError::Timeout { .. } => "timeout",
            ExtractError::OutOfMemory { .. } => "out_of_memory",
            ExtractError::Crashed { .. } => "crashed",
            ExtractError::WorkerUnavailable { .. } => "worker_unavailable",
        }
    }
}

/// The format of a file, decided by its extension (case-insensitive), or
/// `None` for a file ragd does not read.
pub fn format_for(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let format = match ext.as_str() {
        "pdf" => Format::Pdf,
        "md" | "markdown" | "mdx" | "mdown" | "mkd" | "mkdn" => Format::Markdown,
        "html" | "htm" | "xhtml" => Format::Html,
        "txt" | "text" | "log" | "csv" | "tsv" | "rst" | "org" | "adoc" | "asciidoc" | "asc"
        | "textile" | "tex" | "nfo" => Format::Text,
        _ => return None,
    };
    Some(format)
}

/// Extract the text of a file from its bytes.
///
/// PDFs give one section per page (`page: Some(n)`, 1-based); other formats give
/// one section without a page. A document is never blank: a file with no text
/// is an error ([`ExtractError::Empty`], [`ExtractError::NoTextLayer`]).
pub fn extract(bytes: &[u8], format: Format) -> Result<Document, ExtractError> {
    let sections = match format {
        Format::Pdf => pdf::extract(bytes)?,
        Format::Markdown | Format::Text => vec![text::extract(bytes)?],
        Format::Html => vec![html::extract(bytes)?],
    };
    let doc = Document { format, sections };
    // The format extractors already refuse blank input; this keeps the promise
    // above even if one of them is changed.
    if doc.is_blank() {
        return Err(ExtractError::Empty);
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_chosen_by_extension_ignoring_case() {
        let f = |p: &str| format_for(Path::new(p));
        assert_eq!(f("a/b.pdf"), Some(Format::Pdf));
        assert_eq!(f("B.PDF"), Some(Format::Pdf));
        assert_eq!(f("x.md"), Some(Format::Markdown));
        assert_eq!(f("x.Markdown"), Some(Format::Markdown));
        assert_eq!(f("x.mdx"), Some(Format::Markdown));
        for ext in ["txt", "TEXT", "log", "csv", "rst", "org", "adoc"] {
            assert_eq!(f(&format!("x.{ext}")), Some(Format::Text), "{ext}");
        }
        assert_eq!(f("x.html"), Some(Format::Html));
        assert_eq!(f("x.HTM"), Some(Format::Html));
        assert_eq!(f("x.xhtml"), Some(Format::Html));
        assert_eq!(f("x.docx"), None);
        assert_eq!(f("README"), None);
        assert_eq!(f(".md"), None, "a dotfile named .md has no extension");
    }

    #[test]
    fn markdown_is_read_as_text() {
        let doc = extract(b"# Title\r\n\r\nBody", Format::Markdown).unwrap();
        assert_eq!(doc.format, Format::Markdown);
        assert_eq!(doc.sections.len(), 1);
        assert_eq!(doc.sections[0].text, "# Title\n\nBody");
        assert_eq!(doc.sections[0].page, None);
    }

    #[test]
    fn errors_say_why() {
        assert!(
            ExtractError::NoTextLayer
                .to_string()
                .contains("scanned PDF, no text layer")
        );
        assert!(ExtractError::Encrypted.to_string().contains("encrypted"));
        assert!(ExtractError::Binary.is_permanent());
        assert_eq!(ExtractError::Empty.kind(), "empty");
    }

    #[test]
    fn empty_input_is_empty_for_every_format() {
        for format in [Format::Pdf, Format::Markdown, Format::Text, Format::Html] {
            assert_eq!(extract(b"", format), Err(ExtractError::Empty), "{format:?}");
        }
    }
}
