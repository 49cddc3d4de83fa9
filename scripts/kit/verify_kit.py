"""Verify an unpacked relay kit with only Python and PyNaCl (no relay installed yet).

python3 verify_kit.py KIT_FOLDER relay-release.pub.pem
"""

import base64
import hashlib
import sys
from pathlib import Path

import nacl.signing

folder, pem = Path(sys.argv[1]), Path(sys.argv[2]).read_text().strip().splitlines()
public = base64.b64decode("".join(pem[1:-1]))[-32:]  # SubjectPublicKeyInfo: the last 32 bytes
sums = (folder / "SHA256SUMS").read_bytes()
nacl.signing.VerifyKey(public).verify(sums, (folder / "SHA256SUMS.sig").read_bytes())
listed = dict(reversed(line.split("  ", 1)) for line in sums.decode().splitlines())
present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
if present - {"SHA256SUMS", "SHA256SUMS.sig"} != set(listed):
    sys.exit("unlisted or missing files: do not install")
for name, digest in listed.items():
    if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
        sys.exit(f"{name} was modified: do not install")
print(f"signature good, {len(listed)} files verified")
