"""Every example in docs/ is checked: example flows validate, their tests pass, and they run;
every YAML block in the docs' Markdown parses, and whole flows among them validate."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from hexaflow.flowtest import run_tests
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.spec import is_flow
from hexaflow.state import open_store
from hexaflow.validate import validate_file, validate_paths

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE_FLOWS = sorted(p for p in (DOCS / "examples").rglob("*.yaml")
                       if is_flow(yaml.safe_load(p.read_text(encoding="utf-8"))))
BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def markdown_blocks():
    for page in sorted(DOCS.rglob("*.md")):
        for n, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
            yield pytest.param(page, match.group(1), id=f"{page.relative_to(DOCS)}#{n}")


def test_there_are_examples():
    assert EXAMPLE_FLOWS


@pytest.mark.parametrize("flow", EXAMPLE_FLOWS, ids=lambda p: str(p.relative_to(DOCS)))
def test_example_flow_is_valid_its_tests_pass_and_it_runs(flow, tmp_path, monkeypatch):
    assert [p.text() for p in validate_file(flow)] == []
    results, broken = run_tests([str(flow)])
    assert broken == [] and results and all(r.passed for r in results), \
        [f for r in results for f in r.failures]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEXAFLOW_FILE_OUT", str(tmp_path / "out"))
    # the file connector writes inside the flow's folder: run a copy, leave docs/ as it is
    copy = shutil.copytree(flow.parent, tmp_path / "example") / flow.name
    plan = load_plan(copy)
    store = open_store(str(tmp_path / "state.db"))
    summary = run_flow(plan, tenant="docs", store=store, connectors=Connectors("docs", plan.base_dir))
    assert summary.records > 0 and not summary.failed


@pytest.mark.parametrize("page,block", list(markdown_blocks()))
def test_yaml_blocks_in_docs_parse_and_whole_flows_validate(page, block, tmp_path):
    data = yaml.safe_load(block)
    assert data is not None
    if is_flow(data) and "flow" in data and "routes" in data:
        target = tmp_path / "flow.yaml"
        target.write_text(block, encoding="utf-8")
        # flows in pages may refer to tables of the example folder
        for table in (DOCS / "examples" / "orders-to-file").glob("*"):
            if table.suffix in (".yaml", ".csv", ".jsonl") and table.name != "flow.yaml":
                (tmp_path / table.name).write_text(table.read_text(encoding="utf-8"), encoding="utf-8")
        report = validate_paths([str(target)])
        assert not report.errors(), [p.text() for p in report.problems]
