"""Block readers for JSONL and Parquet: each block comes out as contract-typed valid rows
plus the rejected ones, with the file and line (or row) number of every row."""

from __future__ import annotations

import functools
import io
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from distillguard.errors import InputError
from distillguard.ingest.lines import LineBlock, iter_line_blocks
from distillguard.ingest.sources import SourceFile
from distillguard.ingest.validate import (
    EPOCH_MS_THRESHOLD,
    TS_MAX_US,
    TS_MIN_US,
    RowErrors,
    check_values,
    convert_column,
)
from distillguard.schema import TS_TYPE, Column

RAW_TEXT_LIMIT = 8192  # characters of a rejected row kept in quarantine


@dataclass(frozen=True)
class Reject:
    source: str
    line: int
    reason: str
    raw: str

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}
        )


@dataclass
class Block:
    """Valid rows (contract columns + ``_line`` + ``_extra``) and rejects of one block."""

    valid: pa.Table
    rejects: list[Reject]
    rows_read: int
    position: int = 0  # bytes of the (compressed) file consumed so far, for progress bars
    dirty: bool = False  # the fast reader refused this block (its neighbours likely too)


def _raw_text(data: bytes) -> str:
    text = data[: RAW_TEXT_LIMIT * 4].decode("utf-8", "replace")
    return text if len(text) <= RAW_TEXT_LIMIT else text[:RAW_TEXT_LIMIT] + "…[truncated]"


def _json_reason(err: orjson.JSONDecodeError) -> str:
    msg = str(err)
    if "UTF-8" in msg:
        return "invalid UTF-8"
    return f"broken JSON: {msg}"


def _assemble(
    columns: tuple[Column, ...],
    arrays: dict[str, pa.Array],
    n: int,
    lines: list[int] | pa.Array,
    extras: list[str | None] | None,
) -> pa.Table:
    data: dict[str, pa.Array] = {}
    for col in columns:
        data[col.name] = arrays.get(col.name, pa.nulls(n, col.arrow_type))
    data["_line"] = pa.array(lines, pa.int64())
    data["_extra"] = pa.array(extras if extras is not None else [None] * n, pa.string())
    return pa.table(data)


def read_jsonl(
    source: SourceFile,
    columns: tuple[Column, ...],
    *,
    max_line_bytes: int,
    executor: Executor | None = None,
    block_bytes: int = 8 << 20,
    sink: Callable[[Block, int], Block] | None = None,
) -> Iterator[Block]:
    """Blocks of ``source`` in file order. With an ``executor`` (a process pool) blocks are
    parsed in parallel, at most ``2 x workers`` in flight, so memory stays bounded; there a
    picklable ``sink`` gets each parsed block and its index, in the worker, and what it
    returns comes back instead (so valid rows can be written where they were parsed)."""
    known = frozenset(c.name for c in columns)
    name = str(source)
    schema = _explicit_schema(columns)
    with source.open_binary() as (stream, raw):
        try:
            blocks = iter_line_blocks(
                stream, max_line_bytes=max_line_bytes, chunk_bytes=block_bytes
            )
            if executor is None:
                dirty = False
                for block in blocks:
                    parsed = _parse_block(
                        block, name, columns, known, max_line_bytes, schema, try_fast=not dirty
                    )
                    dirty = parsed.dirty
                    parsed.position = raw.tell()
                    yield parsed
                return
            window: deque[tuple[Future[Block], int]] = deque()
            limit = 2 * max(getattr(executor, "_max_workers", 2), 1)
            dirty = False  # as seen on the last block finished: dirty files stay dirty
            for index, block in enumerate(blocks):
                job = executor.submit(
                    _parse_into,
                    sink,
                    index,
                    block,
                    name,
                    columns,
                    known,
                    max_line_bytes,
                    schema,
                    try_fast=not dirty,
                )
                window.append((job, raw.tell()))
                if len(window) >= limit:
                    done = _done(window.popleft())
                    dirty = done.dirty
                    yield done
            while window:
                yield _done(window.popleft())
        except (OSError, EOFError) as err:
            # A corrupt gzip/zstd stream: the rows before it are kept, the file is named.
            raise InputError(f"cannot read further: {err}", source=name) from None


def _parse_into(
    sink: Callable[[Block, int], Block] | None, index: int, *args: Any, **kwargs: Any
) -> Block:
    block = _parse_block(*args, **kwargs)
    return sink(block, index) if sink is not None else block


def _done(item: tuple[Future[Block], int]) -> Block:
    block = item[0].result()
    block.position = item[1]
    return block


