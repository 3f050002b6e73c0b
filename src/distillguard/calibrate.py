"""Thresholds from the operator's own benign traffic (a benign-vs-benign null).

Every account in ``--benign`` logs is taken to be legitimate. The scan runs over them with
the base policy (peer baselines fitted on that same benign population), and the flag
threshold is set so that at most ``target_fpr`` of those accounts would be flagged: the
highest scores of a benign population are exactly what the threshold must stay above.

An account's final score can be lifted by its campaign, and which campaigns exist depends
on the threshold, so the chosen threshold is checked by scanning again with the written
policy; while the measured false-positive rate is above target the threshold moves past
the next benign score (at most ``max_rounds`` scans).

The policy file is the base policy's text with the numbers changed in place (comments kept)
and a header saying how it was calibrated.
"""

from __future__ import annotations

import math
import re
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.errors import ConfigError, InputError
from distillguard.policy import Policy, load_policy, parse_policy
from distillguard.progress import Reporter

MIN_THRESHOLD = 0.05  # below this every scored signal flags: a broken calibration, not a policy
MAX_THRESHOLD = 0.999


@dataclass
class CalibrationResult:
    threshold: float
    candidate_threshold: float
    target_fpr: float
    accounts: int
    flagged: int  # benign accounts flagged by the written policy on the calibration data
    rounds: int
    policy_path: Path
    base_threshold: float
    history: list[tuple[float, int]] = field(default_factory=list)  # (threshold, flagged)

    @property
    def fpr(self) -> float:
        return self.flagged / self.accounts if self.accounts else 0.0


def threshold_for(scores: Sequence[float] | np.ndarray, target_fpr: float) -> float:
    """The lowest threshold that flags at most ``floor(target * n)`` of ``scores``.

    Midway between the last allowed score and the first excluded one, so a benign account
    scoring a hair above the calibration sample's does not cross at once.
    """
    s = np.sort(np.asarray(scores, dtype=float))[::-1]
    n = len(s)
    if n == 0:
        raise InputError("no accounts in the benign logs: nothing to calibrate on")
    allowed = math.floor(target_fpr * n + 1e-9)
    if allowed >= n:
        return MIN_THRESHOLD
    excluded = s[allowed]  # the highest score that must stay below the threshold
    above = s[allowed - 1] if allowed > 0 else min(excluded + 0.02, 1.0)
    thr = (excluded + above) / 2 if above > excluded else np.nextafter(excluded, 2.0)
    return float(min(max(thr, MIN_THRESHOLD), MAX_THRESHOLD))


