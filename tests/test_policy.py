"""Policies are data: the packaged default is valid and mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.errors import ConfigError
from distillguard.policy import load_policy, parse_policy


def test_default_policy_loads() -> None:
    pol = load_policy()
    assert pol.detectors and 0 < pol.threshold < 1
    assert pol.source == "default.toml"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scan": {"threshold": 2}, "detectors": {"peer_profile": {}}}, "scan.threshold"),
        ({"scan": {"treshold": 0.5}, "detectors": {"peer_profile": {}}}, "unknown key 'treshold'"),
        ({"detectors": {"nope": {}}}, "unknown detector 'nope'"),
        ({"detectors": {}}, "enables no detector"),
        ({"detectors": {"peer_profile": {"params": {"bogus": 1}}}}, "bogus"),
        (
            {"detectors": {"peer_profile": {}}, "linking": {"keys": {"mac": 1.0}}},
            "unknown key .mac.",
        ),
        ({"detectors": {"peer_profile": {}}, "linking": {"keys": ["ip"]}}, "table of key = weight"),
        (
            {"detectors": {"peer_profile": {}}, "linking": {"edge_weight": -1}},
            "linking.edge_weight",
        ),
        ({"detectors": {"peer_profile": {}}, "scan": {"checkpoint": "5m"}}, "scan.checkpoint"),
    ],
)
def test_invalid_policies_name_the_problem(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(data, "p.toml")


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[scan\nthreshold = 0.5")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_policy(bad)
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "missing.toml")
