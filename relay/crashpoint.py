"""Named kill points for the crash harness (``tests/crash``): a real SIGKILL at a chosen stage.

``RELAY_CRASH_AT=STAGE`` makes the process SIGKILL itself when it reaches ``STAGE`` (nothing is
flushed, no handler runs: the same as a kill from outside at that instant). Unset, a stage costs
one dictionary lookup. Stages: ``export.sealed`` (seq reserved and bundle sealed, not committed),
``export.committed`` (committed, file not written), ``export.written`` (file written),
``write.synced`` (temp file synced, not renamed), ``apply.written`` (rows written, not
committed), ``apply.committed`` (committed, outcome not reported), ``rotation.executed`` (a
local rotation's executor succeeded, the new value not committed); the agent's audit export:
``audit_export.sealed`` (seqs reserved, bundles sealed, ``audit.exported`` appended, not
committed), ``audit_export.committed`` (committed, no file written), ``audit_export.written``
(a file written).

Key rotations (``tests/crash/rotations.py``): ``key.next_written`` (gateway: new online key on
disk, not certified), ``key.certified`` (certified in ``trust.json``, ``identity.key`` not
switched), ``key.swapped`` (switched, the ``next`` file not removed); ``root.signed`` (new root
file written and signed by the old, ``trust.json`` not saved), ``root.saved`` (saved, not
audited); ``agent_key.next_written`` (agent: next key on disk, request not recorded).
"""

from __future__ import annotations

import os
import signal

ENV = "RELAY_CRASH_AT"


def reached(stage: str) -> None:
    """SIGKILL this process if ``RELAY_CRASH_AT`` names ``stage``."""
    if os.environ.get(ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)
