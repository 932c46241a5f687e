//! Every file people drop (issue 22): Office documents, e-books, mail,
//! spreadsheets, code, and scanned pages through OCR, each through the
//! pipeline and the extraction worker, with its structure in the payload, and
//! each broken one with its own reason while the rest of the folder is indexed.
//!
//! The fixtures in tests/data/formats were made by real tools (pandoc,
//! LibreOffice, poppler, img2pdf, Python's email package); `make.sh` there
//! remakes them. The OCR tests need the real Tesseract and pdftoppm (Debian
//! `tesseract-ocr tesseract-ocr-eng poppler-utils`), through `real::ocr()`.

use std::collections::HashSet;

use ragd::app::App;
use ragd::ledger::{FailKind, FileState};
use ragd::pipeline::{RunRequest, RunSummary};
use ragd::store::StoredPoint;

use crate::support::env::TestEnv;
use crate::support::real;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn run(env: &TestEnv, app: &App) -> RunSummary {
    env.pipeline(app)
        .run(&RunRequest::default())
        .await
        .expect("run")
}

/// The point whose text contains `needle`.
fn point_with<'a>(points: &'a [StoredPoint], needle: &str) -> &'a StoredPoint {
    points
        .iter()
        .find(|p| p.payload.text.contains(needle))
        .unwrap_or_else(|| {
            let texts: Vec<_> = points.iter().map(|p| &p.payload.text).collect();
            panic!("no chunk with {needle:?} in {texts:#?}")
        })
}

#[tokio::test]
async fn office_ebook_mail_sheet_and_code_files_are_indexed_with_their_structure() {
    let env = TestEnv::new("").await;
    for name in [
        "report.docx",
        "report.odt",
        "report.rtf",
        "report.epub",
        "slides.pptx",
        "slides.odp",
        "sheets.xlsx",
        "sheets.ods",
        "sheets.xls",
        "message.eml",
    ] {
        env.write(name, fixture(name));
    }
    env.write(
        "counts.csv",
        "Site,Nests\nNorth shore,40\nReed bed,12\nOld mill,7\n",
    );
    env.write(
        "tool.py",
        "def count_nests(site):\n    \"\"\"Nests counted at a heron site.\"\"\"\n    return 40\n",
    );
    env.write("config.yaml", "colony:\n  site: north shore\n  nests: 40\n");
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed, s.skipped), (13, 0, 0), "{s:?}");

    // Word processing and e-books: headings in the trail. At 400 characters
    // the report splits at its level-2 headings: the first chunk holds the
    // title, Methods and its table, the second starts at Results.
    for name in ["report.docx", "report.odt", "report.rtf", "report.epub"] {
        let pts = env.points(name).await;
        let p = point_with(&pts, "Binoculars were shared");
        assert_eq!(p.payload.headings, ["Heron Survey"], "{name}");
        assert!(p.payload.text.contains("## Methods"), "{name}");
        let p = point_with(&pts, "fledged before the first week of July");
        assert_eq!(p.payload.headings, ["Heron Survey", "Results"], "{name}");
        assert!(
            pts.iter()
                .all(|p| p.payload.page.is_none() && !p.payload.ocr)
        );
    }
    // The table of the report, row by row.
    for name in ["report.docx", "report.rtf"] {
        point_with(&env.points(name).await, "North shore | 40");
    }
    // Lists as Markdown items.
    point_with(&env.points("report.rtf").await, "- Binoculars were shared");

    // Presentations: the slide number like a page, notes included.
    for name in ["slides.pptx", "slides.odp"] {
        let pts = env.points(name).await;
        let p = point_with(&pts, "Remember to thank the boardwalk volunteers.");
        assert_eq!(p.payload.page, Some(1), "{name}");
        assert_eq!(p.payload.headings[0], "Counting nests", "{name}");
        let p = point_with(&pts, "second observation hide");
        assert_eq!(p.payload.page, Some(3), "{name}");
        assert_eq!(p.payload.headings, ["Next steps"], "{name}");
    }

    // Spreadsheets: one section per sheet; every chunk repeats the header row.
    for name in ["sheets.xlsx", "sheets.ods", "sheets.xls"] {
        let pts = env.points(name).await;
        // 40 rows of some 30 characters do not fit one 400-character chunk.
        let counts: Vec<_> = pts
            .iter()
            .filter(|p| p.payload.headings == ["Counts"])
            .collect();
        assert!(counts.len() >= 3, "{name}: {} chunks", counts.len());
        let mut rows = HashSet::new();
        for p in &counts {
            assert_eq!(p.payload.page, Some(1), "{name}");
            let mut lines = p.payload.text.lines();
            assert_eq!(
                lines.next(),
                Some("Site | Week | Nests | Observer"),
                "{name}"
            );
            rows.extend(lines.map(str::to_owned));
        }
        assert_eq!(rows.len(), 40, "{name}: every row once");
        let budget = point_with(&pts, "Observation hide | 2100");
        assert_eq!(budget.payload.page, Some(2));
        assert_eq!(budget.payload.headings, ["Budget"]);
        assert!(budget.payload.text.starts_with("Item | Cost\n"), "{name}");
    }
    let csv = env.points("counts.csv").await;
    assert_eq!(csv.len(), 1);
    assert_eq!(
        csv[0].payload.text,
        "Site,Nests\nNorth shore,40\nReed bed,12\nOld mill,7"
    );

    // Mail: subject as heading, headers, body and the text attachment.
    let pts = env.points("message.eml").await;
    let body = point_with(&pts, "We counted forty nests");
    assert_eq!(body.payload.headings, ["Heron count for Sunday"]);
    point_with(&pts, "From: Ada Keeper <ada@example.org>");
    // The message is one chunk; the attachment is under its own heading in it.
    let attachment = point_with(&pts, "Reed bed,12");
    assert!(
        attachment
            .payload
            .text
            .contains("## Attachment: counts.csv\n\nSite,Nests"),
        "{}",
        attachment.payload.text
    );

    // Code and structured text, as text.
    point_with(&env.points("tool.py").await, "def count_nests(site):");
    point_with(&env.points("config.yaml").await, "site: north shore");
}

