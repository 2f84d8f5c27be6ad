"""A flow file may come from anyone, and `hexaflow validate` runs on it in CI: it must not read
or write outside its folder (issue 12, findings 4 and 6) nor exhaust memory or crash (finding
7). Each hostile input gets a `file:line` error (or, for a record, a failed record) instead.

The bombs run in a child process whose address space is capped, so that a regression fails
the test (MemoryError, a traceback) instead of swapping the machine.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
flow: hostile
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
LOOKUPS
routes:
  - name: r
    target: {connector: file, document: records}
    key: "K_<<order.id>>"
    fields:
      a: FIELD
"""


def flow(write, field: str = '"<<order.id>>"', lookups: str = "", extra: str = "") -> Path:
    write("orders.jsonl", '{"id": 1, "items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n')
    text = FLOW.replace("LOOKUPS", lookups).replace("FIELD", field) + extra
    return write("flow.yaml", text)


def errors(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if ": error: " in line]


# -- finding 4: lookups stay inside the project folder ------------------------------------
def test_a_lookup_symlinked_to_the_environment_is_refused_and_prints_none_of_it(cli, write):
    path = flow(write, "\"=lookup('t', order.id)\"", "lookups:\n  t: {file: t.csv, key: nope}")
    os.symlink("/proc/self/environ", path.parent / "t.csv")
    secret = "s3cr3t-value-that-must-not-print"
    for command in ("validate", "run"):
        args = (command, str(path)) if command == "validate" else (command, str(path), "--dry-run")
        result = cli(*args, env={"HEXAFLOW_TEST_SECRET": secret})
        assert result.exit_code == 1, result.output
        assert secret not in result.output and "HEXAFLOW_TEST_SECRET" not in result.output
        assert "lookup file 't.csv' leads outside the flow file's folder (through a symlink)" \
            in result.output, result.output


@pytest.mark.parametrize("name, fragment", [
    ("../outside.csv", "leads outside the flow file's folder (by '..')"),
    ("/etc/passwd.csv", "is an absolute path"),
    (".env.csv", "is a hidden file or in a hidden folder"),
    (".git/t.csv", "is a hidden file or in a hidden folder"),
    ("tables.csv", "is not a regular file"),
])
def test_a_lookup_outside_the_project_or_not_a_file_is_a_file_line_error(cli, write, tmp_path,
                                                                        name, fragment):
    (tmp_path / "tables.csv").mkdir()
    write(".env.csv", "k,v\n1,SECRET\n")
    write(".git/t.csv", "k,v\n1,SECRET\n")
    path = flow(write, "\"=lookup('t', order.id)\"", f"lookups:\n  t: {json.dumps(name)}")
    result = cli("validate", str(path))
    assert result.exit_code == 1, result.output
    (first,) = errors(result)
    assert first.startswith(f"{path}:4:6: error: lookup file {name!r} {fragment}"), first
    assert "SECRET" not in result.output


def test_a_missing_column_quotes_a_short_truncated_list_of_columns(cli, write):
    header = ",".join(f"column_{n}_" + "x" * 60 for n in range(30))
    write("t.csv", header + "\n" + ",".join("v" for _ in range(30)) + "\n")
    path = flow(write, "\"=lookup('t', order.id)\"", "lookups:\n  t: {file: t.csv, key: nope}")
    result = cli("validate", str(path))
    (first,) = errors(result)
    assert "has no column 'nope' (columns: column_0_" in first
    assert "… (20 more)" in first and "column_10_" not in first
    assert len(first) < 900, first


def test_a_binary_file_named_as_a_table_is_refused_without_quoting_it(cli, write, tmp_path):
    (tmp_path / "t.csv").write_bytes(b"k\x00\x01ey,SECRET\x02\n1,2\n")
    path = flow(write, "\"=lookup('t', order.id)\"", "lookups:\n  t: {file: t.csv, key: nope}")
    result = cli("validate", str(path))
    (first,) = errors(result)
    assert "is not a CSV table" in first and "SECRET" not in first, first


# -- finding 6: the file connector reads and writes inside the project folder -------------
def test_the_file_connector_does_not_write_outside_the_flow_folder(cli, write, tmp_path):
    project = tmp_path / "project"
    path = flow(lambda name, text: write(f"project/{name}", text))
    text = path.read_text().replace("document: records}",
                                    "document: records, params: {path: ../victim/notes.txt}}")
    path.write_text(text)
    result = cli("run", str(path))
    assert result.exit_code == 2, result.output      # the document is rejected, a dead letter
    assert not (tmp_path / "victim").exists()
    assert "file connector: target.params.path '../victim/notes.txt' leads outside" \
        in result.output, result.output
    # inside the folder is fine
    path.write_text(text.replace("../victim/notes.txt", "out/notes.txt"))
    result = cli("run", str(path), "--tenant", "other")
    assert result.exit_code == 0, result.output
    assert json.loads((project / "out" / "notes.txt").read_text())["key"] == "K_1"


