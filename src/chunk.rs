//! Splits a [`Document`] into [`Chunk`]s: a wrapper over `text-splitter` that
//! keeps the page and the Markdown heading trail of every chunk.
//!
//! Why text-splitter: it splits at the highest semantic level that fits
//! (Markdown sections, then paragraphs, lines, sentences, words), so a chunk
//! boundary depends only on the text near it. The same text always gives the
//! same chunks, and an edit to one paragraph of a long file changes only the
//! chunks around it, which is what lets the pipeline re-embed only those.
//!
//! Sections are chunked one by one, so a chunk never spans two PDF pages (or
//! slides, or sheets). A table section (a sheet, a csv file) is chunked by
//! rows instead: whole rows packed up to the size, each chunk starting with
//! the table's header row, so that a retrieved chunk says what its columns are.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use text_splitter::{ChunkConfig, ChunkSizer, CodeSplitter, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::document::{Chunk, Document, Format, Language};

/// What `max_size` and `overlap` count.
#[derive(Clone)]
pub enum SizeUnit {
    /// Unicode scalar values (`char`s).
    Characters,
    /// Tokens of the embedding model's tokenizer, so that a chunk fits the
    /// model's context exactly.
    Tokens(Arc<Tokenizer>),
}

impl fmt::Debug for SizeUnit {
    // A tokenizer's derived Debug prints its whole vocabulary; a log line needs
    // only to know which unit is in use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeUnit::Characters => f.write_str("Characters"),
            SizeUnit::Tokens(t) => write!(f, "Tokens(vocab_size={})", t.get_vocab_size(true)),
        }
    }
}

/// How documents are split.
#[derive(Debug, Clone)]
pub struct ChunkSettings {
    /// Largest chunk, in `unit`s. A single word (or token run) larger than this
    /// is still cut to fit.
    pub max_size: usize,
    /// How much of the end of a chunk is repeated at the start of the next, in
    /// `unit`s. Must be smaller than `max_size`.
    pub overlap: usize,
    /// What sizes count.
    pub unit: SizeUnit,
    /// Split Markdown documents (and formats read as Markdown: Office, EPUB,
    /// mail; see [`Format::is_markdown`](crate::document::Format::is_markdown))
    /// along Markdown structure (and give
    /// their chunks heading trails); otherwise they are split as plain text.
    pub markdown: bool,
}

/// Why chunk settings or a tokenizer were refused.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// `max_size` of zero: no chunk could hold anything.
    #[error("chunk max_size must be greater than 0")]
    ZeroMaxSize,
    /// The overlap would repeat a whole chunk or more.
    #[error("chunk overlap ({overlap}) must be smaller than max_size ({max_size})")]
    OverlapTooLarge { overlap: usize, max_size: usize },
    /// A compiled-in tree-sitter grammar that this tree-sitter cannot load.
    #[error("tree-sitter grammar for {language}: {detail}")]
    Grammar {
        language: &'static str,
        detail: String,
    },
    /// The tokenizer file could not be read or parsed.
    #[error("cannot load tokenizer {}: {detail}", path.display())]
    Tokenizer { path: PathBuf, detail: String },
}

/// Splits documents into chunks according to [`ChunkSettings`].
///
/// Stateless after construction: [`Chunker::chunk`] takes `&self` and may be
/// called from many threads at once.
#[derive(Debug)]
pub struct Chunker {
    text: TextSplitter<Sizer>,
    markdown: Option<MarkdownSplitter<Sizer>>,
    /// One per [`Language`], in the order of [`Language::ALL`].
    code: Vec<CodeSplitter<Sizer>>,
    /// For packing table rows: the size limit and how to measure it.
    max_size: usize,
    sizer: Sizer,
}

