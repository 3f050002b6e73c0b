"""A STIX 2.1 bundle of campaigns and their indicators, safe to share.

Raw identifiers never leave: each shared value is an HMAC-SHA256 under a deployment key
(``DISTILLGUARD_INTEL_KEY``), so two providers that agree on a key can match indicators
without revealing IPs, payment fingerprints, prompts or account ids to each other.

What is in the bundle:

- one ``identity`` (who shares) and one ``extension-definition`` declaring the custom
  observables and the ``x_distillguard_*`` top-level properties (STIX 2.1's way of
  extending, so strict consumers know what they are looking at);
- per campaign a ``campaign`` object (size, score, capabilities as extension properties);
- per shared value an observable (``x-distillguard-payment-fingerprint``,
  ``x-distillguard-template-signature``, ``x-distillguard-network``,
  ``x-distillguard-account``) carrying only the keyed hash, an ``indicator`` whose pattern
  matches that hash, and an ``indicates`` relationship to the campaign.

Observable ids are UUIDv5 of the keyed hash (the STIX rule for SCOs), so two providers using
the same key produce the *same* observable id for the same value: that is the match.
SDO ids are stable per (sharer, campaign, value), so re-exporting updates, not duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_KEY = "distillguard-unkeyed"
KEY_ENV = "DISTILLGUARD_INTEL_KEY"
IDENTITY_ENV = "DISTILLGUARD_INTEL_IDENTITY"
# STIX 2.1 §2.9: the namespace for deterministic SCO identifiers.
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
EXTENSION_ID = "extension-definition--3c1c2b8e-5f0e-4d3a-9d7e-6b4f1a2c8e10"
EXTENSION_PROPERTIES = [
    "x_distillguard_key_id",
    "x_distillguard_kind",
    "x_distillguard_accounts",
    "x_distillguard_exchanges",
    "x_distillguard_score",
    "x_distillguard_capabilities",
]

# Which observable type carries which kind of shared value.
SCO_TYPES = {
    "payment_fingerprint": "x-distillguard-payment-fingerprint",
    "system_prompt_hash": "x-distillguard-template-signature",
    "prompt_prefix": "x-distillguard-template-signature",
    "prompt_suffix": "x-distillguard-template-signature",
    "ip": "x-distillguard-network",
    "ip24": "x-distillguard-network",
    "asn": "x-distillguard-network",
    "user_agent": "x-distillguard-network",
    "account": "x-distillguard-account",
}
FALLBACK_SCO_TYPE = "x-distillguard-keyed-value"
PATTERN_RE = re.compile(r"^\[(x-distillguard-[a-z0-9-]+):keyed_hash = '([0-9a-f]{64})'\]$")


def intel_key() -> bytes:
    return os.environ.get(KEY_ENV, DEFAULT_KEY).encode()


def key_id_of(key: bytes) -> str:
    """A public fingerprint of the key: partners check they hashed with the same one."""
    return hashlib.sha256(b"distillguard-key-id|" + key).hexdigest()[:16]


def canonical(kind: str, value: str) -> str:
    """The form that is hashed, so two providers' spellings of one value agree."""
    v = value.strip()
    if kind in ("ip", "ip24"):
        return v.lower()
    if kind in ("prompt_prefix", "prompt_suffix"):
        # the normalisation linking applies to templates (case, digits, whitespace)
        return re.sub(r"\s+", " ", re.sub(r"[0-9]+", "0", v.lower()))
    return v


def keyed_hash(value: str, key: bytes, kind: str | None = None) -> str:
    """HMAC-SHA256 of ``kind:value`` (canonical) under ``key``; bare ``value`` if no kind."""
    text = value if kind is None else f"{kind}:{canonical(kind, value)}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sco_type(kind: str) -> str:
    return SCO_TYPES.get(kind, FALLBACK_SCO_TYPE)


def sco_id(kind: str, digest: str) -> str:
    contributing = json.dumps({"keyed_hash": digest}, sort_keys=True, separators=(",", ":"))
    return f"{sco_type(kind)}--{uuid.uuid5(SCO_NAMESPACE, contributing)}"


