"""A STIX 2.1 bundle of campaigns and their indicators, safe to share.

Raw identifiers never leave: each shared value is an HMAC-SHA256 under a deployment key
(``DISTILLGUARD_INTEL_KEY``), so two providers that agree on a key can match indicators
without revealing IPs, payment fingerprints or prompts to each other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_NAMESPACE = uuid.UUID("6f1d2a0e-9d8c-4c1e-9a57-1b7c3d0f5e21")
DEFAULT_KEY = "distillguard-unkeyed"


def intel_key() -> bytes:
    return os.environ.get("DISTILLGUARD_INTEL_KEY", DEFAULT_KEY).encode()


def keyed_hash(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(_NAMESPACE, '|'.join(parts))}"


def _ts(value: Any) -> str:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        dt = datetime.now(UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_bundle(campaigns: list[dict[str, Any]], key: bytes | None = None) -> dict[str, Any]:
    key = key if key is not None else intel_key()
    key_id = hashlib.sha256(key).hexdigest()[:16]
    now = _ts(None)
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": _id("identity", "distillguard", key_id),
        "created": now,
        "modified": now,
        "name": "distillguard",
        "identity_class": "system",
    }
    objects: list[dict[str, Any]] = [identity]
    for c in campaigns:
        cid = _id("campaign", c["campaign_id"])
        objects.append(
            {
                "type": "campaign",
                "spec_version": "2.1",
                "id": cid,
                "created": now,
                "modified": now,
                "created_by_ref": identity["id"],
                "name": f"distillation campaign {c['campaign_id']}",
                "description": c["summary"],
                "first_seen": _ts(c["first_seen"]),
                "last_seen": _ts(c["last_seen"]),
                "objective": "model distillation (answer harvesting)",
            }
        )
        for indicator in c["indicators"]:
            kind, _, value = indicator.partition(":")
            digest = keyed_hash(f"{kind}:{value}", key)
            iid = _id("indicator", c["campaign_id"], indicator)
            objects.append(
                {
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": iid,
                    "created": now,
                    "modified": now,
                    "created_by_ref": identity["id"],
                    "name": f"{kind} shared by campaign accounts (keyed hash)",
                    "indicator_types": ["malicious-activity"],
                    "pattern_type": "stix",
                    "pattern": f"[x-distillguard-keyed-hash:value = '{digest}']",
                    "valid_from": _ts(c["first_seen"]),
                    "x_distillguard_kind": kind,
                    "x_distillguard_key_id": key_id,
                }
            )
            objects.append(
                {
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": _id("relationship", iid, cid),
                    "created": now,
                    "modified": now,
                    "relationship_type": "indicates",
                    "source_ref": iid,
                    "target_ref": cid,
                }
            )
    return {
        "type": "bundle",
        "id": _id("bundle", key_id, *sorted(c["campaign_id"] for c in campaigns)),
        "objects": objects,
    }


def write_stix(path: Path, campaigns: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(build_bundle(campaigns), indent=2) + "\n")
