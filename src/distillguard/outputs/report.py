"""A self-contained HTML page for an analyst (no scripts, no CDN: it opens offline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#1b1f24}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.6em 0}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.kpi{display:inline-block;margin:0 1.5em 1em 0}.kpi b{display:block;font-size:1.5em}
.bar{background:#d73a49;height:10px;display:inline-block}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]


def write_report(
    path: Path, accounts: pd.DataFrame, campaigns: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    flagged = accounts[accounts["flagged"]].sort_values("score", ascending=False)
    kpis = "".join(
        f'<div class="kpi"><b>{summary[k]:,}</b>{_e(label)}</div>'
        for k, label in [
            ("rows_read", "rows read"),
            ("rows_quarantined", "quarantined"),
            ("accounts", "accounts"),
            ("flagged_accounts", "flagged"),
            ("campaigns", "campaigns"),
        ]
    )
    camp_rows = "".join(
        f"<tr><td>{_e(c['campaign_id'])}</td><td class=num>{c['accounts']:,}</td>"
        f"<td class=num>{c['exchanges']:,}</td><td>{_e(c['first_seen'])}</td>"
        f"<td>{_e(c['last_seen'])}</td><td class=num>{c['score']:.2f}</td>"
        f"<td>{_e(c['summary'])}</td></tr>"
        for c in campaigns
    )
    acc_rows = "".join(
        f"<tr><td>{_e(r['account_id'])}</td><td class=num>{r['score']:.2f} "
        f'<span class="bar" style="width:{int(60 * r["score"])}px"></span></td>'
        f"<td>{_e(r['campaign_id'] or '')}</td><td class=num>{r['exchanges']:,}</td>"
        f"<td>{_e(r['first_flagged_at'])}</td>"
        f"<td>{'<br>'.join(_e(x) for x in r['reasons'])}</td></tr>"
        for r in _records(flagged.head(500))
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>distillguard scan report</title><style>{_STYLE}</style></head><body>
<h1>distillguard scan report</h1>
<p>distillguard {_e(summary["version"])}, engine {_e(summary["engine"])},
policy {_e(summary["policy"])}.
Prompts are not shown in this report.</p>
<div>{kpis}</div>
<h2>Campaigns</h2>
<table><tr><th>campaign</th><th>accounts</th><th>exchanges</th><th>first seen</th><th>last seen</th>
<th>score</th><th>summary</th></tr>
{camp_rows or "<tr><td colspan=7>No campaign linked.</td></tr>"}</table>
<h2>Flagged accounts ({len(flagged):,}{", top 500 shown" if len(flagged) > 500 else ""})</h2>
<table><tr><th>account</th><th>score</th><th>campaign</th><th>exchanges</th><th>first flagged</th>
<th>reasons</th></tr>{acc_rows or "<tr><td colspan=6>No account flagged.</td></tr>"}</table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