def _drop_bad(
    table: pa.Table,
    errors: RowErrors,
    rejects: list[Reject],
    name: str,
    line_of: Callable[[int], int],
    raw_of: Callable[[int], bytes],
) -> pa.Table:
    """Move the rows ``errors`` names from ``table`` to ``rejects`` (with line and raw text)."""
    if not errors.reasons:
        return table
    for i in sorted(errors.reasons):
        rejects.append(Reject(name, line_of(i), errors.reason(i), _raw_text(raw_of(i))))
    return table.filter(pa.array(errors.good_mask()))


def _extra_json(row: dict[str, Any]) -> str | None:
    present = {k: v for k, v in row.items() if v is not None}
    return orjson.dumps(present, default=str).decode() if present else None


def _explicit_schema(columns: tuple[Column, ...]) -> pa.Schema:
    # ts is left to inference: it may be an RFC 3339 string or an epoch number.
    return pa.schema([pa.field(c.name, c.arrow_type) for c in columns if c.kind != "timestamp"])


def _epoch_to_ts(arr: pa.Array) -> pa.Array:
    nums = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    us = np.where(np.abs(nums) >= EPOCH_MS_THRESHOLD, nums * 1_000.0, nums * 1_000_000.0)
    mask = np.isnan(us)
    # out-of-range values are clipped here and refused by the range check that follows
    us = np.clip(np.round(np.nan_to_num(us)), -9.2e18, 9.2e18)
    return pa.array(us.astype(np.int64), pa.int64(), mask=mask).cast(TS_TYPE)


def _fast_timestamps(arr: pa.Array) -> pa.Array | None:
    t = arr.type
    try:
        if pa.types.is_timestamp(t):
            out = arr.cast(pa.timestamp(t.unit, tz="UTC")) if t.tz is None else arr
            out = out.cast(TS_TYPE)
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            out = _epoch_to_ts(arr)
        elif pa.types.is_string(t):
            out = pc.cast(arr, TS_TYPE)
        elif pa.types.is_null(t):
            return pa.nulls(len(arr), TS_TYPE)
        else:
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    bounds = pc.min_max(out.cast(pa.int64()))
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    if lo is not None and not (lo >= TS_MIN_US and hi < TS_MAX_US):
        return None
    return out


def _fast_block(
    data: bytes,
    numbers: np.ndarray[Any, np.dtype[np.int64]],
    raw_line: Callable[[int], bytes],
    name: str,
    columns: tuple[Column, ...],
    known: frozenset[str],
    schema: pa.Schema,
) -> tuple[pa.Table, list[Reject]] | None:
    """Arrow's C++ JSON reader on many lines at once; None when a line needs the careful path.

    The reader is strict (a string in an int column, 12.5 for an int, a broken line all fail
    it), so lines it accepts need only the value rules checked.
    """
    try:
        # Arrow's reader lets invalid UTF-8 through into string columns; Python's decoder
        # is a fast exact check.
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        tb = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=4 << 20),  # measured fastest on 2 cores
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    n = tb.num_rows
    if n != len(numbers):
        return None
    errors = RowErrors(n)
    arrays: dict[str, pa.Array] = {}
    for col in columns:
        if col.name not in tb.column_names:
            if col.required:
                errors.add_mask(np.ones(n, dtype=bool), f"missing required field '{col.name}'")
            continue
        arr = tb.column(col.name).combine_chunks()
        if col.kind == "timestamp":
            fast_ts = _fast_timestamps(arr)
            if fast_ts is None and pa.types.is_string(arr.type):
                # some strings are not times: find which, value by value, in this column only
                arrays[col.name] = convert_column(col, arr.to_pylist(), errors)  # checks too
                continue
            if fast_ts is None:
                return None
            arr = fast_ts
        elif arr.type != col.arrow_type:
            return None
        check_values(col, arr, errors)
        arrays[col.name] = arr
    extra_names = [c for c in tb.column_names if c not in known]
    extras = None
    if extra_names:
        extras = [_extra_json(r) for r in tb.select(extra_names).to_pylist()]
    table = _assemble(columns, arrays, n, pa.array(numbers, pa.int64()), extras)
    rejects: list[Reject] = []
    table = _drop_bad(table, errors, rejects, name, lambda i: int(numbers[i]), raw_line)
    return table, rejects


_ALLOWED_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "timestamp": (str, int, float),
}


