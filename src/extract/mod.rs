//! Bytes → text, per format.
//!
//! [`format_for`] decides the format from a file name; [`extract`] turns the
//! file's bytes into a [`Document`]. Every failure is an [`ExtractError`] that
//! tells a user, in words, why a file yields no text ("scanned PDF, no text
//! layer", "encrypted PDF", ...), so that the ledger and the status page can show
//! it instead of a parser's internals.
//!
//! Extraction is pure: the same bytes always give the same document or the same
//! error (OCR included: Tesseract is deterministic for one version and one set
//! of languages). Parsers that are known to panic on malformed input (pdf-extract) run
//! under `catch_unwind`, and the pipeline runs them in a separate worker process
//! ([`isolate::extract_isolated`]) so that an abort, a stack overflow, an endless
//! loop or a memory blow-up cannot take the daemon down either.

mod epub;
mod html;
pub mod isolate;
mod mail;
mod ocr;
mod office;
mod package;
mod pdf;
mod rtf;
mod sheet;
mod text;
mod xml;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::document::{Document, Format, Language, Section};
use crate::ledger::FailKind;

pub use ocr::{OcrMode, OcrSettings, pdftoppm_version, tesseract_languages, tesseract_version};

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
    /// The file is encrypted and cannot be opened without a password.
    #[error("encrypted {what}: it needs a password to be read")]
    Encrypted {
        /// What kind of file ("PDF", "Word document").
        what: String,
    },
    /// The PDF has pages but none of them holds extractable text, and OCR
    /// could not read them either.
    #[error("scanned PDF, no text layer: its pages hold no extractable text, and {why}")]
    NoTextLayer {
        /// Why OCR did not help: off, not installed, or it found no text.
        why: String,
    },
    /// An image, whose text only OCR can read, and OCR cannot run.
    #[error("image: its text can only be read by OCR, and {why}")]
    OcrUnavailable {
        /// Why OCR cannot run.
        why: String,
    },
    /// Tesseract or pdftoppm failed on this file.
    #[error("OCR failed: {detail}")]
    OcrFailed {
        /// The tool's last words.
        detail: String,
    },
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
    /// The worker's answer for this file was larger than the daemon takes
    /// (twice `limits.max_text_bytes` and 1 MiB): the daemon stopped reading
    /// and discarded the worker rather than buffer it.
    #[error(
        "extracted text over the limit: the worker's answer of {bytes} bytes is over {cap} (limits.max_text_bytes)"
    )]
    TooMuchText {
        /// The length the worker announced.
        bytes: u64,
        /// What the daemon takes.
        cap: u64,
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
            ExtractError::Encrypted { .. }
            | ExtractError::NoTextLayer { .. }
            // Installing tesseract is a change an operator makes on purpose,
            // then re-extracts (`ragd reindex`); retrying until then is noise.
            | ExtractError::OcrUnavailable { .. }
            | ExtractError::OcrFailed { .. }
            | ExtractError::Corrupt { .. }
            | ExtractError::Binary
            | ExtractError::Empty
            | ExtractError::Panicked { .. }
            | ExtractError::OutOfMemory { .. }
            | ExtractError::TooMuchText { .. }
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

    /// The kind of error as the ledger records it and metrics label it
    /// (bounded, unlike the message).
    pub const fn kind(&self) -> FailKind {
        match self {
            ExtractError::Encrypted { .. } => FailKind::Encrypted,
            ExtractError::NoTextLayer { .. } => FailKind::NoTextLayer,
            ExtractError::OcrUnavailable { .. } => FailKind::OcrUnavailable,
            ExtractError::OcrFailed { .. } => FailKind::OcrFailed,
            ExtractError::Corrupt { .. } => FailKind::Corrupt,
            ExtractError::Binary => FailKind::Binary,
            ExtractError::Empty => FailKind::Empty,
            ExtractError::Panicked { .. } => FailKind::Panicked,
            ExtractError::Timeout { .. } => FailKind::Timeout,
            ExtractError::OutOfMemory { .. } => FailKind::OutOfMemory,
            ExtractError::Crashed { .. } => FailKind::Crashed,
            ExtractError::TooMuchText { .. } => FailKind::TooLarge,
            ExtractError::WorkerUnavailable { .. } => FailKind::WorkerUnavailable,
        }
    }
}

