"""The bundle format v1 (``docs/spec/bundle-v1.md``): pure codec and verifier, no I/O.

- :mod:`relay.bundle.envelope`: the signed envelope (magic, header, signature, sealed payload).
- :mod:`relay.bundle.verify`: bytes + trusted state + ``now`` in, verified bundle or error out.
- :mod:`relay.bundle.payload`: the payload of the secret stream (full state, tombstones, acks).
"""
