//! Builds small, real PDFs for tests: no fixtures on disk, no downloads.
//!
//! Written once and used twice: by the integration binary (`support::pdf`) and
//! by the unit tests in `src/extract/pdf.rs` (through `#[path]`). Each user calls
//! only some helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

use lopdf::content::{Content, Operation};
use lopdf::{
    Document, EncryptionState, EncryptionVersion, Object, Permissions, Stream, dictionary,
};

/// A PDF with one page per string, each drawn in Helvetica (a standard Type1
/// font every reader knows), one text line per `\n`-separated line.
pub fn make_pdf(pages: &[&str]) -> Vec<u8> {
    save(build_pdf(pages))
}

/// A PDF with `pages` pages that draw only a rectangle: pages but no text
/// operators, as a scanned document looks to a text extractor.
pub fn make_pdf_without_text(pages: usize) -> Vec<u8> {
    let drawing = Content {
        operations: vec![
            Operation::new("re", vec![50.into(), 50.into(), 200.into(), 100.into()]),
            Operation::new("f", vec![]),
        ],
    };
    let contents = vec![drawing; pages];
    save(build_pdf_from_contents(&contents))
}

/// [`make_pdf`], encrypted (RC4 128-bit) with these passwords. An empty
/// `user_password` makes a PDF any reader opens without asking.
pub fn make_encrypted_pdf(pages: &[&str], user_password: &str, owner_password: &str) -> Vec<u8> {
    let mut doc = build_pdf(pages);
    // The file identifier feeds the encryption key; the standard requires it.
    let id = Object::string_literal(b"ragd-test-pdf-id".to_vec());
    doc.trailer.set("ID", vec![id.clone(), id]);
    let version = EncryptionVersion::V2 {
        document: &doc,
        owner_password,
        user_password,
        key_length: 128,
        permissions: Permissions::all(),
    };
    let state = EncryptionState::try_from(version).expect("encryption parameters are valid");
    doc.encrypt(&state).expect("document encrypts");
    save(doc)
}

/// The unsaved document behind [`make_pdf`], for tests that alter it further.
pub fn build_pdf(pages: &[&str]) -> Document {
    let contents: Vec<Content> = pages.iter().map(|text| text_content(text)).collect();
    build_pdf_from_contents(&contents)
}

/// Content operators that write `text` line by line from the top of the page.
fn text_content(text: &str) -> Content {
    let mut operations = vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 12.into()]),
        // Leading (line spacing) for T*.
        Operation::new("TL", vec![16.into()]),
        Operation::new("Td", vec![72.into(), 720.into()]),
    ];
    for line in text.lines() {
        operations.push(Operation::new(
            "Tj",
            vec![Object::string_literal(line.as_bytes().to_vec())],
        ));
        operations.push(Operation::new("T*", vec![]));
    }
    operations.push(Operation::new("ET", vec![]));
    Content { operations }
}

fn build_pdf_from_contents(contents: &[Content]) -> Document {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::with_capacity(contents.len());
    for content in contents {
        let bytes = content.encode().expect("content operators encode");
        let content_id = doc.add_object(Stream::new(dictionary! {}, bytes));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    let count = i64::try_from(kids.len()).expect("page count fits");
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    doc
}

fn save(mut doc: Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("PDF saves to memory");
    bytes
}
