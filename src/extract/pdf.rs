//! PDF: bytes → one section per page.
//!
//! The file is parsed once with lopdf (pdf-extract's own PDF library, which it
//! re-exports) so that encryption can be told apart from corruption before any
//! text is extracted; then pdf-extract renders each page's text separately, so
//! that every section carries its page number.
//!
//! pdf-extract panics on some malformed files (unwraps deep in its font and
//! content handling). Each page runs under `catch_unwind`: one bad page costs that
//! page, not the file, and never the worker. `catch_unwind` does not cover a
//! stack overflow or an abort; only a separate process would.
//!
//! Pages that give no text (scanned pages) are then read by OCR (`ocr.rs`),
//! when it is on and installed, up to `ocr.max_pages` per file and until the
//! file's deadline: a PDF with text on some pages and not on others gets OCR
//! on the missing pages only, and those sections say so (`ocr: true`).

use std::time::Instant;

use pdf_extract::{Document as PdfDocument, PlainTextOutput};

use super::ocr::{self, OcrSettings};
use super::{ExtractError, guarded};
use crate::document::Section;

/// One section per page, `page: Some(n)` with `n` from 1. A page left out
/// (its text could not be extracted and OCR did not read it, OCR failed on it,
/// it is past `ocr.max_pages` or the file's deadline) is a line in `warnings`
/// while the other pages are kept.
pub(super) fn extract(
    bytes: &[u8],
    settings: &OcrSettings,
    deadline: Option<Instant>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Section>, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let doc = guarded(|| load(bytes))??;
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(ExtractError::Empty);
    }

    let mut sections = Vec::with_capacity(pages.len());
    // Pages whose text could not be extracted, with why: OCR may still read them.
    let mut broken: Vec<(u32, ExtractError)> = Vec::new();
    for &page in pages.keys() {
        let text = match guarded(|| page_text(&doc, page)) {
            Ok(Ok(text)) => text,
            Ok(Err(err)) | Err(err) => {
                tracing::warn!(page, error = %err, "PDF page skipped: its text could not be extracted");
                broken.push((page, err));
                String::new()
            }
        };
        sections.push(Section::new(text, Some(page)));
    }

    let ocr = ocr_blank_pages(bytes, &mut sections, settings, deadline);
    if sections.iter().all(|s| s.text.trim().is_empty()) {
        let failed = broken.len();
        return Err(
            match (broken.into_iter().next(), ocr.failures.into_iter().next()) {
                // Nothing was read and something broke: report the breakage, not
                // "scanned", which would send the user looking for OCR.
                (Some((page, err)), _) => with_page(err, page, failed),
                (None, Some((page, err))) => ExtractError::OcrFailed {
                    detail: format!("page {page}: {}", ocr_detail(err)),
                },
                (None, None) => ExtractError::NoTextLayer {
                    why: ocr
                        .why_not
                        .unwrap_or_else(|| "OCR found no text on them either".into()),
                },
            },
        );
    }
    // Something was read: what was not is said, page by page.
    let still_blank = |page: u32| {
        sections
            .iter()
            .any(|s| s.page == Some(page) && s.text.trim().is_empty())
    };
    for (page, err) in broken {
        if still_blank(page) {
            warnings.push(format!(
                "page {page} is not indexed: its text could not be extracted ({err})"
            ));
        }
    }
    for (page, err) in ocr.failures {
        warnings.push(format!("page {page} is not indexed: {err}"));
    }
    if !ocr.over_limit.is_empty() {
        warnings.push(format!(
            "{}: no text layer, and OCR reads at most {} page(s) per file (ocr.max_pages)",
            not_indexed(&ocr.over_limit),
            settings.max_pages
        ));
    }
    if !ocr.past_deadline.is_empty() {
        warnings.push(format!(
            "{}: OCR stopped at the file's deadline (limits.extract_timeout_secs)",
            not_indexed(&ocr.past_deadline)
        ));
    }
    if let Some(why) = ocr.why_not {
        let blank: Vec<u32> = sections
            .iter()
            .filter(|s| s.text.trim().is_empty())
            .filter_map(|s| s.page)
            .collect();
        if !blank.is_empty() {
            warnings.push(format!("{}: no text layer, and {why}", not_indexed(&blank)));
        }
    }
    Ok(sections)
}

