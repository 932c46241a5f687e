//! Zip packages (Office Open XML, OpenDocument, EPUB) and the Markdown-like
//! text their readers write.
//!
//! The readers of `office.rs` and `epub.rs` turn a document's structure into
//! Markdown: headings become ATX headings, list items `- ` lines, table rows
//! `cell | cell` lines. The chunker then splits these documents exactly as it
//! splits Markdown files, and gives their chunks heading trails by the one
//! rule in `chunk.rs`, instead of a second heading mechanism per format.

use std::io::{Cursor, Read};

use zip::ZipArchive;
use zip::result::ZipError;

use super::ExtractError;

/// Most bytes the parts read from one package may inflate to, together. A
/// zip bomb (a tiny file that inflates to gigabytes) stops here with a clear
/// error instead of running the worker out of memory or time; real packages
/// are far smaller (the text of a 1,000-page Word document is some 10 MiB of
/// XML). Counted per package, not per part: a presentation or a book names
/// the parts to read itself, and a crafted one names one part a thousand
/// times (or holds a thousand entries sharing one compressed stream).
const MAX_INFLATED_BYTES: u64 = 256 << 20;

/// The first bytes of an OLE2 compound file: legacy Office files (doc, xls,
/// ppt) and password-protected Office Open XML files, whose encrypted zip
/// sits in a compound file's `EncryptedPackage` stream.
const CFB_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// An opened zip package.
pub(super) struct Package<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// What the file is, for messages ("Word document").
    what: &'static str,
    /// Bytes inflated so far, against [`MAX_INFLATED_BYTES`].
    inflated: u64,
}

impl<'a> Package<'a> {
    /// Open `bytes` as a zip package holding a `what`.
    pub(super) fn open(bytes: &'a [u8], what: &'static str) -> Result<Self, ExtractError> {
        if bytes.is_empty() {
            return Err(ExtractError::Empty);
        }
        if bytes.starts_with(CFB_MAGIC) {
            return Err(if utf16_contains(bytes, "EncryptedPackage") {
                ExtractError::Encrypted { what: what.into() }
            } else {
                ExtractError::Corrupt {
                    detail: format!(
                        "not a valid {what}: an OLE2 compound file (a legacy binary Office file renamed?)"
                    ),
                }
            });
        }
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| ExtractError::Corrupt {
            detail: format!("not a valid {what} (not a zip package): {e}"),
        })?;
        Ok(Package {
            zip,
            what,
            inflated: 0,
        })
    }

    /// True when the package has a part named `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// The bytes of part `name`, `None` when there is no such part.
    pub(super) fn part(&mut self, name: &str) -> Result<Option<Vec<u8>>, ExtractError> {
        let what = self.what;
        let entry = match self.zip.by_name(name) {
            Ok(entry) => entry,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(ZipError::UnsupportedArchive(m)) if m.contains("assword") => {
                return Err(ExtractError::Encrypted { what: what.into() });
            }
            Err(e) => {
                return Err(ExtractError::Corrupt {
                    detail: format!("{name}: {e}"),
                });
            }
        };
        if entry.encrypted() {
            return Err(ExtractError::Encrypted { what: what.into() });
        }
        let bomb = || ExtractError::Corrupt {
            detail: format!(
                "{name}: the package's parts inflate to more than {} MiB (a zip bomb?)",
                MAX_INFLATED_BYTES >> 20
            ),
        };
        let left = MAX_INFLATED_BYTES - self.inflated;
        // The zip reader stops at the declared size, so a part declared too
        // large is refused before anything is inflated.
        if entry.size() > left {
            return Err(bomb());
        }
        let mut bytes = Vec::new();
        entry
            .take(left + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ExtractError::Corrupt {
                detail: format!("{name}: {e}"),
            })?;
        if bytes.len() as u64 > left {
            return Err(bomb());
        }
        self.inflated += bytes.len() as u64;
        Ok(Some(bytes))
    }

    /// The bytes of part `name`, which the format requires.
    pub(super) fn required(&mut self, name: &str) -> Result<Vec<u8>, ExtractError> {
        let what = self.what;
        self.part(name)?.ok_or_else(|| ExtractError::Corrupt {
            detail: format!("not a valid {what}: the package has no {name}"),
        })
    }
}

/// Refuse a zip package read by another crate (calamine reads xlsx and ods
/// itself, without a cap) whose parts declare more than
/// [`MAX_INFLATED_BYTES`] together: the zip reader stops each part at its
/// declared size, so this bounds what those readers inflate. Pictures and
/// thumbnails are left out of the sum: no reader looks at them, and a
/// workbook may hold large ones. A file that is not a zip is left to the
/// reader, which says so in its own words.
pub(super) fn check_declared_sizes(bytes: &[u8], what: &str) -> Result<(), ExtractError> {
    let Ok(zip) = ZipArchive::new(Cursor::new(bytes)) else {
        return Ok(());
    };
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index_data(i) else {
            continue;
        };
        let picture = ["xl/media/", "Pictures/", "Thumbnails/"]
            .iter()
            .any(|dir| entry.name_raw().starts_with(dir.as_bytes()));
        if !picture {
            total = total.saturating_add(entry.size());
        }
        if total > MAX_INFLATED_BYTES {
            return Err(ExtractError::Corrupt {
                detail: format!(
                    "not a valid {what}: its parts inflate to more than {} MiB (a zip bomb?)",
                    MAX_INFLATED_BYTES >> 20
                ),
            });
        }
    }
    Ok(())
}

