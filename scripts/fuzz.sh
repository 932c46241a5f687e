#!/usr/bin/env bash
# Fuzz extraction and chunking (fuzz/fuzz_targets/) for a while, target by target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default 120 s each, every target
#
# Targets: extract_and_chunk (every format, the first byte choosing), office
# (docx/odt/pptx/odp), sheet (xlsx/xls/ods/csv), epub, mail (eml), rtf, code
# (the tree-sitter grammars). Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Each target's corpus lives in
# fuzz/corpus/TARGET (git-ignored) and grows from run to run; it is seeded with
# the format fixtures of tests/data/formats. A crash, hang (over 10 s for one
# input) or memory blow-up (over 2 GiB) stops that target's run and leaves the
# input in fuzz/artifacts/TARGET/; replay it with
#   cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/<file>
# The run of every target is summed up at the end (executions, corpus, crashes).
set -euo pipefail

seconds="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(extract_and_chunk office sheet epub mail rtf code)
fi
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi

data="$root/tests/data/formats"
# seed TARGET NAME SELECTOR [FILE]: FILE (or standard input) with the selector
# byte first (an empty SELECTOR for single-format targets).
seed() {
    local corpus="$root/fuzz/corpus/$1"
    mkdir -p "$corpus"
    { printf "$3"; if [ $# -ge 4 ]; then cat "$4"; else cat; fi; } > "$corpus/seed-$2"
}

# extract_and_chunk: the first byte picks the format, in the order of
# `Format::ALL`: 0 PDF, 1 Markdown, 2 text, 3 HTML, 4 docx, 5 odt, 6 rtf,
# 7 pptx, 8 odp, 9 xlsx, 10 xls, 11 ods, 12 csv, 13 epub, 14 eml, 15 image
# (fails at once: OCR is off), 16-25 code (Language::ALL).
t=extract_and_chunk
seed $t markdown '\x01' <<'MD'
# Title

Some *text* with a [link](http://example.com) and `code`.

## Section

- a list
- of items

> a quote
MD
seed $t text '\x02' <<'TXT'
Plain text, with a second line.
Caf\xe9 au lait.
TXT
seed $t html '\x03' <<'HTML'
<html><head><title>T</title><style>p{}</style></head>
<body><h1>Head</h1><p>Para <b>bold</b></p><table><tr><td>a</td><td>b</td></tr></table>
<pre>keep
lines</pre></body></html>
HTML
seed $t pdf '\x00' <<'PDF'
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
seed $t docx '\x04' "$data/report.docx"
seed $t odt '\x05' "$data/report.odt"
seed $t rtf '\x06' "$data/report.rtf"
seed $t pptx '\x07' "$data/slides.pptx"
seed $t odp '\x08' "$data/slides.odp"
seed $t xlsx '\x09' "$data/sheets.xlsx"
seed $t xls '\x0a' "$data/sheets.xls"
seed $t ods '\x0b' "$data/sheets.ods"
seed $t csv '\x0c' <<'CSV'
a,b,c
1,2,3
CSV
seed $t epub '\x0d' "$data/report.epub"
seed $t eml '\x0e' "$data/message.eml"
seed $t rust '\x10' "$data/code/nests.rs"

seed office docx '\x00' "$data/report.docx"
seed office odt '\x01' "$data/report.odt"
seed office pptx '\x02' "$data/slides.pptx"
seed office odp '\x03' "$data/slides.odp"
seed office encrypted-docx '\x00' "$data/encrypted.docx"
seed sheet xlsx '\x00' "$data/sheets.xlsx"
seed sheet xls '\x01' "$data/sheets.xls"
seed sheet ods '\x02' "$data/sheets.ods"
seed sheet csv '\x03' <<'CSV'
site,nests,chicks
North shore,40,61
CSV
seed epub book '' "$data/report.epub"
seed mail message '' "$data/message.eml"
seed rtf report '' "$data/report.rtf"
seed rtf small '' <<'RTF'
{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}{\stylesheet{\s0 Normal;}{\s1 heading 1;}}
\pard\s1 Title\par\pard caf\'e9 \u8364? {\listtext \'95\tab}Item\par
\trowd\pard\intbl A\cell B\cell\row{\pict\bin3 {}\par}
RTF
# code: the first byte picks the language, in the order of `Language::ALL`.
i=0
for f in nests.rs nests.py nests.js nests.ts nests.ts nests.go Nests.java nests.c nests.cpp survey.sh; do
    seed code "$i-$f" "\\x$(printf %02x $i)" "$data/code/$f"
    i=$((i + 1))
done

cd "$root/fuzz"
summary=()
status=0
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "artifacts/$target"
    log="$(mktemp)"
    echo "== $target: $seconds s" >&2
    rc=0
    cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" 2>"$log" || rc=$?
    tail -n 40 "$log" >&2
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo "?")
    units=$(find "$corpus" -type f | wc -l)
    found=$(find "artifacts/$target" -type f | wc -l)
    summary+=("$(printf '%-18s %10s runs  cov %6s  corpus %5s  artifacts %s  rc %s' \
        "$target" "$runs" "$cov" "$units" "$found" "$rc")")
    [ "$rc" -eq 0 ] || status=1
    rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit "$status"
