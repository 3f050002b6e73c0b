"""Link flagged accounts into campaigns through what they share.

Accounts become nodes; two accounts are joined when they share an identifier (payment
fingerprint, /24, system prompt, user agent, ...). A value shared by very many accounts
across the whole population is infrastructure (a university NAT, a cloud region, the
official SDK's user agent), not evidence of common control, and is ignored. Connected
groups of two or more accounts are campaigns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import ibis
import igraph as ig
import pandas as pd


@dataclass
class Campaign:
    campaign_id: str
    account_ids: list[str]
    shared: dict[str, list[str]] = field(default_factory=dict)  # key -> shared values


def key_columns(t: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Ibis expressions for each link key, from the exchange table."""
    exprs: dict[str, Any] = {}
    for key in keys:
        if key == "ip24":
            # IPv4 /24; IPv6 is cut to its first four groups (a /64's worth of a host's range)
            ip = t.ip
            exprs[key] = ibis.cases(
                (ip.contains(":"), ip.split(":")[0:4].join(":")),
                else_=ip.re_replace(r"\.\d+$", ".0/24"),
            )
        elif key == "system_prompt_hash":
            sp = t.system_prompt
            exprs[key] = ibis.cases(
                (sp.length() >= 20, sp.hash().cast("string")), else_=ibis.null("string")
            )
        else:
            exprs[key] = t[key].cast("string")
    return exprs


def account_key_values(t: Any, keys: tuple[str, ...], accounts_table: Any | None) -> pd.DataFrame:
    """Distinct (account_id, key, value) over all exchanges (and the accounts table)."""
    exprs = key_columns(t, keys)
    parts = []
    for key, expr in exprs.items():
        part = t.select(account_id=t.account_id, key=ibis.literal(key), value=expr).distinct()
        parts.append(part.filter(part.value.notnull() & (part.value != "")))
    if accounts_table is not None and "payment_fingerprint" in keys:
        a = accounts_table
        parts.append(
            a.select(
                account_id=a.account_id,
                key=ibis.literal("payment_fingerprint"),
                value=a.payment_fingerprint.cast("string"),
            ).filter(a.payment_fingerprint.notnull())
        )
    if not parts:
        return pd.DataFrame(columns=["account_id", "key", "value"])
    union = ibis.union(*parts, distinct=True)
    df: pd.DataFrame = union.to_pyarrow().to_pandas()
    return df


def link_accounts(
    kv: pd.DataFrame, flagged: list[str], *, max_key_accounts: int, min_shared_keys: int = 1
) -> list[Campaign]:
    """Campaigns among ``flagged`` accounts from their shared key values."""
    if kv.empty or len(flagged) < 2:
        return []
    popularity = kv.groupby(["key", "value"])["account_id"].nunique()
    usable = popularity[(popularity >= 2) & (popularity <= max_key_accounts)].index
    flagged_set = set(flagged)
    sub = kv[kv["account_id"].isin(flagged_set)]
    sub = sub.set_index(["key", "value"])
    sub = sub[sub.index.isin(usable)].reset_index()
    index = {acc: i for i, acc in enumerate(flagged)}
    pair_keys: dict[tuple[int, int], set[tuple[str, str]]] = {}
    for (key, value), grp in sub.groupby(["key", "value"]):
        members = sorted(index[a] for a in grp["account_id"].unique())
        if len(members) < 2:
            continue
        hub = members[0]  # a star per value is enough for connectivity
        for other in members[1:]:
            pair_keys.setdefault((hub, other), set()).add((str(key), str(value)))
    edges = [pair for pair, ks in pair_keys.items() if len({k for k, _ in ks}) >= min_shared_keys]
    graph = ig.Graph(n=len(flagged), edges=edges)
    campaigns = []
    for comp in graph.connected_components():
        if len(comp) < 2:
            continue
        member_ids = sorted(flagged[i] for i in comp)
        shared: dict[str, set[str]] = {}
        comp_set = set(comp)
        for (a, b), ks in pair_keys.items():
            if a in comp_set and b in comp_set:
                for key, value in ks:
                    shared.setdefault(key, set()).add(value)
        digest = hashlib.sha256("\n".join(member_ids).encode()).hexdigest()[:12]
        campaigns.append(
            Campaign(
                f"C-{digest}", member_ids, {k: sorted(v)[:20] for k, v in sorted(shared.items())}
            )
        )
    campaigns.sort(key=lambda c: -len(c.account_ids))
    return campaigns
