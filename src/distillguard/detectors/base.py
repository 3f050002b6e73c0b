"""The detector contract, after scikit-learn and PyOD.

Constructors only store parameters; ``fit`` learns baselines from a population of
accounts; ``score`` returns a raw score, a score in [0, 1] and reasons per account. The
decision (threshold, action) is not a detector's business: policies make it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import pandas as pd

from distillguard.errors import ConfigError, DetectorError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
ALL_PEERS = "__all__"  # the peer group of accounts with no known group


@dataclass
class DetectorOutput:
    raw: FloatArray  # unbounded, higher = more suspicious; for ranking and calibration
    score: FloatArray  # in [0, 1], monotone in ``raw``
    reasons: list[list[str]]  # per account, most important first; empty when nothing stood out

    def __post_init__(self) -> None:
        if not (len(self.raw) == len(self.score) == len(self.reasons)):
            raise DetectorError("detector output arrays differ in length")


class Detector(ABC):
    """Base class. ``X`` is a frame with one row per account (index: account_id) holding
    the feature columns and a ``peer_group`` column."""

    name: ClassVar[str]
    # Feature columns this detector reads from ``X`` (the contract suite builds them).
    inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self._params = params

    def get_params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "fitted_", False)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise DetectorError(f"detector '{self.name}' must be fitted before scoring")

    @abstractmethod
    def fit(self, X: pd.DataFrame) -> Self: ...

    @abstractmethod
    def score(self, X: pd.DataFrame, *, explain: bool = True) -> DetectorOutput:
        """Scores for the accounts in ``X``; ``explain=False`` skips writing reasons (the
        checkpoint replay only needs the numbers)."""


DETECTORS: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type[Detector])


def register(cls: D) -> D:
    if cls.name in DETECTORS:
        raise ConfigError(f"two detectors are named '{cls.name}'")
    DETECTORS[cls.name] = cls
    return cls


def create(name: str, params: dict[str, Any] | None = None) -> Detector:
    try:
        cls = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise ConfigError(f"unknown detector '{name}' (known: {known})") from None
    return cls(**(params or {}))


def squash(raw: FloatArray, midpoint: float, width: float) -> FloatArray:
    """Raw evidence to [0, 1]: a logistic centred on the evidence level worth a look."""
    out: FloatArray = 1.0 / (1.0 + np.exp(-(raw - midpoint) / width))
    return out


def excess_z(k: Any, n: Any, p: Any) -> FloatArray:
    """How far ``k`` hits in ``n`` tries stand above a rate ``p``: a binomial z with a
    continuity correction (0.5), so a single hit among a few tries is not evidence."""
    k, n, p = (np.asarray(x, dtype=np.float64) for x in (k, n, p))
    out: FloatArray = (k - n * p - 0.5) / np.sqrt(np.maximum(n * p * (1.0 - p), 1e-9))
    return out


def peer_groups(X: pd.DataFrame) -> np.ndarray[Any, np.dtype[Any]]:
    """Each row's peer group (``peer_group``), or ``ALL_PEERS`` where none is known."""
    if "peer_group" in X.columns:
        return X["peer_group"].fillna(ALL_PEERS).astype(str).to_numpy()
    return np.full(len(X), ALL_PEERS, dtype=object)
