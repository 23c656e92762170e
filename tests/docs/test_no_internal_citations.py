"""No user-facing text cites files users do not have, or speaks of "the seed".

Checked: the package (help, setting descriptions, messages, docstrings), the shipped
configs, the docker files, the README and the documentation site. Paths the docs cite in
backticks (tests/…, bench/…, heimdall_cli/…) must exist in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLACES = ["heimdall_cli", "configs", "docker", "docs", "README.md", "mkdocs.yml", "Makefile"]
FORBIDDEN = re.compile(r"DOMAIN\.md|DESIGN\.md|STYLE\.md|\bthe seed\b|\bseed document\b|seed/0",
                       re.IGNORECASE)
_REPO_PATH = re.compile(r"`((?:tests|bench|heimdall_cli|configs|docker|scripts|docs)/[\w./-]+\.(?:py|md|yaml|yml|sh))`")


def _files() -> list[Path]:
    files: list[Path] = []
    for place in PLACES:
        path = ROOT / place
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file() and p.suffix not in {".pyc", ".png", ".onnx"}
                         and "__pycache__" not in p.parts)
    return files


def test_no_internal_notes_or_seed_cited() -> None:
    hits = []
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


def test_the_check_sees_a_planted_citation() -> None:
    """Positive control for the pattern above."""
    assert FORBIDDEN.search("as DOMAIN.md says") and FORBIDDEN.search("The seed's API")
    assert not FORBIDDEN.search("data.seed draws the transmissions; --seed 0")


@pytest.mark.parametrize("page", sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_the_docs_cite_exist(page: Path) -> None:
    missing = sorted({m for m in _REPO_PATH.findall(page.read_text(encoding="utf-8")) if not (ROOT / m).exists()})
    assert not missing, f"{page.relative_to(ROOT)} cites files not in the repository: {missing}"
