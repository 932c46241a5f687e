//! E-mail (eml, RFC 5322 with MIME) → one section of Markdown: the subject as
//! the heading, the sender, recipients and date, the text body, then each
//! text attachment under its own heading.
//!
//! Parsed by mail-parser (Stalwart's, fuzzed, no dependencies of its own),
//! which decodes transfer encodings and character sets and, for a message
//! with only an HTML body, gives that body as text.

use mail_parser::{Address, MessageParser, MimeHeaders};

use super::ExtractError;
use super::package::Markdown;
use crate::document::Section;

/// Largest attachment whose text is indexed; larger ones are named only.
const MAX_ATTACHMENT_TEXT: usize = 1 << 20;

pub(super) fn extract(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExtractError::Empty);
    }
    if bytes.contains(&0) {
        return Err(ExtractError::Binary);
    }
    let message = super::guarded(|| MessageParser::default().parse(bytes))?.ok_or_else(|| {
        ExtractError::Corrupt {
            detail: "not an e-mail message: no headers".into(),
        }
    })?;
    // A parse always "succeeds" on text; a message has at least one of these.
    if message.from().is_none() && message.subject().is_none() && message.date().is_none() {
        return Err(ExtractError::Corrupt {
            detail: "not an e-mail message: no From, Subject or Date header".into(),
        });
    }

    let mut md = Markdown::default();
    md.heading(1, message.subject().unwrap_or("(no subject)"));
    let mut header_lines = Vec::new();
    for (label, address) in [
        ("From", message.from()),
        ("To", message.to()),
        ("Cc", message.cc()),
    ] {
        if let Some(address) = address {
            header_lines.push(format!("{label}: {}", addresses(address)));
        }
    }
    if let Some(date) = message.date() {
        header_lines.push(format!("Date: {}", date.to_rfc3339()));
    }
    md.paragraph(&header_lines.join("\n"));
    if let Some(body) = message.body_text(0) {
        md.paragraph(&body);
    }

    for part in message.attachments() {
        let name = part.attachment_name().unwrap_or("unnamed attachment");
        let text = part.text_contents().filter(|_| part.is_text());
        match text {
            Some(text) if text.len() <= MAX_ATTACHMENT_TEXT && !part.is_text_html() => {
                md.heading(2, &format!("Attachment: {name}"));
                md.paragraph(text);
            }
            // An attached message (forwarded mail) is read like the message.
            _ => {
                if let Some(inner) = part.message() {
                    md.heading(
                        2,
                        &format!("Forwarded: {}", inner.subject().unwrap_or(name)),
                    );
                    if let Some(body) = inner.body_text(0) {
                        md.paragraph(&body);
                    }
                }
            }
        }
    }
    if md.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(vec![Section::new(md.finish(), None)])
}

/// "Name <address>, ..." for an address header.
fn addresses(address: &Address<'_>) -> String {
    address
        .iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_owned(),
            (Some(name), None) => name.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EML: &[u8] = include_bytes!("../../tests/data/formats/message.eml");

    #[test]
    fn headers_body_and_text_attachments() {
        let sections = extract(EML).unwrap();
        assert_eq!(sections.len(), 1);
        let text = &sections[0].text;
        for needle in [
            "# Heron count for Sunday",
            "From: Ada Keeper <ada@example.org>",
            "To: Survey Team <team@example.org>",
            "Date: 2026-05-03T09:30:00Z",
            "We counted forty nests on the north shore this morning.",
            "## Attachment: counts.csv",
            "Reed bed,12",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        // The HTML alternative of the same body is not repeated.
        assert_eq!(text.matches("forty nests").count(), 1, "{text}");
    }

    #[test]
    fn not_mail_is_corrupt() {
        assert!(matches!(
            extract(b"just some words\nand more"),
            Err(ExtractError::Corrupt { .. })
        ));
        assert_eq!(extract(b" \n"), Err(ExtractError::Empty));
        assert_eq!(extract(b"From: a\0b"), Err(ExtractError::Binary));
    }
}
