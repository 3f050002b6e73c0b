"""Scenario configuration: populations, campaigns, camouflage knobs and scales.

Volumes are given at full scale (42 days); smaller scales shrink account counts and the
time span but never the per-account behaviour, so a hydra account sends about 27
exchanges a day whatever the scale.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from distillguard.errors import DistillGuardError

BenignKind = Literal[
    "chat", "dev_app", "enterprise_batch", "benchmark", "reseller", "agent", "nat", "gray_synthetic"
]
CampaignKind = Literal["deepseek_like", "moonshot_like", "minimax_like", "hydra"]


@dataclass(frozen=True)
class Camouflage:
    """How hard a campaign tries to look like ordinary customers (0/False = not at all)."""

    human_timing: float = 0.0  # 0: machine schedule (synchronised or 24/7); 1: diurnal, jittered
    unique_ips: bool = False  # each account its own residential IPs instead of a shared pool
    shared_payment: float = 0.6  # share of accounts paying with one of a few shared instruments
    paraphrase: float = 0.2  # 0: a couple of fixed wrapper phrasings; 1: the full paraphrase space
    benign_mix: float = 0.0  # share of each account's traffic that is innocuous cover traffic
    elicitation: float = 0.85  # share of harvesting prompts carrying an explicit reasoning demand
    mimic_params: bool = False  # sample temperature/max_tokens/stream like ordinary users
    aged_accounts: bool = False  # accounts bought or aged for months instead of created in bursts


@dataclass(frozen=True)
class PopulationSpec:
    name: str
    kind: BenignKind
    accounts: int  # at full scale
    daily: float  # median exchanges per account per day
    min_accounts: int = 2  # floor at small scales so every population is represented


@dataclass(frozen=True)
class CampaignSpec:
    campaign_id: str
    kind: CampaignKind
    accounts: int  # at full scale
    daily: float  # exchanges per account per day, identical at every scale
    camouflage: Camouflage = field(default_factory=Camouflage)
    relay_share: float = 0.0  # share of an account's traffic relayed from real users (hydra)
    # Share of each account's sessions sent at campaign-wide dispatch moments (a shared
    # orchestrator); 0: every account's timing is independent given its daily shape.
    orchestrated: float = 0.0
    start_frac: float = 0.0  # campaign window as fractions of the simulated span
    end_frac: float = 1.0
    min_accounts: int = 6


@dataclass(frozen=True)
class Scale:
    name: str
    days: int
    factor: float  # multiplies full-scale account counts
    chunk_hours: int  # generation/writing unit: bounds memory


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", days=3, factor=0.0012, chunk_hours=24),
    "default": Scale("default", days=14, factor=0.006, chunk_hours=24),
    "full": Scale("full", days=42, factor=1.0, chunk_hours=3),
}

START = "2026-03-02T00:00:00+00:00"  # a Monday, fixed so runs are comparable
RELEASE_FRAC = 0.6  # the new model ships 60% of the way through the span


def default_populations() -> tuple[PopulationSpec, ...]:
    return (
        PopulationSpec("chat", "chat", accounts=65_000, daily=14.0, min_accounts=40),
        PopulationSpec("dev_app", "dev_app", accounts=2_500, daily=150.0, min_accounts=12),
        PopulationSpec(
            "enterprise_batch", "enterprise_batch", accounts=80, daily=4_000.0, min_accounts=2
        ),
        PopulationSpec("benchmark", "benchmark", accounts=150, daily=600.0, min_accounts=4),
        PopulationSpec("reseller", "reseller", accounts=50, daily=2_500.0, min_accounts=2),
        PopulationSpec("agent", "agent", accounts=2_000, daily=150.0, min_accounts=8),
        PopulationSpec("nat", "nat", accounts=5_000, daily=18.0, min_accounts=50),
        PopulationSpec(
            "gray_synthetic", "gray_synthetic", accounts=100, daily=400.0, min_accounts=3
        ),
    )


def default_campaigns() -> tuple[CampaignSpec, ...]:
    camo = Camouflage(
        human_timing=0.9,
        unique_ips=True,
        shared_payment=0.0,
        paraphrase=1.0,
        benign_mix=0.25,
        elicitation=0.4,
        mimic_params=True,
        aged_accounts=True,
    )
    return (
        CampaignSpec(
            "deepseek_like-a",
            "deepseek_like",
            accounts=36,
            daily=60.0,
            camouflage=Camouflage(shared_payment=0.8, paraphrase=0.1),
            start_frac=0.1,
            end_frac=0.9,
        ),
        CampaignSpec(
            "deepseek_like-b",
            "deepseek_like",
            accounts=24,
            daily=60.0,
            camouflage=camo,
            start_frac=0.1,
            end_frac=0.9,
        ),
        CampaignSpec(
            "moonshot_like-a",
            "moonshot_like",
            accounts=250,
            daily=190.0,
            camouflage=Camouflage(shared_payment=0.3, paraphrase=0.3, human_timing=0.3),
        ),
        CampaignSpec(
            "moonshot_like-b", "moonshot_like", accounts=170, daily=190.0, camouflage=camo
        ),
        CampaignSpec(
            "minimax_like-a",
            "minimax_like",
            accounts=900,
            daily=210.0,
            camouflage=Camouflage(shared_payment=0.5, paraphrase=0.2),
        ),
        CampaignSpec("minimax_like-b", "minimax_like", accounts=600, daily=210.0, camouflage=camo),
        CampaignSpec(
            "hydra-a",
            "hydra",
            accounts=15_000,
            daily=27.5,
            relay_share=0.3,
            camouflage=Camouflage(shared_payment=0.2, paraphrase=0.4),
        ),
        CampaignSpec(
            "hydra-b",
            "hydra",
            accounts=10_000,
            daily=27.5,
            relay_share=0.3,
            camouflage=replace(camo, benign_mix=0.0),
        ),
    )


@dataclass(frozen=True)
class Scenario:
    """Everything the simulator needs besides the seed and scale."""

    populations: tuple[PopulationSpec, ...] = field(default_factory=default_populations)
    campaigns: tuple[CampaignSpec, ...] = field(default_factory=default_campaigns)
    start: str = START

    @classmethod
    def from_toml(cls, path: Path) -> Scenario:
        """Read a scenario: ``[[population]]`` and ``[[campaign]]`` tables (with an optional
        ``[campaign.camouflage]`` sub-table); a missing section keeps the defaults."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise DistillGuardError(f"cannot read scenario {path}: {err}") from err
        base = cls()
        pops = base.populations
        camps = base.campaigns
        try:
            if "population" in raw:
                pops = tuple(PopulationSpec(**p) for p in raw["population"])
            if "campaign" in raw:
                camps = tuple(_campaign(c) for c in raw["campaign"])
        except TypeError as err:
            raise DistillGuardError(f"invalid scenario {path}: {err}") from err
        return cls(populations=pops, campaigns=camps, start=str(raw.get("start", START)))


def _campaign(raw: dict[str, Any]) -> CampaignSpec:
    data = dict(raw)
    camo = data.pop("camouflage", {})
    known = {f.name for f in fields(Camouflage)}
    unknown = set(camo) - known
    if unknown:
        raise TypeError(f"unknown camouflage knobs: {sorted(unknown)}")
    return CampaignSpec(**data, camouflage=Camouflage(**camo))


def scaled_accounts(full: int, factor: float, minimum: int) -> int:
    return max(minimum, round(full * factor))
