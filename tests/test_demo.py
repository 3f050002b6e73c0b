"""`distillguard demo`: the README's first command, end to end on the tiny scale."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from distillguard.cli import app


def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--scale", "tiny", "--out", str(out), "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "distillguard demo" in result.output and "flagged" in result.output
    ev = json.loads((out / "scan" / "evaluation.json").read_text())
    summary = json.loads((out / "scan" / "summary.json").read_text())
    assert summary["rows_read"] == summary["rows_valid"] > 0
    overall = ev["overall_excluding_gray"]
    # the plumbing is what is tested here; the quality numbers live in docs/detection.md
    assert overall["attack_accounts"] > 0 and overall["flagged"] > 0
    assert overall["precision"] is not None and overall["precision"] > 0.5
    assert (out / "scan" / "report.html").is_file()
