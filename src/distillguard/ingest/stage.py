"""Stage every input into one Parquet file of valid rows, and a quarantine of the rest.

Duplicate ``exchange_id`` detection needs to see every id at once, which is the one thing
that cannot stream; it runs in the engine (DuckDB spills to disk) over two narrow
columns, so memory stays bounded for inputs larger than RAM.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ibis
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard import prompt_edges
from distillguard.engine import EngineConfig, connect, iter_batches, parquet_glob
from distillguard.errors import InputError
from distillguard.ingest.readers import (
    Block,
    Reject,
    parquet_row_groups,
    read_jsonl,
    read_parquet,
)
from distillguard.ingest.sources import SourceFile, expand_inputs
from distillguard.schema import ACCOUNT_COLUMNS, EXCHANGE_COLUMNS, Column

DEFAULT_MAX_LINE_BYTES = 4 << 20
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class StageResult:
    exchanges_path: Path
    quarantine_path: Path
    accounts_path: Path | None
    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    duplicates: int = 0
    accounts_rows_read: int = 0
    accounts_rows_quarantined: int = 0
    sources: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def staged_schema() -> pa.Schema:
    fields = [pa.field(c.name, c.arrow_type) for c in EXCHANGE_COLUMNS]
    return pa.schema(
        [
            *fields,
            pa.field("_source", pa.string()),
            pa.field("_line", pa.int64()),
            pa.field("_extra", pa.string()),
            pa.field("_seq", pa.int64()),
            *prompt_edges.STAGED_FIELDS,
        ]
    )


# The staged copy is as big as the log: zstd at its fastest level writes about as fast as
# snappy and takes about a third less disk (a 178M-row log: ~37 GB with snappy).
STAGED_COMPRESSION: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
PARALLEL_MIN_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves


def _blocks(
    source: SourceFile,
    columns: tuple[Column, ...],
    max_line_bytes: int,
    executor: Executor | None = None,
    block_bytes: int = 8 << 20,
    sink: Callable[[Block, int], Block] | None = None,
) -> Iterator[Block]:
    if source.format == "parquet":
        return read_parquet(source, columns)
    return read_jsonl(
        source,
        columns,
        max_line_bytes=max_line_bytes,
        executor=executor,
        block_bytes=block_bytes,
        sink=sink,
    )


def _warm(i: int) -> int:
    return i


PART_ROWS = 1 << 20  # rows a worker stages per task: a few hundred MB of text at most


def _parquet_tasks(
    row_counts: list[int], part_rows: int = PART_ROWS
) -> list[tuple[list[int], int]]:
    """Consecutive row groups grouped into tasks of about ``part_rows`` rows each:
    (row group indices, the file row the first one starts at)."""
    tasks: list[tuple[list[int], int]] = []
    start = rows = 0
    group: list[int] = []
    for i, n in enumerate(row_counts):
        group.append(i)
        rows += n
        if rows >= part_rows:
            tasks.append((group, start))
            start, rows, group = start + rows, 0, []
    if group:
        tasks.append((group, start))
    return tasks


SEQ_BITS = 40  # a row's _seq: its input's index, then its line (or row) number in it


def _staged(valid: pa.Table, source: SourceFile, index: int) -> pa.Table:
    """Valid rows with their provenance: the input's name, and a ``_seq`` that increases
    in input order and then file order (all deduplication needs to keep the first)."""
    seq = pc.add(valid.column("_line").cast(pa.int64()), index << SEQ_BITS)
    table = valid.append_column(
        "_source", pa.array([str(source)] * valid.num_rows, pa.string())
    ).append_column("_seq", seq)
    for name, column in prompt_edges.arrow_columns(valid.column("prompt")).items():
        table = table.append_column(name, column)
    schema = staged_schema()
    return table.select(schema.names).cast(schema)


def _stage_parquet_part(
    source: SourceFile, index: int, row_groups: list[int], first_row: int, out: Path
) -> tuple[int, list[Reject]]:
    """A worker validates some row groups and writes their valid rows to its own part file,
    so neither the rows nor their writing pass through the parent process."""
    read = 0
    rejects: list[Reject] = []
    with pq.ParquetWriter(out, staged_schema(), **STAGED_COMPRESSION) as writer:
        for block in read_parquet(
            source, EXCHANGE_COLUMNS, row_groups=row_groups, first_row=first_row
        ):
            read += block.rows_read
            rejects.extend(block.rejects)
            if block.valid.num_rows:
                writer.write_table(_staged(block.valid, source, index))
    return read, rejects


@dataclass(frozen=True)
class _PartWriter:
    """Run in a worker on each parsed JSONL block: its valid rows go to a part file of
    their own and only the counts and rejects travel back to the parent."""

    folder: Path
    source: SourceFile
    index: int

    def __call__(self, block: Block, number: int) -> Block:
        if block.valid.num_rows:
            out = self.folder / f"part-j{self.index:04d}-{number:06d}.parquet"
            pq.write_table(_staged(block.valid, self.source, self.index), out, **STAGED_COMPRESSION)
        return Block(block.valid.slice(0, 0), block.rejects, block.rows_read, dirty=block.dirty)


def start_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, started before this process starts any thread of its own.

    ``fork`` where the platform has it: ``spawn`` would re-import the caller's main module
    and crash any script without an ``if __name__ == "__main__"`` guard. Forking before the
    writer thread or the engine's threads exist keeps the children free of held locks.
    """
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    list(pool.map(_warm, range(workers)))
    return pool


