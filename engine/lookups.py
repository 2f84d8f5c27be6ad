"""Lookup tables: files next to a flow (YAML or CSV) read into {key: row}.

- A YAML mapping is used as it is: its keys are the lookup keys (``settings.yaml``,
  ``warehouses.yaml`` written as ``KHO_HCM: 963414``).
- A YAML list of mappings, or a CSV file, needs a key column (CSV default: the first column).
Keys are compared as text, so ``1036847352`` and ``"1036847352"`` find the same row.

A lookup can also be read from a connector when a run starts (``{connector: <name>, resource:
items, key: inventory_item_code, sample: ...}``, e.g. the accounting system's item dictionary
for each line's unit); its ``sample`` file stands in for it where no connector is at hand
(validate, test).
The file must be inside the flow's project folder (hexaflow.paths) and no larger than
``hexaflow.limits.MAX_FILE_BYTES``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hexaflow.errors import TableError
from hexaflow.paths import PathError, inside_project
from hexaflow.yamlload import SpecSyntaxError, read_data_file, read_limited

if TYPE_CHECKING:
    from hexaflow.connector import Connector

# A message quotes at most this many column names, each cut to this many characters: enough to
# pick the key column, never a file's content.
SHOWN_COLUMNS = 10
SHOWN_COLUMN_CHARS = 40


@dataclass(frozen=True)
class ConnectorLookup:
    """A lookup table a connector's resource fills, keyed by one of its records' fields."""
    name: str
    connector: str
    resource: str
    key: str


def read_connector_table(lookup: ConnectorLookup, connector: "Connector") -> dict[str, Any]:
    """Every record of the lookup's resource, by its key field (records without one are left out)."""
    rows: dict[str, Any] = {}
    for page in connector.read(lookup.resource, {}):
        for record in page.records:
            value = record.get(lookup.key)
            if value is not None and value != "":
                rows[str(value)] = record
    return rows


def load_table(base: Path, file: str, display: str, key: str | None = None) -> dict[str, Any]:
    """The table ``file`` names inside the project folder ``base`` (hexaflow.paths)."""
    try:
        path = inside_project(base, file, "lookup file")
    except PathError as exc:
        raise TableError(exc.message, display, hint=exc.hint) from None
    if not path.exists():
        raise TableError(f"lookup file not found: {display}", display,
                         hint="create it next to the flow, or fix the path (it is relative to the flow file)")
    if path.suffix.lower() == ".csv":
        return _load_csv(path, display, key)
    try:
        data = read_data_file(path, display)
    except SpecSyntaxError as exc:
        raise TableError(f"{display}:{exc.line}:{exc.col}: {exc.message}", display, exc.line,
                         exc.hint or "fix the table file at that line") from None
    if isinstance(data, dict):
        if key is not None:
            raise TableError(f"{display} is a mapping; `key` is only for lists and CSV files",
                             display, hint="remove `key:` from the lookup")
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list):
        if key is None:
            raise TableError(f"{display} is a list of rows; say which field is the key",
                             display, hint="write the lookup as {file: ..., key: <field>}")
        rows: dict[str, Any] = {}
        for number, row in enumerate(data, 1):
            if not isinstance(row, dict) or row.get(key) is None:
                raise TableError(f"row {number} of {display} has no {key!r}", display,
                                 hint=f"give every row the field {key!r}, or name another `key:` field")
            k = str(row[key])
            if k in rows:
                raise TableError(f"{display}: duplicate key {k!r} (row {number})", display,
                                 hint="keep one row per key")
            rows[k] = row
        return rows
    raise TableError(f"{display} must hold a mapping or a list of rows", display,
                     hint="write `key: value` lines, or a list of `- field: value` rows")


def _load_csv(path: Path, display: str, key: str | None) -> dict[str, Any]:
    try:
        reader = csv.reader(io.StringIO(read_limited(path, display).decode("utf-8-sig"),
                                        newline=""))
        header = next(reader, [])
        lines = [(reader.line_num, cells) for cells in reader if cells]   # blank lines skipped
    except SpecSyntaxError as exc:
        raise TableError(f"{display}: {exc.message}", display, hint=exc.hint) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"cannot read {display}: {_reason(exc)}", display) from None
    if not header:
        raise TableError(f"{display} is empty; it needs a header row", display)
    if any(not name.isprintable() for name in header):
        # not a table (e.g. a binary file): nothing of it is quoted
        raise TableError(f"{display} is not a CSV table: its header row holds control "
                         f"characters", display, hint="name a CSV file with a header row")
    for line, cells in lines:
        if len(cells) != len(header):
            raise TableError(f"{display}:{line}: the row does not have as many cells as "
                             f"the header", display, line)
    key = key or header[0]
    if key not in header:
        raise TableError(f"{display} has no column {key!r} (columns: {_columns(header)})",
                         display, hint="set the lookup's `key:` to one of the columns")
    rows: dict[str, Any] = {}
    for line, cells in lines:
        row = dict(zip(header, cells))
        k = row[key]
        if k in rows:
            raise TableError(f"{display}:{line}: duplicate key {k!r}", display, line,
                             "keep one row per key")
        rows[k] = row
    return rows


def _columns(header: list[str]) -> str:
    """The first column names, each cut short: a message shows what to choose from, no more."""
    shown = [name if len(name) <= SHOWN_COLUMN_CHARS else name[:SHOWN_COLUMN_CHARS] + "…"
             for name in header[:SHOWN_COLUMNS]]
    more = len(header) - len(shown)
    return ", ".join(shown) + (f", … ({more} more)" if more > 0 else "")


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or "cannot open it"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return str(exc)
