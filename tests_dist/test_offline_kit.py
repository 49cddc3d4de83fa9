"""The real offline kit (``make test-dist``, run by ``.ci/run``; slow: it builds every wheel).

``make dist`` builds it; it verifies with ``relay kit verify``, ``openssl`` and the standalone
``verify_kit.py``; ``install.sh`` installs it into a fresh venv with no index reachable (pip's
config ignored, ``--no-index``, and an index URL that refuses connections); ``relay demo`` runs
from the installed copy."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_kit_installs_offline_and_runs_the_demo(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_dist

    archive = make_dist.build()
    pub = make_dist.DIST / "relay-release.pub.pem"
    relay = Path(sys.executable).parent / "relay"
    verified = subprocess.run(
        [str(relay), "kit", "verify", str(archive), "--key", str(pub)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    (folder,) = tmp_path.glob("relay-*-offline-*")
    standalone = subprocess.run(
        [sys.executable, str(folder / "verify_kit.py"), str(folder), str(pub)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "signature good" in standalone.stdout, standalone.stderr
    sbom = (folder / "sbom.cdx.json").read_text()
    assert '"bomFormat": "CycloneDX"' in sbom and "pkg:pypi/sqlcipher3@" in sbom

    offline = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    offline.update(
        {
            "RELAY_RELEASE_PUBKEY": str(pub),
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # refuses: nothing may come from an index
            "PIP_RETRIES": "0",
        }
    )
    prefix = tmp_path / "opt-relay"
    installed = subprocess.run(
        [str(folder / "install.sh"), str(prefix)],
        env=offline,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    demo = subprocess.run(
        [str(prefix / "bin" / "relay"), "demo"],
        env=offline,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr
