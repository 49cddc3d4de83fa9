"""``relay gateway root …`` and ``relay gateway key …``: the two-tier gateway keys (spec §15).

The root key lives in its own passphrase-wrapped file (``--root-key``), kept offline and brought
to the gateway only for these commands; the online key signs bundles under its certificate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from relay.cli.common import (
    duration,
    echo_json,
    echo_table,
    format_time,
    home_option,
    json_option,
    now,
)
from relay.cli.gateway import agents, gateway
from relay.codes import NO_ROOT
from relay.errors import UsageError
from relay.home import Home

if TYPE_CHECKING:
    from outer_gateway.keyring import Keyring
    from relay.trust.root_file import RootKey

NEW_PASSPHRASE_FILE_ENV = "RELAY_NEW_ROOT_PASSPHRASE_FILE"  # noqa: S105 - a variable name

_root_key_option = click.option(
    "--root-key",
    "root_key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The root key file (offline; passphrase from RELAY_ROOT_PASSPHRASE_FILE or a prompt).",
)
_pkcs11_module_option = click.option(
    "--pkcs11-module",
    envvar="RELAY_PKCS11_MODULE",
    default="/usr/lib/softhsm/libsofthsm2.so",
    show_default=True,
    help="The PKCS#11 module (with --pkcs11-token).",
)
_pkcs11_token_option = click.option(
    "--pkcs11-token",
    help="Make the new root key inside this PKCS#11 token (label); the passphrase is its PIN.",
)
_valid_for_option = click.option(
    "--valid-for", help="Validity of the signing key's certificate (default keys.cert_valid_for)."
)


@gateway.group()
def root() -> None:
    """The gateway's root key: certifies signing keys, signs its successor."""


@gateway.group()
def key() -> None:
    """The gateway's online signing keys: rotate, list, revoke."""


def _record(opened: Home, event: str, **fields: str | int | None) -> None:
    from outer_gateway.audit import GatewayAudit
    from outer_gateway.store import GatewayStore

    store = GatewayStore.open(opened)
    try:
        GatewayAudit(opened, store.engine).record(event, **fields)
    finally:
        store.close()


def _ring(opened: Home) -> Keyring:
    from outer_gateway.keyring import load

    ring = load(opened)
    if ring is None:
        raise UsageError(
            "this gateway has no root yet: run `relay gateway root init`", code=NO_ROOT
        )
    return ring


def _unlock(path: Path) -> RootKey:
    from relay.trust.root_file import load_root_file, root_passphrase

    return load_root_file(path, root_passphrase())


def _validity(opened: Home, valid_for: str | None) -> int:
    return duration(valid_for, str(opened.config.get("keys.cert_valid_for")))


def _new_root(
    path: Path, gateway: str, version: int, passphrase: str, module: str, token: str | None
) -> RootKey:
    from relay.trust.root_file import create_root_file, create_token_root_file

    if token is None:
        return create_root_file(path, gateway, version, passphrase)
    return create_token_root_file(path, gateway, version, module, token, passphrase)


@root.command("init")
@home_option
@_root_key_option
@_valid_for_option
@_pkcs11_module_option
@_pkcs11_token_option
def root_init(
    home: Path, root_key: Path, valid_for: str | None, pkcs11_module: str, pkcs11_token: str | None
) -> None:
    """Create the root key (a new file, or in a token) and certify the current signing key."""
    from outer_gateway.keyring import create
    from relay.trust.documents import root_fingerprint
    from relay.trust.root_file import root_passphrase

    opened = Home.open(home, "gateway")
    validity = _validity(opened, valid_for)
    passphrase = root_passphrase(confirm=True)
    key_root = _new_root(root_key, opened.identity.name, 1, passphrase, pkcs11_module, pkcs11_token)
    ring = create(opened, key_root, now(), validity)
    _record(opened, "root.created", key_id=ring.keys[0].key_id, version=1)
    click.echo(f"root key written to {root_key}: keep it offline")
    click.echo(f"root fingerprint: {root_fingerprint(ring.root.key)}")
    click.echo("agents pin it with `relay agent trust` on the file of `relay gateway identity`")


