"""``hexaflow init DIR``: a project that validates and whose tests pass as written, run through
the installed ``hexaflow`` command as a subprocess; and it never overwrites without --force."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hexaflow.registry import get_connector
from hexaflow.scaffold import ENGINE_VARS, packaged_files, with_schema_line
from hexaflow.spec import is_flow, schema_text

TIMEOUT = 120


def _hexaflow() -> str:
    found = shutil.which("hexaflow", path=str(Path(sys.executable).parent)) or shutil.which("hexaflow")
    assert found, "the hexaflow command is not installed"
    return found


def hexaflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HEXAFLOW_")}
    environment.update(env or {})
    return subprocess.run([_hexaflow(), *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("init")
    result = hexaflow("init", "shop", cwd=base)
    return base / "shop", result


def _flows(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.y*ml"))
            if is_flow(yaml.safe_load(p.read_text(encoding="utf-8")))]


def test_the_new_project_validates_and_its_tests_pass(project):
    folder, result = project
    assert result.returncode == 0, result.stderr
    validate = hexaflow("validate", ".", cwd=folder)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert f"{len(_flows(folder))} flow(s) checked: 0 error(s)" in validate.stdout
    test = hexaflow("test", ".", cwd=folder)
    assert test.returncode == 0, test.stdout + test.stderr
    assert re.search(r"[1-9]\d* passed, 0 failed", test.stdout)


def test_init_prints_each_file_written_and_the_next_steps(project):
    folder, result = project
    written = {line.strip() for line in result.stdout.splitlines() if line.startswith("  ")
               and not line.strip()[0].isdigit()}
    on_disk = {str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*") if p.is_file()}
    assert written == on_disk
    assert "next steps:" in result.stdout
    assert "hexaflow validate . && hexaflow test ." in result.stdout
    assert "hexaflow explain" in result.stdout


def test_every_packaged_file_is_copied_with_fixtures(project):
    folder, _ = project
    packaged = dict(packaged_files())
    assert any(p.startswith("fixtures/") for p in packaged)
    for rel, content in packaged.items():
        path = folder / rel
        assert path.is_file(), rel
        flow = rel.endswith((".yaml", ".yml")) and is_flow(yaml.safe_load(content))
        if not flow:          # tables and fixtures are copied byte for byte
            assert path.read_bytes() == content, rel
    assert not list(folder.rglob("__init__.py")) and not list(folder.rglob("__pycache__"))


def test_each_flow_points_its_editor_at_the_schema_in_the_project(project):
    folder, _ = project
    schema = folder / ".hexaflow" / "flow.schema.json"
    assert schema.read_text(encoding="utf-8") == schema_text()
    flows = _flows(folder)
    assert flows
    for flow in flows:
        first = flow.read_text(encoding="utf-8").splitlines()[0]
        match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        assert match, flow
        assert (flow.parent / match.group(1)).resolve() == schema.resolve()


def test_the_schema_line_replaces_or_is_added():
    assert with_schema_line("# yaml-language-server: $schema=../x.json\nflow: a\n", "s.json") \
        == "# yaml-language-server: $schema=s.json\nflow: a\n"
    assert with_schema_line("flow: a\n", "s.json") == "# yaml-language-server: $schema=s.json\nflow: a\n"


def test_env_example_names_every_variable_with_no_value(project):
    folder, _ = project
    text = (folder / ".env.example").read_text(encoding="utf-8")
    assignments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert assignments and all(re.fullmatch(r"[A-Z][A-Z0-9_]*=", line) for line in assignments)
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=$", text, re.M))
    expected = {v.name for v in ENGINE_VARS}
    for flow in _flows(folder):
        data = yaml.safe_load(flow.read_text(encoding="utf-8"))
        names = {data["source"]["connector"]} | {r["target"]["connector"] for r in data["routes"]
                                                 if r.get("target")}
        for name in names:
            cls = get_connector(name)
            expected |= {v.name for v in cls.config_vars}
            required = {v.name for v in cls.config_vars if v.required}
            assert required <= {line[:-1] for line in assignments}
    assert named == expected


def test_no_secret_from_the_environment_is_written_or_printed(tmp_path):
    secrets = {}
    for name in ("file", "haravan", "misa"):
        cls = get_connector(name)
        for var in cls.config_vars if cls else ():
            secrets[var.name] = f"s3cret-{var.name.lower()}-value"
    result = hexaflow("init", "shop", cwd=tmp_path, env=secrets)
    assert result.returncode == 0, result.stderr
    for value in secrets.values():
        assert value not in result.stdout + result.stderr
        for path in (tmp_path / "shop").rglob("*"):
            if path.is_file():
                assert value not in path.read_text(encoding="utf-8", errors="replace"), path


def test_ci_workflow_installs_hexaflow_then_validates_and_tests(project):
    folder, _ = project
    workflow = yaml.safe_load((folder / ".github/workflows/hexaflow.yml").read_text(encoding="utf-8"))
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(run.startswith("pip install hexaflow") for run in runs)
    assert runs.index("hexaflow validate .") < runs.index("hexaflow test .")


def test_pre_commit_config_runs_validate_on_the_whole_folder(project):
    folder, _ = project
    config = yaml.safe_load((folder / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert hooks["hexaflow-validate"]["entry"] == "hexaflow validate ."
    assert hooks["hexaflow-validate"]["pass_filenames"] is False
    assert re.search(hooks["hexaflow-validate"]["files"], "orders.yaml")


def test_gitignore_keeps_secrets_and_state_out_but_the_schema_in(project):
    folder, _ = project
    lines = (folder / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in lines and ".hexaflow/*" in lines and "!.hexaflow/flow.schema.json" in lines


def test_readme_names_every_flow_and_table(project):
    folder, _ = project
    text = (folder / "README.md").read_text(encoding="utf-8")
    for flow in _flows(folder):
        assert f"`{flow.name}`" in text
        data = yaml.safe_load(flow.read_text(encoding="utf-8"))
        for spec in (data.get("lookups") or {}).values():
            table = spec if isinstance(spec, str) else spec.get("file") or spec["sample"]
            assert f"`{table}`" in text


def test_a_folder_that_is_not_empty_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    result = hexaflow("init", "shop", cwd=tmp_path)
    assert result.returncode == 1
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_force_replaces_the_files_it_writes_and_keeps_the_others(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    (folder / "settings.yaml").write_text("old: true\n", encoding="utf-8")
    result = hexaflow("init", "shop", "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "settings.yaml  (replaced)" in result.stdout
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert "old: true" not in (folder / "settings.yaml").read_text(encoding="utf-8")
    assert hexaflow("validate", ".", cwd=folder).returncode == 0


def test_the_cd_step_pasted_into_a_shell_enters_the_folder_and_runs_nothing_else(tmp_path):
    name = "sp ace;touch injected"
    result = hexaflow("init", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    step = next(line.split(". ", 1)[1] for line in result.stdout.splitlines()
                if line.strip().startswith("1. "))
    shell = subprocess.run(["sh", "-c", f"{step} && pwd"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=TIMEOUT)
    assert shell.returncode == 0 and shell.stdout.strip() == str(tmp_path / name), (step, shell)
    assert not (tmp_path / "injected").exists()


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "shop").write_text("x", encoding="utf-8")
    result = hexaflow("init", "shop", cwd=tmp_path)
    assert result.returncode == 1 and "not a folder" in result.stderr


def test_validate_skips_hidden_files_only_below_the_folder_given(tmp_path):
    """The project's workflow and pre-commit config are hidden; a project that itself lives
    under a hidden folder (~/.work/shop) or is given as ../shop is still found."""
    hidden = tmp_path / ".work"
    hidden.mkdir()
    assert hexaflow("init", "shop", cwd=hidden).returncode == 0
    for given in ("../shop", str(hidden / "shop")):
        result = hexaflow("validate", given, cwd=hidden / "shop")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{len(_flows(hidden / 'shop'))} flow(s) checked: 0 error(s)" in result.stdout