/// "page 3 is not indexed" or "pages 2-4, 7 are not indexed".
fn not_indexed(pages: &[u32]) -> String {
    match pages {
        [one] => format!("page {one} is not indexed"),
        _ => format!("pages {} are not indexed", page_ranges(pages)),
    }
}

/// Ascending page numbers as ranges: "2-4, 7".
fn page_ranges(pages: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pages.len() {
        let start = pages[i];
        let mut end = start;
        while i + 1 < pages.len() && pages[i + 1] == end + 1 {
            i += 1;
            end = pages[i];
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

/// An OCR error's detail without the "OCR failed: " its message starts with.
fn ocr_detail(err: ExtractError) -> String {
    match err {
        ExtractError::OcrFailed { detail } => detail,
        other => other.to_string(),
    }
}

/// What OCR did with a PDF's pages without text.
#[derive(Default)]
struct OcrOutcome {
    /// Why OCR did not run (off, not installed), when there were pages for it.
    why_not: Option<String>,
    /// Pages OCR failed on, with the error.
    failures: Vec<(u32, ExtractError)>,
    /// Pages without text past `ocr.max_pages`, not tried.
    over_limit: Vec<u32>,
    /// Pages not tried because the file's deadline had come.
    past_deadline: Vec<u32>,
}

/// OCR the pages without text, in place, one page at a time: a page that
/// fails costs that page.
fn ocr_blank_pages(
    bytes: &[u8],
    sections: &mut [Section],
    settings: &OcrSettings,
    deadline: Option<Instant>,
) -> OcrOutcome {
    let mut outcome = OcrOutcome::default();
    let blank: Vec<usize> = (0..sections.len())
        .filter(|&i| sections[i].text.trim().is_empty())
        .collect();
    if blank.is_empty() {
        return outcome;
    }
    if let Err(why) = settings.pdf_availability() {
        outcome.why_not = Some(why);
        return outcome;
    }
    let scratch = match ocr::Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            outcome.why_not = Some(e.to_string());
            return outcome;
        }
    };
    let path = match scratch.write("input.pdf", bytes) {
        Ok(p) => p,
        Err(e) => {
            outcome.why_not = Some(e.to_string());
            return outcome;
        }
    };
    let pages: Vec<u32> = sections.iter().map(|s| s.page.unwrap_or(1)).collect();
    let page_of = |i: usize| pages[i];
    let limit = settings.max_pages as usize;
    outcome.over_limit = blank.iter().skip(limit).map(|&i| page_of(i)).collect();
    if !outcome.over_limit.is_empty() {
        tracing::warn!(
            pages = blank.len(),
            limit,
            "PDF has more pages without text than ocr.max_pages; the rest are left out"
        );
    }
    let tried: Vec<usize> = blank.into_iter().take(limit).collect();
    for (n, &i) in tried.iter().enumerate() {
        let page = page_of(i);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                page,
                "OCR stopped at the file's deadline (limits.extract_timeout_secs); later pages are left out"
            );
            outcome.past_deadline = tried[n..].iter().map(|&i| page_of(i)).collect();
            break;
        }
        match ocr::pdf_page(&scratch, &path, page, settings, deadline) {
            Ok(text) => {
                sections[i].text = text;
                sections[i].ocr = true;
            }
            Err(err) => {
                tracing::warn!(page, error = %err, "OCR of a PDF page failed; page skipped");
                outcome.failures.push((page, err));
            }
        }
    }
    outcome
}

/// Parse the file and make sure it can be read without a password.
fn load(bytes: &[u8]) -> Result<PdfDocument, ExtractError> {
    let mut doc = PdfDocument::load_mem(bytes).map_err(|e| ExtractError::Corrupt {
        detail: e.to_string(),
    })?;
    if doc.is_encrypted() {
        // lopdf tries the empty user password while loading and, when it works
        // (an "owner password only" PDF that every viewer opens), decrypts every
        // object and records the state. Without that state the objects are
        // still ciphertext: a password is needed.
        if doc.encryption_state.is_none() {
            return Err(ExtractError::Encrypted { what: "PDF".into() });
        }
        // Already decrypted; drop the marker so pdf-extract does not treat the
        // document as encrypted again.
        doc.trailer.remove(b"Encrypt");
    }
    Ok(doc)
}

/// The text of one page, trimmed.
fn page_text(doc: &PdfDocument, page: u32) -> Result<String, ExtractError> {
    let mut text = String::new();
    let mut output = PlainTextOutput::new(&mut text);
    pdf_extract::output_doc_page(doc, &mut output, page).map_err(|e| ExtractError::Corrupt {
        detail: e.to_string(),
    })?;
    Ok(text.trim().to_owned())
}

