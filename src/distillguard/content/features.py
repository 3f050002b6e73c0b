"""Hashed character n-grams for a whole batch at once, in numpy.

A per-prompt Python loop over n-grams manages a few thousand prompts per second; the
batch path here joins the batch into one string, turns it into one array of code points,
and hashes every n-gram of every prompt with a handful of vectorised operations. That is
what makes 100k-prompt Arrow batches cheap. Character n-grams (not words) because Chinese
has no spaces and because paraphrases share sub-word pieces ("reason", "思考").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Long prompts are cut to their head and tail: elicitation instructions sit before or after
# the task (a pasted document or code file in the middle says little), and a bound on the
# length bounds the cost per prompt.
HEAD_CHARS = 768
TAIL_CHARS = 384
ORDERS = (2, 3, 4, 5)
SEP = "\x00"
_SYS_JOIN = " \x01 "  # marks where the system prompt ends; \x01 never occurs in real text

_MULT = np.uint64(0x9E3779B97F4A7C15)
_ORDER_SALT = {n: np.uint64((0xC2B2AE3D27D4EB4F * (n + 1)) & 0xFFFFFFFFFFFFFFFF) for n in ORDERS}


def clip(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + " \u2026 " + text[-TAIL_CHARS:]


def compose(prompts: Sequence[str], system_prompts: Sequence[str | None] | None) -> list[str]:
    """One text per request: the system prompt (which can carry the elicitation) + prompt."""
    if system_prompts is None:
        return [clip(p) for p in prompts]
    if len(system_prompts) != len(prompts):
        raise ValueError("system_prompts must have the same length as prompts")
    return [
        clip(p) if not s else clip(s)[:512] + _SYS_JOIN + clip(p)
        for p, s in zip(prompts, system_prompts, strict=True)
    ]


@dataclass(frozen=True)
class NGramBatch:
    """Hashed n-grams of a batch, one part per n-gram order.

    In each part ``doc`` is non-decreasing (n-grams come in text order); ``counts[d]`` is
    the number of n-grams of prompt ``d`` over all parts. The training script uses this
    form; scoring uses the fused :func:`scan`, which gives the same buckets.
    """

    hashes: list[npt.NDArray[np.uint64]]
    doc: list[npt.NDArray[np.int64]]
    counts: npt.NDArray[np.int64]

    @property
    def n_docs(self) -> int:
        return len(self.counts)


def _fold_table() -> npt.NDArray[np.uint32]:
    # Normalise what paraphrases vary in and meaning does not depend on: which digits
    # ("generate 50" vs "generate 200"), which whitespace, full-width vs ASCII forms.
    # (Full-width digits become ASCII digits, not "0": folding digits comes first.)
    lut = np.arange(1 << 16, dtype=np.uint32)
    lut[0x30:0x3A] = 0x30
    lut[0xFF01:0xFF5F] -= 0xFEE0
    lut[[9, 10, 13, 0x3000, 0xA0]] = 0x20
    return lut


_FOLD = _fold_table()


def _codes(texts: Sequence[str]) -> npt.NDArray[np.uint32]:
    joined = SEP + SEP.join(texts) + SEP
    if joined.count(SEP) != len(texts) + 1:  # a prompt holding the separator itself
        joined = SEP + SEP.join(t.replace(SEP, " ") for t in texts) + SEP
    codes = np.frombuffer(joined.lower().encode("utf-32-le"), dtype=np.uint32)
    if len(codes) and int(codes.max()) < 1 << 16:
        codes = np.take(_FOLD, codes)
    else:
        codes = np.where(codes < 1 << 16, np.take(_FOLD, codes & 0xFFFF), codes)
    space = codes == 0x20
    space[1:] &= space[:-1]  # a space right after a space (codes[0] is SEP, never dropped)
    out: npt.NDArray[np.uint32] = codes[~space]  # runs of spaces collapsed to one
    return out


def ngrams(texts: Sequence[str]) -> NGramBatch:
    """All hashed n-grams (orders ``ORDERS``) of every text, prompts never mixed."""
    codes = _codes(texts)
    is_sep = codes == 0
    # seps_before[i] = separators at positions <= i; the n-gram starting at i belongs to
    # prompt seps_before[i] - 1 and is valid when no separator lies inside it.
    seps_before = np.cumsum(is_sep, dtype=np.int64)
    c64 = codes.astype(np.uint64)
    parts_h: list[npt.NDArray[np.uint64]] = []
    parts_d: list[npt.NDArray[np.int64]] = []
    length = len(codes)
    h = c64.copy()
    for n in range(2, max(ORDERS) + 1):
        m = length - n + 1
        if m <= 0:
            break
        # Rolling polynomial hash; wraparound in uint64 is intended.
        h = h[:m] * _MULT + c64[n - 1 : n - 1 + m]
        if n not in ORDERS:
            continue
        start_docs = seps_before[:m]
        valid = seps_before[n - 1 : n - 1 + m] == start_docs
        valid &= ~is_sep[:m]
        hv = h[valid] ^ _ORDER_SALT[n]
        parts_h.append(hv)
        parts_d.append(start_docs[valid] - 1)
    counts = np.zeros(len(texts), dtype=np.int64)
    for d in parts_d:
        counts += np.bincount(d, minlength=len(texts))
    return NGramBatch(hashes=parts_h, doc=parts_d, counts=counts)


def bucket(hashes: npt.NDArray[np.uint64], bits: int) -> npt.NDArray[np.intp]:
    """Feature index of each hash in a table of 2**bits weights (top bits mix best)."""
    mixed = hashes * _MULT
    return (mixed >> np.uint64(64 - bits)).astype(np.intp)


def normalize(text: str) -> str:
    """``text`` as the n-gram hashing sees it (lower-cased, digits, spaces, widths folded)."""
    codes = _codes([text])[1:-1]
    return codes.tobytes().decode("utf-32-le")


def gram_hash(gram: str) -> int:
    """Hash of one already-normalised n-gram (2 to 5 characters), as :func:`ngrams` has it."""
    if not min(ORDERS) <= len(gram) <= max(ORDERS) or SEP in gram:
        raise ValueError(f"not a hashable n-gram: {gram!r}")
    h = 0
    for ch in gram:
        h = (h * int(_MULT) + ord(ch)) & 0xFFFFFFFFFFFFFFFF
    return h ^ int(_ORDER_SALT[len(gram)])


@dataclass(frozen=True)
class Tables:
    """What :func:`scan` gathers from: the model's int8 weights and the rules' n-gram keys.

    ``ngram`` holds ``2**bits`` int8 weights plus a trailing 0 that n-grams crossing a
    prompt boundary are pointed at. ``cap`` packs each capability row of int8 weights as
    biased bytes (``q + 128``) into uint64 words, again with a trailing all-zero (all-128)
    row; packing lets one gather fetch eight weights. ``keys`` are the sorted hashes of the
    n-grams the rules ask about and ``key_bucket`` marks their buckets (a cheap first test).
    """

    bits: int
    ngram: npt.NDArray[np.int8]
    cap_bits: int
    cap: npt.NDArray[np.uint64]  # (2**cap_bits + 1, words)
    n_cap: int
    keys: npt.NDArray[np.uint64]  # sorted
    key_ids: npt.NDArray[np.int64]  # keys[j] is the caller's key number key_ids[j]
    key_bucket: npt.NDArray[np.bool_]

    @classmethod
    def build(
        cls,
        bits: int,
        ngram_q: npt.NDArray[np.int8],
        cap_bits: int,
        cap_q: npt.NDArray[np.int8],
        keys: Sequence[int],
    ) -> Tables:
        if cap_bits > bits:
            raise ValueError("the capability table cannot have more buckets than the n-gram table")
        ngram = np.zeros((1 << bits) + 1, dtype=np.int8)
        ngram[: 1 << bits] = ngram_q
        n_cap = cap_q.shape[1]
        words = -(-n_cap // 8)
        biased = np.full(((1 << cap_bits) + 1, words * 8), 128, dtype=np.uint8)
        biased[: 1 << cap_bits, :n_cap] = (cap_q.astype(np.int16) + 128).astype(np.uint8)
        cap = np.ascontiguousarray(biased).view("<u8").astype(np.uint64)
        key_arr = np.asarray(list(keys), dtype=np.uint64)
        if len(np.unique(key_arr)) != len(key_arr):
            raise ValueError("duplicate n-gram keys")
        order = np.argsort(key_arr, kind="stable")
        key_bucket = np.zeros((1 << bits) + 1, dtype=np.bool_)
        key_bucket[bucket(key_arr, bits)] = True
        return cls(bits, ngram, cap_bits, cap, n_cap, key_arr[order], order, key_bucket)


@dataclass(frozen=True)
class Scan:
    """Per-prompt sums of the quantised weights of all n-grams, and the rule keys present.

    ``lex[d]`` and ``cap[d]`` are exact integer sums of int8 weights, so they do not depend
    on summation order or on which other prompts share the batch. Prompt ``key_doc[j]``
    holds the n-gram numbered ``key_id[j]`` in the ``keys`` given to :meth:`Tables.build`.
    """

    lex: npt.NDArray[np.int64]
    cap: npt.NDArray[np.int64]  # (n_docs, n_cap)
    counts: npt.NDArray[np.int64]
    key_doc: npt.NDArray[np.int64]
    key_id: npt.NDArray[np.int64]


_M16 = np.uint64(0x00FF00FF00FF00FF)
_M32 = np.uint64(0x0000FFFF0000FFFF)
_LOW32 = np.uint64(0xFFFFFFFF)


def scan(texts: Sequence[str], tables: Tables) -> Scan:
    """Hash every n-gram of ``texts`` and sum the table weights per prompt, in one pass.

    The same n-grams and buckets as :func:`ngrams` + :func:`bucket`, but fused: no
    per-order compaction (an n-gram that crosses a prompt boundary is pointed at the zero
    weight instead of being dropped), int8 gathers instead of float ones, and the
    capability weights summed eight at a time in uint64 lanes.
    """
    n_docs = len(texts)
    n_cap = tables.n_cap
    if n_docs == 1:
        return scan_one(texts[0], tables)
    if n_docs == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Scan(empty, np.zeros((0, n_cap), dtype=np.int64), empty, empty, empty)
    codes = _codes(texts)
    length = len(codes)
    seps = np.flatnonzero(codes == 0)  # n_docs + 1 separators
    max_n = max(ORDERS)
    c64 = np.zeros(length + max_n - 1, dtype=np.uint64)  # zero padding = more separators
    c64[:length] = codes
    shift = np.uint64(64 - tables.bits)
    cap_shift = tables.bits - tables.cap_bits
    zero = 1 << tables.bits
    words = tables.cap.shape[1]
    lex_tot = np.zeros(length, dtype=np.int16)  # |sum| <= 4 orders * 127
    # Per capability word: 16-bit lanes, even and odd bytes (<= 4 orders * 255 each).
    even = [np.zeros(length, dtype=np.uint64) for _ in range(words)]
    odd = [np.zeros(length, dtype=np.uint64) for _ in range(words)]
    key_pos: list[npt.NDArray[np.int64]] = []
    key_ids: list[npt.NDArray[np.int64]] = []
    h = c64
    for n in range(2, max_n + 1):
        m = len(h) - 1
        h = h[:m] * _MULT
        h += c64[n - 1 : n - 1 + m]
        if n not in ORDERS:
            continue
        salted = h[:length] ^ _ORDER_SALT[n]
        b = salted * _MULT
        b >>= shift
        idx = b.view(np.int64)
        # n-grams that start on, or run into, a separator belong to no prompt
        inv = (seps[:, None] - np.arange(n)).ravel()
        idx[inv[inv >= 0]] = zero
        lex_tot += np.take(tables.ngram, idx)
        cidx = idx >> cap_shift
        for w in range(words):
            g = np.take(tables.cap[:, w], cidx)
            even[w] += g & _M16
            g >>= np.uint64(8)
            g &= _M16
            odd[w] += g
        cand = np.flatnonzero(np.take(tables.key_bucket, idx))
        if len(cand):
            hc = salted[cand]
            pos = np.minimum(np.searchsorted(tables.keys, hc), len(tables.keys) - 1)
            exact = tables.keys[pos] == hc
            key_pos.append(cand[exact])
            key_ids.append(tables.key_ids[pos[exact]])
    starts = seps[:-1]
    lex = np.add.reduceat(lex_tot, starts, dtype=np.int64)
    seg_len = np.diff(np.append(starts, length))
    n_orders = len(ORDERS)
    cap = np.empty((n_docs, words * 8), dtype=np.int64)
    for w in range(words):
        # 16-bit lanes -> 32-bit lanes; lane sums stay below 2**32 for any clipped prompt.
        for lanes, parity in ((even[w], 0), (odd[w], 1)):
            for half in (0, 1):
                part = (lanes >> np.uint64(16 * half)) & _M32 if half else lanes & _M32
                s = np.add.reduceat(part, starts)
                byte = w * 8 + parity + 2 * half
                cap[:, byte] = (s & _LOW32).astype(np.int64)
                cap[:, byte + 4] = (s >> np.uint64(32)).astype(np.int64)
    cap -= (128 * n_orders * seg_len)[:, None]
    lengths = seps[1:] - seps[:-1] - 1
    counts = np.zeros(n_docs, dtype=np.int64)
    for n in ORDERS:
        counts += np.maximum(lengths - n + 1, 0)
    if key_pos:
        kp = np.concatenate(key_pos)
        key_doc = np.searchsorted(seps, kp, side="right") - 1
        key_id = np.concatenate(key_ids)
    else:
        key_doc = key_id = np.zeros(0, dtype=np.int64)
    return Scan(lex, cap[:, :n_cap], counts, key_doc, key_id)


_SALT_ROWS = np.array([_ORDER_SALT[n] for n in ORDERS], dtype=np.uint64)[:, None]


def scan_one(text: str, tables: Tables) -> Scan:
    """:func:`scan` of one prompt: all orders as rows of one array, so fewer numpy calls."""
    if SEP in text:
        text = text.replace(SEP, " ")
    raw = np.frombuffer(text.lower().encode("utf-32-le"), dtype=np.uint32)
    if len(raw) and int(raw.max()) < 1 << 16:
        folded = np.take(_FOLD, raw)
    else:
        folded = np.where(raw < 1 << 16, np.take(_FOLD, raw & 0xFFFF), raw)
    space = folded == 0x20
    space[1:] &= space[:-1]  # a space right after a space (overlap is handled by numpy)
    if len(space):
        space[0] = False
    max_n = max(ORDERS)
    length = len(folded) - int(np.count_nonzero(space))
    c64 = np.zeros(length + max_n - 1, dtype=np.uint64)
    c64[:length] = folded[~space]
    rows = np.empty((len(ORDERS), length), dtype=np.uint64)
    h = c64
    for n in range(2, max_n + 1):
        h = h[:-1] * _MULT
        h += c64[n - 1 : n - 1 + len(h)]
        if n in ORDERS:
            rows[ORDERS.index(n)] = h[:length]
    salted = rows ^ _SALT_ROWS
    b = salted * _MULT
    b >>= np.uint64(64 - tables.bits)
    idx = b.view(np.int64)
    for r, n in enumerate(ORDERS):  # n-grams that run past the end of the prompt
        idx[r, max(length - n + 1, 0) :] = 1 << tables.bits
    lex = int(np.take(tables.ngram, idx).sum(dtype=np.int64))
    cidx = (idx >> (tables.bits - tables.cap_bits)).ravel()
    total = len(cidx)
    cap = np.empty(tables.cap.shape[1] * 8, dtype=np.int64)
    for w in range(tables.cap.shape[1]):
        lanes = np.take(tables.cap[:, w], cidx).view(np.uint8).reshape(total, 8)
        # float32 sums of bytes are exact below 2**24 (here at most 4 * 1,700 * 255)
        cap[w * 8 : w * 8 + 8] = np.ones(total, dtype=np.float32) @ lanes.astype(np.float32)
    cap -= 128 * total
    cand = np.flatnonzero(np.take(tables.key_bucket, idx))
    if len(cand):
        hc = salted.ravel()[cand]
        pos = np.minimum(np.searchsorted(tables.keys, hc), len(tables.keys) - 1)
        key_id = tables.key_ids[pos[tables.keys[pos] == hc]]
    else:
        key_id = np.zeros(0, dtype=np.int64)
    count = sum(max(length - n + 1, 0) for n in ORDERS)
    return Scan(
        lex=np.array([lex], dtype=np.int64),
        cap=cap[None, : tables.n_cap],
        counts=np.array([count], dtype=np.int64),
        key_doc=np.zeros(len(key_id), dtype=np.int64),
        key_id=key_id,
    )
