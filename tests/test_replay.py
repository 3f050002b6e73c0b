"""replay: which accounts and exchanges a policy acts on, when, and the collateral."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillguard.gateway.config import RateLimit
from distillguard.replay import gcra_allowed, read_account_set, replay, summary_rows
from tests.conftest import traffic, write_jsonl


def test_gcra_admits_burst_then_rate() -> None:
    ts = np.arange(0, 10, 0.1)  # 10 requests a second for 10 s
    ok = gcra_allowed(ts, RateLimit(rate=1.0, burst=5))
    assert ok[:5].all() and not ok[5]
    assert 5 + 9 <= ok.sum() <= 5 + 11  # the burst, then one per second


def test_account_lists_in_three_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("# known good\nu1\nu2\n")
    (tmp_path / "a.json").write_text('["u1", "u2"]')
    pd.DataFrame({"account_id": ["u1", "u2"]}).to_parquet(tmp_path / "a.parquet")
    for name in ("a.txt", "a.json", "a.parquet"):
        assert read_account_set(tmp_path / name) == {"u1", "u2"}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay")
    path = write_jsonl(root / "traffic.jsonl", traffic(benign=40, attackers=6, days=4))
    truth = [{"account_id": f"u{i}", "label": "benign"} for i in range(40)]
    truth += [{"account_id": f"h{i}", "label": "attack"} for i in range(6)]
    pd.DataFrame(truth).to_parquet(root / "truth.parquet")
    return path


def test_replay_acts_on_harvesters_after_listing(logs: Path, tmp_path: Path) -> None:
    truth = logs.parent / "truth.parquet"
    allow = tmp_path / "allow.txt"
    allow.write_text("h0\n")  # pretend an operator vouched for one harvester
    r = replay([logs], tmp_path / "out", truth=truth, allow=allow)
    acc = r.accounts.set_index("account_id")
    harvesters = [f"h{i}" for i in range(6)]
    assert set(harvesters) <= set(acc.index)
    hit = acc.loc[harvesters, "action"]
    assert hit.isin(["throttle", "verify", "degrade", "block"]).all(), hit
    # nothing happens before the daily job lists the account, everything after
    ex = r.exchanges
    for a in harvesters:
        listed = acc.loc[a, "listed_at"]
        mine = ex[ex["account_id"] == a]
        assert (mine["ts"] >= listed).all()
        assert len(mine) == acc.loc[a, "exchanges_after_listing"] > 0
        first = acc.loc[a, f"first_{acc.loc[a, 'action']}_at"]
        assert first >= listed
    # collateral: the allow-listed harvester is reported, benign users are not hit here
    assert list(r.collateral["account_id"]) == ["h0"]
    assert r.collateral["collateral_reason"].iloc[0] == "allow-listed"
    assert (tmp_path / "out" / "replay_accounts.parquet").exists()
    assert pd.read_parquet(tmp_path / "out" / "replay_exchanges.parquet").shape[0] == len(ex)
    counts = {a: n for a, n, _, _ in summary_rows(r)}
    assert sum(counts.values()) == int(acc["action"].ne("allow").sum())


def test_policy_allow_list_and_ladder_change_the_outcome(logs: Path, tmp_path: Path) -> None:
    from importlib import resources

    base = resources.files("distillguard.policies").joinpath("default.toml").read_text()
    # rungs raised out of reach, lists only watch, h1 known-good: only watch remains, and
    # the suspect rate limit throttles the round-the-clock harvesters beyond it
    policy = tmp_path / "p.toml"
    policy.write_text(
        base + "\n[gateway.ladder]\nwatch = 0.3\nthrottle = 0.5\nverify = 1.1\ndegrade = 1.1\n"
        'block = 1.1\nallow_accounts = ["h1"]\n'
        '[gateway.lists]\nflagged = "watch"\ncampaign = "watch"\n'
        "[gateway.suspect_rate]\nrate = 0.0005\nburst = 3\n"
    )
    r = replay([logs], tmp_path / "out", policy=policy, truth=logs.parent / "truth.parquet")
    acc = r.accounts.set_index("account_id")
    assert acc.loc["h1", "action"] == "allow"
    others = acc.loc[[f"h{i}" for i in range(6) if i != 1]]
    assert others["action"].eq("throttle").all()
    assert (others["throttle_exchanges"] > 0).all() and (others["watch_exchanges"] > 0).all()
    assert r.collateral.empty
