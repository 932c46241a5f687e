//! HTML: bytes → the text a reader would see.
//!
//! Walks the parsed tree and keeps text nodes only, skipping elements whose
//! content is never shown (`script`, `style`, `head`, ...). Block elements end a
//! line, paragraph-like ones leave a blank line, so that the chunker's
//! line and paragraph levels still mean something. Runs of whitespace collapse to
//! one space, as a browser renders them, except inside `<pre>`.

use scraper::{ElementRef, Html, Node, Selector};

use super::{ExtractError, text};
use crate::document::Section;

/// Elements whose content is never rendered as text.
const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "head", "title", "svg", "canvas", "iframe",
    "object", "embed",
];

/// Elements after which the text continues on a new paragraph (blank line).
const PARAGRAPHS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "figure",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "form",
    "fieldset",
    "details",
    "address",
    "hr",
];

/// Elements after which the text continues on a new line.
const LINES: &[&str] = &[
    "br",
    "div",
    "li",
    "tr",
    "dt",
    "dd",
    "figcaption",
    "caption",
    "summary",
    "legend",
    "option",
    "body",
    "html",
    "center",
];

/// Table cells are separated by a tab on their row's line.
const CELLS: &[&str] = &["td", "th"];

/// One section holding the visible text of an HTML file, with its `<title>` as
/// the first line.
pub(super) fn extract(bytes: &[u8]) -> Result<Section, ExtractError> {
    let source = text::decode(bytes)?;
    let html = Html::parse_document(&source);

    let mut out = TextBuilder::default();
    if let Some(title) = title(&html) {
        out.push_text(&title, false);
        out.request_break(Break::Paragraph);
    }
    walk(html.root_element(), &mut out);
    let text = out.finish();
    if text.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(Section::new(text, None))
}

/// The visible text of an (X)HTML document with `h1`–`h6` written as
/// Markdown headings, for formats chunked as Markdown (EPUB chapters). The
/// `<title>` is left out: a book's chapters all repeat the book's title.
pub(super) fn markdown_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let source = text::decode(bytes)?;
    let html = Html::parse_document(&source);
    let mut out = TextBuilder {
        mark_headings: true,
        ..TextBuilder::default()
    };
    walk(html.root_element(), &mut out);
    let text = out.finish();
    if text.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(text)
}

/// The document's `<title>`, whitespace collapsed, if it has a non-empty one.
fn title(html: &Html) -> Option<String> {
    let selector = Selector::parse("title").expect("static selector is valid");
    let element = html.select(&selector).next()?;
    let title = collapse_whitespace(&element.text().collect::<String>());
    (!title.is_empty()).then_some(title)
}

/// One step of the text walk.
enum Step<'a> {
    Enter(ElementRef<'a>, bool),
    Text(&'a str, bool),
    Leave(&'a str),
}

/// Append the visible text under `root` to `out`, in document order.
///
/// Iterative, with an explicit stack: html5ever does not cap how deeply
/// elements nest, and a recursive walk overflows the thread's stack on a
/// few thousand nested `<div>`s.
fn walk(root: ElementRef<'_>, out: &mut TextBuilder) {
    let mut stack = vec![Step::Enter(root, false)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(text, in_pre) => out.push_text(text, in_pre),
            Step::Leave(name) => {
                if PARAGRAPHS.contains(&name) {
                    out.request_break(Break::Paragraph);
                } else if LINES.contains(&name) {
                    out.request_break(Break::Line);
                } else if CELLS.contains(&name) {
                    out.request_break(Break::Cell);
                }
            }
            Step::Enter(element, in_pre) => {
                let name = element.value().name();
                if HIDDEN.contains(&name) || element.value().attr("hidden").is_some() {
                    continue;
                }
                let in_pre = in_pre || matches!(name, "pre" | "textarea" | "listing" | "plaintext");
                if PARAGRAPHS.contains(&name) {
                    out.request_break(Break::Paragraph);
                } else if LINES.contains(&name) {
                    out.request_break(Break::Line);
                }
                if let Some(level) = heading_level(name).filter(|_| out.mark_headings) {
                    out.push_marker(&"#".repeat(level));
                }
                stack.push(Step::Leave(name));
                // Reversed, so the first child is popped first.
                for child in element.children().rev() {
                    match child.value() {
                        Node::Text(t) => stack.push(Step::Text(t, in_pre)),
                        Node::Element(_) => {
                            if let Some(child) = ElementRef::wrap(child) {
                                stack.push(Step::Enter(child, in_pre));
                            }
                        }
                        // Comments, doctypes and processing instructions are not shown.
                        _ => {}
                    }
                }
            }
        }
    }
}

/// A pending separator; the strongest one requested between two pieces of text
/// wins, so nested blocks do not pile up blank lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    None,
    Space,
    Cell,
    Line,
    Paragraph,
}

