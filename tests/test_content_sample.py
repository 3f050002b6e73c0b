"""The content sample: nested hash cuts and the follow-up read of undecided accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest

from distillguard.features.content import bucket_sizes, content_sample, followup_quota


def _log(per_day: dict[str, int], days: int = 3) -> Any:
    rows = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for acct, n in per_day.items():
        for d in range(days):
            for i in range(n):
                rows.append(
                    {
                        "exchange_id": f"{acct}-{d}-{i}",
                        "account_id": acct,
                        "conversation_id": None,
                        "ts": start + timedelta(days=d, seconds=10 * i),
                        "prompt": f"question number {i} of day {d}",
                        "system_prompt": None,
                    }
                )
    df = pd.DataFrame(rows)
    df["conversation_id"] = df["conversation_id"].astype(object)
    df["system_prompt"] = df["system_prompt"].astype(object)
    return ibis.memtable(df)


def _ids(expr: Any) -> set[str]:
    return set(expr.select("exchange_id").to_pyarrow().column(0).to_pylist())


def test_followup_sample_extends_the_first_without_repeating_it() -> None:
    t = _log({"a": 200, "b": 50, "c": 3})
    sizes = bucket_sizes(t)
    first = _ids(content_sample(t, per_bucket=4, sizes=sizes))
    both = _ids(content_sample(t, per_bucket=40, sizes=sizes))
    more = _ids(content_sample(t, per_bucket=40, sizes=sizes, after=4))
    assert first and more
    assert not first & more  # never re-reads a row
    assert first | more == both  # nested cuts: the union is the bigger sample
    # a per-bucket quota: only account b's buckets are read further
    quota = np.where(sizes["account_id"] == "b", 40, np.minimum(sizes["n"], 4))
    only_b = _ids(content_sample(t, per_bucket=quota, sizes=sizes, after=4))
    assert only_b and all(x.startswith("b-") for x in only_b)
    # a quiet account is read whole by the first sample; nothing is left for a second
    assert {x for x in both if x.startswith("c-")} <= first


def _sizes(accounts: list[str], days: int, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [a for a in accounts for _ in range(days)],
            "b": [86400 * d for _ in accounts for d in range(days)],
            "n": n,
        }
    )


def test_followup_reads_only_undecided_accounts_and_never_uses_later_days() -> None:
    days, base = 5, 2
    sizes = _sizes(["honest", "harvester", "blatant", "late"], days, 30)
    elicit = {
        "honest": [0, 0, 0, 0, 0],  # below the lowest bar: decided
        "harvester": [1, 0, 1, 1, 0],  # above it, not decisively: read more
        "blatant": [2, 2, 2, 2, 2],  # far above it: decided after its first day
        "late": [0, 0, 0, 2, 2],  # turns suspicious on day 4
    }
    first = sizes.assign(
        c_n=base, c_elicit=[k for a in sizes["account_id"].unique() for k in elicit[a]]
    )
    quota = followup_quota(
        sizes, first, base=base, per_bucket=20, rate=0.02, z_range=(1.0, 8.0), budget=10**6
    )
    got = pd.Series(quota, index=pd.MultiIndex.from_frame(sizes[["account_id", "b"]]))
    assert (got["honest"] == base).all()
    assert got["blatant"].iloc[0] == 20 and (got["blatant"].iloc[1:] == base).all()
    assert (got["harvester"] == 20).all()
    # the read of a day depends on that day's evidence and earlier days' only
    assert (got["late"].iloc[:3] == base).all() and (got["late"].iloc[3:] == 20).all()


def test_followup_fits_its_budget() -> None:
    sizes = _sizes([f"a{i}" for i in range(10)], 4, 100)
    first = sizes.assign(c_n=2, c_elicit=1)
    budget = 300
    quota = followup_quota(
        sizes, first, base=2, per_bucket=64, rate=0.02, z_range=(1.0, 50.0), budget=budget
    )
    extra = int((quota - 2).sum())
    assert 0 < extra <= budget
    assert (quota >= 2).all() and (quota <= 64).all()
    # no budget, no second read
    none = followup_quota(
        sizes, first, base=2, per_bucket=64, rate=0.02, z_range=(1.0, 50.0), budget=0
    )
    assert (none == 2).all()


def test_policy_sets_the_followup_read() -> None:
    import pytest

    from distillguard.errors import ConfigError
    from distillguard.policy import load_policy, parse_policy
    from distillguard.scan import _followup

    pol = load_policy()
    f = _followup(pol)
    assert f is not None and f.budget == pol.content_followup_max_prompts > 0
    # the lowest bar the content detector can set is what the second read is judged against
    content = next(d for d in pol.detectors if d.name == "content")
    assert f.rate == content.params["min_rate"]
    assert f.per_bucket == pol.content_per_bucket
    raw = {**pol.raw, "scan": {**pol.raw["scan"], "content_followup_max_prompts": 0}}
    assert _followup(parse_policy(raw)) is None
    raw["scan"]["content_followup_max_prompts"] = -1
    with pytest.raises(ConfigError, match="content_followup_max_prompts"):
        parse_policy(raw)


class _StubClassifier:
    """Flags requests whose prompt or system prompt contains ELICIT, backed by a named rule
    (bit 0); the demand is the prompt's own when the prompt holds it."""

    capability_names = ("other",)
    signal_names = ("rule:cot",)

    def score(self, prompts: list[str | None], systems: list[str | None] | None = None) -> Any:
        from types import SimpleNamespace

        sys = systems or [None] * len(prompts)
        both = [(p or "") + (s or "") for p, s in zip(prompts, sys, strict=True)]
        hit = np.array(["ELICIT" in text for text in both])
        return SimpleNamespace(
            elicitation=hit.astype(np.float32),
            flagged=hit,
            signals=hit.astype(np.int64),
            capability=np.zeros(len(prompts), dtype=np.int64),
        )

    def demand(self, prompts: list[str | None], systems: Any, scores: Any) -> Any:
        own = scores.flagged & np.array(["ELICIT" in (p or "") for p in prompts])
        return own, scores.flagged & ~own


