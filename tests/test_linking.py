"""Campaign linking: what counts as shared evidence, and what does not."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from distillguard.linking import LinkingConfig, link_accounts, pair_evidence
from distillguard.policy import DEFAULT_LINK_KEYS

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