#[tokio::test]
async fn broken_office_ebook_mail_and_sheet_files_get_their_own_reason() {
    let env = TestEnv::new("").await;
    env.write("good.md", "# Good\n\nThe kingfisher dives for fish.\n");
    let docx = fixture("report.docx");
    env.write("truncated.docx", &docx[..docx.len() / 2]);
    env.write("encrypted.docx", fixture("encrypted.docx"));
    // Password-protected by msoffcrypto-tool (xlsx) and LibreOffice (odt, ods);
    // DRM's container form for the EPUB (src/drm_epub.py: no tool here writes DRM).
    for name in [
        "encrypted.xlsx",
        "encrypted.odt",
        "encrypted.ods",
        "encrypted.epub",
    ] {
        env.write(name, fixture(name));
    }
    env.write("not-a-zip.pptx", b"just some words, no presentation");
    env.write("docx-as.epub", &docx);
    let xlsx = fixture("sheets.xlsx");
    env.write("truncated.xlsx", &xlsx[..xlsx.len() / 3]);
    env.write("random.ods", noise(4096));
    env.write("words.eml", "no headers here\njust words\n");
    env.write("binary.eml", b"From: a\0\x01\x02");
    let rtf = fixture("report.rtf");
    env.write("truncated.rtf", &rtf[..rtf.len() / 2]);
    let odt = fixture("report.odt");
    env.write("truncated.odt", &odt[..odt.len() - 100]);
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, 14), "{s:?}");
    for (path, kind, reason) in [
        ("truncated.docx", "corrupt", "not a valid Word document"),
        (
            "encrypted.docx",
            "encrypted",
            "encrypted Word document: it needs a password",
        ),
        (
            "encrypted.xlsx",
            "encrypted",
            "encrypted Excel workbook: it needs a password",
        ),
        (
            "encrypted.odt",
            "encrypted",
            "encrypted OpenDocument text: it needs a password",
        ),
        (
            "encrypted.ods",
            "encrypted",
            "encrypted OpenDocument spreadsheet: it needs a password",
        ),
        (
            "encrypted.epub",
            "encrypted",
            "encrypted EPUB e-book: it needs a password",
        ),
        (
            "not-a-zip.pptx",
            "corrupt",
            "not a valid PowerPoint presentation",
        ),
        ("docx-as.epub", "corrupt", "META-INF/container.xml"),
        ("truncated.xlsx", "corrupt", "not a valid Excel workbook"),
        (
            "random.ods",
            "corrupt",
            "not a valid OpenDocument spreadsheet",
        ),
        ("words.eml", "corrupt", "not an e-mail message"),
        ("binary.eml", "binary", "binary data"),
        ("truncated.odt", "corrupt", "OpenDocument text"),
        (
            "truncated.rtf",
            "corrupt",
            "not a valid RTF document: truncated",
        ),
    ] {
        let r = app.ledger.get("docs", path).unwrap().unwrap();
        assert_eq!(r.state, FileState::Failed, "{path}: {r:?}");
        assert_eq!(
            r.error_kind.as_ref().map(FailKind::as_str),
            Some(kind),
            "{path}: {r:?}"
        );
        let error = r.error.unwrap_or_default();
        assert!(error.contains(reason), "{path}: {error:?} lacks {reason:?}");
        assert!(env.points(path).await.is_empty(), "{path} has points");
    }
    assert_eq!(env.points("good.md").await.len(), 1);
    // Permanent: not retried while unchanged.
    let s = run(&env, &app).await;
    assert_eq!((s.failed, s.unchanged), (0, 15), "{s:?}");
}

