//! Zip packages written byte by byte, for hostile-input tests: parts that
//! inflate to hundreds of MiB from a few hundred KiB (zip bombs), without
//! compressing hundreds of MiB in a debug build.
//!
//! A bomb's deflate stream is one compressed block repeated: compressed after
//! a full flush, a block refers to nothing before it, so copies of it decode
//! to copies of its input. Sizes and CRCs are the true ones, so a reader that
//! inflates a part to its end sees a valid zip.

use std::io::Write;

use flate2::{Compress, Compression, Crc, FlushCompress};

/// One entry of a package: its raw deflate data and what it inflates to.
pub struct Part {
    name: String,
    deflated: Vec<u8>,
    crc: u32,
    size: u64,
}

/// An entry holding `bytes`.
pub fn part(name: &str, bytes: impl AsRef<[u8]>) -> Part {
    repeated(name, bytes.as_ref(), b"", 0, b"")
}

/// An entry holding `head`, then `unit` `times` times, then `tail`.
pub fn repeated(name: &str, head: &[u8], unit: &[u8], times: usize, tail: &[u8]) -> Part {
    let mut crc = Crc::new();
    crc.update(head);
    // The unit's CRC once, combined `times` times: hashing hundreds of MiB in
    // a debug build would cost seconds per bomb.
    let mut unit_crc = Crc::new();
    unit_crc.update(unit);
    for _ in 0..times {
        crc.combine(&unit_crc);
    }
    crc.update(tail);
    Part {
        name: name.to_owned(),
        deflated: deflate_repeated(head, unit, times, tail),
        crc: crc.sum(),
        size: (head.len() + unit.len() * times + tail.len()) as u64,
    }
}

/// A raw deflate stream of `head`, `unit` `times` times, then `tail`, made
/// by compressing each once.
pub fn deflate_repeated(head: &[u8], unit: &[u8], times: usize, tail: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut block = |input: &[u8], flush: FlushCompress| {
        let mut out = Vec::with_capacity(input.len() / 2 + 1024);
        let mut at = 0;
        loop {
            let before = c.total_in();
            c.compress_vec(&input[at..], &mut out, flush)
                .expect("deflate");
            at += usize::try_from(c.total_in() - before).unwrap();
            if at == input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(1024));
        }
    };
    let mut deflated = block(head, FlushCompress::Full);
    let unit_block = block(unit, FlushCompress::Full);
    let tail_block = block(tail, FlushCompress::Full);
    let end = block(b"", FlushCompress::Finish);
    for _ in 0..times {
        deflated.extend_from_slice(&unit_block);
    }
    deflated.extend_from_slice(&tail_block);
    deflated.extend_from_slice(&end);
    deflated
}

/// The zip file of `parts`, in order (no zip64: parts under 4 GiB).
pub fn zip(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for p in parts {
        let offset = u32::try_from(out.len()).unwrap();
        let size = u32::try_from(p.size).expect("no zip64");
        let compressed = u32::try_from(p.deflated.len()).unwrap();
        let name = p.name.as_bytes();
        let name_len = u16::try_from(name.len()).unwrap();
        // Local file header: version 2.0, no flags, deflate, no date.
        out.write_all(&0x0403_4b50u32.to_le_bytes()).unwrap();
        out.write_all(&[20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]).unwrap();
        for v in [p.crc, compressed, size] {
            out.write_all(&v.to_le_bytes()).unwrap();
        }
        out.write_all(&name_len.to_le_bytes()).unwrap();
        out.write_all(&0u16.to_le_bytes()).unwrap();
        out.write_all(name).unwrap();
        out.write_all(&p.deflated).unwrap();
        // Its central directory record.
        central.write_all(&0x0201_4b50u32.to_le_bytes()).unwrap();
        central
            .write_all(&[20, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0])
            .unwrap();
        for v in [p.crc, compressed, size] {
            central.write_all(&v.to_le_bytes()).unwrap();
        }
        central.write_all(&name_len.to_le_bytes()).unwrap();
        // Extra, comment, disk, internal and external attributes.
        central.write_all(&[0; 12]).unwrap();
        central.write_all(&offset.to_le_bytes()).unwrap();
        central.write_all(name).unwrap();
    }
    let central_at = u32::try_from(out.len()).unwrap();
    let count = u16::try_from(parts.len()).unwrap();
    let central_len = u32::try_from(central.len()).unwrap();
    out.extend_from_slice(&central);
    out.write_all(&0x0605_4b50u32.to_le_bytes()).unwrap();
    out.write_all(&[0; 4]).unwrap();
    out.write_all(&count.to_le_bytes()).unwrap();
    out.write_all(&count.to_le_bytes()).unwrap();
    out.write_all(&central_len.to_le_bytes()).unwrap();
    out.write_all(&central_at.to_le_bytes()).unwrap();
    out.write_all(&0u16.to_le_bytes()).unwrap();
    out
}

#[test]
fn a_crafted_zip_reads_back_with_the_zip_crate() {
    use std::io::{Cursor, Read};
    let bytes = zip(&[
        part("a.txt", "hello"),
        repeated("b.txt", b"<", b"xy", 1000, b">"),
    ]);
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut s = String::new();
    z.by_name("a.txt").unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
    s.clear();
    z.by_name("b.txt").unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, format!("<{}>", "xy".repeat(1000)));
}

/// `package` (a real file's bytes) with the parts of `parts` in place of its
/// own of the same name, or added.
pub fn with_parts(package: &[u8], parts: Vec<Part>) -> Vec<u8> {
    use std::io::{Cursor, Read};
    let mut z = zip::ZipArchive::new(Cursor::new(package)).expect("a zip package");
    let mut out: Vec<Part> = Vec::new();
    for i in 0..z.len() {
        let mut entry = z.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        if entry.is_dir() || parts.iter().any(|p| p.name == name) {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.push(part(&name, bytes));
    }
    out.extend(parts);
    zip(&out)
}

/// The bytes of part `name` of `package`.
pub fn read_part(package: &[u8], name: &str) -> String {
    use std::io::{Cursor, Read};
    let mut z = zip::ZipArchive::new(Cursor::new(package)).expect("a zip package");
    let mut s = String::new();
    z.by_name(name).unwrap().read_to_string(&mut s).unwrap();
    s
}
