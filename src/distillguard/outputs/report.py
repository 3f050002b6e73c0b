"""A self-contained HTML page for an analyst: it opens offline, from a file, anywhere.

Everything is inline: the CSS, the charts (SVG drawn here in Python) and one tiny script.
A Content-Security-Policy forbids every network load, so a page that tried to fetch
anything would show it as a console error (which the tests check for in Chromium).

Campaigns are ranked by score, then size. Each has a timeline (exchanges per time bin and
members flagged so far), its account graph (members joined by the indicators they share),
the capability mix of its prompts, the shared indicators and the evidence per account.
Prompts are redacted by default: template indicators are shown as a signature only and no
prompt text appears unless ``show_prompts`` is set.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distillguard.linking import DIGITS_AND_SPACES, TEMPLATE_MIN_PROMPT
from distillguard.prompt_edges import EDGE_CHARS

MAX_CAMPAIGNS = 50  # campaigns drawn in full; the rest are listed in the ranking only
MAX_GRAPH_NODES = 60
MAX_EVIDENCE_ROWS = 200
PROMPT_SAMPLES = 2
PROMPT_CHARS = 240
CAPABILITY_SAMPLE = 400  # prompts classified per campaign for its capability mix
TEMPLATE_KINDS = ("prompt_prefix", "prompt_suffix")
# Kinds that can be recomputed per account from exchange rows to draw the graph's edges.
EDGE_KINDS = ("payment_fingerprint", "ip", "ip24", "asn", "user_agent", *TEMPLATE_KINDS)
KIND_COLOURS = {
    "payment_fingerprint": "#b31d28",
    "ip": "#e36209",
    "ip24": "#f0a35e",
    "asn": "#b8b8b8",
    "user_agent": "#8a63d2",
    "system_prompt_hash": "#0366d6",
    "prompt_prefix": "#28a745",
    "prompt_suffix": "#28a745",
}
REPORT_COLUMNS = (
    "account_id",
    "ts",
    "prompt",
    "system_prompt",
    "ip",
    "asn",
    "user_agent",
    "payment_fingerprint",
)

_STYLE = """
:root{--red:#d73a49;--ink:#1b1f24;--mute:#57606a;--line:#e4e7eb}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;
max-width:1240px;color:var(--ink);padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid var(--line)}
h3{margin:.2em 0}.mute{color:var(--mute)}
table{border-collapse:collapse;width:100%;margin:.6em 0}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.kpi{display:inline-block;margin:0 1.6em 1em 0}.kpi b{display:block;font-size:1.5em}
.bar{background:var(--red);height:10px;display:inline-block;vertical-align:middle}
section.campaign{border:1px solid var(--line);border-radius:8px;padding:1em 1.2em;
margin:1.4em 0;background:#fff}
.grid{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:1.2em}
.panel h4{margin:.4em 0;font-size:.95em;color:var(--mute);text-transform:uppercase;
letter-spacing:.04em}
.tag{display:inline-block;border-radius:10px;padding:0 8px;margin:1px 2px;font-size:.85em;
background:#f1f3f5}
.pill{font-weight:600;border-radius:10px;padding:1px 9px;color:#fff;background:var(--red)}
code,.sig{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
.prompt{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;background:#f6f8fa;
padding:2px 4px;margin:2px 0;white-space:pre-wrap;word-break:break-word}
svg text{font:11px system-ui,sans-serif;fill:var(--mute)}
details summary{cursor:pointer;color:var(--mute)}
footer{margin:3em 0 1em;color:var(--mute);font-size:.85em}
"""

# The only script: counts what rendered, so a headless browser can check the page is whole.
_SCRIPT = """
(function(){var d=document.documentElement;
d.setAttribute('data-campaigns-rendered',String(document.querySelectorAll('section.campaign').length));
d.setAttribute('data-charts-rendered',String(document.querySelectorAll('svg.chart').length));
})();
"""
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _isnull(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _when(x: Any) -> str:
    if _isnull(x):
        return ""
    return pd.Timestamp(x).strftime("%Y-%m-%d %H:%M")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]


def _list(x: Any) -> list[Any]:
    if x is None or isinstance(x, str):
        return [] if x is None else [x]
    try:
        return list(x)
    except TypeError:
        return []


def _score_colour(score: float) -> str:
    """Grey -> orange -> red as the score rises (readable on white)."""
    s = min(max(float(score), 0.0), 1.0)
    r = int(200 + 15 * s)
    g = int(200 - 150 * s)
    b = int(200 - 150 * s)
    return f"rgb({r},{g},{b})"


def _kind_value(indicator: str) -> tuple[str, str]:
    kind, _, value = indicator.partition(":")
    return (kind, value) if value else ("value", kind)


def _signature(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:10]


def _show_indicator(indicator: str, show_prompts: bool) -> str:
    kind, value = _kind_value(indicator)
    if kind in TEMPLATE_KINDS and not show_prompts:
        return (
            f'<span class="sig">template sig '
            f"{_signature(value)} ({len(value)} chars, redacted)</span>"
        )
    return f"<code>{_e(value)}</code>"


# -- data for the report, from the scan's exchange table -------------------------------------


def report_exchanges(t: Any, campaigns: list[dict[str, Any]], per_campaign: int = 20_000) -> Any:
    """Campaign members' exchanges for the report, from the scan's Ibis table ``t``.

    At most ``per_campaign`` rows per campaign (a deterministic hash sample), so the report
    stays a few megabytes whatever the campaign's size. Returns a pandas DataFrame with the
    columns of :data:`REPORT_COLUMNS` that the logs have.
    """
    import ibis

    from distillguard.engine import sample_cut, sample_digest

    # One query for every campaign: each member carries its campaign's sampling cut (a
    # query per campaign, unioned, was too deep to compile with hundreds of campaigns).
    members = [
        (a, sample_cut(per_campaign, int(c.get("exchanges") or 0)))
        for c in campaigns[:MAX_CAMPAIGNS]
        for a in c["account_ids"]
    ]
    if not members:
        return pd.DataFrame(columns=list(REPORT_COLUMNS))
    m = ibis.memtable(pd.DataFrame(members, columns=["account_id", "_cut"]))
    cols = [c for c in REPORT_COLUMNS if c in t.columns]
    j = t.select(*cols, _key=t.exchange_id).join(m, "account_id")
    df: pd.DataFrame = (
        j.filter(sample_digest(j._key) < j._cut).select(*cols).to_pyarrow().to_pandas()
    )
    return df


def _capability_mix(
    exchanges: pd.DataFrame | None, campaigns: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """Capability counts per campaign: the scan's own list if it has one, else a sample."""
    out: dict[str, dict[str, int]] = {}
    todo = []
    for c in campaigns:
        caps = _list(c.get("capabilities"))
        if caps:
            out[c["campaign_id"]] = {str(x): 1 for x in caps}
        else:
            todo.append(c)
    if not todo or exchanges is None or "prompt" not in exchanges.columns or exchanges.empty:
        return out
    from distillguard.content import ElicitationClassifier

    clf = ElicitationClassifier.load_default()
    for c in todo:
        rows = exchanges[exchanges["account_id"].isin(set(_list(c["account_ids"])))]
        if rows.empty:
            continue
        rows = rows.sample(min(len(rows), CAPABILITY_SAMPLE), random_state=0)
        sp = (
            [None if _isnull(x) else str(x) for x in rows["system_prompt"]]
            if "system_prompt" in rows.columns
            else None
        )
        scores = clf.score([str(p or "") for p in rows["prompt"]], sp)
        counts: dict[str, int] = {}
        for i in range(len(scores)):
            name = scores.capability_of(i)
            counts[name] = counts.get(name, 0) + 1
        out[c["campaign_id"]] = counts
    return out


# -- charts (inline SVG) ---------------------------------------------------------------------

_BIN_STEPS = [pd.Timedelta(minutes=m) for m in (5, 15, 30, 60, 180, 360, 720, 1440, 2880, 10080)]


def _bin_width(span: pd.Timedelta, max_bins: int = 96) -> pd.Timedelta:
    for step in _BIN_STEPS:
        if span / step <= max_bins:
            return step
    return pd.Timedelta(days=max(1, math.ceil(span / pd.Timedelta(days=max_bins))))


def timeline_svg(
    ts: pd.Series | None,
    flagged_at: pd.Series,
    start: Any,
    end: Any,
    width: int = 700,
    height: int = 170,
) -> str:
    """Exchanges per bin (bars) and members flagged so far (red step line)."""
    t0 = pd.Timestamp(start)
    t1 = pd.Timestamp(end)
    flags = pd.to_datetime(flagged_at.dropna(), utc=True).sort_values()
    if t0.tzinfo is None:
        t0 = t0.tz_localize("UTC")
    if t1.tzinfo is None:
        t1 = t1.tz_localize("UTC")
    if len(flags):
        t0 = min(t0, flags.iloc[0])
        t1 = max(t1, flags.iloc[-1])
    span = max(t1 - t0, pd.Timedelta(minutes=5))
    step = _bin_width(span)
    left, right, top, bottom = 44, 56, 10, 26
    w, h = width - left - right, height - top - bottom
    n_bins = max(1, math.ceil(span / step))
    counts = np.zeros(n_bins, dtype=np.int64)
    if ts is not None and len(ts):
        tt = pd.to_datetime(ts, utc=True)
        idx = ((tt - t0) / step).to_numpy(dtype=float)
        idx = np.clip(np.floor(idx), 0, n_bins - 1).astype(int)
        counts = np.bincount(idx, minlength=n_bins)
    peak = max(int(counts.max()) if len(counts) else 0, 1)
    bw = w / n_bins
    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="timeline" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#ccc"/>',
    ]
    for i, n in enumerate(counts):
        if n:
            bh = h * n / peak
            parts.append(
                f'<rect x="{left + i * bw:.1f}" y="{top + h - bh:.1f}" width="{max(bw - 1, 1):.1f}"'
                f' height="{bh:.1f}" fill="#6a8caf"><title>{_when(t0 + i * step)}: {n:,} '
                f"exchanges</title></rect>"
            )
    if len(flags):
        total = len(flags)
        pts = [f"{left},{top + h}"]
        for k, f in enumerate(flags, start=1):
            x = left + w * ((f - t0) / span)
            pts.append(f"{x:.1f},{top + h - h * (k - 1) / total:.1f}")
            pts.append(f"{x:.1f},{top + h - h * k / total:.1f}")
        pts.append(f"{left + w},{top + h - h:.1f}")
        parts.append(
            f'<polyline points="{" ".join(pts)}" fill="none" stroke="#d73a49" stroke-width="2"/>'
        )
        x0 = left + w * ((flags.iloc[0] - t0) / span)
        parts.append(
            f'<line x1="{x0:.1f}" y1="{top}" x2="{x0:.1f}" y2="{top + h}" stroke="#d73a49" '
            f'stroke-dasharray="3,3"><title>first flagged {_when(flags.iloc[0])}</title></line>'
        )
        parts.append(
            f'<text x="{left + w + 4}" y="{top + 10}" style="fill:#d73a49">{total}</text>'
            f'<text x="{left + w + 4}" y="{top + 22}" style="fill:#d73a49">flagged</text>'
        )
    parts.append(f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{peak:,}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + h}" text-anchor="end">0</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">{_when(t0)}</text>')
    parts.append(f'<text x="{left + w}" y="{height - 6}" text-anchor="end">{_when(t1)}</text>')
    parts.append(
        f'<text x="{left + w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        f"exchanges per {_step_label(step)}</text></svg>"
    )
    return "".join(parts)


def _step_label(step: pd.Timedelta) -> str:
    minutes = int(step / pd.Timedelta(minutes=1))
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "day" if days == 1 else f"{days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} min"


def _account_values(
    exchanges: pd.DataFrame, members: list[str], wanted: dict[str, set[str]]
) -> dict[str, dict[str, set[str]]]:
    """kind -> value -> accounts for the ``wanted`` values only, recomputed with linking's
    definitions (for the edges). Only the indicators are drawn, so only they are grouped."""
    rows = exchanges[exchanges["account_id"].isin(set(members))]
    columns: dict[str, tuple[pd.Series, pd.Series]] = {}
    for kind in EDGE_KINDS:
        if kind not in ("ip24", *TEMPLATE_KINDS) and kind in rows.columns:
            sub = rows[["account_id", kind]].dropna()
            columns[kind] = (sub["account_id"], sub[kind].astype(str))
    if "ip" in rows.columns and "ip24" in wanted:
        ip = rows[["account_id", "ip"]].dropna().astype(str)
        v4 = ~ip["ip"].str.contains(":")
        net = ip["ip"].where(~v4, ip["ip"].str.replace(r"\.\d+$", ".0/24", regex=True))
        net = net.where(v4, ip["ip"].str.split(":").str[:4].str.join(":"))
        columns["ip24"] = (ip["account_id"], net)
    if "prompt" in rows.columns and wanted.keys() & set(TEMPLATE_KINDS):
        p = rows[["account_id", "prompt"]].dropna()
        p = p[p["prompt"].str.len() >= TEMPLATE_MIN_PROMPT]
        digits_and_spaces = str.maketrans(*DIGITS_AND_SPACES)

        def norm(s: pd.Series) -> pd.Series:  # linking's normalisation (linking._normalised)
            return s.str.lower().str.translate(digits_and_spaces)

        columns["prompt_prefix"] = (p["account_id"], norm(p["prompt"].str[:EDGE_CHARS]))
        columns["prompt_suffix"] = (p["account_id"], norm(p["prompt"].str[-EDGE_CHARS:]))
    out: dict[str, dict[str, set[str]]] = {}
    for kind, (accounts, values) in columns.items():
        keep = values.isin(wanted.get(kind, set()))
        out[kind] = {}
        for acc, value in zip(accounts[keep].astype(str), values[keep], strict=True):
            out[kind].setdefault(str(value), set()).add(acc)
    return out


def graph_svg(
    members: list[dict[str, Any]],
    indicators: list[str],
    exchanges: pd.DataFrame | None,
    size: int = 440,
) -> str:
    """Members on a circle, joined when they share one of the campaign's indicators."""
    nodes = sorted(members, key=lambda r: (-float(r["score"]), str(r["account_id"])))
    nodes = nodes[:MAX_GRAPH_NODES]
    ids = [str(r["account_id"]) for r in nodes]
    pos: dict[str, tuple[float, float]] = {}
    cx = cy = size / 2
    radius = size / 2 - 30
    for i, acc in enumerate(ids):
        angle = 2 * math.pi * i / max(len(ids), 1) - math.pi / 2
        pos[acc] = (cx + radius * math.cos(angle), cy + radius * math.sin(angle))
    edges: dict[tuple[str, str], str] = {}
    if exchanges is not None and not exchanges.empty and ids:
        wanted: dict[str, set[str]] = {}
        for ind in indicators:
            kind, value = _kind_value(ind)
            wanted.setdefault(kind, set()).add(value)
        values = _account_values(exchanges, ids, wanted)
        # strongest kinds first, so an edge is coloured by its best evidence
        for kind in EDGE_KINDS:
            for value in wanted.get(kind, set()):
                accs = sorted(values.get(kind, {}).get(value, set()) & set(ids))
                for i, a in enumerate(accs):
                    for b in accs[i + 1 :]:
                        edges.setdefault((a, b), kind)
    parts = [
        f'<svg class="chart graph" viewBox="0 0 {size} {size}" width="100%" '
        f'style="max-width:{size}px" role="img" '
        f'aria-label="account graph" xmlns="http://www.w3.org/2000/svg">'
    ]
    # dense campaigns draw thousands of edges: thin and translucent keeps the nodes legible
    opacity = 0.6 if len(edges) < 200 else 0.25
    for (a, b), kind in edges.items():
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{KIND_COLOURS.get(kind, "#999")}" stroke-opacity="{opacity}"/>'
        )
    peak = max((int(r.get("exchanges") or 0) for r in nodes), default=1) or 1
    for r in nodes:
        acc = str(r["account_id"])
        x, y = pos[acc]
        rad = 4 + 8 * math.sqrt(int(r.get("exchanges") or 0) / peak)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{rad:.1f}" fill="{_score_colour(r["score"])}" '
            f'stroke="#555" stroke-width=".5"><title>{_e(acc)}: score {float(r["score"]):.2f}, '
            f"{int(r.get('exchanges') or 0):,} exchanges</title></circle>"
        )
    if not edges:
        parts.append(
            f'<text x="{cx}" y="{cy}" text-anchor="middle">'
            f"{'no exchange rows given: edges not drawn' if exchanges is None else ''}</text>"
        )
    kinds_used = sorted(set(edges.values()), key=EDGE_KINDS.index)
    for i, kind in enumerate(kinds_used):
        parts.append(
            f'<rect x="6" y="{8 + 14 * i}" width="10" height="3" fill="{KIND_COLOURS[kind]}"/>'
            f'<text x="20" y="{12 + 14 * i}">{_e(kind)}</text>'
        )
    if len(members) > len(nodes):
        parts.append(
            f'<text x="{size - 6}" y="{size - 6}" text-anchor="end">top {len(nodes)} of '
            f"{len(members)} accounts</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(counts: dict[str, int], width: int = 420) -> str:
    """Horizontal bars with shares: the capability mix."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
    total = sum(counts.values()) or 1
    row = 20
    height = row * len(items) + 6
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" role="img" '
        f'aria-label="capability mix" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (name, n) in enumerate(items):
        share = n / total
        bw = (width - 170) * share
        y = 4 + i * row
        parts.append(
            f'<text x="100" y="{y + 12}" text-anchor="end">{_e(name)}</text>'
            f'<rect x="106" y="{y + 2}" width="{max(bw, 1):.1f}" height="13" fill="#0366d6"/>'
            f'<text x="{110 + bw:.1f}" y="{y + 12}">{share:.0%}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(scores: pd.Series, threshold_hint: float | None = None, width: int = 700) -> str:
    """Accounts by score (log scale): where the flagged tail separates from the bulk."""
    height, left, bottom = 130, 40, 22
    bins = np.linspace(0.0, 1.0, 41)
    counts, _ = np.histogram(np.clip(scores.to_numpy(dtype=float), 0, 1), bins=bins)
    peak = math.log10(max(int(counts.max()) if len(counts) else 1, 1) + 1) or 1.0
    w = width - left - 10
    h = height - bottom - 8
    bw = w / len(counts)
    parts = [
        f'<svg class="chart hist" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" role="img" '
        f'aria-label="score histogram" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, n in enumerate(counts):
        if n:
            bh = h * math.log10(n + 1) / peak
            lo = bins[i]
            parts.append(
                f'<rect x="{left + i * bw:.1f}" y="{8 + h - bh:.1f}" width="{bw - 1:.1f}" '
                f'height="{bh:.1f}" fill="{_score_colour(lo)}"><title>score {lo:.3f}-'
                f"{bins[i + 1]:.3f}: {n:,} accounts</title></rect>"
            )
    if threshold_hint is not None:
        x = left + w * threshold_hint
        parts.append(
            f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{8 + h}" stroke="#d73a49" '
            f'stroke-dasharray="4,3"/><text x="{x + 4:.1f}" y="14" style="fill:#d73a49">'
            f"threshold {threshold_hint:.2f}</text>"
        )
    parts.append(f'<text x="{left}" y="{height - 6}">0</text>')
    parts.append(f'<text x="{left + w}" y="{height - 6}" text-anchor="end">1</text>')
    parts.append(
        f'<text x="{left + w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        "accounts by score (log scale)</text></svg>"
    )
    return "".join(parts)


# -- the page --------------------------------------------------------------------------------


def _prompt_samples(exchanges: pd.DataFrame | None, account: str) -> list[str]:
    if exchanges is None or "prompt" not in exchanges.columns:
        return []
    rows = exchanges.loc[exchanges["account_id"] == account, "prompt"].dropna()
    rows = rows[rows.astype(str).str.len() > 0]
    picks = rows.drop_duplicates().head(PROMPT_SAMPLES).astype(str).tolist()
    return [p if len(p) <= PROMPT_CHARS else p[: PROMPT_CHARS - 1] + "…" for p in picks]


def _evidence_rows(
    members: list[dict[str, Any]], exchanges: pd.DataFrame | None, show_prompts: bool
) -> str:
    out = []
    ranked = sorted(members, key=lambda r: -float(r["score"]))
    for r in ranked[:MAX_EVIDENCE_ROWS]:
        reasons = "".join(f"<li>{_e(x)}</li>" for x in _list(r.get("reasons")))
        prompts = ""
        if show_prompts:
            samples = _prompt_samples(exchanges, str(r["account_id"]))
            prompts = "".join(f'<div class="prompt">{_e(p)}</div>' for p in samples)
        out.append(
            f"<tr><td><code>{_e(r['account_id'])}</code></td>"
            f'<td class=num>{float(r["score"]):.2f} <span class="bar" '
            f'style="width:{int(50 * float(r["score"]))}px"></span></td>'
            f"<td class=num>{int(r.get('exchanges') or 0):,}</td>"
            f"<td>{_when(r.get('first_flagged_at'))}</td>"
            f'<td><ul style="margin:0;padding-left:1.1em">{reasons}</ul>{prompts}</td></tr>'
        )
    if len(ranked) > MAX_EVIDENCE_ROWS:
        out.append(
            f"<tr><td colspan=5 class=mute>… {len(ranked) - MAX_EVIDENCE_ROWS:,} more accounts "
            "in accounts.parquet</td></tr>"
        )
    return "".join(out)


def _campaign_section(
    rank: int,
    c: dict[str, Any],
    by_account: dict[str, dict[str, Any]],
    exchanges: pd.DataFrame | None,
    caps: dict[str, int] | None,
    show_prompts: bool,
) -> str:
    cid = str(c["campaign_id"])
    member_ids = [str(a) for a in _list(c.get("account_ids"))]
    members = [
        by_account.get(a, {"account_id": a, "score": 0.0, "exchanges": 0, "reasons": []})
        for a in member_ids
    ]
    flagged_at = pd.Series([m.get("first_flagged_at") for m in members], dtype=object)
    flagged_at = pd.to_datetime(flagged_at, utc=True, errors="coerce")
    ts = None
    if exchanges is not None and "ts" in exchanges.columns:
        ts = exchanges.loc[exchanges["account_id"].isin(set(member_ids)), "ts"]
    indicators = [str(x) for x in _list(c.get("indicators"))]
    grouped: dict[str, list[str]] = {}
    for ind in indicators:
        grouped.setdefault(_kind_value(ind)[0], []).append(ind)
    ind_rows = "".join(
        f"<tr><td>{_e(kind)}</td><td>{len(vals)}</td><td>"
        + "<br>".join(_show_indicator(v, show_prompts) for v in vals[:12])
        + (f"<br><span class=mute>… {len(vals) - 12} more</span>" if len(vals) > 12 else "")
        + "</td></tr>"
        for kind, vals in sorted(
            grouped.items(), key=lambda kv: EDGE_KINDS.index(kv[0]) if kv[0] in EDGE_KINDS else 99
        )
    )
    detected = flagged_at.min() if flagged_at.notna().any() else None
    cap_html = (
        bars_svg(caps)
        if caps
        else '<p class="mute">No prompts given to the report: capability mix unknown.</p>'
    )
    return f"""
<section class="campaign" id="{_e(cid)}">
<h3>#{rank} <code>{_e(cid)}</code> <span class="pill">score {float(c["score"]):.2f}</span></h3>
<p>{_e(c.get("summary", ""))}</p>
<p class="mute">{len(member_ids):,} accounts · {int(c.get("exchanges") or 0):,} exchanges ·
first seen {_when(c.get("first_seen"))} · last seen {_when(c.get("last_seen"))} ·
first detected {_when(detected) or "—"}</p>
<div class="grid">
<div class="panel"><h4>Timeline</h4>
{timeline_svg(ts, flagged_at, c.get("first_seen"), c.get("last_seen"))}
<h4>Capability mix</h4>{cap_html}</div>
<div class="panel"><h4>Account graph</h4>
{graph_svg(members, indicators, exchanges)}</div>
</div>
<h4>Shared indicators</h4>
<table><tr><th>kind</th><th>values</th><th>strongest values</th></tr>
{ind_rows or "<tr><td colspan=3>none recorded</td></tr>"}</table>
<details{" open" if rank <= 3 else ""}><summary>Evidence per account ({len(members):,})</summary>
<table><tr><th>account</th><th>score</th><th>exchanges</th><th>first flagged</th>
<th>evidence</th></tr>{_evidence_rows(members, exchanges, show_prompts)}</table>
</details>
</section>"""


def render_report(
    accounts: pd.DataFrame,
    campaigns: list[dict[str, Any]],
    summary: dict[str, Any],
    *,
    exchanges: pd.DataFrame | None = None,
    show_prompts: bool = False,
    capabilities: dict[str, dict[str, int]] | None = None,
    threshold: float | None = None,
) -> str:
    """The page as a string (see :func:`write_report`)."""
    ranked = sorted(
        campaigns, key=lambda c: (-float(c.get("score") or 0.0), -int(c.get("accounts") or 0))
    )
    caps = dict(capabilities or {})
    missing = [c for c in ranked[:MAX_CAMPAIGNS] if c["campaign_id"] not in caps]
    caps.update(_capability_mix(exchanges, missing))
    by_account = {str(r["account_id"]): r for r in _records(accounts)}
    kpis = "".join(
        f'<div class="kpi"><b>{int(summary.get(k, 0) or 0):,}</b>{_e(label)}</div>'
        for k, label in [
            ("rows_read", "rows read"),
            ("rows_quarantined", "quarantined"),
            ("accounts", "accounts"),
            ("flagged_accounts", "flagged"),
            ("campaigns", "campaigns"),
        ]
    )
    rank_rows = "".join(
        f'<tr><td class=num>{i}</td><td><a href="#{_e(c["campaign_id"])}">'
        f"<code>{_e(c['campaign_id'])}</code></a></td>"
        f"<td class=num>{float(c['score']):.2f}</td><td class=num>{int(c['accounts']):,}</td>"
        f"<td class=num>{int(c['exchanges']):,}</td><td>{_when(c.get('first_seen'))}</td>"
        f"<td>{_when(c.get('last_seen'))}</td><td>{_e(c.get('summary', ''))}</td></tr>"
        for i, c in enumerate(ranked, start=1)
    )
    sections = "".join(
        _campaign_section(i, c, by_account, exchanges, caps.get(c["campaign_id"]), show_prompts)
        for i, c in enumerate(ranked[:MAX_CAMPAIGNS], start=1)
    )
    lone = accounts[accounts["flagged"] & accounts["campaign_id"].isna()]
    lone = lone.sort_values("score", ascending=False)
    lone_rows = _evidence_rows(_records(lone), exchanges, show_prompts)
    prompts_note = (
        "Prompt samples are shown (<code>--show-prompts</code>): handle this file as customer data."
        if show_prompts
        else "Prompts are redacted: templates appear as signatures only "
        "(<code>--show-prompts</code> includes samples)."
    )
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    thr = threshold
    if thr is None and isinstance(summary.get("threshold"), int | float):
        thr = float(summary["threshold"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>distillguard scan report</title><style>{_STYLE}</style></head><body>
<h1>distillguard scan report</h1>
<p class="mute">distillguard {_e(summary.get("version", ""))}, engine
{_e(summary.get("engine", ""))}, policy {_e(summary.get("policy", ""))}.
{prompts_note}</p>
<div>{kpis}</div>
{histogram_svg(accounts["score"], thr) if len(accounts) else ""}
<h2>Campaigns, ranked</h2>
<table><tr><th>#</th><th>campaign</th><th>score</th><th>accounts</th><th>exchanges</th>
<th>first seen</th><th>last seen</th><th>summary</th></tr>
{rank_rows or "<tr><td colspan=8>No campaign linked.</td></tr>"}</table>
{sections}
{
        f'<p class="mute">{len(ranked) - MAX_CAMPAIGNS} more campaigns in campaigns.parquet.</p>'
        if len(ranked) > MAX_CAMPAIGNS
        else ""
    }
<h2>Flagged accounts outside campaigns ({len(lone):,})</h2>
<table><tr><th>account</th><th>score</th><th>exchanges</th><th>first flagged</th>
<th>evidence</th></tr>{lone_rows or "<tr><td colspan=5>None.</td></tr>"}</table>
<footer>Generated {_e(generated)}. Scores are in [0, 1]; an account is flagged at the policy
threshold. Everything on this page is inline: it makes no network request.</footer>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(
    path: Path,
    accounts: pd.DataFrame,
    campaigns: list[dict[str, Any]],
    summary: dict[str, Any],
    *,
    exchanges: pd.DataFrame | None = None,
    show_prompts: bool = False,
    capabilities: dict[str, dict[str, int]] | None = None,
    threshold: float | None = None,
) -> None:
    """Write ``report.html``.

    ``exchanges`` (optional, see :func:`report_exchanges`): campaign members' exchange rows;
    with them the page draws timelines, graph edges and the capability mix, and with
    ``show_prompts`` shows prompt samples. Without them it still renders everything else.
    """
    page = render_report(
        accounts,
        campaigns,
        summary,
        exchanges=exchanges,
        show_prompts=show_prompts,
        capabilities=capabilities,
        threshold=threshold,
    )
    # Prompts can hold control characters that are invalid in HTML; drop them.
    page = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", page)
    path.write_text(page, encoding="utf-8")
