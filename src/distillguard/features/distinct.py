"""Distinct values per account (IPs, /24s, user agents): one definition, batch and online.

These tell an account spread over many networks or clients (a harvester rotating proxies
and SDK strings, but also a reseller or a company whose staff share one key) from the
usual customer who calls from a few addresses with one or two SDK versions. They are
evidence, not a verdict on their own: honest heavy customers and resellers look spread
too, which is why the gateway's rules over them only corroborate other evidence.

The values are the link keys of ``distillguard.linking`` spelled the same way (the /24 of
an IPv4 address, the first four groups of an IPv6 one); null and empty values are not
values. ``account_distinct_counts`` counts them exactly over a log (the batch side);
``distinct_values`` gives one exchange's values (the gateway feeds them to its sketches).
``tests/test_gateway_state.py`` checks the two against each other over the gateway's log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import pandas as pd

# exchange column -> what the gateway's sketch and the feature are called
DISTINCT_KEYS = ("ip", "ip24", "user_agent")
DISTINCT_FEATURE_NAMES = ("distinct_ips", "distinct_ip24s", "distinct_user_agents")
FEATURE_OF = dict(zip(DISTINCT_KEYS, DISTINCT_FEATURE_NAMES, strict=True))


def ip24(ip: str) -> str:
    """The /24 (IPv4) or first four groups (IPv6), as ``linking.key_columns`` spells them."""
    if ":" in ip:
        return ":".join(ip.split(":")[0:4])
    head, sep, last = ip.rpartition(".")
    return f"{head}.0/24" if sep and last.isdigit() else ip


def distinct_values(row: Mapping[str, Any]) -> dict[str, str]:
    """One exchange's values for each key it has (missing and empty values left out)."""
    out: dict[str, str] = {}
    ip = row.get("ip")
    if ip:
        out["ip"] = ip
        out["ip24"] = ip24(ip)
    ua = row.get("user_agent")
    if ua:
        out["user_agent"] = ua
    return out


def distinct_columns(t: Any) -> dict[str, Any]:
    """Ibis expressions for each key's value, the batch spelling of ``distinct_values``."""
    ip = t.ip
    return {
        "ip": ip,
        "ip24": ibis.cases(
            (ip.contains(":"), ip.split(":")[0:4].join(":")),
            else_=ip.re_replace(r"\.\d+$", ".0/24"),
        ),
        "user_agent": t.user_agent,
    }


def account_distinct_counts(t: Any) -> pd.DataFrame:
    """Exact distinct values per account over an exchange table: ``account_id`` and one
    ``distinct_*`` column per key (0 where an account has none)."""
    frames = []
    for key, expr in distinct_columns(t).items():
        part = t.select(account_id=t.account_id, value=expr)
        part = part.filter(part.value.notnull() & (part.value != ""))
        counted = part.group_by("account_id").aggregate(count=part.value.nunique())
        df: pd.DataFrame = counted.to_pyarrow().to_pandas()
        frames.append(df.set_index("account_id")["count"].rename(FEATURE_OF[key]))
    accounts = t.select("account_id").distinct().to_pyarrow().to_pandas()["account_id"]
    out = pd.concat(frames, axis=1).reindex(accounts).fillna(0).astype("int64")
    out.index.name = "account_id"
    return out.reset_index()
