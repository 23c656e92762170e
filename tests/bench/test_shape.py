"""Every script in bench/ has one shape: ``--quick``, the shared parser, a VERDICT last line, nothing from tests/."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def _common():
    spec = importlib.util.spec_from_file_location("bench_common_under_test", BENCH / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _calls(tree: ast.AST) -> set[str]:
    return {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree) if isinstance(node, ast.Call)}


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_has_the_common_shape(script: Path) -> None:
    tree = ast.parse(script.read_text(), filename=str(script))
    calls, imported = _calls(tree), _imported(tree)
    assert "tests" not in imported, "import the services from devtools.services, not from tests/"
    assert "bench_parser" in calls, "build the parser with _common.bench_parser(__doc__, quick=...)"
    assert "ArgumentParser" not in calls, "one parser for all: _common.bench_parser"
    assert "print_verdict" in calls, "end with _common.print_verdict(name, ok, measured, target)"
    assert "sys.argv" not in ast.unparse(tree), "parse arguments with the shared parser, not sys.argv"


def test_verdict_line_format() -> None:
    c = _common()
    assert c.verdict_line("bench_x", True, "0.99", ">= 0.98") == "VERDICT bench_x: PASS 0.99 vs target >= 0.98"
    assert c.verdict_line("bench_x", False, "0.90", ">= 0.98").startswith("VERDICT bench_x: FAIL 0.90")
    assert c.verdict_line("bench_x", None, "12 samples/s", "none").startswith("VERDICT bench_x: INFO ")


def test_every_parser_takes_quick() -> None:
    parser = _common().bench_parser("Title line.\n\nMore text.", quick="tiny")
    assert parser.parse_args(["--quick"]).quick is True
    assert parser.parse_args([]).quick is False
    assert parser.description == "Title line."
