"""Train the shipped weights and print the leave-one-family-out table.

    python -m distillguard.content.train            # writes content/weights.npz
    python -m distillguard.content.train --no-lofo  # skip the evaluation (faster)

Deterministic: the corpus is generated from a fixed seed, the optimiser is full-batch
L-BFGS (no sampling) and numpy's bincount sums in a fixed order, so the same code gives the
same weights byte for byte.

Protocol. Templates and tasks are split train/test by a stable hash (trainset.py). The
shipped model is fit on the train split only; its calibration (Platt scaling) and its flag
threshold are chosen on the held-out test split, so neither is tuned on prompts the
weights saw. Leave-one-family-out: for each attack family, refit without any prompt of
that family and count how many of its prompts (all of them: none was seen) score above the
threshold that flags <= 1% of held-out benign prompts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from distillguard.content import features, trainset
from distillguard.content.model import ContentModel, ElicitationClassifier, rule_matrix
from distillguard.content.rules import RuleSet

BITS = 18
CAP_BITS = 15
CAPABILITIES = (
    "chat",
    "coding",
    "math",
    "agentic",
    "data_analysis",
    "writing",
    "translation",
    "science",
)
TARGET_FPR = 0.01
L2_NGRAM = 2e-4
L2_RULE = 1e-4
# An attack family's own rule bit is shrunk hard towards zero, i.e. its total weight towards
# the shared "attack rules fired" count. A family's bit otherwise learns from whatever
# labelled prompts fire it: with no attack prompt of the family in training (a new rule,
# the leave-one-family-out case) only benign look-alikes fire it, and its bit turned as
# negative as the shared count is positive (agent_trajectory: -5.0 against +6.2), so the
# rule counted for nothing. Under this prior the look-alikes are told apart by their
# n-grams and context rules instead, and a family's bit moves away from the shared weight
# only as far as much evidence pushes it.
L2_ATTACK_RULE = 1e-2
L2_CAP = 2e-4
SEED = 0

F64 = npt.NDArray[np.float64]


def lbfgs(fg: Callable[[F64], tuple[float, F64]], x0: F64, iters: int = 150, m: int = 10) -> F64:
    """Minimise a smooth convex function; small and deterministic (no scipy needed)."""
    x = x0.copy()
    f, g = fg(x)
    hist_s: list[F64] = []
    hist_y: list[F64] = []
    for _ in range(iters):
        q = g.copy()
        alphas: list[tuple[float, float]] = []
        for s, y in zip(reversed(hist_s), reversed(hist_y), strict=True):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            q -= a * y
            alphas.append((rho, a))
        if hist_s:
            q *= float(hist_s[-1] @ hist_y[-1]) / float(hist_y[-1] @ hist_y[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, y), (rho, a) in zip(
            zip(hist_s, hist_y, strict=True), reversed(alphas), strict=True
        ):
            b = rho * float(y @ q)
            q += s * (a - b)
        d = -q
        gd = float(g @ d)
        if gd >= 0:  # not a descent direction: restart from steepest descent
            hist_s.clear()
            hist_y.clear()
            d = -g
            gd = float(g @ d)
        step = 1.0
        while True:
            xn = x + step * d
            fn, gn = fg(xn)
            if fn <= f + 1e-4 * step * gd or step < 1e-8:
                break
            step *= 0.5
        s, y = xn - x, gn - g
        if float(s @ y) > 1e-12:
            hist_s.append(s)
            hist_y.append(y)
            if len(hist_s) > m:
                hist_s.pop(0)
                hist_y.pop(0)
        converged = abs(f - fn) <= 1e-7 * max(1.0, abs(f))
        x, f, g = xn, fn, gn
        if converged:
            break
    return x


@dataclass
class Design:
    """Sparse design of a corpus: deduplicated (prompt, bucket) pairs with counts."""

    doc: npt.NDArray[np.int64]
    idx: npt.NDArray[np.int64]
    val: F64  # count / sqrt(n-grams of the prompt)
    n_docs: int
    dim: int

    @classmethod
    def build(cls, grams: features.NGramBatch, bits: int) -> Design:
        dim = 1 << bits
        inv = 1.0 / np.sqrt(np.maximum(grams.counts, 1))
        keys = np.concatenate(
            [
                d * dim + features.bucket(h, bits)
                for h, d in zip(grams.hashes, grams.doc, strict=True)
            ]
        )
        uniq, cnt = np.unique(keys, return_counts=True)
        doc = uniq // dim
        return cls(doc=doc, idx=uniq % dim, val=cnt * inv[doc], n_docs=grams.n_docs, dim=dim)

    def subset(self, rows: npt.NDArray[np.int64]) -> Design:
        remap = np.full(self.n_docs, -1, dtype=np.int64)
        remap[rows] = np.arange(len(rows))
        keep = remap[self.doc] >= 0
        return Design(remap[self.doc[keep]], self.idx[keep], self.val[keep], len(rows), self.dim)

    def dot(self, w: F64) -> F64:
        out = np.bincount(self.doc, weights=w[self.idx] * self.val, minlength=self.n_docs)
        return out.astype(np.float64)

    def tdot(self, r: F64) -> F64:
        out = np.bincount(self.idx, weights=r[self.doc] * self.val, minlength=self.dim)
        return out.astype(np.float64)


def rule_l2(kinds: Sequence[str]) -> F64:
    """L2 per column of ``rule_matrix``: attack-family bits, context bits, the two counts."""
    per_rule = [L2_ATTACK_RULE if k == "attack" else L2_RULE for k in kinds]
    return np.array([*per_rule, L2_RULE, L2_RULE])


def fit_binary(x: Design, rules: F64, y: F64, sw: F64, l2_rule: F64) -> tuple[F64, F64, float]:
    """Weighted logistic regression on [n-grams, rule bits, bias]; ``l2_rule`` per rule column."""
    d, r = x.dim, rules.shape[1]
    sw = sw / sw.sum()

    def fg(p: F64) -> tuple[float, F64]:
        w, wr, b = p[:d], p[d : d + r], p[-1]
        z = x.dot(w) + rules @ wr + b
        prob = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        loss = float(sw @ (np.logaddexp(0, z) - y * z))
        loss += 0.5 * L2_NGRAM * float(w @ w) + 0.5 * float(l2_rule @ (wr * wr))
        res = sw * (prob - y)
        grad = np.concatenate(
            [x.tdot(res) + L2_NGRAM * w, rules.T @ res + l2_rule * wr, [res.sum()]]
        )
        return loss, grad

    p = lbfgs(fg, np.zeros(d + r + 1))
    return p[:d], p[d : d + r], float(p[-1])


def fit_softmax(x: Design, y: npt.NDArray[np.int64], k: int) -> tuple[F64, F64]:
    d, n = x.dim, x.n_docs
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    # Balance classes: "chat" and "translation" have far fewer examples than "math".
    sw = 1.0 / np.bincount(y, minlength=k)[y]
    sw /= sw.sum()

    def fg(p: F64) -> tuple[float, F64]:
        w = p[: d * k].reshape(d, k)
        b = p[d * k :]
        z = np.stack([x.dot(np.ascontiguousarray(w[:, j])) for j in range(k)], axis=1) + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -float(sw @ (onehot * logp).sum(axis=1)) + 0.5 * L2_CAP * float((w * w).sum())
        res = (np.exp(logp) - onehot) * sw[:, None]
        gw = np.stack([x.tdot(res[:, j]) for j in range(k)], axis=1) + L2_CAP * w
        return loss, np.concatenate([gw.ravel(), res.sum(axis=0)])

    p = lbfgs(fg, np.zeros(d * k + k), iters=100)
    return p[: d * k].reshape(d, k), p[d * k :]


def fit_slope(z: F64, y: F64, thr: float, smoothing: float = 0.05) -> float:
    """Slope ``a`` of ``elicitation = sigmoid(a * (raw - thr))``, fit on held-out data.

    Plain Platt scaling diverges here: the held-out classes are almost separable, so the
    maximum-likelihood slope is infinite and every score becomes 0 or 1. Fixing the offset
    at the operating threshold (so elicitation 0.5 = the default flag point), smoothing the
    targets and balancing the classes keeps a usable, monotone, probability-like scale.
    """
    t = np.where(y == 1, 1.0 - smoothing, smoothing)
    sw = np.where(y == 1, 0.5 / max(1, int(y.sum())), 0.5 / max(1, int((1 - y).sum())))
    u = z - thr

    def fg(p: F64) -> tuple[float, F64]:
        v = p[0] * u
        prob = 1.0 / (1.0 + np.exp(-np.clip(v, -30, 30)))
        return float(sw @ (np.logaddexp(0, v) - t * v)), np.array([float((sw * (prob - t)) @ u)])

    (a,) = lbfgs(fg, np.array([1.0]), iters=100)
    return float(np.clip(a, 0.05, 5.0))


def threshold_at(benign_scores: F64, fpr: float) -> float:
    """Smallest threshold with at most ``fpr`` of benign scores at or above it.

    Flag iff score >= t, so t goes above the (allowed+1)-th highest benign score: by
    1e-3 (or half the gap to the next higher score, if smaller), not one float64 step.
    ``score()`` compares a float32 calibration of the logit, whose rounding would flag a
    prompt sitting one float64 step below the threshold.
    """
    s = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(fpr * len(s)))
    if allowed >= len(s):
        return float(s[-1])
    lo = float(s[allowed])
    gap = float(s[allowed - 1]) - lo if allowed > 0 else 2e-3
    return max(lo + min(1e-3, gap / 2), float(np.nextafter(lo, np.inf)))


def family_weights(fam: Sequence[str], y: F64) -> F64:
    """Each family counts the same in total, and the two classes count the same."""
    _, inverse, counts = np.unique(np.asarray(fam), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    for label in (0.0, 1.0):
        sel = y == label
        w[sel] *= 0.5 / w[sel].sum()
    return w


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("weights.npz"))
    ap.add_argument("--no-lofo", action="store_true", help="skip leave-one-family-out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    corpus = trainset.generate(seed=SEED)
    rules = RuleSet.load_default()
    texts = features.compose([e.text for e in corpus], [e.system for e in corpus])
    grams = features.ngrams(texts)
    hits = rules.match(texts, rules.gate(grams))
    kinds = tuple(r.kind for r in rules.rules)
    bits_mat = rule_matrix(hits, kinds).astype(np.float64)
    y = np.array([e.label for e in corpus], dtype=np.float64)
    fam = [e.family for e in corpus]
    fam_arr = np.asarray(fam)
    is_train = np.array([e.split == "train" for e in corpus])
    x = Design.build(grams, BITS)
    print(
        f"corpus: {len(corpus)} prompts ({int(y.sum())} attack), "
        f"train {int(is_train.sum())} / held-out {int((~is_train).sum())}; "
        f"{len(x.doc)} sparse entries [{time.perf_counter() - t0:.1f}s]"
    )

    def fit_on(rows: npt.NDArray[np.int64], bm: F64) -> tuple[F64, F64, float]:
        sub = x.subset(rows)
        sw = family_weights(fam_arr[rows].tolist(), y[rows])
        return fit_binary(sub, bm[rows], y[rows], sw, rule_l2(kinds))

    def logits(params: tuple[F64, F64, float], bm: F64) -> F64:
        w, wr, b = params
        return x.dot(w) + bm @ wr + b

    held_benign = (~is_train) & (y == 0)

    # ---- shipped model ----------------------------------------------------------------
    train_rows = np.flatnonzero(is_train)
    params = fit_on(train_rows, bits_mat)
    z = logits(params, bits_mat)
    test = ~is_train

    caps = [e.capability for e in corpus]
    cap_rows = np.flatnonzero(np.array([c in CAPABILITIES for c in caps]) & is_train)
    cap_y = np.array([CAPABILITIES.index(caps[i]) for i in cap_rows], dtype=np.int64)
    xc = Design.build(grams, CAP_BITS).subset(cap_rows)
    w_cap, b_cap = fit_softmax(xc, cap_y, len(CAPABILITIES))

    w, wr, bias = params
    model = ContentModel(
        bits=BITS,
        w_ngram=w.astype(np.float32),
        rule_names=rules.names,
        rule_kinds=kinds,
        w_rule=wr.astype(np.float32),
        bias=bias,
        platt_a=1.0,
        platt_b=0.0,
        threshold=0.5,
        cap_bits=CAP_BITS,
        cap_names=CAPABILITIES,
        w_cap=w_cap.astype(np.float32),
        b_cap=b_cap.astype(np.float32),
        meta={"seed": SEED, "target_fpr": TARGET_FPR, "corpus_size": len(corpus)},
    )
    # Calibrate and pick the threshold on the scores of the *shipping* path (int8
    # weights), so the stored threshold is exact for what users run.
    model.save(args.out)
    shipped = ElicitationClassifier(args.out).score(
        [e.text for e in corpus], [e.system for e in corpus]
    )
    z_q, cap_pred = shipped.raw.astype(np.float64), shipped.capability
    thr_raw = threshold_at(z_q[held_benign], TARGET_FPR)
    a = fit_slope(z_q[test], y[test], thr_raw)
    model.platt_a, model.platt_b = a, -a * thr_raw
    model.threshold = 0.5
    model.meta["raw_threshold"] = thr_raw
    model.save(args.out)
    flag = z_q >= thr_raw
    print(
        f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB); threshold "
        f"{model.threshold:.2f} calibrated / {thr_raw:.3f} raw, slope {a:.3f}; "
        f"max |int8 - float| logit drift {np.abs(z_q - z).max():.3f} "
        f"[{time.perf_counter() - t0:.1f}s]"
    )
    print("\nShipped model on held-out templates and tasks (never trained on):")
    print(f"  benign flagged: {flag[held_benign].mean():.2%} of {int(held_benign.sum())}")
    for f_name in sorted(set(fam)):
        sel = test & (fam_arr == f_name)
        if sel.any():
            print(f"  {f_name:28s} flagged {flag[sel].mean():7.2%}  (n={int(sel.sum())})")
    cap_test = np.array([c in CAPABILITIES for c in caps]) & test
    truth = np.array([CAPABILITIES.index(c) if c in CAPABILITIES else -1 for c in caps])
    print(
        f"  capability accuracy on held-out labelled prompts: "
        f"{(cap_pred[cap_test] == truth[cap_test]).mean():.2%} (n={int(cap_test.sum())})"
    )

    if args.no_lofo:
        return 0
    # ---- leave one family out -----------------------------------------------------------
    print("\nLeave-one-family-out: refit without any prompt of the family; threshold flags")
    print("<= 1% of held-out benign prompts. 'rules kept': the family's hand-written rule")
    print("stays (it counts through the shared rule-count feature; its own bit, shrunk towards")
    print("0, sees only benign prompts); 'rule removed': the family's rule is switched off too,")
    print("i.e. neither data nor a rule for it exists.")
    print(
        "| held-out family | prompts | flagged, rules kept | flagged, rule removed | benign FPR |"
    )
    print("|---|---:|---:|---:|---:|")
    tot = np.zeros(3)
    for family in trainset.ATTACK_FAMILIES:
        rows = np.flatnonzero(is_train & (fam_arr != family))
        sel = fam_arr == family
        rates = []
        for strict in (False, True):
            bm = bits_mat
            if strict:
                off = hits & ~np.int64(1 << rules.names.index(family))
                bm = rule_matrix(off, kinds).astype(np.float64)
            zz = logits(fit_on(rows, bm), bm)
            t = threshold_at(zz[held_benign], TARGET_FPR)
            rates.append(float((zz[sel] >= t).mean()))
            fpr = float((zz[held_benign] >= t).mean())
        tot += [int(sel.sum()), rates[0] * sel.sum(), rates[1] * sel.sum()]
        print(
            f"| {family} | {int(sel.sum())} | {rates[0]:.1%} | {rates[1]:.1%} | {fpr:.2%} |",
            flush=True,
        )
    print(f"| **all families** | {int(tot[0])} | {tot[1] / tot[0]:.1%} | {tot[2] / tot[0]:.1%} | |")
    print(f"[{time.perf_counter() - t0:.1f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