/// Deterministic "random" bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Share of the words of `expected` that `got` has, in order-insensitive
/// multiset terms, ignoring case and punctuation.
fn word_recall(expected: &str, got: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let mut pool = words(got);
    let expected = words(expected);
    let mut found = 0;
    for w in &expected {
        if let Some(i) = pool.iter().position(|p| p == w) {
            pool.swap_remove(i);
            found += 1;
        }
    }
    found as f64 / expected.len() as f64
}

#[tokio::test]
async fn scanned_pages_and_images_are_read_by_ocr() {
    if real::ocr().is_none() {
        return;
    }
    let env = TestEnv::new("").await;
    env.write("scanned.pdf", fixture("scanned.pdf"));
    env.write("mixed.pdf", fixture("mixed.pdf"));
    env.write("photo.png", fixture("scanned-page.png"));
    env.write("noise.png", noise(2048));
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (3, 1), "{s:?}");

    let expected = std::fs::read_to_string(format!("{DATA}/src/ocr.md")).unwrap();
    for name in ["scanned.pdf", "photo.png"] {
        let pts = env.points(name).await;
        assert!(!pts.is_empty(), "{name}");
        let text: Vec<&str> = pts.iter().map(|p| p.payload.text.as_str()).collect();
        let recall = word_recall(&expected, &text.join(" "));
        println!("{name}: OCR word recall {:.1}%", recall * 100.0);
        assert!(recall >= 0.95, "{name}: recall {recall:.3}: {text:#?}");
        assert!(pts.iter().all(|p| p.payload.ocr), "{name}");
    }
    assert!(
        env.points("scanned.pdf")
            .await
            .iter()
            .all(|p| p.payload.page == Some(1))
    );

    // OCR on the page without a text layer only.
    let pts = env.points("mixed.pdf").await;
    let text_page = point_with(&pts, "harbour lighthouse keeper");
    assert_eq!(text_page.payload.page, Some(1));
    assert!(!text_page.payload.ocr);
    let scanned_page = point_with(&pts, "pumping station");
    assert_eq!(scanned_page.payload.page, Some(2));
    assert!(scanned_page.payload.ocr);

    let r = app.ledger.get("docs", "noise.png").unwrap().unwrap();
    assert_eq!(
        r.error_kind.as_ref().map(FailKind::as_str),
        Some("corrupt"),
        "{r:?}"
    );
}

#[tokio::test]
async fn without_ocr_scanned_pages_and_images_say_why() {
    let env = TestEnv::with("", "[ocr]\nenabled = false\n").await;
    env.write("scanned.pdf", fixture("scanned.pdf"));
    env.write("photo.png", fixture("scanned-page.png"));
    env.write("mixed.pdf", fixture("mixed.pdf"));
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (1, 2), "{s:?}");
    let r = app.ledger.get("docs", "scanned.pdf").unwrap().unwrap();
    assert_eq!(
        r.error_kind.as_ref().map(FailKind::as_str),
        Some("no_text_layer")
    );
    assert_eq!(
        r.error.as_deref(),
        Some(
            "scanned PDF, no text layer: its pages hold no extractable text, \
             and OCR is off ([ocr] enabled = false)"
        )
    );
    let r = app.ledger.get("docs", "photo.png").unwrap().unwrap();
    assert_eq!(
        r.error_kind.as_ref().map(FailKind::as_str),
        Some("ocr_unavailable")
    );
    assert!(r.error.unwrap().contains("OCR is off"));
    // The text page of the mixed PDF is still indexed, and the row says
    // which page is not and why.
    let pts = env.points("mixed.pdf").await;
    assert_eq!(pts.len(), 1);
    assert!(pts[0].payload.text.contains("lighthouse keeper"));
    let r = app.ledger.get("docs", "mixed.pdf").unwrap().unwrap();
    assert_eq!(
        r.warning.as_deref(),
        Some("page 2 is not indexed: no text layer, and OCR is off ([ocr] enabled = false)")
    );
}

