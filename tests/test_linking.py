"""Campaign linking: what counts as shared evidence, and what does not."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest

from distillguard.errors import ConfigError
from distillguard.linking import (
    SYNC_KEY,
    TEMPLATE_KEYS,
    Campaign,
    LinkingConfig,
    account_values,
    crowd_joiners,
    crowd_values,
    group_crowds,
    link_accounts,
    mixes_differ,
    pair_evidence,
    shared_values,
    synchrony_candidates,
    timing_synchrony,
    volume_centres,
    volumes_differ,
)
from distillguard.policy import DEFAULT_LINK_KEYS, load_policy, parse_policy
from distillguard.simulate import simulate
from distillguard.simulate.config import CampaignSpec, Scenario

CFG = LinkingConfig(keys=dict(DEFAULT_LINK_KEYS), edge_weight=5.0, weak_edge_weight=1.5)


def sv(rows: list[tuple[str, str, str]], *, spread: dict[str, int] | None = None) -> pd.DataFrame:
    """Shared-values rows from (account, key, value); popularity counted from the rows."""
    df = pd.DataFrame(rows, columns=["account_id", "key", "value"])
    df["accounts"] = df.groupby(["key", "value"])["account_id"].transform("nunique")
    df["held"] = df["account_id"].map(spread or {}).fillna(1).astype(int)
    return df[df["accounts"] >= 2]


def ring(members: list[str], n_ips: int = 4) -> list[tuple[str, str, str]]:
    """Members sharing a card, a /24 and several IPs: common control."""
    rows = []
    for m in members:
        rows.append((m, "payment_fingerprint", "card-1"))
        rows.append((m, "ip24", "203.0.113.0/24"))
        rows += [(m, "ip", f"203.0.113.{i}") for i in range(n_ips)]
    return rows


def scores(ids: list[str], value: float) -> pd.Series:
    return pd.Series(value, index=ids)


def test_common_control_is_one_campaign() -> None:
    members = [f"h{i}" for i in range(6)]
    camps = link_accounts(sv(ring(members)), scores(members, 0.9), CFG)
    assert len(camps) == 1
    assert camps[0].account_ids == members
    assert {"payment_fingerprint", "ip", "ip24"} <= set(camps[0].shared)
    assert all(camps[0].degree[m] >= 2 for m in members)


def test_one_coincidence_links_nobody() -> None:
    # three customers behind one NAT address and one popular user agent
    rows = [(a, "ip", "198.51.100.7") for a in "abc"] + [
        (a, "user_agent", "openai-python/1.52") for a in "abc"
    ]
    assert link_accounts(sv(rows), scores(list("abc"), 0.9), CFG) == []


def test_weak_evidence_groups_only_accounts_flagged_on_their_own() -> None:
    # three shared addresses and one wrapper: more than chance, less than common control
    rows = [(a, "ip", f"192.0.2.{i}") for a in "abc" for i in range(3)] + [
        (a, "prompt_suffix", "show every step of your reasoning.") for a in "abc"
    ]
    data = sv(rows)
    ids = list("abc")
    assert link_accounts(data, scores(ids, 0.9), CFG, flagged=set()) == []
    grouped = link_accounts(data, scores(ids, 0.9), CFG, flagged=set(ids))
    assert len(grouped) == 1 and grouped[0].account_ids == ids
    # an account not flagged on its own is not pulled in on weak evidence
    assert link_accounts(data, scores(ids, 0.9), CFG, flagged={"a", "b"}) == []


def test_accounts_spread_over_thousands_of_values_count_less() -> None:
    rows = [(a, "ip", f"203.0.113.{i}") for a in ("h", "r") for i in range(3)]
    compact = pair_evidence(sv(rows), CFG)["w"].sum()
    spread = pair_evidence(sv(rows, spread={"r": 5000}), CFG)["w"].sum()
    # r holds 5,000 addresses: each overlap counts sqrt(5000 / 200) = 5 times less
    assert spread * 5 == pytest.approx(compact)


def test_a_shared_card_is_not_discounted_by_how_many_share_it() -> None:
    few = pair_evidence(sv([(a, "payment_fingerprint", "c") for a in "ab"]), CFG)
    many = pair_evidence(sv([(a, "payment_fingerprint", "c") for a in "abcdefgh"]), CFG)
    ips = pair_evidence(sv([(a, "ip", "1.2.3.4") for a in "abcdefgh"]), CFG)
    assert few["w"].iloc[0] == many["w"].iloc[0] == DEFAULT_LINK_KEYS["payment_fingerprint"]
    assert ips["w"].iloc[0] == pytest.approx(DEFAULT_LINK_KEYS["ip"] / math.log2(1 + 8))


def test_pair_evidence_sums_each_pair_and_key_once() -> None:
    # Pairs counted the slow way: every pair sharing a value held by at most pair_limit
    # accounts, and neighbours in id order for a more widely held value.
    rng = np.random.default_rng(7)
    rows = [
        (f"acc{a:02d}", key, f"{key}-{v}")
        for key, accounts, values, most in (
            ("ip", 40, 60, 3),
            ("user_agent", 40, 2, 2),
            ("payment_fingerprint", 40, 25, 1),
        )
        for a in range(accounts)
        for v in rng.choice(values, rng.integers(1, most + 1), replace=False)
    ]
    data = sv(rows, spread={"acc03": 900, "acc07": 5000})
    # A pair can be an edge only with this much evidence besides a fully synchronised timing.
    cfg = replace(CFG, pair_limit=8, keys={**CFG.keys, SYNC_KEY: 1.0})
    expected: dict[tuple[str, str, str], float] = {}
    for (key, _), group in data.groupby(["key", "value"]):
        group = group.sort_values("account_id")
        idf = 1.0 if key in cfg.flat_keys else math.log2(1 + group["accounts"].iloc[0])
        damp = dict(
            zip(
                group["account_id"],
                np.sqrt(np.maximum(1, group["held"] / cfg.value_spread)),
                strict=True,
            )
        )
        ids = list(group["account_id"])
        pairs = (
            [(x, y) for i, x in enumerate(ids) for y in ids[i + 1 :]]
            if len(ids) <= cfg.pair_limit
            else list(itertools.pairwise(ids))
        )
        for x, y in pairs:
            w = cfg.keys[key] / idf / (damp[x] * damp[y])
            expected[(x, y, key)] = expected.get((x, y, key), 0.0) + w
    got = pair_evidence(data, cfg)
    assert not got.duplicated(["a", "b", "key"]).any()
    assert (got["a"] < got["b"]).all()
    assert {(a, b, k): w for a, b, k, w in got.itertuples(index=False)} == pytest.approx(expected)
    # Pruned: the pairs whose capped evidence over all keys could still make an edge.
    per_pair: dict[tuple[str, str], float] = {}
    for (x, y, key), w in expected.items():
        capped = min(w, cfg.keys[key] * cfg.key_cap)
        per_pair[(x, y)] = per_pair.get((x, y), 0.0) + capped
    floor = min(cfg.edge_weight, cfg.weak_edge_weight) - 1.0
    strong = {pair for pair, total in per_pair.items() if total >= floor}
    pruned = pair_evidence(data, cfg, prune=True)
    assert 0 < len(strong) < len(per_pair)
    assert set(zip(pruned["a"], pruned["b"], strict=True)) == strong
    assert len(pruned) == sum(1 for x, y, _ in expected if (x, y) in strong)
    held = data.groupby("value")["account_id"].size()
    assert (held <= cfg.pair_limit).any() and (held > cfg.pair_limit).any()  # both kinds


def test_infrastructure_values_are_ignored() -> None:
    members = [f"h{i}" for i in range(4)]
    data = sv(ring(members))
    data.loc[data["key"] == "payment_fingerprint", "accounts"] = 5000  # a "card" everyone has
    crowded = LinkingConfig(keys=dict(DEFAULT_LINK_KEYS), max_key_accounts=200)
    assert {
        k for k in pair_evidence(data[data["accounts"] <= crowded.max_key_accounts], crowded)["key"]
    } == {"ip", "ip24"}


def test_campaign_score_grows_with_members() -> None:
    small, big = [f"s{i}" for i in range(3)], [f"b{i}" for i in range(10)]
    other = [
        (a, k, v.replace("card-1", "card-2").replace("203.0.113", "198.18.0"))
        for a, k, v in ring(big)
    ]
    camps = {
        len(c.account_ids): c
        for c in link_accounts(sv(ring(small) + other), scores(small + big, 0.3), CFG)
    }
    assert camps[10].score > camps[3].score > 0.3


def templates(members: list[str], n: int = 12) -> list[tuple[str, str, str]]:
    """Members wrapping their prompts in the same public templates, nothing else shared."""
    return [(m, k, f"{k} template {i}") for m in members for k in TEMPLATE_KEYS for i in range(n)]


def mix_of(groups: dict[tuple[int, ...], list[str]]) -> pd.DataFrame:
    """Sampled prompts per capability (columns) for each account (rows)."""
    rows = {a: counts for counts, ids in groups.items() for a in ids}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["coding", "math", "other"])


def test_shared_templates_do_not_merge_accounts_harvesting_different_things() -> None:
    coders, maths = [f"c{i}" for i in range(6)], [f"m{i}" for i in range(6)]
    ids = coders + maths
    data = sv(templates(ids))
    one = link_accounts(data, scores(ids, 0.9), CFG, flagged=set(ids))
    assert [c.account_ids for c in one] == [sorted(ids)]
    same = mix_of({(300, 300, 100): ids})
    alike = link_accounts(data, scores(ids, 0.9), CFG, flagged=set(ids), mix=same)
    assert [c.account_ids for c in alike] == [sorted(ids)]
    apart = mix_of({(500, 100, 100): coders, (100, 500, 100): maths})
    split = link_accounts(data, scores(ids, 0.9), CFG, flagged=set(ids), mix=apart)
    assert sorted(c.account_ids for c in split) == [coders, maths]
    # a shared card is infrastructure: templates are not needed for that edge, so it stands
    card = sv(templates(ids) + [(a, "payment_fingerprint", "card-9") for a in ids])
    paid = link_accounts(card, scores(ids, 0.9), CFG, flagged=set(ids), mix=apart)
    assert [c.account_ids for c in paid] == [sorted(ids)]


def test_capability_mixes_differ_only_when_significant_and_large() -> None:
    cfg = LinkingConfig(keys={}, mix_max_p=1e-4, mix_min_distance=0.05)
    a = np.array([[8, 2, 0], [400, 100, 0], [40000, 10000, 0], [0, 0, 0]])
    b = np.array([[2, 8, 0], [100, 400, 0], [41000, 9000, 0], [100, 400, 0]])
    # 10 prompts prove nothing; 500 do; 50,000 make a 2-point drift significant but small;
    # an account without sampled prompts is not evidence either way
    assert mixes_differ(a, b, cfg).tolist() == [False, True, False, False]


def test_an_account_with_few_edges_into_a_big_campaign_joins_it() -> None:
    members = [f"h{i:02d}" for i in range(40)]
    rows = [(m, "payment_fingerprint", "card-1") for m in members]
    # s shares three addresses with each of two members: two edges, both at the weak bar
    rows += [(a, "ip", f"192.0.2.{i}") for a in ("s", "h00") for i in range(3)]
    rows += [(a, "ip", f"198.51.100.{i}") for a in ("s", "h01") for i in range(3)]
    ids = [*members, "s"]
    camps = link_accounts(sv(rows), scores(ids, 0.9), CFG, flagged=set(ids))
    assert [c.account_ids for c in camps] == [sorted(ids)]


# -- timing synchrony and release reactions ---------------------------------------------

START = pd.Timestamp("2026-03-02", tz="UTC")
SYNC_CFG = LinkingConfig(keys=dict(DEFAULT_LINK_KEYS), edge_weight=5.0, weak_edge_weight=1.5)


def exchanges(rows: list[tuple[str, float, str]]) -> Any:
    """An exchanges table from (account, seconds since START, model)."""
    df = pd.DataFrame(rows, columns=["account_id", "s", "model"])
    df["ts"] = (START + pd.to_timedelta(df.pop("s").round(3), unit="s")).astype(
        "datetime64[us, UTC]"
    )
    return ibis.memtable(df)


def diurnal_minutes(
    rng: np.random.Generator, days: int, hours: range, per_hour: int
) -> list[float]:
    """Independent random times: ``per_hour`` in each of ``hours`` on every day."""
    return [
        d * 86400 + h * 3600 + float(rng.uniform(0, 3600))
        for d in range(days)
        for h in hours
        for _ in range(per_hour)
    ]


def background(rng: np.random.Generator, n: int = 30) -> list[tuple[str, float, str]]:
    """Ordinary users whose activity sets the population's minute-of-hour profile."""
    return [(f"u{i}", s, "m1") for i in range(n) for s in diurnal_minutes(rng, 5, range(8, 20), 2)]


