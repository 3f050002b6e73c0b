"""Ingestion per CONTRACT §1: formats, sources, and every kind of bad row."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from distillguard.errors import InputError
from distillguard.ingest import expand_inputs, stage_inputs
from tests.conftest import row, write_jsonl


def stage(
    tmp_path: Path, *inputs: Path | str, **kw: Any
) -> tuple[Any, list[dict[str, Any]], pa.Table]:
    result = stage_inputs(list(inputs), tmp_path / "work", tmp_path / "quarantine.jsonl", **kw)
    quarantined = [
        json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()
    ]
    valid = pq.read_table(result.exchanges_path)
    assert result.rows_read == result.rows_valid + result.rows_quarantined
    assert result.rows_valid == valid.num_rows
    assert result.rows_quarantined == len(quarantined) - result.accounts_rows_quarantined
    return result, quarantined, valid


def only_reject(tmp_path: Path, bad: dict[str, Any] | bytes | str) -> dict[str, Any]:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1), bad, row(3)])
    result, quarantined, valid = stage(tmp_path, path)
    assert result.rows_read == 3
    assert valid.column("exchange_id").to_pylist() == ["ex-1", "ex-3"]
    assert len(quarantined) == 1
    q = quarantined[0]
    assert q["source"] == str(path) and q["line"] == 2 and q["raw"]
    return q


@pytest.mark.parametrize(
    "field", ["exchange_id", "ts", "account_id", "model", "prompt", "input_tokens", "output_tokens"]
)
def test_missing_required_field(tmp_path: Path, field: str) -> None:
    bad = row(2)
    del bad[field]
    assert only_reject(tmp_path, bad)["reason"] == f"missing required field '{field}'"


def test_null_and_empty_ids_are_missing(tmp_path: Path) -> None:
    assert "account_id" in only_reject(tmp_path, row(2, account_id=""))["reason"]
    assert "exchange_id" in only_reject(tmp_path, row(2, exchange_id=None))["reason"]


def test_empty_prompt_is_valid(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1, prompt="")])
    result, _, _ = stage(tmp_path, path)
    assert result.rows_valid == 1


@pytest.mark.parametrize("ts", ["yesterday", "2026-13-45T00:00:00Z", "", True, [1], 1e30])
def test_unparseable_timestamp(tmp_path: Path, ts: Any) -> None:
    reason = only_reject(tmp_path, row(2, ts=ts))["reason"]
    assert "'ts'" in reason and "timestamp" in reason


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "reasoning_tokens", "n"])
def test_negative_tokens(tmp_path: Path, field: str) -> None:
    assert (
        only_reject(tmp_path, row(2, **{field: -5}))["reason"] == f"field '{field}': negative value"
    )


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("input_tokens", "12", "expected an integer, got string"),
        ("input_tokens", 12.5, "expected an integer, got number"),
        ("output_tokens", True, "expected an integer, got boolean"),
        ("account_id", 42, "expected a string, got integer"),
        ("prompt", {"text": "x"}, "expected a string, got object"),
        ("stream", "yes", "expected a boolean, got string"),
        ("temperature", "hot", "expected a number, got string"),
        ("asn", 2**70, ""),
    ],
)
def test_wrong_type(tmp_path: Path, field: str, value: Any, expect: str) -> None:
    bad = row(2, **{field: value})
    reason = only_reject(tmp_path, bad)["reason"]
    assert f"'{field}'" in reason or "broken JSON" in reason
    assert expect in reason


def test_integral_float_is_an_integer(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1, input_tokens=12.0)])
    _, _, valid = stage(tmp_path, path)
    assert valid.column("input_tokens").to_pylist() == [12]


def test_broken_json_line(tmp_path: Path) -> None:
    assert only_reject(tmp_path, b'{"exchange_id": "ex-2", "ts": ')["reason"].startswith(
        "broken JSON"
    )


def test_json_that_is_not_an_object(tmp_path: Path) -> None:
    assert "not a JSON object" in only_reject(tmp_path, b"[1, 2, 3]")["reason"]


def test_invalid_utf8(tmp_path: Path) -> None:
    bad = orjson.dumps(row(2)).replace(b"question", b"qu\xff\xfestion")
    assert only_reject(tmp_path, bad)["reason"] == "invalid UTF-8"


def test_line_over_size_limit_is_quarantined_truncated(tmp_path: Path) -> None:
    huge = row(2, prompt="x" * 50_000)
    path = write_jsonl(tmp_path / "in.jsonl", [row(1), huge, row(3)])
    # chunk reads far smaller than the line: the line must never be held whole
    result, quarantined, valid = stage(tmp_path, path, max_line_bytes=1000)
    assert valid.num_rows == 2 and result.rows_read == 3
    q = quarantined[0]
    assert q["line"] == 2 and "line too long" in q["reason"] and "limit 1000" in q["reason"]
    assert len(q["raw"]) < 10_000 and q["raw"].endswith("[truncated]")


def test_oversize_line_spanning_many_reads(tmp_path: Path) -> None:
    from distillguard.ingest.lines import iter_line_blocks

    data = b'{"a":1}\n' + b"y" * 100_000 + b"\n" + b'{"b":2}\n' + b"z" * 5000
    import io

    blocks = list(iter_line_blocks(io.BytesIO(data), max_line_bytes=1000, chunk_bytes=4096))
    lines = [n for b in blocks for _, n in zip(*b.line_list(), strict=True)]
    over = [(ln, size) for b in blocks for ln, _, size in b.oversize]
    assert lines == [1, 3]
    assert over == [(2, 100_000), (4, 5000)]


def test_duplicate_exchange_id_within_and_across_files(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [row(1), row(2), row(1, prompt="again")])
    b = write_jsonl(tmp_path / "b.jsonl", [row(2, prompt="later"), row(4)])
    result, quarantined, valid = stage(tmp_path, a, b)
    assert sorted(valid.column("exchange_id").to_pylist()) == ["ex-1", "ex-2", "ex-4"]
    assert result.duplicates == 2
    reasons = {(q["source"], q["line"]): q["reason"] for q in quarantined}
    assert reasons[(str(a), 3)] == f"duplicate exchange_id 'ex-1' (first seen at {a}:1)"
    assert reasons[(str(b), 1)] == f"duplicate exchange_id 'ex-2' (first seen at {a}:2)"
    # the first occurrence is the one kept
    kept = valid.filter(pa.compute.equal(valid.column("exchange_id"), "ex-1"))
    assert kept.column("prompt").to_pylist() == ["question number 1"]


def test_several_reasons_on_one_row(tmp_path: Path) -> None:
    reason = only_reject(tmp_path, row(2, input_tokens=-1, ts="nope"))["reason"]
    assert "'ts'" in reason and "'input_tokens': negative" in reason


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-02T10:00:00Z", "2026-11-02 10:00:00"),
        ("2026-11-02T12:00:00+02:00", "2026-11-02 10:00:00"),
        ("2026-11-02T10:00:00.250Z", "2026-11-02 10:00:00.250000"),
        ("2026-11-02 10:00:00", "2026-11-02 10:00:00"),
        (1793613600, "2026-11-02 10:00:00"),
        (1793613600.5, "2026-11-02 10:00:00.500000"),
        (1793613600000, "2026-11-02 10:00:00"),
    ],
)
def test_timestamp_forms(tmp_path: Path, ts: Any, expected: str) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1, ts=ts)])
    _, _, valid = stage(tmp_path, path)
    assert str(valid.column("ts")[0].as_py().replace(tzinfo=None)) == expected


def test_mixed_timestamp_forms_in_one_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1), row(2, ts=1793613600), row(3, ts="bad")])
    result, quarantined, _ = stage(tmp_path, path)
    assert result.rows_valid == 2 and quarantined[0]["line"] == 3


def test_unknown_columns_are_carried(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1, tenant="t-9", nested={"k": [1, 2]}), row(2)])
    _, _, valid = stage(tmp_path, path)
    extras = valid.column("_extra").to_pylist()
    assert json.loads(extras[0]) == {"tenant": "t-9", "nested": {"k": [1, 2]}}
    assert extras[1] is None


def test_blank_lines_are_not_rows_but_keep_numbering(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [row(1), b"", b"   ", row(2, ts="bad")])
    result, quarantined, _ = stage(tmp_path, path)
    assert result.rows_read == 2 and quarantined[0]["line"] == 4


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\r\n".join(orjson.dumps(row(i)) for i in range(3)) + b"\r\n")
    result, _, _ = stage(tmp_path, path)
    assert result.rows_valid == 3


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [row(i) for i in range(start, start + n)]


def test_formats_and_sources_mix(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write_jsonl(tmp_path / "logs" / "a.jsonl", _rows(5, 0))
    write_jsonl(tmp_path / "logs" / "b.jsonl.gz", _rows(5, 5))
    (tmp_path / "logs" / "c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(b"".join(orjson.dumps(r) + b"\n" for r in _rows(5, 10)))
    )
    (tmp_path / "logs" / "notes.txt").write_text("not a log")
    table = pa.Table.from_pylist(_rows(5, 15))
    pq.write_table(table, tmp_path / "d.parquet")
    write_jsonl(tmp_path / "e1.jsonl", _rows(2, 20))
    write_jsonl(tmp_path / "e2.jsonl", _rows(2, 22))
    result, quarantined, valid = stage(
        tmp_path, tmp_path / "logs", tmp_path / "d.parquet", str(tmp_path / "e*.jsonl")
    )
    assert quarantined == []
    assert result.rows_valid == 24
    assert sorted(valid.column("exchange_id").to_pylist()) == sorted(f"ex-{i}" for i in range(24))
    assert len(result.sources) == 6  # notes.txt skipped in a folder


def test_parquet_bad_rows_and_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "exchange_id": ["p1", "p2", "p3", "p4"],
            "ts": pa.array([1793613600, 1793613601, None, 1793613603], pa.int64()),
            "account_id": ["a", "a", "b", "b"],
            "model": ["m"] * 4,
            "prompt": ["x", None, "y", "z"],
            "input_tokens": pa.array([1, 2, 3, -4], pa.int32()),
            "output_tokens": pa.array(["5", "6", "7", "eight"]),  # strings: wrong type per row
            "tenant": ["t1", "t2", "t3", "t4"],
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    result, quarantined, _ = stage(tmp_path, tmp_path / "x.parquet")
    assert result.rows_read == 4 and result.rows_valid == 0
    reasons = {q["line"]: q["reason"] for q in quarantined}
    assert "expected an integer, got string" in reasons[1]
    assert "missing required field 'prompt'" in reasons[2]
    assert "missing required field 'ts'" in reasons[3]
    assert "negative" in reasons[4]


def test_parquet_native_types(tmp_path: Path) -> None:
    rows = _rows(3)
    table = pa.Table.from_pylist(rows).set_column(
        1, "ts", pa.array([1793613600 + i for i in range(3)], pa.timestamp("s"))
    )
    pq.write_table(table, tmp_path / "x.parquet")
    result, _, valid = stage(tmp_path, tmp_path / "x.parquet")
    assert result.rows_valid == 3
    assert valid.schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=r"broken\.parquet"):
        stage_inputs([bad], tmp_path / "w", tmp_path / "q.jsonl")


def test_corrupt_gzip_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    data = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in _rows(1000)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"x\.jsonl\.gz"):
        stage_inputs([path], tmp_path / "w", tmp_path / "q.jsonl")


def test_missing_inputs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([tmp_path / "nope.jsonl"])
    with pytest.raises(InputError, match="glob matches no file"):
        expand_inputs([str(tmp_path / "*.parquet")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder holds no"):
        expand_inputs([tmp_path / "empty"])


def test_accounts_table(tmp_path: Path) -> None:
    ex = write_jsonl(tmp_path / "ex.jsonl", _rows(3))
    acc = write_jsonl(
        tmp_path / "acc.jsonl",
        [
            {
                "account_id": "acct-0",
                "tier": "pro",
                "created_at": "2026-01-01T00:00:00Z",
                "verified": True,
            },
            {"account_id": "acct-1", "tier": "edu", "verified": "yes"},
            {"account_id": "acct-0", "tier": "free"},
            {"tier": "free"},
        ],
    )
    result, quarantined, _ = stage(tmp_path, ex, accounts=acc)
    assert result.accounts_rows_read == 4 and result.accounts_rows_quarantined == 3
    staged = pq.read_table(result.accounts_path)
    assert staged.column("account_id").to_pylist() == ["acct-0"]
    reasons = sorted(q["reason"] for q in quarantined)
    assert any("duplicate account_id 'acct-0'" in r for r in reasons)
    assert any("'verified': expected a boolean" in r for r in reasons)
    assert any("missing required field 'account_id'" in r for r in reasons)


@pytest.mark.parametrize("duplicate", [True, False])
def test_parquet_staged_in_parallel_parts_matches_serial(tmp_path: Path, duplicate: bool) -> None:
    """Row groups staged by worker processes, each into its own part file, give the same
    valid rows, rejects and first-kept duplicates as one process reading in order."""
    rows = _rows(2000)
    for i in range(7, 2000, 211):
        rows[i] = {**rows[i], "input_tokens": -1}  # bad rows scattered over the parts
    if duplicate:
        rows[1990] = {**rows[1990], "exchange_id": rows[3]["exchange_id"]}  # a late one
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    runs = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        d.mkdir()
        result, quarantined, valid = stage(
            d, path, workers=workers, parallel_min_bytes=0, part_rows=250
        )
        valid = valid.sort_by("_seq")
        runs[workers] = (result, quarantined, valid)
        assert result.duplicates == int(duplicate)
        dups = [q["line"] for q in quarantined if "duplicate" in q["reason"]]
        assert dups == ([1991] if duplicate else [])
    (r1, q1, v1), (r2, q2, v2) = runs[1], runs[2]
    # without duplicates the parallel parts are read in place: 20 row groups of 100 rows,
    # a task closing once it holds 250+ rows (3 groups), make 7 parts
    parts = list(r2.exchanges_path.glob("part-0*.parquet")) if r2.exchanges_path.is_dir() else []
    assert len(parts) == (0 if duplicate else 7)
    assert (r1.rows_read, r1.rows_valid, r1.rows_quarantined) == (
        r2.rows_read,
        r2.rows_valid,
        r2.rows_quarantined,
    )
    assert [(q["line"], q["reason"]) for q in q1] == [(q["line"], q["reason"]) for q in q2]
    for col in ("exchange_id", "_line", "account_id", "ts", "input_tokens"):
        assert v1.column(col).to_pylist() == v2.column(col).to_pylist(), col


@pytest.mark.parametrize("workers", [1, 2])
def test_scattered_bad_rows_among_many_good(tmp_path: Path, workers: int) -> None:
    """Bad rows spread through big blocks: each is caught, every good row kept, in order,
    whether blocks are parsed in this process or by a pool of worker processes."""
    rows: list[Any] = []
    bad_lines = {}
    for i in range(3000):
        if i == 2999:
            rows.append(row(17))  # a duplicate far from its first occurrence
            bad_lines[i + 1] = 4
        elif i % 97 == 5:
            kind = (i // 97) % 4
            bad: Any = [
                row(i, input_tokens="7"),
                b'{"exchange_id": "cut',
                row(i, ts="not a time"),
                row(i, ts=None),
            ][kind]
            rows.append(bad)
            bad_lines[i + 1] = kind
        else:
            rows.append(row(i))
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    result, quarantined, valid = stage(
        tmp_path, path, workers=workers, parallel_min_bytes=0, block_bytes=32 << 10
    )
    assert {q["line"] for q in quarantined} == set(bad_lines)
    assert result.rows_valid == 3000 - len(bad_lines)
    lines = valid.column("_line").to_pylist()
    assert lines == sorted(lines)
    for q in quarantined:
        assert q["reason"].count(";") == 0, q["reason"]  # one reason, not repeated
