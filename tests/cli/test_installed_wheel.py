"""The built wheel, installed into a fresh venv outside the checkout, trains from a packaged profile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_the_quickstart_profile(tmp_path):
    # Build from a copy of the sources: the checkout (and its build/ folder) stays untouched.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "heimdall_cli", src / "heimdall_cli", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                  str(src)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("heimdall_cli-*.whl")

    # A fresh venv; its dependencies are the ones already installed (no network), the package is the wheel.
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
    Path(site.stdout.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                     cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "job"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import heimdall_cli; print(heimdall_cli.__file__)"], cwd=elsewhere)
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy, not the checkout's

    trained = _run([str(venv / "bin" / "heimdall"), "train", "--config", "quickstart", "--epochs", "1"], cwd=elsewhere)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "FINISHED" in trained.stdout
    assert (elsewhere / "mlflow.db").is_file()

    init = _run([str(venv / "bin" / "heimdall"), "config", "init", "sweep"], cwd=elsewhere)
    assert init.returncode == 0 and (elsewhere / "sweep.yaml").read_text().startswith("# heimdall sweep")