def _parse_block(
    block: LineBlock,
    name: str,
    columns: tuple[Column, ...],
    known: frozenset[str],
    max_line_bytes: int,
    schema: pa.Schema,
    try_fast: bool = True,
) -> Block:
    rejects = [
        Reject(
            name,
            ln,
            f"line too long: {size} bytes, limit {max_line_bytes}",
            _raw_text(head) + "…[truncated]",
        )
        for ln, head, size in block.oversize
    ]
    if block.ends is None or not try_fast:
        table, screened, blank = _screen(*block.line_list(), name, columns, known, schema)
        rejects.extend(screened)
        return _finish(table, rejects, len(block) - blank)
    ends = block.ends
    numbers = np.arange(block.first_line, block.first_line + len(ends), dtype=np.int64)
    fast = _fast_block(block.data, numbers, block.line, name, columns, known, schema)
    if fast is not None:
        return Block(fast[0], rejects + fast[1], len(block))
    # A few bad rows in a big block: try the fast reader on eighths, and screen line by line
    # only the eighths that hold them.
    tables: list[pa.Table] = []
    blank = 0
    cuts = np.linspace(0, len(ends), PIECES + 1, dtype=np.int64)
    for a, b in itertools.pairwise(cuts.tolist()):
        if a == b:
            continue
        start = 0 if a == 0 else int(ends[a - 1]) + 1
        piece = block.data[start : int(ends[b - 1])]
        piece_numbers = numbers[a:b]
        fast = _fast_block(
            piece,
            piece_numbers,
            functools.partial(_line_at, block, a),
            name,
            columns,
            known,
            schema,
        )
        if fast is None:
            lines = piece.split(b"\n")
            table, screened, piece_blank = _screen(
                lines, piece_numbers.tolist(), name, columns, known, schema
            )
            blank += piece_blank
            rejects.extend(screened)
            tables.append(table)
        else:
            tables.append(fast[0])
            rejects.extend(fast[1])
    return _finish(pa.concat_tables(tables), rejects, len(block) - blank)


PIECES = 8


def _line_at(block: LineBlock, offset: int, i: int) -> bytes:
    return block.line(offset + i)


DENSE_BAD_SHARE = 0.002  # past this share of bad rows, skip the fast reader on the next block


def _finish(table: pa.Table, rejects: list[Reject], rows: int) -> Block:
    # Dense bad rows make every piece fail: the next block goes straight to screening.
    return Block(table, rejects, rows, dirty=len(rejects) > DENSE_BAD_SHARE * max(rows, 1))


def _screen(
    lines: list[bytes],
    numbers: list[int],
    name: str,
    columns: tuple[Column, ...],
    known: frozenset[str],
    schema: pa.Schema,
) -> tuple[pa.Table, list[Reject], int]:
    """A block the fast reader refused: parse each line, set aside the odd ones (bad JSON,
    or a value of the wrong JSON type), and give the rest back to the fast reader. Rows
    share a handful of key/type shapes, so the type check is a cache lookup per row."""
    kinds = {c.name: c.kind for c in columns}
    verdicts: dict[tuple[tuple[str, ...], tuple[type, ...]], bool] = {}
    clean: list[bytes] = []
    clean_numbers: list[int] = []
    clean_items: list[tuple[dict[str, Any], int, bytes]] = []
    odd: list[tuple[dict[str, Any], int, bytes]] = []
    rejects: list[Reject] = []
    blank = 0
    loads = orjson.loads
    for line, num in zip(lines, numbers, strict=True):
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as err:
            if not line.strip():  # whitespace-only lines are not rows
                blank += 1
                continue
            rejects.append(Reject(name, num, _json_reason(err), _raw_text(line)))
            continue
        if type(obj) is not dict:
            kind = type(obj).__name__
            rejects.append(Reject(name, num, f"not a JSON object (got {kind})", _raw_text(line)))
            continue
        shape = (tuple(obj), tuple(map(type, obj.values())))
        ok = verdicts.get(shape)
        if ok is None:
            ok = verdicts[shape] = all(
                t is type(None) or t in _ALLOWED_TYPES[kinds[k]]
                for k, t in zip(*shape, strict=True)
                if k in kinds
            )
        if ok:
            clean.append(line)
            clean_numbers.append(num)
            clean_items.append((obj, num, line))
        else:
            odd.append((obj, num, line))
    tables: list[pa.Table] = []
    if clean:
        fast = _fast_block(
            b"\n".join(clean),
            np.asarray(clean_numbers, dtype=np.int64),
            clean.__getitem__,
            name,
            columns,
            known,
            schema,
        )
        if fast is None:  # e.g. epoch and RFC 3339 times mixed in one block
            odd.extend(clean_items)
        else:
            tables.append(fast[0])
            rejects.extend(fast[1])
    if odd:
        odd.sort(key=lambda item: item[1])
        table, odd_rejects = _dict_rows(odd, name, columns, known)
        tables.append(table)
        rejects.extend(odd_rejects)
    if not tables:
        return _assemble(columns, {}, 0, [], None), rejects, blank
    if len(tables) == 1:
        return tables[0], rejects, blank
    return pa.concat_tables(tables).sort_by("_line"), rejects, blank


