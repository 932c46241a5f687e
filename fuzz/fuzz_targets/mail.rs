//! E-mail messages (mail-parser): headers, MIME parts, attachments, forwarded messages. See `ragd_fuzz::check` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragd_fuzz::document::Format;

fuzz_target!(|data: &[u8]| ragd_fuzz::check(Format::Email, data));