/// Where a function starts and ends: its first line's start, its last line's end.
type Span = (&'static str, &'static str);

/// Per source file in tests/data/formats/code: its language in the payload and
/// its top-level functions (or methods, classes), each from its signature to
/// its end (a doc comment is a syntax node of its own, and may end the chunk
/// before); written by hand, each a few hundred characters with a blank line
/// inside, as real functions have.
const CODE: &[(&str, &str, &[Span])] = &[
    (
        "nests.rs",
        "rust",
        &[
            ("pub fn count_nests", "    total\n}"),
            ("pub fn fledging_rate", "    rate.clamp(0.0, 1.0)\n}"),
            ("pub fn report_line", "(boardwalk survey)\")\n}"),
        ],
    ),
    (
        "nests.py",
        "python",
        &[
            ("def count_nests", "    return total"),
            ("def fledging_rate", "    return min(max(rate, 0.0), 1.0)"),
            ("class Report", "(boardwalk survey)\""),
        ],
    ),
    (
        "nests.js",
        "javascript",
        &[
            ("export function countNests", "  return total;\n}"),
            (
                "export function fledgingRate",
                "  return Math.min(Math.max(rate, 0), 1);\n}",
            ),
            ("export function reportLine", "(boardwalk survey)`;\n}"),
        ],
    ),
    (
        "nests.ts",
        "typescript",
        &[
            ("export function countNests", "  return total;\n}"),
            (
                "export function fledgingRate",
                "  return Math.min(Math.max(rate, 0), 1);\n}",
            ),
            ("export interface Site", "  observer?: string;\n}"),
        ],
    ),
    (
        "nests.go",
        "go",
        &[
            ("func CountNests", "\treturn total\n}"),
            ("func FledgingRate", "\treturn min(max(rate, 0), 1)\n}"),
            ("func ReportLine", "site, nests, percent)\n}"),
        ],
    ),
    (
        "Nests.java",
        "java",
        &[
            (
                "    public static int countNests",
                "        return total;\n    }",
            ),
            (
                "    public static double fledgingRate",
                "        return Math.min(Math.max(rate, 0.0), 1.0);\n    }",
            ),
        ],
    ),
    (
        "nests.c",
        "c",
        &[
            ("int count_nests", "    return total;\n}"),
            ("double fledging_rate", "rate > 1.0 ? 1.0 : rate;\n}"),
            ("void report_line", "site, nests, percent);\n}"),
        ],
    ),
    (
        "nests.cpp",
        "cpp",
        &[
            ("int count_nests", "    return total;\n}"),
            (
                "double fledging_rate",
                "    return std::clamp(rate, 0.0, 1.0);\n}",
            ),
            ("std::string report_line", "\"% fledged\";\n}"),
        ],
    ),
    (
        "survey.sh",
        "bash",
        &[
            ("count_nests() {", "    echo \"$total\"\n}"),
            (
                "fledging_rate() {",
                "    echo $((fledged * 100 / nests))\n}",
            ),
            ("for sheet in", "done"),
        ],
    ),
];

/// The text of each function of `code` named in `spans`.
fn functions<'a>(name: &str, code: &'a str, spans: &[Span]) -> Vec<&'a str> {
    spans
        .iter()
        .map(|(start, end)| {
            let from = code
                .find(start)
                .unwrap_or_else(|| panic!("{name}: no {start:?}"));
            let to = from
                + code[from..]
                    .find(end)
                    .unwrap_or_else(|| panic!("{name}: no {end:?}"))
                + end.len();
            &code[from..to]
        })
        .collect()
}