/// Run a parser that may panic on malformed input (pdf-extract, calamine,
/// mail-parser: other people's code), turning its panic into
/// [`ExtractError::Panicked`], so that the file gets a kind even where no
/// worker process stands between the parser and the daemon
/// (`limits.isolate = false`). ragd's own readers are not run under it: the
/// fuzz targets treat their panics as bugs.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ExtractError> {
    // The closures only read the input and build fresh values, so a panic
    // leaves nothing half-updated behind: asserting unwind safety is sound.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        ExtractError::Panicked { detail }
    })
}

/// The format of a file, decided by its extension (case-insensitive), or
/// `None` for a file ragd does not read.
pub fn format_for(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let format = match ext.as_str() {
        "pdf" => Format::Pdf,
        "md" | "markdown" | "mdx" | "mdown" | "mkd" | "mkdn" => Format::Markdown,
        "html" | "htm" | "xhtml" => Format::Html,
        "docx" | "docm" => Format::Docx,
        "odt" => Format::Odt,
        "rtf" => Format::Rtf,
        "pptx" | "pptm" => Format::Pptx,
        "odp" => Format::Odp,
        "xlsx" | "xlsm" => Format::Xlsx,
        "xls" => Format::Xls,
        "ods" => Format::Ods,
        "csv" | "tsv" => Format::Delimited,
        "epub" => Format::Epub,
        "eml" => Format::Email,
        "png" | "jpg" | "jpeg" | "tif" | "tiff" | "webp" => Format::Image,
        "txt" | "text" | "log" | "rst" | "org" | "adoc" | "asciidoc" | "asc" | "textile"
        | "tex" | "nfo" => Format::Text,
        // Source code ragd has a grammar for: chunked along its syntax.
        "rs" => Format::Code(Language::Rust),
        "py" | "pyi" => Format::Code(Language::Python),
        "js" | "mjs" | "cjs" | "jsx" => Format::Code(Language::JavaScript),
        "ts" | "mts" | "cts" => Format::Code(Language::TypeScript),
        "tsx" => Format::Code(Language::Tsx),
        "go" => Format::Code(Language::Go),
        "java" => Format::Code(Language::Java),
        // A `.h` may be C++; the C grammar reads its declarations, and
        // tree-sitter parses past what it does not know.
        "c" | "h" => Format::Code(Language::C),
        "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" => Format::Code(Language::Cpp),
        "sh" | "bash" => Format::Code(Language::Bash),
        // Structured text and other source code, read as text.
        "json" | "jsonl" | "yaml" | "yml" | "toml" | "xml" | "ini" | "cfg" | "conf" | "kt"
        | "cs" | "rb" | "php" | "swift" | "scala" | "zsh" | "sql" | "r" | "lua" | "pl" | "css"
        | "scss" => Format::Text,
        _ => return None,
    };
    Some(format)
}

/// Whether `path` is of a format ragd has no reader for but Open WebUI reads
/// itself: the legacy binary Word and PowerPoint files, which no well-kept
/// crate reads, and Outlook messages (msg_parser 0.3.6, the msg crate, carries
/// its own compound-file reader with `unwrap`s on header fields, and no tool
/// here writes a .msg to test a reader on). The pipeline publishes such a file to a knowledge base as it is
/// and leaves it out of its own index (`ledger::FailKind::NoReader`).
pub fn published_without_reader(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "doc" | "ppt" | "msg"))
}

