"""What editors, pre-commit and CI rely on: the hooks this repository publishes, the schema line
of every flow file, and the pages that explain them."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from hexaflow.spec import SCHEMA_PATH, is_flow
from hexaflow.yamlload import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_LINE = re.compile(r"# yaml-language-server: \$schema=(\S+)")
FLOW_FILES = sorted(p for folder in ("mappings", "docs/examples") for p in (ROOT / folder).rglob("*.y*ml")
                    if is_flow(yaml.safe_load(p.read_text(encoding="utf-8"))))


def test_pre_commit_hooks_parse_and_run_the_installed_command():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert isinstance(hooks, list)
    by_id = {hook["id"]: hook for hook in hooks}
    assert {"hexaflow-validate", "hexaflow-test"} <= set(by_id)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for hook_id, command in (("hexaflow-validate", "validate"), ("hexaflow-test", "test")):
        hook = by_id[hook_id]
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert hook["entry"] == f"hexaflow {command}"
        assert hook["entry"].split()[0] in scripts
        assert hook["language"] == "python"
        # the whole folder is checked: a table given by name would be taken for a flow
        assert hook["pass_filenames"] is False and hook["args"] == ["."]
        files = re.compile(hook["files"])
        for changed in ("mappings/orders.yaml", "flows/x.yml", "mappings/staff.csv",
                        "mappings/fixtures/order_base.json"):
            assert files.search(changed), changed
        for unrelated in ("README.md", "engine/cli.py"):
            assert not files.search(unrelated), unrelated


@pytest.mark.parametrize("flow", FLOW_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_flow_file_points_editors_at_the_schema(flow):
    text = flow.read_text(encoding="utf-8")
    match = SCHEMA_LINE.fullmatch(text.splitlines()[0])
    assert match, f"{flow}: the first line must be '# yaml-language-server: $schema=...'"
    assert (flow.parent / match.group(1)).resolve() == SCHEMA_PATH.resolve()


def test_the_schema_comment_keeps_line_numbers():
    flow = ROOT / "mappings" / "orders.yaml"
    text = flow.read_text(encoding="utf-8")
    _, smap = parse_yaml(text, str(flow))
    line = next(n for n, l in enumerate(text.splitlines(), 1) if l.startswith("flow:"))
    assert smap.at(("flow",), key=True).line == line == 2


def test_the_new_pages_are_linked():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for page in ("editor.md", "init-and-explain.md"):
        assert (ROOT / "docs" / page).exists()
        assert f"docs/{page}" in readme
        assert f"({page})" in index
    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "## `hexaflow init DIR`" in cli and "## `hexaflow explain FLOW" in cli
