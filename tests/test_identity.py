"""Identity files: self-signed with a context string, strictly parsed, role-checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay import crypto
from relay.canonical import canonical_json
from relay.errors import UsageError
from relay.identity import identity_of, parse_identity_document


def _document(role: str = "gateway", name: str = "hq") -> tuple[bytes, crypto.KeyPair]:
    keys = crypto.generate_keypair()
    return identity_of(role, name, keys).to_document(keys), keys


def test_round_trip_and_role_check() -> None:
    data, keys = _document()
    parsed = parse_identity_document(data, "gateway")
    assert parsed.sign_public == keys.sign_public
    with pytest.raises(UsageError) as err:
        parse_identity_document(data, "agent")
    assert err.value.code == "bad_identity"


def test_edited_name_is_refused() -> None:
    data, _ = _document()
    doc = json.loads(data)
    doc["name"] = "evil"
    with pytest.raises(UsageError):
        parse_identity_document(json.dumps(doc).encode(), "gateway")


def test_signature_without_the_context_string_is_refused() -> None:
    data, keys = _document()
    doc = json.loads(data)
    del doc["signature"]
    doc["signature"] = crypto.b64(crypto.sign(keys, canonical_json(doc)))
    with pytest.raises(UsageError):
        parse_identity_document(json.dumps(doc).encode(), "gateway")


@pytest.mark.parametrize("bad", [{"name": 7}, {"role": ["gateway"]}, {"extra": 1}])
def test_wrong_types_and_fields_are_refused(bad: dict[str, object]) -> None:
    data, _ = _document()
    doc = {**json.loads(data), **bad}
    with pytest.raises(UsageError):
        parse_identity_document(json.dumps(doc).encode(), "gateway")


def test_each_key_pair_signs_with_its_own_derived_key() -> None:
    """The Ed25519 secret key derived from a seed is kept on its KeyPair object (an export pass
    signs thousands of bundles): another key pair, as a rotation makes, never signs with it."""
    from relay.frozen import replace

    old, new = crypto.generate_keypair(), crypto.generate_keypair()
    message = b"header bytes"
    first = crypto.sign(old, message)  # derives and keeps old's key
    crypto.verify(old.sign_public, message, crypto.sign(old, message))
    signed = crypto.sign(new, message)
    crypto.verify(new.sign_public, message, signed)
    with pytest.raises(crypto.CryptoFailure):
        crypto.verify(old.sign_public, message, signed)
    rotated = replace(old, sign_seed=new.sign_seed)  # a copy with another seed derives anew
    assert crypto.sign(rotated, message) == signed
    assert crypto.sign(old, message) == first  # Ed25519 is deterministic: same key, same bytes
    # kept out of sight: equality, hash and repr are the fields' as before
    assert old == crypto.KeyPair(old.sign_seed, old.box_secret)
    assert hash(old) == hash(crypto.KeyPair(old.sign_seed, old.box_secret))
    assert repr(old) == "KeyPair(<private>)"
    assert old.sign_public == crypto.KeyPair(old.sign_seed, old.box_secret).sign_public


def test_keys_that_do_not_match_the_identity_are_refused_at_every_access(tmp_path: Path) -> None:
    """A key file whose keys are not the identity's is ``bad_key_file`` each time it is read,
    not only the first (the refused keys are never kept)."""
    from relay.codes import BAD_KEY_FILE
    from relay.home import Home

    Home.create(tmp_path / "a", "agent", "a")
    other = Home.create(tmp_path / "b", "agent", "b")
    home = Home.open(tmp_path / "a", "agent")
    home.identity = Home.open(other.path, "agent").identity  # keys of "a", identity of "b"
    for _ in range(2):
        with pytest.raises(UsageError) as refused:
            _ = home.secrets
        assert refused.value.code == BAD_KEY_FILE
