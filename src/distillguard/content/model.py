"""The elicitation classifier: rules + hashed n-gram linear models, scored in batches.

Three numbers are kept apart, as in scikit-learn/PyOD: the raw score (a logit), the
calibrated probability-like ``elicitation`` in [0, 1], and the decision threshold stored
with the weights. Callers that want a different operating point change the threshold,
never the weights.
"""

from __future__ import annotations

import io
import json
import math
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
CHUNK = 1024
# Below this many prompts the rules' prefilters are tested per prompt with Python sets,
# above it with numpy over the whole chunk (same answers; it is only about call overhead).
SMALL_BATCH = 16
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
    # The int8 tables and scales ``w_ngram`` / ``w_cap`` were loaded from (None when the
    # model was built in memory; :meth:`quantized` then quantises as :meth:`save` does).
    q_ngram: tuple[npt.NDArray[np.int8], float] | None = None
    q_cap: tuple[npt.NDArray[np.int8], float] | None = None

    def quantized(
        self,
    ) -> tuple[tuple[npt.NDArray[np.int8], float], tuple[npt.NDArray[np.int8], float]]:
        """(int8 table, scale) of the n-gram and the capability weights."""
        wq, ws = self.q_ngram or _quantize(self.w_ngram)
        cq, cs = self.q_cap or _quantize(self.w_cap)
        return (wq, float(ws)), (cq, float(cs))

    def save(self, path: Path) -> None:
        wq, ws = _quantize(self.w_ngram)
        cq, cs = _quantize(self.w_cap)
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
            wq, ws = z["w_ngram"].astype(np.int8), np.float32(z["w_ngram_scale"])
            cq, cs = z["w_cap"].astype(np.int8), np.float32(z["w_cap_scale"])
            return cls(
                bits=int(h["bits"]),
                w_ngram=wq.astype(np.float32) * ws,
                rule_names=tuple(h["rule_names"]),
                rule_kinds=tuple(h["rule_kinds"]),
                w_rule=z["w_rule"].astype(np.float32),
                bias=float(h["bias"]),
                platt_a=float(h["platt_a"]),
                platt_b=float(h["platt_b"]),
                threshold=float(h["threshold"]),
                cap_bits=int(h["cap_bits"]),
                cap_names=tuple(h["cap_names"]),
                w_cap=cq.astype(np.float32) * cs,
                b_cap=z["b_cap"].astype(np.float32),
                meta=dict(h.get("meta", {})),
                q_ngram=(wq, float(ws)),
                q_cap=(cq, float(cs)),
            )
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot read classifier weights: {err}", source=source) from None


def _quantize(a: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int8], np.float32]:
    # int8 with one scale per table: 4x smaller file, and the scores move by far less than
    # the gap between the classes (checked by the training script).
    scale = np.float32(max(float(np.abs(a).max()), 1e-12) / 127.0)
    return np.round(a / scale).astype(np.int8), scale


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