/// Does `haystack` contain `needle` encoded as UTF-16LE (how compound files
/// name their streams)?
fn utf16_contains(haystack: &[u8], needle: &str) -> bool {
    let encoded: Vec<u8> = needle.encode_utf16().flat_map(u16::to_le_bytes).collect();
    haystack.windows(encoded.len()).any(|w| w == encoded)
}

/// Resolve `target` relative to the folder of part `base` (`ppt/slides/a.xml`
/// and `../notesSlides/b.xml` give `ppt/notesSlides/b.xml`); an absolute target
/// (`/word/x.xml`) is taken from the package root.
pub(super) fn resolve(base: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').collect()
    };
    // The base's own file name.
    parts.pop();
    for piece in target.split('/') {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Text written as Markdown, block by block.
#[derive(Debug, Default)]
pub(super) struct Markdown {
    out: String,
    /// The last block was a table row or list item: the next one of the same
    /// kind follows on the next line, anything else after a blank line.
    in_run: Option<Run>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    List,
    Table,
}

impl Markdown {
    fn start_block(&mut self, run: Option<Run>) {
        if !self.out.is_empty() {
            self.out.push_str(if run.is_some() && run == self.in_run {
                "\n"
            } else {
                "\n\n"
            });
        }
        self.in_run = run;
    }

    /// A heading of `level` (1 = outermost).
    pub(super) fn heading(&mut self, level: usize, text: &str) {
        let text = one_line(text);
        if text.is_empty() {
            return;
        }
        self.start_block(None);
        for _ in 0..level.clamp(1, 6) {
            self.out.push('#');
        }
        self.out.push(' ');
        self.out.push_str(&text);
    }

    /// A paragraph. A paragraph that would read as a heading or a fence line
    /// has its first character escaped, so that only real headings make trails.
    pub(super) fn paragraph(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.start_block(None);
        self.push_escaped(text);
    }

    /// A list item at nesting `depth` (0 = top level).
    pub(super) fn item(&mut self, depth: usize, text: &str) {
        let text = one_line(text);
        if text.is_empty() {
            return;
        }
        self.start_block(Some(Run::List));
        for _ in 0..depth.min(8) {
            self.out.push_str("  ");
        }
        self.out.push_str("- ");
        self.out.push_str(&text);
    }

    /// A table row; empty rows are dropped.
    pub(super) fn row(&mut self, cells: &[String]) {
        let cells: Vec<String> = cells.iter().map(|c| one_line(c)).collect();
        if cells.iter().all(String::is_empty) {
            return;
        }
        self.start_block(Some(Run::Table));
        self.push_escaped(&cells.join(" | "));
    }

    fn push_escaped(&mut self, text: &str) {
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                self.out.push('\n');
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with(['#', '`', '~']) {
                self.out.push('\\');
            }
            self.out.push_str(trimmed);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// Whitespace runs (newlines too) as one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_blocks_lists_and_tables() {
        let mut md = Markdown::default();
        md.heading(2, "Methods\n");
        md.paragraph("# not a heading");
        md.item(0, "one");
        md.item(1, "two");
        md.row(&["a".into(), "b".into()]);
        md.row(&["".into(), "".into()]);
        md.row(&["c".into(), "d".into()]);
        md.paragraph("end");
        assert_eq!(
            md.finish(),
            "## Methods\n\n\\# not a heading\n\n- one\n  - two\n\na | b\nc | d\n\nend"
        );
    }

    #[test]
    fn targets_resolve_against_their_part() {
        assert_eq!(
            resolve("ppt/slides/slide1.xml", "../notesSlides/n1.xml"),
            "ppt/notesSlides/n1.xml"
        );
        assert_eq!(
            resolve("ppt/presentation.xml", "slides/s2.xml"),
            "ppt/slides/s2.xml"
        );
        assert_eq!(resolve("word/document.xml", "/word/x.xml"), "word/x.xml");
        assert_eq!(
            resolve("OEBPS/content.opf", "text/ch%201.xhtml"),
            "OEBPS/text/ch%201.xhtml"
        );
    }

    #[test]
    fn not_a_zip_is_corrupt_and_a_compound_file_is_told_apart() {
        assert!(matches!(
            Package::open(b"plain text", "Word document"),
            Err(ExtractError::Corrupt { .. })
        ));
        let mut cfb = CFB_MAGIC.to_vec();
        cfb.extend(vec![0u8; 512]);
        match Package::open(&cfb, "Word document") {
            Err(ExtractError::Corrupt { detail }) => assert!(detail.contains("legacy"), "{detail}"),
            other => panic!("{:?}", other.err()),
        }
        cfb.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(
            Package::open(&cfb, "Word document").err(),
            Some(ExtractError::Encrypted {
                what: "Word document".into()
            })
        );
    }
}
