"""Labelled traffic that looks like the real thing (CONTRACT §3).

``simulate(out_dir)`` writes ``exchanges.parquet`` and ``accounts.parquet`` in the input
format, plus the ground truth ``truth_accounts.parquet`` and ``truth_exchanges.parquet``.
Populations, campaigns and their camouflage knobs are in :mod:`.config`; every source is
documented in ``docs/simulator.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillguard.simulate.config import (
    SCALES,
    Camouflage,
    CampaignSpec,
    PopulationSpec,
    Scale,
    Scenario,
)

__all__ = [
    "SCALES",
    "Camouflage",
    "CampaignSpec",
    "PopulationSpec",
    "Scale",
    "Scenario",
    "simulate",
]


def simulate(
    out_dir: Path,
    *,
    seed: int = 0,
    scale: str = "default",
    progress: Callable[[int, int], None] | None = None,
    scenario: Scenario | None = None,
) -> dict[str, Any]:
    """Generate a labelled scenario into ``out_dir`` and return a small summary.

    ``progress(done, total)`` is called after each time chunk. The output is identical
    for the same seed, scale and scenario.
    """
    from distillguard.simulate.engine import run

    return run(Path(out_dir), seed=seed, scale=scale, scenario=scenario, progress=progress)
