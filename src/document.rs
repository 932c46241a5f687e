//! The data that flows through a pipeline, and how stable ids are derived from it.
//!
//! Ids are UUIDv5 of stable inputs so that writing the same chunk twice is
//! harmless: a retry, a crash-and-resume or a rerun lands on the same point.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Namespace for ragd's UUIDv5 point ids. Changing it would orphan every point
/// ever written, so it is fixed forever.
const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b4d_4e7a_8f10_5d2c_7e3b_91a4);

/// A piece of extracted text with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// The text of this section.
    pub text: String,
    /// 1-based page number for paged formats: the PDF page, the slide, the
    /// sheet; `None` otherwise.
    pub page: Option<u32>,
    /// Heading trail of the whole section (a sheet's name), outermost first;
    /// headings inside the text come after it.
    pub headings: Vec<String>,
    /// A table's header row: `text` then holds one row per line, and every
    /// chunk of the section starts with this line.
    pub header_row: Option<String>,
    /// The text was read from an image of the page by OCR.
    pub ocr: bool,
}

impl Section {
    /// A section of plain text.
    pub fn new(text: impl Into<String>, page: Option<u32>) -> Self {
        Section {
            text: text.into(),
            page,
            ..Section::default()
        }
    }
}

/// The input format, as decided by the extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pdf,
    Markdown,
    Text,
    Html,
    /// Word (Office Open XML).
    Docx,
    /// OpenDocument text.
    Odt,
    /// Rich Text Format.
    Rtf,
    /// PowerPoint (Office Open XML).
    Pptx,
    /// OpenDocument presentation.
    Odp,
    /// Excel (Office Open XML).
    Xlsx,
    /// Excel 97-2003 (BIFF).
    Xls,
    /// OpenDocument spreadsheet.
    Ods,
    /// Comma- or tab-separated values.
    Delimited,
    Epub,
    /// An e-mail message (eml).
    Email,
    /// An image, read by OCR.
    Image,
    /// Source code in a language ragd has a grammar for: read as text,
    /// chunked along its syntax.
    Code(Language),
}

/// A programming language ragd chunks along its syntax (a tree-sitter grammar
/// in `chunk.rs`). Code in other languages is plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    /// TypeScript with JSX (`.tsx`): a grammar of its own.
    Tsx,
    Go,
    Java,
    C,
    Cpp,
    /// Shell scripts (bash's grammar, which reads POSIX sh too).
    Bash,
}

impl Language {
    pub const ALL: [Language; 10] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::Java,
        Language::C,
        Language::Cpp,
        Language::Bash,
    ];

    /// The name in chunk payloads (`language`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
            Language::Java => "java",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Bash => "bash",
        }
    }
}

impl Format {
    /// Every format, for tests and the worker protocol.
    pub const ALL: [Format; 26] = [
        Format::Pdf,
        Format::Markdown,
        Format::Text,
        Format::Html,
        Format::Docx,
        Format::Odt,
        Format::Rtf,
        Format::Pptx,
        Format::Odp,
        Format::Xlsx,
        Format::Xls,
        Format::Ods,
        Format::Delimited,
        Format::Epub,
        Format::Email,
        Format::Image,
        Format::Code(Language::Rust),
        Format::Code(Language::Python),
        Format::Code(Language::JavaScript),
        Format::Code(Language::TypeScript),
        Format::Code(Language::Tsx),
        Format::Code(Language::Go),
        Format::Code(Language::Java),
        Format::Code(Language::C),
        Format::Code(Language::Cpp),
        Format::Code(Language::Bash),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Html => "html",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Rtf => "rtf",
            Format::Pptx => "pptx",
            Format::Odp => "odp",
            Format::Xlsx => "xlsx",
            Format::Xls => "xls",
            Format::Ods => "ods",
            Format::Delimited => "csv",
            Format::Epub => "epub",
            Format::Email => "eml",
            Format::Image => "image",
            // A code file's hash differs from the same bytes read as text: its
            // chunks do.
            Format::Code(language) => language.as_str(),
        }
    }

    /// The extractor writes this format's text as Markdown (headings as ATX
    /// headings), so the chunker splits it along Markdown structure and gives
    /// its chunks heading trails.
    pub const fn is_markdown(self) -> bool {
        matches!(
            self,
            Format::Markdown
                | Format::Docx
                | Format::Odt
                | Format::Rtf
                | Format::Pptx
                | Format::Odp
                | Format::Epub
                | Format::Email
        )
    }
}

