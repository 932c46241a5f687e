//! The file name ragd shows Open WebUI for a source file.

/// Longest name sent, in bytes. Open WebUI stores uploads as `{uuid}_{name}` on disk, so a
/// name near the file system's 255-byte limit would fall back to an id-only storage name.
const MAX_NAME_BYTES: usize = 200;
/// An extension longer than this is treated as part of the name when shortening.
const MAX_EXTENSION_BYTES: usize = 16;
/// Used when nothing printable is left of the name.
const FALLBACK_NAME: &str = "file";

/// Turns a path relative to a pipeline's folder into the file name ragd uploads under.
///
/// Keeps only the base name (Open WebUI keeps only that too), replaces control characters,
/// slashes, backslashes and double quotes (they would break the multipart header) with
/// `_`, strips leading dashes, dots and spaces (no hidden or option-like names), and caps
/// the result at 200 bytes on a character boundary while keeping the extension. Never
/// returns an empty string.
pub fn sanitize_filename(rel_path: &str) -> String {
    let base = rel_path
        .rsplit(['/', '\\'])
        .find(|segment| !segment.trim().is_empty())
        .unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '"') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['-', '.', ' '])
        .trim_end_matches([' ', '.']);
    if trimmed.is_empty() {
        return FALLBACK_NAME.to_owned();
    }
    if trimmed.len() <= MAX_NAME_BYTES {
        return trimmed.to_owned();
    }

    // Shorten the stem, not the extension: Open WebUI picks its loader by extension.
    let (stem, extension) = match trimmed.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= MAX_EXTENSION_BYTES => {
            (stem, Some(ext))
        }
        _ => (trimmed, None),
    };
    let budget = MAX_NAME_BYTES - extension.map_or(0, |ext| ext.len() + 1);
    let mut cut = budget.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = stem[..cut].trim_end_matches([' ', '.']);
    let stem = if stem.is_empty() { FALLBACK_NAME } else { stem };
    match extension {
        Some(ext) => format!("{stem}.{ext}"),
        None => stem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_base_name_only() {
        assert_eq!(sanitize_filename("a/b/report.pdf"), "report.pdf");
        assert_eq!(sanitize_filename("a\\b\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_filename("dir/"), "dir");
    }

    #[test]
    fn replaces_control_characters_and_quotes() {
        assert_eq!(sanitize_filename("x\ny\tz\".md"), "x_y_z_.md");
    }

    #[test]
    fn strips_leading_dashes_and_dots() {
        assert_eq!(sanitize_filename("--rf.txt"), "rf.txt");
        assert_eq!(sanitize_filename(".bashrc"), "bashrc");
        assert_eq!(sanitize_filename("../.."), "file");
    }

    #[test]
    fn never_empty() {
        for input in ["", "/", "...", "---", " ", "a/../"] {
            assert!(!sanitize_filename(input).is_empty(), "{input:?}");
        }
    }

    #[test]
    fn caps_length_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let name = sanitize_filename(&long);
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert!(name.ends_with(".pdf"));
        assert!(name.starts_with('é'));

        let no_ext = "x".repeat(500);
        assert_eq!(sanitize_filename(&no_ext).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn keeps_unicode_names() {
        assert_eq!(
            sanitize_filename("docs/Überblick 日本.md"),
            "Überblick 日本.md"
        );
    }
}
