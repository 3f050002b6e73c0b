"""The columnar engine behind every batch step: Ibis over DuckDB in process by default.

Feature definitions are Ibis expressions, so the same definition runs on another Ibis
backend (Spark) by changing the connection made here, not the features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ibis


def connect(
    *, memory_limit: str = "2GB", temp_dir: Path | None = None, threads: int | None = None
) -> Any:
    """An in-process DuckDB connection with bounded memory; work past the limit spills to disk."""
    con = ibis.duckdb.connect()
    raw = con.con
    raw.execute(f"SET memory_limit = '{memory_limit}'")
    raw.execute(f"SET threads = {int(threads or os.cpu_count() or 2)}")
    # Hours and day buckets of timestamptz follow the session time zone: pin it, so a
    # scan gives the same features on a laptop in Tokyo as on a server in UTC.
    raw.execute("SET TimeZone = 'UTC'")
    # Insertion order only matters where we sort explicitly; dropping it saves memory.
    raw.execute("SET preserve_insertion_order = false")
    raw.execute("SET enable_progress_bar = false")  # the CLI draws its own
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        raw.execute(f"SET temp_directory = '{temp_dir.as_posix()}'")
    return con


def iter_batches(con: Any, expr: Any, *, rows: int = 65536) -> Any:
    """Stream an expression's result as Arrow record batches.

    Ibis 12's ``to_pyarrow_batches`` calls a DuckDB method that DuckDB 2.0 removed, so this
    goes through DuckDB's own reader on the SQL Ibis compiles (same query, no hand SQL).
    """
    sql = str(ibis.to_sql(expr, dialect="duckdb"))
    return con.con.sql(sql).to_arrow_reader(rows)
