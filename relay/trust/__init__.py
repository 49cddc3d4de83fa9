"""Two-tier gateway keys: an offline root certifies online keys (``docs/spec/bundle-v1.md`` §15).

- :mod:`relay.trust.documents`: the signed root, certificate and revocation documents (codec).
- :mod:`relay.trust.chain`: judging a bundle's chain against the pinned root state (pure).
"""
