"""Partners' STIX 2.1 bundles -> the watch/block list the gateway matches requests against.

A partner's bundle (``indicators.stix.json`` from their ``distillguard scan``, or any
bundle whose indicators use the same keyed-hash observables) carries only HMAC-SHA256
digests of shared values. Matching needs the same key (``DISTILLGUARD_INTEL_KEY``): a
bundle made with another key is refused, since none of its hashes could ever match.

Two outputs, both documented in ``docs/intel.md``:

- the **intel list** (JSON, ``distillguard-intel-list/1``): one entry per keyed hash with
  its kind, action (``watch`` or ``block``), campaign and source. :class:`IntelList`
  loads it and answers "does this raw value match" in one HMAC per value, for the
  gateway's request path (payment fingerprint, IP, /24, ASN, user agent, account id);
- with ``resolve`` (own logs given), the **lists directory**: ``accounts.parquet`` and
  ``campaigns.parquet`` in the scan's format, naming *our* accounts whose own values
  match, which ``distillguard serve --scan-dir DIR`` loads and hot-reloads today.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.errors import ConfigError, InputError
from distillguard.outputs.stix import PATTERN_RE, intel_key, key_id_of, keyed_hash

FORMAT = "distillguard-intel-list/1"
ListAction = Literal["watch", "block"]
RANK = {"watch": 0, "block": 1}
# A partner's word alone blocks only on what one controller owns: a payment card. A shared
# IP, ASN, user agent or template can be a NAT, a cloud or an SDK: watch those.
DEFAULT_BLOCK_KINDS = ("payment_fingerprint",)
# Kinds the gateway can hash from one request; templates need the engine (``resolve``).
REQUEST_KINDS = ("payment_fingerprint", "ip", "ip24", "asn", "user_agent", "account")


class IntelError(InputError):
    """A bundle or intel list that cannot be used."""


@dataclass(frozen=True)
class Entry:
    kind: str
    keyed_hash: str
    action: ListAction
    campaign: str | None = None
    campaign_name: str | None = None
    confidence: int | None = None
    source: str = ""
    valid_from: str | None = None
    valid_until: str | None = None
    value: str | None = None  # only when the sharer exported raw ids (``--raw-ids``)


@dataclass
class IntelList:
    key_id: str
    entries: dict[str, Entry] = field(default_factory=dict)  # by keyed hash
    sources: list[dict[str, Any]] = field(default_factory=list)

    def add(self, entry: Entry) -> bool:
        """Keep the stronger action when two sources list one hash; True if it changed."""
        prior = self.entries.get(entry.keyed_hash)
        if prior is not None and RANK[prior.action] >= RANK[entry.action]:
            return False
        self.entries[entry.keyed_hash] = entry
        return True

    def match(self, kind: str, value: str | None, key: bytes) -> Entry | None:
        """The entry for a raw value seen in our own traffic, if a partner listed it."""
        if value is None or value == "":
            return None
        hit = self.entries.get(keyed_hash(str(value), key, kind))
        return hit if hit is not None and hit.kind == kind else None

    def match_request(self, values: dict[str, str | None], key: bytes) -> list[Entry]:
        """Entries matching a request's values (keys from :data:`REQUEST_KINDS`)."""
        vals = dict(values)
        ip = vals.get("ip")
        if ip and "ip24" not in vals:
            vals["ip24"] = ip24(ip)
        hits = [self.match(kind, vals.get(kind), key) for kind in REQUEST_KINDS]
        return sorted((h for h in hits if h is not None), key=lambda e: -RANK[e.action])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries.values():
            out[e.action] = out.get(e.action, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key_id": self.key_id,
            "updated": _now(),
            "sources": self.sources,
            "entries": [
                {k: v for k, v in asdict(e).items() if v is not None}
                for e in sorted(self.entries.values(), key=lambda e: (e.kind, e.keyed_hash))
            ],
        }

    def save(self, path: Path) -> None:
        # written beside and renamed, so a gateway polling the file never reads half of it
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".intel-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> IntelList:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise IntelError(f"cannot read intel list: {err.strerror}", source=str(path)) from None
        except json.JSONDecodeError as err:
            raise IntelError(f"intel list is not JSON: {err}", source=str(path)) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IntelError(f"not a {FORMAT} file", source=str(path))
        out = cls(str(data["key_id"]), sources=list(data.get("sources", [])))
        names = set(Entry.__dataclass_fields__)
        for i, raw in enumerate(data.get("entries", [])):
            try:
                entry = Entry(**{k: v for k, v in raw.items() if k in names})
            except TypeError as err:
                raise IntelError(f"entry {i}: {err}", source=str(path)) from None
            if entry.action not in RANK:
                raise IntelError(f"entry {i}: unknown action {entry.action!r}", source=str(path))
            out.entries[entry.keyed_hash] = entry
        return out


