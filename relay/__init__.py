"""relay: a store-and-forward secrets relay for air-gapped and DMZ networks.

The shared core: crypto, the bundle format, transports, audit and the CLI. The connected side
lives in :mod:`outer_gateway`, the isolated side in :mod:`inner_agent`.
"""

__version__ = "0.1.0"
