"""The generated reference pages match the code: a new option or setting fails here until regenerated."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("page", sorted(GEN.PAGES), ids=lambda p: p.name)
def test_generated_page_is_current(page: Path) -> None:
    expected = GEN.PAGES[page]()
    current = page.read_text(encoding="utf-8") if page.is_file() else ""
    if current != expected:
        diff = "".join(list(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                                 "in the repository", "from the code"))[:40])
        pytest.fail(f"{page.relative_to(ROOT)} is stale: run make docs-gen and commit it.\n{diff}")


def test_cli_reference_lists_every_command_and_option() -> None:
    import typer

    from heimdall_cli.cli import app

    page = GEN.cli_reference()
    root = typer.main.get_command(app)
    for path, cmd, ctx in GEN._commands(root, root.context_class(root, info_name="heimdall"), "heimdall"):
        assert f"`{path}`" in page
        for param in cmd.get_params(ctx):
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt in page, f"{path} {opt}"


def test_configuration_reference_lists_every_setting_with_its_variable() -> None:
    from heimdall_cli.settings import Settings
    from heimdall_cli.settings.models import walk

    page = GEN.configuration_reference()
    for key, _, _ in walk(Settings()):
        assert f"| `{key}` |" in page, key
        assert "HEIMDALL_" + key.upper().replace(".", "__") in page, key
    assert "`MLFLOW_TRACKING_URI`" in page and "*(secret)*" in page


def test_check_mode_names_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(GEN, "PAGES", {stale: GEN.cli_reference})
    monkeypatch.setattr(GEN, "ROOT", tmp_path)
    assert GEN.main(["--check"]) == 1
    assert "cli.md is stale: run make docs-gen" in capsys.readouterr().err
    assert GEN.main([]) == 0 and GEN.main(["--check"]) == 0
