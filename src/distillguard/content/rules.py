"""Regex rule families (``rules.json``) matched over a whole batch in one pass.

The rules are data, like detection-rules corpora: a family has a name, a kind (``attack``
or benign ``context``) and patterns. Every family is one feature of the linear model; the
model learns how much each is worth, so a rule that also fires on benign look-alikes is
discounted by training rather than by hand-tuned weights.

All patterns are compiled into one alternation and run once over the batch joined into
one string: one C-level scan instead of (rules x prompts) Python calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from distillguard.errors import ConfigError

SEP = "\x00"


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # "attack" or "context"
    patterns: tuple[str, ...]


class RuleSet:
    """Compiled rule families; ``match`` returns one bitmask per text (bit i = rule i)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if len(rules) > 62:
            raise ConfigError("at most 62 rule families fit the int64 signal bitmask")
        self.rules = tuple(rules)
        self.names = tuple(r.name for r in rules)
        alternatives: list[str] = []
        self._group_rule: dict[str, int] = {}
        for i, rule in enumerate(rules):
            for j, pattern in enumerate(rule.patterns):
                compiled = re.compile(pattern)
                if compiled.groups:
                    # lastgroup below must name the rule, so inner groups are forbidden.
                    raise ConfigError(
                        "use (?:...) instead of capturing groups", source="rules.json",
                        field=f"{rule.name}.patterns[{j}]",
                    )
                group = f"r{i}_{j}"
                self._group_rule[group] = i
                alternatives.append(f"(?P<{group}>{pattern})")
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    @classmethod
    def load_default(cls) -> RuleSet:
        text = resources.files("distillguard.content").joinpath("rules.json").read_text("utf-8")
        return cls.from_json(text, source="rules.json")

    @classmethod
    def from_json(cls, text: str, source: str = "<rules>") -> RuleSet:
        try:
            data = json.loads(text)
            rules = [
                Rule(name=str(r["name"]), kind=str(r["kind"]), patterns=tuple(r["patterns"]))
                for r in data["rules"]
            ]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"invalid rule file: {err}", source=source) from None
        for r in rules:
            if r.kind not in ("attack", "context"):
                raise ConfigError(f"unknown kind {r.kind!r}", source=source, field=r.name)
        return cls(rules)

    def match(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Bitmask of the rule families that match each text (texts are lower-cased here)."""
        n = len(texts)
        out = np.zeros(n, dtype=np.int64)
        if self._pattern is None or n == 0:
            return out
        joined = SEP.join(texts).lower()
        lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=n)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        pos: list[int] = []
        ends: list[int] = []
        bits: list[int] = []
        group_rule = self._group_rule
        for m in self._pattern.finditer(joined):
            pos.append(m.start())
            ends.append(m.end())
            bits.append(group_rule[m.lastgroup or ""])
        if not pos:
            return out
        p = np.asarray(pos, dtype=np.int64)
        doc = np.searchsorted(starts, p, side="right") - 1
        doc_end = np.searchsorted(starts, np.asarray(ends, dtype=np.int64) - 1, side="right") - 1
        ok = doc == doc_end  # a match must not run across two prompts
        masks = np.left_shift(np.int64(1), np.asarray(bits, dtype=np.int64))
        np.bitwise_or.at(out, doc[ok], masks[ok])
        return out
