//! Office documents: Word (docx), PowerPoint (pptx) and OpenDocument text and
//! presentations (odt, odp) → Markdown-like sections.
//!
//! Written over zip + quick-xml rather than taken from a crate: no maintained
//! crate reads these formats' text with their structure (headings, lists,
//! tables, slides and speaker notes) without pulling in a document model many
//! times this size (see docs/formats.md for what was compared). Only the
//! parts that hold the text are read: the main document and its style names
//! (docx), the slides in presentation order and their notes (pptx), and
//! `content.xml` (odt, odp). Headers, footers, comments and tracked
//! deletions are left out: they are not the document's body.
//!
//! Spreadsheets (xlsx, xls, ods) are `sheet.rs`, through calamine.

use std::collections::HashMap;

use super::ExtractError;
use super::package::{Markdown, Package, resolve};
use super::xml::{self, Xml};
use crate::document::Section;

const WORD: &str = "Word document";
const POWERPOINT: &str = "PowerPoint presentation";
const ODF_TEXT: &str = "OpenDocument text";
const ODF_PRESENTATION: &str = "OpenDocument presentation";

/// The relationships of part `part`: (id, type, target resolved to a part name).
fn relationships(
    pkg: &mut Package<'_>,
    part: &str,
) -> Result<Vec<(String, String, String)>, ExtractError> {
    let (dir, file) = part.rsplit_once('/').unwrap_or(("", part));
    let rels_name = if dir.is_empty() {
        format!("_rels/{file}.rels")
    } else {
        format!("{dir}/_rels/{file}.rels")
    };
    let Some(bytes) = pkg.part(&rels_name)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in xml::parse(&bytes, &rels_name)? {
        if e.opens("Relationship")
            && e.attr("TargetMode") != Some("External")
            && let (Some(id), Some(kind), Some(target)) =
                (e.attr("Id"), e.attr("Type"), e.attr("Target"))
        {
            out.push((id.to_owned(), kind.to_owned(), resolve(part, target)));
        }
    }
    Ok(out)
}

/// The main part of an Office Open XML package (`word/document.xml`,
/// `ppt/presentation.xml`), from the package relationships.
fn main_part(pkg: &mut Package<'_>, fallback: &str) -> Result<String, ExtractError> {
    let rels = relationships(pkg, "")?;
    Ok(rels
        .into_iter()
        .find(|(_, kind, _)| kind.ends_with("/officeDocument"))
        .map_or_else(|| fallback.to_owned(), |(_, _, target)| target))
}

/// Skips subtrees: counts how deep inside a skipped element the walk is.
#[derive(Default)]
struct Skip {
    name: Option<String>,
    depth: usize,
}

impl Skip {
    /// Feed one event; true when it lies inside a skipped subtree (or opens
    /// one named in `skipped`).
    fn inside(&mut self, e: &Xml, skipped: &[&str]) -> bool {
        if let Some(name) = &self.name {
            if e.opens(name) {
                self.depth += 1;
            } else if e.closes(name) {
                self.depth -= 1;
                if self.depth == 0 {
                    self.name = None;
                }
            }
            return true;
        }
        if let Xml::Open { name, .. } = e
            && skipped.contains(&name.as_str())
        {
            self.name = Some(name.clone());
            self.depth = 1;
            return true;
        }
        false
    }
}

/// A paragraph being read.
#[derive(Default)]
struct Para {
    text: String,
    heading: Option<usize>,
    list: Option<usize>,
}

/// Tables being read, innermost last: the current row's cells and the cell
/// being read. A nested table's rows become text of the outer cell.
#[derive(Default)]
struct Tables {
    stack: Vec<(Vec<String>, Option<String>)>,
}

