"""indicators.stix.json: valid STIX 2.1, no raw values, and partners' bundles imported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from stix2validator import ValidationOptions, validate_instance

from distillguard.errors import ConfigError, InputError
from distillguard.gateway.config import GatewayPolicy
from distillguard.gateway.ladder import Ladder
from distillguard.gateway.lists import read_scan_dir
from distillguard.intel import IntelList, import_bundle, resolve, write_gateway_lists
from distillguard.outputs.stix import build_bundle, key_id_of, write_stix
from tests.conftest import traffic, write_jsonl

KEY = b"shared-between-two-providers-0123"
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def campaign(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "campaign_id": "C-1",
        "accounts": 8,
        "account_ids": [f"h{i}" for i in range(8)],
        "exchanges": 3840,
        "first_seen": T0,
        "last_seen": datetime(2026, 11, 6, tzinfo=UTC),
        "score": 0.97,
        "capabilities": ["math"],
        "indicators": [
            "payment_fingerprint:card-shared",
            "ip24:203.0.113.0/24",
            "user_agent:python-httpx/0.27",
            "prompt_prefix:solve and show all reasoning steps: prob",
        ],
        "summary": "8 accounts sharing payment_fingerprint, ip24 made 3,840 exchanges.",
    }
    base.update(over)
    return base


def test_bundle_validates_as_stix_21() -> None:
    bundle = build_bundle([campaign(), campaign(campaign_id="C-2", capabilities=[])], KEY)
    result = validate_instance(json.loads(json.dumps(bundle)), ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.errors]
    # the one warning left is the validator asking for UUIDv4 where STIX 2.1 itself asks
    # observables for UUIDv5 (deterministic ids are how partners match)
    for w in result.warnings:
        assert "{103}" in str(w) and "x-distillguard-" in str(w), str(w)
    types = {o["type"] for o in bundle["objects"]}
    assert {"identity", "campaign", "indicator", "relationship", "extension-definition"} <= types
    assert {"x-distillguard-payment-fingerprint", "x-distillguard-template-signature"} <= types


def test_bundle_shares_no_raw_value() -> None:
    text = json.dumps(build_bundle([campaign()], KEY))
    for raw in ("card-shared", "203.0.113", "python-httpx", "reasoning steps", '"h3"'):
        assert raw not in text
    assert '"h3"' in json.dumps(build_bundle([campaign()], KEY, raw_ids=True))


def test_same_key_same_observables_other_key_none() -> None:
    a = build_bundle([campaign()], KEY, identity_name="provider A")
    b = build_bundle([campaign(campaign_id="X-9")], KEY, identity_name="provider B")
    c = build_bundle([campaign()], b"another-key-entirely-0123456789")

    def scos(bundle: dict[str, Any]) -> set[str]:
        return {o["id"] for o in bundle["objects"] if "keyed_hash" in o}

    assert scos(a) == scos(b)  # two providers, one key: the same values match
    assert not scos(a) & scos(c)
    assert {o["id"] for o in a["objects"] if o["type"] == "identity"} != {
        o["id"] for o in b["objects"] if o["type"] == "identity"
    }


def test_import_builds_watch_block_list(tmp_path: Path) -> None:
    path = tmp_path / "partner.json"
    write_stix(path, [campaign()], key=KEY)
    r = import_bundle(path, key=KEY)
    intel = r.intel
    assert r.added == len(intel.entries) == 4 + 8  # four indicators and eight accounts
    hit = intel.match("payment_fingerprint", " card-shared ", KEY)
    assert hit is not None and hit.action == "block" and hit.confidence == 97
    assert intel.match("payment_fingerprint", "card-other", KEY) is None
    watch = intel.match_request({"ip": "203.0.113.77", "user_agent": "python-httpx/0.27"}, KEY)
    assert [e.kind for e in watch] == ["ip24", "user_agent"] and {e.action for e in watch} == {
        "watch"
    }
    # saved and loaded back unchanged; a second import of the same bundle adds nothing
    out = tmp_path / "intel.json"
    intel.save(out)
    again = IntelList.load(out)
    assert again.entries == intel.entries
    assert import_bundle(path, again, key=KEY).added == 0


def test_low_confidence_only_watches(tmp_path: Path) -> None:
    path = tmp_path / "weak.json"
    write_stix(path, [campaign(score=0.3)], key=KEY)
    intel = import_bundle(path, key=KEY).intel
    assert intel.counts() == {"watch": 12}


def test_import_refuses_other_key_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "partner.json"
    write_stix(path, [campaign()], key=KEY)
    with pytest.raises(ConfigError, match="key id"):
        import_bundle(path, key=b"not-the-partners-key-0123456789")
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "bundle", "id": "bundle--nope", "objects": [{"type": 1}]}')
    with pytest.raises(InputError, match=r"broken\.json"):
        import_bundle(broken, key=KEY)
    notjson = tmp_path / "x.json"
    notjson.write_text("{")
    with pytest.raises(InputError, match="not JSON"):
        import_bundle(notjson, key=KEY)


def test_expired_and_foreign_indicators_skipped(tmp_path: Path) -> None:
    bundle = build_bundle([campaign()], KEY)
    for o in bundle["objects"]:
        if o["type"] == "indicator" and o["x_distillguard_kind"] == "ip24":
            o["valid_until"] = "2026-11-03T00:00:00.000Z"
        if o["type"] == "indicator" and o["x_distillguard_kind"] == "user_agent":
            o["pattern"] = "[ipv4-addr:value = '198.51.100.1']"
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(bundle))
    r = import_bundle(path, key=KEY, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert (r.skipped_expired, r.skipped_foreign) == (1, 1)
    assert {e.kind for e in r.intel.entries.values()} == {
        "payment_fingerprint",
        "prompt_prefix",
        "account",
    }


def test_resolved_accounts_load_into_the_gateway(tmp_path: Path) -> None:
    """A partner's bundle -> our matching accounts -> lists the gateway ladder acts on."""
    logs = write_jsonl(tmp_path / "ours.jsonl", traffic(benign=12, attackers=4, days=2))
    bundle = tmp_path / "partner.json"
    # the partner saw the card and the /24, but under *their* account ids
    write_stix(bundle, [campaign(account_ids=["p1", "p2", "p3"])], key=KEY)
    intel = import_bundle(bundle, key=KEY).intel
    matched = resolve(intel, [logs], key=KEY)
    block = set(matched.loc[matched["action"] == "block", "account_id"])
    assert block == {"h0", "h1", "h2", "h3"}
    assert not any(a.startswith("u") for a in block)  # benign users share no card or /24
    gw = GatewayPolicy()
    write_gateway_lists(
        matched, tmp_path / "lists", block_score=gw.ladder.block, watch_score=gw.ladder.watch
    )
    lists = read_scan_dir(tmp_path / "lists")
    ladder = Ladder(gw)
    assert ladder.decide("h0", lists.get("h0"), None, None).action == "block"
    assert ladder.decide("u1", lists.get("u1"), None, None).action == "allow"
    assert key_id_of(KEY) == intel.key_id
