"""The service applies each received bundle in a short-lived child process (ADR 0022).

Decoding and applying a bundle of 10,000 secrets leaves the long-running service ~9 MB more
resident for good: freed pools inside pymalloc arenas that a few surviving objects keep, and a
thread's glibc arena. A child process that verifies, opens and applies the bundle and then exits
gives all of it back. The child runs exactly what ``relay agent import`` runs per file
(:meth:`AgentImporter.import_bytes`: one write transaction with its ``bundle.applied`` record,
the rotation follow-ups, the switch to the next agent key) and writes the :class:`Outcome` as
one JSON line on its stdout; the service reports it as before (events, audit, metrics, hooks).

Only a bundle that will be decrypted goes to a child: the service first runs the checks the
pipeline makes before decrypting (:meth:`AgentImporter.prejudge`: authenticity, expiry, sequence,
a delta's base), so an old file met again at every start, a duplicate or a refused bundle is
answered in-process with the outcome the import would give, as cheaply as before.

The child is a new interpreter (``subprocess``: fork and exec at once, never a fork that keeps
running the threaded service). Its stdin carries one JSON line (the home, the file's name, the
parent's pid and the home's unlocked keys, so a passphrase-protected home is not unwrapped again)
then the bundle's bytes: nothing secret is on its command line or in a file. It hardens itself
like the service, ignores SIGTERM and SIGINT (a stopping service lets the import in progress
finish; if the service exits first, the child is killed with it and the transaction rolls back)
and logs to the service's stderr.

A child that exits without an outcome: if it was killed at a crash stage of the harness
(``RELAY_CRASH_AT``), the service is killed too, as it was when the import ran in-process;
otherwise the bundle counts as applied if the store says so (the child died after its commit),
and as a ``malformed`` rejection if not, the same verdict as an unexpected error in the import.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from inner_agent.importer import AgentImporter, Outcome, _bundle_id
from inner_agent.store import AgentStore, ApplyResult
from inner_agent.versions import Activation
from relay import crashpoint, crypto
from relay.errors import MALFORMED, BundleRejected
from relay.home import Home, Secrets

PR_SET_PDEATHSIG = 1
_CHILD = ("-I", "-c", "from inner_agent.apply_child import main; raise SystemExit(main())")

_log = logging.getLogger("relay.import")


class ChildImporter:
    """The service's importer: each bundle is applied by :func:`main` in a child process."""

    def __init__(self, importer: AgentImporter) -> None:
        self.importer = importer  # the service's own: its home, store, limits and quarantine

    def __call__(self, name: str, data: bytes) -> Outcome:
        judged = self.importer.prejudge(name, data, listed=True)
        if judged is not None:  # a duplicate or a refusal: no child (no decryption) needed
            return judged
        home = self.importer.home
        secrets = home.secrets
        header = {
            "home": str(home.path),
            "name": name,
            "parent": os.getpid(),
            "sign_seed": crypto.b64(secrets.keys.sign_seed),
            "box_secret": crypto.b64(secrets.keys.box_secret),
            "store_key": crypto.b64(secrets.store_key),
        }
        proc = subprocess.Popen(  # our own interpreter and module, no shell
            [sys.executable, *_CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        out, _ = proc.communicate(json.dumps(header).encode() + b"\n" + data)
        if proc.returncode == 0:
            try:
                outcome, switched = decode(out.strip().rsplit(b"\n", 1)[-1])
            except (ValueError, KeyError, TypeError):
                _log.error("the apply process for %s gave no outcome", name)
            else:
                if switched:
                    home.reload_keys()  # the child made the next agent key current
                return outcome
        return self._lost(name, data, proc.returncode)

    def _lost(self, name: str, data: bytes, returncode: int) -> Outcome:
        """The child exited without an outcome."""
        if returncode == -signal.SIGKILL and os.environ.get(crashpoint.ENV, "").startswith(
            "apply."
        ):
            os.kill(os.getpid(), signal.SIGKILL)  # the harness's stage: as if reached here
        _log.error("the apply process for %s exited with %s", name, returncode)
        bundle_id = _bundle_id(data)
        if bundle_id is not None and self.importer.store.was_applied(bundle_id):
            return Outcome(name, "applied", None, "", bundle_id=bundle_id, recorded=True)
        exc = BundleRejected(f"unreadable (apply process exited {returncode})", code=MALFORMED)
        return self.importer._rejected(name, data, exc)


def encode(outcome: Outcome, switched: bool) -> bytes:
    """One JSON line: the outcome (never a value) and whether the agent key switched."""
    doc: dict[str, Any] = {
        "name": outcome.name,
        "status": outcome.status,
        "code": outcome.code,
        "message": outcome.message,
        "seq": outcome.seq,
        "quarantined": outcome.quarantined,
        "bundle_id": outcome.bundle_id,
        "recorded": outcome.recorded,
        "switched": switched,
        "result": None,
    }
    result = outcome.result
    if result is not None:
        doc["result"] = {
            "seq": result.seq,
            "written": result.written,
            "removed": result.removed,
            "unchanged": result.unchanged,
            "audit_ack": result.audit_ack,
            "activated": [
                [a.path, a.version, a.replaced, a.activates_at] for a in result.activated
            ],
        }
    return json.dumps(doc).encode() + b"\n"


def decode(line: bytes) -> tuple[Outcome, bool]:
    """The inverse of :func:`encode`."""
    doc = json.loads(line)
    result = None
    if doc["result"] is not None:
        r = doc["result"]
        result = ApplyResult(
            r["seq"],
            r["written"],
            r["removed"],
            r["unchanged"],
            r["audit_ack"],
            tuple(Activation(p, v, rep, at) for p, v, rep, at in r["activated"]),
        )
    outcome = Outcome(
        doc["name"],
        doc["status"],
        doc["code"],
        doc["message"],
        doc["seq"],
        result,
        doc["quarantined"],
        doc["bundle_id"],
        doc["recorded"],
    )
    return outcome, bool(doc["switched"])


def main() -> int:
    """The child: read the header and the bundle on stdin, apply, write the outcome."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    _die_with(int(header["parent"]))
    from inner_agent.hardening import mark_undumpable

    mark_undumpable()  # the core limit is the service's, inherited
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    data = stdin.read()
    home = Home.open(Path(header["home"]), "agent")
    keys = crypto.KeyPair(crypto.unb64(header["sign_seed"]), crypto.unb64(header["box_secret"]))
    home.use_secrets(Secrets(keys, crypto.unb64(header["store_key"])))
    identity = home.identity
    store = AgentStore.open(home)
    try:
        importer = AgentImporter(home, store, lambda: int(time.time()))
        outcome = importer.import_bytes(str(header["name"]), data, listed=True)
    finally:
        store.close()
    sys.stdout.buffer.write(encode(outcome, home.identity != identity))
    sys.stdout.buffer.flush()
    return 0


def _die_with(parent: int) -> None:
    """SIGKILL this process when the service exits (its transaction then rolls back)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the service was gone before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
