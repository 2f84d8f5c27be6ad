"""Lookup tables: files next to a flow (YAML or CSV) read into {key: row}.

- A YAML mapping is used as it is: its keys are the lookup keys (``settings.yaml``,
  ``warehouses.yaml`` written as ``KHO_HCM: 963414``).
- A YAML list of mappings, or a CSV file, needs a key column (CSV default: the first column).
Keys are compared as text, so ``1036847352`` and ``"1036847352"`` find the same row.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hexaflow.yamlload import SpecSyntaxError, read_data_file


class TableError(Exception):
    """A table file that cannot be used; carries file:line when known."""

    def __init__(self, message: str, file: str, line: int = 1, hint: str = ""):
        super().__init__(message)
        self.message, self.file, self.line, self.hint = message, file, line, hint


def load_table(path: Path, display: str, key: str | None = None) -> dict[str, Any]:
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
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise TableError(f"{display} is empty; it needs a header row", display)
            key = key or reader.fieldnames[0]
            if key not in reader.fieldnames:
                raise TableError(f"{display} has no column {key!r} (columns: "
                                 f"{', '.join(reader.fieldnames)})", display,
                                 hint="set the lookup's `key:` to one of the columns")
            rows: dict[str, Any] = {}
            for row in reader:
                line = reader.line_num
                if None in row or any(v is None for v in row.values()):
                    raise TableError(f"{display}:{line}: the row does not have as many cells as "
                                     f"the header", display, line)
                k = row[key]
                if k in rows:
                    raise TableError(f"{display}:{line}: duplicate key {k!r}", display, line,
                                     "keep one row per key")
                rows[k] = row
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"cannot read {display}: {exc}", display) from None
