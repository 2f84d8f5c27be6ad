"""Connectors are found by name.

Built-in connectors and third-party packages register the same way: an entry point in the
``hexaflow.connectors`` group (``name = "package.module:ConnectorClass"``). Tests and
embedding code can also call :func:`register_connector`.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from hexaflow.connector import Connector

ENTRY_POINT_GROUP = "hexaflow.connectors"

_registered: dict[str, type[Connector]] = {}


def register_connector(name: str, cls: type[Connector]) -> None:
    _registered[name] = cls


def connector_names() -> list[str]:
    names = set(_registered)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_connector(name: str) -> type[Connector] | None:
    """The connector class registered as ``name``, or None."""
    if name in _registered:
        return _registered[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        cls = ep.load()
        _registered[name] = cls
        return cls
    return None