def test_the_file_connector_does_not_read_outside_the_flow_folder(cli, write, tmp_path):
    write("secret.jsonl", '{"id": "SECRET"}\n')
    path = flow(lambda name, text: write(f"project/{name}", text))
    path.write_text(path.read_text().replace("path: orders.jsonl", "path: ../secret.jsonl"))
    result = cli("run", str(path))
    assert result.exit_code == 1, result.output
    assert "source.params.path '../secret.jsonl' leads outside the flow file's folder" \
        in result.output, result.output
    assert "SECRET" not in result.output


# -- finding 7: files that would exhaust memory or crash ----------------------------------
def _capped_validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`hexaflow ARGS` in a child limited to 1.5 GiB of address space and 120 s."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024,) * 2)
    return subprocess.run([sys.executable, "-m", "hexaflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, preexec_fn=cap)


def test_a_yaml_alias_bomb_is_a_file_line_error(write, tmp_path):
    bomb = "x-bomb:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
    for previous, name in zip("abcdefgh", "bcdefghi"):
        bomb += f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    path = flow(write, extra=bomb)
    result = _capped_validate("validate", str(path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "once its aliases are expanded" in result.stdout and "Traceback" not in result.stderr
    assert result.stdout.startswith(f"{path}:"), result.stdout


def test_a_recursive_alias_is_a_file_line_error(cli, write):
    path = flow(write, extra="x-loop: &loop [*loop]\n")
    result = cli("validate", str(path))
    (first,) = errors(result)
    assert first.startswith(f"{path}:10:9: error: values nested more than 32 levels deep"), first


def test_a_flow_file_over_the_size_limit_is_refused(cli, write):
    path = flow(write, extra="x-padding: '" + "p" * (1024 * 1024) + "'\n")
    result = cli("validate", str(path))
    (first,) = errors(result)
    assert first.startswith(f"{path}:1:1: error: the file is larger than 1 MiB"), first


def test_a_template_that_multiplies_text_fails_its_record_not_the_machine(write, tmp_path):
    path = flow(write, "\"<<'x' * 900000000>>\"")
    result = _capped_validate("validate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    result = _capped_validate("run", str(path), "--dry-run", cwd=tmp_path)
    assert "'*' would make 900,000,000 characters or items, more than the 100,000" \
        in result.stdout + result.stderr, result.stdout + result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_a_multiplying_projection_fails_its_record_not_the_machine(write, tmp_path):
    six_levels = "[*]" + ".[@, @, @, @, @, @, @, @, @, @][]" * 6
    path = flow(write, f'"=length(order.items{six_levels})"')
    result = _capped_validate("run", str(path), "--dry-run", cwd=tmp_path)
    assert "the expression collects more than 1,000,000 items" in result.stdout + result.stderr, \
        result.stdout + result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("field, fragment", [
    ('"=' + "(" * 600 + "order.id" + ")" * 600 + '"', "the expression is nested more than 40"),
    ('"=order.id' + " || order.id" * 400 + '"', "the expression is 4,808 characters long"),
    ('"<<' + "(" * 600 + "order.id" + ")" * 600 + '>>"', "the template is nested more than 40"),
    ('"=`' + "[" * 50 + "]" * 50 + '`"', "the expression is nested more than 40"),
    ('"<<order' + ".b" * 1500 + '>>"', "the template is"),
])
def test_deeply_nested_or_huge_expressions_are_file_line_errors(cli, write, field, fragment):
    path = flow(write, field)
    result = cli("validate", str(path))
    (first,) = errors(result)
    assert first.startswith(f"{path}:9:"), first
    assert fragment in first, first


@pytest.mark.parametrize("template", [
    "<<order.id | center(900000000)>>",
    "<<'%900000000s' | format(order.id)>>",
    "<<'{:>900000000}'.format(order.id)>>",
    "<<'%900000000d' % order.id>>",
])
def test_template_widths_are_bounded(cli, write, template):
    path = flow(write, json.dumps(template))
    result = cli("run", str(path), "--dry-run")
    assert "at most 100,000" in result.output, result.output