/// What extraction may do besides parsing: OCR, and by when it must be done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtractOptions {
    pub ocr: OcrSettings,
    /// Time one file may take (`limits.extract_timeout_secs`): OCR starts no
    /// page past it, so that the pages read so far come back before the
    /// worker is killed.
    pub budget: Option<Duration>,
}

impl ExtractOptions {
    /// Parsing only, no OCR (the fuzz target, benchmarks, `extract`).
    pub fn without_ocr() -> Self {
        ExtractOptions {
            ocr: OcrSettings::off(),
            budget: None,
        }
    }
}

/// The part of a file's budget OCR may spend; the rest is left for the reply.
fn deadline(options: &ExtractOptions) -> Option<Instant> {
    options
        .budget
        .map(|b| Instant::now() + b.mul_f64(0.8).saturating_sub(Duration::from_millis(500)))
}

/// Extract the text of a file from its bytes, without OCR (see
/// [`extract_with`]).
pub fn extract(bytes: &[u8], format: Format) -> Result<Document, ExtractError> {
    extract_with(bytes, format, &ExtractOptions::without_ocr())
}

/// Extract the text of a file from its bytes.
///
/// PDFs give one section per page (`page: Some(n)`, 1-based), presentations
/// one per slide (`page` = slide number), workbooks one per sheet (`page` =
/// sheet number, the sheet's name as heading, its header row in
/// `header_row`), e-books one per chapter; other formats one section without
/// a page. Word processing, presentation, e-book and mail formats come as
/// Markdown (see `package.rs`). A document is never blank: a file with no
/// text is an error ([`ExtractError::Empty`], [`ExtractError::NoTextLayer`]).
pub fn extract_with(
    bytes: &[u8],
    format: Format,
    options: &ExtractOptions,
) -> Result<Document, ExtractError> {
    let mut warnings = Vec::new();
    let sections = match format {
        Format::Pdf => pdf::extract(bytes, &options.ocr, deadline(options), &mut warnings)?,
        Format::Markdown | Format::Text | Format::Code(_) => vec![text::extract(bytes)?],
        Format::Html => vec![html::extract(bytes)?],
        Format::Docx => office::docx(bytes)?,
        Format::Odt => office::odt(bytes)?,
        Format::Rtf => rtf::extract(bytes)?,
        Format::Pptx => office::pptx(bytes)?,
        Format::Odp => office::odp(bytes)?,
        Format::Xlsx | Format::Xls | Format::Ods => sheet::workbook(bytes, format)?,
        Format::Delimited => sheet::delimited(bytes)?,
        Format::Epub => epub::extract(bytes)?,
        Format::Email => mail::extract(bytes)?,
        Format::Image => image(bytes, &options.ocr, deadline(options))?,
    };
    let doc = Document {
        format,
        sections,
        warnings,
    };
    // The format extractors already refuse blank input; this keeps the promise
    // above even if one of them is changed.
    if doc.is_blank() {
        return Err(ExtractError::Empty);
    }
    Ok(doc)
}

/// An image: its text by OCR, one section per page (a TIFF may have several).
fn image(
    bytes: &[u8],
    settings: &OcrSettings,
    deadline: Option<Instant>,
) -> Result<Vec<Section>, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    // Tesseract takes a file that is not an image for a list of image paths
    // and reads those: a ".png" naming files elsewhere on this machine would
    // get them indexed. Only the image formats ragd accepts are passed on.
    if !is_image(bytes) {
        return Err(ExtractError::Corrupt {
            detail: "not a PNG, JPEG, TIFF or WebP image".into(),
        });
    }
    settings
        .availability()
        .map_err(|why| ExtractError::OcrUnavailable { why })?;
    let scratch = ocr::Scratch::new()?;
    let path = scratch.write("image", bytes)?;
    let pages = ocr::image_pages(&scratch, &path, settings, deadline).map_err(|e| match e {
        // Leptonica's words for bytes it cannot decode.
        ExtractError::OcrFailed { detail }
            if [
                "pixRead",
                "cannot be read",
                "Unsupported",
                "image file",
                "truncated",
            ]
            .iter()
            .any(|w| detail.contains(w)) =>
        {
            ExtractError::Corrupt {
                detail: format!("not an image Tesseract can read: {detail}"),
            }
        }
        e => e,
    })?;
    let several = pages.len() > 1;
    let sections: Vec<Section> = pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let page = several.then(|| u32::try_from(i + 1).unwrap_or(u32::MAX));
            Section {
                ocr: true,
                ..Section::new(text, page)
            }
        })
        .collect();
    if sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(ExtractError::Empty);
    }
    Ok(sections)
}