class Scorer:
    """A loaded model and its rules, with the tables the scoring path gathers from.

    Per prompt: the int8 weights of all its n-grams summed exactly (:func:`features.scan`),
    the rule families matched where their literals occur (:meth:`RuleSet.match`), then a
    handful of float operations. Rule features are linear in the hit bits (one column per
    rule plus the attack / context counts), so each rule's total weight is folded into one
    number here.
    """

    def __init__(self, model: ContentModel, rules: RuleSet) -> None:
        self.model = model
        self.rules = rules
        (wq, ws), (cq, cs) = model.quantized()
        self.tables = features.Tables.build(model.bits, wq, model.cap_bits, cq, rules.keys)
        self.ngram_scale = ws
        self.cap_scale = cs
        n = len(model.rule_kinds)
        w = model.w_rule.astype(np.float64)
        self.rule_w = np.array(
            [w[i] + (w[n] if k == "attack" else w[n + 1]) for i, k in enumerate(model.rule_kinds)],
            dtype=np.float64,
        )
        self.b_cap = model.b_cap.astype(np.float64)

    def parts(
        self, texts: Sequence[str]
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.int8],
        npt.NDArray[np.int64],
    ]:
        """Logit, its n-gram-only part (with bias), capability and rule hits of each text."""
        sc = features.scan(texts, self.tables)
        if len(texts) <= SMALL_BATCH:
            keys: list[set[int]] = [set() for _ in texts]
            for d, k in zip(sc.key_doc.tolist(), sc.key_id.tolist(), strict=True):
                keys[d].add(k)
            hits = np.array(
                [self.rules.match_one(t, ks) for t, ks in zip(texts, keys, strict=True)],
                dtype=np.int64,
            )
        else:
            hits = self.rules.match(texts, self.rules.presence(sc.key_doc, sc.key_id, len(texts)))
        inv = 1.0 / np.sqrt(np.maximum(sc.counts, 1))
        lex = sc.lex * (self.ngram_scale * inv) + self.model.bias
        raw = lex.copy()
        for i, w in enumerate(self.rule_w.tolist()):  # in rule order, as :meth:`one` adds
            raw += np.where((hits >> i) & 1 == 1, w, 0.0)
        cap = sc.cap * (self.cap_scale * inv)[:, None] + self.b_cap
        cap_idx = np.argmax(cap, axis=1).astype(np.int8)
        return raw.astype(np.float32), lex.astype(np.float32), cap_idx, hits

    def one(self, text: str) -> tuple[float, float, int, int]:
        """:meth:`parts` of one text, in plain Python floats: the same float64 operations
        in the same order, so the same numbers, without the per-call numpy overhead."""
        sc = features.scan_one(text, self.tables)
        hits = self.rules.match_one(text, set(sc.key_id.tolist()))
        inv = 1.0 / math.sqrt(max(int(sc.counts[0]), 1))
        lex = int(sc.lex[0]) * (self.ngram_scale * inv) + self.model.bias
        raw = lex
        for i, w in enumerate(self.rule_w.tolist()):
            if hits >> i & 1:
                raw += w
        cs = self.cap_scale * inv
        cap = [c * cs + b for c, b in zip(sc.cap[0].tolist(), self.b_cap.tolist(), strict=True)]
        return raw, lex, cap.index(max(cap)), hits