impl Tables {
    fn open_table(&mut self) {
        self.stack.push((Vec::new(), None));
    }
    fn open_cell(&mut self) {
        if let Some((_, cell)) = self.stack.last_mut() {
            *cell = Some(String::new());
        }
    }
    fn close_cell(&mut self) {
        if let Some((row, cell)) = self.stack.last_mut() {
            row.push(cell.take().unwrap_or_default().trim().to_owned());
        }
    }
    /// End of a row: the cells of a top-level row, to be written.
    fn close_row(&mut self) -> Option<Vec<String>> {
        let (row, _) = self.stack.last_mut()?;
        let cells = std::mem::take(row);
        if self.stack.len() == 1 {
            return Some(cells);
        }
        let line = cells.join(" | ");
        self.add_text(&line);
        None
    }
    fn close_table(&mut self) {
        self.stack.pop();
    }
    /// Text that belongs to the innermost open cell, if any: true when taken.
    fn add_text(&mut self, text: &str) -> bool {
        let n = self.stack.len();
        // A nested table's text goes to the cell of the table around it.
        let target = if self.stack.last().is_some_and(|(_, c)| c.is_some()) {
            self.stack.last_mut()
        } else if n >= 2 {
            self.stack.get_mut(n - 2)
        } else {
            None
        };
        match target.and_then(|(_, cell)| cell.as_mut()) {
            Some(cell) => {
                if !cell.is_empty() && !text.is_empty() {
                    cell.push(' ');
                }
                cell.push_str(text.trim());
                true
            }
            None => false,
        }
    }
}

/// Write a finished paragraph to the table cell it is in, or as a block.
fn emit(md: &mut Markdown, tables: &mut Tables, para: Para) {
    if tables.add_text(&para.text) {
        return;
    }
    match (para.heading, para.list) {
        (Some(level), _) => md.heading(level, &para.text),
        (None, Some(depth)) => md.item(depth, &para.text),
        (None, None) => md.paragraph(&para.text),
    }
}

/// A Word document (docx): one section of Markdown.
pub(super) fn docx(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let mut pkg = Package::open(bytes, WORD)?;
    let main = main_part(&mut pkg, "word/document.xml")?;
    let styles_part = relationships(&mut pkg, &main)?
        .into_iter()
        .find(|(_, kind, _)| kind.ends_with("/styles"))
        .map(|(_, _, target)| target);
    let levels = match styles_part {
        Some(part) => match pkg.part(&part)? {
            Some(bytes) => heading_styles(&xml::parse(&bytes, &part)?),
            None => HashMap::new(),
        },
        None => HashMap::new(),
    };
    let document = pkg.required(&main)?;
    let events = xml::parse(&document, &main)?;
    if !events.iter().any(|e| e.opens("body")) {
        return Err(ExtractError::Corrupt {
            detail: format!("not a valid {WORD}: {main} has no document body"),
        });
    }

    let mut md = Markdown::default();
    let mut tables = Tables::default();
    let mut paras: Vec<Para> = Vec::new();
    let mut in_text = false;
    let mut skip = Skip::default();
    for e in &events {
        // The fallback of alternate content repeats its choice; deleted runs
        // and field instructions are not text a reader sees.
        if skip.inside(e, &["Fallback", "del", "instrText", "footnoteReference"]) {
            continue;
        }
        match e {
            Xml::Open { name, .. } => match name.as_str() {
                "p" => paras.push(Para::default()),
                "pStyle" => {
                    if let (Some(p), Some(level)) =
                        (paras.last_mut(), e.attr("val").and_then(|v| levels.get(v)))
                    {
                        p.heading = Some(*level);
                    }
                }
                "outlineLvl" => {
                    let level = e.attr("val").and_then(|v| v.parse::<usize>().ok());
                    if let (Some(p), Some(level)) = (paras.last_mut(), level) {
                        // 9 is "body text".
                        if level < 9 {
                            p.heading = Some(level + 1);
                        }
                    }
                }
                "numPr" => {
                    if let Some(p) = paras.last_mut() {
                        p.list.get_or_insert(0);
                    }
                }
                "ilvl" => {
                    let depth = e.attr("val").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if let Some(p) = paras.last_mut() {
                        p.list = Some(depth);
                    }
                }
                "t" => in_text = true,
                "tab" => push_to(&mut paras, "\t"),
                "br" | "cr" => push_to(&mut paras, "\n"),
                "tbl" => tables.open_table(),
                "tc" => tables.open_cell(),
                _ => {}
            },
            Xml::Text(t) if in_text => push_to(&mut paras, t),
            Xml::Text(_) => {}
            Xml::Close(name) => match name.as_str() {
                "t" => in_text = false,
                "p" => {
                    if let Some(p) = paras.pop() {
                        emit(&mut md, &mut tables, p);
                    }
                }
                "tc" => tables.close_cell(),
                "tr" => {
                    if let Some(row) = tables.close_row() {
                        md.row(&row);
                    }
                }
                "tbl" => tables.close_table(),
                _ => {}
            },
        }
    }
    Ok(vec![Section::new(md.finish(), None)])
}

