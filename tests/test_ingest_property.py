"""Property: whatever the bytes, ingestion never crashes and every row is accounted for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.ingest import stage_inputs
from distillguard.schema import EXCHANGE_COLUMN_NAMES
from tests.conftest import row

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_row(draw: st.DrawFn) -> bytes:
    r: dict[str, Any] = row(draw(st.integers(0, 50)))  # few ids: duplicates happen
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*EXCHANGE_COLUMN_NAMES, "extra"]))
        if draw(st.booleans()):
            r[key] = draw(json_values)
        else:
            r.pop(key, None)
    return json.dumps(r).encode()


@st.composite
def garbled(draw: st.DrawFn) -> bytes:
    good = orjson.dumps(row(draw(st.integers(0, 50))))
    kind = draw(st.sampled_from(["cut", "bytes", "splice"]))
    if kind == "cut":
        return good[: draw(st.integers(0, len(good)))]
    if kind == "bytes":
        return draw(st.binary(max_size=80)).replace(b"\n", b" ")
    at = draw(st.integers(0, len(good)))
    return (good[:at] + draw(st.binary(max_size=8)) + good[at:]).replace(b"\n", b"")


lines = st.lists(
    st.one_of(
        mutated_row(),
        garbled(),
        st.just(b""),
        st.builds(lambda i: orjson.dumps(row(i)), st.integers(0, 80)),
    ),
    max_size=40,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=lines, max_line=st.sampled_from([60, 4096]))
def test_garbled_input_never_crashes_and_reconciles(
    tmp_path_factory: Any, content: list[bytes], max_line: int
) -> None:
    tmp: Path = tmp_path_factory.mktemp("prop")
    path = tmp / "in.jsonl"
    path.write_bytes(b"\n".join(content))
    result = stage_inputs([path], tmp / "work", tmp / "q.jsonl", max_line_bytes=max_line)
    quarantined = [json.loads(x) for x in (tmp / "q.jsonl").read_text().splitlines()]
    expected_rows = sum(1 for line in content if line.strip() or len(line) > max_line)
    assert result.rows_read == expected_rows
    assert result.rows_read == result.rows_valid + result.rows_quarantined
    assert len(quarantined) == result.rows_quarantined
    assert pq.read_table(result.exchanges_path).num_rows == result.rows_valid
    for q in quarantined:
        assert q["reason"] and q["source"] == str(path) and 1 <= q["line"] <= len(content)
    valid = pq.read_table(result.exchanges_path)
    ids = valid.column("exchange_id").to_pylist()
    assert len(ids) == len(set(ids))
