"""Accounts, and linked campaigns, whose prompts are unlike like-for-like reference traffic.

The statistic is the unbiased linear-kernel MMD^2 between a set of prompts and a reference
set, computed from the mergeable prompt sketch (``features.sketch``). What it is compared
with decides whether it means anything:

* One global benign pool is the wrong reference. A batch tenant repeating one template, a
  benchmark run over GSM8K, an agent developer's tool calls are each topically narrow, so
  each is far from the pool; measured on the simulator, a median + 3 robust deviations
  bar against the global pool is crossed by most agent, benchmark and batch accounts.
* **An account** is compared with its peer group (tier; all accounts when a group is too
  small), leaving the account itself out of the reference, and the bar is set by the same
  comparison made for every peer: median + ``spread`` robust deviations of the peers'
  statistics (benign-vs-benign, and robust to the harvesters among the peers). That asks
  "is this account more unlike its peers than peers usually are from each other?", which
  narrow honest customers still often are: this is weak evidence, weighted accordingly.
* **A linked campaign** (its members' pooled sums, one row with ``accounts`` > 1) is
  compared with the whole population, and the bar is what random groups of the same number
  of accounts score: pooling k independent customers averages their narrowness away (the
  statistic falls like 1/k), pooling k accounts fed from one harvesting pipeline does not.
  Honest groups are not random either (one company's apps, one university's students), so
  this too can only add to other evidence.

Raw score: the statistic over its bar (1.0 = at the bar); the [0, 1] score is a logistic
of it. Which weight it gets is the policy's business.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import pandas as pd

from distillguard.detectors.base import (
    ALL_PEERS,
    Detector,
    DetectorOutput,
    FloatArray,
    peer_groups,
    register,
    squash,
)
from distillguard.features.sketch import SKETCH_FEATURES, SKETCH_SQ_FEATURE, mmd2_unbiased

# Group sizes at which the random-group null is sampled; others are interpolated in log k.
_GROUP_SIZES = (2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)


@register
class DistributionDetector(Detector):
    name: ClassVar[str] = "distribution"
    inputs: ClassVar[tuple[str, ...]] = ("content_sampled", *SKETCH_FEATURES, SKETCH_SQ_FEATURE)

    def __init__(
        self,
        *,
        spread: float = 3.0,
        min_sampled: float = 20.0,
        min_peers: int = 30,
        floor: float = 1e-3,
        groups: int = 256,
        seed: int = 0,
        raw_cap: float = 50.0,
        midpoint: float = 2.0,
        width: float = 0.5,
    ) -> None:
        super().__init__(
            spread=spread,
            min_sampled=min_sampled,
            min_peers=min_peers,
            floor=floor,
            groups=groups,
            seed=seed,
            raw_cap=raw_cap,
            midpoint=midpoint,
            width=width,
        )
        self.spread = spread
        self.min_sampled = min_sampled
        self.min_peers = min_peers
        self.floor = floor
        self.groups = groups
        self.seed = seed
        self.raw_cap = raw_cap
        self.midpoint = midpoint
        self.width = width

    def fit(self, X: pd.DataFrame) -> Self:
        # Sorted by id so that the fitted baselines do not depend on the row order.
        X = X.sort_index(kind="stable")
        S, Q, cnt = _sums(X)
        eligible = cnt >= self.min_sampled
        groups = peer_groups(X)
        refs: dict[str, tuple[FloatArray, float, float]] = {}
        bars: dict[str, float] = {}
        group_nulls: dict[str, tuple[FloatArray, FloatArray]] = {}
        for group in [ALL_PEERS, *sorted(set(groups))]:
            mask = eligible if group == ALL_PEERS else eligible & (groups == group)
            if group != ALL_PEERS and mask.sum() < self.min_peers:
                continue
            ref = (S[mask].sum(axis=0), float(Q[mask].sum()), float(cnt[mask].sum()))
            refs[group] = ref
            # Benign-vs-benign: every peer against the others, as the account will be.
            stats = _leave_one_out(S[mask], Q[mask], cnt[mask], ref)
            bars[group] = _bar(stats, self.spread, self.floor)
            if group == ALL_PEERS:
                group_nulls[group] = self._group_null(S[mask], Q[mask], cnt[mask], ref)
        self.refs_ = refs
        self.bars_ = bars
        self.group_nulls_ = group_nulls
        # Which accounts the references hold (and with how many prompts), to leave them out.
        self.own_ = {str(a): float(x) for a, x, e in zip(X.index, cnt, eligible, strict=True) if e}
        self.fitted_ = True
        return self

    def _group_null(
        self,
        S: FloatArray,
        Q: FloatArray,
        cnt: FloatArray,
        ref: tuple[FloatArray, float, float],
    ) -> tuple[FloatArray, FloatArray]:
        """The bar for a pooled group of k accounts: the same statistic for random groups of
        k of the peers, against all of them (the reference holds the group, as it holds a
        scored campaign's members)."""
        rs, rq, rn = ref
        rng = np.random.default_rng(self.seed)
        sizes, bars = [], []
        for k in _GROUP_SIZES:
            if k > len(cnt) // 2:
                break
            # With replacement: for k much smaller than the peers it is the same draw, and
            # one call instead of one per group.
            idx = rng.integers(0, len(cnt), (self.groups, k))
            gs, gq, gn = S[idx].sum(axis=1), Q[idx].sum(axis=1), cnt[idx].sum(axis=1)
            stats = mmd2_unbiased(
                gs, gq, gn, rs[None, :], np.full(len(gn), rq), np.full(len(gn), rn)
            )
            sizes.append(float(k))
            bars.append(_bar(stats, self.spread, self.floor / k))
        return np.asarray(sizes), np.asarray(bars)

    def _bar_for_groups(self, group: str, k: FloatArray) -> FloatArray:
        sizes, bars = self.group_nulls_.get(group, (np.zeros(0), np.zeros(0)))
        if not len(sizes):  # too few accounts to draw groups from: one account's bar, / k
            return np.full(len(k), self.bars_[group]) / np.maximum(k, 1.0)
        logk = np.log(np.maximum(k, 1.0))
        # Geometric interpolation between sampled sizes; beyond the largest, the 1/k decay
        # of an average of k independent deviations.
        out: FloatArray = np.exp(np.interp(logk, np.log(sizes), np.log(bars)))
        out = np.where(k > sizes[-1], bars[-1] * sizes[-1] / np.maximum(k, 1.0), out)
        return out

    def score(self, X: pd.DataFrame, *, explain: bool = True) -> DetectorOutput:
        self._check_fitted()
        n = len(X)
        S, Q, cnt = _sums(X)
        groups = peer_groups(X)
        k = (
            X["accounts"].to_numpy(dtype=np.float64)
            if "accounts" in X.columns
            else np.ones(n, dtype=np.float64)
        )
        pooled = k > 1
        # A campaign is compared with the whole population. (Against its members' own peer
        # group instead, a university's students pooled stood out more, not less: the
        # peer group's reference holds the harvesters among its accounts.)
        groups = np.where(pooled, ALL_PEERS, groups)
        used = np.array([g if g in self.refs_ else ALL_PEERS for g in groups], dtype=object)
        stat = np.full(n, np.nan)
        bar = np.full(n, np.inf)
        if ALL_PEERS in self.refs_:
            ids = [str(a) for a in X.index]
            for group in sorted(set(used)):
                rows = np.flatnonzero(used == group)
                rs, rq, rn = self.refs_[group]
                # An account the reference was fitted with is left out of it: it must not
                # be compared with itself.
                inside = np.array([self.own_.get(ids[r]) == cnt[r] for r in rows], dtype=bool)
                inside &= ~pooled[rows]
                sub_s = np.where(inside[:, None], S[rows], 0.0)
                sub_q = np.where(inside, Q[rows], 0.0)
                sub_n = np.where(inside, cnt[rows], 0.0)
                stat[rows] = mmd2_unbiased(
                    S[rows], Q[rows], cnt[rows], rs[None, :] - sub_s, rq - sub_q, rn - sub_n
                )
                in_pool = pooled[rows]
                bar[rows[~in_pool]] = self.bars_[group]
                bar[rows[in_pool]] = self._bar_for_groups(group, k[rows[in_pool]])
        enough = (cnt >= self.min_sampled) & np.isfinite(stat)
        ratio = np.where(enough, np.maximum(stat, 0.0) / np.where(np.isfinite(bar), bar, 1.0), 0.0)
        raw: FloatArray = np.clip(ratio, 0.0, self.raw_cap)
        score = squash(raw, self.midpoint, self.width)
        reasons: list[list[str]] = [[] for _ in range(n)]
        for i in range(n) if explain else ():
            if raw[i] < 1.0 and score[i] < 0.5:
                continue
            if pooled[i]:
                reasons[i] = [
                    f"pooled prompts unlike the population's: MMD^2 {stat[i]:.4f} vs "
                    f"{bar[i]:.4f} for random groups of {int(k[i])} accounts "
                    f"({int(cnt[i])} sampled prompts)"
                ]
            else:
                peer = "all accounts" if used[i] == ALL_PEERS else f"peers in {used[i]}"
                reasons[i] = [
                    f"prompts unlike its peers': MMD^2 {stat[i]:.4f} vs {bar[i]:.4f} usual "
                    f"among {peer} (median + {self.spread:g} robust sd; "
                    f"{int(cnt[i])} sampled prompts)"
                ]
        return DetectorOutput(raw=raw, score=score, reasons=reasons)


def _sums(X: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each row's sum of sketch vectors, sum of squared norms, and number of prompts."""
    cnt = X["content_sampled"].to_numpy(dtype=np.float64)
    mean = np.stack([X[c].to_numpy(dtype=np.float64) for c in SKETCH_FEATURES], axis=-1)
    return mean * cnt[:, None], X[SKETCH_SQ_FEATURE].to_numpy(dtype=np.float64) * cnt, cnt


def _leave_one_out(
    S: FloatArray, Q: FloatArray, cnt: FloatArray, ref: tuple[FloatArray, float, float]
) -> FloatArray:
    rs, rq, rn = ref
    out: FloatArray = mmd2_unbiased(S, Q, cnt, rs[None, :] - S, rq - Q, rn - cnt)
    return out[np.isfinite(out)]


def _bar(stats: FloatArray, spread: float, floor: float) -> float:
    """median + ``spread`` robust deviations: a high quantile that the harvesters among
    the compared accounts (or groups) cannot raise as long as they are a minority."""
    if not len(stats):
        return floor
    med = float(np.median(stats))
    mad = 1.4826 * float(np.median(np.abs(stats - med)))
    return max(med + spread * mad, floor)