#[tokio::test]
async fn source_code_is_chunked_along_its_syntax() {
    let env = TestEnv::new("").await;
    for (name, _, _) in CODE {
        env.write(name, fixture(&format!("code/{name}")));
    }
    // Structured text stays text: no language, whole lines.
    env.write(
        "colony.json",
        "{\n  \"site\": \"north shore\",\n  \"nests\": 40\n}\n",
    );
    env.write("colony.toml", "[colony]\nsite = \"reed bed\"\nnests = 12\n");
    env.write(
        "colony.xml",
        "<colony><site>old mill</site><nests>7</nests></colony>\n",
    );
    env.write("colony.yaml", "colony:\n  site: boathouse\n  nests: 3\n");
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (CODE.len() + 4, 0), "{s:?}");

    // What the plain-text splitter (ragd before) makes of the same files.
    let text_chunker = ragd::chunk::Chunker::new(ragd::chunk::ChunkSettings {
        max_size: 400,
        overlap: 40,
        unit: ragd::chunk::SizeUnit::Characters,
        markdown: true,
    })
    .unwrap();
    let mut split_as_text = 0;
    for (name, language, spans) in CODE {
        let code = String::from_utf8(fixture(&format!("code/{name}"))).unwrap();
        let pts = env.points(name).await;
        assert!(pts.len() >= 2, "{name}: {} chunks", pts.len());
        for p in &pts {
            assert_eq!(p.payload.language.as_deref(), Some(*language), "{name}");
        }
        let as_text = text_chunker.chunk(&ragd::document::Document {
            format: ragd::document::Format::Text,
            sections: vec![ragd::document::Section::new(code.clone(), None)],
            warnings: Vec::new(),
        });
        for f in functions(name, &code, spans) {
            assert!(
                f.chars().count() <= 400,
                "{name}: a fixture function over the size"
            );
            // A function that fits is never split: one chunk holds it whole.
            assert!(
                pts.iter().any(|p| p.payload.text.contains(f)),
                "{name}: split {f:?} across {:#?}",
                pts.iter().map(|p| &p.payload.text).collect::<Vec<_>>()
            );
            if !as_text.iter().any(|c| c.text.contains(f)) {
                split_as_text += 1;
            }
        }
    }
    // The fixtures are ones where syntax matters: plain text splits many.
    println!("functions the text splitter cuts: {split_as_text}");
    assert!(split_as_text >= 5, "{split_as_text}");

    for (name, needle) in [
        ("colony.json", "\"site\": \"north shore\""),
        ("colony.toml", "site = \"reed bed\""),
        ("colony.xml", "<site>old mill</site>"),
        ("colony.yaml", "site: boathouse"),
    ] {
        let pts = env.points(name).await;
        let p = point_with(&pts, needle);
        assert_eq!(p.payload.language, None, "{name}");
    }
}

/// A csv and a tsv longer than one chunk, written here (plain text: no
/// fixture needed): every chunk starts with the header row, every row is in
/// exactly one chunk, in order, and the file's one section has no sheet name or
/// number (a single file has no sheets to tell apart).
#[tokio::test]
async fn csv_and_tsv_longer_than_a_chunk_repeat_the_header_in_every_chunk() {
    let env = TestEnv::new("").await;
    let rows = |sep: &str| -> Vec<String> {
        (1..=150)
            .map(|i| {
                format!(
                    "site {i:03}{sep}week {}{sep}{} nests{sep}observer {}",
                    i % 12,
                    i * 3 % 41,
                    ["Ada", "Ben", "Cy"][i % 3]
                )
            })
            .collect()
    };
    let files = [
        ("counts.csv", "Site,Week,Nests,Observer", rows(",")),
        ("counts.tsv", "Site\tWeek\tNests\tObserver", rows("\t")),
    ];
    for (name, header, rows) in &files {
        // Windows line ends and a trailing blank line, as spreadsheets export.
        env.write(name, format!("{header}\r\n{}\r\n\r\n", rows.join("\r\n")));
    }
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (2, 0), "{s:?}");
    for (name, header, rows) in &files {
        let mut pts = env.points(name).await;
        pts.sort_by_key(|p| p.payload.chunk_index);
        // 150 rows of some 40 characters: about 6,000 characters in
        // 400-character chunks.
        assert!(pts.len() >= 15, "{name}: {} chunks", pts.len());
        let mut seen = Vec::new();
        for p in &pts {
            let mut lines = p.payload.text.lines();
            assert_eq!(lines.next(), Some(*header), "{name}: {:?}", p.payload.text);
            assert!(p.payload.text.chars().count() <= 400, "{name}");
            assert_eq!(p.payload.page, None, "{name}");
            assert!(p.payload.headings.is_empty(), "{name}");
            assert!(!p.payload.ocr && p.payload.language.is_none(), "{name}");
            seen.extend(lines.map(str::to_owned));
        }
        // Every row exactly once, in order: no overlap repeats a row.
        assert_eq!(&seen, rows, "{name}");
        let r = app.ledger.get("docs", name).unwrap().unwrap();
        assert_eq!(r.chunk_count as usize, pts.len(), "{name}");
    }
}

