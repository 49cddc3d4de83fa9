"""``python -m relay`` runs the CLI."""

from relay.entry import main

main()
