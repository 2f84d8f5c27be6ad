"""One rule for codes and names, whatever system they come from (docs/codes-and-names.md).

A code (a SKU, an item, customer or warehouse code) identifies a record, so two spellings that
look the same must be the same code: surrounding whitespace is dropped and the text is put in
Unicode NFC (a Vietnamese letter typed on a Mac arrives decomposed, NFD). Case and inner spaces
are kept: both systems compare codes exactly, so ``ao-m`` and ``AO-M`` may be two items.

A name (of a person, a product, a unit) is for people: the same, and every run of whitespace
inside it becomes one space.

Connectors apply these where they read records and where they match codes; the engine never
changes a value on its own. Anything that is not text is returned unchanged.
"""
from __future__ import annotations

import unicodedata
from typing import Any


def canonical_code(value: Any) -> Any:
    """``value`` without surrounding whitespace, in NFC; not text: unchanged."""
    if not isinstance(value, str):
        return value
    return unicodedata.normalize("NFC", value.strip())


def canonical_name(value: Any) -> Any:
    """``value`` in NFC with whitespace runs collapsed to one space and none around it."""
    if not isinstance(value, str):
        return value
    return unicodedata.normalize("NFC", " ".join(value.split()))
