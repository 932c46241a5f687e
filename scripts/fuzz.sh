#!/usr/bin/env bash
# Fuzz extraction and chunking (fuzz/fuzz_targets/extract_and_chunk.rs) for a while.
#
#   scripts/fuzz.sh [SECONDS]        default 120
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus
# lives in fuzz/corpus/extract_and_chunk (git-ignored) and grows from run to run;
# it is seeded with one small file per format. A crash, hang (over 10 s for one
# input) or memory blow-up (over 2 GiB) stops the run and leaves the input in
# fuzz/artifacts/extract_and_chunk/; replay it with
#   cargo +nightly fuzz run extract_and_chunk fuzz/artifacts/extract_and_chunk/<file>
set -euo pipefail

seconds="${1:-120}"
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="$root/fuzz/corpus/extract_and_chunk"
mkdir -p "$corpus"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi

# Seeds. The first byte picks the format, in the order of `Format::ALL`: 0 PDF,
# 1 Markdown, 2 text, 3 HTML, 4 docx, 5 odt, 6 pptx, 7 odp, 8 xlsx, 9 xls, 10 ods,
# 11 csv, 12 epub, 13 eml (14, images, needs OCR, which the target leaves off).
seed() { printf "$1" > "$corpus/seed-$2"; cat >> "$corpus/seed-$2"; }
seed '\x01' markdown <<'MD'
# Title

Some *text* with a [link](http://example.com) and `code`.

## Section

- a list
- of items

> a quote
MD
seed '\x02' text <<'TXT'
Plain text, with a second line.
Caf\xe9 au lait.
TXT
seed '\x03' html <<'HTML'
<html><head><title>T</title><style>p{}</style></head>
<body><h1>Head</h1><p>Para <b>bold</b></p><table><tr><td>a</td><td>b</td></tr></table>
<pre>keep
lines</pre></body></html>
HTML
seed '\x00' pdf <<'PDF'
%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >> endobj
4 0 obj << /Length 44 >> stream
BT /F1 24 Tf 72 700 Td (Hello fuzz) Tj ET
endstream endobj
5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj
trailer << /Root 1 0 R >>
%%EOF
PDF

# The format fixtures (tests/data/formats), small real files made by real tools.
data="$root/tests/data/formats"
fixture() { { printf "$1"; cat "$data/$2"; } > "$corpus/seed-$2"; }
fixture '\x04' report.docx
fixture '\x05' report.odt
fixture '\x06' slides.pptx
fixture '\x07' slides.odp
fixture '\x08' sheets.xlsx
fixture '\x09' sheets.xls
fixture '\x0a' sheets.ods
fixture '\x0c' report.epub
fixture '\x0d' message.eml
seed '\x0b' csv <<'CSV'
a,b,c
1,2,3
CSV

cd "$root/fuzz"
exec cargo +nightly fuzz run extract_and_chunk "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
