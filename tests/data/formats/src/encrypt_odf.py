"""Save an OpenDocument file again with a password, through LibreOffice.

Usage: python3 encrypt_odf.py PROFILE_DIR PASSWORD IN OUT
(Debian's /usr/bin/python3 with python3-uno; LibreOffice headless.)
LibreOffice encrypts each part's content and records the cipher in
META-INF/manifest.xml as <manifest:encryption-data>, as it does for
File > Save with password.
"""

import os
import subprocess
import sys
import time

import uno
from com.sun.star.beans import PropertyValue


def prop(name, value):
    p = PropertyValue()
    p.Name = name
    p.Value = value
    return p


def main():
    profile, password, src, dst = sys.argv[1:5]
    pipe = "ragd_fixtures_%d" % os.getpid()
    office = subprocess.Popen(
        [
            "soffice",
            "-env:UserInstallation=file://" + os.path.abspath(profile),
            "--headless",
            "--invisible",
            "--norestore",
            "--accept=pipe,name=%s;urp;" % pipe,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext(
            "com.sun.star.bridge.UnoUrlResolver", local
        )
        for _ in range(120):
            try:
                ctx = resolver.resolve(
                    "uno:pipe,name=%s;urp;StarOffice.ComponentContext" % pipe
                )
                break
            except Exception:
                time.sleep(0.5)
        else:
            sys.exit("LibreOffice did not start")
        desktop = ctx.ServiceManager.createInstanceWithContext(
            "com.sun.star.frame.Desktop", ctx
        )
        doc = desktop.loadComponentFromURL(
            uno.systemPathToFileUrl(os.path.abspath(src)),
            "_blank",
            0,
            (prop("Hidden", True),),
        )
        filters = {".odt": "writer8", ".ods": "calc8", ".odp": "impress8"}
        doc.storeToURL(
            uno.systemPathToFileUrl(os.path.abspath(dst)),
            (
                prop("FilterName", filters[os.path.splitext(dst)[1]]),
                prop("Password", password),
            ),
        )
        doc.close(True)
        try:
            desktop.terminate()
        except Exception:
            pass  # the bridge goes down with the office
    finally:
        try:
            office.wait(timeout=30)
        except subprocess.TimeoutExpired:
            office.kill()


main()
