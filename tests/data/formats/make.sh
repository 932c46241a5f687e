#!/bin/sh
# Makes the format fixtures in this folder with real tools (Debian bookworm):
# pandoc 2.17, LibreOffice 7.4 (libreoffice-{writer,calc,impress}-nogui, and python3-uno
# for the password-protected OpenDocument files), poppler-utils 22.12 (pdftoppm, pdfunite),
# img2pdf 0.6 and msoffcrypto-tool 5-6 (PyPI) and Python's standard email package. Re-run with `sh tests/data/formats/make.sh` from the
# repository root; the outputs are committed so that tests need none of these.
set -eu
cd "$(dirname "$0")"
src=src
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
soffice() { command soffice -env:UserInstallation=file://"$tmp"/lo --headless "$@" >/dev/null; }

# Word processing and e-books: one Markdown source with headings, a list and a table.
pandoc "$src/report.md" -o report.docx
pandoc "$src/report.md" -o report.odt
pandoc "$src/report.md" --metadata title="Heron Survey" -o report.epub
# Its chapters encrypted the way DRM leaves them (no tool here writes DRM; see the script).
python3 "$src/drm_epub.py" report.epub encrypted.epub
# Legacy Word 97-2003 (no reader in ragd: published to a knowledge base as it is).
soffice --convert-to doc --outdir . report.docx
# Rich Text Format, by LibreOffice Writer.
soffice --convert-to rtf --outdir . report.docx
# A Word file that needs a password to open (Office's encrypted package in a CFB
# container), by msoffcrypto-tool 5 (PyPI).
msoffcrypto-tool -e -p secret report.docx encrypted.docx
# OpenDocument text saved with a password by LibreOffice (each part AES-encrypted,
# <manifest:encryption-data> in the manifest), through its UNO API; Debian's python3.
/usr/bin/python3 "$src/encrypt_odf.py" "$tmp/lo-uno" secret report.odt encrypted.odt

# Presentations: one slide per level-1 heading, speaker notes on the first.
pandoc "$src/slides.md" -o slides.pptx
soffice --convert-to odp --outdir . slides.pptx
# Legacy PowerPoint 97-2003 (no reader in ragd: published to a knowledge base as it is).
soffice --convert-to ppt --outdir . slides.pptx

# Spreadsheets: two sheets, written as flat ODF by a script, saved by LibreOffice Calc.
python3 "$src/sheets.py" > "$tmp/sheets.fods"
soffice --convert-to xlsx --outdir . "$tmp/sheets.fods"
soffice --convert-to ods --outdir . "$tmp/sheets.fods"
soffice --convert-to xls --outdir . "$tmp/sheets.fods"
# The workbook with a password: Office's encrypted package (msoffcrypto-tool 6.1),
# and the OpenDocument one saved with a password by LibreOffice.
msoffcrypto-tool -e -p secret sheets.xlsx encrypted.xlsx
/usr/bin/python3 "$src/encrypt_odf.py" "$tmp/lo-uno" secret sheets.ods encrypted.ods

# Mail: a multipart message with a text body, an HTML alternative and a text attachment.
python3 "$src/mail.py" > message.eml

# OCR: a page of known text, rendered at 300 dpi to a greyscale PNG (no text layer),
# that image as an image-only PDF, and a PDF with a text page followed by the scanned one.
pandoc "$src/ocr.md" -o "$tmp/ocr.odt"
soffice --convert-to pdf --outdir "$tmp" "$tmp/ocr.odt"
pdftoppm -r 300 -gray -png -singlefile "$tmp/ocr.pdf" "$tmp/page"
cp "$tmp/page.png" scanned-page.png
img2pdf --output scanned.pdf "$tmp/page.png"
pandoc "$src/textpage.md" -o "$tmp/textpage.odt"
soffice --convert-to pdf --outdir "$tmp" "$tmp/textpage.odt"
pdfunite "$tmp/textpage.pdf" scanned.pdf mixed.pdf

# Three image-only pages, 1-bit at 300 dpi: the OCR page, a page too wide for
# Tesseract (111 in at 300 dpi is 33,300 pixels; Tesseract takes at most 32,767:
# "Image too large"), and the text page of mixed.pdf as an image. One page OCR
# cannot read, between two it reads.
pdftoppm -r 300 -mono -singlefile scanned.pdf "$tmp/one"
pdftoppm -r 300 -mono -f 1 -l 1 -singlefile mixed.pdf "$tmp/three"
img2pdf -s 300dpi --output "$tmp/p1.pdf" "$tmp/one.pbm"
img2pdf --pagesize 111inx3in --output "$tmp/p2.pdf" "$tmp/three.pbm"
img2pdf -s 300dpi --output "$tmp/p3.pdf" "$tmp/three.pbm"
pdfunite "$tmp/p1.pdf" "$tmp/p2.pdf" "$tmp/p3.pdf" scanned-pages.pdf
