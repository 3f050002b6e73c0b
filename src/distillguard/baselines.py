"""A naive baseline detector, kept to show what the simulator's hard negatives do to it.

It flags an account when its busiest day exceeds ``max_daily`` exchanges or when its
log total volume is more than ``z`` standard deviations above the mean over all
accounts: the one-global-threshold rule DESIGN.md warns against. It writes a scan-like
directory (``accounts.parquet`` with the CONTRACT §2 columns) that ``evaluate`` reads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import duckdb

from distillguard.errors import DistillGuardError


def naive_volume_baseline(
    exchanges: Path, out_dir: Path, *, max_daily: int = 1000, z: float = 3.0
) -> dict[str, Any]:
    """Run the baseline on an exchanges Parquet file (or glob) and write ``out_dir``."""
    t0 = time.perf_counter()
    src = str(exchanges).replace("'", "''")
    if not any(c in src for c in "*?[") and not Path(exchanges).exists():
        raise DistillGuardError(f"missing file {exchanges}", source=str(exchanges))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = str(out_dir / "accounts.parquet").replace("'", "''")
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute(f"CREATE VIEW e AS SELECT account_id, ts FROM read_parquet('{src}')")
    # first_flagged_at: for the daily rule, the exchange that pushed a day over the limit;
    # for the z-score rule, the exchange at which the running total crossed the cut-off
    # (the data up to then would already have flagged the account).
    con.execute(f"""
        CREATE TABLE tot AS SELECT account_id, count(*) AS n, ln(count(*)) AS lv FROM e GROUP BY 1;
        CREATE TABLE stats AS SELECT avg(lv) AS mu, coalesce(stddev_pop(lv), 0) AS sd FROM tot;
        CREATE TABLE cut AS
            SELECT tot.*, CAST(ceil(exp(mu + {z} * sd)) AS BIGINT) AS z_cut,
                   sd > 0 AND lv > mu + {z} * sd AS z_flag,
                   CASE WHEN sd > 0 THEN (lv - mu) / sd ELSE 0 END AS zscore
            FROM tot, stats;
        CREATE TABLE ranked AS
            SELECT account_id, ts,
                   row_number() OVER (PARTITION BY account_id, date_trunc('day', ts) ORDER BY ts)
                       AS day_rank,
                   row_number() OVER (PARTITION BY account_id ORDER BY ts) AS total_rank
            FROM e;
        CREATE TABLE first_day AS
            SELECT account_id, min(ts) AS t_day FROM ranked
            WHERE day_rank = {int(max_daily) + 1} GROUP BY 1;
        CREATE TABLE first_z AS
            SELECT r.account_id, min(r.ts) AS t_z FROM ranked r JOIN cut c USING (account_id)
            WHERE c.z_flag AND r.total_rank = c.z_cut GROUP BY 1;
        CREATE TABLE result AS
            SELECT c.account_id,
                   least(1.0, greatest(0.0, 0.5 + c.zscore / 8.0)) AS score,
                   (d.t_day IS NOT NULL OR c.z_flag) AS flagged,
                   CAST(NULL AS VARCHAR) AS campaign_id,
                   c.n AS exchanges,
                   least(d.t_day, z.t_z) AS first_flagged_at,
                   list_filter(
                       [CASE WHEN d.t_day IS NOT NULL THEN 'daily_volume>{int(max_daily)}' END,
                        CASE WHEN c.z_flag THEN 'volume_zscore>{z}' END],
                       lambda x: x IS NOT NULL) AS reasons
            FROM cut c LEFT JOIN first_day d USING (account_id)
            LEFT JOIN first_z z USING (account_id);
        COPY (SELECT * FROM result ORDER BY account_id) TO '{dst}' (FORMAT parquet);
    """)
    row = con.execute("SELECT count(*), sum(flagged::INT) FROM result").fetchone()
    accounts, flagged = (int(row[0]), int(row[1] or 0)) if row else (0, 0)
    summary = {
        "accounts": accounts,
        "flagged_accounts": flagged,
        "campaigns": 0,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "engine": "duckdb",
        "detector": f"naive_volume_baseline(max_daily={max_daily}, z={z})",
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