fn push_to(paras: &mut [Para], text: &str) {
    if let Some(p) = paras.last_mut() {
        p.text.push_str(text);
    }
}

/// Heading level of each paragraph style of `styles.xml`: the built-in
/// "heading N" styles (whatever their id, which Word localises) and styles
/// with an outline level. "Title" counts as level 1.
fn heading_styles(events: &[Xml]) -> HashMap<String, usize> {
    let mut levels = HashMap::new();
    let mut current: Option<String> = None;
    for e in events {
        if e.opens("style") {
            current = e.attr("styleId").map(str::to_owned);
            continue;
        }
        if e.closes("style") {
            current = None;
            continue;
        }
        let Some(id) = &current else { continue };
        let level = if e.opens("name") {
            e.attr("val").and_then(|n| {
                let n = n.to_ascii_lowercase();
                if n == "title" {
                    Some(1)
                } else {
                    n.strip_prefix("heading ")
                        .and_then(|l| l.trim().parse::<usize>().ok())
                }
            })
        } else if e.opens("outlineLvl") {
            e.attr("val")
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|l| *l < 9)
                .map(|l| l + 1)
        } else {
            None
        };
        if let Some(level) = level {
            levels.insert(id.clone(), level);
        }
    }
    levels
}

/// A PowerPoint presentation (pptx): one section per slide, in presentation
/// order, `page` = slide number; the slide title is a heading, the speaker
/// notes follow under "Speaker notes".
pub(super) fn pptx(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let mut pkg = Package::open(bytes, POWERPOINT)?;
    let main = main_part(&mut pkg, "ppt/presentation.xml")?;
    let rels = relationships(&mut pkg, &main)?;
    let presentation = pkg.required(&main)?;
    let events = xml::parse(&presentation, &main)?;
    if !events.iter().any(|e| e.opens("presentation")) {
        return Err(ExtractError::Corrupt {
            detail: format!("not a valid {POWERPOINT}: {main} is not a presentation"),
        });
    }
    let mut slides = Vec::new();
    for e in events {
        if e.opens("sldId") {
            let target = rel_attr(&e)
                .and_then(|id| rels.iter().find(|(i, _, _)| i == id))
                .map(|(_, _, t)| t.clone());
            if let Some(target) = target {
                slides.push(target);
            }
        }
    }
    if slides.is_empty() {
        return Err(ExtractError::Empty);
    }
    let mut sections = Vec::with_capacity(slides.len());
    for (n, slide) in slides.iter().enumerate() {
        let Some(bytes) = pkg.part(slide)? else {
            return Err(ExtractError::Corrupt {
                detail: format!("slide {} ({slide}) is missing from the package", n + 1),
            });
        };
        let shapes = drawing_text(&xml::parse(&bytes, slide)?);
        let notes_part = relationships(&mut pkg, slide)?
            .into_iter()
            .find(|(_, kind, _)| kind.ends_with("/notesSlide"))
            .map(|(_, _, t)| t);
        let notes = match notes_part {
            Some(part) => match pkg.part(&part)? {
                Some(bytes) => drawing_text(&xml::parse(&bytes, &part)?),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let mut md = Markdown::default();
        for (kind, paras) in &shapes {
            if matches!(kind.as_deref(), Some("title" | "ctrTitle")) {
                md.heading(1, &paras.join(" "));
            }
        }
        for (kind, paras) in &shapes {
            if !matches!(kind.as_deref(), Some("title" | "ctrTitle")) && !is_furniture(kind) {
                paras.iter().for_each(|p| md.paragraph(p));
            }
        }
        let notes: Vec<&String> = notes
            .iter()
            .filter(|(kind, _)| !is_furniture(kind))
            .flat_map(|(_, paras)| paras)
            .collect();
        if !notes.is_empty() {
            md.heading(2, "Speaker notes");
            notes.into_iter().for_each(|p| md.paragraph(p));
        }
        sections.push(Section::new(md.finish(), Some(page_number(n))));
    }
    Ok(sections)
}

/// The `r:id` of an element (its local name is `id`, like the plain `id`; the
/// relationship one is the one that names a relationship, `rIdN` or similar).
fn rel_attr(e: &Xml) -> Option<&str> {
    match e {
        Xml::Open { attrs, .. } => attrs
            .iter()
            .filter(|(k, _)| k == "id")
            .map(|(_, v)| v.as_str())
            // The numeric `id` is the slide id; the other is the relationship.
            .find(|v| v.parse::<u64>().is_err()),
        _ => None,
    }
}

/// Slide, date, footer and header placeholders, and the notes page's slide
/// image: repeated on every page, not content.
fn is_furniture(kind: &Option<String>) -> bool {
    matches!(
        kind.as_deref(),
        Some("sldNum" | "dt" | "ftr" | "hdr" | "sldImg")
    )
}

/// The paragraphs of each shape of a slide or notes page (DrawingML), with the
/// shape's placeholder type.
fn drawing_text(events: &[Xml]) -> Vec<(Option<String>, Vec<String>)> {
    let mut shapes = Vec::new();
    let mut kind: Option<String> = None;
    let mut paras: Vec<String> = Vec::new();
    let mut para: Option<String> = None;
    let mut in_text = false;
    let mut depth = 0usize;
    let mut skip = Skip::default();
    for e in events {
        if skip.inside(e, &["Fallback"]) {
            continue;
        }
        match e {
            Xml::Open { name, .. } => match name.as_str() {
                "sp" | "graphicFrame" => {
                    depth += 1;
                    if depth == 1 {
                        kind = None;
                        paras.clear();
                    }
                }
                "ph" if depth == 1 => kind = Some(e.attr("type").unwrap_or("body").to_owned()),
                "p" => para = Some(String::new()),
                "t" => in_text = true,
                "br" => {
                    if let Some(p) = &mut para {
                        p.push('\n');
                    }
                }
                _ => {}
            },
            Xml::Text(t) if in_text => {
                if let Some(p) = &mut para {
                    p.push_str(t);
                }
            }
            Xml::Text(_) => {}
            Xml::Close(name) => match name.as_str() {
                "t" => in_text = false,
                "p" => {
                    if let Some(p) = para.take()
                        && !p.trim().is_empty()
                    {
                        paras.push(p);
                    }
                }
                "sp" | "graphicFrame" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && !paras.is_empty() {
                        shapes.push((kind.take(), std::mem::take(&mut paras)));
                    }
                }
                _ => {}
            },
        }
    }
    shapes
}

fn page_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Refuse an OpenDocument package whose parts are encrypted (a password was
/// set when it was saved).
fn odf_content(pkg: &mut Package<'_>, what: &'static str) -> Result<Vec<Xml>, ExtractError> {
    if let Some(manifest) = pkg.part("META-INF/manifest.xml")? {
        let events = xml::parse(&manifest, "META-INF/manifest.xml")?;
        if events.iter().any(|e| e.opens("encryption-data")) {
            return Err(ExtractError::Encrypted { what: what.into() });
        }
    }
    if !pkg.has("content.xml") {
        return Err(ExtractError::Corrupt {
            detail: format!("not a valid {what}: the package has no content.xml"),
        });
    }
    let content = pkg.required("content.xml")?;
    xml::parse(&content, "content.xml")
}

/// Elements of ODF content that are not the body text: comments, tracked
/// changes (deleted text), footnote marks, drawing thumbnails.
const ODF_SKIPPED: &[&str] = &[
    "annotation",
    "tracked-changes",
    "note-citation",
    "page-thumbnail",
    "automatic-styles",
    "font-face-decls",
    "scripts",
    "forms",
    "sequence-decls",
];

/// Reads ODF text elements (`text:h`, `text:p`, lists, tables) into Markdown;
/// for presentations, one Markdown text per `draw:page`.
#[derive(Default)]
struct OdfWalk {
    md: Markdown,
    tables: Tables,
    paras: Vec<Para>,
    list_depth: usize,
    skip: Skip,
}

impl OdfWalk {
    /// Feed one event. Returns a finished paragraph when one closes outside
    /// any table (the caller decides where it goes), after writing headings,
    /// list items and rows itself when `write` is set.
    fn feed(&mut self, e: &Xml) -> Option<Para> {
        if self.skip.inside(e, ODF_SKIPPED) {
            return None;
        }
        match e {
            Xml::Open { name, .. } => match name.as_str() {
                "h" => {
                    let level = e
                        .attr("outline-level")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(1);
                    self.paras.push(Para {
                        heading: Some(level),
                        ..Para::default()
                    });
                }
                "p" => {
                    let list = self.list_depth.checked_sub(1);
                    self.paras.push(Para {
                        list,
                        ..Para::default()
                    });
                }
                "list" => self.list_depth += 1,
                "s" => {
                    let n = e.attr("c").and_then(|c| c.parse().ok()).unwrap_or(1usize);
                    self.push(&" ".repeat(n.min(64)));
                }
                "tab" => self.push("\t"),
                "line-break" => self.push("\n"),
                "table" => self.tables.open_table(),
                "table-cell" => self.tables.open_cell(),
                _ => {}
            },
            Xml::Text(t) => {
                // ODF collapses white space in text like HTML; `text:s` and
                // `text:tab` carry the spaces that matter.
                if !self.paras.is_empty() {
                    let starts = t.starts_with(char::is_whitespace);
                    let ends = t.ends_with(char::is_whitespace);
                    let words = t.split_whitespace().collect::<Vec<_>>().join(" ");
                    let mut piece = String::new();
                    if starts {
                        piece.push(' ');
                    }
                    piece.push_str(&words);
                    if ends && !words.is_empty() {
                        piece.push(' ');
                    }
                    self.push(&piece);
                }
            }
            Xml::Close(name) => match name.as_str() {
                "h" | "p" => {
                    let para = self.paras.pop()?;
                    if self.tables.add_text(&para.text) {
                        return None;
                    }
                    return Some(para);
                }
                "list" => self.list_depth = self.list_depth.saturating_sub(1),
                "table-cell" => self.tables.close_cell(),
                "table-row" => {
                    if let Some(row) = self.tables.close_row() {
                        self.md.row(&row);
                    }
                }
                "table" => self.tables.close_table(),
                _ => {}
            },
        }
        None
    }

    fn push(&mut self, text: &str) {
        push_to(&mut self.paras, text);
    }

    fn write(&mut self, para: Para) {
        match (para.heading, para.list) {
            (Some(level), _) => self.md.heading(level, &para.text),
            (None, Some(depth)) => self.md.item(depth, &para.text),
            (None, None) => self.md.paragraph(&para.text),
        }
    }
}

/// An OpenDocument text (odt): one section of Markdown.
pub(super) fn odt(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let mut pkg = Package::open(bytes, ODF_TEXT)?;
    let events = odf_content(&mut pkg, ODF_TEXT)?;
    let mut walk = OdfWalk::default();
    for e in &events {
        if let Some(para) = walk.feed(e) {
            walk.write(para);
        }
    }
    Ok(vec![Section::new(walk.md.finish(), None)])
}

/// An OpenDocument presentation (odp): one section per `draw:page`, `page` =
/// slide number; the title frame is a heading, notes follow under "Speaker notes".
pub(super) fn odp(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let mut pkg = Package::open(bytes, ODF_PRESENTATION)?;
    let events = odf_content(&mut pkg, ODF_PRESENTATION)?;
    let mut sections = Vec::new();
    let mut walk = OdfWalk::default();
    let mut title = String::new();
    let mut notes: Vec<Para> = Vec::new();
    let mut body: Vec<Para> = Vec::new();
    let mut in_notes = false;
    let mut frame_class: Option<String> = None;
    let mut in_page = false;
    for e in &events {
        if e.opens("page") {
            in_page = true;
            title.clear();
            notes.clear();
            body.clear();
            continue;
        }
        if e.closes("page") && in_page {
            in_page = false;
            let mut md = std::mem::take(&mut walk.md);
            if !title.trim().is_empty() {
                md.heading(1, &title);
            }
            for p in body.drain(..) {
                match p.list {
                    Some(depth) => md.item(depth, &p.text),
                    None => md.paragraph(&p.text),
                }
            }
            if !notes.is_empty() {
                md.heading(2, "Speaker notes");
                notes.drain(..).for_each(|p| md.paragraph(&p.text));
            }
            sections.push(Section::new(md.finish(), Some(page_number(sections.len()))));
            continue;
        }
        if e.opens("notes") {
            in_notes = true;
        } else if e.closes("notes") {
            in_notes = false;
        } else if e.opens("frame") {
            frame_class = e.attr("class").map(str::to_owned);
        } else if e.closes("frame") {
            frame_class = None;
        }
        if !in_page {
            continue;
        }
        if let Some(para) = walk.feed(e).filter(|p| !p.text.trim().is_empty()) {
            if in_notes {
                if frame_class.as_deref() != Some("page") {
                    notes.push(para);
                }
            } else if matches!(frame_class.as_deref(), Some("title")) {
                if !title.is_empty() {
                    title.push(' ');
                }
                title.push_str(&para.text);
            } else {
                body.push(para);
            }
        }
    }
    if sections.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCX: &[u8] = include_bytes!("../../tests/data/formats/report.docx");
    const ODT: &[u8] = include_bytes!("../../tests/data/formats/report.odt");
    const PPTX: &[u8] = include_bytes!("../../tests/data/formats/slides.pptx");
    const ODP: &[u8] = include_bytes!("../../tests/data/formats/slides.odp");
    const ENCRYPTED_DOCX: &[u8] = include_bytes!("../../tests/data/formats/encrypted.docx");

    fn one(sections: Vec<Section>) -> String {
        assert_eq!(sections.len(), 1, "{sections:?}");
        sections.into_iter().next().unwrap().text
    }

    /// The Markdown both word processors' files become (pandoc wrote both
    /// from the same source, tests/data/formats/src/report.md).
    fn assert_report(text: &str) {
        for needle in [
            "# Heron Survey",
            "The heron colony on the north shore grew to forty nests this spring.",
            "## Methods",
            "- Binoculars were shared between two counters.",
            "- Each count took about an hour.",
            "Site | Nests\nNorth shore | 40\nReed bed | 12",
            "## Results",
            "### Breeding",
            "Most chicks fledged before the first week of July.",
            "### Losses",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn docx_keeps_headings_lists_and_tables() {
        assert_report(&one(docx(DOCX).unwrap()));
    }

    #[test]
    fn odt_keeps_headings_lists_and_tables() {
        assert_report(&one(odt(ODT).unwrap()));
    }

    fn assert_slides(sections: &[Section]) {
        let pages: Vec<_> = sections.iter().map(|s| s.page).collect();
        assert_eq!(pages, [Some(1), Some(2), Some(3)], "{sections:#?}");
        let first = &sections[0].text;
        assert!(first.starts_with("# Counting nests\n\n"), "{first}");
        assert!(first.contains("Volunteers counted forty nests on the north shore."));
        assert!(
            first.contains("## Speaker notes\n\nRemember to thank the boardwalk volunteers."),
            "{first}"
        );
        assert!(sections[1].text.contains("# Fledging"));
        assert!(
            sections[2]
                .text
                .contains("The reed bed needs a second observation hide.")
        );
        // The notes page's slide-number placeholder is not text.
        assert!(!sections[1].text.contains("Speaker notes"), "{sections:#?}");
    }

    #[test]
    fn pptx_gives_one_section_per_slide_with_notes() {
        assert_slides(&pptx(PPTX).unwrap());
    }

    #[test]
    fn odp_gives_one_section_per_slide_with_notes() {
        assert_slides(&odp(ODP).unwrap());
    }

    #[test]
    fn encrypted_and_corrupt_office_files_say_so() {
        assert_eq!(
            docx(ENCRYPTED_DOCX),
            Err(ExtractError::Encrypted { what: WORD.into() })
        );
        for (bytes, f) in [
            (DOCX, docx as fn(&[u8]) -> _),
            (PPTX, pptx),
            (ODT, odt),
            (ODP, odp),
        ] {
            for len in [10, bytes.len() / 2, bytes.len() - 30] {
                let got = f(&bytes[..len]);
                assert!(
                    matches!(got, Err(ExtractError::Corrupt { .. })),
                    "{len}: {got:?}"
                );
            }
            assert_eq!(f(b""), Err(ExtractError::Empty));
        }
        // Each read as the other: the main part is not what it should be.
        assert!(matches!(pptx(DOCX), Err(ExtractError::Corrupt { .. })));
        assert!(matches!(docx(PPTX), Err(ExtractError::Corrupt { .. })));
    }
}
