//! Workbooks (calamine) and delimited text: the first byte picks xlsx, xls, ods or csv. See `ragd_fuzz::check` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragd_fuzz::document::Format;

fuzz_target!(|data: &[u8]| ragd_fuzz::check_one_of(
    &[Format::Xlsx, Format::Xls, Format::Ods, Format::Delimited],
    data
));
