"""`scan` end to end: every output of CONTRACT §2, with the promised columns and types."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.outputs.write import ACCOUNTS_SCHEMA, CAMPAIGNS_SCHEMA
from tests.conftest import row, traffic, write_jsonl

runner = CliRunner()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("scan")
    rows = traffic(seed=1)
    log = write_jsonl(tmp / "traffic.jsonl", [*rows, b"{not json", row(10**6, input_tokens=-1)])
    accounts = write_jsonl(
        tmp / "accounts.jsonl",
        [{"account_id": f"u{i}", "tier": "pro" if i % 2 else "free"} for i in range(60)],
    )
    out = tmp / "out"
    result = runner.invoke(app, ["scan", str(log), "--out", str(out), "--accounts", str(accounts)])
    assert result.exit_code == 0, result.output
    return out


def test_every_output_is_written(scanned: Path) -> None:
    for name in [
        "accounts.parquet",
        "campaigns.parquet",
        "exchanges_scored.parquet",
        "summary.json",
        "quarantine.jsonl",
        "report.html",
        "indicators.stix.json",
    ]:
        assert (scanned / name).is_file(), name
    assert not (scanned / ".work").exists()


def test_summary_reconciles(scanned: Path) -> None:
    s = json.loads((scanned / "summary.json").read_text())
    assert s["rows_read"] == s["rows_valid"] + s["rows_quarantined"]
    assert s["rows_quarantined"] == 2
    assert len((scanned / "quarantine.jsonl").read_text().splitlines()) == 2
    for key in [
        "rows_read",
        "rows_valid",
        "rows_quarantined",
        "accounts",
        "flagged_accounts",
        "campaigns",
        "elapsed_s",
        "engine",
        "version",
    ]:
        assert key in s
    assert s["engine"] == "duckdb" and s["accounts"] == 68


def test_accounts_table_matches_contract(scanned: Path) -> None:
    t = pq.read_table(scanned / "accounts.parquet")
    assert t.schema.equals(ACCOUNTS_SCHEMA, check_metadata=False)
    df = t.to_pandas()
    assert df["score"].between(0, 1).all()
    assert df["account_id"].is_unique
    flagged = df[df["flagged"]]
    assert flagged["first_flagged_at"].notna().all()
    assert df[~df["flagged"]]["first_flagged_at"].isna().all()
    assert all(len(r) > 0 for r in flagged["reasons"])


def test_planted_campaign_is_found_and_linked(scanned: Path) -> None:
    df = pq.read_table(scanned / "accounts.parquet").to_pandas().set_index("account_id")
    harvesters = [f"h{i}" for i in range(8)]
    assert df.loc[harvesters, "flagged"].all()
    assert df.loc[harvesters, "campaign_id"].nunique() == 1
    benign_flagged = df[df.index.str.startswith("u") & df["flagged"]]
    assert len(benign_flagged) <= 1
    camps = pq.read_table(scanned / "campaigns.parquet")
    assert camps.schema.equals(CAMPAIGNS_SCHEMA, check_metadata=False)
    c = camps.to_pylist()[0]
    assert sorted(c["account_ids"]) == harvesters and c["accounts"] == 8
    assert c["exchanges"] == 8 * 4 * 120
    assert any(i.startswith("payment_fingerprint:") for i in c["indicators"])
    assert c["summary"].endswith(".")


def test_first_flagged_at_uses_only_past_data(scanned: Path) -> None:
    df = pq.read_table(scanned / "accounts.parquet").to_pandas().set_index("account_id")
    # harvesters are blatant from day one, so a daily job flags them at the end of day 1
    assert (
        df.loc["h0", "first_flagged_at"] == df.loc[[f"h{i}" for i in range(8)], "first_flagged_at"]
    ).all()
    assert str(df.loc["h0", "first_flagged_at"]) == "2026-11-03 00:00:00+00:00"


def test_exchange_scores(scanned: Path) -> None:
    t = pq.read_table(scanned / "exchanges_scored.parquet")
    assert t.schema.names == ["exchange_id", "account_id", "score"]
    assert t.schema.field("score").type == pa.float64()
    s = json.loads((scanned / "summary.json").read_text())
    assert t.num_rows == s["rows_valid"]


def test_stix_bundle_hashes_identifiers(scanned: Path) -> None:
    bundle = json.loads((scanned / "indicators.stix.json").read_text())
    assert bundle["type"] == "bundle"
    types = {o["type"] for o in bundle["objects"]}
    assert {"identity", "campaign", "indicator", "relationship"} <= types
    text = json.dumps(bundle)
    assert "card-shared" not in text and "203.0.113" not in text


def test_report_is_self_contained(scanned: Path) -> None:
    page = (scanned / "report.html").read_text()
    # nothing fetched from elsewhere (an SVG namespace URI is a name, not a fetch)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "@import" not in page
    assert "h0" in page and "campaign" in page


def test_unreadable_input_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"PAR1garbage")
    result = runner.invoke(app, ["scan", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "x.parquet" in result.output and "error" in result.output


def test_bad_policy_is_a_clear_error(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "l.jsonl", [row(1)])
    pol = tmp_path / "p.toml"
    pol.write_text("[scan]\nthreshhold = 0.4\n[detectors.peer_profile]\nweight = 1.0\n")
    result = runner.invoke(
        app, ["scan", str(log), "--out", str(tmp_path / "o"), "--policy", str(pol)]
    )
    assert result.exit_code == 2
    assert "threshhold" in result.output


def test_single_account_single_exchange(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "l.jsonl", [row(1)])
    result = runner.invoke(app, ["scan", str(log), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    df = pq.read_table(tmp_path / "o" / "accounts.parquet").to_pandas()
    assert len(df) == 1 and not df["flagged"].any()


def test_all_rows_bad_still_completes(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "l.jsonl", [b"nope", b"{}"])
    result = runner.invoke(app, ["scan", str(log), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["rows_read"] == 2 and s["rows_quarantined"] == 2 and s["accounts"] == 0


def test_worker_processes_change_nothing(tmp_path: Path) -> None:
    """Staging and classifying in a pool of worker processes gives the same scan as doing
    it all in this process."""
    from distillguard.scan import run_scan

    log = write_jsonl(tmp_path / "t.jsonl", traffic(seed=4))
    runs = [
        run_scan([log], tmp_path / f"w{w}", workers=w, parallel_min_bytes=0).accounts
        for w in (1, 2)
    ]
    one, two = (r.set_index("account_id").sort_index() for r in runs)
    assert one["flagged"].any()
    assert one["flagged"].tolist() == two["flagged"].tolist()
    assert one["score"].tolist() == two["score"].tolist()
    scored = [
        pq.read_table(tmp_path / f"w{w}" / "exchanges_scored.parquet").sort_by("exchange_id")
        for w in (1, 2)
    ]
    for col in ("exchange_id", "account_id"):
        assert scored[0].column(col).to_pylist() == scored[1].column(col).to_pylist()
    a, b = (s.column("score").to_numpy() for s in scored)
    assert np.allclose(a, b, rtol=0, atol=1e-12)


def test_wordy_prompts_score_above_short_ones_inside_a_flagged_account(tmp_path: Path) -> None:
    """A proxy relays people's short questions beside harvested ones wrapped in
    instructions. With no elicitation phrase, no repeated wrapper and answers of the same
    lengths, the prompt's length against the account's own prompts still tells them apart;
    a tool-result turn (no text) is neither."""
    rng = np.random.default_rng(7)
    words = ["river", "garden", "blue", "table", "music", "letter", "travel", "window"]
    words += ["friend", "summer", "coffee", "paper", "mountain", "station", "orange", "clock"]

    def text(n: int) -> str:
        return " ".join(rng.choice(words, n))

    extra = []
    for k in range(240):
        kind = ("short", "wordy", "tool")[k % 3]
        prompt = {"short": text(4), "wordy": text(60), "tool": ""}[kind]
        extra.append(
            row(
                k,
                exchange_id=f"m-{kind}-{k}",
                account_id="h0",
                prompt=prompt,
                output_tokens=int(rng.integers(3000, 6000)),
                payment_fingerprint="card-shared",
            )
        )
    log = write_jsonl(tmp_path / "t.jsonl", [*traffic(seed=2), *extra])
    result = runner.invoke(app, ["scan", str(log), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    df = pq.read_table(tmp_path / "o" / "exchanges_scored.parquet").to_pandas()
    df = df[df["exchange_id"].str.startswith("m-")]
    kind = df["exchange_id"].str.split("-").str[1]
    short, wordy, tool = (df.loc[kind == k, "score"].to_numpy() for k in ("short", "wordy", "tool"))
    assert short.max() > 0, "h0 is flagged"
    # every wordy prompt above every short one, tool turns in between on average
    assert (wordy[:, None] > short[None, :]).mean() > 0.95
    assert short.mean() < tool.mean() < wordy.mean()


def test_a_member_counts_as_found_when_its_campaign_or_itself_first_was() -> None:
    from distillguard.scan import _member_found_at

    ts = pd.Timestamp
    day1, camp = ts("2026-03-02", tz="UTC"), ts("2026-03-05", tz="UTC")
    # flagged on its own only later: its campaign found it first
    assert _member_found_at(ts("2026-03-09", tz="UTC"), camp, day1) == camp
    # its own evidence came first
    assert _member_found_at(ts("2026-03-04", tz="UTC"), camp, day1) == ts("2026-03-04", tz="UTC")
    # never flagged on its own: lifted when its campaign was found
    assert _member_found_at(None, camp, day1) == camp
    # ... but not before the end of its own first day (linking is not replayed per day)
    assert _member_found_at(None, camp, ts("2026-03-06", tz="UTC")) == ts("2026-03-07", tz="UTC")


def test_scoring_exchanges_in_shares_of_accounts_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big log's exchanges are scored one share of the accounts at a time, so the joined
    tables fit in memory; every exchange must come out once, with the same score."""
    from distillguard import scan

    log = write_jsonl(tmp_path / "t.jsonl", traffic(seed=5))
    scan.run_scan([log], tmp_path / "one", workers=1)
    monkeypatch.setattr(scan, "_JOIN_ROWS_PER_SHARE", 50)
    scan.run_scan([log], tmp_path / "many", workers=1)
    one, many = (
        pq.read_table(tmp_path / d / "exchanges_scored.parquet")
        .to_pandas()
        .set_index("exchange_id")
        for d in ("one", "many")
    )
    assert len(many) == len(one) and many.index.is_unique
    many = many.loc[one.index]
    assert (many["account_id"] == one["account_id"]).all()
    assert np.allclose(many["score"], one["score"], rtol=0, atol=1e-12)
    assert one["score"].nunique() > 10
