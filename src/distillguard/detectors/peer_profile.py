"""Accounts whose usage shape departs from their peers' on several axes at once.

Each feature is compared with the account's peer group (tier by default; all accounts
when a group is too small) by a robust z-score (median and MAD, so the heavy tail of real
customers does not set the baseline). One odd feature is common among honest customers;
the evidence is the *sum of the strongest few* deviations, shrunk when the account has
too few exchanges to say anything.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import pandas as pd

from distillguard.detectors.base import ALL_PEERS as GLOBAL
from distillguard.detectors.base import (
    Detector,
    DetectorOutput,
    FloatArray,
    peer_groups,
    register,
    squash,
)

# feature -> (direction, floor of the scale, unit shown in reasons)
# How much and when: heavy honest customers (batch pipelines, resellers, NATs) stand out
# here as much as harvesters do, so this is weak evidence on its own.
DEFAULT_FEATURES: dict[str, tuple[int, float, str]] = {
    "rate_per_active_day": (1, 5.0, "/day"),
    "hour_entropy": (1, 0.3, " bits"),
    "single_turn_share": (1, 0.05, ""),
}
# What the requests ask the model to produce: long reasoning outputs, log-probabilities,
# many samples, the longest completions: what makes good training data.
REQUEST_FEATURES: dict[str, tuple[int, float, str]] = {
    "out_in_ratio": (1, 0.5, ""),
    "mean_output_tokens": (1, 50.0, " tok"),
    "reasoning_share": (1, 0.05, ""),
    "long_max_tokens_share": (1, 0.05, ""),
}
# Log-probabilities and many samples per prompt are soft labels and preference pairs: what
# distillation needs beyond the answer itself (evaluation harnesses ask for them too).
SAMPLING_FEATURES: dict[str, tuple[int, float, str]] = {
    "logprobs_share": (1, 0.05, ""),
    "multi_n_share": (1, 0.05, ""),
}


@register
class PeerProfileDetector(Detector):
    name: ClassVar[str] = "peer_profile"
    inputs: ClassVar[tuple[str, ...]] = ("exchanges", *DEFAULT_FEATURES)

    def __init__(
        self,
        *,
        features: dict[str, tuple[int, float, str]] | None = None,
        top_k: int = 3,
        min_peers: int = 30,
        min_exchanges: float = 20.0,
        z_cap: float = 12.0,
        reason_z: float = 3.0,
        midpoint: float = 5.0,
        width: float = 1.0,
        evidence: str = "exchanges",
    ) -> None:
        super().__init__(
            features=features,
            top_k=top_k,
            min_peers=min_peers,
            min_exchanges=min_exchanges,
            z_cap=z_cap,
            reason_z=reason_z,
            midpoint=midpoint,
            width=width,
            evidence=evidence,
        )
        self.evidence = evidence
        self.features = features
        self.top_k = top_k
        self.min_peers = min_peers
        self.min_exchanges = min_exchanges
        self.z_cap = z_cap
        self.reason_z = reason_z
        self.midpoint = midpoint
        self.width = width

    def _spec(self) -> dict[str, tuple[int, float, str]]:
        return self.features if self.features is not None else DEFAULT_FEATURES

    def fit(self, X: pd.DataFrame) -> Self:
        spec = self._spec()
        groups = peer_groups(X)
        baselines: dict[str, dict[str, tuple[float, float]]] = {}
        for group in [GLOBAL, *sorted(set(groups))]:
            rows = X if group == GLOBAL else X[groups == group]
            if group != GLOBAL and len(rows) < self.min_peers:
                continue
            baselines[group] = {}
            for feat, (_, floor, _) in spec.items():
                values = rows[feat].to_numpy(dtype=np.float64)
                med = float(np.median(values)) if len(values) else 0.0
                mad = float(np.median(np.abs(values - med))) * 1.4826 if len(values) else 0.0
                baselines[group][feat] = (med, max(mad, floor, 0.1 * abs(med)))
        self.baselines_ = baselines
        self.fitted_ = True
        return self

    def score(self, X: pd.DataFrame, *, explain: bool = True) -> DetectorOutput:
        self._check_fitted()
        spec = self._spec()
        groups = pd.Series(peer_groups(X))
        n = len(X)
        used = groups.where(groups.isin(list(self.baselines_)), GLOBAL)
        zs = np.zeros((n, len(spec)))
        meds = np.zeros((n, len(spec)))
        for j, (feat, (direction, _, _)) in enumerate(spec.items()):
            med = used.map({g: b[feat][0] for g, b in self.baselines_.items()}).to_numpy(np.float64)
            scale = used.map({g: b[feat][1] for g, b in self.baselines_.items()}).to_numpy(
                np.float64
            )
            values = X[feat].to_numpy(dtype=np.float64)
            zs[:, j] = np.clip(direction * (values - med) / scale, 0.0, self.z_cap)
            meds[:, j] = med
        k = min(self.top_k, zs.shape[1])
        strongest = -np.sort(-zs, axis=1)[:, :k] if k else np.zeros((n, 0))
        exchanges = X[self.evidence].to_numpy(dtype=np.float64)
        evidence = exchanges / (exchanges + self.min_exchanges)
        raw: FloatArray = strongest.sum(axis=1) * evidence
        names = list(spec)
        reasons: list[list[str]] = [[] for _ in range(n)]
        for i in range(n) if explain else ():
            order = np.argsort(-zs[i])
            rs = []
            # Strong deviations always explain; weaker ones only when together they flag.
            bar = self.reason_z if raw[i] < self.midpoint else 0.0
            for j in order[:k]:
                if zs[i, j] <= bar:
                    break
                feat = names[j]
                unit = spec[feat][2]
                peer = "all accounts" if used.iat[i] == GLOBAL else f"peers in {used.iat[i]}"
                rs.append(
                    f"{feat} {_fmt(X[feat].iat[i])}{unit} vs median {_fmt(meds[i, j])}{unit} "
                    f"of {peer} (robust z=+{zs[i, j]:.1f})"
                )
            reasons[i] = rs
        return DetectorOutput(
            raw=raw, score=squash(raw, self.midpoint, self.width), reasons=reasons
        )


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"


@register
class RequestShapeDetector(PeerProfileDetector):
    """Accounts whose requests ask for more of what trains a model than their peers'."""

    name: ClassVar[str] = "request_shape"
    inputs: ClassVar[tuple[str, ...]] = ("exchanges", *REQUEST_FEATURES)

    def _spec(self) -> dict[str, tuple[int, float, str]]:
        return self.features if self.features is not None else REQUEST_FEATURES


@register
class SamplingParamsDetector(PeerProfileDetector):
    """Accounts asking for log-probabilities or several samples more than their peers."""

    name: ClassVar[str] = "sampling_params"
    inputs: ClassVar[tuple[str, ...]] = ("exchanges", *SAMPLING_FEATURES)

    def _spec(self) -> dict[str, tuple[int, float, str]]:
        return self.features if self.features is not None else SAMPLING_FEATURES
