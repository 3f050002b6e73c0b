"""accounts.parquet, campaigns.parquet, exchanges_scored.parquet, summary.json, the report
and the STIX bundle, with the column types CONTRACT §2 promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.engine import write_parquet_parts
from distillguard.linking import DERIVED_KEYS, Campaign

ACCOUNTS_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("flagged", pa.bool_()),
        pa.field("campaign_id", pa.string()),
        pa.field("exchanges", pa.int64()),
        pa.field("first_flagged_at", pa.timestamp("us", tz="UTC")),
        pa.field("reasons", pa.list_(pa.string())),
    ]
)
CAMPAIGNS_SCHEMA = pa.schema(
    [
        pa.field("campaign_id", pa.string()),
        pa.field("accounts", pa.int64()),
        pa.field("account_ids", pa.list_(pa.string())),
        pa.field("exchanges", pa.int64()),
        pa.field("first_seen", pa.timestamp("us", tz="UTC")),
        pa.field("last_seen", pa.timestamp("us", tz="UTC")),
        pa.field("score", pa.float64()),
        pa.field("capabilities", pa.list_(pa.string())),
        pa.field("indicators", pa.list_(pa.string())),
        pa.field("summary", pa.string()),
    ]
)


def campaign_rows(
    t: Any, accounts: pd.DataFrame, campaigns: list[Campaign]
) -> list[dict[str, Any]]:
    if not campaigns:
        return []
    members = pd.DataFrame(
        [(c.campaign_id, a) for c in campaigns for a in c.account_ids],
        columns=["campaign_id", "account_id"],
    )
    m = ibis.memtable(members)
    joined = t.select("account_id", "ts").join(m, "account_id")
    stats = (
        joined.group_by("campaign_id")
        .aggregate(exchanges=joined.count(), first_seen=joined.ts.min(), last_seen=joined.ts.max())
        .to_pyarrow()
        .to_pandas()
        .set_index("campaign_id")
    )
    rows = []
    for c in campaigns:
        st = stats.loc[c.campaign_id]
        score = c.score
        # Synchrony and release timing describe behaviour in our logs, not an identifier
        # another provider could match: they stay in the summary, out of the indicators.
        indicators = [
            f"{key}:{value}"
            for key, values in c.shared.items()
            if key not in DERIVED_KEYS
            for value in values
        ]
        days = max((st.last_seen - st.first_seen).total_seconds() / 86400, 0.0)
        rows.append(
            {
                "campaign_id": c.campaign_id,
                "accounts": len(c.account_ids),
                "account_ids": c.account_ids,
                "exchanges": int(st.exchanges),
                "first_seen": st.first_seen,
                "last_seen": st.last_seen,
                "score": score,
                "capabilities": [],
                "indicators": indicators,
                "summary": (
                    f"{len(c.account_ids)} accounts sharing "
                    f"{', '.join(c.shared) or 'infrastructure'} "
                    f"made {int(st.exchanges):,} exchanges over {days:.1f} days."
                ),
            }
        )
    return rows


def write_outputs(
    out_dir: Path,
    con: Any,
    t: Any,
    accounts: pd.DataFrame,
    campaigns: list[Campaign],
    summary: dict[str, Any],
    exchange_scores: list[Any],
    *,
    capabilities: dict[str, dict[str, int]] | None = None,
    threshold: float | None = None,
    show_prompts: bool = False,
    raw_ids: bool = False,
) -> None:
    from distillguard.outputs.report import report_exchanges, write_report
    from distillguard.outputs.stix import write_stix

    acc_table = pa.table(
        {
            f.name: pa.array(accounts[f.name].tolist(), f.type, from_pandas=True)
            for f in ACCOUNTS_SCHEMA
        },
        schema=ACCOUNTS_SCHEMA,
    )
    pq.write_table(acc_table, out_dir / "accounts.parquet")
    rows = campaign_rows(t, accounts, campaigns)
    for row in rows:
        mix = (capabilities or {}).get(row["campaign_id"], {})
        total = sum(mix.values()) or 1
        # capabilities a campaign spends at least a tenth of its sampled prompts on
        row["capabilities"] = [
            name for name, n in sorted(mix.items(), key=lambda kv: -kv[1]) if n / total >= 0.1
        ]
    pq.write_table(
        pa.Table.from_pylist(rows, schema=CAMPAIGNS_SCHEMA), out_dir / "campaigns.parquet"
    )

    write_parquet_parts(con, exchange_scores, out_dir / "exchanges_scored.parquet")

    write_report(
        out_dir / "report.html",
        accounts,
        rows,
        summary,
        exchanges=report_exchanges(t, rows),
        show_prompts=show_prompts,
        capabilities=capabilities,
        threshold=threshold,
    )
    write_stix(out_dir / "indicators.stix.json", rows, raw_ids=raw_ids)