def test_score_sample_reads_undecided_accounts_further(tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    from distillguard.features.content import Followup, score_sample

    con = ibis.duckdb.connect()
    df = _log({"harvester": 30, "honest": 30}, days=4).to_pandas()
    eliciting = df["account_id"].eq("harvester") & (df.index % 4 == 0)
    df.loc[eliciting, "prompt"] = df.loc[eliciting, "prompt"] + " ELICIT"
    import pyarrow as pa

    schema = pa.schema(
        [
            ("exchange_id", pa.string()),
            ("account_id", pa.string()),
            ("conversation_id", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("prompt", pa.string()),
            ("system_prompt", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), tmp_path / "l.pq")
    t = con.read_parquet(tmp_path / "l.pq")
    out = tmp_path / "content.parquet"
    follow = Followup(per_bucket=20, rate=0.02, budget=10**6, z_range=(1.0, 50.0))
    done = score_sample(con, t, out, _StubClassifier(), per_bucket=2, followup=follow)
    got = pq.read_table(out).to_pandas()
    assert len(got) == done and got["exchange_id"].is_unique
    per = got.groupby("account_id").size()
    plain = score_sample(con, t, tmp_path / "plain.parquet", _StubClassifier(), per_bucket=2)
    thin = pq.read_table(tmp_path / "plain.parquet").to_pandas().groupby("account_id").size()
    assert plain == thin.sum() < done
    assert per["honest"] == thin["honest"]  # decided by the thin sample
    assert per["harvester"] >= thin["harvester"] + 20  # undecided: read further
    assert not list(tmp_path.glob("content.*.parquet"))  # the two reads merged


def test_a_joining_candidate_is_read_again_up_to_a_quota(tmp_path: Any) -> None:
    from distillguard.scan import _reread_content

    con = ibis.duckdb.connect()
    df = _log({"harvester": 30, "honest": 30, "other": 30}, days=4).to_pandas()
    eliciting = df["account_id"].eq("harvester") & (df.index % 10 == 0)
    df.loc[eliciting, "prompt"] = df.loc[eliciting, "prompt"] + " ELICIT"
    df.loc[df["account_id"].eq("honest") & (df.index % 2 == 0), "prompt"] = ""  # no text
    t = ibis.memtable(df)
    got = _reread_content(con, t, _StubClassifier(), ["harvester", "honest"], 50, tmp_path)
    got = got.set_index("account_id")
    assert sorted(got.index) == ["harvester", "honest"]  # only those asked about
    assert got.loc["harvester", "c_n"] == 50 and got.loc["honest", "c_n"] == 50
    assert 1 <= got.loc["harvester", "c_elicit"] < 50 and got.loc["honest", "c_elicit"] == 0
    assert (got["c_cap_other"] == got["c_n"]).all()  # the stub's one label is untracked
    assert (got[["c_cap_coding", "c_cap_math", "c_cap_agentic"]] == 0).all().all()
    everything = _reread_content(con, t, _StubClassifier(), ["harvester"], 1000, tmp_path)
    assert everything["c_n"].tolist() == [120] and everything["c_elicit"].tolist() == [12]
    assert _reread_content(con, t, _StubClassifier(), [], 50, tmp_path).empty
    assert _reread_content(con, t, _StubClassifier(), ["nobody"], 50, tmp_path).empty


def test_peer_bar_comes_from_the_first_read() -> None:
    from distillguard.detectors.content import ContentDetector

    # Early in a log only the accounts read further have enough prompts read: they are the
    # harvesters, and their shares must not set the bar they are judged against.
    n = 40
    X = pd.DataFrame(
        {
            "content_sampled": [60.0] * n + [2.0] * 200,
            "elicitation_share": [0.3] * n + [0.0] * 200,
            "base_sampled": [12.0] * n + [12.0] * 200,
            "base_elicitation_share": [0.25] * n + [0.0] * 200,
        }
    )
    fitted = ContentDetector().fit(X)
    assert fitted.rates_["__all__"] == pytest.approx(0.02)
    assert (fitted.score(X, explain=False).score[:n] >= 0.5).all()
    # without the first read's columns the same accounts set a bar that hides them
    plain = ContentDetector().fit(X[["content_sampled", "elicitation_share"]])
    assert plain.rates_["__all__"] > 0.2


def test_content_sums_count_the_first_read_apart(tmp_path: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distillguard.features.content import content_bucket_sums

    rows = pa.table(
        {
            "account_id": ["a"] * 5,
            "bucket": [datetime(2026, 1, 1, tzinfo=UTC)] * 5,
            "base": [1, 1, 0, 0, 0],
            "elicit": [1, 0, 1, 1, 0],
            "sys_elicit": [0, 1, 0, 0, 1],
            "elicitation": [0.9, 0.1, 0.9, 0.9, 0.9],
            "cap": pa.array([0, 1, 2, 3, 3], pa.int8()),
        }
    )
    pq.write_table(rows, tmp_path / "c.parquet")
    con = ibis.duckdb.connect()
    got = content_bucket_sums(con.read_parquet(tmp_path / "c.parquet")).to_pandas().iloc[0]
    assert (got["c_n"], got["c_elicit"], got["c_sys_elicit"]) == (5, 3, 2)
    # the first read's eliciting count is the prompts' own demand, as the detector's is
    assert (got["c_base_n"], got["c_base_elicit"]) == (2, 1)
