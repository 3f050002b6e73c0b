"""The package stays typed (mypy --strict) and lint-clean (ruff): checked like any test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    out = _run(ruff, "check", "src", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_clean() -> None:
    out = _run(sys.executable, "-m", "mypy", "src/distillguard")
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_is_typed() -> None:
    assert (ROOT / "src" / "distillguard" / "py.typed").is_file()
