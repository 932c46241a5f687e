"""An EPUB whose chapters are encrypted the way DRM leaves them, from report.epub.

Usage: python3 drm_epub.py IN.epub OUT.epub
No tool on Debian writes a DRM-protected EPUB (Adobe ADEPT needs Adobe's
server), so this writes its container form: the chapters' bytes replaced by
ciphertext-like bytes (a SHA-256 stream, the same on every run) and
META-INF/encryption.xml listing them with their cipher, as ADEPT does
(OCF 3.0, section 3.5.2; the rights.xml that holds the key is left out).
"""

import hashlib
import sys
import zipfile

ENCRYPTION = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
  xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
{}</encryption>
"""
ENTRY = """  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
    <enc:CipherData><enc:CipherReference URI="{}"/></enc:CipherData>
  </enc:EncryptedData>
"""


def ciphertext(name, length):
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{name}:{counter}".encode()).digest()
        counter += 1
    return out[:length]


def main():
    src, dst = sys.argv[1:3]
    with zipfile.ZipFile(src) as epub, zipfile.ZipFile(dst, "w") as out:
        chapters = [n for n in epub.namelist() if n.endswith(".xhtml") and "/text/" in n]
        for info in epub.infolist():
            data = epub.read(info)
            if info.filename in chapters:
                data = ciphertext(info.filename, len(data) + 16 - len(data) % 16)
            out.writestr(info, data)
        entries = "".join(ENTRY.format(c) for c in chapters)
        out.writestr("META-INF/encryption.xml", ENCRYPTION.format(entries),
                     zipfile.ZIP_DEFLATED)


main()
