"""Tests for ``distillguard simulate`` at tiny scale (vendored data only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.errors import DistillGuardError
from distillguard.schema import (
    ACCOUNT_COLUMNS,
    EXCHANGE_COLUMNS,
    truth_account_schema,
    truth_exchange_schema,
)
from distillguard.simulate import Camouflage, CampaignSpec, Scenario, simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    # Through the CLI, so the command wiring is exercised by the same run.
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(out), "--scale", "tiny", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def con(sim: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute(f"CREATE VIEW e AS SELECT * FROM read_parquet('{sim / 'exchanges.parquet'}')")
    c.execute(f"CREATE VIEW ta AS SELECT * FROM read_parquet('{sim / 'truth_accounts.parquet'}')")
    c.execute(f"CREATE VIEW te AS SELECT * FROM read_parquet('{sim / 'truth_exchanges.parquet'}')")
    c.execute(
        "CREATE TABLE x AS SELECT e.*, ta.label, ta.population, ta.campaign_id, te.is_attack "
        "FROM e JOIN ta USING (account_id) JOIN te USING (exchange_id)"
    )
    return c


def one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_files_follow_the_contract_schemas(sim: Path) -> None:
    ex = pq.read_schema(sim / "exchanges.parquet")
    assert ex.names == [c.name for c in EXCHANGE_COLUMNS]
    for c in EXCHANGE_COLUMNS:
        assert ex.field(c.name).type == c.arrow_type, c.name
    acc = pq.read_schema(sim / "accounts.parquet")
    assert acc.names == [c.name for c in ACCOUNT_COLUMNS]
    assert pq.read_schema(sim / "truth_accounts.parquet").equals(truth_account_schema())
    assert pq.read_schema(sim / "truth_exchanges.parquet").equals(truth_exchange_schema())


def test_rows_are_valid_sorted_and_uniquely_identified(con: duckdb.DuckDBPyConnection) -> None:
    n = one(con, "SELECT count(*) FROM e")
    assert n > 20_000
    assert one(con, "SELECT count(DISTINCT exchange_id) FROM e") == n
    assert one(con, "SELECT count(*) FROM x") == n  # every exchange has an account and a label
    assert one(con, "SELECT count(*) FROM e WHERE input_tokens < 0 OR output_tokens < 0") == 0
    assert (
        one(con, "SELECT count(*) FROM e WHERE prompt IS NULL OR model IS NULL OR ts IS NULL") == 0
    )
    # File order is time order across populations, so it reveals nothing about labels.
    assert (
        one(con, "SELECT count(*) FROM (SELECT ts < lag(ts) OVER () AS back FROM e) WHERE back")
        == 0
    )


def test_every_population_and_campaign_is_present(con: duckdb.DuckDBPyConnection) -> None:
    pops = {r[0] for r in con.execute("SELECT DISTINCT population FROM x").fetchall()}
    assert {
        "chat",
        "dev_app",
        "enterprise_batch",
        "benchmark",
        "reseller",
        "agent",
        "nat",
        "gray_synthetic",
        "deepseek_like",
        "moonshot_like",
        "minimax_like",
        "hydra",
    } <= pops
    camps = {
        r[0]
        for r in con.execute("SELECT DISTINCT campaign_id FROM x WHERE label = 'attack'").fetchall()
    }
    assert len(camps) == 8
    assert one(con, "SELECT count(*) FROM x WHERE label = 'benign' AND is_attack") == 0


def test_ids_carry_no_label_artefact(con: duckdb.DuckDBPyConnection) -> None:
    pattern = re.compile(r"^acct-[0-9a-f]{12}$")
    for label in ("benign", "attack"):
        ids = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT account_id FROM x WHERE label = '{label}'"
            ).fetchall()
        ]
        assert ids and all(pattern.match(i) for i in ids)
    # Models used by harvesters are models ordinary customers use too.
    attack_models = {
        r[0] for r in con.execute("SELECT DISTINCT model FROM x WHERE label = 'attack'").fetchall()
    }
    benign_models = {
        r[0] for r in con.execute("SELECT DISTINCT model FROM x WHERE label = 'benign'").fetchall()
    }
    assert attack_models <= benign_models


def test_hydra_is_low_and_slow_and_mixes_relayed_traffic(con: duckdb.DuckDBPyConnection) -> None:
    per_day = one(
        con,
        """
        SELECT median(n / greatest(days, 0.5)) FROM (
            SELECT account_id, count(*) AS n, (epoch(max(ts)) - epoch(min(ts))) / 86400 AS days
            FROM x WHERE population = 'hydra' GROUP BY 1 HAVING count(*) >= 20)
    """,
    )
    assert 15 <= per_day <= 45
    relayed = one(con, "SELECT avg((NOT is_attack)::INT) FROM x WHERE population = 'hydra'")
    assert 0.2 <= relayed <= 0.4
    # Rotating residential IPs: hydra-a accounts share a pool spread over many ASNs.
    asns = one(con, "SELECT count(DISTINCT asn) FROM x WHERE campaign_id = 'hydra-a'")
    assert asns >= 20


def test_hard_negatives_exist(con: duckdb.DuckDBPyConnection) -> None:
    # "Step by step" appears in benign traffic (benchmarks, students), not only in attacks.
    benign_cot = one(
        con, "SELECT count(*) FROM x WHERE label = 'benign' AND prompt ILIKE '%step by step%'"
    )
    attack_cot = one(
        con, "SELECT count(*) FROM x WHERE label = 'attack' AND prompt ILIKE '%step by step%'"
    )
    assert benign_cot > 100 and attack_cot > 0
    # University / corporate NAT: many legitimate accounts behind one IP.
    assert (
        one(
            con,
            "SELECT max(n) FROM (SELECT ip, count(DISTINCT account_id) n FROM x "
            "WHERE population = 'nat' GROUP BY 1)",
        )
        >= 20
    )
    # Reseller: one account, thousands of end-user IPs.
    assert (
        one(
            con,
            "SELECT max(n) FROM (SELECT account_id, count(DISTINCT ip) n FROM x "
            "WHERE population = 'reseller' GROUP BY 1)",
        )
        >= 1000
    )
    # Enterprise batch: very high volume from a handful of cloud IPs.
    row = con.execute(
        "SELECT count(*) / 3.0, count(DISTINCT ip) FROM x WHERE population = 'enterprise_batch' "
        "GROUP BY account_id ORDER BY 1 DESC LIMIT 1"
    ).fetchone()
    assert row is not None and row[0] > 1000 and row[1] <= 5


def test_minimax_moves_half_its_traffic_to_the_new_model(con: duckdb.DuckDBPyConnection) -> None:
    after = "ts >= (SELECT min(ts) FROM x WHERE model = 'helix-5') + INTERVAL 1 DAY"
    share_after = one(
        con,
        f"SELECT avg((model = 'helix-5')::INT) FROM x "
        f"WHERE campaign_id = 'minimax_like-a' AND {after}",
    )
    benign_after = one(
        con, f"SELECT avg((model = 'helix-5')::INT) FROM x WHERE population = 'chat' AND {after}"
    )
    assert 0.35 <= share_after <= 0.65
    assert benign_after < 0.2


def test_accounts_table_has_tiers_and_signup_metadata(sim: Path) -> None:
    acc = pq.read_table(sim / "accounts.parquet").to_pylist()
    tiers = {a["tier"] for a in acc}
    assert {"edu", "startup", "free", "pro", "enterprise"} <= tiers
    assert all(a["created_at"] is not None and a["payment_fingerprint"] for a in acc)
    truth = {r["account_id"]: r for r in pq.read_table(sim / "truth_accounts.parquet").to_pylist()}
    assert set(truth) == {a["account_id"] for a in acc}


def test_same_seed_same_output_and_other_seed_differs(tmp_path: Path, sim: Path) -> None:
    a = simulate(tmp_path / "a", seed=5, scale="tiny")
    assert a["rows"] == pq.read_metadata(sim / "exchanges.parquet").num_rows
    assert pq.read_table(tmp_path / "a" / "exchanges.parquet").equals(
        pq.read_table(sim / "exchanges.parquet")
    )
    small = Scenario(
        campaigns=(CampaignSpec("h", "hydra", accounts=10, daily=27.5, min_accounts=3),)
    )
    b = simulate(tmp_path / "b", seed=6, scale="tiny", scenario=small)
    assert b["attack_accounts"] == 3 and set(b["campaigns"]) == {"h"}


def test_scenario_toml_overrides_and_rejects_unknown_knobs(tmp_path: Path) -> None:
    good = tmp_path / "s.toml"
    good.write_text(
        '[[campaign]]\ncampaign_id = "x"\nkind = "deepseek_like"\naccounts = 9\ndaily = 40.0\n'
        "[campaign.camouflage]\nhuman_timing = 1.0\nunique_ips = true\n",
        encoding="utf-8",
    )
    scen = Scenario.from_toml(good)
    assert scen.campaigns == (
        CampaignSpec("x", "deepseek_like", 9, 40.0, Camouflage(human_timing=1.0, unique_ips=True)),
    )
    assert len(scen.populations) == 8  # untouched sections keep the defaults
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[campaign]]\ncampaign_id = "x"\nkind = "hydra"\naccounts = 1\ndaily = 1.0\n'
        "[campaign.camouflage]\ninvisibility = 1\n",
        encoding="utf-8",
    )
    with pytest.raises(DistillGuardError, match="invisibility"):
        Scenario.from_toml(bad)


def test_unknown_scale_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DistillGuardError, match="unknown scale"):
        simulate(tmp_path, scale="huge")


def test_naive_baseline_does_badly_on_the_hard_negatives(sim: Path, tmp_path: Path) -> None:
    from distillguard.baselines import naive_volume_baseline
    from distillguard.evaluate import evaluate

    naive_volume_baseline(sim / "exchanges.parquet", tmp_path)
    ev = evaluate(tmp_path, sim)
    pops = ev["populations"]
    assert pops["hydra"]["recall"] == 0.0
    hard = ("enterprise_batch", "reseller", "benchmark")
    assert sum(pops[p]["fp"] for p in hard) >= 2
