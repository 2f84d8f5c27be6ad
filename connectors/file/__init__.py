"""The built-in ``file`` connector: read JSON / JSONL / CSV records, write JSONL documents.

It lets any flow run with no network: for trying a mapping on exported data, for tests, and
for the examples in docs/.

Reading (``source: {connector: file, resource: records, params: {path: orders.jsonl}}``):
``path`` is relative to the flow file and stays inside its folder (hexaflow.paths: no absolute
path, no ``..`` or symlink out of it, no hidden file); the format comes from the extension
(``.json`` holds a list of records, ``.jsonl`` one record per line, ``.csv`` a header row). With
``incremental: {cursor: field}`` only records whose field sorts after the saved cursor are read,
in cursor order. Numbers with decimals are read as Decimal.

Writing (``target: {connector: file, document: vouchers}``): each document is appended as one
JSON line ``{"key", "action", "payload"}`` to ``params.path`` if given (relative to the flow
file and inside its folder, as for reading: a flow must not write anywhere else), else to
``<HEXAFLOW_FILE_OUT or ./out>/<document>.jsonl`` (a setting of whoever runs the flow,
relative to the working directory).
``read_one`` (``hexaflow explain --id``) finds the record whose ``id`` field equals the id
given (compared as text).

Writes are synchronous (``done``); with ``params: {accept: queued}`` they are reported as
``queued`` and reported ``accepted`` when polled, to try flows against an asynchronous target.
"""
from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from hexaflow.connector import (ACCEPTED, DONE, QUEUED, REJECTED, AsyncResult, Catalogue,
                                ConfigVar, Connector, ConnectorError, DocumentInfo, Page,
                                ResourceInfo, WriteItem, WriteResult)
from hexaflow.expressions import jsonable
from hexaflow.paths import PathError, inside_project

PAGE_SIZE = 500


class FileConnector(Connector):
    name = "file"
    catalogue = Catalogue(
        resources={"records": ResourceInfo(
            "records", "Records from a JSON, JSONL or CSV file.",
            params={"path": "file to read, relative to the flow file (required)"},
            incremental=("*",))},
        documents={"records": DocumentInfo(
            "records", "Documents appended as JSON lines.",
            actions=("upsert", "create", "delete"),
            params={"path": "output file (default: $HEXAFLOW_FILE_OUT/<document>.jsonl)",
                    "accept": "'done' (default) or 'queued' to behave like an asynchronous target"})},
    )
    config_vars = (
        ConfigVar("HEXAFLOW_FILE_OUT", "folder the file connector writes documents to, as "
                  "<document>.jsonl (relative to the working folder)", default="./out"),
    )

    # -- reading ----------------------------------------------------------------------
    def read(self, resource: str, params: Mapping[str, Any], since: Any = None, *,
             cursor_field: str | None = None) -> Iterator[Page]:
        if resource != "records":
            raise ConnectorError(f"file connector: unknown resource {resource!r}; use 'records'")
        if not params.get("path"):
            raise ConnectorError("file connector: source.params.path is required "
                                 "(the file to read, relative to the flow file)")
        records = list(_read_records(self._inside(params["path"], "source.params.path")))
        if cursor_field:
            records = [r for r in records if r.get(cursor_field) is not None]
            records.sort(key=lambda r: _sortable(r[cursor_field]))
            if since is not None:
                records = [r for r in records if _sortable(r[cursor_field]) > _sortable(since)]
        for start in range(0, len(records), PAGE_SIZE):
            yield Page(records[start:start + PAGE_SIZE])

    def read_one(self, resource: str, record_id: str,
                 params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        wanted = str(record_id)
        for page in self.read(resource, params or {}):
            for record in page.records:
                if isinstance(record, dict) and str(record.get("id")) == wanted:
                    return record
        return None

    def _inside(self, name: Any, what: str) -> Path:
        """The file ``name`` (a flow's param) inside the flow's folder."""
        try:
            return inside_project(Path(self.context.base_dir), str(name),
                                  f"file connector: {what}")
        except PathError as exc:
            raise ConnectorError(f"{exc.message}; {exc.hint}") from None

    # -- writing ----------------------------------------------------------------------
    def _out_path(self, item: WriteItem) -> Path:
        if item.params.get("path"):
            return self._inside(item.params["path"], "target.params.path")
        return Path(self.context.config.get("HEXAFLOW_FILE_OUT") or "out") / f"{item.document}.jsonl"

    def write(self, items: Sequence[WriteItem]) -> list[WriteResult]:
        results = []
        handles: dict[Path, Any] = {}
        try:
            for item in items:
                if item.document not in self.catalogue.documents:
                    results.append(WriteResult(item.ref, REJECTED, code="UnknownDocument",
                                               message=f"file connector cannot write {item.document!r}"))
                    continue
                try:
                    path = self._out_path(item)
                except ConnectorError as exc:   # this route's path: its documents only
                    results.append(WriteResult(item.ref, REJECTED, code="PathNotAllowed",
                                               message=str(exc)))
                    continue
                if path not in handles:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handles[path] = path.open("a", encoding="utf-8")
                line = {"key": item.key, "action": item.action, "payload": jsonable(item.payload)}
                handles[path].write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                target_ref = f"{item.document}:{item.key}"
                if item.params.get("accept") == "queued":
                    results.append(WriteResult(item.ref, QUEUED, target_ref))
                else:
                    results.append(WriteResult(item.ref, DONE, target_ref))
        finally:
            for handle in handles.values():
                handle.close()
        return results

    def poll(self, target_refs: Iterable[str]) -> list[AsyncResult]:
        # A file accepts whatever was appended to it.
        return [AsyncResult(ref, ACCEPTED) for ref in target_refs]


def _sortable(value: Any) -> Any:
    return value if isinstance(value, (int, float, Decimal)) else str(value)


def _read_records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise ConnectorError(f"file connector: {path} does not exist (source.params.path is "
                             "relative to the flow file)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            yield from csv.DictReader(handle)
        return
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line, parse_float=Decimal)
                except json.JSONDecodeError as exc:
                    raise ConnectorError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        return
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConnectorError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ConnectorError(f"{path}: expected a list of records")
    yield from data
