"""Every exchange the gateway sees, in the CONTRACT §1 schema plus ``decision``/``reasons``.

Rows are buffered and written as complete Parquet files (written under a temporary name,
then renamed), one per ``flush_s`` or ``max_rows``: a reader such as ``distillguard scan``
never sees a half-written file, and a crash loses at most the unflushed buffer. Shutdown
flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.schema import EXCHANGE_COLUMNS

log = logging.getLogger("distillguard.gateway")

LOG_SCHEMA = pa.schema(
    [
        *(pa.field(c.name, c.arrow_type, nullable=not c.required) for c in EXCHANGE_COLUMNS),
        pa.field("decision", pa.string()),
        pa.field("reasons", pa.list_(pa.string())),
    ]
)
COLUMNS = tuple(LOG_SCHEMA.names)


class DecisionLog:
    def __init__(self, directory: Path | None, instance: str, flush_s: float, max_rows: int):
        self.directory = directory
        self.instance = instance
        self.flush_s = flush_s
        self.max_rows = max_rows
        self._rows: list[dict[str, Any]] = []
        self._seq = itertools.count()
        self._lock = asyncio.Lock()
        self._flushing: asyncio.Task[None] | None = None
        self.rows_logged = 0
        self.rows_written = 0
        self.files_written = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @property
    def pending(self) -> int:
        return len(self._rows)

    def append(self, row: dict[str, Any]) -> None:
        if self.directory is None:
            return
        self._rows.append(row)
        self.rows_logged += 1
        if len(self._rows) >= self.max_rows and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    def _write(self, rows: list[dict[str, Any]]) -> Path:
        assert self.directory is not None
        table = pa.Table.from_pylist(rows, schema=LOG_SCHEMA)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"exchanges-{self.instance}-{stamp}-{os.getpid()}-{next(self._seq):06d}.parquet"
        final = self.directory / name
        tmp = self.directory / ("." + name + ".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
        return final

    async def flush(self) -> None:
        async with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception:
                # keep the rows for the next attempt rather than lose them
                self._rows[:0] = rows
                log.exception("decision log: write failed; %d rows kept in memory", len(rows))
                raise
            self.rows_written += len(rows)
            self.files_written += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            with contextlib.suppress(Exception):  # logged in flush; retried next period
                await self.flush()
