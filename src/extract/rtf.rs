//! RTF → Markdown: paragraphs, headings (paragraph styles named "heading N"),
//! list items, table rows as `a | b`.
//!
//! Written by hand: the one RTF crate on crates.io (rtf-parser 0.4) decodes
//! `\'hh` as Latin-1 whatever the document's code page, keeps neither tables
//! nor styles, and lexes by recursion per token. The text layer of RTF is small
//! and stable (RTF 1.9.1): groups, control words, control symbols, a few
//! destinations to leave out. This reader keeps a bounded group stack, decodes
//! bytes through the document's code page (`\ansicpg`, encoding_rs), `\uN` with
//! its `\ucN` fallback skipped, and reports an unbalanced or non-RTF file as
//! corrupt. Not handled: per-font charsets (`\fcharset`), which only matter for
//! files mixing code pages without `\u`; fields keep their shown result.

use encoding_rs::{Encoding, WINDOWS_1252};

use super::ExtractError;
use crate::document::Section;

/// Deeper nesting than any editor writes; a guard against a crafted file.
const MAX_DEPTH: usize = 512;

/// Destinations whose text is not the document's.
const SKIPPED: &[&str] = &[
    "fonttbl",
    "colortbl",
    "info",
    "pict",
    "object",
    "header",
    "headerl",
    "headerr",
    "headerf",
    "footer",
    "footerl",
    "footerr",
    "footerf",
    "fldinst",
    "themedata",
    "colorschememapping",
    "latentstyles",
    "datastore",
    "xmlnstbl",
    "listtable",
    "listoverridetable",
    "rsidtbl",
    "generator",
    "bkmkstart",
    "bkmkend",
    "pgdsctbl",
    "revtbl",
    "filetbl",
    "nonshppict",
    "shpinst",
    "mmathPr",
    "wgrffmtfilter",
    "pnseclvl",
    "ftnsep",
    "ftnsepc",
    "aftnsep",
    "aftnsepc",
    "userprops",
    "xe",
    "tc",
    "template",
];

#[derive(Clone, Copy)]
struct Group {
    /// Text here is not the document's.
    skip: bool,
    /// Fallback characters after a `\uN` (`\ucN`).
    uc: u32,
    /// Inside `\stylesheet`; `entry`: inside one of its styles.
    stylesheet: bool,
    entry: bool,
}

/// The paragraph being read.
#[derive(Default)]
struct Paragraph {
    text: String,
    style: i32,
    list: bool,
    /// Cells of the table row so far (`\cell` ends one).
    cells: Vec<String>,
}

struct Reader {
    encoding: &'static Encoding,
    /// Bytes of the code page not yet decoded (a double-byte character
    /// arrives as two `\'hh`).
    pending: Vec<u8>,
    /// The pending bytes belong to a style entry's name, not to the text.
    pending_entry: bool,
    /// Fallback characters still to drop after a `\uN`.
    drop: u32,
    para: Paragraph,
    /// Style number → heading level, from the stylesheet.
    headings: Vec<(i32, usize)>,
    /// The style entry being read: its number and name.
    entry: (i32, String),
    out: Vec<String>,
}

