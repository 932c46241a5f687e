//! Office documents and presentations (zip + quick-xml, `extract/office.rs`): the first byte picks docx, odt, pptx or odp. See `ragd_fuzz::check` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragd_fuzz::document::Format;

fuzz_target!(|data: &[u8]| ragd_fuzz::check_one_of(
    &[Format::Docx, Format::Odt, Format::Pptx, Format::Odp],
    data
));
