"""``hexaflow validate --cache``: the same report as without it, and a file is validated again
whenever it or a file it names changes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hexaflow import cache as cache_module
from hexaflow.cache import ValidationCache
from hexaflow.problems import Problem

ROOT = Path(__file__).resolve().parents[2]

FLOW = """
flow: t
source: {connector: file, resource: records, params: {path: r.jsonl}, as: order}
lookups:
  codes: codes.yaml
routes:
  - name: one
    when: "order.status == 'paid'"
    target: {connector: file, document: records}
    key: "A_<<order.id>>"
    fields:
      code: "=codes.prefix"
      label: order.status
  - name: waiting
    when: "order.status == 'pending'"
    action: skip
coverage:
  vary:
    order.status: [paid, pending]
"""


def run(cli, *args):
    result = cli("validate", *args)
    return result.exit_code, result.stdout


def test_cached_report_is_the_report(cli, write, tmp_path):
    write("codes.yaml", "prefix: PC_\n")
    write("flow.yaml", FLOW)
    write("table.yaml", "a: 1\n")
    for fmt in ("text", "json"):
        plain = run(cli, ".", "--format", fmt)
        first = run(cli, ".", "--format", fmt, "--cache")
        second = run(cli, ".", "--format", fmt, "--cache")
        assert plain == first == second
    assert '"severity": "warning"' in plain[1]     # a problem to keep
    assert (tmp_path / ".hexaflow" / "cache" / "validate.json").exists()


def test_without_cache_nothing_is_written(cli, write, tmp_path):
    write("codes.yaml", "prefix: PC_\n")
    write("flow.yaml", FLOW)
    run(cli, ".")
    assert not (tmp_path / ".hexaflow").exists()


def test_a_changed_lookup_file_is_seen(cli, write):
    write("flow.yaml", FLOW)
    code, out = run(cli, "flow.yaml", "--cache")
    assert code == 1 and "lookup file not found" in out
    write("codes.yaml", "prefix: PC_\n")
    code, out = run(cli, "flow.yaml", "--cache")
    assert code == 0, out
    write("codes.yaml", "- not a mapping\n")
    code, out = run(cli, "flow.yaml", "--cache")
    assert code == 1, out


def test_a_changed_flow_and_a_table_turned_flow_are_seen(cli, write):
    write("codes.yaml", "prefix: PC_\n")
    write("flow.yaml", FLOW)
    write("other.yaml", "a: 1\n")
    assert run(cli, ".", "--cache")[1].endswith("1 flow(s) checked: 0 error(s), 1 warning(s)\n")
    write("flow.yaml", FLOW.replace("when:", "wehn:"))
    code, out = run(cli, ".", "--cache")
    assert code == 1 and "unknown key 'wehn'" in out
    write("other.yaml", FLOW)
    code, out = run(cli, ".", "--cache")
    assert "2 flow(s) checked" in out


def test_a_cache_from_another_hexaflow_is_dropped(tmp_path, monkeypatch):
    path = tmp_path / "validate.json"
    flow = tmp_path / "flow.yaml"
    flow.write_text("flow: t\n", encoding="utf-8")
    cache = ValidationCache(path)
    cache.remember_flow(flow, {}, [Problem(str(flow), 1, 1, "kept")])
    cache.save()
    assert ValidationCache(path).problems(flow) == [Problem(str(flow), 1, 1, "kept")]
    monkeypatch.setattr(cache_module, "fingerprint", lambda: "another hexaflow")
    assert ValidationCache(path).problems(flow) is None


def test_a_cached_run_imports_none_of_the_machinery(tmp_path):
    """What makes a cached run fast: no YAML, JSON Schema, Jinja or connectors."""
    env = {**os.environ, "HEXAFLOW_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-c",
               "import sys\n"
               "from hexaflow.cli import main\n"
               "try:\n"
               "    main(['validate', '--cache', sys.argv[1]])\n"
               "except SystemExit:\n"
               "    pass\n"
               "heavy = [m for m in ('yaml', 'jsonschema', 'jinja2', 'jmespath', 'hexaflow.plan',\n"
               "                     'hexaflow.connectors.misa') if m in sys.modules]\n"
               "print('imported:', heavy)\n",
               str(ROOT / "mappings")]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "0 error(s), 0 warning(s)" in first.stdout, first.stdout + first.stderr
    assert "imported: []" in second.stdout, second.stdout + second.stderr