/// Read an RTF document.
pub fn extract(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if start == bytes.len() {
        return Err(ExtractError::Empty);
    }
    let corrupt = |detail: &str| ExtractError::Corrupt {
        detail: format!("not a valid RTF document: {detail}"),
    };
    if !bytes[start..].starts_with(b"{\\rtf") {
        return Err(corrupt("it does not start with {\\rtf"));
    }
    let mut r = Reader {
        encoding: WINDOWS_1252,
        pending: Vec::new(),
        pending_entry: false,
        drop: 0,
        para: Paragraph::default(),
        headings: Vec::new(),
        entry: (0, String::new()),
        out: Vec::new(),
    };
    let mut stack: Vec<Group> = Vec::new();
    let mut g = Group {
        skip: false,
        uc: 1,
        stylesheet: false,
        entry: false,
    };
    let mut i = start;
    let mut closed = false;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            b'{' => {
                r.flush();
                if stack.len() >= MAX_DEPTH {
                    return Err(corrupt("groups nested too deep"));
                }
                stack.push(g);
                if g.stylesheet && !g.entry {
                    g.entry = true;
                    r.entry = (0, String::new());
                }
            }
            b'}' => {
                r.flush();
                if g.entry && !stack.last().is_some_and(|p| p.entry) {
                    r.end_style_entry();
                }
                match stack.pop() {
                    Some(outer) => g = outer,
                    None => return Err(corrupt("a group is closed that was never opened")),
                }
                if stack.is_empty() {
                    closed = true;
                    break;
                }
            }
            b'\\' => {
                let Some(&c) = bytes.get(i) else { break };
                if c.is_ascii_alphabetic() {
                    let word_end = (i..bytes.len().min(i + 32))
                        .find(|&j| !bytes[j].is_ascii_alphabetic())
                        .unwrap_or(bytes.len().min(i + 32));
                    let word = std::str::from_utf8(&bytes[i..word_end]).unwrap_or("");
                    i = word_end;
                    let neg = bytes.get(i) == Some(&b'-');
                    let digits_from = i + usize::from(neg);
                    let digits_end = (digits_from..bytes.len().min(digits_from + 10))
                        .find(|&j| !bytes[j].is_ascii_digit())
                        .unwrap_or(bytes.len().min(digits_from + 10));
                    let param = if digits_end > digits_from {
                        i = digits_end;
                        let n: i64 = std::str::from_utf8(&bytes[digits_from..digits_end])
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        Some(if neg { -n } else { n })
                    } else {
                        None
                    };
                    if bytes.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if word == "bin" {
                        // `\binN`: the next N bytes are raw data (a picture,
                        // an object), braces, backslashes and NULs included:
                        // read as RTF they would unbalance the groups or make
                        // the file "binary". They are never text.
                        r.flush();
                        let n = usize::try_from(param.unwrap_or(0)).unwrap_or(0);
                        if n > bytes.len() - i {
                            return Err(corrupt("truncated: \\bin data runs past the end"));
                        }
                        i += n;
                        continue;
                    }
                    r.control(word, param, &mut g);
                } else {
                    i += 1;
                    match c {
                        b'\'' => {
                            let hex = bytes
                                .get(i..i + 2)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                i += 2;
                                r.byte(v, &g);
                            }
                        }
                        b'*' => g.skip = true,
                        b'~' => r.text(" ", &g),
                        b'_' => r.text("-", &g),
                        b'\n' | b'\r' => r.control("par", None, &mut g),
                        b'\\' | b'{' | b'}' => r.byte(c, &g),
                        _ => {}
                    }
                }
            }
            b'\r' | b'\n' => {}
            0 => return Err(ExtractError::Binary),
            _ => r.byte(b, &g),
        }
    }
    if !closed {
        return Err(corrupt("truncated: a group is not closed"));
    }
    r.end_paragraph();
    let text = r.out.join("\n\n");
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(vec![Section::new(text, None)])
}

impl Reader {
    fn control(&mut self, word: &str, param: Option<i64>, g: &mut Group) {
        self.flush();
        let n = param.unwrap_or(0);
        match word {
            "ansicpg" => {
                if let Some(e) = u16::try_from(n).ok().and_then(codepage::to_encoding) {
                    self.encoding = e;
                }
            }
            "mac" => self.encoding = encoding_rs::MACINTOSH,
            "pc" | "pca" => {
                let cp = if word == "pc" { 437 } else { 850 };
                self.encoding = codepage::to_encoding(cp).unwrap_or(WINDOWS_1252);
            }
            "uc" => g.uc = u32::try_from(n).unwrap_or(1).min(8),
            "u" => {
                // A signed 16-bit value; surrogate pairs come as two `\u`.
                let unit = (n as i32 as u32) & 0xFFFF;
                if let Some(c) = char::from_u32(unit) {
                    let mut buf = [0; 4];
                    self.text(c.encode_utf8(&mut buf), g);
                }
                self.drop = g.uc;
            }
            "stylesheet" => {
                g.stylesheet = true;
                g.skip = true;
            }
            "s" if g.entry => self.entry.0 = n as i32,
            "s" if !g.skip => self.para.style = n as i32,
            "listtext" | "pntext" => {
                self.para.list = true;
                g.skip = true;
            }
            _ if g.skip => {}
            "par" | "sect" | "page" => self.end_paragraph(),
            "pard" => {
                self.para.style = 0;
                self.para.list = false;
            }
            "line" => self.text("\n", g),
            "tab" => self.text("\t", g),
            "emdash" => self.text("—", g),
            "endash" => self.text("–", g),
            "bullet" => self.text("•", g),
            "lquote" => self.text("‘", g),
            "rquote" => self.text("’", g),
            "ldblquote" => self.text("“", g),
            "rdblquote" => self.text("”", g),
            "cell" => {
                let cell = std::mem::take(&mut self.para.text);
                self.para.cells.push(cell.trim().to_owned());
            }
            "row" => {
                let cells = std::mem::take(&mut self.para.cells);
                if cells.iter().any(|c| !c.is_empty()) {
                    self.out.push(cells.join(" | "));
                }
            }
            w if SKIPPED.contains(&w) => g.skip = true,
            _ => {}
        }
    }

