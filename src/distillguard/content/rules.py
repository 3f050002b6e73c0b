"""Regex rule families (``rules.json``), run only where they can match.

The rules are data, like detection-rules corpora: a family has a name, a kind (``attack``
or benign ``context``) and patterns. Every family is one feature of the linear model; the
model learns how much each is worth, so a rule that also fires on benign look-alikes is
discounted by training rather than by hand-tuned weights.

Python's ``re`` costs about 100 ns per character per pattern, far too slow to run ~60
patterns over every prompt at 20k prompts/s. So every pattern gets a *prefilter*, derived
from the pattern itself when the rules are loaded (as RE2 and Hyperscan do): groups of
literals such that every match contains one literal of each group. ``\\bshow\\W+...(?:full|
complete)...(?:reasoning|thinking)`` needs "show", one of "full"/"complete" and one of
"reasoning"/"thinking". The literals are looked up among the n-gram hashes the linear model
computes anyway (a literal longer than 5 characters as all of its 5-grams), so deciding
which prompts a pattern can match costs a few vectorised table lookups; the pattern then
runs (``search``, per prompt) only on those, and not on prompts its family already matched.
A family's hand-written ``anchors`` (literals every match of the family contains) are one
more such group. Ordinary prompts reach no regex at all.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.content import features
from distillguard.errors import ConfigError

# The parser behind ``re.compile`` (not a public module; its stable alias ``sre_parse`` warns
# on import). The prefilter only reads the parse tree, and a construct it does not know
# simply contributes no literal, which is always safe.
_parser: Any = importlib.import_module("re._parser")
_IGNORECASE = int(re.IGNORECASE)
_MAX_SET = 64  # bound on the literal sets built by concatenating alternatives


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # "attack" or "context"
    patterns: tuple[str, ...]
    anchors: tuple[str, ...]


# A prefilter: AND over groups, OR over a group's literals, AND over a literal's key ids.
Prefilter = tuple[tuple[tuple[int, ...], ...], ...]


class RuleSet:
    """Compiled rule families; ``match`` returns one bitmask per text (bit i = rule i)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if len(rules) > 62:
            raise ConfigError("at most 62 rule families fit the int64 signal bitmask")
        self.rules = tuple(rules)
        self.names = tuple(r.name for r in rules)
        self._key_index: dict[int, int] = {}
        # per family: (anchor prefilter, [(pattern, its prefilter), ...])
        self._families: list[tuple[Prefilter, list[tuple[re.Pattern[str], Prefilter]]]] = []
        for rule in rules:
            if not rule.anchors:
                raise ConfigError(
                    "a rule needs at least one anchor", source="rules.json", field=rule.name
                )
            for anchor in rule.anchors:
                if len(features.normalize(anchor.lower())) < min(features.ORDERS):
                    raise ConfigError(
                        f"anchor {anchor!r} is shorter than {min(features.ORDERS)} characters",
                        source="rules.json",
                        field=rule.name,
                    )
            # As before: an anchor stands for its first (up to 5) characters.
            heads = {features.normalize(a.lower())[: max(features.ORDERS)] for a in rule.anchors}
            patterns: list[tuple[re.Pattern[str], Prefilter]] = []
            self._families.append((self._prefilter([heads]), patterns))
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
                    # Patterns are combined and matched as one; groups would shift.
                    raise ConfigError(
                        "use (?:...) instead of capturing groups",
                        source="rules.json",
                        field=f"{rule.name}.patterns[{j}]",
                    )
                patterns.append((compiled, self._prefilter(required_literals(pattern))))
        self.keys = tuple(self._key_index)  # key id -> n-gram hash
        # For one prompt at a time (no numpy): each group as the set of its one-key
        # literals (a set test) plus its longer literals (key tuples).
        self._one = [
            (_as_sets(anchor_pre), [(pattern, _as_sets(pre)) for pattern, pre in patterns])
            for anchor_pre, patterns in self._families
        ]

    def _prefilter(self, groups: Sequence[set[str]]) -> Prefilter:
        out: list[tuple[tuple[int, ...], ...]] = []
        for group in groups:
            lits: list[tuple[int, ...]] = []
            for lit in group:
                grams = _literal_grams(lit)
                if grams is None:  # too short to look up: the group says nothing
                    lits = []
                    break
                lits.append(
                    tuple(self._key_index.setdefault(g, len(self._key_index)) for g in grams)
                )
            if lits:
                out.append(tuple(sorted(set(lits))))
        return tuple(out)

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

    # -- which prompts hold which literals --------------------------------------------------

    def presence(
        self, key_doc: npt.NDArray[np.int64], key_id: npt.NDArray[np.int64], n_docs: int
    ) -> npt.NDArray[np.bool_]:
        """(key, prompt) matrix from the key hits of :func:`features.scan`."""
        out = np.zeros((max(1, len(self.keys)), n_docs), dtype=np.bool_)
        out[key_id, key_doc] = True
        return out

    def gate(self, grams: features.NGramBatch) -> npt.NDArray[np.bool_]:
        """The same (key, prompt) matrix from an :class:`features.NGramBatch`."""
        keys = np.asarray(self.keys, dtype=np.uint64)
        order = np.argsort(keys)
        sk = keys[order]
        docs: list[npt.NDArray[np.int64]] = []
        ids: list[npt.NDArray[np.int64]] = []
        for h, d in zip(grams.hashes, grams.doc, strict=True):
            if len(sk) == 0 or len(h) == 0:
                continue
            pos = np.minimum(np.searchsorted(sk, h), len(sk) - 1)
            exact = sk[pos] == h
            docs.append(d[exact])
            ids.append(order[pos[exact]])
        if not docs:
            return self.presence(np.zeros(0, np.int64), np.zeros(0, np.int64), grams.n_docs)
        return self.presence(np.concatenate(docs), np.concatenate(ids), grams.n_docs)

    # -- matching ----------------------------------------------------------------------------

    def match(
        self, texts: Sequence[str], gate: npt.NDArray[np.bool_] | None = None
    ) -> npt.NDArray[np.int64]:
        """Bitmask of the rule families that match each text (texts are lower-cased here).

        ``gate`` (from :meth:`gate` or :meth:`presence`) limits each pattern to the prompts
        that hold its literals; without it every pattern runs on every prompt (slow; used
        to check that the prefilters lose nothing).
        """
        n = len(texts)
        out = np.zeros(n, dtype=np.int64)
        lowered: dict[int, str] = {}
        for fam, (anchor_pre, patterns) in enumerate(self._families):
            if gate is None:
                rows = np.arange(n)
                sub = None
            else:
                rows = np.flatnonzero(_evaluate(anchor_pre, gate))
                sub = gate[:, rows]
            if len(rows) == 0:
                continue
            hit = np.zeros(len(rows), dtype=np.bool_)
            for pattern, pre in patterns:
                cand = ~hit if sub is None else _evaluate(pre, sub) & ~hit
                for j in np.flatnonzero(cand).tolist():
                    r = int(rows[j])
                    text = lowered.get(r)
                    if text is None:
                        text = lowered[r] = texts[r].lower()
                    if pattern.search(text) is not None:
                        hit[j] = True
            out[rows[hit]] |= np.int64(1) << fam
        return out

    def match_one(self, text: str, keys: set[int]) -> int:
        """:meth:`match` for one text whose present key ids are ``keys`` (no numpy)."""
        hits = 0
        if not keys:
            return hits  # every family's anchors need a key
        lowered: str | None = None
        for fam, (anchor_sets, patterns) in enumerate(self._one):
            if not _holds(anchor_sets, keys):
                continue
            for pattern, sets in patterns:
                if not _holds(sets, keys):
                    continue
                if lowered is None:
                    lowered = text.lower()
                if pattern.search(lowered) is not None:
                    hits |= 1 << fam
                    break
        return hits


