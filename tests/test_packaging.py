"""The installed layout: every source package is listed in pyproject, and the data ships."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    listed = set(config["packages"])
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            package = ".".join([name, *rel.parts]) if rel.parts else name
            if any(package.startswith(other + ".") or package == other
                   for other, f in mapping.items() if other != name and len(other) > len(name)):
                continue
            assert package in listed, f"{package} is missing from [tool.setuptools] packages"


def test_nothing_generic_is_installed_at_the_top_level():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "hexaflow" or p.startswith("hexaflow.") for p in config["packages"])


def test_the_schema_ships_with_the_package():
    from hexaflow.spec import SCHEMA_PATH, flow_schema
    assert SCHEMA_PATH.exists()
    assert flow_schema()["title"] == "hexaflow flow"


def test_engine_stays_generic():
    for source in (ROOT / "engine").rglob("*.py"):
        text = source.read_text(encoding="utf-8").lower()
        assert "haravan" not in text and "misa" not in text, source
