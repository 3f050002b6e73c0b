"""Turn loosely typed values into contract-typed Arrow columns, recording every bad cell.

The fast path converts a whole column at once; only a column that fails is walked value
by value to find which rows are bad and why, so clean data pays almost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.schema import TS_TYPE, Column, Kind

# Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
EPOCH_MS_THRESHOLD = 1e11
TS_MIN_US = 0  # 1970-01-01
TS_MAX_US = 7_258_118_400_000_000  # 2200-01-01: later timestamps are corrupt, not future logs
_NONE = type(None)
_ALLOWED: dict[Kind, frozenset[type]] = {
    "string": frozenset({str, _NONE}),
    "int": frozenset({int, _NONE}),
    "float": frozenset({int, float, _NONE}),
    "bool": frozenset({bool, _NONE}),
    "timestamp": frozenset({str, int, float, _NONE}),
}
_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


class RowErrors:
    """Per-row reasons, filled lazily: most blocks have no bad row at all."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reasons: dict[int, list[str]] = {}

    def add(self, row: int, reason: str) -> None:
        self.reasons.setdefault(row, []).append(reason)

    def add_mask(self, mask: np.ndarray[Any, np.dtype[np.bool_]], reason: str) -> None:
        for row in np.flatnonzero(mask).tolist():
            self.add(row, reason)

    def good_mask(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        mask = np.ones(self.n, dtype=bool)
        if self.reasons:
            mask[list(self.reasons)] = False
        return mask

    def reason(self, row: int) -> str:
        return "; ".join(self.reasons[row])


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def parse_ts_value(value: object) -> int | str:
    """One timestamp to epoch microseconds, or the reason it is not one."""
    if isinstance(value, bool):
        return "expected a timestamp (RFC 3339 string or epoch number), got boolean"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return "unparseable timestamp: not a finite number"
        seconds = value / 1000.0 if abs(value) >= EPOCH_MS_THRESHOLD else float(value)
        us = round(seconds * 1_000_000)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            shown = text if len(text) <= 40 else text[:40] + "..."
            return f"unparseable timestamp {shown!r}"
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)  # a naive time in a UTC log is UTC
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    else:
        return f"expected a timestamp (RFC 3339 string or epoch number), got {_type_name(value)}"
    if not TS_MIN_US <= us < TS_MAX_US:
        return "timestamp out of range (before 1970 or after 2200)"
    return us


def _timestamps(values: Sequence[object], col: str, errors: RowErrors) -> pa.Array:
    types = set(map(type, values))
    if types <= {str, _NONE}:
        try:  # vectorised RFC 3339 with offsets; naive strings fail here and take the slow path
            arr = pc.cast(pa.array(values, pa.string()), TS_TYPE)
            bounds = pc.min_max(arr.cast(pa.int64()))
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            if lo is None or (lo >= TS_MIN_US and hi < TS_MAX_US):
                return arr
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    elif types <= {int, float, _NONE} and _NONE not in types:
        nums = np.asarray(values, dtype=np.float64)
        if bool(np.isfinite(nums).all()):
            us = np.where(np.abs(nums) >= EPOCH_MS_THRESHOLD, nums * 1_000.0, nums * 1_000_000.0)
            us = np.clip(np.round(us), -9.2e18, 9.2e18).astype(np.int64)  # range-checked below
            if bool(((us >= TS_MIN_US) & (us < TS_MAX_US)).all()):
                return pa.array(us, pa.int64()).cast(TS_TYPE)
    out: list[int | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        parsed = parse_ts_value(v)
        if isinstance(parsed, str):
            errors.add(i, f"field '{col}': {parsed}")
            out.append(None)
        else:
            out.append(parsed)
    return pa.array(out, pa.int64()).cast(TS_TYPE)


def _check_value(kind: Kind, value: object) -> tuple[object, str | None]:
    """One value: (converted, None) or (None, reason)."""
    if value is None:
        return None, None
    t = type(value)
    if kind == "int":
        if t is int:
            if -(2**63) <= value < 2**63:  # type: ignore[operator]
                return value, None
            return None, "integer out of 64-bit range"
        if t is float and math.isfinite(value) and float(value).is_integer():  # type: ignore[arg-type]
            if -(2.0**63) <= value < 2.0**63:  # type: ignore[operator]
                return int(value), None  # type: ignore[call-overload]
            return None, "integer out of 64-bit range"
        return None, f"expected an integer, got {_type_name(value)} {_short(value)}"
    if kind == "float":
        if t is int or t is float:
            if math.isfinite(value):  # type: ignore[arg-type]
                return float(value), None  # type: ignore[arg-type]
            return None, "not a finite number"
        return None, f"expected a number, got {_type_name(value)} {_short(value)}"
    if kind == "bool":
        if t is bool:
            return value, None
        return None, f"expected a boolean, got {_type_name(value)} {_short(value)}"
    if t is str:
        try:
            value.encode("utf-8")  # type: ignore[attr-defined]
        except UnicodeEncodeError:
            return None, "invalid unicode (lone surrogate)"
        return value, None
    return None, f"expected a string, got {_type_name(value)} {_short(value)}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:30] + "..."


def convert_column(column: Column, values: Sequence[object], errors: RowErrors) -> pa.Array:
    """Convert ``values`` to ``column``'s Arrow type; bad cells become null plus a row error."""
    if column.kind == "timestamp":
        arr = _timestamps(values, column.name, errors)
    else:
        types = set(map(type, values))
        arr = None
        if types <= _ALLOWED[column.kind] and not (
            column.kind == "float" and _has_nonfinite(values)
        ):
            try:
                arr = pa.array(values, column.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
                arr = None
        if arr is None:
            out: list[object] = []
            for i, v in enumerate(values):
                converted, reason = _check_value(column.kind, v)
                if reason is not None:
                    errors.add(i, f"field '{column.name}': {reason}")
                out.append(converted)
            arr = pa.array(out, column.arrow_type)
    check_values(column, arr, errors)
    return arr


def _has_nonfinite(values: Sequence[object]) -> bool:
    return any(type(v) is float and not math.isfinite(v) for v in values)


def check_values(column: Column, arr: pa.Array, errors: RowErrors) -> None:
    """Value rules on an already typed column: required, non-empty ids, non-negative."""
    if column.required:
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        if column.kind == "string" and column.name != "prompt":
            # an empty id is as useless as a missing one; an empty prompt is legal ("" if none)
            empty = pc.equal(pc.utf8_length(arr), 0).fill_null(False).to_numpy(zero_copy_only=False)
            missing = missing | empty
        if missing.any():
            errors.add_mask(
                missing & ~_already_bad(errors, len(arr), column.name),
                f"missing required field '{column.name}'",
            )
    if column.non_negative and len(arr):
        negative = pc.less(arr, 0).fill_null(False).to_numpy(zero_copy_only=False)
        if negative.any():
            errors.add_mask(negative, f"field '{column.name}': negative value")


def _already_bad(errors: RowErrors, n: int, name: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Rows whose ``name`` cell was nulled by a type error: don't also call it missing."""
    mask = np.zeros(n, dtype=bool)
    tag = f"field '{name}':"
    for row, reasons in errors.reasons.items():
        if any(r.startswith(tag) for r in reasons):
            mask[row] = True
    return mask
