"""The engine's code stays in small parts: no function takes more than six parameters (a run's
settings travel in one context instead), runner.py stays under 300 lines, and the process
environment is read in one place, engine/environment.py (issue 13)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
ENVIRONMENT_READER = "engine/environment.py"
# Names of the os module that read (or change) the process environment.
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
MAX_PARAMETERS = 6
MAX_RUNNER_LINES = 300


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    """Parameters a caller can pass: self/cls of a method left out, *args and **kwargs one each."""
    args = function.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list)
    if in_class and not is_static and named and named[0].arg in ("self", "cls"):
        named = named[1:]
    return len(named) + (args.vararg is not None) + (args.kwarg is not None)


def long_signatures(source: str, filename: str) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = parameter_count(child, in_class)
                if count > MAX_PARAMETERS:
                    found.append(f"{filename}:{child.lineno} {child.name}() takes {count} parameters")
                visit(child, False)
            elif isinstance(child, ast.ClassDef):
                visit(child, True)
            else:
                visit(child, in_class)

    visit(ast.parse(source, filename), False)
    return found


def test_the_counter_sees_methods_varargs_and_keyword_only_parameters():
    source = ("def a(p1, p2, p3, p4, p5, p6): pass\n"
              "def b(p1, p2, p3, p4, p5, *rest, **options): pass\n"
              "class C:\n"
              "    def m(self, p1, p2, p3, p4, p5, p6): pass\n"
              "    def n(self, p1, *, p2, p3, p4, p5, p6, p7): pass\n"
              "    @staticmethod\n"
              "    def s(self, p1, p2, p3, p4, p5, p6): pass\n"
              "def outer():\n"
              "    def inner(p1, p2, p3, p4, p5, p6, p7): pass\n")
    assert long_signatures(source, "x.py") == [
        "x.py:2 b() takes 7 parameters", "x.py:5 n() takes 7 parameters",
        "x.py:7 s() takes 7 parameters", "x.py:9 inner() takes 7 parameters"]


def test_no_engine_function_takes_more_than_six_parameters():
    found = [line for path in sorted(ENGINE.glob("*.py"))
             for line in long_signatures(path.read_text(encoding="utf-8"), f"engine/{path.name}")]
    assert not found, ("functions with more than six parameters (pass a context or an options "
                       "object instead):\n" + "\n".join(found))


def test_runner_is_under_300_lines():
    lines = len((ENGINE / "runner.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_RUNNER_LINES, f"engine/runner.py has {lines} lines; split a part out of it"


def environment_reads(source: str, filename: str) -> list[str]:
    """Each use of os.environ / os.getenv (and the like), as ``os.X`` or imported from os."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            found.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names
                      if a.name in ENVIRONMENT_NAMES or a.name == "*"]
    return [f"{filename}:{line} {what}" for line, what in sorted(found)]


def test_the_environment_finder_sees_every_spelling():
    source = ("import os\nos.environ.get('A')\nos.getenv('B')\nfrom os import environ\n"
              "from os import path\nos.path.join('a')\n")
    assert environment_reads(source, "x.py") == [
        "x.py:2 os.environ", "x.py:3 os.getenv", "x.py:4 from os import environ"]


def test_the_process_environment_is_read_only_in_engine_environment():
    found = [line for folder in ("engine", "connectors")
             for path in sorted((ROOT / folder).rglob("*.py"))
             if path.relative_to(ROOT).as_posix() != ENVIRONMENT_READER
             for line in environment_reads(path.read_text(encoding="utf-8"),
                                           path.relative_to(ROOT).as_posix())]
    assert not found, ("the process environment is read outside engine/environment.py (take it "
                       "from there, or from the connector context's config):\n" + "\n".join(found))