def _dict_rows(
    items: list[tuple[dict[str, Any], int, bytes]],
    name: str,
    columns: tuple[Column, ...],
    known: frozenset[str],
) -> tuple[pa.Table, list[Reject]]:
    """The careful path: parsed rows checked value by value, each problem named."""
    rows = [item[0] for item in items]
    numbers = [item[1] for item in items]
    n = len(rows)
    errors = RowErrors(n)
    present: set[str] = set()
    extras: list[str | None] | None = None
    for i, row in enumerate(rows):
        if not row.keys() <= known:
            if extras is None:
                extras = [None] * n
            extras[i] = orjson.dumps({k: v for k, v in row.items() if k not in known}).decode()
        present.update(row)
    arrays: dict[str, pa.Array] = {}
    for col in columns:
        if col.name in present:
            key = col.name
            arrays[col.name] = convert_column(col, [r.get(key) for r in rows], errors)
        elif col.required:
            errors.add_mask(np.ones(n, dtype=bool), f"missing required field '{col.name}'")
    table = _assemble(columns, arrays, n, numbers, extras)
    rejects: list[Reject] = []
    table = _drop_bad(table, errors, rejects, name, numbers.__getitem__, lambda i: items[i][2])
    return table, rejects


def _fast_cast(col: Column, arr: pa.Array) -> pa.Array | None:
    """Cast a Parquet column whose physical type already fits; None means check row by row."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    try:
        if col.kind == "string" and (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
        ):
            return arr.cast(pa.string())
        if col.kind == "int" and pa.types.is_integer(t):
            return arr.cast(pa.int64())  # safe cast: a uint64 over range raises, then row by row
        if col.kind == "float" and (pa.types.is_integer(t) or pa.types.is_floating(t)):
            out = arr.cast(pa.float64())
            nonfinite = pc.or_(pc.is_nan(out), pc.is_inf(out))
            return None if pc.any(nonfinite).as_py() else out
        if col.kind == "bool" and pa.types.is_boolean(t):
            return arr
        if col.kind == "timestamp" and pa.types.is_timestamp(t):
            if t.tz is None:
                arr = arr.cast(pa.timestamp(t.unit, tz="UTC"))  # naive log times are UTC
            return arr.cast(TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def parquet_row_groups(source: SourceFile) -> list[int]:
    """Rows in each row group of a Parquet file (read from its footer)."""
    try:
        meta = pq.ParquetFile(source.path).metadata
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(f"not a readable Parquet file: {err}", source=str(source)) from None
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def read_parquet(
    source: SourceFile,
    columns: tuple[Column, ...],
    *,
    batch_rows: int = 65536,
    row_groups: list[int] | None = None,
    first_row: int = 0,
) -> Iterator[Block]:
    """Blocks of a Parquet file; or of ``row_groups`` only, the first starting at row
    ``first_row`` of the file (so row numbers stay the file's)."""
    name = str(source)
    try:
        pf = pq.ParquetFile(source.path)
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(f"not a readable Parquet file: {err}", source=name) from None
    known = {c.name for c in columns}
    offset = first_row
    total_rows = max(pf.metadata.num_rows, 1)
    size = source.path.stat().st_size
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=row_groups):
            block = _parquet_block(batch, name, columns, known, offset)
            offset += batch.num_rows
            block.position = size * offset // total_rows
            yield block
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(f"cannot read further after row {offset}: {err}", source=name) from None


def _parquet_block(
    batch: pa.RecordBatch, name: str, columns: tuple[Column, ...], known: set[str], offset: int
) -> Block:
    n = batch.num_rows
    errors = RowErrors(n)
    arrays: dict[str, pa.Array] = {}
    names = batch.schema.names
    for col in columns:
        if col.name not in names:
            if col.required:
                errors.add_mask(np.ones(n, dtype=bool), f"missing required field '{col.name}'")
            continue
        arr = batch.column(col.name)
        fast = _fast_cast(col, arr)
        if fast is not None:
            check_values(col, fast, errors)
            arrays[col.name] = fast
        else:
            arrays[col.name] = convert_column(col, arr.to_pylist(), errors)
    extra_names = [c for c in names if c not in known]
    extras: list[str | None] | None = None
    if extra_names:
        extra_rows = batch.select(extra_names).to_pylist()
        extras = [orjson.dumps(r, default=str).decode() for r in extra_rows]
    lines = list(range(offset + 1, offset + n + 1))
    table = _assemble(columns, arrays, n, lines, extras)
    rejects: list[Reject] = []
    table = _drop_bad(
        table,
        errors,
        rejects,
        name,
        lambda i: offset + i + 1,
        lambda i: orjson.dumps(batch.slice(i, 1).to_pylist()[0], default=str),
    )
    return Block(table, rejects, n)