def _set_number(text: str, table: str, key: str, value: float) -> str:
    """Replace ``key = ...`` inside ``[table]`` (adding it if absent), keeping comments."""
    lines = text.splitlines(keepends=True)
    start = end = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            name = stripped.strip("[]").strip()
            if start is not None and end is None:
                end = i
            if name == table:
                start = i
    if start is None:
        return text.rstrip("\n") + f"\n\n[{table}]\n{key} = {value:.6g}\n"
    end = end if end is not None else len(lines)
    pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([^#\n]*?)(\s*(#.*)?)$")
    for i in range(start + 1, end):
        m = pattern.match(lines[i].rstrip("\n"))
        if m:
            newline = "\n" if lines[i].endswith("\n") else ""
            lines[i] = f"{m.group(1)}{value:.6g}{m.group(3)}{newline}"
            return "".join(lines)
    lines.insert(start + 1, f"{key} = {value:.6g}\n")
    return "".join(lines)


def policy_text(
    base_text: str, threshold: float, candidate: float, header: list[str] | None = None
) -> str:
    text = _set_number(base_text, "scan", "threshold", threshold)
    text = _set_number(text, "linking", "candidate_threshold", candidate)
    if header:
        text = "".join(f"# {h}\n" for h in header) + "#\n" + text
    return text


def _base_text(path: Path | None) -> str:
    if path is None:
        return resources.files("distillguard.policies").joinpath("default.toml").read_text()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read policy: {err.strerror}", source=str(path)) from None


def _scan_scores(
    inputs: Sequence[str | Path],
    work: Path,
    accounts: str | Path | None,
    pol: Policy,
    reporter: Reporter | None,
) -> pd.DataFrame:
    from distillguard.scan import run_scan

    result = run_scan(list(inputs), work, accounts=accounts, policy=pol, reporter=reporter)
    return result.accounts[["account_id", "score", "flagged"]]


def calibrate(
    benign: Sequence[str | Path],
    out: Path,
    *,
    target_fpr: float,
    accounts: str | Path | None = None,
    base_policy: Path | None = None,
    max_rounds: int = 4,
    reporter: Reporter | None = None,
    work_dir: Path | None = None,
) -> CalibrationResult:
    """Write a policy whose threshold flags at most ``target_fpr`` of the benign accounts."""
    if not 0.0 <= target_fpr < 1.0:
        raise ConfigError(f"target FPR must be in [0, 1), got {target_fpr}", field="target_fpr")
    base_text = _base_text(base_policy)
    base = parse_policy(tomllib.loads(base_text), str(base_policy or "default.toml"))
    history: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="dg-calibrate-") as tmp:
        # Round 0 scans with the base policy; its scores set the first threshold.
        scored = _scan_scores(benign, Path(tmp) / "r0", accounts, base, reporter)
        n = len(scored)
        thr = threshold_for(scored["score"].to_numpy(), target_fpr)
        allowed = math.floor(target_fpr * n + 1e-9)
        rounds = 0
        text = ""
        while True:
            rounds += 1
            # Linking candidates must include every account that can be flagged on its own.
            cand = round(min(base.linking.candidate_threshold, thr), 6)
            text = policy_text(base_text, thr, cand)
            pol = parse_policy(tomllib.loads(text), str(out))
            scored = _scan_scores(benign, Path(tmp) / f"r{rounds}", accounts, pol, reporter)
            flagged = int(scored["flagged"].sum())
            history.append((thr, flagged))
            if flagged <= allowed or rounds >= max_rounds or thr >= MAX_THRESHOLD:
                break
            # Lifted campaign members were flagged: step past the next flagged score.
            over = np.sort(scored.loc[scored["flagged"], "score"].to_numpy())
            thr = float(min(max(thr, over[max(len(over) - allowed - 1, 0)]) + 1e-4, MAX_THRESHOLD))
    header = [
        "distillguard calibrate: thresholds from benign traffic (benign-vs-benign null).",
        f"calibrated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {n:,} benign "
        f"accounts from: {', '.join(str(b) for b in benign)[:300]}",
        f"target FPR {target_fpr:g}; measured on the calibration data: {flagged}/{n} = "
        f"{flagged / n if n else 0:.4f} at scan.threshold {thr:.6g} "
        f"(base policy: {base.threshold:g})",
    ]
    final_text = policy_text(base_text, thr, cand, header)
    parse_policy(tomllib.loads(final_text), str(out))  # what we write must load
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(final_text, encoding="utf-8")
    load_policy(out)
    return CalibrationResult(
        threshold=thr,
        candidate_threshold=cand,
        target_fpr=target_fpr,
        accounts=n,
        flagged=flagged,
        rounds=rounds,
        policy_path=out,
        base_threshold=base.threshold,
        history=history,
    )


def binomial_upper(
    target: float, n: int, n_calibration: int | None = None, z: float = 2.326
) -> float:
    """One-sided upper bound (z = 99%) of the FPR observed on ``n`` held-out accounts.

    The observed share varies by about sqrt(p(1-p)/n) around the true rate; when the
    threshold was itself estimated from ``n_calibration`` accounts (an empirical quantile),
    its error adds p(1-p)/n_calibration to the variance.
    """
    if n <= 0:
        return 1.0
    var = max(target * (1 - target), 1.0 / n) / n
    if n_calibration:
        var += max(target * (1 - target), 1.0 / n_calibration) / n_calibration
    return target + z * math.sqrt(var)