/// Say which page failed (and how many did) in the error's detail.
fn with_page(err: ExtractError, page: u32, failed: usize) -> ExtractError {
    let context = |detail: String| format!("page {page} (of {failed} failed): {detail}");
    match err {
        ExtractError::Corrupt { detail } => ExtractError::Corrupt {
            detail: context(detail),
        },
        ExtractError::Panicked { detail } => ExtractError::Panicked {
            detail: context(detail),
        },
        other => other,
    }
}

/// The PDF builders shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/support/pdf.rs"]
mod test_pdf;

#[cfg(test)]
mod tests {
    use super::test_pdf::{make_encrypted_pdf, make_pdf, make_pdf_without_text};
    use super::*;

    /// Without OCR, as the tests of parsing need.
    fn extract(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
        super::extract(bytes, &OcrSettings::off(), None, &mut Vec::new())
    }

    #[test]
    fn each_page_is_a_section_with_its_number() {
        let bytes = make_pdf(&["Hello from page one", "Second page\nhas two lines"]);
        let sections = extract(&bytes).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].page, Some(1));
        assert_eq!(sections[1].page, Some(2));
        assert!(
            sections[0].text.contains("Hello from page one"),
            "{sections:?}"
        );
        assert!(!sections[0].text.contains("Second"), "{sections:?}");
        assert!(sections[1].text.contains("Second page"), "{sections:?}");
        assert!(sections[1].text.contains("has two lines"), "{sections:?}");
    }

    #[test]
    fn a_page_without_text_is_an_empty_section_between_others() {
        // A blank page in the middle keeps later pages' numbers right.
        let bytes = make_pdf(&["first", "", "third"]);
        let sections = extract(&bytes).unwrap();
        let pages: Vec<_> = sections.iter().map(|s| (s.page, s.text.as_str())).collect();
        assert_eq!(
            pages,
            vec![(Some(1), "first"), (Some(2), ""), (Some(3), "third")]
        );
    }

    #[test]
    fn random_bytes_are_corrupt_not_a_panic() {
        // A fixed xorshift stream: "random", but the same on every run.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        assert!(matches!(extract(&bytes), Err(ExtractError::Corrupt { .. })));
        let mut fake = b"%PDF-1.7\n".to_vec();
        fake.extend_from_slice(&bytes);
        assert!(matches!(extract(&fake), Err(ExtractError::Corrupt { .. })));
    }

    #[test]
    fn truncated_pdf_is_an_error_not_a_panic() {
        let bytes = make_pdf(&["some text on a page"]);
        for len in [10, bytes.len() / 2, bytes.len() - 20] {
            let result = extract(&bytes[..len]);
            assert!(
                matches!(
                    result,
                    Err(ExtractError::Corrupt { .. } | ExtractError::Panicked { .. }) | Ok(_)
                ),
                "{len}: {result:?}"
            );
        }
        assert!(matches!(
            extract(&bytes[..10]),
            Err(ExtractError::Corrupt { .. })
        ));
    }

    #[test]
    fn password_protected_pdf_is_encrypted() {
        let bytes = make_encrypted_pdf(&["top secret"], "user-pw", "owner-pw");
        assert_eq!(
            extract(&bytes),
            Err(ExtractError::Encrypted { what: "PDF".into() })
        );
    }

    #[test]
    fn owner_password_only_pdf_is_read() {
        // Encrypted with an empty user password: every viewer opens it, so ragd
        // should too.
        let bytes = make_encrypted_pdf(&["readable text"], "", "owner-pw");
        let sections = extract(&bytes).unwrap();
        assert_eq!(sections.len(), 1);
        assert!(sections[0].text.contains("readable text"), "{sections:?}");
    }

    #[test]
    fn pages_without_text_operators_have_no_text_layer_and_say_ocr_is_off() {
        assert_eq!(
            extract(&make_pdf_without_text(2)),
            Err(ExtractError::NoTextLayer {
                why: "OCR is off ([ocr] enabled = false)".into()
            })
        );
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let err = guarded(|| -> () { panic!("boom") }).unwrap_err();
        assert_eq!(
            err,
            ExtractError::Panicked {
                detail: "boom".into()
            }
        );
    }
}