/// Does `bytes` start like a PNG, JPEG, TIFF or WebP file?
fn is_image(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(b"\xFF\xD8\xFF")
        || bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || (bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP")
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
        for ext in [
            "txt", "TEXT", "log", "rst", "org", "adoc", "json", "yaml", "toml", "xml",
        ] {
            assert_eq!(f(&format!("x.{ext}")), Some(Format::Text), "{ext}");
        }
        assert_eq!(f("x.py"), Some(Format::Code(Language::Python)));
        assert_eq!(f("x.TSX"), Some(Format::Code(Language::Tsx)));
        assert_eq!(f("x.hpp"), Some(Format::Code(Language::Cpp)));
        assert_eq!(f("run.sh"), Some(Format::Code(Language::Bash)));
        assert_eq!(f("x.html"), Some(Format::Html));
        assert_eq!(f("x.HTM"), Some(Format::Html));
        assert_eq!(f("x.xhtml"), Some(Format::Html));
        assert_eq!(f("x.docx"), Some(Format::Docx));
        assert_eq!(f("x.XLSX"), Some(Format::Xlsx));
        assert_eq!(f("x.csv"), Some(Format::Delimited));
        assert_eq!(f("x.png"), Some(Format::Image));
        assert_eq!(f("x.rs"), Some(Format::Code(Language::Rust)));
        assert_eq!(f("x.doc"), None);
        for p in ["x.doc", "a/B.DOC", "x.ppt", "mail.msg"] {
            assert!(published_without_reader(Path::new(p)), "{p}");
        }
        for p in ["x.docx", "x.pdf", "doc", "x.doc.txt"] {
            assert!(!published_without_reader(Path::new(p)), "{p}");
        }
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
        let why = "OCR is off ([ocr] enabled = false)".to_owned();
        let err = ExtractError::NoTextLayer { why };
        assert!(
            err.to_string().contains("scanned PDF, no text layer"),
            "{err}"
        );
        assert!(err.to_string().contains("OCR is off"), "{err}");
        let err = ExtractError::Encrypted { what: "PDF".into() };
        assert_eq!(
            err.to_string(),
            "encrypted PDF: it needs a password to be read"
        );
        assert!(ExtractError::Binary.is_permanent());
        assert_eq!(ExtractError::Empty.kind().as_str(), "empty");
    }

    #[test]
    fn only_real_images_go_to_tesseract() {
        // A list of paths: Tesseract would read the files it names.
        let list = b"/etc/hostname\n/home/someone/scan.png\n";
        for settings in [OcrSettings::default(), OcrSettings::off()] {
            assert!(
                matches!(
                    image(list, &settings, None),
                    Err(ExtractError::Corrupt { .. })
                ),
                "{settings:?}"
            );
        }
        assert!(is_image(b"\x89PNG\r\n\x1a\n...."));
        assert!(is_image(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!is_image(b"RIFF\0\0\0\0WAVE"));
    }

    #[test]
    fn empty_input_is_empty_for_every_format() {
        for format in Format::ALL {
            assert_eq!(extract(b"", format), Err(ExtractError::Empty), "{format:?}");
        }
    }
}
