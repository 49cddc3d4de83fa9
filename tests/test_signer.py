"""Signers of trust documents: a seed in memory, and the pure parts of a key in a PKCS#11 token
(the token itself is exercised with SoftHSM2 in tests/test_pkcs11_root.py)."""

from __future__ import annotations

import pkcs11
import pytest

from relay import crypto
from relay.errors import UsageError
from relay.trust.pkcs11_root import Pkcs11Signer, TokenKey, _point
from relay.trust.signer import SeedSigner, as_signer


def test_a_key_pair_signs_as_a_seed_signer() -> None:
    keys = crypto.generate_keypair()
    signer = as_signer(keys)
    assert isinstance(signer, SeedSigner)
    assert signer.sign_public == keys.sign_public
    crypto.verify(keys.sign_public, b"root document", signer.sign(b"root document"))
    with pytest.raises(crypto.CryptoFailure):
        crypto.verify(keys.sign_public, b"another document", signer.sign(b"root document"))


def test_a_signer_is_passed_through() -> None:
    signer = SeedSigner(crypto.generate_keypair())
    assert as_signer(signer) is signer


def test_a_token_key_names_its_place_and_its_signer_never_shows_the_pin() -> None:
    key = TokenKey("/usr/lib/softhsm/libsofthsm2.so", "relay-root", "root-1")
    assert key.to_json() == {
        "module": "/usr/lib/softhsm/libsofthsm2.so",
        "token": "relay-root",
        "label": "root-1",
    }
    signer = Pkcs11Signer(key, "pin-that-must-not-show-7731", b"\x01" * 32)
    assert signer.sign_public == b"\x01" * 32
    assert "7731" not in repr(signer)
    assert repr(signer) == "Pkcs11Signer(relay-root/root-1)"


def test_the_public_point_is_read_in_both_encodings_and_nothing_else() -> None:
    point = bytes(range(32))
    assert _point({pkcs11.Attribute.EC_POINT: b"\x04\x20" + point}) == point
    assert _point({pkcs11.Attribute.EC_POINT: point}) == point
    with pytest.raises(UsageError) as refused:
        _point({pkcs11.Attribute.EC_POINT: b"\x04\x41" + point + point + b"\x00"})
    assert refused.value.code == "bad_root_key"
