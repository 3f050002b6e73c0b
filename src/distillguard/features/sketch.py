"""A mergeable sketch of what an account's prompts look like: the kernel mean embedding.

Each sampled prompt becomes a unit vector: its hashed character 3-5-grams (the content
classifier's hashing, ``content.features.ngrams``) folded by feature hashing, with a random
sign per n-gram, into ``SKETCH_DIM`` dimensions, square-rooted and L2-normalised. Feature
hashing keeps inner products in expectation, so the inner product of two sketches estimates
the cosine similarity of the two prompts' (square-rooted) n-gram counts: a kernel on text.

The kernel being linear in the sketch, the maximum mean discrepancy (MMD) between two sets
of prompts needs only their *sums*: ``MMD^2 = |mean_a - mean_b|^2``, and its unbiased
U-statistic also needs the sum of squared norms of each set (see :func:`mmd2_unbiased`).
Sums merge, so the sketch is kept like every other account sum: per (account, day),
accumulated over days, pooled over a campaign's members. Vectors are quantised to integers
so that the sums are exact and do not depend on the engine's summation order (DuckDB and
Spark agree to the bit).

Why a linear kernel on hashed n-grams rather than a sentence-embedding model: it costs one
more numpy pass over text the classifier has just read (the sample is budget-bounded, so
this stays cheap at any log size), needs no download, works for Chinese without a tokenizer,
and templates, wrappers and topic vocabulary, which is what separates one traffic source
from another, are exactly what character n-grams see. What it cannot see is meaning beyond
words: a paraphrase with no shared vocabulary is a different prompt to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from distillguard.content import features as cf

SKETCH_BITS = 6
SKETCH_DIM = 1 << SKETCH_BITS
# Fixed-point scale of a unit vector's coordinates: rounding error per coordinate
# (<= 1/2048) is far below the sampling noise of any mean over a few prompts.
SKETCH_SCALE = 1024
# Bigrams are mostly the language's own letter pairs; 3-5-grams carry words and phrasing.
SKETCH_ORDERS = (3, 4, 5)
CHUNK = 1024
SKETCH_COLUMNS = tuple(f"c_emb_{i:02d}" for i in range(SKETCH_DIM))
SKETCH_SQ_COLUMN = "c_emb_sq"  # sum over prompts of each quantised vector's squared norm
# The account features (``derive``): the same over the sampled prompts, in unit scale.
SKETCH_FEATURES = tuple(f"prompt_sketch_{i:02d}" for i in range(SKETCH_DIM))
SKETCH_SQ_FEATURE = "prompt_sketch_sq"

FloatArray = npt.NDArray[np.float64]
_MULT = np.uint64(0x9E3779B97F4A7C15)  # cf.bucket's mixing constant


def prompt_sketch(
    prompts: Sequence[str | None],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Quantised unit sketches of ``prompts`` (n, SKETCH_DIM) and their squared norms (n,).

    A prompt with no 3-gram (empty, or one or two characters) has the zero vector: it says
    nothing about the distribution and adds nothing to a sum. Each prompt's sketch depends
    on that prompt alone, whatever batch it comes in.
    """
    vec = np.zeros((len(prompts), SKETCH_DIM), dtype=np.int32)
    # In chunks, as the classifier does: the n-gram arrays of a chunk stay in cache, which
    # makes a 100k batch about three times faster than one pass over all of it.
    for start in range(0, len(prompts), CHUNK):
        vec[start : start + CHUNK] = _sketch_chunk(prompts[start : start + CHUNK])
    sq = (vec.astype(np.int64) ** 2).sum(axis=1)
    return vec, sq


def _sketch_chunk(prompts: Sequence[str | None]) -> npt.NDArray[np.int32]:
    texts = [cf.clip(p or "") for p in prompts]
    n = len(texts)
    batch = cf.ngrams(texts)
    # (a batch of very short texts has no parts for the longer orders)
    keep = [i for i, order in enumerate(cf.ORDERS[: len(batch.hashes)]) if order in SKETCH_ORDERS]
    empty = np.zeros(0, dtype=np.uint64)
    hashes = np.concatenate([empty, *(batch.hashes[i] for i in keep)])
    doc = np.concatenate([empty.astype(np.int64), *(batch.doc[i] for i in keep)])
    # One more bit than the dimensions: the lowest is the n-gram's sign (a count sketch).
    # Counting (dimension, sign) cells apart keeps bincount on its fast unweighted path.
    # (cf.bucket's arithmetic, in place: this is the one pass over every n-gram)
    hashes *= _MULT
    hashes >>= np.uint64(64 - SKETCH_BITS - 1)
    cells = hashes.view(np.int64)
    doc *= 2 * SKETCH_DIM
    cells += doc
    counts = np.bincount(cells, minlength=n * 2 * SKETCH_DIM).reshape(n, SKETCH_DIM, 2)
    v = (counts[:, :, 0] - counts[:, :, 1]).astype(np.float64)
    # Sub-linear counts: a word repeated through a long prompt should not be the prompt.
    v = np.sign(v) * np.sqrt(np.abs(v))
    norm = np.sqrt((v * v).sum(axis=1, keepdims=True))
    unit = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    out: npt.NDArray[np.int32] = np.rint(unit * SKETCH_SCALE).astype(np.int32)
    return out


def mmd2_unbiased(
    sum_a: FloatArray,
    sq_a: FloatArray,
    n_a: FloatArray,
    sum_b: FloatArray,
    sq_b: FloatArray,
    n_b: FloatArray,
) -> FloatArray:
    """Unbiased linear-kernel MMD^2 between sets a and b, row by row, from their sums.

    ``(|S_a|^2 - Q_a) / (n_a (n_a - 1)) + (|S_b|^2 - Q_b) / (n_b (n_b - 1))
    - 2 S_a.S_b / (n_a n_b)``, where S is a set's sum of vectors and Q its sum of squared
    norms: each within-set term leaves out the pairs of a prompt with itself, so that
    two samples of one distribution give 0 in expectation whatever their sizes. Sets with
    fewer than two prompts give NaN.
    """
    na = np.asarray(n_a, dtype=np.float64)
    nb = np.asarray(n_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        within_a = ((sum_a * sum_a).sum(axis=-1) - sq_a) / (na * (na - 1.0))
        within_b = ((sum_b * sum_b).sum(axis=-1) - sq_b) / (nb * (nb - 1.0))
        cross = (sum_a * sum_b).sum(axis=-1) / (na * nb)
    out: FloatArray = np.where((na >= 2) & (nb >= 2), within_a + within_b - 2.0 * cross, np.nan)
    return out