def all_pairs(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame([(a, b) for a in ids for b in ids if a < b], columns=["a", "b"])


def test_orchestrated_accounts_are_synchronised_and_linked() -> None:
    rng = np.random.default_rng(1)
    bots = ["o1", "o2", "o3", "o4"]
    rows = background(rng)
    # One orchestrator: in each working hour it fires at a few random moments, and every
    # account it drives sends a request within seconds of each.
    for d in range(5):
        for h in range(8, 20):
            for moment in rng.uniform(0, 3500, 3):
                rows += [
                    (b, d * 86400 + h * 3600 + moment + rng.uniform(0, 20), "m1") for b in bots
                ]
    sync = timing_synchrony(exchanges(rows), all_pairs(bots), SYNC_CFG)
    assert len(sync) == 6  # every pair of the four
    assert (sync["sync"] > 0.5).all() and (sync["observed"] > 5 * sync["expected"]).all()
    # Accounts flagged on their own but sharing only an ASN are grouped by their timing.
    asn = sv([(b, "asn", "64500") for b in bots])
    with_sync = pd.concat(
        [pair_evidence(asn, SYNC_CFG), sync[["a", "b", "key", "w"]]], ignore_index=True
    )
    assert link_accounts(asn, scores(bots, 0.9), SYNC_CFG, flagged=set(bots)) == []
    camps = link_accounts(asn, scores(bots, 0.9), SYNC_CFG, flagged=set(bots), pairs=with_sync)
    assert len(camps) == 1 and camps[0].account_ids == bots
    assert SYNC_KEY in camps[0].shared
    # Unflagged accounts need more: a shared system prompt and /24 plus the timing.
    ring_rows = sv(
        [(b, "system_prompt_hash", "sp1") for b in bots]
        + [(b, "ip24", "198.51.100.0/24") for b in bots]
        + [(b, "ip", f"198.51.100.{i}") for b in bots for i in range(5)]
    )
    evidence = pair_evidence(ring_rows, SYNC_CFG)
    assert link_accounts(ring_rows, scores(bots, 0.3), SYNC_CFG) == []
    with_sync = pd.concat([evidence, sync[["a", "b", "key", "w"]]], ignore_index=True)
    camps = link_accounts(ring_rows, scores(bots, 0.3), SYNC_CFG, pairs=with_sync)
    assert len(camps) == 1 and camps[0].account_ids == bots


def test_same_daily_pattern_with_independent_timing_is_not_synchronised() -> None:
    # Same time zone, same working hours, same volume every hour: only the minutes differ.
    rng = np.random.default_rng(2)
    people = [f"p{i}" for i in range(6)]
    rows = background(rng) + [
        (p, s, "m1") for p in people for s in diurnal_minutes(rng, 5, range(9, 18), 12)
    ]
    assert timing_synchrony(exchanges(rows), all_pairs(people), SYNC_CFG).empty


def test_students_behind_one_nat_are_not_linked() -> None:
    rng = np.random.default_rng(3)
    students = [f"s{i:02d}" for i in range(40)]
    # Same campus, same class hours (busy at the same hours), one NAT address, one SDK.
    rows = background(rng) + [
        (s, t, "m1") for s in students for t in diurnal_minutes(rng, 5, range(10, 16), 4)
    ]
    pairs = all_pairs(students)
    sync = timing_synchrony(exchanges(rows), pairs, SYNC_CFG)
    # z >= 5 over 780 pairs: a chance excess that large is rarer than 1 in a million.
    assert sync.empty
    nat = sv(
        [(s, "ip", "192.0.2.1") for s in students] + [(s, "user_agent", "sdk") for s in students]
    )
    assert link_accounts(nat, scores(students, 0.9), SYNC_CFG, flagged=set(students)) == []


def test_a_crowded_minute_is_explained_by_the_population() -> None:
    rng = np.random.default_rng(4)
    # Cron jobs everywhere fire at the top of the hour: two more doing so are not a campaign.
    crons = [f"c{i}" for i in range(20)]
    rows = [
        (c, d * 86400 + h * 3600 + rng.uniform(0, 30), "m1")
        for c in crons
        for d in range(5)
        for h in range(24)
    ]
    rows += [(f"u{i}", s, "m1") for i in range(5) for s in diurnal_minutes(rng, 5, range(24), 1)]
    sync = timing_synchrony(exchanges(rows), all_pairs(crons[:4]), SYNC_CFG)
    assert sync.empty
    # The same two schedules at a minute nobody else uses would be synchronised.
    odd = [(c, s + 1234.0, m) for c, s, m in rows if c in ("c0", "c1")]
    rest = [r for r in rows if r[0] not in ("c0", "c1")]
    assert len(timing_synchrony(exchanges(rest + odd), all_pairs(["c0", "c1"]), SYNC_CFG)) == 1


def test_synchrony_is_compared_only_where_it_can_decide_an_edge() -> None:
    pairs = pd.DataFrame(
        {"a": ["a", "a", "c"], "b": ["b", "c", "d"], "key": "ip", "w": [2.5, 0.4, 0.4]}
    )
    cand = synchrony_candidates(pairs, SYNC_CFG, flagged={"c", "d"})
    # a-b: 2.5 + 3.0 could reach 5.0; a-c cannot; c-d are both flagged (1.5 is within reach)
    assert sorted(zip(cand["a"], cand["b"], strict=True)) == [("a", "b"), ("c", "d")]
    # past the cap, the pairs with the most other evidence are the ones compared
    capped = synchrony_candidates(pairs, replace(SYNC_CFG, sync_max_pairs=1), {"c", "d"})
    assert list(zip(capped["a"], capped["b"], strict=True)) == [("a", "b")]


def release_rows() -> list[tuple[str, float, str]]:
    hour = 3600.0
    rows = [(a, s * hour, "old") for a in "wxyzv" for s in range(0, 120, 3)]
    rows += [("v", 2 * hour, "early")]  # in use from the log's start: not a release
    rows += [("w", 3 * hour, "early")]
    rows += [("x", 0.5 * hour, "soon"), ("y", 20 * hour, "soon")]  # < 1 day in: not a release
    release = 72 * hour
    rows += [("v", release, "new")]  # the model's first use anywhere
    rows += [("w", release + 1 * hour, "new"), ("x", release + 2.5 * hour, "new")]
    rows += [("y", release + 30 * hour, "new"), ("z", release + 80 * hour, "new")]
    return rows


def test_release_reaction_groups_accounts_switching_within_hours() -> None:
    cfg = LinkingConfig(keys={"release_reaction": 1.0}, edge_weight=5.0, weak_edge_weight=1.5)
    got = shared_values(exchanges(release_rows()), None, list("vwxyz"), cfg)
    assert set(got["key"]) == {"release_reaction"}
    values = got.groupby("account_id")["value"].apply(set).to_dict()
    # v, w and x reacted within hours of each other; y a day later; z after the horizon
    assert values["v"] & values["w"] & values["x"]
    assert "y" not in values or not (values["y"] & values["w"])
    assert "z" not in values
    assert all(v.startswith("new first used ") for vs in values.values() for v in vs)
    # weak alone: three accounts sharing their reaction are no campaign, even when flagged
    ids = list("vwxyz")
    assert link_accounts(got, scores(ids, 0.9), cfg, flagged=set(ids)) == []
    # ... but it adds to other evidence: with two shared addresses the three are grouped
    both = LinkingConfig(keys={"release_reaction": 1.0, "ip": 1.0}, weak_edge_weight=1.5)
    more = pd.concat([got, sv([(a, "ip", f"192.0.2.{i}") for a in ids for i in range(2)])])
    assert (
        link_accounts(
            sv([(a, "ip", f"192.0.2.{i}") for a in ids for i in range(2)]),
            scores(ids, 0.9),
            both,
            flagged=set(ids),
        )
        == []
    )
    camps = link_accounts(more, scores(ids, 0.9), both, flagged=set(ids))
    assert [c.account_ids for c in camps] == [["v", "w", "x"]]


def test_release_reaction_ignores_models_in_use_from_the_start() -> None:
    cfg = LinkingConfig(keys={"release_reaction": 1.0}, release_min_delay_hours=100.0)
    # with the release threshold past the new model's arrival, nothing is a release
    assert shared_values(exchanges(release_rows()), None, list("vwxyz"), cfg).empty


@pytest.mark.parametrize(
    ("linking", "message"),
    [
        ({"sync_bucket_seconds": 7}, "linking.sync_bucket_seconds must divide 3600"),
        ({"sync_bucket_seconds": 0}, "linking.sync_bucket_seconds"),
        ({"release_window_hours": 2.5}, "linking.release_window_hours must be a whole number"),
        ({"sync_min_z": -1}, "linking.sync_min_z"),
        ({"keys": {"timing_sync": -1.0}}, "linking.keys.timing_sync"),
    ],
)
def test_linking_config_errors_name_the_key(linking: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy({"detectors": {"peer_profile": {}}, "linking": linking})


def test_default_policy_keys_release_reactions_and_leaves_synchrony_off() -> None:
    # Synchrony is off by default until its join is shown bounded on big logs (the docs).
    cfg = load_policy().linking
    assert cfg.keys["release_reaction"] > 0 and cfg.keys[SYNC_KEY] == 0
    assert 3600 % cfg.sync_bucket_seconds == 0
    pairs = pd.DataFrame({"a": ["x"], "b": ["y"], "key": ["ip"], "w": [9.0]})
    assert synchrony_candidates(pairs, cfg).empty


@pytest.mark.parametrize("orchestrated", [0.0, 0.8])
def test_simulated_orchestrator_is_what_synchrony_finds(
    orchestrated: float, tmp_path: Path
) -> None:
    spec = CampaignSpec("orch", "minimax_like", accounts=6, daily=210.0, orchestrated=orchestrated)
    simulate(tmp_path, seed=11, scale="tiny", scenario=Scenario(campaigns=(spec,)))
    truth = pd.read_parquet(tmp_path / "truth_accounts.parquet")
    bots = sorted(truth.loc[truth["campaign_id"] == "orch", "account_id"])
    # the busiest benign accounts: the likeliest to overlap with anyone by chance
    t = ibis.read_parquet(tmp_path / "exchanges.parquet")
    busy = t.group_by("account_id").aggregate(n=t.count()).order_by(ibis.desc("n")).limit(60)
    others = [a for a in busy.execute()["account_id"] if a not in set(bots)][:30]
    sync = timing_synchrony(t, all_pairs(bots + others), SYNC_CFG)
    inside = sync["a"].isin(bots) & sync["b"].isin(bots)
    assert not (~inside).any()  # nobody outside the campaign is synchronised with anyone
    if orchestrated:
        assert inside.sum() >= 10  # of the 15 pairs of the six accounts
    else:
        assert inside.sum() == 0


def test_staged_prompt_edges_match_the_engine_and_give_the_same_templates(tmp_path: Path) -> None:
    """Staging stores each prompt's length and edges once; every stage that reads them must
    see exactly what the engine would cut from the prompt, in any script."""
    from distillguard import prompt_edges
    from distillguard.engine import EngineConfig, connect, parquet_glob
    from distillguard.ingest import stage_inputs
    from tests.conftest import row, write_jsonl

    wrapper = "Solve the following and show every reasoning step you take: "
    topics = ["数列的通项公式是什么，请证明", "👍🏽 emoji inside 👍🏽", "an ordinary question"]
    rows = []
    for i in range(36):
        acct = "abc"[i % 3]
        prompt = f"{wrapper}{topics[i % 3]} #{i}" + ("？" * (i % 5))
        rows.append(row(i, account_id=acct, prompt=prompt))
    rows += [row(100, prompt=""), row(101, prompt="short"), row(102, prompt="é" * 45)]
    staged = stage_inputs(
        [write_jsonl(tmp_path / "in.jsonl", rows)], tmp_path / "work", tmp_path / "q.jsonl"
    )
    con = connect(EngineConfig(temp_dir=tmp_path / "spill"))
    t = con.read_parquet(parquet_glob(staged.exchanges_path))
    got = t.select(
        t[prompt_edges.CHARS],
        t[prompt_edges.HEAD],
        t[prompt_edges.TAIL],
        n=t.prompt.length(),
        head=t.prompt.left(prompt_edges.EDGE_CHARS),
        tail=t.prompt.right(prompt_edges.EDGE_CHARS),
    ).to_pandas()
    assert len(got) == len(rows)
    assert (got[prompt_edges.CHARS] == got["n"]).all()
    assert (got[prompt_edges.HEAD] == got["head"]).all()
    assert (got[prompt_edges.TAIL] == got["tail"]).all()

    cfg = replace(CFG, keys={"prompt_prefix": 0.5, "prompt_suffix": 0.5})
    plain = t.drop(prompt_edges.CHARS, prompt_edges.HEAD, prompt_edges.TAIL)
    cols = ["account_id", "key", "value", "accounts", "held"]
    a = shared_values(t, None, list("abc"), cfg).sort_values(cols).reset_index(drop=True)
    b = shared_values(plain, None, list("abc"), cfg).sort_values(cols).reset_index(drop=True)
    assert set(a["key"]) == {"prompt_prefix"}  # the wrapper; endings are all different
    assert set(a["account_id"]) == set("abc")
    pd.testing.assert_frame_equal(a[cols], b[cols])


COMMON_OPENING = "Could you please help me with the following question about this: "
WRAPPER = "SYSTEM-7 HARVEST WRAPPER. Answer with full derivation, then list: "


def prompts_table(rows: list[tuple[str, str]]) -> Any:
    """An exchanges table from (account, prompt) pairs."""
    return ibis.memtable(
        pd.DataFrame(
            {
                "exchange_id": [f"e{i}" for i in range(len(rows))],
                "account_id": [a for a, _ in rows],
                "prompt": [p for _, p in rows],
            }
        )
    )


def test_templates_everyone_uses_are_left_out_before_counting() -> None:
    """A prefix the sample already sees in more than ``max_key_accounts`` accounts would
    count nothing; it must not become a row per account that uses it."""
    from distillguard.linking import _template_uses

    common, rare = COMMON_OPENING, WRAPPER
    rows = [(f"u{i}", f"{common}topic {i} and more {j}") for i in range(6) for j in range(3)]
    rows += [(a, f"{rare}item {a}{j} with details") for a in "ab" for j in range(4)]
    t = prompts_table(rows)
    cfg = replace(CFG, max_key_accounts=4, template_min_prompts=5)
    (part,) = _template_uses(t, ["prompt_prefix"], cfg)
    got = part.to_pandas()
    assert set(got["account_id"]) == {"a", "b"}
    assert got["value"].str.startswith("system-0 harvest").all()
    wide = _template_uses(t, ["prompt_prefix"], replace(cfg, max_key_accounts=10))[0].to_pandas()
    assert set(wide["account_id"]) == {*(f"u{i}" for i in range(6)), "a", "b"}
    # ... unless most of its users are flagged: then it may be a big campaign's wrapper.
    users = {f"u{i}" for i in range(6)}
    (crowd,) = _template_uses(t, ["prompt_prefix"], cfg, flagged=users - {"u0", "u1"})
    assert set(crowd.to_pandas()["account_id"]) == users | {"a", "b"}
    (few,) = _template_uses(t, ["prompt_prefix"], cfg, flagged={"u0", "u1"})
    assert set(few.to_pandas()["account_id"]) == {"a", "b"}


def test_on_a_sample_everyday_phrasing_is_told_from_a_wrapper_by_how_often_each_uses_it() -> None:
    """A third of the log is sampled: the everyday opening (400 accounts, once each) is
    seen once in each of ~130 accounts, under a 200-account bar as counted, but estimated
    near its 400; the wrapper is seen dozens of times in each of its 3 accounts."""
    from distillguard.linking import _template_uses

    common, rare = COMMON_OPENING, WRAPPER
    rows = [(f"u{i}", f"{common}topic {i} and more") for i in range(400)]
    rows += [(a, f"{rare}item {j} with details") for a in "abc" for j in range(150)]
    t = prompts_table(rows)
    cfg = replace(CFG, max_key_accounts=200, template_min_prompts=5, template_sample_rows=280)
    got = _template_uses(t, ["prompt_prefix"], cfg)[0].to_pandas()
    assert set(got["account_id"]) == set("abc")
    roomy = _template_uses(t, ["prompt_prefix"], replace(cfg, max_key_accounts=500))
    assert len(set(roomy[0].to_pandas()["account_id"])) == 403


def crowd_rows(
    members: list[str], values: list[str], rng: np.random.Generator, key: str = "prompt_prefix"
) -> list[dict[str, Any]]:
    """Crowd-value rows: each member uses most of ``values``, in its own proportions."""
    rows = []
    for m in members:
        for v in values:
            if rng.random() < 0.8:
                rows.append(
                    {"account_id": m, "key": key, "value": v, "uses": int(rng.integers(5, 50))}
                )
    return rows


def test_big_campaigns_are_grouped_by_their_crowd_values_and_kept_apart() -> None:
    rng = np.random.default_rng(0)
    a = [f"a{i:03d}" for i in range(60)]
    b = [f"b{i:03d}" for i in range(60)]
    rows = crowd_rows(a, [f"wrapper A{i}" for i in range(12)], rng)
    rows += crowd_rows(b, [f"wrapper B{i}" for i in range(12)], rng)
    # Both use the same proxy provider: shared infrastructure, not one operator.
    rows += crowd_rows(a + b, [f"asn {i}" for i in range(3)], rng, key="asn")
    crowd = ibis.memtable(pd.DataFrame(rows).assign(accounts=500))
    ids = a + b
    pair_campaign = Campaign("C-pair", a[:3], 0.9, {"payment_fingerprint": ["card-1"]})
    got = group_crowds([pair_campaign], crowd, set(ids), scores(ids, 0.9), CFG)
    assert sorted(c.account_ids for c in got) == [a, b]
    grouped = next(c for c in got if c.account_ids == a)
    assert grouped.shared["payment_fingerprint"] == ["card-1"]  # the pair campaign's evidence
    assert grouped.shared["prompt_prefix"][0].startswith("wrapper A")  # raw, shareable
    # One of A's accounts harvests something else entirely: taken out of A.
    mix = mix_of({(300, 300, 100): ids})
    mix.loc["a010"] = [50, 50, 600]
    split = group_crowds([pair_campaign], crowd, set(ids), scores(ids, 0.9), CFG, mix)
    assert sorted(c.account_ids for c in split) == [[x for x in a if x != "a010"], b]
    # No crowd values, or too few per account to compare: the campaigns stay as they were.
    assert group_crowds([pair_campaign], None, set(ids), scores(ids, 0.9), CFG) == [pair_campaign]
    one_each = ibis.memtable(pd.DataFrame(rows).assign(accounts=500).drop_duplicates("account_id"))
    same = group_crowds([pair_campaign], one_each, set(ids), scores(ids, 0.9), CFG)
    assert same == [pair_campaign]


def test_crowd_values_are_wide_values_held_mostly_by_flagged_accounts() -> None:
    flagged = {f"h{i}" for i in range(6)}
    rows = []
    for i in range(6):  # harvesters: one client string, one wrapper around many questions
        rows += [
            (
                f"h{i}",
                f"HARVEST WRAPPER: answer with every step shown. {'x' * 30} question {i}-{j}",
                "harvest-client/9",
            )
            for j in range(6)
        ]
    for i in range(10):  # the public: the official SDK, their own questions
        rows += [
            (
                f"u{i}",
                f"my own question number {i}-{j} about something {'y' * 40}",
                "official-sdk/1",
            )
            for j in range(3)
        ]
    rows += [("h0", f"another question {j} {'z' * 60}", "official-sdk/1") for j in range(2)]
    t = ibis.memtable(
        pd.DataFrame(
            {
                "exchange_id": [f"e{i}" for i in range(len(rows))],
                "account_id": [r[0] for r in rows],
                "prompt": [r[1] for r in rows],
                "user_agent": [r[2] for r in rows],
            }
        )
    )
    cfg = replace(
        CFG,
        keys={"user_agent": 0.3, "prompt_prefix": 0.5},
        max_key_accounts=4,
        template_min_prompts=5,
    )
    values = account_values(t, None, cfg, flagged=flagged)
    got = crowd_values(values, flagged, cfg).to_pyarrow().to_pandas()
    assert set(got["account_id"]) == flagged
    ua = got[got["key"] == "user_agent"]
    # the SDK is held by 11 accounts, 1 flagged: the public's, not a campaign's mark
    assert set(ua["value"]) == {"harvest-client/9"}
    assert (ua["accounts"] == 6).all() and (ua["uses"] == 6).all()
    prefix = got[got["key"] == "prompt_prefix"]
    assert set(prefix["value"]) == {"harvest wrapper: answer with every step "}
    assert len(prefix) == 6
    assert crowd_values(values, set(), cfg) is None


def test_an_unflagged_account_joins_a_crowd_campaign_only_on_its_own_prompts() -> None:
    from distillguard.scan import _crowd_joiners

    rng = np.random.default_rng(1)
    a = [f"a{i:03d}" for i in range(40)]
    wrappers = [f"wrapper A{i}" for i in range(12)]
    harvester, student, elsewhere, thin = "u-harvester", "u-student", "u-elsewhere", "u-thin"
    rows = crowd_rows(a, wrappers, rng)
    # Two accounts using the campaign's wrappers as its members do on average.
    rows += [
        {"account_id": u, "key": "prompt_prefix", "value": v, "uses": 20}
        for u in (harvester, student)
        for v in wrappers
    ]
    rows += crowd_rows([elsewhere], [f"wrapper B{i}" for i in range(12)], rng)
    rows += crowd_rows([thin], wrappers[:2], rng)  # too few values to compare
    crowd = ibis.memtable(pd.DataFrame(rows).assign(accounts=500))
    campaign = Campaign("C-a", list(a), 0.9)
    found = crowd_joiners(crowd, [campaign], CFG)
    assert set(found["account_id"]) == {harvester, student}
    assert (found["campaign_id"] == "C-a").all()
    # Its own sampled prompts decide: the harvester elicits in 12% of 200, the student in 1%.
    ids = [*a, harvester, student, elsewhere, thin]
    last = pd.DataFrame({"account_id": ids, "c_n": 200.0, "c_elicit": 24.0})
    last.loc[last["account_id"] == student, "c_elicit"] = 2.0
    mix = mix_of({(300, 300, 100): ids})
    volume = pd.Series(25.0 * np.exp(0.2 * rng.standard_normal(len(ids))), index=ids)
    pol = load_policy(None)
    joined = _crowd_joiners(crowd, [campaign], last, mix, volume, pol)
    assert list(joined["account_id"]) == [harvester]
    assert harvester in campaign.account_ids and student not in campaign.account_ids
    assert campaign.degree[harvester] == 0  # linked to nobody: checked again downstream
    # ... and so do how much it sends (ten times any member) and what it harvests.
    # A first sample too thin to show it (1 of 28) is read again; the second read decides.
    sparse = last.copy()
    sparse.loc[sparse["account_id"] == harvester, ["c_n", "c_elicit"]] = [28.0, 1.0]
    asked: list[list[str]] = []

    def reread(ids: list[str]) -> pd.DataFrame:
        asked.append(sorted(ids))
        k = [20.0 if i == harvester else 2.0 for i in ids]
        return pd.DataFrame({"account_id": ids, "c_n": 200.0, "c_elicit": k})

    none = _crowd_joiners(crowd, [Campaign("C-d", list(a), 0.9)], sparse, mix, volume, pol)
    assert none.empty
    again = Campaign("C-e", list(a), 0.9)
    got = _crowd_joiners(crowd, [again], sparse, mix, volume, pol, reread=reread)
    assert list(got["account_id"]) == [harvester]
    assert asked == [sorted([harvester, student])]  # only the ones short of the bar
    busy = volume.copy()
    busy[harvester] = 250.0
    assert _crowd_joiners(crowd, [Campaign("C-b", list(a), 0.9)], last, mix, busy, pol).empty
    mix.loc[harvester] = [20, 20, 600]
    assert _crowd_joiners(crowd, [Campaign("C-c", list(a), 0.9)], last, mix, volume, pol).empty


def test_operators_sharing_wrappers_and_proxies_are_told_apart_by_their_volume() -> None:
    rng = np.random.default_rng(2)
    busy = [f"b{i:03d}" for i in range(20)]  # about 200 exchanges a day each
    many = [f"m{i:03d}" for i in range(200)]  # about 25
    ids = busy + many
    # The same public wrappers through the same proxy provider, the same capability mix.
    rows = crowd_rows(ids, [f"wrapper {i}" for i in range(12)], rng)
    rows += crowd_rows(ids, [f"asn {i}" for i in range(3)], rng, key="asn")
    crowd = ibis.memtable(pd.DataFrame(rows).assign(accounts=500))
    mix = mix_of({(300, 300, 100): ids})
    noise = np.exp(0.25 * rng.standard_normal(len(ids)))
    volume = pd.Series(np.r_[np.full(20, 200.0), np.full(200, 25.0)] * noise, index=ids)
    args = ([], crowd, set(ids), scores(ids, 0.9), CFG, mix)
    assert [len(c.account_ids) for c in group_crowds(*args)] == [220]
    assert sorted(c.account_ids for c in group_crowds(*args, volume=volume)) == [busy, many]
    # An operator that spreads its accounts' volumes over a factor of 30, or runs half of
    # them at eight times the other half's rate, is not split on them.
    wide = pd.Series(np.exp(rng.uniform(np.log(10.0), np.log(300.0), len(ids))), index=ids)
    assert [len(c.account_ids) for c in group_crowds(*args, volume=wide)] == [220]
    halves = pd.Series(np.resize([200.0, 25.0], len(ids)) * noise, index=ids)
    assert [len(c.account_ids) for c in group_crowds(*args, volume=halves)] == [220]


def test_an_account_whose_thin_sample_leaves_its_mix_test_undecided_is_read_again() -> None:
    rng = np.random.default_rng(3)
    many = [f"m{i:03d}" for i in range(200)]
    few = ["s0", "s1", "s2"]  # another operator's, on the same wrappers and proxies
    ids = many + few
    rows = crowd_rows(ids, [f"wrapper {i}" for i in range(12)], rng)
    rows += crowd_rows(ids, [f"asn {i}" for i in range(3)], rng, key="asn")
    crowd = ibis.memtable(pd.DataFrame(rows).assign(accounts=500))
    # 60 prompts each: 15% coding and 60% math against 33% and 42% is a p of about 0.004.
    mix = mix_of({(20, 25, 15): many, (9, 36, 15): few})
    asked: list[list[str]] = []

    def reread(ids: list[str]) -> pd.DataFrame:
        asked.append(sorted(ids))
        return pd.DataFrame({"account_id": ids, "coding": 30, "math": 120, "other": 50})

    args = ([], crowd, set(ids), scores(ids, 0.9), CFG, mix)
    assert [len(c.account_ids) for c in group_crowds(*args)] == [203]
    got = group_crowds(*args, reread=reread)
    assert asked == [few]
    assert max(got, key=lambda c: len(c.account_ids)).account_ids == many
    assert not any(set(few) & set(c.account_ids) for c in got if len(c.account_ids) > 3)


def test_volumes_differ_by_a_factor_and_beyond_the_group_spread() -> None:
    centre, spread = volume_centres(np.log([10.0, 20.0, 40.0, np.nan]), np.zeros(4, dtype=int))
    assert np.isclose(centre[0], np.log(20.0))
    assert np.isclose(spread[0], 1.4826 * np.log(2.0))
    x = np.log([20.0, 59.0, 61.0, 1.0, np.nan])
    tight = volumes_differ(x, np.log(20.0), np.zeros(5), CFG)
    assert tight.tolist() == [False, False, True, True, False]
    wide = volumes_differ(x, np.log(20.0), np.full(5, 1.0), CFG)  # 3 sigmas: a factor of 20
    assert wide.tolist() == [False, False, False, False, False]