@root.command("rotate")
@home_option
@_root_key_option
@click.option(
    "--new-root-key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the new root key (passphrase from RELAY_NEW_ROOT_PASSPHRASE_FILE, "
    "else the current one's).",
)
@_pkcs11_module_option
@_pkcs11_token_option
def root_rotate(
    home: Path, root_key: Path, new_root_key: Path, pkcs11_module: str, pkcs11_token: str | None
) -> None:
    """A new root, signed by the current one; agents follow it with no visit."""
    from outer_gateway.keyring import check_root, rotate_root
    from relay.trust.documents import root_fingerprint, root_key_id
    from relay.trust.root_file import PASSPHRASE_FILE_ENV, root_passphrase

    opened = Home.open(home, "gateway")
    ring = _ring(opened)
    old = _unlock(root_key)
    check_root(ring, old)  # before the new root's file is written
    variable = NEW_PASSPHRASE_FILE_ENV if os.environ.get(NEW_PASSPHRASE_FILE_ENV) else None
    passphrase = root_passphrase(True, variable or PASSPHRASE_FILE_ENV)
    version = ring.root.version + 1
    new = _new_root(new_root_key, ring.gateway, version, passphrase, pkcs11_module, pkcs11_token)
    made = rotate_root(opened, ring, old, new, now())
    _record(opened, "root.rotated", key_id=root_key_id(made.key), version=made.version)
    click.echo(f"root version {made.version} written to {new_root_key}: keep it offline")
    click.echo(f"root fingerprint: {root_fingerprint(made.key)}")
    click.echo(f"destroy the old root key file {root_key} once bundles carry the new root")


@key.command("rotate")
@home_option
@_root_key_option
@_valid_for_option
@_pkcs11_module_option
@click.option(
    "--pkcs11-token",
    help="Make the new online key pair inside this PKCS#11 token (label); its PIN is read from "
    "the file named by RELAY_PKCS11_PIN_FILE, here and by every later export and import.",
)
@click.option("--pkcs11-label", help="Label of the new key in the token (default: relay-KEY).")
def key_rotate(
    home: Path,
    root_key: Path,
    valid_for: str | None,
    pkcs11_module: str,
    pkcs11_token: str | None,
    pkcs11_label: str | None,
) -> None:
    """A new signing key certified by the root; the next bundles are signed with it."""
    from outer_gateway.keyring import rotate_signing
    from outer_gateway.online_key import online_identity, token_pin

    opened = Home.open(home, "gateway")
    ring = _ring(opened)
    old_id = online_identity(opened).key_id
    token = None
    if pkcs11_token is not None:
        from relay.trust.pkcs11_root import TokenKey

        label = pkcs11_label or f"relay-{ring.gateway}-{ring.serial + 1}"
        token = (TokenKey(pkcs11_module, pkcs11_token, label), token_pin())
    root = _unlock(root_key)
    key_id = rotate_signing(opened, ring, root, now(), _validity(opened, valid_for), token)
    _record(opened, "key.rotated", key_id=key_id, previous=old_id)
    click.echo(f"signing key {key_id} is active (was {old_id})")


@key.command("list")
@home_option
@json_option
def key_list(home: Path, as_json: bool) -> None:
    """Every root and signing key this gateway has had: id, role, state, validity."""
    opened = Home.open(home, "gateway")
    ring = _ring(opened)
    if as_json:
        echo_json([k.to_json() for k in ring.keys])
        return
    echo_table(
        ("KEY ID", "ROLE", "STATE", "NOT BEFORE", "NOT AFTER"),
        [
            (
                k.key_id,
                k.role if k.version is None else f"root v{k.version}",
                k.state,
                format_time(k.not_before) if k.not_before is not None else "-",
                format_time(k.not_after) if k.not_after is not None else "-",
            )
            for k in ring.keys
        ],
    )


@key.command("revoke")
@home_option
@_root_key_option
@click.argument("key_id")
def key_revoke(home: Path, root_key: Path, key_id: str) -> None:
    """Revoke signing key KEY_ID: agents refuse it from their next bundle on."""
    from outer_gateway.keyring import revoke

    opened = Home.open(home, "gateway")
    ring = _ring(opened)
    rev = revoke(opened, ring, _unlock(root_key), key_id)
    _record(opened, "key.revoked", key_id=key_id, serial=rev.serial)
    click.echo(f"revoked signing key {key_id}: the next bundles carry the revocation")


@agents.command("revoke")
@home_option
@click.argument("name")
def agents_revoke(home: Path, name: str) -> None:
    """Revoke agent NAME: no more exports to it, and its return stream is refused for bundles
    made from now on. Re-enrollment is a new enrollment (docs/runbooks.md)."""
    from outer_gateway.agent_keys import revoke_agent
    from outer_gateway.store import GatewayStore

    opened = Home.open(home, "gateway")
    store = GatewayStore.open(opened)
    try:
        key_id = store.agent(name).identity.key_id
        at = now()
        new = revoke_agent(store, name, at, at)
    finally:
        store.close()
    if new:
        _record(opened, "agent.revoked", agent_name=name, key_id=key_id, cutoff=at)
    click.echo(f"{'revoked' if new else 'already revoked'}: agent {name}")
