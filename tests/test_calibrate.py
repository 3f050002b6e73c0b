"""calibrate: a threshold from one benign sample holds its FPR on another."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillguard.calibrate import binomial_upper, calibrate, policy_text, threshold_for
from distillguard.errors import ConfigError
from distillguard.policy import load_policy
from distillguard.scan import run_scan
from distillguard.simulate import simulate

TARGET = 0.05


def benign_sample(root: Path, seed: int) -> tuple[Path, Path]:
    sim = root / f"sim{seed}"
    simulate(sim, seed=seed, scale="tiny")
    truth = pd.read_parquet(sim / "truth_accounts.parquet")
    benign = set(truth.loc[truth["label"] == "benign", "account_id"])
    ex = pd.read_parquet(sim / "exchanges.parquet")
    acc = pd.read_parquet(sim / "accounts.parquet")
    ex[ex["account_id"].isin(benign)].to_parquet(sim / "benign.parquet")
    acc[acc["account_id"].isin(benign)].to_parquet(sim / "benign_accounts.parquet")
    return sim / "benign.parquet", sim / "benign_accounts.parquet"


def test_threshold_for_flags_at_most_the_target_share() -> None:
    rng = np.random.default_rng(0)
    scores = rng.beta(1, 8, size=1000)
    for target in (0.0, 0.001, 0.01, 0.05, 0.2):
        thr = threshold_for(scores, target)
        assert (scores >= thr).sum() <= int(target * len(scores))
        # and not needlessly high: one step lower would flag more than allowed, or it is
        # at the floor
        allowed = int(target * len(scores))
        assert (scores >= np.sort(scores)[::-1][allowed]).sum() > allowed or thr <= 0.05


def test_policy_text_keeps_comments_and_loads(tmp_path: Path) -> None:
    from importlib import resources

    base = resources.files("distillguard.policies").joinpath("default.toml").read_text()
    text = policy_text(base, 0.6123, 0.25, ["calibrated for a test"])
    data = tomllib.loads(text)
    assert data["scan"]["threshold"] == pytest.approx(0.6123)
    assert data["linking"]["candidate_threshold"] == pytest.approx(0.25)
    # every comment line of the base survives
    assert [ln for ln in base.splitlines() if ln.startswith("#")] == [
        ln for ln in text.splitlines() if ln.startswith("#")
    ][2:]
    (tmp_path / "p.toml").write_text(text)
    assert load_policy(tmp_path / "p.toml").threshold == pytest.approx(0.6123)


def test_bad_target_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="target FPR"):
        calibrate([tmp_path / "x.parquet"], tmp_path / "p.toml", target_fpr=1.5)


@pytest.mark.slow
def test_calibrated_fpr_holds_on_held_out_benign(tmp_path: Path) -> None:
    train, train_acc = benign_sample(tmp_path, seed=1)
    held, held_acc = benign_sample(tmp_path, seed=2)
    out = tmp_path / "calibrated.toml"
    r = calibrate([train], out, target_fpr=TARGET, accounts=train_acc, work_dir=tmp_path)
    assert r.accounts > 100
    assert r.fpr <= TARGET  # on its own data, by construction (verified by a rescan)
    assert r.flagged > 0  # and not by flagging nothing: the threshold sits in the benign tail
    pol = load_policy(out)
    assert pol.threshold == pytest.approx(r.threshold, abs=1e-5)
    held_out = run_scan([held], tmp_path / "held", accounts=held_acc, policy=pol).accounts
    fpr = float(held_out["flagged"].mean())
    n = len(held_out)
    # a different benign population: the observed share is binomial around the true rate,
    # and the threshold is a quantile estimated from r.accounts accounts
    allowance = binomial_upper(TARGET, n, r.accounts)
    assert fpr <= allowance, (fpr, n, r.threshold)
    print(
        f"calibrated threshold {r.threshold:.4f}; train FPR {r.fpr:.4f} ({r.accounts}); "
        f"held-out FPR {fpr:.4f} ({n}); allowance {allowance:.4f}"
    )
