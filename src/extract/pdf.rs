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

use std::panic::{self, AssertUnwindSafe};

use pdf_extract::{Document as PdfDocument, PlainTextOutput};

use super::ExtractError;
use crate::document::Section;

/// One section per page, `page: Some(n)` with `n` from 1.
pub(super) fn extract(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let doc = guarded(|| load(bytes))??;
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(ExtractError::Empty);
    }

    let mut sections = Vec::with_capacity(pages.len());
    let mut first_failure = None;
    let mut failed = 0usize;
    for &page in pages.keys() {
        let text = match guarded(|| page_text(&doc, page)) {
            Ok(Ok(text)) => text,
            Ok(Err(err)) | Err(err) => {
                tracing::warn!(page, error = %err, "PDF page skipped: its text could not be extracted");
                failed += 1;
                first_failure.get_or_insert((page, err));
                String::new()
            }
        };
        sections.push(Section {
            text,
            page: Some(page),
        });
    }

    if sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(match first_failure {
            // Nothing was read and something broke: report the breakage, not
            // "scanned", which would send the user looking for OCR.
            Some((page, err)) => with_page(err, page, failed),
            None => ExtractError::NoTextLayer,
        });
    }
    Ok(sections)
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
            return Err(ExtractError::Encrypted);
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

/// Run `f`, turning a panic into [`ExtractError::Panicked`].
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ExtractError> {
    // The closures only read the input and build fresh values, so a panic
    // leaves nothing half-updated behind: asserting unwind safety is sound.
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        ExtractError::Panicked { detail }
    })
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
        assert_eq!(extract(&bytes), Err(ExtractError::Encrypted));
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
    fn pages_without_text_operators_have_no_text_layer() {
        assert_eq!(
            extract(&make_pdf_without_text(2)),
            Err(ExtractError::NoTextLayer)
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
