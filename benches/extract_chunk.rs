//! Extraction per format and chunking, in-process (criterion).
//!
//! ```text
//! cargo bench --bench extract_chunk
//! cargo bench --bench extract_chunk -- extract/pdf   # one benchmark
//! ```
//!
//! Inputs are generated, about 10 KB of text per document, so the per-format
//! figures compare like with like; throughput is in input bytes. The
//! pipeline runs PDF and HTML in a worker process (`extract::isolate`); this
//! measures the parsers alone. `benches/pipeline.rs` measures the whole run.

// Shared with the integration tests; only `make_pdf` is used here.
#[path = "../tests/support/pdf.rs"]
mod pdf;

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ragd::chunk::{ChunkSettings, Chunker, SizeUnit};
use ragd::document::{Document, Format, Section};
use ragd::extract::extract;

/// Deterministic prose: sentence `i` of paragraph `p`, varied enough that no
/// two paragraphs are the same.
fn paragraph(p: usize, len: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "index",
        "keeps",
        "every",
        "folder",
        "in",
        "sync",
        "with",
        "a",
        "vector",
        "store",
        "and",
        "its",
        "knowledge",
        "base",
        "so",
        "that",
        "search",
        "finds",
        "what",
        "changed",
        "since",
        "last",
        "run",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut i = p * 7;
    while s.len() < len {
        s.push_str(WORDS[i % WORDS.len()]);
        i = i.wrapping_mul(31).wrapping_add(p + 11) % 1_000_003;
        s.push(if i.is_multiple_of(13) { '.' } else { ' ' });
        if s.ends_with('.') {
            s.push(' ');
        }
    }
    s.truncate(s.trim_end().len());
    s
}

/// About `target` bytes of Markdown: headings, lists, paragraphs.
fn markdown(target: usize) -> String {
    let mut s = String::from("# Benchmark document\n\n");
    let mut p = 0;
    while s.len() < target {
        if p % 5 == 0 {
            let _ = write!(s, "## Section {p}\n\n");
        }
        if p % 7 == 3 {
            for i in 0..4 {
                let _ = writeln!(s, "- item {i}: {}", paragraph(p + i, 50));
            }
            s.push('\n');
        }
        let _ = write!(s, "{}\n\n", paragraph(p, 600));
        p += 1;
    }
    s
}

fn text(target: usize) -> String {
    let mut s = String::new();
    let mut p = 0;
    while s.len() < target {
        let _ = write!(s, "{}\n\n", paragraph(p, 700));
        p += 1;
    }
    s
}

fn html(target: usize) -> String {
    let mut s = String::from(
        "<!DOCTYPE html><html><head><title>Benchmark</title><style>p{margin:0}</style>\
         <script>var x = 1;</script></head><body><nav><a href=\"/\">home</a></nav><main>\n",
    );
    let mut p = 0;
    while s.len() < target {
        if p % 5 == 0 {
            let _ = writeln!(s, "<h2>Section {p}</h2>");
        }
        let _ = writeln!(s, "<p>{}</p>", paragraph(p, 600));
        p += 1;
    }
    s.push_str("</main></body></html>\n");
    s
}

/// `pages` pages of 40 lines of about 75 characters.
fn pdf_bytes(pages: usize) -> Vec<u8> {
    let texts: Vec<String> = (0..pages)
        .map(|page| {
            (0..40)
                .map(|line| paragraph(page * 40 + line, 75))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    pdf::make_pdf(&refs)
}

fn bench_extract(c: &mut Criterion) {
    let mut group = c.benchmark_group("extract");
    let inputs: [(&str, Format, Vec<u8>); 4] = [
        ("markdown", Format::Markdown, markdown(10_000).into_bytes()),
        ("text", Format::Text, text(10_000).into_bytes()),
        ("html", Format::Html, html(10_000).into_bytes()),
        ("pdf", Format::Pdf, pdf_bytes(4)),
    ];
    for (name, format, bytes) in &inputs {
        // Fail loudly on a generator that stopped producing valid input.
        extract(bytes, *format).unwrap_or_else(|e| panic!("{name}: {e}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| extract(black_box(bytes), *format).expect("extracts"))
        });
    }
    group.finish();
}

fn bench_chunk(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk");
    let long = markdown(200_000);
    let doc = |format| Document {
        format,
        sections: vec![Section::new(long.clone(), None)],
        warnings: Vec::new(),
    };
    // The shipped pipeline's settings: 1,200 characters, overlap 100.
    let chunker = |markdown| {
        Chunker::new(ChunkSettings {
            max_size: 1_200,
            overlap: 100,
            unit: SizeUnit::Characters,
            markdown,
        })
        .expect("valid chunk settings")
    };
    group.throughput(Throughput::Bytes(long.len() as u64));
    let (md_doc, md_chunker) = (doc(Format::Markdown), chunker(true));
    group.bench_function("markdown_200k_chars", |b| {
        b.iter(|| md_chunker.chunk(black_box(&md_doc)))
    });
    let (text_doc, text_chunker) = (doc(Format::Text), chunker(false));
    group.bench_function("text_200k_chars", |b| {
        b.iter(|| text_chunker.chunk(black_box(&text_doc)))
    });
    group.finish();
}

criterion_group!(benches, bench_extract, bench_chunk);
criterion_main!(benches);