/// The level of a heading element (`h2` → 2).
fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// Accumulates text with browser-like whitespace handling.
#[derive(Debug)]
struct TextBuilder {
    out: String,
    pending: Break,
    /// Write headings as Markdown ATX headings (`## Title`).
    mark_headings: bool,
}

impl Default for TextBuilder {
    fn default() -> Self {
        Self {
            out: String::new(),
            pending: Break::None,
            mark_headings: false,
        }
    }
}

impl TextBuilder {
    /// Markup that starts a block (a heading's `##`), then a space before the
    /// block's text.
    fn push_marker(&mut self, marker: &str) {
        self.flush_break();
        self.out.push_str(marker);
        self.pending = Break::Space;
    }

    fn request_break(&mut self, brk: Break) {
        self.pending = self.pending.max(brk);
    }

    fn push_text(&mut self, text: &str, preformatted: bool) {
        if preformatted {
            let text = text.replace("\r\n", "\n");
            if text.trim().is_empty() {
                return;
            }
            self.flush_break();
            self.out.push_str(&text);
            return;
        }
        // Leading/trailing whitespace of a text node is a space between words
        // ("a <b>b</b>"), not nothing; keep it as a pending space.
        if text.starts_with(char::is_whitespace) {
            self.request_break(Break::Space);
        }
        let words = collapse_whitespace(text);
        if !words.is_empty() {
            self.flush_break();
            self.out.push_str(&words);
        }
        if text.ends_with(char::is_whitespace) {
            self.request_break(Break::Space);
        }
    }

    /// Write the pending separator, unless at the start of the text.
    fn flush_break(&mut self) {
        if !self.out.is_empty() {
            let sep = match self.pending {
                Break::None => "",
                Break::Space => " ",
                Break::Cell => "\t",
                Break::Line => "\n",
                Break::Paragraph => "\n\n",
            };
            // Whitespace before a line break is invisible; drop it.
            if matches!(self.pending, Break::Line | Break::Paragraph) {
                let kept = self.out.trim_end_matches([' ', '\t']).len();
                self.out.truncate(kept);
            }
            self.out.push_str(sep);
        }
        self.pending = Break::None;
    }

    fn finish(self) -> String {
        self.out.trim().to_owned()
    }
}

/// Runs of whitespace become one space; leading and trailing whitespace goes.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(html: &str) -> String {
        extract(html.as_bytes()).unwrap().text
    }

    #[test]
    fn script_style_and_head_are_dropped() {
        let html = r#"<!doctype html><html><head><title>The  Title</title>
            <style>body { color: red }</style><script>var x = "secret";</script>
            <meta name="description" content="meta text"></head>
            <body><script>alert("no")</script><noscript>enable js</noscript>
            <template><p>tmpl</p></template>
            <p>Visible   text
            here.</p><style>.a{}</style></body></html>"#;
        assert_eq!(text_of(html), "The Title\n\nVisible text here.");
    }

    #[test]
    fn blocks_break_lines_and_inline_elements_do_not() {
        let html = "<body><h1>Head</h1><p>One <b>bold</b> <i>word</i>s.</p>\
            <ul><li>first</li><li>second</li></ul><div>a<br>b</div></body>";
        assert_eq!(
            text_of(html),
            "Head\n\nOne bold words.\n\nfirst\nsecond\n\na\nb"
        );
    }

    #[test]
    fn table_cells_are_tab_separated_rows() {
        let html = "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>";
        assert_eq!(text_of(html), "k\tv\na\t1");
    }

    #[test]
    fn pre_keeps_its_lines() {
        let html = "<p>code:</p><pre>fn main() {\n    run();\n}</pre><p>after</p>";
        assert_eq!(
            text_of(html),
            "code:\n\nfn main() {\n    run();\n}\n\nafter"
        );
    }

    #[test]
    fn hidden_elements_and_comments_are_dropped() {
        let html = "<p>shown<!-- a comment --></p><div hidden>not shown</div>";
        assert_eq!(text_of(html), "shown");
    }

    #[test]
    fn legacy_encoded_html_is_decoded() {
        assert_eq!(
            extract(b"<p>caf\xE9 cr\xE8me</p>").unwrap().text,
            "café crème"
        );
    }

    #[test]
    fn deep_nesting_does_not_exhaust_the_stack() {
        // 3,000 levels took about 1 MB of stack with the recursive walk (debug
        // build); this thread has 256 KiB.
        let depth = 3_000;
        let html = format!(
            "{}deep text{}",
            "<div>".repeat(depth),
            "</div>".repeat(depth)
        );
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || text_of(&html))
            .unwrap()
            .join()
            .expect("the walk must not overflow the stack");
        assert_eq!(text, "deep text");
    }

    #[test]
    fn html_without_visible_text_is_empty() {
        assert_eq!(
            extract(b"<html><head><script>x()</script></head><body> </body></html>"),
            Err(ExtractError::Empty)
        );
    }
}