impl Chunker {
    /// Validate the settings and build the splitters.
    pub fn new(settings: ChunkSettings) -> Result<Self, ChunkError> {
        if settings.max_size == 0 {
            return Err(ChunkError::ZeroMaxSize);
        }
        if settings.overlap >= settings.max_size {
            return Err(ChunkError::OverlapTooLarge {
                overlap: settings.overlap,
                max_size: settings.max_size,
            });
        }
        let sizer = match settings.unit {
            SizeUnit::Characters => Sizer::Characters,
            SizeUnit::Tokens(tokenizer) => Sizer::Tokens(tokenizer),
        };
        let config = |sizer: Sizer| {
            ChunkConfig::new(settings.max_size)
                .with_sizer(sizer)
                .with_overlap(settings.overlap)
                // Checked above; text-splitter's own check is the same rule.
                .map_err(|_| ChunkError::OverlapTooLarge {
                    overlap: settings.overlap,
                    max_size: settings.max_size,
                })
        };
        let markdown = if settings.markdown {
            Some(MarkdownSplitter::new(config(sizer.clone())?))
        } else {
            None
        };
        let code = Language::ALL
            .into_iter()
            .map(|l| {
                // The grammars are compiled in: a refusal (an ABI this
                // tree-sitter cannot read) is a build that must not ship, and
                // every test that makes a chunker would say so.
                CodeSplitter::new(grammar(l), config(sizer.clone())?).map_err(|e| {
                    ChunkError::Grammar {
                        language: l.as_str(),
                        detail: e.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, ChunkError>>()?;
        Ok(Self {
            text: TextSplitter::new(config(sizer.clone())?),
            markdown,
            code,
            max_size: settings.max_size,
            sizer,
        })
    }

    /// The chunks of `doc`, indexed from 0 across the whole document.
    ///
    /// Deterministic: the same document always gives the same chunks. Chunks are
    /// trimmed; whitespace-only chunks are dropped.
    ///
    /// With [`SizeUnit::Tokens`], a tokenizer that cannot encode some text (a
    /// word-level model without an unknown token) makes text-splitter panic;
    /// tokenizers shipped with embedding models are byte-level or have one.
    pub fn chunk(&self, doc: &Document) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let markdown = self.markdown.as_ref().filter(|_| doc.format.is_markdown());
        let language = match doc.format {
            Format::Code(l) => Some(l),
            _ => None,
        };
        let code = language.and_then(|l| {
            let i = Language::ALL.iter().position(|x| *x == l)?;
            self.code.get(i)
        });
        for section in &doc.sections {
            let text = section.text.as_str();
            let pieces: Vec<(usize, String)> = match (&section.header_row, markdown, code) {
                (Some(header), _, _) => self.rows(header, text),
                // Whole functions, classes, blocks where they fit: the
                // largest syntax nodes under the size, then lines and words.
                (None, _, Some(code)) => code
                    .chunk_indices(text)
                    .map(|(o, p)| (o, p.to_owned()))
                    .collect(),
                (None, Some(md), None) => md
                    .chunk_indices(text)
                    .map(|(o, p)| (o, p.to_owned()))
                    .collect(),
                (None, None, None) => self
                    .text
                    .chunk_indices(text)
                    .map(|(o, p)| (o, p.to_owned()))
                    .collect(),
            };
            let trails = if markdown.is_some() && section.header_row.is_none() {
                HeadingTrails::of(text)
            } else {
                HeadingTrails::default()
            };
            for (offset, piece) in pieces {
                if piece.trim().is_empty() {
                    continue;
                }
                let index = u32::try_from(chunks.len()).expect("fewer than 2^32 chunks per file");
                let mut headings = section.headings.clone();
                headings.extend_from_slice(trails.at(offset));
                chunks.push(Chunk {
                    index,
                    text: piece,
                    page: section.page,
                    headings,
                    ocr: section.ocr,
                    language,
                });
            }
        }
        chunks
    }

    /// A table's rows (one a line) packed into chunks of at most `max_size`,
    /// each starting with `header` on its own line, with (offset of the first
    /// row, chunk text). Rows are never split unless one row and the header
    /// alone are over the size; such a row is split like plain text, its
    /// pieces without the header. No overlap: rows are whole units.
    fn rows(&self, header: &str, text: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut current = String::new();
        let mut start = 0;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let at = offset;
            offset += line.len();
            let row = line.trim_end_matches(['\n', '\r']);
            if row.trim().is_empty() {
                continue;
            }
            if !current.is_empty() {
                let candidate = format!("{current}\n{row}");
                if self.sizer.size(&candidate) <= self.max_size {
                    current = candidate;
                    continue;
                }
                out.push((start, std::mem::take(&mut current)));
            }
            let alone = format!("{header}\n{row}");
            if self.sizer.size(&alone) <= self.max_size {
                current = alone;
                start = at;
            } else {
                out.extend(
                    self.text
                        .chunk_indices(row)
                        .map(|(o, piece)| (at + o, piece.to_owned())),
                );
            }
        }
        if !current.is_empty() {
            out.push((start, current));
        }
        out
    }
}

/// The tree-sitter grammar of `language`.
fn grammar(language: Language) -> tree_sitter_language::LanguageFn {
    match language {
        Language::Rust => tree_sitter_rust::LANGUAGE,
        Language::Python => tree_sitter_python::LANGUAGE,
        Language::JavaScript => tree_sitter_javascript::LANGUAGE,
        Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
        Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX,
        Language::Go => tree_sitter_go::LANGUAGE,
        Language::Java => tree_sitter_java::LANGUAGE,
        Language::C => tree_sitter_c::LANGUAGE,
        Language::Cpp => tree_sitter_cpp::LANGUAGE,
        Language::Bash => tree_sitter_bash::LANGUAGE,
    }
}

/// Load a Hugging Face `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Arc<Tokenizer>, ChunkError> {
    Tokenizer::from_file(path)
        .map(Arc::new)
        .map_err(|e| ChunkError::Tokenizer {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// The sizer handed to text-splitter: one concrete type for both units, so the
/// splitters are not generic over the settings.
#[derive(Clone)]
enum Sizer {
    Characters,
    Tokens(Arc<Tokenizer>),
}

impl fmt::Debug for Sizer {
    // Same reason as for `SizeUnit`: keep the vocabulary out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sizer::Characters => f.write_str("Characters"),
            Sizer::Tokens(t) => write!(f, "Tokens(vocab_size={})", t.get_vocab_size(true)),
        }
    }
}

impl ChunkSizer for Sizer {
    fn size(&self, chunk: &str) -> usize {
        match self {
            Sizer::Characters => text_splitter::Characters.size(chunk),
            Sizer::Tokens(tokenizer) => tokenizer.as_ref().size(chunk),
        }
    }
}

/// For each ATX heading of a Markdown text, its byte offset and the heading
/// trail in force from there on, outermost first.
#[derive(Debug, Default)]
struct HeadingTrails {
    /// Sorted by offset.
    entries: Vec<(usize, Vec<String>)>,
}

impl HeadingTrails {
    fn of(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut trail: Vec<(usize, String)> = Vec::new();
        for (offset, level, title) in atx_headings(text) {
            // A heading closes every open heading of its level or deeper.
            while trail.last().is_some_and(|(l, _)| *l >= level) {
                trail.pop();
            }
            trail.push((level, title));
            let titles = trail.iter().map(|(_, t)| t.clone()).collect();
            entries.push((offset, titles));
        }
        Self { entries }
    }

    /// The trail at byte `offset`: that of the last heading starting at or
    /// before it (a chunk that starts with a heading is under that heading).
    fn at(&self, offset: usize) -> &[String] {
        let n = self.entries.partition_point(|(start, _)| *start <= offset);
        match n {
            0 => &[],
            n => &self.entries[n - 1].1,
        }
    }
}

/// The ATX headings (`#` to `######`) of a Markdown text as (byte offset of the
/// line, level, title), skipping fenced code blocks, where `#` is a comment.
fn atx_headings(text: &str) -> Vec<(usize, usize, String)> {
    let mut headings = Vec::new();
    // The open fence: its character and length. CommonMark closes a fence with
    // the same character, at least as many times, and nothing else on the line.
    let mut fence: Option<(char, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let line = line.trim_end_matches(['\n', '\r']);
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent > 3 {
            // Indented code (or a continuation line), never a heading or fence.
            continue;
        }
        let body = &line[indent..];
        if let Some((c, len)) = fence {
            let run = body.chars().take_while(|&x| x == c).count();
            if run >= len && body[run * c.len_utf8()..].trim().is_empty() {
                fence = None;
            }
            continue;
        }
        if let Some(open) = fence_open(body) {
            fence = Some(open);
            continue;
        }
        if let Some((level, title)) = atx_heading(body) {
            headings.push((start, level, title));
        }
    }
    headings
}

/// A line that opens a fenced code block: three or more backticks (with no
/// backtick in the info string) or tildes.
fn fence_open(body: &str) -> Option<(char, usize)> {
    let c = body.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let run = body.chars().take_while(|&x| x == c).count();
    if run < 3 {
        return None;
    }
    if c == '`' && body[run..].contains('`') {
        // Inline code such as ```x``` on one line, not a fence.
        return None;
    }
    Some((c, run))
}

/// Level and title of an ATX heading line (indentation already removed).
fn atx_heading(body: &str) -> Option<(usize, String)> {
    let level = body.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &body[level..];
    // "#hashtag" is a paragraph, not a heading: a space, tab or end must follow.
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut title = rest.trim();
    // An optional closing sequence of #s, if preceded by a space ("## A ##").
    let without_closing = title.trim_end_matches('#');
    if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
        title = without_closing.trim_end();
    }
    Some((level, title.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::document::{Format, Section};

    fn chars(max_size: usize, overlap: usize, markdown: bool) -> Chunker {
        Chunker::new(ChunkSettings {
            max_size,
            overlap,
            unit: SizeUnit::Characters,
            markdown,
        })
        .unwrap()
    }

    fn doc(format: Format, sections: &[(&str, Option<u32>)]) -> Document {
        Document {
            format,
            sections: sections.iter().map(|(t, p)| Section::new(*t, *p)).collect(),
            warnings: Vec::new(),
        }
    }

    fn markdown(text: &str) -> Document {
        doc(Format::Markdown, &[(text, None)])
    }

    /// A word-level tokenizer with only an unknown token: every word and every
    /// run of punctuation is exactly one token. Built from JSON, no download.
    const TOKENIZER_JSON: &str = r#"{
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}
    }"#;

    fn word_tokenizer() -> Arc<Tokenizer> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, TOKENIZER_JSON).unwrap();
        load_tokenizer(&path).unwrap()
    }

