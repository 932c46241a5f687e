#!/usr/bin/env python3
"""Figures for the format readers and OCR (issue 22): files, pages/slides/sheets per
second per format, OCR pages per second, and the peak memory of an extraction worker.

    scripts/formats-figures.py [RAGD_BINARY] [ROUNDS]

Drives the real worker (`ragd extract-worker`, the process the daemon runs each file
in) over its pipe protocol (src/extract/isolate.rs) with the fixtures of
tests/data/formats, one fresh worker per format, ROUNDS files each (default 20; OCR
formats 3). Peak memory is the largest resident set of the worker or any of its
children (Tesseract, pdftoppm): the rusage wait4() gives for that one worker.
Not a test: the numbers depend on the machine and the build (debug by default).
"""

import json
import os
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "formats")
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "ragd")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
MAGIC = b"ragd-extract-worker v2\n"
OPTIONS = {
    "ocr": {"mode": "Auto", "languages": ["eng"], "dpi": 300, "max_pages": 50},
    "budget": None,
}

# (fixture, worker format name, unit counted per file, OCR?)
CASES = [
    ("report.docx", "docx", "document", False),
    ("report.odt", "odt", "document", False),
    ("report.rtf", "rtf", "document", False),
    ("slides.pptx", "pptx", "slide", False),
    ("slides.odp", "odp", "slide", False),
    ("sheets.xlsx", "xlsx", "sheet", False),
    ("sheets.xls", "xls", "sheet", False),
    ("sheets.ods", "ods", "sheet", False),
    ("report.epub", "epub", "chapter", False),
    ("message.eml", "eml", "message", False),
    ("scanned.pdf", "pdf", "OCR page", True),
    ("mixed.pdf", "pdf", "page", True),
    ("scanned-page.png", "image", "OCR page", True),
]


def read_exact(f, n):
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("worker closed its output")
        buf += chunk
    return buf


def measure(fixture, fmt, rounds):
    data = open(os.path.join(DATA, fixture), "rb").read()
    env = dict(os.environ, RAGD_EXTRACT_OPTIONS=json.dumps(OPTIONS), RUST_BACKTRACE="0")
    worker = subprocess.Popen(
        [BINARY, "extract-worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert read_exact(worker.stdout, len(MAGIC)) == MAGIC, "not a ragd worker"
    name = fmt.encode()
    request = bytes([len(name)]) + name + struct.pack("<Q", len(data)) + data
    sections = 0
    started = time.perf_counter()
    for _ in range(rounds):
        worker.stdin.write(request)
        worker.stdin.flush()
        read_exact(worker.stdout, 1)
        (length,) = struct.unpack("<Q", read_exact(worker.stdout, 8))
        reply = json.loads(read_exact(worker.stdout, length))
        if "Ok" not in reply:
            raise SystemExit(f"{fixture}: {reply}")
        sections = len(reply["Ok"])
        ocr = sum(1 for s in reply["Ok"] if s.get("ocr"))
    elapsed = time.perf_counter() - started
    worker.stdin.close()
    # This worker's own rusage: its maximum resident set, or that of a child it
    # waited for (Tesseract, pdftoppm), whichever is larger.
    _, status, usage = os.wait4(worker.pid, 0)
    worker.returncode = os.waitstatus_to_exitcode(status)
    peak = f"{usage.ru_maxrss / 1024:.0f} MiB"
    return elapsed / rounds, sections, ocr, peak


def main():
    print(f"binary: {BINARY}")
    print(f"{'file':<18} {'format':<6} {'ms/file':>9} {'units/file':>11} {'units/s':>9}  peak RSS")
    for fixture, fmt, unit, is_ocr in CASES:
        rounds = 3 if is_ocr else ROUNDS
        per_file, sections, ocr, peak = measure(fixture, fmt, rounds)
        units = ocr if unit == "OCR page" else sections
        label = f"{units} {unit}{'s' if units != 1 else ''}"
        print(
            f"{fixture:<18} {fmt:<6} {per_file * 1000:>9.1f} {label:>11} "
            f"{units / per_file:>9.2f}  {peak}"
        )


if __name__ == "__main__":
    main()
