"""Loss made by the kernel, not by our own relay: a network namespace whose loopback drops 5%
of UDP datagrams at random (an nftables ``numgen random`` rule).

``tc netem`` would be the classic tool, but this host's kernel has no ``sch_netem``; nftables
works wherever namespaces do. Needs root, ``ip`` and ``nft`` (``.ci/run`` installs nftables);
without them the test fails loudly rather than skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.diode.harness import WAIT, Receiver, make_file, visible_files


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.fixture
def lossy_namespace() -> Iterator[str]:
    assert os.geteuid() == 0, "this test needs root to create a network namespace"
    assert shutil.which("ip") and shutil.which("nft"), "install iproute2 and nftables"
    name = f"relaydiode{os.getpid()}"
    _run("ip", "netns", "add", name)
    try:
        ns = ("ip", "netns", "exec", name)
        _run(*ns, "ip", "link", "set", "lo", "up")
        _run(*ns, "nft", "add", "table", "inet", "loss")
        _run(
            *ns,
            "nft",
            "add",
            "chain",
            "inet",
            "loss",
            "input",
            "{ type filter hook input priority 0; }",
        )
        _run(
            *ns,
            "nft",
            "add",
            "rule",
            "inet",
            "loss",
            "input",
            "meta",
            "l4proto",
            "udp",
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            "5",
            "counter",
            "drop",
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def test_file_crosses_kernel_loss_in_a_namespace(tmp_path: Path, lossy_namespace: str) -> None:
    ns = ("ip", "netns", "exec", lossy_namespace)
    data = make_file(tmp_path / "x.bundle", 1_500_000, seed=30)
    receiver = Receiver(tmp_path / "inbox", "--expire", "2s", prefix=ns)
    try:
        sent = subprocess.run(
            [
                *ns,
                sys.executable,
                "-m",
                "relay",
                "diode",
                "send",
                str(tmp_path / "x.bundle"),
                "--to",
                f"udp://127.0.0.1:{receiver.port}",
                "--rate",
                "8000000",
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        receiver.wait_for(r"received x\.bundle")
    finally:
        assert receiver.stop() == 0
    assert visible_files(receiver.out_dir) == ["x.bundle"]
    assert (receiver.out_dir / "x.bundle").read_bytes() == data
    rules = _run(*ns, "nft", "list", "chain", "inet", "loss", "input")
    dropped = int(re.search(r"counter packets (\d+)", rules).group(1))  # type: ignore[union-attr]
    assert dropped > 20  # the kernel really dropped datagrams (about 5% of ~1300)
