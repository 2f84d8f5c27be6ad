"""The results of ``hexaflow validate``, kept by content (as ruff and mypy keep theirs).

What validate says about a flow file depends only on: the file's bytes, the files it names
(lookup tables, the coverage base, test files), hexaflow's own code and schema, and the
installed packages (connectors, jsonschema, Jinja...). Each file's result is kept with the
digests of those inputs, in ``.hexaflow/cache/validate.json`` (under ``HEXAFLOW_CACHE_DIR`` if
set); a file whose inputs are unchanged is not validated again, and needs none of the
machinery (YAML, JSON Schema, Jinja, connectors) to be imported. Whether a YAML file found in
a folder is a flow or a table is kept the same way.

Only ``hexaflow validate --cache`` uses it (validate writes nothing unless asked). The whole
cache is dropped when hexaflow's files (size and modification time of each) or the set of
installed distributions change. A cache that cannot be read or written is ignored.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import hexaflow
from hexaflow.environment import cache_dir
from hexaflow.problems import Problem

FORMAT = 1            # bump when the layout of the cache file changes
FLOW, TABLE = "flow", "table"


def default_path() -> Path:
    return cache_dir() / "validate.json"


def fingerprint() -> str:
    """hexaflow's version and files, Python's version, and the installed distributions: what
    else a result depends on. A change to any of them empties the cache."""
    digest = hashlib.sha256(f"{FORMAT} {hexaflow.__version__} {sys.version}\n".encode())
    folders = list(hexaflow.__path__)
    connectors = importlib.util.find_spec("hexaflow.connectors")
    if connectors is not None and connectors.submodule_search_locations:
        folders += list(connectors.submodule_search_locations)
    for folder in folders:
        for parent, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                try:
                    stat = os.stat(os.path.join(parent, name))
                except OSError:         # removed meanwhile (e.g. an editor saving it)
                    continue
                digest.update(f"{parent}/{name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry)) if entry and os.path.isdir(entry) else []
        except OSError:
            names = []
        for name in names:
            if name.endswith((".dist-info", ".egg-info", ".egg-link", ".pth")):
                digest.update(f"{entry}/{name}\n".encode())
    return digest.hexdigest()


class ValidationCache:
    def __init__(self, path: Path | None = None):
        self.path = path or default_path()
        self.fingerprint = fingerprint()
        # file as given (problems name it so) → {digest, kind, deps: {absolute path: digest}, problems}
        self.entries: dict[str, dict] = {}
        self._digests: dict[Path, str | None] = {}     # of the files read in this run
        self._changed = False
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            if stored.get("fingerprint") == self.fingerprint:
                self.entries = stored["entries"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass

    def digest(self, path: Path) -> str | None:
        """The SHA-256 of the file's bytes; None when it cannot be read (e.g. missing) or is
        not a regular file: a flow may name /dev/zero or a pipe, which validate refuses
        (hexaflow.paths) and which must not be read here either."""
        path = Path(os.path.abspath(path))
        if path not in self._digests:
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    raise FileNotFoundError(path)
                with path.open("rb") as handle:    # in chunks: a named file may be large
                    self._digests[path] = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError:
                self._digests[path] = None
        return self._digests[path]

    def digests(self, paths: list[Path]) -> dict[str, str | None]:
        """{absolute path: digest} of the files a result depends on."""
        return {os.path.abspath(path): self.digest(path) for path in paths}

    def _entry(self, path: Path) -> dict | None:
        entry = self.entries.get(str(path))
        digest = self.digest(path)
        if entry is None or digest is None or entry.get("digest") != digest:
            return None
        return entry

    def kind(self, path: Path) -> str | None:
        """FLOW or TABLE when this content of the file was seen before, else None."""
        entry = self._entry(path)
        return entry["kind"] if entry is not None else None

    def problems(self, path: Path) -> list[Problem] | None:
        """The problems found last time, when neither the file nor what it names changed."""
        entry = self._entry(path)
        if entry is None or entry["kind"] != FLOW:
            return None
        for dep, digest in entry["deps"].items():
            if self.digest(Path(dep)) != digest:
                return None
        return [Problem(**problem) for problem in entry["problems"]]

    def remember_table(self, path: Path) -> None:
        self._remember(path, TABLE, {}, [])

    def remember_flow(self, path: Path, deps: dict[str, str | None], problems: list[Problem]) -> None:
        """``deps``: digests (see ``digests``) of the files the result depends on."""
        self._remember(path, FLOW, deps, problems)

    def _remember(self, path: Path, kind: str, deps: dict[str, str | None],
                  problems: list[Problem]) -> None:
        digest = self.digest(path)     # taken when the file was first looked at, before reading
        if digest is None:
            return
        self.entries[str(path)] = {"digest": digest, "kind": kind, "deps": deps,
                                   "problems": [problem.as_dict() for problem in problems]}
        self._changed = True

    def save(self) -> None:
        """Write the cache (atomically: another validate may be reading it)."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"fingerprint": self.fingerprint,
                                             "entries": self.entries}, ensure_ascii=False),
                                 encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            pass