def ip24(ip: str) -> str:
    """The /24 (IPv4) or first four groups (IPv6) as linking spells them."""
    if ":" in ip:
        return ":".join(ip.split(":")[0:4])
    head, _, _ = ip.rpartition(".")
    return f"{head}.0/24" if head else ip


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _expired(valid_until: str | None, now: datetime) -> bool:
    if not valid_until:
        return False
    try:
        stamp = datetime.fromisoformat(valid_until.replace("Z", "+00:00"))
    except ValueError:
        return False
    return stamp <= now


@dataclass
class ImportResult:
    intel: IntelList
    indicators: int = 0
    added: int = 0
    skipped_foreign: int = 0  # indicators that are not keyed-hash patterns
    skipped_expired: int = 0


def read_bundle(path: Path) -> dict[str, Any]:
    """The bundle as JSON, checked by the stix2 library (ids, timestamps, required fields)."""
    import stix2
    import stix2.exceptions

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise IntelError(f"cannot read bundle: {err.strerror}", source=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IntelError(f"bundle is not JSON: {err}", source=str(path)) from None
    if not isinstance(data, dict) or data.get("type") != "bundle":
        raise IntelError("not a STIX bundle (no top-level type 'bundle')", source=str(path))
    try:
        stix2.parse(data, allow_custom=True)
    except (stix2.exceptions.STIXError, ValueError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise IntelError(f"invalid STIX 2.1 bundle: {first}", source=str(path)) from None
    return data


def import_bundle(
    path: Path,
    intel: IntelList | None = None,
    *,
    key: bytes | None = None,
    block_kinds: Sequence[str] = DEFAULT_BLOCK_KINDS,
    min_block_confidence: int = 50,
    now: datetime | None = None,
) -> ImportResult:
    """Add a partner's indicators to ``intel`` (a new list if None).

    An indicator's action is ``block`` when its kind is in ``block_kinds`` and its
    confidence reaches ``min_block_confidence``, else ``watch``.
    """
    key = key if key is not None else intel_key()
    our_key = key_id_of(key)
    intel = intel if intel is not None else IntelList(our_key)
    if intel.key_id != our_key:
        raise ConfigError(
            f"the intel list was built with key id {intel.key_id}, the current key is {our_key}",
            field="DISTILLGUARD_INTEL_KEY",
        )
    data = read_bundle(path)
    objects = [o for o in data.get("objects", []) if isinstance(o, dict)]
    by_id = {o.get("id"): o for o in objects}
    sharer = next((o.get("name") for o in objects if o.get("type") == "identity"), None)
    scos = {o["keyed_hash"]: o for o in objects if "keyed_hash" in o and "id" in o}
    indicates: dict[str, str] = {}
    for o in objects:
        if o.get("type") == "relationship" and o.get("relationship_type") == "indicates":
            indicates[str(o.get("source_ref"))] = str(o.get("target_ref"))
    when = now or datetime.now(UTC)
    result = ImportResult(intel)
    for o in objects:
        if o.get("type") != "indicator":
            continue
        result.indicators += 1
        m = PATTERN_RE.match(str(o.get("pattern", "")).strip())
        if o.get("pattern_type") != "stix" or m is None:
            result.skipped_foreign += 1
            continue
        digest = m.group(2)
        sco = scos.get(digest, {})
        their_key = o.get("x_distillguard_key_id") or sco.get("key_id")
        if their_key is not None and their_key != our_key:
            raise ConfigError(
                f"bundle was hashed with key id {their_key}, the current key is {our_key}: "
                "agree on DISTILLGUARD_INTEL_KEY with the sharer (no hash could match)",
                source=str(path),
            )
        if _expired(o.get("valid_until"), when):
            result.skipped_expired += 1
            continue
        kind = str(o.get("x_distillguard_kind") or sco.get("kind") or "value")
        camp = by_id.get(indicates.get(str(o.get("id")), ""), {})
        conf_raw = o.get("confidence", camp.get("confidence"))
        confidence = int(conf_raw) if isinstance(conf_raw, int | float) else None
        strong = confidence is None or confidence >= min_block_confidence
        action: ListAction = "block" if kind in block_kinds and strong else "watch"
        entry = Entry(
            kind=kind,
            keyed_hash=digest,
            action=action,
            campaign=camp.get("id"),
            campaign_name=camp.get("name"),
            confidence=confidence,
            source=str(sharer or path.name),
            valid_from=o.get("valid_from"),
            valid_until=o.get("valid_until"),
            value=sco.get("value") if isinstance(sco.get("value"), str) else None,
        )
        result.added += intel.add(entry)
    intel.sources.append(
        {
            "bundle": str(data.get("id")),
            "file": path.name,
            "identity": sharer,
            "imported_at": _now(),
            "indicators": result.indicators - result.skipped_foreign - result.skipped_expired,
        }
    )
    return result


# -- matching our own accounts (the gateway's scan-dir lists) ---------------------------------


def _key_values(exchanges: Path, accounts: Path | None, kinds: set[str]) -> pd.DataFrame:
    """Distinct (account_id, kind, value) of our logs, with the linking definitions."""
    import ibis

    from distillguard.engine import connect, parquet_glob
    from distillguard.linking import key_columns
    from distillguard.policy import LINK_KEYS

    con = connect()
    t = con.read_parquet(parquet_glob(exchanges))
    link_kinds = tuple(k for k in LINK_KEYS if k in kinds)
    parts = []
    for kind, expr in key_columns(t, link_kinds).items():
        parts.append(t.select(account_id=t.account_id, kind=ibis.literal(kind), value=expr))
    if "account" in kinds:
        parts.append(
            t.select(account_id=t.account_id, kind=ibis.literal("account"), value=t.account_id)
        )
    if not parts:
        return pd.DataFrame(columns=["account_id", "kind", "value"])
    u = parts[0]
    for p in parts[1:]:
        u = u.union(p)
    u = u.filter(u.value.notnull() & (u.value != "")).distinct()
    frame: pd.DataFrame = u.to_pyarrow().to_pandas()
    if accounts is not None and "payment_fingerprint" in kinds:
        a = con.read_parquet(accounts)
        if "payment_fingerprint" in a.columns:
            pf = a.select(
                account_id=a.account_id,
                kind=ibis.literal("payment_fingerprint"),
                value=a.payment_fingerprint,
            ).filter(a.payment_fingerprint.notnull())
            frame = pd.concat([frame, pf.to_pyarrow().to_pandas()], ignore_index=True)
    con.disconnect()
    return frame


def resolve(
    intel: IntelList,
    logs: Sequence[str | Path],
    *,
    accounts: str | Path | None = None,
    key: bytes | None = None,
    work_dir: Path | None = None,
) -> pd.DataFrame:
    """Our accounts whose own values match the list: account_id, action, kind, campaign."""
    from distillguard.ingest import stage_inputs

    key = key if key is not None else intel_key()
    kinds = {e.kind for e in intel.entries.values()}
    cols = ["account_id", "action", "kinds", "campaigns", "sources"]
    if not kinds:
        return pd.DataFrame(columns=cols)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        staged = stage_inputs(
            list(logs), Path(tmp), Path(tmp) / "quarantine.jsonl", accounts=accounts
        )
        values = _key_values(staged.exchanges_path, staged.accounts_path, kinds)
    hits: dict[str, dict[str, Any]] = {}
    for acc, kind, value in values.itertuples(index=False):
        entry = intel.match(str(kind), str(value), key)
        if entry is None:
            continue
        h = hits.setdefault(
            str(acc),
            {
                "account_id": str(acc),
                "action": "watch",
                "kinds": set(),
                "campaigns": set(),
                "sources": set(),
            },
        )
        if RANK[entry.action] > RANK[h["action"]]:
            h["action"] = entry.action
        h["kinds"].add(entry.kind)
        h["sources"].add(entry.source)
        if entry.campaign:
            h["campaigns"].add(entry.campaign)
    rows = [
        {
            **h,
            "kinds": sorted(h["kinds"]),
            "campaigns": sorted(h["campaigns"]),
            "sources": sorted(h["sources"]),
        }
        for h in hits.values()
    ]
    return pd.DataFrame(rows, columns=cols).sort_values("account_id", ignore_index=True)


def write_gateway_lists(
    matched: pd.DataFrame, lists_dir: Path, *, block_score: float, watch_score: float
) -> None:
    """``accounts.parquet`` + ``campaigns.parquet`` as ``serve --scan-dir`` reads them.

    The gateway's ladder turns a listing's score into an action (and raises flagged
    accounts to ``[gateway.lists] flagged``), so a block entry gets the ladder's block
    score and a watch entry the watch score; ``campaign_id`` stays empty so the campaign
    floor (``degrade`` by default) does not turn a partner's watch into a degrade.
    """
    lists_dir.mkdir(parents=True, exist_ok=True)
    scores = [block_score if a == "block" else watch_score for a in matched["action"]]
    acc = pa.table(
        {
            "account_id": pa.array(matched["account_id"].astype(str).tolist(), pa.string()),
            "score": pa.array(scores, pa.float64()),
            "flagged": pa.array([True] * len(matched), pa.bool_()),
            "campaign_id": pa.array([None] * len(matched), pa.string()),
            "reasons": pa.array(
                [
                    [f"intel: {', '.join(k)} listed by {', '.join(s)}"]
                    for k, s in zip(matched["kinds"], matched["sources"], strict=True)
                ],
                pa.list_(pa.string()),
            ),
        }
    )
    camp = pa.table(
        {
            "campaign_id": pa.array([], pa.string()),
            "score": pa.array([], pa.float64()),
            "account_ids": pa.array([], pa.list_(pa.string())),
        }
    )
    # campaigns first, accounts last: the gateway reloads when either changes
    for name, table in (("campaigns.parquet", camp), ("accounts.parquet", acc)):
        tmp = lists_dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, lists_dir / name)


def import_files(
    bundles: Iterable[Path],
    out: Path,
    *,
    key: bytes | None = None,
    block_kinds: Sequence[str] = DEFAULT_BLOCK_KINDS,
    min_block_confidence: int = 50,
    replace: bool = False,
) -> tuple[IntelList, list[ImportResult]]:
    """Load ``out`` (unless ``replace``), add every bundle, save ``out``."""
    key = key if key is not None else intel_key()
    intel = IntelList.load(out) if out.exists() and not replace else IntelList(key_id_of(key))
    results = [
        import_bundle(
            b, intel, key=key, block_kinds=block_kinds, min_block_confidence=min_block_confidence
        )
        for b in bundles
    ]
    intel.save(out)
    return intel, results
