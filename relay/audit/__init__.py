"""Audit: the hash-chained record log (pure, :mod:`relay.audit.chain`), its SIEM formats
(pure, :mod:`relay.audit.formats`) and the sinks that deliver them (I/O, :mod:`relay.audit.sinks`).
"""
