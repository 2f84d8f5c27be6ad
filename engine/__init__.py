"""hexaflow: a declarative integration engine (YAML flows, pluggable connectors)."""
__version__ = "0.1.0"
