"""Account-level setup for every benign population and every campaign.

Each builder returns a :class:`Group`: per-account arrays (rates, time zones, IP and
user-agent pools, payment, request parameters) that the engine turns into exchanges
chunk by chunk. All groups draw from the same id, IP and user-agent machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.simulate.config import CampaignSpec, PopulationSpec
from distillguard.simulate.infra import (
    CLOUD,
    CORPORATE,
    COUNTRIES,
    COUNTRY_TZ,
    COUNTRY_W,
    MOBILE,
    RESIDENTIAL,
    UNIVERSITY,
    Infra,
)

Arr = npt.NDArray[Any]

ENDPOINTS = np.array(["chat.completions", "messages", "responses", "completions"], dtype=object)
ENDPOINT_W = np.array([0.6, 0.25, 0.12, 0.03])
MODELS = np.array(["helix-4o", "helix-4o-mini", "helix-r1", "helix-5"], dtype=object)
REASONING_MODELS = (2, 3)
DAY = 86_400.0


@lru_cache(maxsize=1)
def servegen() -> dict[str, Arr]:
    raw = (
        resources.files("distillguard.simulate").joinpath("data/servegen_clients.npz").read_bytes()
    )
    import io

    with np.load(io.BytesIO(raw)) as z:
        rate = z["rate"].astype(np.float64)
        cv = z["cv"].astype(np.float64)
    mean = rate.mean(axis=1)
    keep = mean > 0
    shape = rate[keep] / mean[keep, None]
    return {"shape": shape, "cv": np.nan_to_num(cv[keep], nan=1.0), "mean": mean[keep]}


@dataclass
class Pool:
    """Per-account slices of a shared value array (IPs, user agents, keys)."""

    values: Arr
    start: Arr
    length: Arr

    def draw(self, acct: Arr, rng: np.random.Generator) -> Arr:
        off = (rng.random(len(acct)) * self.length[acct]).astype(np.int64)
        return self.values[self.start[acct] + off]

    @staticmethod
    def slices(values: Arr, lengths: Arr) -> Pool:
        start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return Pool(values, start, lengths.astype(np.int64))

    @staticmethod
    def shared(values: Arr, n: int) -> Pool:
        return Pool(values, np.zeros(n, dtype=np.int64), np.full(n, len(values), dtype=np.int64))


@dataclass
class Group:
    """One population or campaign: who the accounts are and how they behave."""

    name: str
    kind: str
    population: str
    label: str
    campaign_id: str | None
    n: int
    daily: Arr  # expected exchanges per account per day
    tz: Arr  # local UTC offset in hours
    active_from: Arr  # seconds since start
    active_to: Arr
    timing: str  # human | servegen | batch | sync | machine | runs
    human: Arr  # per-account weight of the human diurnal cycle (0..1)
    arrival: str  # poisson | regular | clustered
    turns_mean: float
    turn_gap: float  # median seconds between turns
    ip: Pool
    ua: Pool
    keys: Pool
    endpoint: Arr  # int index of primary endpoint
    endpoint_mix: float  # probability an exchange uses another endpoint
    model_p: Arr  # (n, 3) preference over pre-release models
    adopt_at: Arr  # seconds since start when the account starts using the new model (inf: never)
    adopt_share: Arr
    temperature: Arr  # nan = not sent
    max_tokens: Arr  # 0 = not sent
    stream: Arr  # probability of streaming
    logprobs: Arr  # probability of asking logprobs
    n_choices: Arr
    tools: Arr  # tools offered (0 = none)
    system_idx: Arr  # index into the group's system prompts (-1 = none)
    systems: list[str]
    payment: Arr  # int payment instrument id (global namespace)
    org: Arr  # int org id (global namespace)
    acct_country: Arr  # int country index
    created_at: Arr  # seconds since start (negative: before)
    tier: Arr  # object strings
    email_domain: Arr  # object strings
    verified: Arr
    servegen_client: Arr
    servegen_offset: Arr
    extra: dict[str, Any] = field(default_factory=dict)
    spec: CampaignSpec | None = None
    gidx: Arr = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class Ctx:
    """What all builders share: infrastructure, span, and global id counters."""

    infra: Infra
    seconds: float
    release_s: float
    rng: np.random.Generator
    next_payment: int = 0
    next_org: int = 0
    # Shared dictionaries for repeated strings (user agents, system prompts, ...).
    dicts: dict[str, Any] = field(default_factory=dict)

    def payments(self, n: int) -> Arr:
        out = np.arange(self.next_payment, self.next_payment + n, dtype=np.int64)
        self.next_payment += n
        return out

    def orgs(self, n: int) -> Arr:
        out = np.arange(self.next_org, self.next_org + n, dtype=np.int64)
        self.next_org += n
        return out


# -- helpers --------------------------------------------------------------------------


def _countries(rng: np.random.Generator, n: int) -> Arr:
    return rng.choice(len(COUNTRIES), size=n, p=COUNTRY_W / COUNTRY_W.sum())


def _tz_of(country: Arr, rng: np.random.Generator) -> Arr:
    tz = np.array([COUNTRY_TZ[COUNTRIES[int(c)]] for c in range(len(COUNTRIES))])[country]
    # Large countries span zones; jitter keeps accounts of one country from moving in lockstep.
    return tz + rng.integers(-1, 2, len(country)) * (rng.random(len(country)) < 0.3)


def _lognormal_daily(rng: np.random.Generator, median: float, sigma: float, n: int) -> Arr:
    return median * np.exp(sigma * rng.standard_normal(n))


def _created_spread(rng: np.random.Generator, n: int, days_before: float = 720) -> Arr:
    return -(rng.random(n) ** 1.5) * days_before * DAY


def _email(rng: np.random.Generator, n: int, kind: str, org: Arr | None = None) -> Arr:
    personal = np.array(
        [
            "gmail.com",
            "outlook.com",
            "yahoo.com",
            "icloud.com",
            "proton.me",
            "qq.com",
            "163.com",
            "hotmail.com",
            "gmx.de",
            "naver.com",
            "yandex.ru",
        ],
        dtype=object,
    )
    pw = np.array([40, 15, 8, 8, 3, 6, 4, 6, 3, 3, 2], dtype=float)
    if kind == "personal":
        return personal[rng.choice(len(personal), n, p=pw / pw.sum())]
    assert org is not None
    suffix = {"corp": ".com", "edu": ".edu", "startup": ".io"}[kind]
    words = np.array(
        ["north", "blue", "apex", "nova", "river", "quant", "terra", "lumen", "orbit", "pine"],
        dtype=object,
    )
    out: Arr = words[org % len(words)] + np.char.mod("%d", org % 997).astype(object) + suffix
    return out


def _tiers(rng: np.random.Generator, n: int, names: list[str], weights: list[float]) -> Arr:
    w = np.array(weights, dtype=float)
    return np.array(names, dtype=object)[rng.choice(len(names), n, p=w / w.sum())]


def _ip_pool_per_account(
    ctx: Ctx,
    rng: np.random.Generator,
    n: int,
    kinds: list[int],
    k_low: int,
    k_high: int,
    kind_w: list[float] | None = None,
) -> tuple[Pool, Arr]:
    """Each account gets its own few IPs (home, mobile, office): the ordinary case."""
    k = rng.integers(k_low, k_high + 1, n)
    total = int(k.sum())
    kw = np.array(kind_w if kind_w else [1.0] * len(kinds))
    # One home network per account, so all its IPs share an ASN most of the time.
    home_kind = np.array(kinds)[rng.choice(len(kinds), n, p=kw / kw.sum())]
    home_asn = np.zeros(n, dtype=np.int64)
    for kk in set(home_kind.tolist()):
        sel = home_kind == kk
        home_asn[sel] = ctx.infra.pick_asns([int(kk)], int(sel.sum()), rng)
    per_ip_asn = np.repeat(home_asn, k)
    roam = rng.random(total) < 0.15
    per_ip_asn = np.where(roam, ctx.infra.pick_asns([MOBILE], total, rng), per_ip_asn)
    ips = ctx.infra.random_ips(per_ip_asn, rng)
    return Pool.slices(ips, k), home_asn


def _block_pool(
    ctx: Ctx, rng: np.random.Generator, n: int, kind: int, k_low: int, k_high: int
) -> Pool:
    """A few IPs inside one /24 of one ASN per account (cloud egress, office NAT)."""
    k = rng.integers(k_low, k_high + 1, n)
    asn = ctx.infra.pick_asns([kind], n, rng)
    block = ctx.infra.random_ips(asn, rng) & np.uint32(0xFFFFFF00)
    ips = np.repeat(block, k) + rng.integers(2, 250, int(k.sum())).astype(np.uint32)
    return Pool.slices(ips.astype(np.uint32), k)


def _ua_pool(
    ctx: Ctx, rng: np.random.Generator, n: int, kinds: list[int], k_low: int, k_high: int
) -> Pool:
    k = rng.integers(k_low, k_high + 1, n)
    vals = ctx.infra.pick_uas(kinds, int(k.sum()), rng)
    return Pool.slices(vals, k)


def _keys(ctx: Ctx, rng: np.random.Generator, n: int, hi: int) -> Pool:
    k = rng.integers(1, hi + 1, n)
    vals = ctx.rng.integers(0, 2**62, int(k.sum()))
    return Pool.slices(vals, k)


def _models(rng: np.random.Generator, n: int, alpha: list[float]) -> Arr:
    return rng.dirichlet(alpha, n)


def _adoption(
    ctx: Ctx, rng: np.random.Generator, n: int, early: float, mean_days: float, share: float
) -> tuple[Arr, Arr]:
    # A few teams test a new model within hours of release; most drift over weeks.
    delay = np.where(
        rng.random(n) < early, rng.random(n) * 0.8 * DAY, rng.exponential(mean_days * DAY, n)
    )
    return ctx.release_s + delay, np.clip(share + 0.2 * rng.standard_normal(n), 0.05, 0.95)


def _base(
    ctx: Ctx,
    rng: np.random.Generator,
    name: str,
    kind: str,
    population: str,
    n: int,
    daily: Arr,
    country: Arr,
    **kw: Any,
) -> Group:
    adopt_at, adopt_share = _adoption(ctx, rng, n, 0.05, 8.0, 0.4)
    sg = servegen()
    fields_: dict[str, Any] = dict(
        name=name,
        kind=kind,
        population=population,
        label="benign",
        campaign_id=None,
        n=n,
        daily=daily,
        tz=_tz_of(country, rng),
        active_from=np.zeros(n),
        active_to=np.full(n, ctx.seconds),
        timing="human",
        human=np.ones(n),
        arrival="poisson",
        turns_mean=1.0,
        turn_gap=30.0,
        endpoint=rng.choice(4, n, p=ENDPOINT_W),
        endpoint_mix=0.02,
        model_p=_models(rng, n, [2.0, 2.0, 1.0]),
        adopt_at=adopt_at,
        adopt_share=adopt_share,
        temperature=np.where(rng.random(n) < 0.5, np.nan, rng.choice([0.2, 0.5, 0.7, 1.0], n)),
        max_tokens=np.where(
            rng.random(n) < 0.5, 0, rng.choice([256, 512, 1024, 2048, 4096, 8192, 16384], n)
        ),
        stream=rng.choice([0.0, 0.9, 1.0], n),
        logprobs=np.where(rng.random(n) < 0.04, 0.3, 0.0),  # confidence scores in some apps
        n_choices=np.ones(n, dtype=np.int64),
        tools=np.zeros(n, dtype=np.int64),
        system_idx=np.full(n, -1),
        systems=[],
        payment=ctx.payments(n),
        org=ctx.orgs(n),
        acct_country=country,
        created_at=_created_spread(rng, n),
        tier=_tiers(rng, n, ["free", "pro"], [0.7, 0.3]),
        email_domain=_email(rng, n, "personal"),
        verified=rng.random(n) < 0.7,
        servegen_client=rng.integers(0, len(sg["shape"]), n),
        servegen_offset=rng.integers(0, 336, n),
        ip=None,
        ua=None,
        keys=_keys(ctx, rng, n, 2),
    )
    fields_.update(kw)
    return Group(**fields_)


# -- benign populations ---------------------------------------------------------------


def build_population(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    builder = {
        "chat": _chat,
        "dev_app": _dev_app,
        "enterprise_batch": _enterprise,
        "benchmark": _benchmark,
        "reseller": _reseller,
        "agent": _agent,
        "nat": _nat,
        "gray_synthetic": _gray,
    }[spec.kind]
    return builder(spec, n, ctx, rng)


def _chat(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    country = _countries(rng, n)
    ip, _ = _ip_pool_per_account(ctx, rng, n, [RESIDENTIAL, MOBILE], 1, 3, [0.8, 0.2])
    daily = _lognormal_daily(rng, spec.daily, 1.0, n)
    # Some users arrive during the span (new sign-ups) and some stop: churn is normal.
    active_from = np.where(rng.random(n) < 0.1, rng.random(n) * ctx.seconds, 0.0)
    created = np.where(active_from > 0, active_from - rng.random(n) * 3600, _created_spread(rng, n))
    return _base(
        ctx,
        rng,
        spec.name,
        "chat",
        spec.name,
        n,
        daily,
        country,
        ip=ip,
        ua=_ua_pool(ctx, rng, n, [1, 0], 1, 2),
        turns_mean=2.6,
        turn_gap=50.0,
        active_from=active_from,
        created_at=created,
        extra={"homework": rng.random(n) ** 2},
    )


def _dev_app(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    from distillguard.simulate.text import SYSTEM_PROMPTS_DEV, corpus

    c = corpus()
    app = rng.integers(0, len(c.apps), n)
    systems = [
        SYSTEM_PROMPTS_DEV[i % len(SYSTEM_PROMPTS_DEV)].format(app=c.apps[a], task=c.app_tasks[a])
        for i, a in enumerate(app)
    ]
    country = _countries(rng, n)
    org = ctx.orgs(n)
    payment = ctx.payments(n)
    # Companies run several apps on one card and one org: shared payment is not evidence alone.
    share = rng.random(n) < 0.25
    owner = rng.integers(0, max(1, n // 3), n)
    org = np.where(share, org[owner], org)
    payment = np.where(share, payment[owner], payment)
    return _base(
        ctx,
        rng,
        spec.name,
        "dev_app",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 1.1, n),
        country,
        ip=_block_pool(ctx, rng, n, CLOUD, 1, 4),
        ua=_ua_pool(ctx, rng, n, [0, 3], 1, 2),
        timing="servegen",
        human=rng.random(n) * 0.5,
        systems=systems,
        system_idx=np.arange(n),
        org=org,
        payment=payment,
        tier=_tiers(rng, n, ["pro", "startup", "enterprise"], [0.5, 0.3, 0.2]),
        email_domain=_email(rng, n, "corp", org),
        temperature=rng.choice([0.0, 0.2, 0.3, 0.7, 1.0], n),
        stream=rng.choice([0.0, 1.0], n),
        adopt_at=_adoption(ctx, rng, n, 0.15, 6.0, 0.5)[0],
        extra={"app": app},
    )


def _enterprise(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    from distillguard.simulate.text import corpus

    frames = len(corpus().t0_prefix)
    t1 = rng.integers(0, frames, n)
    t2 = np.where(rng.random(n) < 0.5, rng.integers(0, frames, n), t1)
    org = ctx.orgs(n)
    systems = [
        "You are a data-processing assistant. Answer with the label or text only, no explanations."
    ] * n
    return _base(
        ctx,
        rng,
        spec.name,
        "enterprise_batch",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 0.5, n),
        _countries(rng, n),
        ip=_block_pool(ctx, rng, n, CLOUD, 2, 5),
        ua=_ua_pool(ctx, rng, n, [3, 0], 1, 1),
        timing="batch",
        human=np.zeros(n),
        arrival="regular",
        system_idx=np.where(rng.random(n) < 0.6, 0, -1),
        systems=systems,
        temperature=np.zeros(n),
        max_tokens=rng.choice([16, 64, 128, 256], n),
        stream=np.zeros(n),
        tier=np.full(n, "enterprise", dtype=object),
        email_domain=_email(rng, n, "corp", org),
        org=org,
        verified=np.ones(n, dtype=bool),
        model_p=_models(rng, n, [0.5, 4.0, 0.2]),
        extra={"templates": np.stack([t1, t2], axis=1)},
    )


def _benchmark(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    from distillguard.simulate.text import BENCH_CODE_FORMATS, BENCH_MATH_FORMATS

    org = ctx.orgs(n)
    uni = rng.random(n) < 0.4
    # Harnesses evaluate every new model the day it ships: a hard negative for the
    # "moved to the new model within 24 h" signal.
    adopt = ctx.release_s + rng.random(n) * 0.9 * DAY
    return _base(
        ctx,
        rng,
        spec.name,
        "benchmark",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 0.7, n),
        _countries(rng, n),
        ip=_block_pool(ctx, rng, n, CLOUD, 1, 2),
        ua=_ua_pool(ctx, rng, n, [0, 3], 1, 1),
        timing="runs",
        human=np.ones(n),
        arrival="regular",
        temperature=np.zeros(n),
        max_tokens=rng.choice([512, 1024, 2048, 4096, 8192, 16384], n),
        stream=np.zeros(n),
        logprobs=np.where(rng.random(n) < 0.3, 0.5, 0.0),
        adopt_at=adopt,
        adopt_share=np.full(n, 0.5),
        tier=np.where(uni, "edu", rng.choice(np.array(["startup", "pro"], dtype=object), n)),
        email_domain=np.where(uni, _email(rng, n, "edu", org), _email(rng, n, "startup", org)),
        org=org,
        model_p=_models(rng, n, [1.0, 1.0, 1.0]),
        extra={
            "math_fmt": rng.integers(0, len(BENCH_MATH_FORMATS), n),
            "code_fmt": rng.integers(0, len(BENCH_CODE_FORMATS), n),
        },
    )


def _reseller(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    # Thousands of end users behind one account: their IPs and browsers, not the reseller's.
    k = rng.integers(2000, 5000, n)
    ips = ctx.infra.random_ips(ctx.infra.pick_asns([RESIDENTIAL, MOBILE], int(k.sum()), rng), rng)
    ku = rng.integers(300, 480, n)
    uas = ctx.infra.pick_uas([1, 0], int(ku.sum()), rng)
    org = ctx.orgs(n)
    systems = [
        f"You are {name}, a friendly AI assistant. Answer helpfully."
        for name in (
            "ChatPal",
            "AskMate",
            "TalkAI",
            "QuickGPT",
            "MindBox",
            "Wenda",
            "HelpBot",
            "Assistly",
        )
    ]
    return _base(
        ctx,
        rng,
        spec.name,
        "reseller",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 0.4, n),
        _countries(rng, n),
        ip=Pool.slices(ips, k),
        ua=Pool.slices(uas, ku),
        timing="servegen",
        human=np.full(n, 0.5),
        turns_mean=2.2,
        turn_gap=40.0,
        systems=systems,
        system_idx=rng.integers(0, len(systems), n),
        tier=_tiers(rng, n, ["enterprise", "pro"], [0.6, 0.4]),
        email_domain=_email(rng, n, "startup", org),
        org=org,
        keys=_keys(ctx, rng, n, 6),
        extra={"homework": np.full(n, 0.25)},
    )


def _agent(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    from distillguard.simulate.text import SYSTEM_PROMPTS_AGENT

    org = ctx.orgs(n)
    return _base(
        ctx,
        rng,
        spec.name,
        "agent",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 1.0, n),
        _countries(rng, n),
        ip=_block_pool(ctx, rng, n, CLOUD, 1, 3),
        ua=_ua_pool(ctx, rng, n, [2, 0], 1, 2),
        timing="servegen",
        human=rng.random(n) * 0.6,
        turns_mean=8.0,
        turn_gap=6.0,
        systems=SYSTEM_PROMPTS_AGENT,
        system_idx=rng.integers(0, len(SYSTEM_PROMPTS_AGENT), n),
        tools=rng.integers(4, 31, n),
        extra={"toolsets": rng.integers(4, 31, (n, 2))},
        temperature=rng.choice([0.0, 0.1, 0.3], n),
        max_tokens=rng.choice([1024, 2048, 4096, 8192], n),
        tier=_tiers(rng, n, ["startup", "pro", "enterprise"], [0.4, 0.3, 0.3]),
        email_domain=_email(rng, n, "startup", org),
        org=org,
        model_p=_models(rng, n, [3.0, 1.0, 1.5]),
    )


def _nat(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    # Universities and companies: many legitimate accounts behind one IP or one /24,
    # created together at term start or onboarding (a hard negative for sign-up bursts).
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(30, 160)))
    sizes[-1] -= sum(sizes) - n
    sizes = [s for s in sizes if s > 0]
    units = len(sizes)
    unit = np.repeat(np.arange(units), sizes)
    is_uni = rng.random(units) < 0.6
    unit_asn = np.where(
        is_uni,
        rng.choice(ctx.infra.asns_of(UNIVERSITY), units),
        rng.choice(ctx.infra.asns_of(CORPORATE), units),
    )
    unit_k = np.where(rng.random(units) < 0.6, 1, rng.integers(2, 9, units))
    block = ctx.infra.random_ips(unit_asn, rng) & np.uint32(0xFFFFFF00)
    unit_ips = [
        block[u] + np.uint32(10) + np.arange(unit_k[u], dtype=np.uint32) for u in range(units)
    ]
    vals = np.concatenate(unit_ips).astype(np.uint32)
    ustart = np.concatenate([[0], np.cumsum(unit_k)[:-1]])
    ip = Pool(vals, ustart[unit].astype(np.int64), unit_k[unit].astype(np.int64))
    ucountry = _countries(rng, units)
    country = ucountry[unit]
    uorg = ctx.orgs(units)
    org = uorg[unit]
    upay = ctx.payments(units)
    payment = np.where(rng.random(n) < 0.5, upay[unit], ctx.payments(n))
    uni_acct = is_uni[unit]
    term_start = -rng.random(units) * 120 * DAY
    created = np.where(
        rng.random(n) < 0.7, term_start[unit] + rng.random(n) * 2 * DAY, _created_spread(rng, n)
    )
    g = _base(
        ctx,
        rng,
        spec.name,
        "nat",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 0.9, n),
        country,
        ip=ip,
        ua=_ua_pool(ctx, rng, n, [1, 0], 1, 2),
        turns_mean=2.4,
        turn_gap=45.0,
        tier=np.where(uni_acct, "edu", "enterprise").astype(object),
        org=org,
        payment=payment,
        email_domain=np.where(uni_acct, _email(rng, n, "edu", org), _email(rng, n, "corp", org)),
        created_at=created,
        extra={"homework": np.where(uni_acct, 0.6, 0.1)},
    )
    g.tz = _tz_of(ucountry, rng)[unit]
    return g


def _gray(spec: PopulationSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    org = ctx.orgs(n)
    return _base(
        ctx,
        rng,
        spec.name,
        "gray_synthetic",
        spec.name,
        n,
        _lognormal_daily(rng, spec.daily, 0.8, n),
        _countries(rng, n),
        ip=_block_pool(ctx, rng, n, CLOUD, 1, 2),
        ua=_ua_pool(ctx, rng, n, [0, 3], 1, 1),
        timing="servegen",
        human=rng.random(n) * 0.5,
        temperature=rng.choice([0.8, 1.0, 1.2], n),
        n_choices=rng.choice([1, 1, 2, 4], n),
        max_tokens=rng.choice([2048, 4096, 8192], n),
        tier=_tiers(rng, n, ["startup", "pro", "enterprise"], [0.5, 0.3, 0.2]),
        email_domain=_email(rng, n, "startup", org),
        org=org,
    )


# -- campaigns ------------------------------------------------------------------------


def build_campaign(spec: CampaignSpec, n: int, ctx: Ctx, rng: np.random.Generator) -> Group:
    camo = spec.camouflage
    infra = ctx.infra
    start_s, end_s = spec.start_frac * ctx.seconds, spec.end_frac * ctx.seconds
    country = (
        _countries(rng, n)
        if camo.aged_accounts
        else rng.choice([COUNTRIES.index(c) for c in ("US", "SG", "JP", "GB", "DE", "HK")], n)
    )
    # Network: a shared proxy/cloud pool (linkable) or per-account residential IPs.
    if camo.unique_ips:
        k = rng.integers(8, 30, n) if spec.kind == "hydra" else rng.integers(1, 4, n)
        ip = Pool.slices(
            infra.random_ips(infra.pick_asns([RESIDENTIAL, MOBILE], int(k.sum()), rng), rng), k
        )
    elif spec.kind == "hydra":
        pool = infra.random_ips(infra.pick_asns([RESIDENTIAL, MOBILE], max(50, n * 3), rng), rng)
        ip = Pool.shared(pool, n)
    elif spec.kind == "moonshot_like":
        mix = np.concatenate(
            [infra.pick_asns([CLOUD], 20, rng), infra.pick_asns([RESIDENTIAL, MOBILE], 40, rng)]
        )
        ip = Pool.shared(infra.random_ips(rng.choice(mix, max(20, n // 2)), rng), n)
        ip = Pool(ip.values, rng.integers(0, max(1, len(ip.values) - 8), n), np.full(n, 8))
    else:
        asns = infra.pick_asns([CLOUD], 2, rng)
        ip = Pool.shared(infra.random_ips(rng.choice(asns, max(6, n // 4)), rng), n)
    # User agents: hydra and moonshot rotate SDKs per request; others keep one or two.
    if spec.kind in ("hydra", "moonshot_like"):
        ua = (
            Pool.shared(infra.pick_uas([0, 3], 40, rng), n)
            if not camo.unique_ips
            else _ua_pool(ctx, rng, n, [0, 3], 2, 6)
        )
    else:
        ua = _ua_pool(ctx, rng, n, [0] if not camo.mimic_params else [0, 1, 3], 1, 2)
        if not camo.mimic_params:
            ua = Pool.shared(ua.values[:1], n)
    payment = ctx.payments(n)
    shared_n = max(1, n // 40)
    shared_fp = ctx.payments(shared_n)
    payment = np.where(
        rng.random(n) < camo.shared_payment, shared_fp[rng.integers(0, shared_n, n)], payment
    )
    # Account creation: bursts of throwaway sign-ups, or aged accounts spread over months.
    if camo.aged_accounts:
        created = -rng.uniform(60, 540, n) * DAY
        active_from = np.full(n, start_s) + rng.random(n) * 0.2 * (end_s - start_s)
    else:
        # Sign-up bursts of tens to hundreds of accounts, mostly in the two weeks before the
        # campaign starts and some in its first quarter (replacements, expansion).
        n_bursts = max(3, n // 150)
        burst_t = start_s - 14 * DAY + rng.random(n_bursts) * (0.25 * (end_s - start_s) + 14 * DAY)
        created = burst_t[rng.integers(0, n_bursts, n)] + rng.random(n) * 1800
        active_from = np.maximum(created + rng.random(n) * 6 * 3600, start_s)
    active_to = np.full(n, end_s)
    human = np.full(n, camo.human_timing)
    timing = {"deepseek_like": "sync", "hydra": "machine"}.get(spec.kind, "machine")
    arrival = "poisson" if camo.human_timing >= 0.5 or spec.kind == "hydra" else "regular"
    if camo.mimic_params:
        temperature = np.where(rng.random(n) < 0.5, np.nan, rng.choice([0.2, 0.5, 0.7, 1.0], n))
        max_tokens = np.where(rng.random(n) < 0.5, 0, rng.choice([512, 1024, 2048, 4096], n))
        stream = rng.choice([0.0, 0.9, 1.0], n)
        logprobs = np.zeros(n)
        tier = _tiers(rng, n, ["free", "pro", "startup", "edu"], [0.4, 0.4, 0.1, 0.1])
        email = _email(rng, n, "personal")
        verified = rng.random(n) < 0.7
    else:
        # Lazy but not exotic: values that ordinary customers send too.
        temperature = np.full(n, 0.7 if spec.kind == "deepseek_like" else 1.0)
        max_tokens = np.full(n, 16384 if spec.kind == "deepseek_like" else 8192)
        stream = np.zeros(n)
        logprobs = np.full(n, 0.5 if spec.kind == "minimax_like" else 0.0)
        tier = _tiers(rng, n, ["edu", "startup", "free", "pro"], [0.35, 0.35, 0.2, 0.1])
        org_tmp = rng.integers(0, 5, n)
        email = np.where(
            tier == "edu", _email(rng, n, "edu", org_tmp + 9000), _email(rng, n, "personal")
        )
        verified = rng.random(n) < 0.3
    model_p = (
        _models(rng, n, [1.0, 0.3, 3.0])
        if not camo.mimic_params
        else _models(rng, n, [2.0, 1.5, 1.5])
    )
    if spec.kind == "minimax_like":
        # Half the traffic moves to the new model within a day of its release.
        switch = (
            ctx.release_s
            + rng.uniform(2, 20) * 3600
            + rng.random(n) * 3600 * (1 + 6 * camo.human_timing)
        )
        adopt_at, adopt_share = switch, np.full(n, 0.5)
    else:
        adopt_at, adopt_share = _adoption(ctx, rng, n, 0.1, 5.0, 0.4)
    sg = servegen()
    endpoint = rng.choice(4, n, p=ENDPOINT_W) if camo.mimic_params else np.zeros(n, dtype=np.int64)
    g = Group(
        name=spec.campaign_id,
        kind=spec.kind,
        population=spec.kind,
        label="attack",
        campaign_id=spec.campaign_id,
        n=n,
        daily=spec.daily * np.exp(0.25 * rng.standard_normal(n)),
        tz=_tz_of(country, rng),
        active_from=active_from,
        active_to=active_to,
        timing=timing,
        human=human,
        arrival=arrival,
        turns_mean=3.0 if spec.kind == "moonshot_like" else 1.0,
        turn_gap=4.0,
        ip=ip,
        ua=ua,
        keys=_keys(ctx, rng, n, 1 if not camo.mimic_params else 2),
        endpoint=endpoint,
        endpoint_mix=0.45 if spec.kind == "moonshot_like" else 0.02,
        model_p=model_p,
        adopt_at=adopt_at,
        adopt_share=adopt_share,
        temperature=temperature,
        max_tokens=max_tokens,
        stream=stream,
        logprobs=logprobs,
        n_choices=np.ones(n, dtype=np.int64),
        tools=np.where(rng.random(n) < 0.7, rng.integers(4, 20, n), 0)
        if spec.kind == "moonshot_like"
        else np.zeros(n, dtype=np.int64),
        system_idx=np.full(n, -1),
        systems=[],
        payment=payment,
        org=ctx.orgs(n),
        acct_country=country,
        created_at=created,
        tier=tier,
        email_domain=email,
        verified=verified,
        servegen_client=rng.integers(0, len(sg["shape"]), n),
        servegen_offset=rng.integers(0, 336, n),
        spec=spec,
        extra=_wrapper_style(spec, rng, n),
    )
    return g


def _wrapper_style(spec: CampaignSpec, rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Which wrapper phrasings a campaign uses: few when lazy, the whole space when paraphrasing."""
    from distillguard.simulate.text import ATTACK_COT, ATTACK_FORMATS, ATTACK_LEADS

    p = spec.camouflage.paraphrase

    def subset(size: int) -> Arr:
        k = max(1, round(1 + p * (size - 1)))
        return rng.choice(size, k, replace=False)

    return {
        "leads": subset(len(ATTACK_LEADS)),
        "cot": subset(len(ATTACK_COT)),
        "formats": subset(len(ATTACK_FORMATS)),
        "demand_first": p >= 0.5,
        # Each account's harness offers one or two fixed tool sets, like a real framework.
        "toolsets": rng.integers(3, 24, (n, 2)),
    }
