"""``make dist``: the offline install kit, ``dist/relay-VERSION-offline-PYVER-PLATFORM.tar.gz``.

Wheels of relay and of every runtime dependency (``pip wheel``, from PyPI at build time), a
CycloneDX 1.5 JSON SBOM generated from the wheels' metadata, ``install.sh``, ``verify_kit.py``,
``SHA256SUMS`` and its Ed25519 signature ``SHA256SUMS.sig``.

The release key is the PKCS#8 PEM file named by ``RELAY_RELEASE_KEY``; without it a development
key is made once in ``dist/release-dev-key.pem`` (say so loudly: never ship a kit signed with
it). The public key is written beside the kit as ``dist/relay-release.pub.pem``.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay import kit  # noqa: E402 - after the path is set

DIST = ROOT / "dist"


def _names() -> tuple[str, str, str]:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    pyver = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return version, pyver, platform


def _release_seed() -> bytes:
    named = os.environ.get("RELAY_RELEASE_KEY")
    if named:
        return kit.read_pem(Path(named).read_text(), private=True)
    dev = DIST / "release-dev-key.pem"
    if not dev.exists():
        DIST.mkdir(exist_ok=True)
        fd = os.open(dev, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(kit.private_key_pem(os.urandom(32)))
    print(
        f"make dist: signing with the DEVELOPMENT key {dev} (set RELAY_RELEASE_KEY)",
        file=sys.stderr,
    )
    return kit.read_pem(dev.read_text(), private=True)


def _wheels(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(target), str(ROOT)],
        check=True,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sbom(wheels: Path, version: str) -> bytes:
    components = []
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            meta = email.parser.BytesParser().parsebytes(archive.read(meta_name), headersonly=True)
        name, ver = meta["Name"], meta["Version"]
        component = {
            "type": "library" if name != "relay" else "application",
            "bom-ref": f"pkg:pypi/{name.lower()}@{ver}",
            "name": name,
            "version": ver,
            "purl": f"pkg:pypi/{name.lower()}@{ver}",
            "hashes": [{"alg": "SHA-256", "content": _sha256(wheel)}],
        }
        if meta["License"] and len(meta["License"]) < 100:
            component["licenses"] = [{"license": {"name": meta["License"]}}]
        components.append(component)
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "component": {
                "type": "application",
                "name": "relay",
                "version": version,
                "bom-ref": f"pkg:pypi/relay@{version}",
            },
            "tools": {"components": [{"type": "application", "name": "relay make_dist"}]},
        },
        "components": components,
    }
    return json.dumps(bom, indent=2, sort_keys=True).encode() + b"\n"


def build() -> Path:
    """Build the kit; returns the archive's path."""
    version, pyver, platform = _names()
    name = f"relay-{version}-offline-{pyver}-{platform}"
    stage = DIST / "build" / name
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "wheels").mkdir(parents=True)
    _wheels(stage / "wheels")
    (stage / "sbom.cdx.json").write_bytes(_sbom(stage / "wheels", version))
    shutil.copy(ROOT / "scripts" / "kit" / "install.sh", stage / "install.sh")
    shutil.copy(ROOT / "scripts" / "kit" / "verify_kit.py", stage / "verify_kit.py")
    (stage / "install.sh").chmod(0o755)
    (stage / "PYTHON").write_text(pyver + "\n")
    files = {
        str(p.relative_to(stage)): p.read_bytes() for p in sorted(stage.rglob("*")) if p.is_file()
    }
    sums = kit.sums_for(files)
    seed = _release_seed()
    (stage / kit.SUMS).write_bytes(sums)
    (stage / kit.SIGNATURE).write_bytes(kit.sign_sums(sums, seed))
    import nacl.signing

    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    (DIST / "relay-release.pub.pem").write_text(kit.public_key_pem(public))
    archive = DIST / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(stage, arcname=name)
    shutil.rmtree(DIST / "build")
    return archive


if __name__ == "__main__":
    print(build())
