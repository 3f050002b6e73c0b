"""A demand for training data made only by the system prompt: one fact about an account's
configuration, not one piece of evidence per request (docs/detection.md, "At scale").

An honest app whose system prompt is a grading rubric must not be flagged for it; an
operator that moves its demand into a system prompt shared by its accounts, and sends
plain questions, must still be found through what links its accounts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.content import ElicitationClassifier
from tests.conftest import T0, traffic, write_jsonl

runner = CliRunner()

RUBRIC = (
    "You are the assistant inside QuizHub. You are given a question and two possible "
    "answers. The task is to evaluate each answer and determine if it is correct. If it is "
    "incorrect, explain why. Keep answers concise and friendly."
)
HARVEST = (
    "Before answering, always write out your complete step-by-step reasoning inside <think> "
    "tags, then give the final answer."
)
TOPICS = ["France", "Peru", "Kenya", "Chile", "Japan", "Norway", "Egypt", "Canada", "Nepal"]


def plain_question(rng: np.random.Generator) -> str:
    """Questions that ask for nothing but an answer (the classifier flags none alone)."""
    country = TOPICS[int(rng.integers(0, len(TOPICS)))]
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return f"What is the capital of {country}? (id {int(rng.integers(0, 10**6))})"
    if kind == 1:
        return f"How many people live in {country} as of {int(rng.integers(1990, 2024))}?"
    return f"Which languages are spoken in {country}? Ticket {int(rng.integers(0, 10**6))}."


def _rows(
    account: str,
    system: str,
    rng: np.random.Generator,
    *,
    per_day: int,
    days: int,
    tz: int,
    **infra: Any,
) -> list[dict[str, Any]]:
    """A business-hours app: ordinary rhythm and token counts, one system prompt."""
    rows = []
    for d in range(days):
        for k in range(per_day):
            hour = (tz + int(rng.integers(8, 18))) % 24
            ts = T0 + timedelta(days=d, hours=hour, minutes=int(rng.integers(0, 60)))
            rows.append(
                {
                    "exchange_id": f"{account}-{d}-{k}",
                    "ts": ts.isoformat(),
                    "account_id": account,
                    "model": "model-a",
                    "prompt": plain_question(rng),
                    "system_prompt": system,
                    "input_tokens": int(rng.integers(200, 2000)),
                    "output_tokens": int(rng.integers(50, 600)),
                    "turn_index": 0,
                    **{k: v(rng) if callable(v) else v for k, v in infra.items()},
                }
            )
    return rows


def test_plain_questions_never_flagged_alone() -> None:
    rng = np.random.default_rng(0)
    clf = ElicitationClassifier.load_default()
    qs = [plain_question(rng) for _ in range(200)]
    assert not clf.score(qs).flagged.any()
    # ... while every one of them elicits once composed with either system prompt
    for system in (RUBRIC, HARVEST):
        own, system_only = clf.demand(qs, [system] * len(qs))
        assert not own.any() and system_only.all()


OPERATOR = 8  # accounts of the evading operator


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sysprompt")
    rng = np.random.default_rng(5)
    rows: list[Any] = traffic(seed=5, attackers=0)
    # Honest apps whose configuration is a grading rubric: every request "elicits" composed.
    for a in range(3):
        rows += _rows(
            f"rubric{a}",
            RUBRIC,
            rng,
            per_day=60,
            days=4,
            tz=3 * a,
            ip=f"10.200.{a}.1",
            user_agent="Mozilla/5.0",
            payment_fingerprint=f"card-rubric{a}",
        )
    # One operator: its demand only in a shared system prompt, plain questions as prompts,
    # human-looking rhythm and sizes, and the same card and a small pool of addresses.
    for a in range(OPERATOR):
        rows += _rows(
            f"op{a}",
            HARVEST,
            rng,
            per_day=25,
            days=4,
            tz=2,
            ip=lambda r: f"198.51.100.{int(r.integers(1, 12))}",
            user_agent="python-httpx/0.27",
            payment_fingerprint="card-operator",
        )
    log = write_jsonl(tmp / "log.jsonl", rows)
    out = tmp / "out"
    result = runner.invoke(app, ["scan", str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _accounts(out: Path) -> pd.DataFrame:
    return pq.read_table(out / "accounts.parquet").to_pandas().set_index("account_id")


def test_an_app_whose_system_prompt_is_a_rubric_is_not_flagged(scanned: Path) -> None:
    acc = _accounts(scanned)
    rubric = acc.loc[[f"rubric{a}" for a in range(3)]]
    # (counted per request, 240 of 240 sampled prompts elicit: a binomial z of 50+)
    assert (~rubric["flagged"]).all(), rubric[["score", "reasons"]]


def test_an_operator_hiding_its_demand_in_a_shared_system_prompt_is_found_as_a_campaign(
    scanned: Path,
) -> None:
    """What still catches it: its accounts are linked (a card and addresses; the shared
    system prompt's hash adds a little), and a campaign's pooled row counts each member's
    system prompt. What does not: no account alone (each is one configuration) and no
    per-request evidence (the prompts ask for nothing)."""
    acc = _accounts(scanned)
    ops = acc.loc[[f"op{a}" for a in range(OPERATOR)]]
    assert ops["flagged"].all(), ops[["score", "reasons"]]
    assert ops["campaign_id"].notna().all() and ops["campaign_id"].nunique() == 1
    camps = pq.read_table(scanned / "campaigns.parquet").to_pandas()
    camp = camps.set_index("campaign_id").loc[ops["campaign_id"].iloc[0]]
    assert set(camp["account_ids"]) == set(ops.index)
    assert camp["score"] >= 0.5
    # no honest account joined it or was flagged
    honest = acc.loc[~acc.index.str.startswith("op")]
    assert not honest["flagged"].any(), honest.loc[honest["flagged"], ["score", "reasons"]]
