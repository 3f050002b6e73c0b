"""The columnar engine behind every batch step: Ibis over DuckDB in process by default, or
Ibis's PySpark backend (local, a cluster, or Spark Connect).

Feature definitions are Ibis expressions, so the same definition runs on either backend by
changing the connection made here, not the features. The few things Ibis leaves to the
backend (streaming results out, writing one Parquet file, a hash both engines agree on)
are the functions below.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ibis
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.errors import ConfigError

ENGINES = ("duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[*]"
# Digits of the md5 hex digest that hash_sample compares: 48 bits, far finer than any limit.
_SAMPLE_DIGITS = 12
_KEEP_ALL = "g"  # sorts after every hex digit


@dataclass(frozen=True)
class EngineConfig:
    """Which engine a batch step runs on, and its resource bounds.

    ``memory_limit``, ``temp_dir`` and ``threads`` bound DuckDB; ``temp_dir`` is also
    Spark's local scratch directory when Spark runs in process. ``spark_conf`` is passed
    to the Spark session as is (a cluster's executor memory, shuffle partitions...).
    """

    engine: Literal["duckdb", "spark"] = "duckdb"
    memory_limit: str = "2GB"
    temp_dir: Path | None = None
    threads: int | None = None
    spark_master: str = DEFAULT_SPARK_MASTER
    spark_conf: dict[str, str] = field(default_factory=dict)


def connect(config: EngineConfig | None = None) -> Any:
    """An Ibis backend for ``config`` (DuckDB in process when no config is given)."""
    cfg = config or EngineConfig()
    if cfg.engine == "spark":
        return _connect_spark(cfg)
    if cfg.engine != "duckdb":
        raise ConfigError(f"unknown engine {cfg.engine!r}: expected one of {', '.join(ENGINES)}")
    return _connect_duckdb(cfg)


def _connect_duckdb(cfg: EngineConfig) -> Any:
    """An in-process DuckDB connection with bounded memory; work past the limit spills to disk."""
    con = ibis.duckdb.connect()
    raw = con.con
    raw.execute(f"SET memory_limit = '{cfg.memory_limit}'")
    raw.execute(f"SET threads = {int(cfg.threads or os.cpu_count() or 2)}")
    # Hours and day buckets of timestamptz follow the session time zone: pin it, so a
    # scan gives the same features on a laptop in Tokyo as on a server in UTC.
    raw.execute("SET TimeZone = 'UTC'")
    # Insertion order only matters where we sort explicitly; dropping it saves memory.
    raw.execute("SET preserve_insertion_order = false")
    raw.execute("SET enable_progress_bar = false")  # the CLI draws its own
    if cfg.temp_dir is not None:
        cfg.temp_dir.mkdir(parents=True, exist_ok=True)
        raw.execute(f"SET temp_directory = '{cfg.temp_dir.as_posix()}'")
    return con


def _connect_spark(cfg: EngineConfig) -> Any:
    """A Spark session (classic or Spark Connect, by the master URL) wrapped by Ibis."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise ConfigError(
            "--engine spark needs PySpark: pip install 'distillguard[spark]' (and Java 17+)"
        ) from err
    master = cfg.spark_master or DEFAULT_SPARK_MASTER
    remote = master.startswith("sc://")
    builder = SparkSession.builder.appName("distillguard")
    builder = builder.remote(master) if remote else builder.master(master)
    conf = {
        # Hours and day buckets follow the session time zone, as on DuckDB: pin UTC.
        "spark.sql.session.timeZone": "UTC",
        # Results come back to the driver as Arrow, not one Python object per cell.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",  # the CLI draws its own
    }
    if master.startswith("local"):
        # Spark's 200 shuffle partitions are thousands of tiny tasks on one machine.
        conf["spark.sql.shuffle.partitions"] = str(max(4, 2 * (os.cpu_count() or 2)))
        if cfg.temp_dir is not None:
            cfg.temp_dir.mkdir(parents=True, exist_ok=True)
            conf["spark.local.dir"] = cfg.temp_dir.as_posix()
    conf.update(cfg.spark_conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    # A session that already existed keeps its own settings: the time zone is not optional.
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return ibis.pyspark.connect(session)


def is_spark(con: Any) -> bool:
    return str(getattr(con, "name", "")) == "pyspark"


def engine_name(con: Any) -> str:
    return "spark" if is_spark(con) else "duckdb"


def _spark_frame(con: Any, expr: Any) -> Any:
    con._run_pre_execute_hooks(expr)  # registers the expression's in-memory tables
    return con._session.sql(con.compile(expr))


def iter_batches(con: Any, expr: Any, *, rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """Stream an expression's result as Arrow record batches, typed as Ibis types them.

    DuckDB: Ibis 12's ``to_pyarrow_batches`` calls a DuckDB method that DuckDB 2.0 removed,
    so this goes through DuckDB's own reader on the SQL Ibis compiles (same query, no hand
    SQL). Spark: the result is collected to the driver as Arrow, so callers use this only
    for bounded results (the content samples); unbounded results go through
    :func:`write_parquet`, which Spark writes in parallel.
    """
    if not is_spark(con):
        con._run_pre_execute_hooks(expr)  # registers the expression's memtables, as Ibis would
        sql = str(ibis.to_sql(expr, dialect="duckdb"))
        reader = con.con.sql(sql).to_arrow_reader(rows)
        try:
            yield from reader
        finally:
            # Closed at once, not when collected: an open result keeps its query's state
            # (a join's hash table) in the engine's memory, which the next query then lacks.
            reader.close()
        return
    table = _spark_frame(con, expr).toArrow()
    # Spark hands back time stamps with a zone Ibis's schema may not have (and the other
    # way round); cast so both engines' batches have the same types.
    table = table.cast(expr.schema().to_pyarrow())
    yield from table.to_batches(max_chunksize=rows)


def materialise(con: Any, expr: Any, path: Path) -> Any:
    """``expr`` written to ``path`` and read back as a table.

    For a result that later queries read more than once: DuckDB holds a subquery that one
    query reads twice (a common table expression) in memory whole, where it cannot spill,
    and each query would otherwise compute it again.
    """
    write_parquet(con, expr, path)
    return con.read_parquet(path)


def write_parquet_parts(con: Any, exprs: list[Any], path: Path) -> None:
    """Write the rows of every expression in ``exprs`` (one schema) into the one Parquet file
    ``path``: each is written on its own, then their row groups are copied into ``path``."""
    if len(exprs) == 1:
        write_parquet(con, exprs[0], path)
        return
    parts = [path.with_name(f"{path.name}.{i}") for i in range(len(exprs))]
    for expr, part in zip(exprs, parts, strict=True):
        write_parquet(con, expr, part)
    concat_parquet(parts, path)


def concat_parquet(parts: list[Path], path: Path, schema: pa.Schema | None = None) -> None:
    """Copy the rows of the Parquet files ``parts`` (one schema, by default the first's)
    into the one file ``path``, a batch at a time, deleting each part once copied."""
    schema = pq.read_schema(parts[0]) if schema is None else schema
    with pq.ParquetWriter(path, schema) as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches():
                writer.write_table(pa.Table.from_batches([batch]).cast(schema))
            part.unlink()


def write_parquet(con: Any, expr: Any, path: Path) -> None:
    """Write ``expr`` into the single Parquet file ``path``, in the expression's order.

    Spark writes a folder of part files in parallel (one per partition, in order after a
    sort); they are then copied into one file batch by batch, so the driver holds one row
    group at a time whatever the size. The folder must be visible to the driver, which it
    is when the scan's output folder is on storage the whole cluster shares.
    """
    if not is_spark(con):
        con.to_parquet(expr, path)
        return
    parts = path.with_name(path.name + ".parts")
    shutil.rmtree(parts, ignore_errors=True)
    _spark_frame(con, expr).write.mode("overwrite").parquet(parts.as_posix())
    concat_parquet(sorted(parts.glob("part-*.parquet")), path, expr.schema().to_pyarrow())
    shutil.rmtree(parts, ignore_errors=True)


def parquet_glob(path: Path) -> str:
    """What to read for ``path``: the file itself, or every Parquet file in the folder."""
    return str(path / "*.parquet") if path.is_dir() else str(path)


def stable_hash(value: Any) -> Any:
    """A hash of a string column that every engine computes identically (md5, hex).

    The engines' own ``hash()`` functions differ (DuckDB 64-bit, Spark 32-bit murmur3), so
    a sample chosen by them would pick different rows on each.
    """
    return value.hexdigest("md5")


def hash_sample(value: Any, keep: int, total: int) -> Any:
    """A boolean column true for about ``keep`` of ``total`` rows, chosen by hashing ``value``.

    The digest's leading hex digits are compared as a string, which orders them like the
    number they spell: no engine-specific hex-to-integer conversion needed.
    """
    cut = sample_cut(keep, total)
    return ibis.literal(True) if cut == _KEEP_ALL else sample_digest(value) < cut


def sample_digest(value: Any) -> Any:
    """The part of ``value``'s digest that :func:`hash_sample` compares with its cut."""
    return stable_hash(value).left(_SAMPLE_DIGITS)


def sample_cut(keep: int, total: int) -> str:
    """The cut under which a digest keeps about ``keep`` of ``total`` rows (``"g"``, after
    every hex digit, keeps all of them)."""
    if total <= 0 or keep >= total:
        return _KEEP_ALL
    return f"{(keep * 16**_SAMPLE_DIGITS) // total:0{_SAMPLE_DIGITS}x}"
