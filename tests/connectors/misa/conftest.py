"""Fixtures live in misa_helpers (a unique module name, so other connectors' test helpers never
shadow it); importing them here registers them with pytest."""
from misa_helpers import admin, connector, raw, receiver, sandbox  # noqa: F401
