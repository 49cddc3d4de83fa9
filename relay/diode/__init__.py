"""Data-diode transport: files over one-way UDP with forward error correction.

The middle is pure and works on bytes: :mod:`relay.diode.packet` (datagram codec),
:mod:`relay.diode.fec` (stripe geometry, zfec encode/decode, interleaved send order),
:mod:`relay.diode.manifest` (what travels in front of the file: name, size, SHA-256) and
:mod:`relay.diode.assembly` (the receiver's state machine, with a clock passed in). Sockets,
signals and files live at the edges: :mod:`relay.diode.sender` and :mod:`relay.diode.receiver`.
The wire format is specified in ``docs/diode.md``.
"""
