"""The generator: accounts -> sessions per hour -> exchanges -> Parquet, chunk by chunk.

Everything is vectorised over accounts and exchanges. Memory is bounded by one time
chunk (a day at small scales, a few hours at full scale): rows are generated for the
chunk, sorted by time across all populations (so file order reveals nothing), written as
row groups, and dropped.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.schema import (
    ACCOUNT_COLUMNS,
    EXCHANGE_COLUMNS,
    TS_TYPE,
    truth_account_schema,
    truth_exchange_schema,
)
from distillguard.simulate import text as T
from distillguard.simulate.config import RELEASE_FRAC, SCALES, Scenario, scaled_accounts
from distillguard.simulate.infra import COUNTRIES, Infra, hex_ids, ip_strings
from distillguard.simulate.populations import (
    DAY,
    ENDPOINTS,
    MODELS,
    Ctx,
    Group,
    build_campaign,
    build_population,
    servegen,
)

Arr = npt.NDArray[Any]
HOUR = 3600.0
ORCHESTRATOR_MOMENTS = 4  # dispatch moments per hour of an orchestrated campaign
# Mean-one diurnal profile of human use by local hour (quiet at night, two daytime peaks).
_DIURNAL = np.array(
    [
        0.25,
        0.15,
        0.1,
        0.08,
        0.08,
        0.12,
        0.3,
        0.6,
        1.0,
        1.3,
        1.45,
        1.5,
        1.35,
        1.4,
        1.5,
        1.5,
        1.4,
        1.3,
        1.2,
        1.3,
        1.45,
        1.4,
        1.0,
        0.55,
    ]
)
DIURNAL = _DIURNAL / _DIURNAL.mean()
LENGTH_SOURCES = ("azure_conv", "azure_code", "mooncake_conversation", "mooncake_synthetic", "r1")
CONV, CODE, MOON, MOON_SYN, R1 = range(5)
SALT_ACCOUNT, SALT_EXCHANGE, SALT_CONV, SALT_KEY, SALT_PAY, SALT_ORG = (
    0x1F3A,
    0x2B4C,
    0x3D5E,
    0x4F60,
    0x5A71,
    0x6B82,
)


@lru_cache(maxsize=1)
def lengths() -> dict[str, Arr]:
    raw = resources.files("distillguard.simulate").joinpath("data/lengths.npz").read_bytes()
    with np.load(io.BytesIO(raw)) as z:
        return {k: z[k].astype(np.float64) for k in z.files}


def _sample_len(src: Arr, direction: str, rng: np.random.Generator) -> Arr:
    table = lengths()
    u = rng.random(len(src))
    out = np.zeros(len(src))
    grid = np.linspace(0.0, 1.0, 256)
    for code, name in enumerate(LENGTH_SOURCES):
        sel = src == code
        if sel.any():
            out[sel] = np.interp(u[sel], grid, table[f"{name}_{direction}"])
    return out


# -- time ----------------------------------------------------------------------------


def _shape(g: Group, hours: Arr) -> Arr:
    local = (hours[None, :] + g.tz[:, None] + (g.servegen_offset[:, None] % 5 - 2)) % 24
    day = ((hours[None, :] + g.tz[:, None]) // 24) % 7  # the span starts on a Monday
    weekend = np.where(day >= 5, 0.55 + 0.6 * (g.servegen_offset[:, None] % 3 == 0), 1.0)
    human = DIURNAL[local.astype(np.int64)] * weekend
    if g.timing == "servegen":
        sg = servegen()["shape"]
        base = sg[
            g.servegen_client[:, None], (hours[None, :] + g.servegen_offset[:, None]) % sg.shape[1]
        ]
    elif g.timing == "sync":
        # The whole campaign works the same few hours of every day (operator shifts).
        active = g.extra.setdefault(
            "sync_hours", np.random.default_rng(_name_seed(g.name)).choice(24, 7, replace=False)
        )
        base = np.broadcast_to(np.isin(hours % 24, active) * (24 / 7), (g.n, len(hours)))
    elif g.timing == "human":
        return np.asarray(human, dtype=np.float64)
    else:
        base = np.ones((g.n, len(hours)))
    mixed: Arr = g.human[:, None] * human + (1 - g.human[:, None]) * base
    return mixed


def _name_seed(name: str) -> int:
    # Stable across runs and processes (unlike hash()), distinct for distinct campaigns.
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _noise_k(g: Group) -> float:
    return {"human": 3.0, "servegen": 4.0, "batch": 0.3, "sync": 60.0, "machine": 30.0}.get(
        g.timing, 4.0
    )


@dataclass
class Sessions:
    acct: Arr
    ts: Arr  # seconds since start


def _sessions(g: Group, h0: int, h1: int, ctx: Ctx, rng: np.random.Generator) -> Sessions:
    hours = np.arange(h0, h1)
    t = hours * HOUR
    active = (t[None, :] + HOUR > g.active_from[:, None]) & (t[None, :] < g.active_to[:, None])
    lam = (g.daily / 24.0 / g.turns_mean)[:, None] * _shape(g, hours) * active
    k = _noise_k(g)
    lam = lam * rng.gamma(k, 1.0 / k, lam.shape)
    counts = rng.poisson(lam)
    a_idx, h_idx = np.nonzero(counts)
    c = counts[a_idx, h_idx]
    acct = np.repeat(a_idx, c)
    hour = np.repeat(hours[h_idx], c)
    n = len(acct)
    if g.arrival == "regular":
        # Worker pools and schedulers space requests evenly; the phase is shared by the
        # group, which is what makes synchronised campaigns line up across accounts.
        rank = np.arange(n) - np.repeat(np.cumsum(c) - c, c)
        off = (rank + 0.5) / np.repeat(c, c) * HOUR + rng.normal(0, 4.0, n)
    else:
        off = rng.random(n) * HOUR
        if g.timing == "servegen":
            cv = servegen()["cv"][g.servegen_client[acct], (hour + g.servegen_offset[acct]) % 336]
            burst = rng.random(n) < np.clip((cv - 1) / np.maximum(cv, 1e-9), 0, 0.9)
            centre = np.repeat(rng.random(len(c)) * HOUR, c)
            off = np.where(burst, (centre + rng.normal(0, 60.0, n)) % HOUR, off)
    orchestrated = g.spec.orchestrated if g.spec is not None else 0.0
    if orchestrated > 0 and n:
        # One orchestrator dispatches work at a few moments of each hour, and the accounts
        # it drives send within seconds of each. Drawn only when asked for, so scenarios
        # without it give the same output as before.
        moments = rng.random((h1 - h0, ORCHESTRATOR_MOMENTS)) * HOUR
        pick = moments[hour - h0, rng.integers(0, ORCHESTRATOR_MOMENTS, n)]
        off = np.where(rng.random(n) < orchestrated, pick + rng.exponential(20.0, n), off)
    ts = hour * HOUR + np.clip(off, 0, HOUR - 1e-3)
    keep = (ts >= g.active_from[acct]) & (ts < g.active_to[acct])
    return Sessions(acct[keep], ts[keep])


@dataclass
class Exchanges:
    acct: Arr
    ts: Arr
    turn: Arr
    conv: Arr  # global session counter


def _expand(
    g: Group, s: Sessions, ctx: Ctx, rng: np.random.Generator, counter: list[int]
) -> Exchanges:
    n = len(s.acct)
    turns = (
        np.ones(n, dtype=np.int64)
        if g.turns_mean <= 1
        else np.minimum(rng.geometric(1 / g.turns_mean, n), 40)
    )
    conv = np.arange(counter[0], counter[0] + n, dtype=np.int64)
    counter[0] += n
    total = int(turns.sum())
    first = np.cumsum(turns) - turns
    turn = np.arange(total) - np.repeat(first, turns)
    gaps = np.where(turn > 0, g.turn_gap * np.exp(0.8 * rng.standard_normal(total)), 0.0)
    cum = np.cumsum(gaps)
    offset = cum - np.repeat(cum[first], turns)
    return Exchanges(
        np.repeat(s.acct, turns), np.repeat(s.ts, turns) + offset, turn, np.repeat(conv, turns)
    )


def _benchmark_runs(
    g: Group, h0: int, h1: int, rng: np.random.Generator, counter: list[int]
) -> tuple[Exchanges, Arr, Arr]:
    """Whole benchmark sweeps: GSM8K, MATH or HumanEval in dataset order, thousands at once."""
    c = T.corpus()
    sizes = np.array([len(c.gsm8k), len(c.math), len(c.code)])
    hours = np.arange(h0, h1)
    runs_per_day = g.daily / 900.0
    lam = (
        runs_per_day[:, None]
        / 24.0
        * _shape(g, hours)
        * (hours[None, :] * HOUR >= g.active_from[:, None])
    )
    counts = rng.poisson(lam)
    a_idx, h_idx = np.nonzero(counts)
    cnt = counts[a_idx, h_idx]
    racct = np.repeat(a_idx, cnt)
    rstart = np.repeat(hours[h_idx], cnt) * HOUR + rng.random(len(racct)) * HOUR
    bench = rng.choice(3, len(racct), p=[0.5, 0.3, 0.2])
    size = np.where(
        rng.random(len(racct)) < 0.6,
        sizes[bench],
        rng.integers(100, 500, len(racct)) % sizes[bench] + 50,
    )
    rate = rng.uniform(1.0, 8.0, len(racct))
    first = np.cumsum(size) - size
    item = np.arange(int(size.sum())) - np.repeat(first, size)
    ts = np.repeat(rstart, size) + item / np.repeat(rate, size) + rng.random(len(item)) * 0.5
    conv = np.arange(counter[0], counter[0] + len(item), dtype=np.int64)
    counter[0] += len(item)
    ex = Exchanges(np.repeat(racct, size), ts, np.zeros(len(item), dtype=np.int64), conv)
    # One model per run: harnesses pin the model under test.
    run_model = np.where(rng.random(len(racct)) < 0.5, 2, rng.integers(0, 2, len(racct)))
    run_model = np.where(
        rstart >= g.adopt_at[racct], np.where(rng.random(len(racct)) < 0.7, 3, run_model), run_model
    )
    return ex, np.repeat(bench, size) * 10_000 + item, np.repeat(run_model, size)


# -- content -------------------------------------------------------------------------


@dataclass
class Content:
    prompt: pa.Array
    is_attack: Arr
    in_src: Arr
    out_src: Arr
    tools: Arr | None = None


def _assemble(n: int, parts: list[tuple[Arr, pa.Array]]) -> pa.Array:
    """Combine per-subset string arrays back into row order."""
    parts = [(sel, arr) for sel, arr in parts if len(sel)]
    if not parts:
        return pa.array([""] * n, type=pa.string())
    order = np.concatenate([sel for sel, _ in parts])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays([arr for _, arr in parts]).take(pa.array(inverse))


# Small phrase pools used per call; module level so they are converted to Arrow once.
_CODE_LEADS = [
    "why does this fail?\n",
    "can you finish this function?\n",
    "",
    "explain this code:\n",
    "这段代码怎么写？\n",
    "write tests for:\n",
    "what's the complexity of this?\n",
]
_FOLLOW_TAILS = ["", "", "", " thanks", "?", " pls"]
_AGENT_LEADS = ["", "User goal: ", "Customer: ", "Task: ", ""]
_SEPS = ["\n\n", "\n", " "]
_SEP_PLAIN = ["\n\n"]
_FMT_PARTS = [
    ([f[0] for f in fm], [f[1] for f in fm])
    for fm in (T.BENCH_MATH_FORMATS, T.BENCH_MATH_FORMATS, T.BENCH_CODE_FORMATS)
]


def _chatty(turn: Arr, homework: Arr, rng: np.random.Generator) -> tuple[pa.Array, Arr, Arr]:
    """What people type: questions, homework, code, follow-ups (prompt, length sources)."""
    c = T.corpus()
    n = len(turn)
    u = rng.random(n)
    follow = np.flatnonzero(turn > 0)
    hw = np.flatnonzero((turn == 0) & (u < homework))
    code = np.flatnonzero((turn == 0) & (u >= homework) & (u < homework + 0.08))
    rest = np.flatnonzero((turn == 0) & (u >= homework + 0.08))
    student = rng.random(len(hw)) < 0.6
    hw_close = _assemble(
        len(hw),
        [
            (np.flatnonzero(student), T.rand_pick(T.STUDENT_CLOSERS, int(student.sum()), rng)),
            (np.flatnonzero(~student), T.rand_pick(T.CHAT_CLOSERS, int((~student).sum()), rng)),
        ],
    )
    parts = [
        (
            follow,
            T.join(
                T.rand_pick(T.FOLLOW_UPS, len(follow), rng),
                T.rand_pick(_FOLLOW_TAILS, len(follow), rng),
            ),
        ),
        (
            hw,
            T.join(
                T.rand_pick(T.CHAT_OPENERS, len(hw), rng),
                T.rand_pick(c.homework, len(hw), rng),
                hw_close,
            ),
        ),
        (
            code,
            T.join(T.rand_pick(_CODE_LEADS, len(code), rng), T.rand_pick(c.code, len(code), rng)),
        ),
        (
            rest,
            T.join(
                T.rand_pick(T.CHAT_OPENERS, len(rest), rng),
                T.rand_pick(c.chat, len(rest), rng),
                T.rand_pick(T.CHAT_CLOSERS, len(rest), rng),
            ),
        ),
    ]
    out_src = np.full(n, CONV)
    out_src[code] = CODE
    return _assemble(n, parts), np.full(n, CONV), out_src


def _content(g: Group, ex: Exchanges, rng: np.random.Generator) -> Content:
    n = len(ex.acct)
    c = T.corpus()
    false = np.zeros(n, dtype=bool)
    if g.kind in ("chat", "nat", "reseller"):
        prompt, i_src, o_src = _chatty(ex.turn, g.extra["homework"][ex.acct], rng)
        return Content(prompt, false, i_src, o_src)
    if g.kind == "dev_app":
        body = _assemble(
            n,
            [
                (
                    np.flatnonzero(m := rng.random(n) < 0.6),
                    T.rand_pick(c.fillers, int(m.sum()), rng),
                ),
                (np.flatnonzero(~m), T.rand_pick(c.chat, int((~m).sum()), rng)),
            ],
        )
        src = np.where(g.extra["app"][ex.acct] % 3 == 0, CODE, CONV)
        return Content(body, false, src, src)
    if g.kind == "enterprise_batch":
        which = g.extra["templates"][ex.acct, (rng.random(n) < 0.3).astype(np.int64)]
        ids = T.numbers(n, rng, 10_000, 99_999_999)
        # Each tenant numbers its records its own way (or not at all).
        prefix_idx = g.extra["templates"][ex.acct, 0] % len(T.BATCH_FILLERS_PREFIX)
        pre = T.render(T.BATCH_FILLERS_PREFIX, prefix_idx, n=ids)
        prompt = T.join(
            T.pick(c.t0_prefix, which),
            pre,
            T.rand_pick(c.fillers, n, rng),
            T.pick(c.t0_suffix, which),
        )
        return Content(prompt, false, np.full(n, CODE), np.full(n, CODE))
    if g.kind == "agent":
        first = np.flatnonzero(ex.turn == 0)
        later = np.flatnonzero(ex.turn > 0)
        empty = rng.random(len(later)) < 0.6
        later_txt = _assemble(
            len(later),
            [
                (np.flatnonzero(empty), pa.array([""] * int(empty.sum()), type=pa.string())),
                (np.flatnonzero(~empty), T.rand_pick(T.FOLLOW_UPS, int((~empty).sum()), rng)),
            ],
        )
        prompt = _assemble(
            n,
            [
                (
                    first,
                    T.join(
                        T.rand_pick(_AGENT_LEADS, len(first), rng),
                        T.rand_pick(c.agent, len(first), rng),
                    ),
                ),
                (later, later_txt),
            ],
        )
        return Content(prompt, false, np.full(n, MOON), np.full(n, MOON))
    if g.kind == "gray_synthetic":
        tpl = rng.integers(0, len(T.GRAY_TEMPLATES), n)
        prompt = T.render(
            T.GRAY_TEMPLATES,
            tpl,
            n=T.numbers(n, rng, 5, 200),
            topic=T.rand_pick(T.GRAY_TOPICS, n, rng),
        )
        return Content(prompt, false, np.full(n, CONV), np.full(n, R1))
    return _attack_content(g, ex, rng)


_MIX = {
    # capability shares: reasoning, rubric, rewrite, code, agentic, computer, math
    "deepseek_like": [0.35, 0.3, 0.2, 0.0, 0.0, 0.0, 0.15],
    "moonshot_like": [0.1, 0.0, 0.0, 0.35, 0.35, 0.15, 0.05],
    "minimax_like": [0.4, 0.0, 0.0, 0.3, 0.0, 0.0, 0.3],
    "hydra": [0.3, 0.0, 0.0, 0.25, 0.15, 0.0, 0.3],
}


def _attack_content(g: Group, ex: Exchanges, rng: np.random.Generator) -> Content:
    assert g.spec is not None
    n = len(ex.acct)
    c = T.corpus()
    camo = g.spec.camouflage
    cover_share = g.spec.relay_share + camo.benign_mix
    cover = rng.random(n) < cover_share
    harvest = np.flatnonzero(~cover)
    cov = np.flatnonzero(cover)
    parts: list[tuple[Arr, pa.Array]] = []
    in_src = np.full(n, CONV)
    out_src = np.full(n, R1)
    tools = np.zeros(n, dtype=np.int64)
    if len(cov):
        # Relayed end-user requests (hydra) and cover traffic look like ordinary chat.
        hw = np.full(len(cov), 0.15)
        p, _, o = _chatty(np.zeros(len(cov), dtype=np.int64), hw, rng)
        parts.append((cov, p))
        out_src[cov] = o
    cap = rng.choice(7, len(harvest), p=np.array(_MIX[g.kind]) / sum(_MIX[g.kind]))
    style = g.extra
    elicit = rng.random(len(harvest)) < camo.elicitation
    for k in range(7):
        sel_local = np.flatnonzero(cap == k)
        if not len(sel_local):
            continue
        sel = harvest[sel_local]
        m = len(sel)
        e = elicit[sel_local]
        if k in (0, 6):
            body = (
                T.rand_pick(c.chat if k == 0 else c.homework, m, rng)
                if camo.paraphrase >= 0.5
                else _sweep(g, c.chat if k == 0 else c.homework, m)
            )
            txt = _wrap(body, e, style, camo.paraphrase, rng)
        elif k == 1:
            q = T.rand_pick(c.homework, m, rng)
            r = T.join(
                "The answer is ", T.numbers(m, rng, 1, 500), ". ", T.rand_pick(c.fillers, m, rng)
            )
            txt = T.render(
                T.RUBRIC_TEMPLATES,
                _styled(len(T.RUBRIC_TEMPLATES), m, camo.paraphrase, rng, g),
                q=q,
                r=r,
            )
        elif k == 2:
            txt = T.render(
                T.REWRITE_TEMPLATES,
                _styled(len(T.REWRITE_TEMPLATES), m, camo.paraphrase, rng, g),
                r=T.rand_pick(c.fillers, m, rng),
            )
            out_src[sel] = CONV
        elif k == 3:
            body = T.rand_pick(c.code, m, rng)
            wrapped = T.render(
                T.CODE_WRAPPERS, _styled(len(T.CODE_WRAPPERS), m, camo.paraphrase, rng, g), q=body
            )
            txt = _assemble(
                m,
                [
                    (np.flatnonzero(e), wrapped.take(pa.array(np.flatnonzero(e)))),
                    (np.flatnonzero(~e), body.take(pa.array(np.flatnonzero(~e)))),
                ],
            )
            in_src[sel] = CODE
        elif k == 4:
            body = T.rand_pick(c.agent, m, rng)
            wrapped = T.render(
                T.AGENT_WRAPPERS, _styled(len(T.AGENT_WRAPPERS), m, camo.paraphrase, rng, g), q=body
            )
            txt = _assemble(
                m,
                [
                    (np.flatnonzero(e), wrapped.take(pa.array(np.flatnonzero(e)))),
                    (np.flatnonzero(~e), body.take(pa.array(np.flatnonzero(~e)))),
                ],
            )
            tools[sel] = _toolset(g, ex.acct[sel], rng)
            in_src[sel] = MOON
        else:
            txt = T.render(
                T.COMPUTER_USE,
                _styled(len(T.COMPUTER_USE), m, camo.paraphrase, rng, g),
                g=T.rand_pick(T.COMPUTER_GOALS, m, rng),
            )
            tools[sel] = _toolset(g, ex.acct[sel], rng)
            in_src[sel] = MOON_SYN
        parts.append((sel, txt))
    # Later turns of agentic sessions carry tool results, not a new user message.
    prompt = _assemble(n, parts)
    later = ex.turn > 0
    if later.any():
        prompt = pc.if_else(pa.array(later), pa.scalar("", pa.string()), prompt)
    is_attack = ~cover
    return Content(prompt, is_attack, in_src, out_src, tools)


def _toolset(g: Group, acct: Arr, rng: np.random.Generator) -> Arr:
    sets: Arr = g.extra["toolsets"]
    return np.asarray(sets[acct, (rng.random(len(acct)) < 0.3).astype(np.int64)], dtype=np.int64)


def _sweep(g: Group, pool: pa.Array, m: int) -> pa.Array:
    # Lazy harvesters walk a dataset in order: systematic topic coverage.
    cursor = int(g.extra.get("cursor", 0))
    g.extra["cursor"] = cursor + m
    return T.pick(pool, (cursor + np.arange(m)) % len(pool))


def _styled(size: int, m: int, paraphrase: float, rng: np.random.Generator, g: Group) -> Arr:
    k = max(1, round(1 + paraphrase * (size - 1)))
    allowed = np.random.default_rng([_name_seed(g.name), size, k]).choice(size, k, replace=False)
    return np.asarray(allowed[rng.integers(0, k, m)], dtype=np.int64)


def _wrap(
    body: pa.Array, elicit: Arr, style: dict[str, Any], paraphrase: float, rng: np.random.Generator
) -> pa.Array:
    m = len(body)
    lead = T.pick(T.ATTACK_LEADS, style["leads"][rng.integers(0, len(style["leads"]), m)])
    cot_idx = style["cot"][rng.integers(0, len(style["cot"]), m)]
    cot = _assemble(
        m,
        [
            (np.flatnonzero(elicit), T.pick(T.ATTACK_COT, cot_idx[elicit])),
            (np.flatnonzero(~elicit), pa.array([""] * int((~elicit).sum()), type=pa.string())),
        ],
    )
    fmt = T.pick(T.ATTACK_FORMATS, style["formats"][rng.integers(0, len(style["formats"]), m)])
    seps = _SEPS if paraphrase >= 0.5 else _SEP_PLAIN
    sep = T.rand_pick(seps, m, rng)
    # Trim so an empty demand leaves no dangling separator: whitespace must not be a tell.
    demand = pc.utf8_trim_whitespace(T.join(cot, " ", fmt))
    after = pc.utf8_trim_whitespace(T.join(lead, body, sep, demand))
    if not style["demand_first"]:
        return after
    before = pc.utf8_trim_whitespace(T.join(demand, sep, lead, body))
    first = rng.random(m) < 0.4
    return pc.if_else(pa.array(first), before, after)


# -- columns -------------------------------------------------------------------------


def _table(
    g: Group,
    ex: Exchanges,
    content: Content,
    ctx: Ctx,
    rng: np.random.Generator,
    start_us: int,
    account_ids: pa.Array,
    model_override: Arr | None = None,
) -> pa.Table:
    n = len(ex.acct)
    a = ex.acct
    infra = ctx.infra
    # model
    if model_override is not None:
        model = model_override
    else:
        cp = np.cumsum(g.model_p[a], axis=1)
        model = (rng.random(n)[:, None] > cp).sum(axis=1).clip(0, 2)
        adopt = (
            (ex.ts >= g.adopt_at[a]) & (ex.ts >= ctx.release_s) & (rng.random(n) < g.adopt_share[a])
        )
        model = np.where(adopt, 3, model)
    endpoint = np.where(rng.random(n) < g.endpoint_mix, rng.integers(0, 4, n), g.endpoint[a])
    ips = g.ip.draw(a, rng)
    asn_i = infra.asn_index_of_ip(ips)
    ua = g.ua.draw(a, rng)
    sys_idx = g.system_idx[a]
    system = _dict(
        ctx, "system_prompt", g.extra["sys_offset"] + np.maximum(sys_idx, 0), sys_idx < 0
    )
    prompt_tok = (
        np.asarray(pc.utf8_length(content.prompt).to_numpy(zero_copy_only=False), dtype=np.float64)
        / 3.6
    )
    sys_tok = np.array([len(s) / 3.6 for s in g.systems] + [0.0])[
        np.where(sys_idx >= 0, sys_idx, len(g.systems))
    ]
    # Chat traces are per request; agent traces (Mooncake) already include the history.
    growth = np.where(content.in_src == CONV, np.minimum(1.0 + 0.15 * ex.turn, 3.0), 1.0)
    sampled = _sample_len(content.in_src, "in", rng) * np.where(
        g.kind == "enterprise_batch", 0.25, 1.0
    )
    input_tokens = np.maximum(prompt_tok + sys_tok + 8, sampled * growth).astype(np.int64)
    output = _sample_len(content.out_src, "out", rng)
    reasoning = np.isin(model, (2, 3))
    output = np.where(
        reasoning & (content.out_src != R1), output * rng.uniform(1.5, 4.0, n), output
    )
    max_tokens = g.max_tokens[a]
    output = np.where(max_tokens > 0, np.minimum(output, max_tokens), output).astype(np.int64) + 1
    reasoning_tokens = np.where(reasoning, (output * rng.uniform(0.4, 0.9, n)).astype(np.int64), 0)
    logprobs = rng.random(n) < g.logprobs[a]
    temp = g.temperature[a]
    if content.tools is not None:
        tools = np.maximum(content.tools, g.tools[a] * (content.tools > 0))
    elif "toolsets" in g.extra:
        tools = np.where(g.tools[a] > 0, _toolset(g, a, rng), 0)
    else:
        tools = g.tools[a]
    has_sys = sys_idx >= 0
    status = np.where(rng.random(n) < 0.006, 429, np.where(rng.random(n) < 0.003, 500, 200))
    latency = (180 + output * rng.uniform(8, 25, n)) * np.exp(0.3 * rng.standard_normal(n))
    conv_flag = (g.turns_mean > 1) | (g.payment[a] % 4 == 0)
    conv_ids = hex_ids("", ex.conv, SALT_CONV, 16)
    ts_us = (start_us + np.round(ex.ts * 1e6)).astype(np.int64)

    def masked(values: pa.Array, keep: Arr) -> pa.Array:
        return pc.if_else(pa.array(keep), values, pa.scalar(None, values.type))

    cols: dict[str, pa.Array] = {
        "exchange_id": pa.nulls(n, pa.string()),  # assigned after the chunk is sorted
        "ts": pa.array(ts_us, type=pa.int64()).cast(TS_TYPE),
        "account_id": account_ids.take(pa.array(a)),
        "model": _dict(ctx, "model", model),
        "prompt": content.prompt,
        "input_tokens": pa.array(input_tokens),
        "output_tokens": pa.array(output),
        "api_key_id": hex_ids("key-", g.keys.draw(a, rng).astype(np.uint64), SALT_KEY, 16),
        "org_id": hex_ids("org-", g.org[a].astype(np.uint64), SALT_ORG, 12),
        "endpoint": _dict(ctx, "endpoint", endpoint),
        "ip": ip_strings(ips),
        "asn": pa.array(infra.asn[asn_i]),
        "country": pa.array(
            np.array(COUNTRIES, dtype=object)[infra.country[asn_i]], type=pa.string()
        ),
        "user_agent": _dict(ctx, "user_agent", ua),
        "payment_fingerprint": hex_ids("pm-", g.payment[a].astype(np.uint64), SALT_PAY, 16),
        "system_prompt": system,
        "conversation_id": masked(conv_ids, conv_flag),
        "turn_index": pa.array(ex.turn.astype(np.int64)),
        "messages_count": pa.array(
            (1 + 2 * ex.turn + has_sys + (tools > 0) * ex.turn).astype(np.int64)
        ),
        "reasoning_tokens": pa.array(reasoning_tokens),
        "max_tokens": pa.array(max_tokens.astype(np.int64), mask=max_tokens <= 0),
        "temperature": pa.array(temp, mask=np.isnan(temp)),
        "top_p": pa.array(
            np.where(g.payment[a] % 5 == 0, 0.95, np.nan), mask=g.payment[a] % 5 != 0
        ),
        "n": pa.array(g.n_choices[a].astype(np.int64)),
        "logprobs": pa.array(logprobs),
        "top_logprobs": pa.array(np.full(n, 5, dtype=np.int64), mask=~logprobs),
        "tools_count": pa.array(tools.astype(np.int64)),
        "stream": pa.array(rng.random(n) < g.stream[a]),
        "status": pa.array(status.astype(np.int64)),
        "latency_ms": pa.array(latency),
        "response_text": pa.nulls(n, pa.string()),
    }
    arrays = [
        cols[c.name] if c.name in DICT_COLUMNS else cols[c.name].cast(c.arrow_type)
        for c in EXCHANGE_COLUMNS
    ]
    arrays.append(pa.array(content.is_attack))
    names = [c.name for c in EXCHANGE_COLUMNS] + ["__is_attack"]
    return pa.Table.from_arrays(arrays, names=names)


DICT_COLUMNS = ("model", "endpoint", "user_agent", "system_prompt")
LOW_CARDINALITY = ("account_id", "org_id", "payment_fingerprint", "api_key_id", "country", "asn")


def _dict(ctx: Ctx, name: str, idx: Arr, null: Arr | None = None) -> pa.Array:
    indices = pa.array(idx.astype(np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(indices, ctx.dicts[name])


def _writer_schema() -> pa.Schema:
    fields = []
    for c in EXCHANGE_COLUMNS:
        typ = pa.dictionary(pa.int32(), pa.string()) if c.name in DICT_COLUMNS else c.arrow_type
        fields.append(pa.field(c.name, typ, nullable=not c.required))
    return pa.schema(fields)


# -- driver --------------------------------------------------------------------------


def _build_groups(scenario: Scenario, scale_name: str, ctx: Ctx, seed: int) -> list[Group]:
    scale = SCALES[scale_name]
    groups: list[Group] = []
    for i, pspec in enumerate(scenario.populations):
        n = scaled_accounts(pspec.accounts, scale.factor, pspec.min_accounts)
        groups.append(build_population(pspec, n, ctx, np.random.default_rng([seed, 1, i])))
    for i, cspec in enumerate(scenario.campaigns):
        n = scaled_accounts(cspec.accounts, scale.factor, cspec.min_accounts)
        groups.append(build_campaign(cspec, n, ctx, np.random.default_rng([seed, 2, i])))
    total = sum(g.n for g in groups)
    # Account numbers are a random permutation over all groups, hashed into ids: neither
    # the id nor its numeric order says which population an account belongs to.
    perm = np.random.default_rng([seed, 3]).permutation(total)
    pos = 0
    for g in groups:
        g.gidx = perm[pos : pos + g.n]
        pos += g.n
    return groups


def run(
    out_dir: Path,
    *,
    seed: int = 0,
    scale: str = "default",
    scenario: Scenario | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    if scale not in SCALES:
        from distillguard.errors import DistillGuardError

        raise DistillGuardError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    scenario = scenario or Scenario()
    sc = SCALES[scale]
    seconds = sc.days * DAY
    start = datetime.fromisoformat(scenario.start)
    start_us = int(start.timestamp() * 1_000_000)
    ctx = Ctx(
        infra=Infra.build(seed),
        seconds=seconds,
        release_s=RELEASE_FRAC * seconds,
        rng=np.random.default_rng([seed, 9]),
    )
    groups = _build_groups(scenario, scale, ctx, seed)
    offset = 0
    for g in groups:
        g.extra["sys_offset"] = offset
        offset += len(g.systems)
    ctx.dicts.update(
        system_prompt=pa.array([s for g in groups for s in g.systems], type=pa.string()),
        user_agent=pa.array(ctx.infra.user_agents, type=pa.string()),
        model=pa.array(list(MODELS), type=pa.string()),
        endpoint=pa.array(list(ENDPOINTS), type=pa.string()),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    account_ids = [
        hex_ids("acct-", g.gidx.astype(np.uint64), SALT_ACCOUNT + seed, 12) for g in groups
    ]
    _write_accounts(out_dir, groups, account_ids, ctx, start_us)

    schema = _writer_schema()
    # Repeated strings travel as dictionaries (cheap to sort and write); without the stored
    # Arrow schema readers see the contract's plain string columns.
    ex_writer = pq.ParquetWriter(
        out_dir / "exchanges.parquet",
        schema,
        compression="zstd",
        store_schema=False,
        use_dictionary=[*DICT_COLUMNS, *LOW_CARDINALITY],
    )
    tr_writer = pq.ParquetWriter(
        out_dir / "truth_exchanges.parquet", truth_exchange_schema(), compression="zstd"
    )
    n_hours = sc.days * 24
    chunks = list(range(0, n_hours, sc.chunk_hours))
    pending: pa.Table | None = None
    written = 0
    attack_rows = 0
    per_group = {g.name: 0 for g in groups}
    counter = [0]
    try:
        for ci, h0 in enumerate(chunks):
            h1 = min(n_hours, h0 + sc.chunk_hours)
            tables: list[pa.Table] = [] if pending is None else [pending]
            for gi, g in enumerate(groups):
                rng = np.random.default_rng([seed, 4, ci, gi])
                if g.timing == "runs":
                    ex, _items, models = _benchmark_runs(g, h0, h1, rng, counter)
                    content = _bench_content(g, ex, _items, rng)
                    tab = _table(g, ex, content, ctx, rng, start_us, account_ids[gi], models)
                else:
                    ex = _expand(g, _sessions(g, h0, h1, ctx, rng), ctx, rng, counter)
                    if not len(ex.acct):
                        continue
                    tab = _table(g, ex, _content(g, ex, rng), ctx, rng, start_us, account_ids[gi])
                per_group[g.name] += tab.num_rows
                tables.append(tab)
            chunk = pa.concat_tables(tables)
            chunk = chunk.take(pc.sort_indices(chunk, [("ts", "ascending")]))
            last = ci == len(chunks) - 1
            if not last:
                cut_us = start_us + int(h1 * HOUR * 1e6)
                n_emit = int(np.searchsorted(chunk["ts"].cast(pa.int64()).to_numpy(), cut_us))
                pending = chunk.slice(n_emit)
                chunk = chunk.slice(0, n_emit)
            if chunk.num_rows:
                ids = hex_ids(
                    "",
                    np.arange(written, written + chunk.num_rows, dtype=np.uint64),
                    SALT_EXCHANGE + seed,
                    16,
                )
                is_attack = chunk["__is_attack"]
                chunk = chunk.drop_columns(["__is_attack"]).set_column(0, "exchange_id", ids)
                ex_writer.write_table(chunk.cast(schema), row_group_size=256_000)
                tr_writer.write_table(
                    pa.table(
                        {"exchange_id": ids, "is_attack": is_attack}, schema=truth_exchange_schema()
                    )
                )
                attack_rows += int(pc.sum(is_attack).as_py() or 0)
                written += chunk.num_rows
            if progress is not None:
                progress(ci + 1, len(chunks))
    finally:
        ex_writer.close()
        tr_writer.close()
    populations: dict[str, dict[str, int]] = {}
    for g in groups:
        p = populations.setdefault(g.population, {"accounts": 0, "exchanges": 0})
        p["accounts"] += g.n
        p["exchanges"] += per_group[g.name]
    return {
        "rows": written,
        "attack_rows": attack_rows,
        "accounts": sum(g.n for g in groups),
        "attack_accounts": sum(g.n for g in groups if g.label == "attack"),
        "populations": populations,
        "campaigns": {
            g.name: {"accounts": g.n, "exchanges": per_group[g.name]}
            for g in groups
            if g.campaign_id
        },
        "days": sc.days,
        "scale": scale,
        "seed": seed,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "out_dir": str(out_dir),
    }


def _bench_content(g: Group, ex: Exchanges, items: Arr, rng: np.random.Generator) -> Content:
    c = T.corpus()
    n = len(ex.acct)
    bench = items // 10_000
    item = items % 10_000
    parts: list[tuple[Arr, pa.Array]] = []
    for b, pool in enumerate((c.gsm8k, c.math, c.code)):
        sel = np.flatnonzero(bench == b)
        if not len(sel):
            continue
        body = T.pick(pool, item[sel] % len(pool))
        fidx = (g.extra["code_fmt"] if b == 2 else g.extra["math_fmt"])[ex.acct[sel]]
        pre = T.pick(_FMT_PARTS[b][0], fidx)
        post = T.pick(_FMT_PARTS[b][1], fidx)
        parts.append((sel, T.join(pre, body, post)))
    out_src = np.where(bench == 2, CODE, R1)
    return Content(_assemble(n, parts), np.zeros(n, dtype=bool), np.full(n, R1), out_src)


def _write_accounts(
    out_dir: Path, groups: list[Group], account_ids: list[pa.Array], ctx: Ctx, start_us: int
) -> None:
    rng = np.random.default_rng(7)
    rows: dict[str, list[pa.Array]] = {c.name: [] for c in ACCOUNT_COLUMNS}
    truth: dict[str, list[pa.Array]] = {f.name: [] for f in truth_account_schema()}
    for g, ids in zip(groups, account_ids, strict=True):
        idx = np.arange(g.n)
        rows["account_id"].append(ids)
        rows["created_at"].append(
            pa.array((start_us + g.created_at * 1e6).astype(np.int64)).cast(TS_TYPE)
        )
        rows["email_domain"].append(pa.array(g.email_domain.astype(str), type=pa.string()))
        rows["payment_fingerprint"].append(
            hex_ids("pm-", g.payment.astype(np.uint64), SALT_PAY, 16)
        )
        rows["signup_ip"].append(ip_strings(g.ip.draw(idx, rng)))
        rows["country"].append(
            pa.array(np.array(COUNTRIES, dtype=object)[g.acct_country], type=pa.string())
        )
        rows["tier"].append(pa.array(g.tier.astype(str), type=pa.string()))
        rows["verified"].append(pa.array(g.verified.astype(bool)))
        truth["account_id"].append(ids)
        truth["label"].append(pa.array([g.label] * g.n, type=pa.string()))
        truth["population"].append(pa.array([g.population] * g.n, type=pa.string()))
        truth["campaign_id"].append(pa.array([g.campaign_id] * g.n, type=pa.string()))
    order = pa.array(np.argsort(np.concatenate([g.gidx for g in groups])))
    acc = pa.table(
        {c.name: pa.concat_arrays(rows[c.name]).cast(c.arrow_type) for c in ACCOUNT_COLUMNS}
    )
    pq.write_table(acc.take(order), out_dir / "accounts.parquet", compression="zstd")
    tru = pa.table(
        {k: pa.concat_arrays(v) for k, v in truth.items()}, schema=truth_account_schema()
    )
    pq.write_table(tru.take(order), out_dir / "truth_accounts.parquet", compression="zstd")