    #[test]
    fn chunker_can_be_shared_between_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Chunker>();
    }

    #[test]
    fn settings_are_validated() {
        let new = |max_size, overlap| {
            Chunker::new(ChunkSettings {
                max_size,
                overlap,
                unit: SizeUnit::Characters,
                markdown: true,
            })
        };
        assert!(matches!(new(0, 0), Err(ChunkError::ZeroMaxSize)));
        assert!(matches!(
            new(10, 10),
            Err(ChunkError::OverlapTooLarge {
                overlap: 10,
                max_size: 10
            })
        ));
        assert!(new(10, 9).is_ok());
    }

    #[test]
    fn missing_tokenizer_file_is_a_clear_error() {
        let err = load_tokenizer(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }

    #[test]
    fn settings_debug_does_not_dump_the_vocabulary() {
        let settings = ChunkSettings {
            max_size: 10,
            overlap: 0,
            unit: SizeUnit::Tokens(word_tokenizer()),
            markdown: false,
        };
        let shown = format!("{settings:?}");
        assert!(shown.contains("Tokens(vocab_size=1)"), "{shown}");
    }

    #[test]
    fn plain_text_is_split_within_the_size() {
        let text = "One sentence here. Another sentence there.\n\nA new paragraph follows.";
        let chunks = chars(30, 0, false).chunk(&doc(Format::Text, &[(text, None)]));
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "One sentence here.",
                "Another sentence there.",
                "A new paragraph follows."
            ]
        );
        assert!(
            chunks
                .iter()
                .all(|c| c.headings.is_empty() && c.page.is_none())
        );
        let indices: Vec<_> = chunks.iter().map(|c| c.index).collect();
        assert_eq!(indices, vec![0, 1, 2]);
    }

    #[test]
    fn chunks_keep_their_page_and_never_span_two() {
        let d = doc(
            Format::Pdf,
            &[
                ("page one text", Some(1)),
                ("   ", Some(2)),
                ("page three text", Some(3)),
            ],
        );
        let chunks = chars(100, 0, true).chunk(&d);
        let got: Vec<_> = chunks
            .iter()
            .map(|c| (c.index, c.page, c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, Some(1), "page one text"),
                (1, Some(3), "page three text")
            ]
        );
    }

    #[test]
    fn markdown_chunks_carry_their_heading_trail() {
        let text = "Preamble.\n\n# Guide\n\nIntro paragraph.\n\n## Install\n\n\
            Install steps go here.\n\n```sh\n# not a heading\necho hi\n```\n\n\
            ### Linux ###\n\nLinux notes.\n\n## Use\n\nUsage text.\n\n# Appendix\n\nEnd.";
        let chunks = chars(25, 0, true).chunk(&markdown(text));
        let trail_of = |needle: &str| {
            chunks
                .iter()
                .find(|c| c.text.contains(needle))
                .unwrap_or_else(|| panic!("no chunk with {needle:?}: {chunks:#?}"))
                .headings
                .clone()
        };
        assert_eq!(trail_of("Preamble"), Vec::<String>::new());
        assert_eq!(trail_of("Intro paragraph"), ["Guide"]);
        assert_eq!(trail_of("Install steps"), ["Guide", "Install"]);
        assert_eq!(trail_of("echo hi"), ["Guide", "Install"]);
        assert_eq!(trail_of("Linux notes"), ["Guide", "Install", "Linux"]);
        assert_eq!(trail_of("Usage text"), ["Guide", "Use"]);
        assert_eq!(trail_of("End."), ["Appendix"]);
    }

    #[test]
    fn heading_parser_follows_commonmark_basics() {
        let text = "#hashtag\n    # indented code\n####### seven\n#\n  ## Two ##\n~~~\n# in fence\n~~~\n# After";
        let got: Vec<_> = atx_headings(text)
            .into_iter()
            .map(|(_, l, t)| (l, t))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, String::new()),
                (2, "Two".to_owned()),
                (1, "After".to_owned())
            ]
        );
    }

    #[test]
    fn table_chunks_repeat_the_header_and_keep_rows_whole() {
        let rows: Vec<String> = (0..30)
            .map(|i| format!("site {i:02} | week {} | {} nests", i / 4, 10 + i))
            .collect();
        let mut section = Section::new(rows.join("\n"), Some(2));
        section.header_row = Some("Site | Week | Nests".into());
        section.headings = vec!["Counts".into()];
        let d = Document {
            format: Format::Xlsx,
            sections: vec![section],
            warnings: Vec::new(),
        };
        let chunks = chars(120, 20, true).chunk(&d);
        assert!(chunks.len() >= 6, "{chunks:#?}");
        let mut seen = Vec::new();
        for c in &chunks {
            assert!(c.text.chars().count() <= 120, "{:?}", c.text);
            let mut lines = c.text.lines();
            assert_eq!(lines.next(), Some("Site | Week | Nests"), "{:?}", c.text);
            seen.extend(lines.map(str::to_owned));
            assert_eq!(c.page, Some(2));
            assert_eq!(c.headings, ["Counts"]);
        }
        // Every row exactly once, in order, none cut.
        assert_eq!(seen, rows);
    }

    #[test]
    fn a_row_too_long_for_a_chunk_is_split_as_text() {
        let long = "word ".repeat(60);
        let mut section = Section::new(format!("short row\n{long}\nlast row"), None);
        section.header_row = Some("H".into());
        let d = Document {
            format: Format::Delimited,
            sections: vec![section],
            warnings: Vec::new(),
        };
        let chunks = chars(50, 0, true).chunk(&d);
        assert_eq!(chunks[0].text, "H\nshort row");
        assert_eq!(chunks.last().unwrap().text, "H\nlast row");
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 50));
        let words: usize = chunks.iter().map(|c| c.text.matches("word").count()).sum();
        assert_eq!(words, 60);
    }

    #[test]
    fn office_documents_chunk_as_markdown_and_keep_section_flags() {
        let mut section = Section::new("# Slide title\n\nBody of the slide.", Some(3));
        section.ocr = true;
        let d = Document {
            format: Format::Pptx,
            sections: vec![section],
            warnings: Vec::new(),
        };
        let chunks = chars(20, 0, true).chunk(&d);
        let body = chunks.iter().find(|c| c.text.contains("Body")).unwrap();
        assert_eq!(body.headings, ["Slide title"]);
        assert_eq!(body.page, Some(3));
        assert!(body.ocr);
    }

    #[test]
    fn markdown_splitting_can_be_turned_off() {
        let text = "# Title\n\nBody text.";
        let chunks = chars(100, 0, false).chunk(&markdown(text));
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].headings.is_empty());
    }

    #[test]
    fn overlap_repeats_the_end_of_the_previous_chunk() {
        let words: Vec<String> = (0..60).map(|i| format!("w{i:02}")).collect();
        let text = words.join(" ");
        let chunks = chars(40, 15, false).chunk(&doc(Format::Text, &[(&text, None)]));
        assert!(chunks.len() > 3, "{chunks:#?}");
        for pair in chunks.windows(2) {
            let (a, b) = (&pair[0].text, &pair[1].text);
            assert!(a.chars().count() <= 40);
            let first_of_b = b.split(' ').next().unwrap();
            assert!(
                a.split(' ').any(|w| w == first_of_b),
                "chunk {b:?} does not start inside {a:?}"
            );
        }
        // Without overlap no word appears twice.
        let plain = chars(40, 0, false).chunk(&doc(Format::Text, &[(&text, None)]));
        let total: usize = plain.iter().map(|c| c.text.split(' ').count()).sum();
        assert_eq!(total, 60);
    }

    #[test]
    fn token_sized_chunks_hold_at_most_max_tokens() {
        let tokenizer = word_tokenizer();
        let chunker = Chunker::new(ChunkSettings {
            max_size: 8,
            overlap: 2,
            unit: SizeUnit::Tokens(Arc::clone(&tokenizer)),
            markdown: true,
        })
        .unwrap();
        let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu. \
            nu xi omicron pi rho sigma tau upsilon phi chi psi omega.";
        let chunks = chunker.chunk(&doc(Format::Text, &[(text, None)]));
        assert!(chunks.len() >= 4, "{chunks:#?}");
        for c in &chunks {
            let tokens = tokenizer.encode(c.text.as_str(), false).unwrap().len();
            assert!(tokens <= 8, "{tokens} tokens in {:?}", c.text);
        }
        // Measured in characters, the same text would be one chunk.
        assert_eq!(
            chars(200, 0, false)
                .chunk(&doc(Format::Text, &[(text, None)]))
                .len(),
            1
        );
    }

    #[test]
    fn same_text_gives_same_chunks() {
        let text = long_markdown(None);
        let chunker = chars(800, 100, true);
        assert_eq!(
            chunker.chunk(&markdown(&text)),
            chunker.chunk(&markdown(&text))
        );
    }

    /// A Markdown file of 12 chapters × 4 sections × 3 paragraphs; `edit`
    /// replaces the text of one paragraph.
    fn long_markdown(edit: Option<(usize, usize, usize)>) -> String {
        let mut md = String::from("# Handbook\n\n");
        for ch in 0..12 {
            md.push_str(&format!("## Chapter {ch}\n\n"));
            for sec in 0..4 {
                md.push_str(&format!("### Section {ch}.{sec}\n\n"));
                for par in 0..3 {
                    if edit == Some((ch, sec, par)) {
                        md.push_str(
                            "This paragraph was rewritten entirely: new words, a new length, \
                             and a different ending than the one it used to have.\n\n",
                        );
                        continue;
                    }
                    for s in 0..4 {
                        md.push_str(&format!(
                            "Sentence {s} of paragraph {par} in section {ch}.{sec} explains \
                             one more detail of the handbook. "
                        ));
                    }
                    md.push_str("\n\n");
                }
            }
        }
        md
    }

    #[test]
    fn editing_one_paragraph_changes_only_nearby_chunks() {
        let original = long_markdown(None);
        let edited = long_markdown(Some((6, 2, 1)));
        for (max_size, overlap) in [(600, 0), (600, 100), (1000, 150)] {
            let chunker = chars(max_size, overlap, true);
            let before = chunker.chunk(&markdown(&original));
            let after = chunker.chunk(&markdown(&edited));
            assert!(before.len() >= 80, "{} chunks", before.len());

            let old: HashSet<&str> = before.iter().map(|c| c.text.as_str()).collect();
            let changed = after
                .iter()
                .filter(|c| !old.contains(c.text.as_str()))
                .count();
            // By position too: when the edit changes the chunk count, every later
            // chunk moves to a new index although its text is unchanged.
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| a.text != b.text)
                .count();
            println!(
                "max_size {max_size}, overlap {overlap}: {} chunks before, {} after; \
                 new texts: {changed}; different at the same index: {moved}",
                before.len(),
                after.len()
            );
            assert!(changed <= 3, "{changed} chunks changed");
        }
    }
}
