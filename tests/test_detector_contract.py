"""One contract, every registered detector (after scikit-learn's parametrize_with_checks)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from distillguard.detectors import DETECTORS, Detector, create
from distillguard.errors import DetectorError

ALL = sorted(DETECTORS)


def features(n: int, seed: int = 0, *, outlier: bool = True) -> pd.DataFrame:
    """A population of ordinary accounts; the last one (if ``outlier``) is extreme on every
    input in the suspicious direction."""
    rng = np.random.default_rng(seed)
    cols = sorted({c for d in DETECTORS.values() for c in d.inputs})
    data = {c: rng.lognormal(0.0, 0.3, n) * 0.2 for c in cols}
    data["exchanges"] = rng.integers(20, 400, n).astype(float)
    data["content_sampled"] = np.minimum(data["exchanges"], 60.0)
    df = pd.DataFrame(data, index=pd.Index([f"a{i}" for i in range(n)], name="account_id"))
    df["peer_group"] = np.where(np.arange(n) % 2 == 0, "pro", "free")
    if outlier:
        df.iloc[-1, df.columns.get_indexer(cols)] = df[cols].max().to_numpy() * 50 + 5
        df.iloc[-1, df.columns.get_indexer(["exchanges", "content_sampled"])] = 5000.0
    return df


@pytest.fixture(params=ALL)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_registry_is_not_empty() -> None:
    assert "peer_profile" in DETECTORS


def test_constructor_only_stores_parameters(name: str) -> None:
    det = create(name)
    assert not det.is_fitted
    assert isinstance(det.get_params(), dict)
    clone = type(det)(**det.get_params())
    assert clone.get_params() == det.get_params()


def test_score_before_fit_is_an_error(name: str) -> None:
    with pytest.raises(DetectorError, match="fitted"):
        create(name).score(features(10))


def test_scores_are_bounded_and_consistent(name: str) -> None:
    X = features(200)
    out = create(name).fit(X).score(X)
    assert len(out.score) == len(out.raw) == len(out.reasons) == len(X)
    assert np.isfinite(out.raw).all() and np.isfinite(out.score).all()
    assert ((out.score >= 0) & (out.score <= 1)).all()
    order = np.argsort(out.raw, kind="stable")
    assert (np.diff(out.score[order]) >= -1e-12).all(), "score must be monotone in raw"


def test_planted_outlier_ranks_first_with_reasons(name: str) -> None:
    X = features(200)
    out = create(name).fit(X).score(X)
    assert out.raw[-1] == out.raw.max() and out.raw[-1] > np.median(out.raw)
    assert out.reasons[-1], "the most suspicious account must say why"


def test_flagged_accounts_have_reasons(name: str) -> None:
    X = features(300, seed=5)
    out = create(name).fit(X).score(X)
    for s, r in zip(out.score, out.reasons, strict=True):
        if s >= 0.5:
            assert r and all(isinstance(x, str) and x for x in r)


def test_deterministic(name: str) -> None:
    X = features(150, seed=2)
    a = create(name).fit(X).score(X)
    b = create(name).fit(X.sample(frac=1.0, random_state=1)).score(X)
    assert np.array_equal(a.raw, b.raw)
    assert a.reasons == b.reasons


def test_explain_false_gives_same_numbers(name: str) -> None:
    X = features(100, seed=4)
    det = create(name).fit(X)
    a, b = det.score(X), det.score(X, explain=False)
    assert np.array_equal(a.raw, b.raw)


def test_pickles(name: str) -> None:
    X = features(100, seed=3)
    det: Detector = create(name).fit(X)
    again: Detector = pickle.loads(pickle.dumps(det))
    assert np.array_equal(det.score(X).raw, again.score(X).raw)


def test_one_account_and_one_exchange(name: str) -> None:
    X = features(1, outlier=False)
    X["exchanges"] = X["content_sampled"] = 1.0
    out = create(name).fit(X).score(X)
    assert len(out.score) == 1 and 0.0 <= out.score[0] <= 1.0


def test_account_with_one_exchange_in_a_population(name: str) -> None:
    X = features(100, seed=6)
    X.iloc[0, X.columns.get_indexer(["exchanges", "content_sampled"])] = 1.0
    out = create(name).fit(X).score(X)
    assert np.isfinite(out.raw[0]) and 0.0 <= out.score[0] <= 1.0


def test_scores_unseen_accounts(name: str) -> None:
    train, test = features(100, seed=7), features(30, seed=8)
    out = create(name).fit(train).score(test)
    assert len(out.score) == 30
