"""Synthetic network infrastructure and opaque identifiers.

Every population draws ids, IPs, ASNs and user agents from the same machinery, so no
artefact of the generator (a prefix, an id range, a numbering order) reveals a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Arr = npt.NDArray[Any]

RESIDENTIAL, MOBILE, CLOUD, UNIVERSITY, CORPORATE = 0, 1, 2, 3, 4

COUNTRIES = [
    "US",
    "IN",
    "BR",
    "DE",
    "GB",
    "JP",
    "FR",
    "KR",
    "CA",
    "SG",
    "ID",
    "MX",
    "NL",
    "AU",
    "ES",
    "IT",
    "PL",
    "TR",
    "VN",
    "PH",
    "HK",
    "TW",
    "AE",
    "NG",
    "SE",
]
COUNTRY_W = np.array(
    [30, 10, 6, 6, 6, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2, 2, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1, 1, 1]
)
COUNTRY_TZ = {
    "US": -6,
    "IN": 5,
    "BR": -3,
    "DE": 1,
    "GB": 0,
    "JP": 9,
    "FR": 1,
    "KR": 9,
    "CA": -5,
    "SG": 8,
    "ID": 7,
    "MX": -6,
    "NL": 1,
    "AU": 10,
    "ES": 1,
    "IT": 1,
    "PL": 1,
    "TR": 3,
    "VN": 7,
    "PH": 8,
    "HK": 8,
    "TW": 8,
    "AE": 4,
    "NG": 1,
    "SE": 1,
}
# Real cloud ASNs (public knowledge); the other ASNs are synthetic numbers.
CLOUD_ASNS = [16509, 15169, 8075, 14061, 24940, 45102, 132203, 16276, 63949, 20473, 396982, 13335]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def splitmix64(x: Arr) -> Arr:
    """A bijection on uint64: distinct inputs give distinct, random-looking outputs."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hex_ids(prefix: str, counter: Arr, salt: int, digits: int = 16) -> pa.Array:
    """Opaque ids ``prefix + hex`` from a counter; unique as long as counters are."""
    with np.errstate(over="ignore"):
        v = splitmix64(counter.astype(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF))
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nib = ((v[:, None] >> shifts[None, :]) & np.uint64(0xF)).astype(np.intp)
    raw = np.ascontiguousarray(_HEX[nib]).view(f"S{digits}").ravel()
    body = pc.cast(pa.array(raw, type=pa.binary()), pa.string())
    return pc.binary_join_element_wise(prefix, body, "") if prefix else body


def ip_strings(ips: Arr) -> pa.Array:
    u = ips.astype(np.uint32)
    parts = [
        pc.cast(pa.array((u >> np.uint32(s)) & np.uint32(255)), pa.string()) for s in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*parts, ".")


