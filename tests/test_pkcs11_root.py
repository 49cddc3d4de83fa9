"""A gateway root key inside a PKCS#11 token (SoftHSM2 from Debian's ``softhsm2`` package, which
``.ci/run`` installs): Ed25519 via CKM_EDDSA, generated sensitive and not extractable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Result, run_relay

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "relay-test"
PIN = "token-pin-for-tests-4821"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SoftHSM2 token for the module (the library is initialised once per process)."""
    assert Path(MODULE).exists(), "SoftHSM2 is missing: install the Debian package softhsm2"
    assert shutil.which("softhsm2-util"), "softhsm2-util is missing (Debian package softhsm2)"
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            "so-pin-for-tests",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pin_file = base / "pin"
    pin_file.write_text(PIN)
    yield pin_file
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


def _relay(pin_file: Path, *args: str) -> Result:
    return run_relay(
        *args,
        env={
            "RELAY_ROOT_PASSPHRASE_FILE": str(pin_file),
            "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
        },
    )


def test_root_in_a_token_certifies_rotates_and_agents_follow(token: Path, tmp_path: Path) -> None:
    gw, ag, out = tmp_path / "gw", tmp_path / "ag", tmp_path / "out"
    root1, root2 = tmp_path / "root1.ref", tmp_path / "root2.ref"
    assert _relay(token, "gateway", "init", "--home", str(gw), "--name", "hqa").status == 0
    made = _relay(
        token,
        "gateway",
        "root",
        "init",
        "--home",
        str(gw),
        "--root-key",
        str(root1),
        "--pkcs11-module",
        MODULE,
        "--pkcs11-token",
        TOKEN,
    )
    assert made.status == 0, made.err
    ref = json.loads(root1.read_text())
    assert ref["pkcs11"] == {"module": MODULE, "token": TOKEN, "label": "relay-root-hqa-1"}
    assert "private" not in ref and PIN not in root1.read_text()
    run_relay(
        "agent", "init", "--home", str(ag), "--name", "p1", "--request-out", str(tmp_path / "r")
    )
    run_relay("gateway", "enroll", "--home", str(gw), str(tmp_path / "r"))
    run_relay("gateway", "identity", "--home", str(gw), "--out", str(tmp_path / "id"))
    assert run_relay("agent", "trust", "--home", str(ag), str(tmp_path / "id")).status == 0
    run_relay("gateway", "secret", "put", "--home", str(gw), "a/b", "-", stdin=b"v1")
    run_relay("gateway", "grant", "--home", str(gw), "p1", "a/*")
    rotated = _relay(token, "gateway", "key", "rotate", "--home", str(gw), "--root-key", str(root1))
    assert rotated.status == 0, rotated.err
    moved = _relay(
        token,
        "gateway",
        "root",
        "rotate",
        "--home",
        str(gw),
        "--root-key",
        str(root1),
        "--new-root-key",
        str(root2),
        "--pkcs11-module",
        MODULE,
        "--pkcs11-token",
        TOKEN,
    )
    assert moved.status == 0, moved.err
    assert run_relay("gateway", "export", "--home", str(gw), "--to", str(out)).status == 0
    imported = run_relay("agent", "import", "--home", str(ag), "--json", str(out))
    assert [o["status"] for o in json.loads(imported.out)] == ["applied"], imported.out
    assert run_relay("agent", "get", "--home", str(ag), "a/b").stdout == b"v1\n"


def test_the_root_private_key_never_leaves_the_token(token: Path, tmp_path: Path) -> None:
    import pkcs11

    gw = tmp_path / "gw"
    run_relay("gateway", "init", "--home", str(gw), "--name", "hqb")
    made = _relay(
        token,
        "gateway",
        "root",
        "init",
        "--home",
        str(gw),
        "--root-key",
        str(tmp_path / "root.ref"),
        "--pkcs11-module",
        MODULE,
        "--pkcs11-token",
        TOKEN,
    )
    assert made.status == 0, made.err
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label=TOKEN).open(user_pin=PIN) as session:
        key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label="relay-root-hqb-1")
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False


def test_a_wrong_pin_changes_nothing(token: Path, tmp_path: Path) -> None:
    gw = tmp_path / "gw"
    run_relay("gateway", "init", "--home", str(gw), "--name", "hqc")
    root = tmp_path / "root.ref"
    assert (
        _relay(
            token,
            "gateway",
            "root",
            "init",
            "--home",
            str(gw),
            "--root-key",
            str(root),
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            TOKEN,
        ).status
        == 0
    )
    before = (gw / "trust.json").read_bytes()
    bad = tmp_path / "bad-pin"
    bad.write_text("not-the-token-pin")
    result = _relay(bad, "gateway", "key", "rotate", "--home", str(gw), "--root-key", str(root))
    assert result.status != 0 and "bad_passphrase" in result.err
    assert (gw / "trust.json").read_bytes() == before


# -- the online key pair in the token (relay/trust/pkcs11_online.py, outer_gateway/online_key.py) --


def test_hsalsa20_gives_the_nacl_box_key() -> None:
    import nacl.bindings

    from relay import crypto

    for _ in range(20):
        secret = crypto.random_bytes(32)
        peer = nacl.bindings.crypto_scalarmult_base(crypto.random_bytes(32))
        shared = nacl.bindings.crypto_scalarmult(secret, peer)
        assert crypto.box_key_from_shared(shared) == nacl.bindings.crypto_box_beforenm(peer, secret)