    /// A byte of text in the document's code page.
    fn byte(&mut self, b: u8, g: &Group) {
        if self.drop > 0 {
            self.drop -= 1;
            return;
        }
        if g.skip && !g.entry {
            return;
        }
        // `flush` runs at every group boundary and control word, so all
        // pending bytes are of one group.
        self.pending_entry = g.entry;
        self.pending.push(b);
    }

    fn text(&mut self, s: &str, g: &Group) {
        self.flush();
        if g.entry {
            self.entry.1.push_str(s);
        } else if !g.skip {
            self.para.text.push_str(s);
        }
    }

    /// Decode the pending code-page bytes into the current text.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let (s, _) = self.encoding.decode_without_bom_handling(&bytes);
        if self.pending_entry {
            self.entry.1.push_str(&s);
        } else {
            self.para.text.push_str(&s);
        }
    }

    fn end_style_entry(&mut self) {
        let (number, name) = std::mem::take(&mut self.entry);
        let name = name
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_ascii_lowercase();
        if let Some(level) = name
            .strip_prefix("heading ")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| (1..=6).contains(l))
        {
            self.headings.push((number, level));
        }
    }

    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.para.text);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let heading = self
            .headings
            .iter()
            .find(|(s, _)| *s == self.para.style)
            .map(|(_, l)| *l);
        self.out.push(match heading {
            Some(level) => format!("{} {}", "#".repeat(level), text.replace('\n', " ")),
            None if self.para.list => format!("- {text}"),
            None => text.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rtf: &str) -> Result<String, ExtractError> {
        extract(rtf.as_bytes()).map(|s| s[0].text.clone())
    }

    #[test]
    fn paragraphs_code_pages_and_unicode() {
        let rtf = r"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}\pard caf\'e9 \u8364? ok\par Second\par}";
        assert_eq!(read(rtf).unwrap(), "café € ok\n\nSecond");
        // Cyrillic code page.
        let rtf = r"{\rtf1\ansi\ansicpg1251 \'cf\'f0\'e8\par}";
        assert_eq!(read(rtf).unwrap(), "При");
    }

    #[test]
    fn headings_lists_and_tables() {
        let rtf = r"{\rtf1{\stylesheet{\s0 Normal;}{\s1\b Heading 1;}}
\pard\s1 Title\par\pard{\listtext \u8226\'95\tab}Item\par
\trowd\pard\intbl A\cell B\cell\row\pard Tail\par}";
        assert_eq!(read(rtf).unwrap(), "# Title\n\n- Item\n\nA | B\n\nTail");
    }

    #[test]
    fn bin_data_is_skipped_not_read_as_text() {
        // A picture's raw bytes: a NUL, braces and a backslash, which would
        // otherwise make the file binary or its groups unbalanced.
        let mut rtf = br"{\rtf1 Before{\pict\pngblip\bin6 ".to_vec();
        rtf.extend_from_slice(b"\0}{\\xy");
        rtf.extend_from_slice(br"}After\par}");
        assert_eq!(
            extract(&rtf).map(|s| s[0].text.clone()),
            Ok("BeforeAfter".to_owned())
        );
    }

    #[test]
    fn broken_files_say_so() {
        let e = read(r"{\rtf1 cut off here").unwrap_err();
        assert!(
            matches!(&e, ExtractError::Corrupt { detail } if detail.contains("truncated")),
            "{e:?}"
        );
        assert!(matches!(
            read("plain words"),
            Err(ExtractError::Corrupt { .. })
        ));
        assert!(matches!(read(r"{\rtf1}}"), Err(ExtractError::Empty)));
        let deep = format!("{{\\rtf1 {}x{}}}", "{".repeat(1000), "}".repeat(1000));
        // A `\bin` that claims more bytes than the file has.
        let e = read(r"{\rtf1 {\pict\bin999999999 abc}}").unwrap_err();
        assert!(
            matches!(&e, ExtractError::Corrupt { detail } if detail.contains("\\bin")),
            "{e:?}"
        );
        assert!(matches!(read(&deep), Err(ExtractError::Corrupt { .. })));
        assert_eq!(read("  \n"), Err(ExtractError::Empty));
    }
}
