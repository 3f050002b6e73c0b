"""Content signals: does a prompt try to harvest training data, and for which capability.

    from distillguard.content import ElicitationClassifier
    clf = ElicitationClassifier.load_default()
    scores = clf.score(prompts, system_prompts)   # arrays, for batches
    one = clf.score_one(prompt)                    # the gateway's per-request call

Rules (``rules.json``) and weights (``weights.npz``) are data shipped in the package;
``python -m distillguard.content.train`` rebuilds the weights deterministically.
"""

from __future__ import annotations

from distillguard.content.model import (
    ContentModel,
    ContentScore,
    ContentScores,
    ElicitationClassifier,
)
from distillguard.content.trainset import ATTACK_FAMILIES

__all__ = [
    "ATTACK_FAMILIES",
    "ContentModel",
    "ContentScore",
    "ContentScores",
    "ElicitationClassifier",
]