def test_an_online_key_in_the_token_signs_seals_and_opens_as_a_file_key(token: Path) -> None:
    import pkcs11

    from relay import crypto
    from relay.trust.pkcs11_online import generate_online
    from relay.trust.pkcs11_root import TokenKey

    online = generate_online(TokenKey(MODULE, TOKEN, "online-1"), token.read_text())
    peer = crypto.generate_keypair()  # an agent's key pair, in software
    message = b"a signed bundle header"
    crypto.verify(online.sign_public, message, crypto.sign(online, message))
    # the agent seals to the token's key; the token side opens it, and the other way round
    to_token = crypto.seal(peer, online.box_public, b"audit records")
    assert crypto.unseal(online, peer.box_public, to_token) == b"audit records"
    from_token = crypto.seal(online, peer.box_public, b"secrets payload")
    assert crypto.unseal(peer, online.box_public, from_token) == b"secrets payload"
    with pytest.raises(crypto.CryptoFailure):
        crypto.unseal(online, peer.box_public, to_token[:-1] + bytes([to_token[-1] ^ 1]))
    # neither private key can be read out of the token
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label=TOKEN).open(user_pin=token.read_text()) as session:
        for label in ("online-1.sign", "online-1.box"):
            private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
            assert private[pkcs11.Attribute.SENSITIVE] and not private[pkcs11.Attribute.EXTRACTABLE]
            with pytest.raises(pkcs11.AttributeSensitive):
                private[pkcs11.Attribute.VALUE]


def test_the_online_key_in_a_token_serves_a_site_and_moves_back_to_a_file(
    token: Path, tmp_path: Path
) -> None:
    gw, ag = tmp_path / "gw", tmp_path / "ag"
    secret_file = tmp_path / "root.pass"
    secret_file.write_text("root passphrase of the online-token test\n")
    env = {
        "RELAY_ROOT_PASSPHRASE_FILE": str(secret_file),
        "RELAY_PKCS11_PIN_FILE": str(token),
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
    }

    def ok(*args: str, stdin: bytes | None = None, with_env: bool = True) -> Result:
        result = run_relay(*args, stdin=stdin, env=env if with_env else {})
        assert result.status == 0, result.err
        return result

    def deliver(value: bytes) -> None:
        ok("gateway", "secret", "put", "--home", str(gw), "a/b", "-", stdin=value)
        out = tmp_path / f"out-{value.decode()}"
        ok("gateway", "export", "--home", str(gw), "--to", str(out))
        imported = json.loads(ok("agent", "import", "--home", str(ag), "--json", str(out)).out)
        assert [o["status"] for o in imported] == ["applied"], imported
        assert ok("agent", "get", "--home", str(ag), "a/b").stdout == value + b"\n"

    ok("gateway", "init", "--home", str(gw), "--name", "hqo")
    ok("gateway", "root", "init", "--home", str(gw), "--root-key", str(tmp_path / "root.key"))
    ok("agent", "init", "--home", str(ag), "--name", "p9", "--request-out", str(tmp_path / "r"))
    ok("gateway", "enroll", "--home", str(gw), str(tmp_path / "r"))
    ok("gateway", "grant", "--home", str(gw), "p9", "a/*")
    ok("gateway", "identity", "--home", str(gw), "--out", str(tmp_path / "id"))
    ok("agent", "trust", "--home", str(ag), str(tmp_path / "id"))
    deliver(b"file1")
    root = ("--root-key", str(tmp_path / "root.key"))
    ok("gateway", "key", "rotate", "--home", str(gw), *root, "--pkcs11-token", TOKEN)
    from outer_gateway.online_key import online_identity
    from relay.home import Home

    assert (
        online_identity(Home.open(gw, "gateway")).key_id != Home.open(gw, "gateway").identity.key_id
    )
    ref = json.loads((gw / "online.pkcs11.json").read_text())
    assert ref["token"] == TOKEN and PIN not in (gw / "online.pkcs11.json").read_text()
    deliver(b"token1")  # signed and sealed by the token
    status = json.loads(ok("agent", "status", "--home", str(ag), "--json").out)
    keys = json.loads(ok("gateway", "key", "list", "--home", str(gw), "--json").out)
    active = next(k["key_id"] for k in keys if (k["role"], k["state"]) == ("signing", "active"))
    assert status["gateway_key_id"] == active
    # the return stream, sealed by the agent to the token's key, is opened through the token
    ok("agent", "audit", "export", "--home", str(ag), "--to", str(tmp_path / "back"))
    back = json.loads(
        ok("gateway", "import", "--home", str(gw), "--json", str(tmp_path / "back")).out
    )
    assert [o["status"] for o in back] == ["imported"], back
    # without the PIN the gateway cannot sign: refused, with its code, nothing exported
    refused = run_relay("gateway", "export", "--home", str(gw), "--to", str(tmp_path / "x"))
    assert refused.status != 0 and "passphrase_required" in refused.err
    ok("gateway", "key", "rotate", "--home", str(gw), *root)  # back to a key in a file
    assert not (gw / "online.pkcs11.json").exists()
    deliver(b"file2")
