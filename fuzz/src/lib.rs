//! What every fuzz target runs: ragd's extraction and chunking of one file,
//! and the promises they make about any input.
//!
//! The modules are compiled from ragd's sources with `#[path]` rather than by
//! depending on the ragd crate: they only use `crate::document` and the
//! failure kinds of `crate::ledger` (a `std`-only file), and building
//! the rest of ragd with coverage instrumentation would cost far more than the
//! fuzzing itself on a small machine.

#[allow(dead_code)]
#[path = "../../src/chunk.rs"]
mod chunk;
#[allow(dead_code)]
#[path = "../../src/document.rs"]
pub mod document;
#[allow(dead_code, unused_imports)]
#[path = "../../src/extract/mod.rs"]
mod extract;
#[allow(dead_code)]
#[path = "../../src/ledger/kind.rs"]
mod fail_kind;
/// What `extract` sees of the ledger: its errors' kinds.
mod ledger {
    pub use super::fail_kind::FailKind;
}

use std::sync::LazyLock;

use chunk::{ChunkSettings, Chunker, SizeUnit};
use document::Format;

/// Small chunks so that short inputs still split; Markdown structure on.
static CHUNKER: LazyLock<Chunker> = LazyLock::new(|| {
    Chunker::new(ChunkSettings {
        max_size: 200,
        overlap: 20,
        unit: SizeUnit::Characters,
        markdown: true,
    })
    .expect("valid chunk settings")
});

/// Extract `bytes` as `format` without OCR (the targets exercise ragd's
/// parsers, not Tesseract; an image fails at once) and chunk the document.
///
/// Extraction must return a document or an error, never panic past its own
/// guards, hang or blow up memory (libFuzzer's `-timeout` and `-rss_limit_mb`
/// catch those); an error must have a kind a user is shown; the chunks of a
/// document must be non-blank, numbered from 0, and carry a page for paged
/// formats only.
pub fn check(format: Format, bytes: &[u8]) {
    let doc = match extract_caught(format, bytes) {
        Ok(doc) => doc,
        Err(e) => {
            assert!(!e.kind().as_str().is_empty() && !e.to_string().is_empty());
            // Other people's parsers run under `extract::guarded`, which turns
            // their panics into this error; ragd's own readers must not panic.
            if let extract::ExtractError::Panicked { detail } = &e {
                assert!(
                    third_party(format),
                    "ragd's own {format:?} reader panicked: {detail}"
                );
            }
            return;
        }
    };
    assert!(!doc.is_blank(), "a document is never blank");
    let paged = matches!(
        format,
        Format::Pdf | Format::Pptx | Format::Odp | Format::Xlsx | Format::Xls | Format::Ods
    );
    for (i, chunk) in CHUNKER.chunk(&doc).iter().enumerate() {
        assert_eq!(chunk.index as usize, i, "chunks are numbered from 0");
        assert!(!chunk.text.trim().is_empty(), "no blank chunks");
        assert_eq!(chunk.page.is_some(), paged, "pages for paged formats only");
    }
}

/// Formats read by other people's parsers, run under `extract::guarded`.
fn third_party(format: Format) -> bool {
    matches!(
        format,
        Format::Pdf | Format::Xlsx | Format::Xls | Format::Ods | Format::Email
    )
}

/// Extract, letting `extract::guarded` catch a third-party parser's panic:
/// libfuzzer-sys's panic hook aborts at the panic, before any `catch_unwind`,
/// so it is set aside while such a parser runs. A panic that escapes
/// extraction still aborts (libfuzzer-sys catches the unwind and aborts).
fn extract_caught(
    format: Format,
    bytes: &[u8],
) -> Result<document::Document, extract::ExtractError> {
    if !third_party(format) {
        return extract::extract(bytes, format);
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = extract::extract(bytes, format);
    std::panic::set_hook(hook);
    result
}

/// `formats[first byte % len]` and the rest of `data` as the file: one target
/// covers a family of formats that share a reader.
pub fn check_one_of(formats: &[Format], data: &[u8]) {
    if let Some((&selector, bytes)) = data.split_first() {
        check(formats[usize::from(selector) % formats.len()], bytes);
    }
}
