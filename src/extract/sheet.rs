//! Spreadsheets (xlsx, xls, ods through calamine) and delimited text (csv,
//! tsv) → one section per sheet, one row per line.
//!
//! A sheet's first non-empty row is taken as its header: it goes into the
//! section's `header_row`, which the chunker repeats at the top of every
//! chunk of the sheet, so that a retrieved chunk of rows still says what its
//! columns mean. The sheet's name is the section's heading and its position
//! (from 1) the section's `page`, as a slide's is.

use std::io::Cursor;

use calamine::{Data, Ods, OdsError, Range, Reader, Xls, XlsError, Xlsx, XlsxError};

use super::package::check_declared_sizes;
use super::{ExtractError, guarded, text};
use crate::document::{Format, Section};

/// Separates cells on a row's line.
const CELL_SEPARATOR: &str = " | ";

/// The sheets of a workbook in `format` (xlsx, xls or ods).
pub(super) fn workbook(bytes: &[u8], format: Format) -> Result<Vec<Section>, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let cursor = Cursor::new(bytes);
    // calamine panics on some malformed files (a compound file whose sector
    // chain runs past its end, found by the `sheet` fuzz target).
    let sheets = guarded(|| -> Result<_, ExtractError> {
        Ok(match format {
            Format::Xlsx => {
                check_declared_sizes(bytes, "Excel workbook")?;
                read_all(Xlsx::new(cursor).map_err(xlsx_error)?, xlsx_error)?
            }
            Format::Xls => read_all(Xls::new(cursor).map_err(xls_error)?, xls_error)?,
            Format::Ods => {
                check_declared_sizes(bytes, "OpenDocument spreadsheet")?;
                read_all(Ods::new(cursor).map_err(ods_error)?, ods_error)?
            }
            other => unreachable!("{other:?} is not a workbook"),
        })
    })??;
    let sections: Vec<Section> = sheets
        .into_iter()
        .enumerate()
        .filter_map(|(i, (name, range))| {
            let rows = range.rows().map(row_line);
            sheet_section(name, rows, i)
        })
        .collect();
    if sections.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(sections)
}

fn read_all<RS, R, E>(
    mut book: R,
    error: fn(E) -> ExtractError,
) -> Result<Vec<(String, Range<Data>)>, ExtractError>
where
    RS: std::io::Read + std::io::Seek,
    R: Reader<RS, Error = E>,
{
    let names = book.sheet_names();
    names
        .into_iter()
        .map(|name| {
            let range = book.worksheet_range(&name).map_err(error)?;
            Ok((name, range))
        })
        .collect()
}

fn xlsx_error(e: XlsxError) -> ExtractError {
    match e {
        XlsxError::Password => ExtractError::Encrypted {
            what: "Excel workbook".into(),
        },
        e => ExtractError::Corrupt {
            detail: format!("not a valid Excel workbook: {e}"),
        },
    }
}

fn xls_error(e: XlsError) -> ExtractError {
    match e {
        XlsError::Password => ExtractError::Encrypted {
            what: "Excel 97-2003 workbook".into(),
        },
        e => ExtractError::Corrupt {
            detail: format!("not a valid Excel 97-2003 workbook: {e}"),
        },
    }
}

fn ods_error(e: OdsError) -> ExtractError {
    match e {
        OdsError::Password => ExtractError::Encrypted {
            what: "OpenDocument spreadsheet".into(),
        },
        e => ExtractError::Corrupt {
            detail: format!("not a valid OpenDocument spreadsheet: {e}"),
        },
    }
}

/// The cells of a row as one line, trailing empty cells dropped; a cell's own
/// line breaks become spaces so that a row stays one line.
fn row_line(row: &[Data]) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|c| {
            c.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let used = cells
        .iter()
        .rposition(|c| !c.is_empty())
        .map_or(0, |i| i + 1);
    cells[..used].join(CELL_SEPARATOR)
}

