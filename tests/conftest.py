"""Shared fixtures: a CLI runner, and a folder to write flows into."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hexaflow.cli import main
from state_backends import BACKENDS, StateTarget, make_target


class Cli:
    def __init__(self, cwd: Path, state: Path):
        self.cwd = cwd
        self.state = state

    def __call__(self, *args: str, env: dict | None = None):
        runner = CliRunner()
        environment = {"HEXAFLOW_STATE": str(self.state), "HEXAFLOW_FILE_OUT": str(self.cwd / "out")}
        environment.update(env or {})
        with _chdir(self.cwd):
            return runner.invoke(main, list(args), env=environment, catch_exceptions=False)


class _chdir:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import os
        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        import os
        os.chdir(self.old)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "state.db")


@pytest.fixture
def write(tmp_path: Path):
    """write('name.yaml', text) → path; text is dedented."""
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path
    return _write


@pytest.fixture(params=BACKENDS)
def state_target(request, tmp_path: Path) -> StateTarget:
    """The test's own state store, on each backend (tests/state_backends.py)."""
    return make_target(request.param, tmp_path, request)


@pytest.fixture(scope="module", params=BACKENDS)
def module_state_target(request, tmp_path_factory) -> StateTarget:
    """A state store shared by a module's tests, on each backend."""
    return make_target(request.param, tmp_path_factory.mktemp("state"), request)