/// What an extractor produces from a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub format: Format,
    /// In reading order. PDFs have one section per page; other formats one section.
    pub sections: Vec<Section>,
    /// What extraction left out while reading the rest, one line each ("page 2
    /// is not indexed: OCR failed: ..."): one bad page costs that page, and the
    /// file is indexed with what was read. The ledger keeps these lines for
    /// `ragd why` (`FileRecord::warning`). Not part of the text hash: they say
    /// what the text lacks, not what it is.
    pub warnings: Vec<String>,
}

impl Document {
    /// Hash of the extracted text (and page boundaries). A file whose bytes changed
    /// but whose text did not keeps this hash, so it is not re-embedded.
    pub fn text_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.format.as_str().as_bytes());
        for s in &self.sections {
            h.update(b"\x00section\x00");
            h.update(s.page.unwrap_or(0).to_le_bytes());
            h.update(s.text.as_bytes());
            // Only what a plain text section lacks, so that the hash of every
            // document ragd indexed before these fields existed is unchanged.
            for heading in &s.headings {
                h.update(b"\x00heading\x00");
                h.update(heading.as_bytes());
            }
            if let Some(header) = &s.header_row {
                h.update(b"\x00header\x00");
                h.update(header.as_bytes());
            }
            if s.ocr {
                h.update(b"\x00ocr");
            }
        }
        hex::encode(h.finalize())
    }

    /// Total length of the extracted text in bytes.
    pub fn text_len(&self) -> usize {
        self.sections.iter().map(|s| s.text.len()).sum()
    }

    /// True when no section holds anything but whitespace.
    pub fn is_blank(&self) -> bool {
        self.sections.iter().all(|s| s.text.trim().is_empty())
    }
}

/// One piece of a document as it will be embedded and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position of the chunk within its file, from 0.
    pub index: u32,
    pub text: String,
    /// Page of the chunk's start: PDF page, slide or sheet number.
    pub page: Option<u32>,
    /// Heading trail in force where the chunk starts, outermost first.
    pub headings: Vec<String>,
    /// The chunk's text was read by OCR.
    pub ocr: bool,
    /// The programming language of a source file's chunk.
    pub language: Option<Language>,
}

/// A chunk with its vector.
#[derive(Debug, Clone)]
pub struct EmbeddedChunk {
    pub chunk: Chunk,
    pub vector: Vec<f32>,
}

/// SHA-256 of some bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The id of chunk `index` of file `rel_path` in `pipeline`.
///
/// Depends only on these three so that a new version of a file overwrites the old
/// version's points in place; leftovers (a shorter new version) are deleted after.
pub fn point_id(pipeline: &str, rel_path: &str, index: u32) -> Uuid {
    let mut name = Vec::with_capacity(pipeline.len() + rel_path.len() + 8);
    name.extend_from_slice(pipeline.as_bytes());
    name.push(0);
    name.extend_from_slice(rel_path.as_bytes());
    name.push(0);
    name.extend_from_slice(&index.to_le_bytes());
    Uuid::new_v5(&POINT_NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_and_distinct() {
        let a = point_id("docs", "a/b.md", 0);
        assert_eq!(a, point_id("docs", "a/b.md", 0));
        assert_ne!(a, point_id("docs", "a/b.md", 1));
        assert_ne!(a, point_id("other", "a/b.md", 0));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(point_id("ab", "c", 0), point_id("a", "bc", 0));
    }

    #[test]
    fn text_hash_ignores_nothing_that_matters() {
        let d = |t: &str, p| Document {
            format: Format::Pdf,
            sections: vec![Section::new(t, p)],
            warnings: Vec::new(),
        };
        assert_eq!(d("x", Some(1)).text_hash(), d("x", Some(1)).text_hash());
        assert_ne!(d("x", Some(1)).text_hash(), d("x", Some(2)).text_hash());
        assert_ne!(d("x", Some(1)).text_hash(), d("y", Some(1)).text_hash());
        let mut ocr = d("x", Some(1));
        ocr.sections[0].ocr = true;
        assert_ne!(ocr.text_hash(), d("x", Some(1)).text_hash());
    }

    #[test]
    fn every_language_is_a_format() {
        for l in Language::ALL {
            assert!(Format::ALL.contains(&Format::Code(l)), "{l:?}");
        }
    }

    #[test]
    fn format_names_are_distinct() {
        let names: std::collections::HashSet<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), Format::ALL.len());
    }
}
