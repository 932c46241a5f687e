//! EPUB e-books → one section per chapter (spine document), in reading order.
//!
//! The package document named by `META-INF/container.xml` lists the chapters
//! (its spine); each is XHTML, read by the HTML reader with its `h1`–`h6` as
//! Markdown headings, so that chunks carry the chapter's heading trail. A
//! book whose chapters are encrypted (DRM, listed in `META-INF/encryption.xml`)
//! is [`ExtractError::Encrypted`]; obfuscated fonts alone are not.

use super::package::{Package, resolve};
use super::xml::{self, Xml};
use super::{ExtractError, html};
use crate::document::Section;

const EPUB: &str = "EPUB e-book";

pub(super) fn extract(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let mut pkg = Package::open(bytes, EPUB)?;
    let container = pkg.required("META-INF/container.xml")?;
    let opf_path = xml::parse(&container, "META-INF/container.xml")?
        .iter()
        .find(|e| e.opens("rootfile"))
        .and_then(|e| e.attr("full-path"))
        .map(str::to_owned)
        .ok_or_else(|| ExtractError::Corrupt {
            detail: "not a valid EPUB e-book: META-INF/container.xml names no package document"
                .into(),
        })?;
    let opf = pkg.required(&opf_path)?;
    let opf = xml::parse(&opf, &opf_path)?;

    let manifest: Vec<(&str, &str, &str)> = opf
        .iter()
        .filter(|e| e.opens("item"))
        .filter_map(|e| {
            Some((
                e.attr("id")?,
                e.attr("href")?,
                e.attr("media-type").unwrap_or(""),
            ))
        })
        .collect();
    let chapters: Vec<String> = opf
        .iter()
        .filter(|e| e.opens("itemref"))
        .filter_map(|e| e.attr("idref"))
        .filter_map(|id| manifest.iter().find(|(i, _, _)| *i == id))
        .filter(|(_, _, media)| media.contains("html"))
        .map(|(_, href, _)| percent_decode(&resolve(&opf_path, href)))
        .collect();
    if chapters.is_empty() {
        return Err(ExtractError::Empty);
    }

    if let Some(encryption) = pkg.part("META-INF/encryption.xml")? {
        let encrypted: Vec<String> = xml::parse(&encryption, "META-INF/encryption.xml")?
            .iter()
            .filter(|e| e.opens("CipherReference"))
            .filter_map(Xml::uri)
            .collect();
        if chapters.iter().any(|c| encrypted.iter().any(|u| u == c)) {
            return Err(ExtractError::Encrypted { what: EPUB.into() });
        }
    }

    let mut sections = Vec::with_capacity(chapters.len());
    for chapter in &chapters {
        let Some(bytes) = pkg.part(chapter)? else {
            return Err(ExtractError::Corrupt {
                detail: format!("chapter {chapter} is missing from the package"),
            });
        };
        match html::markdown_text(&bytes) {
            Ok(text) => sections.push(Section::new(text, None)),
            // A title page holding only an image, an empty divider.
            Err(ExtractError::Empty) => {}
            Err(e) => return Err(e),
        }
    }
    if sections.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(sections)
}

impl Xml {
    /// The `URI` attribute of a `CipherReference`, percent-decoded.
    fn uri(&self) -> Option<String> {
        self.attr("URI").map(percent_decode)
    }
}

/// Undo URL percent-encoding (`%20` → space); invalid sequences stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPUB_BOOK: &[u8] = include_bytes!("../../tests/data/formats/report.epub");

    #[test]
    fn chapters_come_in_spine_order_with_headings() {
        let sections = extract(EPUB_BOOK).unwrap();
        let all: Vec<&str> = sections.iter().map(|s| s.text.as_str()).collect();
        let text = all.join("\n\n");
        for needle in [
            "# Heron Survey",
            "The heron colony on the north shore grew to forty nests this spring.",
            "## Methods",
            "### Breeding",
            "Most chicks fledged before the first week of July.",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        assert!(sections.iter().all(|s| s.page.is_none()));
    }

    #[test]
    fn broken_books_are_corrupt() {
        for len in [10, EPUB_BOOK.len() / 2, EPUB_BOOK.len() - 30] {
            let got = extract(&EPUB_BOOK[..len]);
            assert!(
                matches!(got, Err(ExtractError::Corrupt { .. })),
                "{len}: {got:?}"
            );
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
    }
}