/// A sheet's section: the first non-empty line is the header, the other
/// non-empty lines its rows. `None` for a sheet with nothing in it.
fn sheet_section(
    name: String,
    lines: impl Iterator<Item = String>,
    index: usize,
) -> Option<Section> {
    let mut lines = lines.filter(|l| !l.trim().is_empty());
    let header = lines.next()?;
    let rows: Vec<String> = lines.collect();
    let mut section = Section::new(rows.join("\n"), u32::try_from(index + 1).ok());
    if rows.is_empty() {
        // A sheet of one row: that row is its content, not a header.
        section.text = header;
    } else {
        section.header_row = Some(header);
    }
    section.headings = vec![name];
    Some(section)
}

/// A csv or tsv file: one section, the first line as the header. Fields are
/// left as written (a quoted field with a line break in it spans two lines).
pub(super) fn delimited(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let decoded = text::decode(bytes)?;
    let section = sheet_section(String::new(), decoded.lines().map(str::to_owned), 0)
        .ok_or(ExtractError::Empty)?;
    // A single file has no sheets to tell apart.
    Ok(vec![Section {
        page: None,
        headings: Vec::new(),
        ..section
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const XLSX: &[u8] = include_bytes!("../../tests/data/formats/sheets.xlsx");
    const XLS: &[u8] = include_bytes!("../../tests/data/formats/sheets.xls");
    const ODS: &[u8] = include_bytes!("../../tests/data/formats/sheets.ods");

    #[test]
    fn every_workbook_format_gives_one_section_per_sheet_with_its_header() {
        for (bytes, format) in [(XLSX, Format::Xlsx), (XLS, Format::Xls), (ODS, Format::Ods)] {
            let sections = workbook(bytes, format).unwrap();
            assert_eq!(sections.len(), 2, "{format:?}: {sections:#?}");
            let counts = &sections[0];
            assert_eq!(counts.page, Some(1));
            assert_eq!(counts.headings, ["Counts"]);
            assert_eq!(
                counts.header_row.as_deref(),
                Some("Site | Week | Nests | Observer"),
                "{format:?}"
            );
            let rows: Vec<&str> = counts.text.lines().collect();
            assert_eq!(rows.len(), 40, "{format:?}");
            assert_eq!(rows[0], "North shore | 1 | 10 | Ada", "{format:?}");
            let budget = &sections[1];
            assert_eq!(budget.page, Some(2));
            assert_eq!(budget.headings, ["Budget"]);
            assert!(
                budget.text.contains("Observation hide | 2100"),
                "{budget:?}"
            );
        }
    }

    #[test]
    fn csv_header_is_the_first_line() {
        let sections = delimited(b"a,b\n1,2\n\n3,4\n").unwrap();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].header_row.as_deref(), Some("a,b"));
        assert_eq!(sections[0].text, "1,2\n3,4");
        assert_eq!(sections[0].page, None);
        assert_eq!(delimited(b"  \n"), Err(ExtractError::Empty));
    }

    #[test]
    fn a_panic_in_calamine_is_the_files_error() {
        // Found by the `sheet` fuzz target: calamine 0.38's compound-file
        // reader slices past the end of a sector chain, and asserts that a
        // table of u32s has a length divisible by 4.
        for (bytes, words) in [
            (
                &include_bytes!("../../tests/data/fuzz/xls-sector-chain-past-end.xls")[..],
                "slice index",
            ),
            (
                &include_bytes!("../../tests/data/fuzz/xls-u32-table-odd-length.xls")[..],
                "assertion",
            ),
        ] {
            match workbook(bytes, Format::Xls) {
                Err(ExtractError::Panicked { detail }) => {
                    assert!(detail.contains(words), "{detail}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn broken_workbooks_are_corrupt() {
        for (bytes, format) in [(XLSX, Format::Xlsx), (XLS, Format::Xls), (ODS, Format::Ods)] {
            for len in [10, bytes.len() / 2] {
                let got = workbook(&bytes[..len], format);
                assert!(
                    matches!(got, Err(ExtractError::Corrupt { .. })),
                    "{format:?} {len}: {got:?}"
                );
            }
        }
    }
}
