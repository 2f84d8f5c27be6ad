"""Connectors: one package per external system, each with its client, catalogue and sandbox."""
