#!/usr/bin/env python3
"""Fetch the dashboard's chart library (uPlot) from the npm registry into leader/web/static/vendor/.

Nothing large is committed to the repository and the Pi needs no JavaScript toolchain: the setup step
(scripts/bootstrap.sh) runs this once. The tarball is checked against the integrity hash npm publishes
for it before anything is extracted. Idempotent: files already in place and matching are left alone.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.error
import urllib.request

PACKAGE_URL = "https://registry.npmjs.org/uplot/-/uplot-1.6.32.tgz"
INTEGRITY = "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
FILES = {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js", "package/dist/uPlot.min.css": "uPlot.min.css",
         "package/LICENSE": "uPlot.LICENSE"}
VENDOR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "leader", "web", "static", "vendor")
STAMP = ".uplot-1.6.32"


def check_integrity(data: bytes, integrity: str = INTEGRITY) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise SystemExit(f"fetch_vendor: {PACKAGE_URL} does not match its published integrity {integrity} "
                         f"(got {algorithm}-{digest}); not installing it")


def main() -> int:
    vendor = os.path.normpath(VENDOR_DIR)
    if os.path.exists(os.path.join(vendor, STAMP)) and all(os.path.exists(os.path.join(vendor, f)) for f in FILES.values()):
        print(f"fetch_vendor: uPlot 1.6.32 already in {vendor}", file=sys.stderr)
        return 0
    try:
        with urllib.request.urlopen(PACKAGE_URL, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as e:
        print(f"fetch_vendor: cannot download {PACKAGE_URL} ({e}); the dashboard needs it for its charts. "
              "Connect to the internet (or a network that reaches the npm registry) and run "
              "`python3 scripts/fetch_vendor.py` again.", file=sys.stderr)
        return 1
    check_integrity(data)
    os.makedirs(vendor, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in FILES.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                print(f"fetch_vendor: {member} missing from {PACKAGE_URL}", file=sys.stderr)
                return 1
            target = os.path.join(vendor, name)
            with open(target + ".tmp", "wb") as out:  # rename: a half-written file is never served
                out.write(extracted.read())
            os.replace(target + ".tmp", target)
    with open(os.path.join(vendor, STAMP), "w") as stamp:
        stamp.write(INTEGRITY + "\n")
    print(f"fetch_vendor: uPlot 1.6.32 installed in {vendor}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
