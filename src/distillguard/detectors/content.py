"""Accounts whose prompts try to obtain training data: reasoning traces, worked solutions,
rubric grades, hidden thinking, whole agent trajectories.

The per-prompt classifier (``distillguard.content``) already refuses the benign
look-alikes (a student's "show your work", a benchmark harness's "let's think step by
step"), but it still flags about 1% of honest prompts, and some honest users ask for
reasoning often. So the question per account is statistical: are more of its sampled
prompts eliciting than its peers' would be? The peer rate is a high quantile of the peer
group's shares (median + 2 robust deviations: honest accounts differ, and the
harvesters among the peers must not set the bar; nor may a tier they have filled, so a
group's bar is never above everyone's), and the evidence is a one-sided
binomial z-score, so 3 eliciting prompts of 5 say little and 300 of 1,000 say a lot. That
is also what makes a linked campaign's pooled traffic decisive where each member's is thin.

Only the prompts' own demands are counted per request. A demand that only the system
prompt makes (``system_demand``: a grading rubric or "always show your reasoning" in an
app's configuration, which the classifier sees on every request) is one fact about the
account, not one per request: it adds ``system_z`` to the account's z, once. A campaign's
pooled row counts it once per member that has it, combined as independent z-scores
(Stouffer: ``system_z * sqrt(members)``), so a linked group that puts its demand only in
a shared system prompt still scores, while one honest app with a rubric does not.
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
    excess_z,
    peer_groups,
    register,
    squash,
)
from distillguard.errors import ConfigError


@register
class ContentDetector(Detector):
    name: ClassVar[str] = "content"
    inputs: ClassVar[tuple[str, ...]] = ("content_sampled", "elicitation_share")

    def __init__(
        self,
        *,
        spread: float = 2.0,
        min_rate: float = 0.02,
        min_sampled: float = 10.0,
        min_peers: int = 30,
        z_cap: float = 20.0,
        midpoint: float = 5.0,
        width: float = 1.0,
        system_z: float = 2.0,
    ) -> None:
        super().__init__(
            spread=spread,
            min_rate=min_rate,
            min_sampled=min_sampled,
            min_peers=min_peers,
            z_cap=z_cap,
            midpoint=midpoint,
            width=width,
            system_z=system_z,
        )
        if not system_z >= 0.0:
            raise ConfigError("detectors.content.params.system_z must be >= 0")
        self.system_z = system_z
        self.spread = spread
        self.min_rate = min_rate
        self.min_sampled = min_sampled
        self.min_peers = min_peers
        self.z_cap = z_cap
        self.midpoint = midpoint
        self.width = width

    def fit(self, X: pd.DataFrame) -> Self:
        groups = peer_groups(X)
        # The bar comes from the uniform first read where the sample has one: a second read
        # of the suspicious accounts would otherwise fill the peers with harvesters (on a
        # log's first days they were the only accounts with enough prompts read).
        sampled, shares = (
            ("base_sampled", "base_elicitation_share")
            if "base_sampled" in X.columns
            else ("content_sampled", "elicitation_share")
        )
        enough = X[sampled].to_numpy(dtype=float) >= self.min_sampled
        share = X[shares].to_numpy(dtype=float)
        rates: dict[str, float] = {}
        for group in [ALL_PEERS, *sorted(set(groups))]:
            mask = enough if group == ALL_PEERS else enough & (groups == group)
            if group != ALL_PEERS and mask.sum() < self.min_peers:
                continue
            values = share[mask]
            if len(values):
                # median + spread, robust to the harvesters among the peers themselves
                med = float(np.median(values))
                mad = 1.4826 * float(np.median(np.abs(values - med)))
                q = med + self.spread * mad
            else:
                q = 0.0
            rates[group] = min(max(q, self.min_rate), 0.5)
        # A peer group's bar may only be stricter than everyone's. Harvesters are a
        # minority of all accounts, but they can fill one tier (the one whose credits they
        # farm), and their shares then set that tier's bar; a tier whose honest customers
        # really do elicit more cannot be told from it by the shares alone.
        top = rates.get(ALL_PEERS)
        if top is not None:
            rates = {g: min(r, top) for g, r in rates.items()}
        self.rates_ = rates
        self.fitted_ = True
        return self

    def score(self, X: pd.DataFrame, *, explain: bool = True) -> DetectorOutput:
        self._check_fitted()
        groups = pd.Series(peer_groups(X))
        used = groups.where(groups.isin(list(self.rates_)), ALL_PEERS)
        p0 = used.map(self.rates_).to_numpy(dtype=float)
        n = X["content_sampled"].to_numpy(dtype=float)
        k = X["elicitation_share"].to_numpy(dtype=float) * n
        z = excess_z(k, n, p0)
        configs = (
            X["system_demand"].to_numpy(dtype=float)
            if "system_demand" in X.columns
            else np.zeros(len(X))
        )
        from_system = self.system_z * np.sqrt(np.maximum(configs, 0.0))
        raw: FloatArray = np.clip(np.clip(z, 0.0, None) + from_system, 0.0, self.z_cap)
        score = squash(raw, self.midpoint, self.width)
        reasons: list[list[str]] = [[] for _ in range(len(X))]
        for i in range(len(X)) if explain else ():
            if raw[i] >= 3.0 or score[i] >= 0.5:
                peer = "all accounts" if used.iat[i] == ALL_PEERS else f"peers in {used.iat[i]}"
                reasons[i] = [
                    f"{round(k[i])} of {int(n[i])} sampled prompts elicit training data "
                    f"({k[i] / max(n[i], 1):.0%}) vs a usual {p0[i]:.0%} among {peer} "
                    f"(binomial z=+{max(z[i], 0.0):.1f})"
                ]
                if configs[i] > 0:
                    reasons[i].append(
                        "the system prompt itself asks for training data (counted once: "
                        f"z+{from_system[i]:.1f})"
                        if configs[i] <= 1
                        else f"{int(configs[i])} accounts' system prompts ask for training "
                        f"data (z+{from_system[i]:.1f})"
                    )
        return DetectorOutput(raw=raw, score=score, reasons=reasons)
