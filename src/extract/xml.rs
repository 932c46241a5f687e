//! XML parts of Office, OpenDocument and EPUB files → a flat list of events.
//!
//! A thin layer over quick-xml that resolves entity and character references,
//! drops namespace prefixes from element and attribute names (the formats
//! use fixed, well-known prefixes, and a producer may choose others), and turns
//! `<a/>` into an open and a close, so that the readers need one case each.

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::Event;

use super::ExtractError;

/// One event of an XML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Xml {
    /// A start tag: local name and attributes (local name, unescaped value).
    Open {
        name: String,
        attrs: Vec<(String, String)>,
    },
    /// An end tag (also emitted right after the `Open` of an empty element).
    Close(String),
    /// Character data, references resolved.
    Text(String),
}

impl Xml {
    /// The value of attribute `key` (local name) of an `Open`.
    pub(super) fn attr(&self, key: &str) -> Option<&str> {
        match self {
            Xml::Open { attrs, .. } => attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// True for an `Open` of the element with local name `name`.
    pub(super) fn opens(&self, name: &str) -> bool {
        matches!(self, Xml::Open { name: n, .. } if n == name)
    }

    /// True for a `Close` of the element with local name `name`.
    pub(super) fn closes(&self, name: &str) -> bool {
        matches!(self, Xml::Close(n) if n == name)
    }
}

/// The local part of a qualified name (`w:p` → `p`).
fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Parse `bytes` (one part of a package, named `part` in errors) into events.
///
/// Malformed XML is [`ExtractError::Corrupt`]. Events are collected, so the
/// cost is proportional to the part's size, which the package reader bounds.
pub(super) fn parse(bytes: &[u8], part: &str) -> Result<Vec<Xml>, ExtractError> {
    let corrupt = |detail: String| ExtractError::Corrupt {
        detail: format!("{part}: {detail}"),
    };
    // The parts of these formats are UTF-8 by specification (OOXML, ODF and
    // EPUB 3 all require it); a BOM is allowed.
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        .map_err(|e| corrupt(format!("not UTF-8: {e}")))?;
    let mut reader = Reader::from_str(text);
    // Mismatched end tags are corruption; quick-xml checks them by default.
    let mut events = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| corrupt(format!("at byte {}: {e}", reader.error_position())))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let name = local(e.name().as_ref()).to_owned();
                let mut attrs = Vec::new();
                for attr in e.attributes().with_checks(false) {
                    let attr = attr.map_err(|e| corrupt(format!("bad attribute: {e}")))?;
                    let value = attr
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| corrupt(format!("bad attribute value: {e}")))?;
                    attrs.push((local(attr.key.as_ref()).to_owned(), value.into_owned()));
                }
                events.push(Xml::Open {
                    name: name.clone(),
                    attrs,
                });
                if empty {
                    events.push(Xml::Close(name));
                }
            }
            Event::End(e) => events.push(Xml::Close(local(e.name().as_ref()).to_owned())),
            Event::Text(t) => push_text(&mut events, &t.xml10_content()),
            Event::CData(t) => push_text(&mut events, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    // These formats define no entities of their own (EPUB's
                    // XHTML, which may use HTML's, is read by the HTML reader).
                    Ok(None) => quick_xml::escape::resolve_xml_entity(&r)
                        .map(str::to_owned)
                        .ok_or_else(|| corrupt(format!("unknown entity &{};", &*r)))?,
                    Err(e) => return Err(corrupt(format!("bad character reference: {e}"))),
                };
                push_text(&mut events, &resolved);
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Ok(events)
}

/// Append text, merging with a preceding text event (references split text).
fn push_text(events: &mut Vec<Xml>, text: &str) {
    if let Some(Xml::Text(prev)) = events.last_mut() {
        prev.push_str(text);
    } else {
        events.push(Xml::Text(text.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_prefixes_and_references_resolve() {
        let events = parse(
            b"<w:p a:x=\"1 &amp; 2\"><w:t>Fish &amp; chips &#x41;&#233;</w:t><w:br/></w:p>",
            "part.xml",
        )
        .unwrap();
        assert_eq!(
            events,
            vec![
                Xml::Open {
                    name: "p".into(),
                    attrs: vec![("x".into(), "1 & 2".into())]
                },
                Xml::Open {
                    name: "t".into(),
                    attrs: vec![]
                },
                Xml::Text("Fish & chips Aé".into()),
                Xml::Close("t".into()),
                Xml::Open {
                    name: "br".into(),
                    attrs: vec![]
                },
                Xml::Close("br".into()),
                Xml::Close("p".into()),
            ]
        );
    }

    #[test]
    fn malformed_xml_is_corrupt_and_names_the_part() {
        for bad in [&b"<a><b></a>"[..], b"<a \xff>", b"<a>&nope;</a>"] {
            match parse(bad, "word/document.xml") {
                Err(ExtractError::Corrupt { detail }) => {
                    assert!(detail.starts_with("word/document.xml: "), "{detail}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