class _BackgroundWriter:
    """Parquet writes on a thread (Arrow releases the GIL) so parsing never waits on them.

    The queue is short, so at most a few blocks are in memory at once.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema, **STAGED_COMPRESSION)
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(table)
                except BaseException as err:  # surfaced in the caller's thread on close
                    self._error = err

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def __enter__(self) -> _BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None and exc[0] is None:
            raise self._error


class _Quarantine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO = path.open("wb")
        self.count = 0

    def write(self, rejects: Sequence[Reject]) -> None:
        for r in rejects:
            self._fh.write(r.to_json() + b"\n")
        self.count += len(rejects)

    def close(self) -> None:
        self._fh.close()


def stage_inputs(
    inputs: Sequence[str | Path],
    work_dir: Path,
    quarantine_path: Path,
    *,
    accounts: str | Path | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    progress: Progress | None = None,
    memory_limit: str = "2GB",
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    block_bytes: int = 8 << 20,
    part_rows: int = PART_ROWS,
    executor: Executor | None = None,
) -> StageResult:
    """Validate ``inputs`` into ``work_dir``; every row ends up valid or quarantined.

    Big inputs are staged by ``workers`` processes (default: one per core): JSONL a block
    at a time, Parquet about ``part_rows`` rows per task, each written to its own part
    file; the order of rows, and so which duplicate counts as first, is the
    file order regardless. ``exchanges_path`` is then a folder of Parquet files. A caller
    that has its own pool of workers passes it as ``executor`` (it stays open).
    """
    started = time.perf_counter()
    sources = expand_inputs(inputs)
    work_dir.mkdir(parents=True, exist_ok=True)
    # A folder of part files: the parent writes one, each parallel Parquet task its own.
    raw_path = work_dir / "exchanges.staged"
    shutil.rmtree(raw_path, ignore_errors=True)
    raw_path.mkdir()
    result = StageResult(raw_path, quarantine_path, None, sources=[str(s) for s in sources])
    total = sum(s.path.stat().st_size for s in sources) or 1
    done = 0
    quarantine = _Quarantine(quarantine_path)
    schema = staged_schema()
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    big = sum(s.path.stat().st_size for s in sources if s.format in ("jsonl", "parquet"))
    own_pool = executor is None and n_workers > 1 and big >= parallel_min_bytes
    if own_pool:
        executor = start_pool(n_workers)
    parts = 0
    try:
        with _BackgroundWriter(raw_path / "part-main.parquet", schema) as writer:
            for index, source in enumerate(sources):
                size = source.path.stat().st_size
                groups = parquet_row_groups(source) if source.format == "parquet" else []
                if executor is not None and len(groups) > 1:
                    futures = []
                    for row_groups, first_row in _parquet_tasks(groups, part_rows):
                        out = raw_path / f"part-{parts:05d}.parquet"
                        parts += 1
                        futures.append(
                            executor.submit(
                                _stage_parquet_part, source, index, row_groups, first_row, out
                            )
                        )
                    rows = 0
                    for future in futures:  # in file order, so the quarantine is too
                        read, rejects = future.result()
                        result.rows_read += read
                        quarantine.write(rejects)
                        rows += read
                        if progress is not None:
                            progress(done + size * rows // max(sum(groups), 1), total)
                    done += size
                    continue
                sink = _PartWriter(raw_path, source, index) if executor is not None else None
                for block in _blocks(
                    source, EXCHANGE_COLUMNS, max_line_bytes, executor, block_bytes, sink
                ):
                    result.rows_read += block.rows_read
                    quarantine.write(block.rejects)
                    if block.valid.num_rows:
                        writer.write(_staged(block.valid, source, index))
                    if progress is not None:
                        progress(done + min(block.position, size), total)
                done += size
                if progress is not None:
                    progress(done, total)
        result.duplicates = _quarantine_duplicates(raw_path, work_dir, quarantine, memory_limit)
        if result.duplicates:
            result.exchanges_path = work_dir / "exchanges.valid.parquet"
        if accounts is not None:
            result.accounts_path, result.accounts_rows_read, result.accounts_rows_quarantined = (
                _stage_accounts(accounts, work_dir, quarantine, max_line_bytes)
            )
    finally:
        quarantine.close()
        if own_pool and executor is not None:
            executor.shutdown(cancel_futures=True)
    result.rows_quarantined = quarantine.count - result.accounts_rows_quarantined
    result.rows_valid = result.rows_read - result.rows_quarantined
    result.elapsed_s = time.perf_counter() - started
    return result


def _quarantine_duplicates(
    raw_path: Path, work_dir: Path, quarantine: _Quarantine, memory_limit: str
) -> int:
    """Keep the first row of each ``exchange_id`` (file order, then line); quarantine the rest."""
    # Ingestion stays in process on DuckDB whatever engine the scan's later stages use.
    con = connect(EngineConfig(memory_limit=memory_limit, temp_dir=work_dir / "spill"))
    t = con.read_parquet(parquet_glob(raw_path))
    # Ranking every id is a sort of the whole log; grouping 64-bit hashes is a few times
    # cheaper, and only the rows whose hash repeats (duplicates, rare collisions) get ranked.
    hashed = t.select("exchange_id", "_seq", "_source", "_line", h=t.exchange_id.hash())
    repeats = hashed.group_by("h").aggregate(n=hashed.count()).filter(lambda r: r.n > 1)
    candidates = hashed.semi_join(repeats, "h").drop("h")
    ranked = candidates.mutate(rank=ibis.row_number().over(group_by="exchange_id", order_by="_seq"))
    firsts = ranked.filter(ranked["rank"] == 0).select(
        "exchange_id", first_source="_source", first_line="_line"
    )
    dups = (
        ranked.filter(ranked["rank"] > 0)
        .join(firsts, "exchange_id")
        .select("_seq", "exchange_id", "_source", "_line", "first_source", "first_line")
        .order_by("_seq")
    )
    count = int(dups.count().execute())
    if count == 0:
        return 0
    dup_seqs = dups.select("_seq")
    # The raw row of each duplicate, for the quarantine record.
    full = t.join(dups, "_seq").order_by("_seq")
    for batch in iter_batches(con, full):
        rows = batch.to_pylist()
        rejects = []
        for r in rows:
            raw = {
                k: v
                for k, v in r.items()
                if not k.startswith("_")
                and k not in ("first_source", "first_line", "exchange_id_right")
                and v is not None
            }
            rejects.append(
                Reject(
                    r["_source"],
                    r["_line"],
                    f"duplicate exchange_id {r['exchange_id']!r} "
                    f"(first seen at {r['first_source']}:{r['first_line']})",
                    orjson.dumps(raw, default=str).decode(),
                )
            )
        quarantine.write(rejects)
    valid_path = work_dir / "exchanges.valid.parquet"
    kept = t.anti_join(dup_seqs, "_seq")
    con.to_parquet(kept.order_by("_seq"), valid_path, compression="zstd")
    shutil.rmtree(raw_path)
    return count


def _stage_accounts(
    accounts: str | Path, work_dir: Path, quarantine: _Quarantine, max_line_bytes: int
) -> tuple[Path, int, int]:
    sources = expand_inputs([accounts])
    path = work_dir / "accounts.staged.parquet"
    schema = pa.schema([pa.field(c.name, c.arrow_type) for c in ACCOUNT_COLUMNS])
    seen: dict[str, tuple[str, int]] = {}
    read = rejected = 0
    with pq.ParquetWriter(path, schema) as writer:
        for source in sources:
            for block in _blocks(source, ACCOUNT_COLUMNS, max_line_bytes):
                read += block.rows_read
                rejects = list(block.rejects)
                keep = []
                ids = block.valid.column("account_id").to_pylist()
                lines = block.valid.column("_line").to_pylist()
                for i, (acc, line) in enumerate(zip(ids, lines, strict=True)):
                    if acc in seen:  # accounts are few: an in-memory set is fine here
                        first = seen[acc]
                        rejects.append(
                            Reject(
                                str(source),
                                line,
                                f"duplicate account_id {acc!r} "
                                f"(first seen at {first[0]}:{first[1]})",
                                orjson.dumps(
                                    block.valid.slice(i, 1)
                                    .drop_columns(["_line", "_extra"])
                                    .to_pylist()[0],
                                    default=str,
                                ).decode(),
                            )
                        )
                    else:
                        seen[acc] = (str(source), line)
                        keep.append(i)
                quarantine.write(rejects)
                rejected += len(rejects)
                writer.write_table(block.valid.take(keep).select(schema.names).cast(schema))
    if not seen and read == 0:
        raise InputError("accounts table is empty", source=str(accounts))
    return path, read, rejected
