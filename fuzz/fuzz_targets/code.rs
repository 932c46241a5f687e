//! Source code chunked along its syntax by the tree-sitter grammars: the first byte picks the language. See `ragd_fuzz::check` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragd_fuzz::document::{Format, Language};

/// Every language ragd has a grammar for.
const CODE: [Format; Language::ALL.len()] = {
    let mut formats = [Format::Text; Language::ALL.len()];
    let mut i = 0;
    while i < formats.len() {
        formats[i] = Format::Code(Language::ALL[i]);
        i += 1;
    }
    formats
};

fuzz_target!(|data: &[u8]| ragd_fuzz::check_one_of(&CODE, data));
