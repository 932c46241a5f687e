//! Plain text and Markdown: bytes → one section of text.
//!
//! Text files come in whatever encoding their author's editor used, so bytes are
//! decoded rather than rejected: a BOM decides when there is one (UTF-8,
//! UTF-16LE/BE); valid UTF-8 is taken as is; anything else is guessed by
//! `chardetng` (the detector Firefox uses) and decoded by `encoding_rs`, which
//! covers Windows-1252/Latin-1, Shift-JIS, GBK, KOI8 and the rest of the WHATWG
//! encodings. Line endings become `\n` so that a CRLF-only change does not
//! change the text hash.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE};

use super::ExtractError;
use crate::document::Section;

/// Share of suspicious characters (control characters other than whitespace,
/// and U+FFFD from undecodable bytes) above which decoded "text" is taken to be
/// binary data. Random bytes give about 12%; real text, even a log full of ANSI
/// colour codes (ESC is not counted), stays far below.
const MAX_SUSPICIOUS_PERCENT: usize = 10;

/// One section holding the decoded text of a plain-text or Markdown file.
pub(super) fn extract(bytes: &[u8]) -> Result<Section, ExtractError> {
    let text = decode(bytes)?;
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(Section::new(text, None))
}

/// Decode the bytes of a text-like file (text, Markdown, HTML) to a `String`
/// with `\n` line endings.
pub(super) fn decode(bytes: &[u8]) -> Result<String, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let text = if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        // The BOM is the author's explicit statement; it beats any guess.
        let (text, _had_errors) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        text.into_owned()
    } else if let Some(encoding) = utf16_without_bom(bytes) {
        let (text, _had_errors) = encoding.decode_without_bom_handling(bytes);
        text.into_owned()
    } else if bytes.contains(&0) {
        // No text encoding other than UTF-16/32 uses NUL bytes; a file that has
        // them is binary (the same test git and grep use).
        return Err(ExtractError::Binary);
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        text.to_owned()
    } else {
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(bytes, true);
        // No top-level domain hint: a file's origin is unknown. UTF-8 stays
        // allowed so that mostly-UTF-8 files with a few bad bytes decode as UTF-8.
        let encoding = detector.guess(None, true);
        let (text, _had_errors) = encoding.decode_without_bom_handling(bytes);
        text.into_owned()
    };
    if looks_binary(&text) {
        return Err(ExtractError::Binary);
    }
    Ok(normalize_newlines(text))
}

/// Recognise UTF-16 text that has no BOM: every other byte is NUL (the high
/// byte of ASCII characters) and the bytes in between are not.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static Encoding> {
    if bytes.len() < 4 || !bytes.len().is_multiple_of(2) {
        return None;
    }
    let pairs = bytes.len() / 2;
    let zeros_at = |parity: usize| {
        bytes
            .iter()
            .skip(parity)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let (even, odd) = (zeros_at(0), zeros_at(1));
    // Mostly-ASCII UTF-16 has a NUL in (nearly) every pair; demand a clear
    // majority on one side and none on the other so binary data is not caught.
    let clear_majority = |n: usize| n * 10 >= pairs * 6;
    if even == 0 && clear_majority(odd) {
        Some(UTF_16LE)
    } else if odd == 0 && clear_majority(even) {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// True when too many characters are control characters or replacement
/// characters for this to be text.
fn looks_binary(text: &str) -> bool {
    let mut total = 0usize;
    let mut suspicious = 0usize;
    for c in text.chars() {
        total += 1;
        let is_control = c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c' | '\x1b');
        if is_control || c == char::REPLACEMENT_CHARACTER {
            suspicious += 1;
        }
    }
    // NUL cannot be text even once (it only gets here through a UTF-16 decode).
    text.contains('\0') || suspicious * 100 > total * MAX_SUSPICIOUS_PERCENT
}

/// CRLF and lone CR (classic Mac) become LF.
fn normalize_newlines(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(bytes: &[u8]) -> String {
        extract(bytes).unwrap().text
    }

    #[test]
    fn utf8_is_taken_as_is() {
        assert_eq!(text_of("héllo wörld ✓".as_bytes()), "héllo wörld ✓");
    }

    #[test]
    fn utf8_bom_is_stripped() {
        assert_eq!(text_of(b"\xEF\xBB\xBFhello"), "hello");
    }

    #[test]
    fn crlf_and_cr_become_lf() {
        assert_eq!(text_of(b"a\r\nb\rc\n"), "a\nb\nc\n");
    }

    #[test]
    fn latin1_bytes_are_decoded_not_rejected() {
        // "café" in Latin-1 / Windows-1252: é is the single byte 0xE9.
        assert_eq!(text_of(b"caf\xE9"), "café");
        let longer = b"Le caf\xE9 est tr\xE8s bon, \xE0 la fran\xE7aise. \x93Quotes\x94 \x80 5";
        assert_eq!(
            text_of(longer),
            "Le café est très bon, à la française. \u{201c}Quotes\u{201d} € 5"
        );
    }

    #[test]
    fn shift_jis_is_decoded() {
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode("日本語のテキストです。これは文書です。");
        assert_eq!(text_of(&bytes), "日本語のテキストです。これは文書です。");
    }

    #[test]
    fn utf16le_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "héllo\r\nwörld".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(text_of(&bytes), "héllo\nwörld");
    }

    #[test]
    fn utf16be_with_bom_is_decoded() {
        let mut bytes = vec![0xFE, 0xFF];
        for unit in "hello".encode_utf16() {
            bytes.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(text_of(&bytes), "hello");
    }

    #[test]
    fn utf16le_without_bom_is_recognised() {
        let bytes: Vec<u8> = "plain ascii text"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(text_of(&bytes), "plain ascii text");
    }

    #[test]
    fn nul_bytes_mean_binary() {
        assert_eq!(
            extract(b"hello\0world\x01\x02\x03binary"),
            Err(ExtractError::Binary)
        );
        // An ELF header, the typical binary renamed to .txt.
        assert_eq!(
            extract(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0"),
            Err(ExtractError::Binary)
        );
    }

    #[test]
    fn control_characters_mean_binary() {
        let bytes: Vec<u8> = (0..400u32).map(|i| (i * 7 % 31 + 1) as u8).collect();
        assert_eq!(extract(&bytes), Err(ExtractError::Binary));
    }

    #[test]
    fn ansi_colour_codes_are_still_text() {
        let line = "\x1b[31mERROR\x1b[0m something failed\n".repeat(20);
        assert_eq!(text_of(line.as_bytes()), line);
    }

    #[test]
    fn empty_and_whitespace_only_are_empty() {
        assert_eq!(extract(b""), Err(ExtractError::Empty));
        assert_eq!(extract(b" \r\n\t\n"), Err(ExtractError::Empty));
        assert_eq!(extract(b"\xEF\xBB\xBF"), Err(ExtractError::Empty));
    }
}
