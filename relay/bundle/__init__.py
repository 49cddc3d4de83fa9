"""The bundle format v1 (``docs/spec/bundle-v1.md``): pure codec and verifier, no I/O.

- :mod:`relay.bundle.envelope`: the signed envelope (magic, header, signature, sealed payload).
- :mod:`relay.bundle.verify`: the checks, bytes + trusted state + ``now`` in, verified bundle or
  error out.
- :mod:`relay.bundle.receive`: the one receive pipeline every entry point uses (verify, sequence,
  decrypt, decode), with :class:`relay.bundle.limits.Limits`.
- :mod:`relay.bundle.payload`: the payload of the secret stream (full state, tombstones, acks).
- :mod:`relay.bundle.audit_payload`: the payload of the return stream (audit records).
"""