@dataclass(frozen=True)
class Infra:
    asn: Arr  # int64 ASN numbers
    kind: Arr  # int8 network kind
    country: Arr  # int country index
    base: Arr  # uint32 /16 base address
    user_agents: list[str]
    ua_kind: Arr  # 0 sdk, 1 browser, 2 agent framework, 3 http tool

    @staticmethod
    def build(seed: int) -> Infra:
        rng = np.random.default_rng([seed, 0xA5])
        kinds = np.concatenate(
            [
                np.full(260, RESIDENTIAL),
                np.full(50, MOBILE),
                np.full(len(CLOUD_ASNS), CLOUD),
                np.full(40, UNIVERSITY),
                np.full(60, CORPORATE),
            ]
        ).astype(np.int8)
        n = len(kinds)
        asn = rng.choice(np.arange(1000, 399_000), size=n, replace=False).astype(np.int64)
        cloud = np.flatnonzero(kinds == CLOUD)
        asn[cloud] = CLOUD_ASNS
        country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_W / COUNTRY_W.sum())
        # Distinct /16 blocks in public-looking space (first octet 11..223, skipping 127).
        firsts = np.array(
            [o for o in range(11, 224) if o not in (127, 169, 172, 192)], dtype=np.uint32
        )
        blocks = rng.choice(len(firsts) * 256, size=n, replace=False)  # distinct /16 per ASN
        base = (firsts[blocks // 256] << np.uint32(24)) | (
            (blocks % 256).astype(np.uint32) << np.uint32(16)
        )
        uas, ua_kind = _user_agents(rng)
        return Infra(asn, kinds, country, base, uas, ua_kind)

    def asn_index_of_ip(self, ips: Arr) -> Arr:
        """Index of the ASN owning each IP (every ASN owns one distinct /16)."""
        order = np.argsort(self.base)
        pos = np.searchsorted(self.base[order], ips.astype(np.uint32) & np.uint32(0xFFFF0000))
        return order[np.clip(pos, 0, len(order) - 1)]

    def asns_of(self, kind: int) -> Arr:
        return np.flatnonzero(self.kind == kind)

    def pick_asns(self, kinds: list[int], size: int, rng: np.random.Generator) -> Arr:
        """ASNs of the given kinds, weighted by popularity (a few big networks dominate)."""
        return _weighted(np.concatenate([self.asns_of(k) for k in kinds]), size, rng)

    def pick_uas(self, kinds: list[int], size: int, rng: np.random.Generator) -> Arr:
        """User agents of the given kinds, weighted by popularity (recent versions dominate)."""
        return _weighted(np.concatenate([self.ua_of(k) for k in kinds]), size, rng)

    def random_ips(self, asn_idx: Arr, rng: np.random.Generator) -> Arr:
        return (
            self.base[asn_idx] + rng.integers(256, 65_280, len(asn_idx)).astype(np.uint32)
        ).astype(np.uint32)

    def ua_of(self, kind: int) -> Arr:
        return np.flatnonzero(self.ua_kind == kind)


def _weighted(cand: Arr, size: int, rng: np.random.Generator) -> Arr:
    # Zipf-like popularity, with ranks fixed by the candidate's own index so every
    # population sees the same popular values: rarity is never a label artefact.
    rank = splitmix64(cand.astype(np.uint64)) % np.uint64(len(cand))
    w = 1.0 / (rank.astype(np.float64) + 2.0)
    return rng.choice(cand, size, p=w / w.sum())


def _user_agents(rng: np.random.Generator) -> tuple[list[str], Arr]:
    sdk: list[str] = []
    for minor in range(30, 100, 3):
        sdk += [f"OpenAI/Python 1.{minor}.{p}" for p in range(0, 3)]
        sdk.append(f"AsyncOpenAI/Python 1.{minor}.0")
    sdk += [f"openai-node/4.{m}.{p}" for m in range(20, 80, 4) for p in range(0, 2)]
    sdk += [f"anthropic-sdk-python/0.{m}.{p}" for m in range(20, 70, 3) for p in range(0, 2)]
    sdk += [f"Anthropic/JS 0.{m}.0" for m in range(10, 40, 2)]
    sdk += [f"openai-go/0.1.0-alpha.{m}" for m in range(30, 60, 5)]
    browsers: list[str] = []
    oses = [
        "Windows NT 10.0; Win64; x64",
        "Macintosh; Intel Mac OS X 10_15_7",
        "X11; Linux x86_64",
        "Linux; Android 14; Pixel 8",
        "iPhone; CPU iPhone OS 17_5 like Mac OS X",
        "Linux; Android 13; SM-S918B",
    ]
    for os_ in oses:
        for v in range(110, 132):
            browsers.append(
                f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{v}.0.0.0 Safari/537.36"
            )
        for v in range(115, 130, 2):
            browsers.append(f"Mozilla/5.0 ({os_}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0")
    for v in range(15, 18):
        for p in range(0, 6):
            browsers.append(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                f"(KHTML, like Gecko) Version/{v}.{p} Safari/605.1.15"
            )
    agents = [f"langchain/0.{m}.{p}" for m in (1, 2, 3) for p in range(0, 20, 3)]
    agents += [f"llama-index/0.10.{p}" for p in range(0, 60, 6)] + [
        f"crewai/0.{m}.0" for m in range(30, 80, 5)
    ]
    agents += [f"openai-agents/0.{m}.0" for m in range(0, 4)] + [
        f"litellm/1.{m}.0" for m in range(30, 60, 3)
    ]
    tools = [f"python-requests/2.{m}.{p}" for m in range(26, 33) for p in range(0, 3)]
    tools += [f"python-httpx/0.{m}.0" for m in range(23, 29)] + [
        f"curl/8.{m}.{p}" for m in range(0, 11) for p in (0, 1)
    ]
    tools += [
        "Go-http-client/2.0",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "axios/1.7.2",
        "node-fetch/1.0",
        "Java-http-client/17.0.2",
    ]
    uas = sdk + browsers + agents + tools
    kind = np.array(
        [0] * len(sdk) + [1] * len(browsers) + [2] * len(agents) + [3] * len(tools), dtype=np.int8
    )
    return uas, kind
