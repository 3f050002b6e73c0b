"""The elicitation classifier: rules + hashed n-gram linear models, scored in batches.

Three numbers are kept apart, as in scikit-learn/PyOD: the raw score (a logit), the
calibrated probability-like ``elicitation`` in [0, 1], and the decision threshold stored
with the weights. Callers that want a different operating point change the threshold,
never the weights.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.content import features
from distillguard.content.rules import RuleSet
from distillguard.errors import ConfigError

WEIGHTS_FILE = "weights.npz"
# Internal chunk size: bounds the memory of the (n-grams x capabilities) gather so a 100k
# batch costs the same per prompt as a small one.
CHUNK = 2048
LEXICAL_SIGNAL = "lexical"  # bit set when the n-gram model alone would flag the prompt


@dataclass
class ContentModel:
    """Everything ``weights.npz`` holds. Plain arrays, so the file loads without pickle."""

    bits: int
    w_ngram: npt.NDArray[np.float32]
    rule_names: tuple[str, ...]
    rule_kinds: tuple[str, ...]
    w_rule: npt.NDArray[np.float32]
    bias: float
    platt_a: float
    platt_b: float
    threshold: float  # on the calibrated scale
    cap_bits: int
    cap_names: tuple[str, ...]
    w_cap: npt.NDArray[np.float32]  # (2**cap_bits, n_capabilities)
    b_cap: npt.NDArray[np.float32]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        # int8 with one scale per table: 4x smaller file, and the scores move by far less
        # than the gap between the classes (checked by the training script).
        def q(a: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int8], np.float32]:
            scale = np.float32(max(float(np.abs(a).max()), 1e-12) / 127.0)
            return np.round(a / scale).astype(np.int8), scale

        wq, ws = q(self.w_ngram)
        cq, cs = q(self.w_cap)
        header = {
            "bits": self.bits,
            "rule_names": list(self.rule_names),
            "rule_kinds": list(self.rule_kinds),
            "bias": self.bias,
            "platt_a": self.platt_a,
            "platt_b": self.platt_b,
            "threshold": self.threshold,
            "cap_bits": self.cap_bits,
            "cap_names": list(self.cap_names),
            "meta": self.meta,
        }
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            header=np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8),
            w_ngram=wq,
            w_ngram_scale=ws,
            w_rule=self.w_rule.astype(np.float32),
            w_cap=cq,
            w_cap_scale=cs,
            b_cap=self.b_cap.astype(np.float32),
        )
        path.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, data: bytes, source: str = WEIGHTS_FILE) -> ContentModel:
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            h = json.loads(bytes(z["header"]).decode())
            return cls(
                bits=int(h["bits"]),
                w_ngram=z["w_ngram"].astype(np.float32) * z["w_ngram_scale"],
                rule_names=tuple(h["rule_names"]),
                rule_kinds=tuple(h["rule_kinds"]),
                w_rule=z["w_rule"].astype(np.float32),
                bias=float(h["bias"]),
                platt_a=float(h["platt_a"]),
                platt_b=float(h["platt_b"]),
                threshold=float(h["threshold"]),
                cap_bits=int(h["cap_bits"]),
                cap_names=tuple(h["cap_names"]),
                w_cap=z["w_cap"].astype(np.float32) * z["w_cap_scale"],
                b_cap=z["b_cap"].astype(np.float32),
                meta=dict(h.get("meta", {})),
            )
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot read classifier weights: {err}", source=source) from None


@dataclass(frozen=True)
class ContentScores:
    """Scores of a batch, as arrays (cheap to put into an Arrow table)."""

    elicitation: npt.NDArray[np.float32]  # calibrated, in [0, 1]
    raw: npt.NDArray[np.float32]  # logit before calibration
    flagged: npt.NDArray[np.bool_]  # elicitation >= threshold
    capability: npt.NDArray[np.int8]  # index into capability_names
    signals: npt.NDArray[np.int64]  # bitmask over signal_names
    capability_names: tuple[str, ...]
    signal_names: tuple[str, ...]
    threshold: float

    def __len__(self) -> int:
        return len(self.elicitation)

    def capability_of(self, i: int) -> str:
        return self.capability_names[int(self.capability[i])]

    def signals_of(self, i: int) -> list[str]:
        mask = int(self.signals[i])
        return [name for b, name in enumerate(self.signal_names) if mask >> b & 1]


@dataclass(frozen=True)
class ContentScore:
    """One prompt's score (the gateway's per-request view)."""

    elicitation: float
    raw: float
    flagged: bool
    capability: str
    signals: list[str]


class ElicitationClassifier:
    """Scores prompts for training-data elicitation and labels their capability.

    The constructor only stores parameters (so instances are cheap, picklable and
    comparable); weights are read on first use and dropped again when pickled, so a
    classifier sent to a worker process carries a path, not megabytes of arrays.
    """

    def __init__(self, weights: str | Path | None = None, threshold: float | None = None) -> None:
        self.weights = weights
        self.threshold = threshold
        self._model: ContentModel | None = None
        self._rules: RuleSet | None = None

    @classmethod
    def load_default(cls) -> ElicitationClassifier:
        clf = cls()
        clf._ensure()
        return clf

    def __getstate__(self) -> dict[str, Any]:
        return {"weights": self.weights, "threshold": self.threshold}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["weights"], state["threshold"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ElicitationClassifier(weights={self.weights!r}, threshold={self.threshold!r})"

    # -- properties of the loaded model ----------------------------------------------------

    @property
    def model(self) -> ContentModel:
        return self._ensure()[0]

    @property
    def capability_names(self) -> tuple[str, ...]:
        return self.model.cap_names

    @property
    def signal_names(self) -> tuple[str, ...]:
        rules = self._ensure()[1]
        return (*(_signal_name(r.name, r.kind) for r in rules.rules), LEXICAL_SIGNAL)

    @property
    def decision_threshold(self) -> float:
        """The flag threshold in use, on the calibrated ``elicitation`` scale."""
        return self.model.threshold if self.threshold is None else float(self.threshold)

    def _ensure(self) -> tuple[ContentModel, RuleSet]:
        if self._model is None or self._rules is None:
            if self.weights is None:
                data = resources.files("distillguard.content").joinpath(WEIGHTS_FILE).read_bytes()
                model = ContentModel.load(data)
            else:
                path = Path(self.weights)
                try:
                    data = path.read_bytes()
                except OSError as err:
                    raise ConfigError(
                        f"cannot read weights: {err.strerror}", source=str(path)
                    ) from None
                model = ContentModel.load(data, source=str(path))
            rules = RuleSet.load_default()
            if rules.names != model.rule_names:
                # Weights are per rule position; a rules.json edited after training would
                # silently shift every rule weight onto the wrong rule.
                raise ConfigError(
                    "rules.json does not match the rules the weights were trained with; "
                    "re-run python -m distillguard.content.train",
                )
            self._model, self._rules = model, rules
        return self._model, self._rules

    # -- scoring -----------------------------------------------------------------------------

    def score(
        self, prompts: Sequence[str], system_prompts: Sequence[str | None] | None = None
    ) -> ContentScores:
        """Score a batch; prompts that are ``None`` are scored as empty text."""
        model, rules = self._ensure()
        texts = features.compose([p or "" for p in prompts], system_prompts)
        n = len(texts)
        raw = np.empty(n, dtype=np.float32)
        lexical = np.empty(n, dtype=np.float32)
        cap = np.empty(n, dtype=np.int8)
        sig = np.empty(n, dtype=np.int64)
        for lo in range(0, n, CHUNK):
            chunk = texts[lo : lo + CHUNK]
            r, lx, c, s = _score_chunk(model, rules, chunk)
            raw[lo : lo + len(chunk)] = r
            lexical[lo : lo + len(chunk)] = lx
            cap[lo : lo + len(chunk)] = c
            sig[lo : lo + len(chunk)] = s
        prob = _sigmoid(model.platt_a * raw + model.platt_b)
        thr = self.decision_threshold
        lex_prob = _sigmoid(model.platt_a * lexical + model.platt_b)
        sig |= np.where(lex_prob >= thr, np.int64(1) << len(rules.rules), np.int64(0))
        return ContentScores(
            elicitation=prob,
            raw=raw,
            flagged=prob >= thr,
            capability=cap,
            signals=sig,
            capability_names=model.cap_names,
            signal_names=self.signal_names,
            threshold=thr,
        )

    def score_one(self, prompt: str, system_prompt: str | None = None) -> ContentScore:
        s = self.score([prompt], None if system_prompt is None else [system_prompt])
        return ContentScore(
            elicitation=float(s.elicitation[0]),
            raw=float(s.raw[0]),
            flagged=bool(s.flagged[0]),
            capability=s.capability_of(0),
            signals=s.signals_of(0),
        )


def _signal_name(name: str, kind: str) -> str:
    # Context rules are evidence *against* harvesting; the prefix keeps a consumer that
    # counts signals from reading them as suspicious.
    return name if kind == "attack" else f"context:{name}"


def _sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)


def rule_matrix(hits: npt.NDArray[np.int64], kinds: Sequence[str]) -> npt.NDArray[np.float32]:
    """Rule features: one column per rule, then how many attack / context rules fired.

    The two count columns carry what is shared between families ("some elicitation rule
    fired"), which is what lets the model use a rule written for a family it has no
    training prompts of yet.
    """
    bitmat = ((hits[:, None] >> np.arange(len(kinds))) & 1).astype(np.float32)
    attack = np.array([k == "attack" for k in kinds], dtype=np.float32)
    return np.concatenate(
        [bitmat, (bitmat @ attack)[:, None], (bitmat @ (1.0 - attack))[:, None]], axis=1
    )


def raw_parts(
    model: ContentModel, grams: features.NGramBatch, hits: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """Logit, its n-gram-only part (with bias) and the capability of each prompt."""
    n = grams.n_docs
    inv = (1.0 / np.sqrt(np.maximum(grams.counts, 1))).astype(np.float32)
    lex = np.zeros(n, dtype=np.float32)
    cap = np.zeros((n, len(model.cap_names)), dtype=np.float32)
    for h, d in zip(grams.hashes, grams.doc, strict=True):
        lex += features.segment_sum(model.w_ngram[features.bucket(h, model.bits)], d, n)
        cap += features.segment_sum(model.w_cap[features.bucket(h, model.cap_bits)], d, n)
    lex = lex * inv + np.float32(model.bias)
    raw = lex + rule_matrix(hits, model.rule_kinds) @ model.w_rule
    cap_idx = np.argmax(cap * inv[:, None] + model.b_cap, axis=1).astype(np.int8)
    return raw.astype(np.float32), lex, cap_idx


def _score_chunk(
    model: ContentModel, rules: RuleSet, texts: list[str]
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int8], npt.NDArray[np.int64]
]:
    grams = features.ngrams(texts)
    hits = rules.match(texts, rules.gate(grams))
    raw, lex, cap = raw_parts(model, grams, hits)
    return raw, lex, cap, hits
