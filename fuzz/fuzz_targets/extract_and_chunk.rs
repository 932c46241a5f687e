//! Arbitrary bytes through extraction and chunking, for every format.
//!
//! The first byte picks the format, the rest is the file. Extraction must return
//! a document or an `ExtractError`, never panic past its own guards, hang or
//! blow up memory (libFuzzer's `-timeout` and `-rss_limit_mb` catch those); the
//! chunks of a document must be non-blank, numbered from 0, and carry a page for
//! PDFs only.
//!
//! The modules are compiled from ragd's sources with `#[path]` rather than by
//! depending on the ragd crate: they only use `crate::document`, and building
//! the rest of ragd with coverage instrumentation would cost far more than the
//! fuzzing itself on a small machine.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/chunk.rs"]
mod chunk;
#[allow(dead_code)]
#[path = "../../src/document.rs"]
mod document;
#[allow(dead_code)]
#[path = "../../src/extract/mod.rs"]
mod extract;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use chunk::{ChunkSettings, Chunker, SizeUnit};
use document::Format;

/// Every format; images fail at once (OCR is off here: the target exercises
/// ragd's parsers, not Tesseract).
const FORMATS: [Format; 15] = Format::ALL;

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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector) % FORMATS.len()];
    let Ok(doc) = extract::extract(bytes, format) else {
        return;
    };
    assert!(!doc.is_blank(), "a document is never blank");
    for (i, chunk) in CHUNKER.chunk(&doc).iter().enumerate() {
        assert_eq!(chunk.index as usize, i, "chunks are numbered from 0");
        assert!(!chunk.text.trim().is_empty(), "no blank chunks");
        let paged = matches!(
            format,
            Format::Pdf | Format::Pptx | Format::Odp | Format::Xlsx | Format::Xls | Format::Ods
        );
        assert_eq!(chunk.page.is_some(), paged, "pages for paged formats only");
    }
});