class ElicitationClassifier:
    """Scores prompts for training-data elicitation and labels their capability.

    The constructor only stores parameters (so instances are cheap, picklable and
    comparable); weights are read on first use and dropped again when pickled, so a
    classifier sent to a worker process carries a path, not megabytes of arrays.
    """

    def __init__(self, weights: str | Path | None = None, threshold: float | None = None) -> None:
        self.weights = weights
        self.threshold = threshold
        self._scorer: Scorer | None = None

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
        return self._ensure().model

    @property
    def capability_names(self) -> tuple[str, ...]:
        return self.model.cap_names

    @property
    def signal_names(self) -> tuple[str, ...]:
        rules = self._ensure().rules
        return (*(_signal_name(r.name, r.kind) for r in rules.rules), LEXICAL_SIGNAL)

    @property
    def attack_bits(self) -> np.int64:
        """Bitmask (over ``signal_names``) of the named attack rules: the flags an account's
        eliciting count may rest on (the n-gram model alone and context rules are not)."""
        names = self.signal_names
        return np.int64(
            sum(
                1 << i
                for i, name in enumerate(names)
                if name != LEXICAL_SIGNAL and not name.startswith("context:")
            )
        )

    @property
    def decision_threshold(self) -> float:
        """The flag threshold in use, on the calibrated ``elicitation`` scale."""
        return self.model.threshold if self.threshold is None else float(self.threshold)

    def _ensure(self) -> Scorer:
        if self._scorer is None:
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
            self._scorer = Scorer(model, rules)
        return self._scorer

    # -- scoring -----------------------------------------------------------------------------

    def score(
        self, prompts: Sequence[str], system_prompts: Sequence[str | None] | None = None
    ) -> ContentScores:
        """Score a batch; prompts that are ``None`` are scored as empty text."""
        scorer = self._ensure()
        texts = features.compose([p or "" for p in prompts], system_prompts)
        n = len(texts)
        raw = np.empty(n, dtype=np.float32)
        lexical = np.empty(n, dtype=np.float32)
        cap = np.empty(n, dtype=np.int8)
        sig = np.empty(n, dtype=np.int64)
        for lo in range(0, n, CHUNK):
            chunk = texts[lo : lo + CHUNK]
            r, lx, c, s = scorer.parts(chunk)
            raw[lo : lo + len(chunk)] = r
            lexical[lo : lo + len(chunk)] = lx
            cap[lo : lo + len(chunk)] = c
            sig[lo : lo + len(chunk)] = s
        return self._finish(scorer, raw, lexical, cap, sig)

    def _finish(
        self,
        scorer: Scorer,
        raw: npt.NDArray[np.float32],
        lexical: npt.NDArray[np.float32],
        cap: npt.NDArray[np.int8],
        sig: npt.NDArray[np.int64],
    ) -> ContentScores:
        model = scorer.model
        prob = _sigmoid(model.platt_a * raw + model.platt_b)
        thr = self.decision_threshold
        lex_prob = _sigmoid(model.platt_a * lexical + model.platt_b)
        sig |= np.where(lex_prob >= thr, np.int64(1) << len(scorer.rules.rules), np.int64(0))
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

    def demand(
        self,
        prompts: Sequence[str | None],
        system_prompts: Sequence[str | None] | None,
        scores: ContentScores | None = None,
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Where each request's demand for training data comes from: ``(elicit,
        system_only)``, per request.

        A request *elicits* when its flag (the system prompt and prompt composed, as
        :meth:`score` scores them) is backed by a named attack rule. With a system prompt,
        that counts as the request's own evidence (``elicit``) only if the prompt alone is
        still flagged and rule-backed; otherwise the demand came from the system prompt
        only (``system_only``). An account's system prompt is its configuration: a grading
        rubric there fires on every request, and is one piece of evidence, not one per
        request. Only the requests that elicit *and* have a system prompt are scored
        again, so the cost is that of those rows (``scores``, if given, are this batch's
        :meth:`score`)."""
        s = self.score([p or "" for p in prompts], system_prompts) if scores is None else scores
        bits = self.attack_bits
        composed = s.flagged & ((s.signals & bits) != 0)
        own = composed.copy()
        if system_prompts is not None:
            again = [i for i in np.flatnonzero(composed).tolist() if system_prompts[i]]
            if again:
                alone = self.score([prompts[i] or "" for i in again])
                own[again] = alone.flagged & ((alone.signals & bits) != 0)
        return own, composed & ~own

    def demand_one(
        self, prompt: str, system_prompt: str | None = None, score: ContentScore | None = None
    ) -> tuple[bool, bool]:
        """:meth:`demand` of one request (``score``: its :meth:`score_one`, if known)."""
        s = self.score_one(prompt, system_prompt) if score is None else score
        attack = set(self._attack_names())
        composed = s.flagged and any(sig in attack for sig in s.signals)
        if not composed or not system_prompt:
            return composed, False
        alone = self.score_one(prompt)
        own = alone.flagged and any(sig in attack for sig in alone.signals)
        return own, not own

    def _attack_names(self) -> list[str]:
        bits = int(self.attack_bits)
        return [name for b, name in enumerate(self.signal_names) if bits >> b & 1]

    def score_one(self, prompt: str, system_prompt: str | None = None) -> ContentScore:
        """One prompt, without the batch machinery (the gateway's per-request call).

        Same numbers as :meth:`score` on a batch holding this prompt: the sums are exact
        integers and the rules see the same literals.
        """
        scorer = self._ensure()
        (text,) = features.compose(
            [prompt or ""], None if system_prompt is None else [system_prompt]
        )
        raw, lex, cap, hits = scorer.one(text)
        model = scorer.model
        prob, lex_prob = _sigmoid(
            model.platt_a * np.array([raw, lex], dtype=np.float32) + model.platt_b
        ).tolist()
        thr = self.decision_threshold
        if lex_prob >= thr:
            hits |= 1 << len(scorer.rules.rules)
        names = self.signal_names
        return ContentScore(
            elicitation=prob,
            raw=float(np.float32(raw)),
            flagged=prob >= thr,
            capability=model.cap_names[cap],
            signals=[name for b, name in enumerate(names) if hits >> b & 1],
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
    training prompts of yet; training shrinks each attack family's own bit towards 0
    (``train.L2_ATTACK_RULE``) so that benign look-alikes cannot cancel that count.
    """
    bitmat = ((hits[:, None] >> np.arange(len(kinds))) & 1).astype(np.float32)
    attack = np.array([k == "attack" for k in kinds], dtype=np.float32)
    return np.concatenate(
        [bitmat, (bitmat @ attack)[:, None], (bitmat @ (1.0 - attack))[:, None]], axis=1
    )