/// One page OCR cannot read costs that page only: the middle page of
/// `scanned-pages.pdf` is 111 inches wide, 33,300 pixels at 300 dpi, over
/// Tesseract's 32,767 ("Image too large"). The pages before and after it are
/// read and indexed, and the file's row says which page is missing and why
/// (`ragd why` shows it: `ops::why_shows_the_pages_a_file_was_indexed_without`).
#[tokio::test]
async fn a_page_ocr_cannot_read_costs_that_page_and_is_recorded() {
    if real::ocr().is_none() {
        return;
    }
    // Two pages of OCR at some 1-13 s each on a loaded machine: room for both.
    let env = TestEnv::with("", "[limits]\nextract_timeout_secs = 300\n").await;
    env.write("scans.pdf", fixture("scanned-pages.pdf"));
    env.write("good.md", "# Good\n\nThe kingfisher dives for fish.\n");
    let app = env.app();
    let s = run(&env, &app).await;
    assert_eq!((s.added, s.failed), (2, 0), "{s:?}");

    let pts = env.points("scans.pdf").await;
    let first = point_with(&pts, "pumping station");
    assert_eq!((first.payload.page, first.payload.ocr), (Some(1), true));
    let third = point_with(&pts, "harbour lighthouse keeper");
    assert_eq!((third.payload.page, third.payload.ocr), (Some(3), true));
    assert!(pts.iter().all(|p| p.payload.page != Some(2)), "{pts:#?}");

    let r = app.ledger.get("docs", "scans.pdf").unwrap().unwrap();
    assert_eq!((r.state, r.error_kind.as_ref()), (FileState::Indexed, None));
    let warning = r.warning.expect("the missing page is recorded");
    assert!(
        warning.starts_with("page 2 is not indexed: OCR failed: tesseract failed")
            && warning.contains("Image too large")
            && !warning.contains('\n'),
        "{warning}"
    );
    // The same bytes are not read again.
    let s = run(&env, &app).await;
    assert_eq!((s.unchanged, s.failed), (2, 0), "{s:?}");
}

/// `[ocr] max_pages` stops OCR after that many pages without a text layer;
/// the pages past it are left out and the file's row names them.
#[tokio::test]
async fn ocr_stops_at_max_pages_and_the_pages_past_it_are_named() {
    if real::ocr().is_none() {
        return;
    }
    let env = TestEnv::with("", "[ocr]\nmax_pages = 1\n").await;
    env.write("scans.pdf", fixture("scanned-pages.pdf"));
    // A text page does not count: only pages OCR reads do.
    env.write("mixed.pdf", fixture("mixed.pdf"));
    let app = env.app();
    let started = std::time::Instant::now();
    let s = run(&env, &app).await;
    println!("two PDFs with max_pages = 1: {:.1?}", started.elapsed());
    assert_eq!((s.added, s.failed), (2, 0), "{s:?}");

    let pts = env.points("scans.pdf").await;
    point_with(&pts, "pumping station");
    assert!(pts.iter().all(|p| p.payload.page == Some(1)), "{pts:#?}");
    let r = app.ledger.get("docs", "scans.pdf").unwrap().unwrap();
    assert_eq!(r.state, FileState::Indexed);
    assert_eq!(
        r.warning.as_deref(),
        Some(
            "pages 2-3 are not indexed: no text layer, and OCR reads at most 1 page(s) \
             per file (ocr.max_pages)"
        )
    );
    // mixed.pdf: its text page, and its one scanned page within the limit.
    let pts = env.points("mixed.pdf").await;
    point_with(&pts, "harbour lighthouse keeper");
    assert_eq!(point_with(&pts, "pumping station").payload.page, Some(2));
    let r = app.ledger.get("docs", "mixed.pdf").unwrap().unwrap();
    assert_eq!(r.warning, None);
}
