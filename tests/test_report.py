"""report.html: self-contained, redacted by default, and renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from distillguard.engine import connect
from distillguard.outputs.report import report_exchanges, write_report
from distillguard.scan import run_scan
from distillguard.simulate import simulate

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: apt-get install chromium (see .ci/run)")
    return exe


def render(page: Path, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console messages) of a page loaded from a file."""
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    proc = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            k: (list(v) if hasattr(v, "tolist") and not isinstance(v, str) else v)
            for k, v in r.items()
        }
        for r in df.to_dict("records")
    ]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report")
    simulate(root / "sim", seed=0, scale="tiny")
    res = run_scan(
        [root / "sim" / "exchanges.parquet"],
        root / "scan",
        accounts=root / "sim" / "accounts.parquet",
    )
    campaigns = _rows(pd.read_parquet(root / "scan" / "campaigns.parquet"))
    con = connect()
    exchanges = report_exchanges(con.read_parquet(root / "sim" / "exchanges.parquet"), campaigns)
    con.disconnect()
    return {
        "root": root,
        "accounts": pd.read_parquet(root / "scan" / "accounts.parquet"),
        "campaigns": campaigns,
        "summary": res.summary,
        "exchanges": exchanges,
    }


def _write(scanned: dict[str, Any], path: Path, **kw: Any) -> str:
    write_report(
        path,
        scanned["accounts"],
        scanned["campaigns"],
        scanned["summary"],
        exchanges=scanned["exchanges"],
        **kw,
    )
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained_and_ranked(scanned: dict[str, Any], tmp_path: Path) -> None:
    page = _write(scanned, tmp_path / "report.html")
    assert scanned["campaigns"], "the tiny scenario must yield campaigns to report"
    # nothing to fetch: no external scripts, styles, images or fonts
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert not re.search(r"url\(", page)
    assert "Content-Security-Policy" in page
    ids = re.findall(r'<section class="campaign" id="([^"]+)"', page)
    scores = {c["campaign_id"]: c["score"] for c in scanned["campaigns"]}
    assert ids and [scores[i] for i in ids] == sorted(scores.values(), reverse=True)
    # each campaign has its timeline, graph and capability mix
    for kind in ("timeline", "graph", "bars"):
        assert page.count(f'class="chart {kind}"') == len(ids)


def test_prompts_redacted_unless_asked(scanned: dict[str, Any], tmp_path: Path) -> None:
    ex = scanned["exchanges"]
    long_prompts = [p for p in ex["prompt"].dropna().unique() if len(p) > 40][:200]
    assert long_prompts
    redacted = _write(scanned, tmp_path / "r.html")
    assert not any(p[:40] in redacted for p in long_prompts)
    assert "redacted" in redacted
    shown = _write(scanned, tmp_path / "s.html", show_prompts=True)
    assert any(p[:40].replace("&", "&amp;").replace("<", "&lt;") in shown for p in long_prompts)


def test_report_renders_in_chromium_without_console_errors(
    scanned: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "report.html"
    _write(scanned, path, show_prompts=True)
    dom, console = render(path, tmp_path, "--dump-dom")
    assert console == []
    n = min(len(scanned["campaigns"]), 50)
    assert f'data-campaigns-rendered="{n}"' in dom  # the inline script ran to the end
    charts = int(re.search(r'data-charts-rendered="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert charts >= 3 * n
    shot = tmp_path / "shot.png"
    render(path, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000")
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few kB


def test_console_check_catches_errors_and_network_loads(tmp_path: Path) -> None:
    # the check above is only worth something if it sees what it is meant to catch
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        "<img src='https://example.com/x.png'><script>throw new Error('boom')</script>"
        "</body></html>"
    )
    _, console = render(bad, tmp_path, "--dump-dom")
    assert any("Uncaught Error: boom" in c for c in console)
    assert any("Content Security Policy" in c for c in console)


def test_report_without_exchange_rows_still_renders(
    scanned: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "bare.html"
    write_report(path, scanned["accounts"], scanned["campaigns"], scanned["summary"])
    page = path.read_text(encoding="utf-8")
    assert "capability mix unknown" in page or scanned["campaigns"][0].get("capabilities")
    assert page.count('<section class="campaign"') == min(len(scanned["campaigns"]), 50)
