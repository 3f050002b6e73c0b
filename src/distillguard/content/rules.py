"""Regex rule families (``rules.json``) matched over a whole batch in one pass.

The rules are data, like detection-rules corpora: a family has a name, a kind (``attack``
or benign ``context``) and patterns. Every family is one feature of the linear model; the
model learns how much each is worth, so a rule that also fires on benign look-alikes is
discounted by training rather than by hand-tuned weights.

Python's ``re`` costs about 15 ns per character per pattern, far too slow to run ~60
patterns over every prompt at 20k prompts/s. So each family also lists *anchors*: literals
of which every match contains at least one. Anchors are looked up among the n-gram hashes
the linear model computes anyway (a table gather, vectorised over the batch); a family's
regex then runs only over the prompts that contain one of its anchors, joined into one
string for a single C-level scan. Ordinary prompts skip most families entirely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from distillguard.content import features
from distillguard.errors import ConfigError

SEP = "\x00"


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # "attack" or "context"
    patterns: tuple[str, ...]
    anchors: tuple[str, ...]


class RuleSet:
    """Compiled rule families; ``match`` returns one bitmask per text (bit i = rule i)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if len(rules) > 62:
            raise ConfigError("at most 62 rule families fit the int64 signal bitmask")
        self.rules = tuple(rules)
        self.names = tuple(r.name for r in rules)
        self._patterns: list[re.Pattern[str]] = []
        anchor_hash: dict[int, int] = {}
        for i, rule in enumerate(rules):
            for j, pattern in enumerate(rule.patterns):
                try:
                    compiled = re.compile(pattern)
                except re.error as err:
                    raise ConfigError(
                        f"bad pattern: {err}",
                        source="rules.json",
                        field=f"{rule.name}.patterns[{j}]",
                    ) from None
                if compiled.groups:
                    # m.end(1) below must be the end of the match, so no inner groups.
                    raise ConfigError(
                        "use (?:...) instead of capturing groups",
                        source="rules.json",
                        field=f"{rule.name}.patterns[{j}]",
                    )
            # Inside a lookahead every match is zero-width, so the scan resumes at the next
            # character instead of after the match: a match that runs into the next prompt
            # (and is discarded) cannot hide a real one.
            self._patterns.append(re.compile("(?=(" + "|".join(rule.patterns) + "))"))
            if not rule.anchors:
                raise ConfigError(
                    "a rule needs at least one anchor", source="rules.json", field=rule.name
                )
            for anchor in rule.anchors:
                h = _anchor_hash(anchor)
                anchor_hash[h] = anchor_hash.get(h, 0) | (1 << i)
        keys = np.array(sorted(anchor_hash), dtype=np.uint64)
        self._anchor_keys = keys
        self._anchor_masks = np.array([anchor_hash[int(k)] for k in keys], dtype=np.int64)
        self._anchor_table = np.zeros(1 << _GATE_BITS, dtype=np.bool_)
        self._anchor_table[features.bucket(keys, _GATE_BITS)] = True

    @classmethod
    def load_default(cls) -> RuleSet:
        text = resources.files("distillguard.content").joinpath("rules.json").read_text("utf-8")
        return cls.from_json(text, source="rules.json")

    @classmethod
    def from_json(cls, text: str, source: str = "<rules>") -> RuleSet:
        try:
            data = json.loads(text)
            rules = [
                Rule(
                    name=str(r["name"]),
                    kind=str(r["kind"]),
                    patterns=tuple(r["patterns"]),
                    anchors=tuple(r.get("anchors", ())),
                )
                for r in data["rules"]
            ]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"invalid rule file: {err}", source=source) from None
        for r in rules:
            if r.kind not in ("attack", "context"):
                raise ConfigError(f"unknown kind {r.kind!r}", source=source, field=r.name)
        return cls(rules)

    def gate(self, grams: features.NGramBatch) -> npt.NDArray[np.int64]:
        """Per prompt, the bitmask of families one of whose anchors occurs in it."""
        out = np.zeros(grams.n_docs, dtype=np.int64)
        for h, d in zip(grams.hashes, grams.doc, strict=True):
            # Cheap table test first (few n-grams pass), exact hash comparison after.
            cand = np.flatnonzero(self._anchor_table[features.bucket(h, _GATE_BITS)])
            if len(cand) == 0:
                continue
            hc = h[cand]
            pos = np.minimum(np.searchsorted(self._anchor_keys, hc), len(self._anchor_keys) - 1)
            exact = self._anchor_keys[pos] == hc
            np.bitwise_or.at(out, d[cand[exact]], self._anchor_masks[pos[exact]])
        return out

    def match(
        self, texts: Sequence[str], gate: npt.NDArray[np.int64] | None = None
    ) -> npt.NDArray[np.int64]:
        """Bitmask of the rule families that match each text (texts are lower-cased here).

        ``gate`` (from :meth:`gate`) limits each family to the prompts holding one of its
        anchors; without it every family's regex runs over every prompt (slow; used to
        check that the anchors lose nothing).
        """
        n = len(texts)
        out = np.zeros(n, dtype=np.int64)
        for i, pattern in enumerate(self._patterns):
            rows = np.arange(n) if gate is None else np.flatnonzero(gate & (np.int64(1) << i))
            if len(rows) == 0:
                continue
            sub = [texts[r] for r in rows.tolist()]
            joined = SEP.join(sub).lower()
            lengths = np.fromiter((len(t) + 1 for t in sub), dtype=np.int64, count=len(sub))
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            spans = [(m.start(), m.end(1)) for m in pattern.finditer(joined)]
            if not spans:
                continue
            se = np.asarray(spans, dtype=np.int64)
            doc = np.searchsorted(starts, se[:, 0], side="right") - 1
            doc_end = np.searchsorted(starts, se[:, 1] - 1, side="right") - 1
            hit = doc[doc == doc_end]  # a match must not run across two prompts
            out[rows[hit]] |= np.int64(1) << i
        return out


_GATE_BITS = 20


def _anchor_hash(anchor: str) -> int:
    """Hash of the anchor's first (up to 5) characters, as :func:`features.ngrams` has it."""
    head = anchor.lower()[: max(features.ORDERS)]
    if len(head) < min(features.ORDERS):
        raise ConfigError(f"anchor {anchor!r} is shorter than {min(features.ORDERS)} characters")
    grams = features.ngrams([head])
    order = features.ORDERS.index(len(head))
    (h,) = grams.hashes[order]
    return int(h)