def _evaluate(pre: Prefilter, present: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which columns (prompts) of a (key, prompt) matrix pass the prefilter."""
    ok = np.ones(present.shape[1], dtype=np.bool_)
    for group in pre:
        any_lit = np.zeros_like(ok)
        for lit in group:
            if len(lit) == 1:
                any_lit |= present[lit[0]]
            else:
                any_lit |= present[list(lit)].all(axis=0)
        ok &= any_lit
        if not ok.any():
            break
    return ok


# A group for one prompt at a time: its one-key literals as a set, and its longer literals
# by their first key (a set test first, key by key only for the few that can hold).
_SetGroup = tuple[frozenset[int], dict[int, list[tuple[int, ...]]]]


def _as_sets(pre: Prefilter) -> tuple[_SetGroup, ...]:
    out: list[_SetGroup] = []
    for group in pre:
        by_first: dict[int, list[tuple[int, ...]]] = {}
        for lit in group:
            if len(lit) > 1:
                by_first.setdefault(lit[0], []).append(lit[1:])
        out.append((frozenset(lit[0] for lit in group if len(lit) == 1), by_first))
    return tuple(out)


def _holds(groups: tuple[_SetGroup, ...], keys: set[int]) -> bool:
    for single, by_first in groups:
        if not single.isdisjoint(keys):
            continue
        if not any(
            all(k in keys for k in rest)
            for first in keys.intersection(by_first)
            for rest in by_first[first]
        ):
            return False
    return True


def _literal_grams(literal: str) -> tuple[int, ...] | None:
    """Hashes of the n-grams that a text containing ``literal`` must contain, or None."""
    t = features.normalize(literal)
    lo, hi = min(features.ORDERS), max(features.ORDERS)
    if len(t) < lo or features.SEP in t:
        return None
    if len(t) <= hi:
        return (features.gram_hash(t),)
    starts = sorted({*range(0, len(t) - hi + 1, hi), len(t) - hi})
    return tuple(features.gram_hash(t[s : s + hi]) for s in starts)


# -- literals every match of a pattern contains ---------------------------------------------


def required_literals(pattern: str) -> list[set[str]]:
    """Groups of literals such that every match of ``pattern`` contains one of each group.

    Walks the parse tree: runs of literal characters (with small alternations, character
    classes and optional parts expanded into sets of strings) become groups; an
    alternation of sub-patterns contributes one group made of one group of each
    alternative; anything else (classes, repeats that may be absent, look-arounds,
    case-insensitive parts) contributes nothing. Only ever too permissive, never too strict.
    """
    tree = _parser.parse(pattern)
    if int(tree.state.flags) & _IGNORECASE:
        return []
    groups, _ = _sequence(list(tree))
    return [g for g in groups if _useful(g)]


def _useful(group: set[str]) -> bool:
    return bool(group) and all(len(s) >= min(features.ORDERS) for s in group)


def _minimal(group: set[str]) -> set[str]:
    """Drop strings that contain another member: the shorter one is implied."""
    return {s for s in group if not any(o != s and o in s for o in group)}


def _sequence(items: list[Any]) -> tuple[list[set[str]], set[str] | None]:
    """(groups, exact): ``exact`` is the set of all strings the sequence matches, if small."""
    groups: list[set[str]] = []
    cur: set[str] = {""}
    exact_all = True
    for item in items:
        ex = _exact(item)
        if ex is not None:
            prod = {a + b for a in cur for b in ex}
            if len(prod) <= _MAX_SET:
                cur = prod
                continue
            exact_all = False
            groups.append(_minimal(cur))
            cur = ex
            continue
        exact_all = False
        groups.append(_minimal(cur))
        cur = {""}
        groups.extend(_inner(item))
    groups.append(_minimal(cur))
    return groups, (cur if exact_all else None)


def _exact(item: Any) -> set[str] | None:
    op, av = item
    name = str(op)
    if name == "LITERAL":
        return {chr(av)}
    if name == "AT":
        return {""}  # zero width: the strings around it are still adjacent
    if name == "IN":
        if all(str(o) == "LITERAL" for o, _ in av) and len(av) <= 8:
            return {chr(v) for _, v in av}
        return None
    if name == "BRANCH":
        out: set[str] = set()
        for alt in av[1]:
            _, ex = _sequence(list(alt))
            if ex is None:
                return None
            out |= ex
        return out if len(out) <= _MAX_SET else None
    if name == "SUBPATTERN":
        _, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            return None
        return _sequence(list(sub))[1]
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        lo, hi, sub = av
        if hi > 1:
            return None
        ex = _sequence(list(sub))[1]
        if ex is None:
            return None
        return ex | {""} if lo == 0 else ex
    return None


def _inner(item: Any) -> list[set[str]]:
    """Groups from a part that is not a small set of exact strings."""
    op, av = item
    name = str(op)
    if name == "SUBPATTERN":
        _, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            return []
        return _sequence(list(sub))[0]
    if name == "ATOMIC_GROUP":
        return _sequence(list(av))[0]
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        lo, _, sub = av
        return _sequence(list(sub))[0] if lo >= 1 else []
    if name == "BRANCH":
        union: set[str] = set()
        for alt in av[1]:
            alt_groups = [g for g in _sequence(list(alt))[0] if _useful(g)]
            if not alt_groups:
                return []
            union |= max(alt_groups, key=lambda g: (min(len(s) for s in g), -len(g)))
        return [_minimal(union)]
    return []
