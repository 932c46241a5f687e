//! Arbitrary bytes through extraction and chunking, for every format: the
//! first byte picks the format (in the order of `Format::ALL`), the rest is the
//! file. See `ragd_fuzz::check` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragd_fuzz::document::Format;

fuzz_target!(|data: &[u8]| ragd_fuzz::check_one_of(&Format::ALL, data));
