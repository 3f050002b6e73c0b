"""Accounts whose prompts try to obtain training data: reasoning traces, worked solutions,
rubric grades, hidden thinking, whole agent trajectories.

The per-prompt classifier (``distillguard.content``) already refuses the benign
look-alikes (a student's "show your work", a benchmark harness's "let's think step by
step"); this detector asks how much of an account's sampled traffic elicits, against its
peers, with the evidence shrunk for accounts with few sampled prompts.
"""

from __future__ import annotations

from typing import ClassVar

from distillguard.detectors.base import register
from distillguard.detectors.peer_profile import PeerProfileDetector

CONTENT_FEATURES: dict[str, tuple[int, float, str]] = {
    "elicitation_share": (1, 0.05, ""),
    "mean_elicitation": (1, 0.05, ""),
}


@register
class ContentDetector(PeerProfileDetector):
    name: ClassVar[str] = "content"
    inputs: ClassVar[tuple[str, ...]] = ("content_sampled", *CONTENT_FEATURES)

    def __init__(
        self,
        *,
        features: dict[str, tuple[int, float, str]] | None = None,
        top_k: int = 2,
        min_peers: int = 30,
        min_exchanges: float = 10.0,
        z_cap: float = 8.0,
        reason_z: float = 3.0,
        midpoint: float = 6.0,
        width: float = 1.5,
        evidence: str = "content_sampled",
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

    def _spec(self) -> dict[str, tuple[int, float, str]]:
        return self.features if self.features is not None else CONTENT_FEATURES
