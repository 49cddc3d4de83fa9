"""The kit's signature check, on small kits built here: a modified wheel, an added wheel, a
modified or foreign signature and a damaged archive are refused by ``relay kit verify`` and by
``install.sh``, before anything is installed. (The real kit: tests_dist/, ``make test-dist``.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from relay import kit
from tests.conftest import run_relay

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each

SCRIPTS = Path(__file__).parent.parent / "scripts" / "kit"
NAME = "relay-9.9.9-offline-cp311-linux_x86_64"


def make_kit(root: Path, seed: bytes, alter: str = "", python: str = "cp311") -> tuple[Path, Path]:
    """A kit folder and archive with one fake wheel; ``alter`` spoils it after signing."""
    folder = root / alter / NAME if alter else root / NAME
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "relay-9.9.9-py3-none-any.whl").write_bytes(b"wheel bytes")
    shutil.copy(SCRIPTS / "install.sh", folder / "install.sh")
    (folder / "PYTHON").write_text(python + "\n")
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    sums = kit.sums_for(files)
    (folder / kit.SUMS).write_bytes(sums)
    (folder / kit.SIGNATURE).write_bytes(kit.sign_sums(sums, seed))
    if alter == "wheel":
        (folder / "wheels" / "relay-9.9.9-py3-none-any.whl").write_bytes(b"wheel bytes!")
    elif alter == "added":
        (folder / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"evil")
    elif alter == "signature":
        sig = bytearray((folder / kit.SIGNATURE).read_bytes())
        sig[0] ^= 1
        (folder / kit.SIGNATURE).write_bytes(bytes(sig))
    elif alter == "sums":
        (folder / kit.SUMS).write_bytes(sums.replace(b"wheel", b"wheeL", 1) + b"")
    archive = folder.parent / f"{NAME}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=NAME)
    return folder, archive


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, Path]:
    seed = os.urandom(32)
    import nacl.signing

    pub = tmp_path / "release.pub.pem"
    pub.write_text(kit.public_key_pem(bytes(nacl.signing.SigningKey(seed).verify_key)))
    return seed, pub


def test_an_intact_kit_verifies_with_relay_and_openssl(
    tmp_path: Path, keys: tuple[bytes, Path]
) -> None:
    seed, pub = keys
    folder, archive = make_kit(tmp_path, seed)
    done = run_relay("kit", "verify", str(archive), "--key", str(pub))
    assert done.status == 0, done.err
    assert "signature good, 3 files verified" in done.out
    openssl = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(pub),
            "-rawin",
            "-in",
            str(folder / kit.SUMS),
            "-sigfile",
            str(folder / kit.SIGNATURE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Signature Verified Successfully" in openssl.stdout, openssl.stderr
    # install.sh accepts it too: it gets past every check to the Python version (cp311 here)
    (folder / "PYTHON").write_text("cp00\n")  # (a listed file: now the hash check fails)
    installed = subprocess.run(
        [str(folder / "install.sh"), str(tmp_path / "prefix")],
        env={**os.environ, "RELAY_RELEASE_PUBKEY": str(pub)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "does not match SHA256SUMS" in installed.stderr
    folder2, _ = make_kit(tmp_path / "second", seed, python="cp00")
    installed = subprocess.run(
        [str(folder2 / "install.sh"), str(tmp_path / "prefix")],
        env={**os.environ, "RELAY_RELEASE_PUBKEY": str(pub)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "this kit is for cp00" in installed.stderr, installed.stderr
    assert not (tmp_path / "prefix").exists()


@pytest.mark.parametrize(
    ("alter", "code"),
    [
        ("wheel", "kit_modified"),
        ("added", "kit_modified"),
        ("signature", "kit_bad_signature"),
        ("sums", "kit_bad_signature"),
    ],
)
def test_a_tampered_kit_is_refused_before_anything_is_installed(
    tmp_path: Path, keys: tuple[bytes, Path], alter: str, code: str
) -> None:
    seed, pub = keys
    folder, archive = make_kit(tmp_path, seed, alter)
    refused = run_relay("kit", "verify", str(archive), "--key", str(pub))
    assert refused.status == 2
    assert refused.err.startswith(f"relay: error: {code}: ")
    prefix = tmp_path / "prefix"
    installed = subprocess.run(
        [str(folder / "install.sh"), str(prefix)],
        env={**os.environ, "RELAY_RELEASE_PUBKEY": str(pub)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 1
    assert "not installing" in installed.stderr
    assert not prefix.exists()


def test_another_key_and_a_damaged_archive_are_refused(
    tmp_path: Path, keys: tuple[bytes, Path]
) -> None:
    seed, _ = keys
    _, archive = make_kit(tmp_path, seed)
    import nacl.signing

    other = tmp_path / "other.pub.pem"
    other.write_text(kit.public_key_pem(bytes(nacl.signing.SigningKey(os.urandom(32)).verify_key)))
    assert "kit_bad_signature" in run_relay("kit", "verify", str(archive), "--key", str(other)).err
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:200])
    assert "kit_malformed" in run_relay("kit", "verify", str(truncated), "--key", str(other)).err
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("hello")
    assert "bad_key" in run_relay("kit", "verify", str(archive), "--key", str(not_a_key)).err