def _sdo_id(kind: str, *parts: str) -> str:
    # Stable but UUIDv4-shaped (what STIX recommends for SDOs): a hash with the v4 bits set.
    digest = bytearray(hashlib.sha256("|".join((kind, *parts)).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return f"{kind}--{uuid.UUID(bytes=bytes(digest))}"


def _ts(value: Any) -> str:
    if value is None:
        dt = datetime.now(UTC)
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            import pandas as pd

            stamp = pd.Timestamp(value)
            if pd.isna(stamp):
                raise ValueError
            dt = stamp.to_pydatetime()
            dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        except (ValueError, TypeError):
            dt = datetime.now(UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _split(indicator: str) -> tuple[str, str]:
    kind, _, value = indicator.partition(":")
    return (kind, value) if value else ("value", kind)


def build_bundle(
    campaigns: list[dict[str, Any]],
    key: bytes | None = None,
    *,
    raw_ids: bool = False,
    identity_name: str | None = None,
    include_accounts: bool = True,
) -> dict[str, Any]:
    """The bundle as a JSON-ready dict. ``campaigns`` are rows of ``campaigns.parquet``."""
    key = key if key is not None else intel_key()
    key_id = key_id_of(key)
    name = identity_name or os.environ.get(IDENTITY_ENV) or f"distillguard deployment {key_id}"
    now = _ts(None)
    ext_ref = {EXTENSION_ID: {"extension_type": "toplevel-property-extension"}}
    identity_id = _sdo_id("identity", name, key_id)
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": now,
        "modified": now,
        "name": name,
        "description": "Provider sharing distillation-campaign indicators (distillguard).",
        "identity_class": "organization",
    }
    extension = {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "created_by_ref": identity_id,
        "name": "distillguard keyed-hash observables",
        "description": "Observables that carry only an HMAC-SHA256 of a shared value "
        "(payment fingerprint, template signature, network value, account id), and "
        "campaign properties (accounts, exchanges, score, capabilities).",
        "schema": "https://github.com/distillguard/distillguard/blob/main/docs/intel.md",
        "version": "1.0.0",
        "extension_types": ["new-sco", "toplevel-property-extension"],
        "extension_properties": EXTENSION_PROPERTIES,
    }
    objects: list[dict[str, Any]] = [identity, extension]
    seen_sco: set[str] = set()
    for c in campaigns:
        cid = _sdo_id("campaign", identity_id, str(c["campaign_id"]))
        score = float(c.get("score") or 0.0)
        objects.append(
            {
                "type": "campaign",
                "spec_version": "2.1",
                "id": cid,
                "created": now,
                "modified": now,
                "created_by_ref": identity_id,
                "name": f"distillation campaign {c['campaign_id']}",
                "description": str(c.get("summary") or ""),
                "first_seen": _ts(c.get("first_seen")),
                "last_seen": _ts(c.get("last_seen")),
                "objective": "model distillation (answer harvesting)",
                "confidence": max(0, min(100, round(score * 100))),
                "x_distillguard_accounts": int(c.get("accounts") or 0),
                "x_distillguard_exchanges": int(c.get("exchanges") or 0),
                "x_distillguard_score": round(score, 4),
                "extensions": ext_ref,
            }
        )
        capabilities = [str(x) for x in c.get("capabilities") or []]
        if capabilities:  # STIX forbids empty lists
            objects[-1]["x_distillguard_capabilities"] = capabilities
        values: list[tuple[str, str]] = [_split(str(i)) for i in c.get("indicators") or []]
        if include_accounts:
            values += [("account", str(a)) for a in c.get("account_ids") or []]
        done: set[str] = set()
        for kind, value in values:
            canon = f"{kind}:{canonical(kind, value)}"
            if canon in done:  # two spellings of one value are one indicator
                continue
            done.add(canon)
            objects += _indicator_objects(
                kind, value, key, key_id, identity_id, cid, c, score, raw_ids, seen_sco, now
            )
    return {
        "type": "bundle",
        "id": _sdo_id(
            "bundle", identity_id, now, *sorted(str(c["campaign_id"]) for c in campaigns)
        ),
        "objects": objects,
    }


def _indicator_objects(
    kind: str,
    value: str,
    key: bytes,
    key_id: str,
    identity_id: str,
    cid: str,
    c: dict[str, Any],
    score: float,
    raw_ids: bool,
    seen_sco: set[str],
    now: str,
) -> Iterable[dict[str, Any]]:
    digest = keyed_hash(value, key, kind)
    kind_type = sco_type(kind)
    sid = sco_id(kind, digest)
    out: list[dict[str, Any]] = []
    if sid not in seen_sco:
        seen_sco.add(sid)
        sco: dict[str, Any] = {
            "type": kind_type,
            "spec_version": "2.1",
            "id": sid,
            "kind": kind,
            "keyed_hash": digest,
            "key_id": key_id,
            "extensions": {EXTENSION_ID: {"extension_type": "new-sco"}},
        }
        if raw_ids and kind == "account":
            sco["value"] = value  # asked for: the partner shares an account id space
        out.append(sco)
    iid = _sdo_id("indicator", identity_id, str(c["campaign_id"]), kind, digest)
    what = "account" if kind == "account" else f"{kind.replace('_', ' ')}"
    out.append(
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": iid,
            "created": now,
            "modified": now,
            "created_by_ref": identity_id,
            "name": f"{what} of distillation campaign {c['campaign_id']} (keyed hash)",
            "description": f"HMAC-SHA256 of the {what} under key {key_id}; "
            "hash your own value the same way to match.",
            "indicator_types": ["malicious-activity"],
            "pattern_type": "stix",
            "pattern": f"[{kind_type}:keyed_hash = '{digest}']",
            "valid_from": _ts(c.get("first_seen")),
            "confidence": max(0, min(100, round(score * 100))),
            "x_distillguard_kind": kind,
            "x_distillguard_key_id": key_id,
            "extensions": {EXTENSION_ID: {"extension_type": "toplevel-property-extension"}},
        }
    )
    out.append(
        {
            "type": "relationship",
            "spec_version": "2.1",
            "id": _sdo_id("relationship", iid, cid),
            "created": now,
            "modified": now,
            "created_by_ref": identity_id,
            "relationship_type": "indicates",
            "source_ref": iid,
            "target_ref": cid,
        }
    )
    return out


def write_stix(
    path: Path,
    campaigns: list[dict[str, Any]],
    *,
    key: bytes | None = None,
    raw_ids: bool = False,
    identity_name: str | None = None,
) -> None:
    bundle = build_bundle(campaigns, key, raw_ids=raw_ids, identity_name=identity_name)
    path.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
