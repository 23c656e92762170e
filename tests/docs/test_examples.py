"""Every example block of the guides marked ``console title="Runs offline"`` runs and gives its exit codes.

The blocks run with the embedded backend in a fresh folder (with ``configs/`` linked in), as
a person who copies them would; what each command must exit with is in the block itself
(see tests/docs/_examples.py and the Development page).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs._examples import Command, examples, parse, script

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = examples(DOCS)


def test_the_guides_have_offline_examples() -> None:
    pages = {e.page for e in EXAMPLES}
    assert len(EXAMPLES) >= 4 and any(p.startswith("guides/") for p in pages), pages


def test_parse_reads_commands_continuations_and_documented_codes() -> None:
    body = "$ heimdall a \\\n    --b c\nsome output\n$ heimdall d\nError: no\n$ echo $?\n4\n$ X=$(heimdall e -q)\n"
    assert parse(body) == [Command("heimdall a  --b c"), Command("heimdall d", 4), Command("X=$(heimdall e -q)")]


@pytest.mark.parametrize(
    "example", [pytest.param(e, id=e.id, marks=[pytest.mark.slow] if e.slow else []) for e in EXAMPLES]
)
def test_offline_example_gives_the_documented_exit_codes(example, tmp_path: Path) -> None:
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HEIMDALL_TRACKING__REGISTRY_SERVER": "false", "COLUMNS": "100"}
    done = subprocess.run(["bash", "-c", script(example)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{example.id}: {done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
