"""The ladder through the proxy: scan lists, degrade, verify/block, limits, shedding, decide."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.errors import ConfigError
from distillguard.features import SUM_COLUMNS
from distillguard.gateway import Gateway, GatewayConfig, GatewayPolicy, load_gateway_policy
from distillguard.gateway.config import RANK, ContentConfig, Limits, ListConfig, parse_gateway
from distillguard.gateway.config import Ladder as LadderConfig
from distillguard.gateway.content import ContentCheck, ContentResult
from distillguard.gateway.degrade import SSEDegrader, degrade_request, degrade_response
from distillguard.gateway.ladder import Ladder
from distillguard.gateway.lists import Listing
from distillguard.gateway.state import Observation
from distillguard.gateway.testing import ServerThread, StubThread

MSG: Any = [{"role": "user", "content": "Explain step by step."}]
KEYS = {
    "sk-camp": "acct-camp",
    "sk-flag": "acct-flag",
    "sk-block": "acct-block",
    "sk-ok": "acct-ok",
}


def write_scan(directory: Path, flagged: dict[str, float], campaign: list[str]) -> None:
    accounts = pa.table(
        {
            "account_id": [*flagged, *campaign],
            "score": [*flagged.values(), *([0.6] * len(campaign))],
            "flagged": [True] * (len(flagged) + len(campaign)),
            "campaign_id": [None] * len(flagged) + ["camp-1"] * len(campaign),
        }
    )
    camps = pa.table(
        {"campaign_id": ["camp-1"], "account_ids": [campaign], "score": [0.6], "accounts": [1]}
    )
    # written aside and renamed, as a scan would leave them complete
    for name, table in (("campaigns.parquet", camps), ("accounts.parquet", accounts)):
        pq.write_table(table, directory / ("." + name))
        (directory / ("." + name)).replace(directory / name)


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, ServerThread]]:
    tmp = tmp_path_factory.mktemp("pol")
    scan = tmp / "scan"
    scan.mkdir()
    write_scan(scan, {"acct-flag": 0.75, "acct-block": 0.99}, ["acct-camp"])
    keymap = tmp / "keys.json"
    keymap.write_text(json.dumps(KEYS))
    policy = GatewayPolicy(
        lists=ListConfig(flagged="verify", campaign="degrade", reload_s=0.1),
        limits=Limits(max_body_bytes=20_000, max_json_depth=8, max_header_bytes=4096),
    )
    with StubThread() as stub:
        cfg = GatewayConfig(
            upstream=stub.url,
            policy=policy,
            key_map=str(keymap),
            scan_dir=scan,
            log_dir=tmp / "log",
            key_secret=b"x" * 32,
        )
        gw = Gateway(cfg, classifier=None)
        with ServerThread(gw) as server:
            yield gw, server


def client(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=10)


def test_suspects_are_degraded_everyone_else_untouched(proxy: tuple[Gateway, ServerThread]) -> None:
    _, server = proxy
    ok = client(server, "sk-ok").chat.completions.create(
        model="think", messages=MSG, logprobs=True, n=2
    )
    assert len(ok.choices) == 2 and ok.choices[0].logprobs is not None
    assert "<think>" in (ok.choices[0].message.content or "")
    camp = client(server, "sk-camp").chat.completions.create(
        model="think", messages=MSG, logprobs=True, n=2
    )
    assert len(camp.choices) == 1 and camp.choices[0].logprobs is None
    assert camp.choices[0].message.content == "The answer is forty-two."
    assert "reasoning_content" not in camp.choices[0].message.model_dump()
    stream = client(server, "sk-camp").chat.completions.create(
        model="think", messages=MSG, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "The answer is forty-two."
    ant = anthropic.Anthropic(base_url=server.url, api_key="sk-camp", max_retries=0)
    with ant.messages.stream(model="think", max_tokens=50, messages=MSG) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "The answer is forty-two."  # type: ignore[union-attr]
    r = client(server, "sk-camp").responses.create(model="think", input="x")
    assert [o.type for o in r.output] == ["message"]


def test_verify_and_block_are_403_with_codes(proxy: tuple[Gateway, ServerThread]) -> None:
    _, server = proxy
    with pytest.raises(openai.PermissionDeniedError) as err:
        client(server, "sk-flag").chat.completions.create(model="m", messages=MSG)
    assert err.value.code == "verification_required"
    with pytest.raises(openai.PermissionDeniedError) as err:
        client(server, "sk-block").chat.completions.create(model="m", messages=MSG)
    assert err.value.code == "account_blocked"
    ant = anthropic.Anthropic(base_url=server.url, api_key="sk-block", max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        ant.messages.create(model="m", max_tokens=5, messages=MSG)


def test_scan_lists_hot_reload(proxy: tuple[Gateway, ServerThread]) -> None:
    gw, server = proxy
    assert gw.config.scan_dir is not None
    c = client(server, "sk-ok")
    c.chat.completions.create(model="m", messages=MSG)
    before = gw.lists.reloads
    write_scan(gw.config.scan_dir, {"acct-flag": 0.75, "acct-block": 0.99, "acct-ok": 0.75}, [])
    deadline = time.monotonic() + 5
    while gw.lists.reloads == before and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(model="m", messages=MSG)
    finally:
        write_scan(gw.config.scan_dir, {"acct-flag": 0.75, "acct-block": 0.99}, ["acct-camp"])
        deadline = time.monotonic() + 5
        while gw.lists.reloads < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)


def test_input_limits(proxy: tuple[Gateway, ServerThread]) -> None:
    gw, server = proxy
    url = server.url + "/v1/chat/completions"
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 30_000}]})
    status, _, body = http(url, big.encode())
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    deep: Any = "x"
    for _ in range(20):
        deep = [deep]
    status, _, body = http(url, json.dumps({"model": "m", "messages": deep}).encode())
    assert status == 400 and json.loads(body)["error"]["code"] == "json_too_deep"
    status, _, body = http(url, b"{}", headers={"x-big": "y" * 5000})
    assert status == 431
    status, _, body = http(server.url + "/v1/messages", b"{", {"anthropic-version": "2023-06-01"})
    assert status == 400 and json.loads(body)["type"] == "error"
    # each refused request is in the decision log, with the limit it broke
    server.call(gw.flush())
    assert gw.config.log_dir is not None
    rows = pq.read_table(sorted(gw.config.log_dir.glob("exchanges-*.parquet"))).to_pylist()
    refused = sorted((r["status"], r["reasons"][0]) for r in rows if r["decision"] == "rejected")
    assert refused == [
        (400, "limits: invalid_json"),
        (400, "limits: json_too_deep"),
        (413, "limits: body_too_large"),
        (431, "limits: headers_too_large"),
    ]


def test_decide_endpoint(proxy: tuple[Gateway, ServerThread]) -> None:
    _, server = proxy
    body = {"account_id": "acct-camp", "request": {"model": "m", "messages": MSG}, "ip": "1.2.3.4"}
    status, _, raw = http(server.url + "/v1/decide", json.dumps(body).encode())
    reply = json.loads(raw)
    assert status == 200 and reply["action"] == "degrade" and reply["reasons"]
    assert reply["reasons"][0].startswith("scan: campaign camp-1")
    body["account_id"] = "someone-new"
    reply = json.loads(http(server.url + "/v1/decide", json.dumps(body).encode())[2])
    assert reply["action"] == "allow" and 0 <= reply["score"] < 0.3
    body.update(ip="1.2.3.99", user_agent="sdk/2")
    reply = json.loads(http(server.url + "/v1/decide", json.dumps(body).encode())[2])
    assert reply["account"] == {
        "exchanges": 2,
        "distinct_ips": 2,
        "distinct_ip24s": 1,
        "distinct_user_agents": 1,
    }


def test_healthz_and_metrics(proxy: tuple[Gateway, ServerThread]) -> None:
    _, server = proxy
    status, _, raw = http(server.url + "/healthz")
    assert status == 200 and json.loads(raw)["status"] == "ok"
    status, _, raw = http(server.url + "/metrics")
    assert status == 200 and b"distillguard_requests_total" in raw


def test_overload_sheds_with_retry_after_and_health_answers(tmp_path: Path) -> None:
    policy = GatewayPolicy(limits=Limits(max_inflight=3))
    with StubThread() as stub:
        cfg = GatewayConfig(upstream=stub.url, policy=policy, log_dir=tmp_path)
        gw = Gateway(cfg, classifier=None)
        with ServerThread(gw) as server:
            results: list[tuple[int, dict[str, str]]] = []
            body = json.dumps({"model": "slow", "messages": MSG}).encode()

            def one() -> None:
                status, headers, _ = http(server.url + "/v1/chat/completions", body)
                results.append((status, headers))

            threads = [threading.Thread(target=one) for _ in range(10)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            t0 = time.monotonic()
            status, _, raw = http(server.url + "/healthz")
            assert status == 200 and json.loads(raw)["inflight"] == 3
            assert time.monotonic() - t0 < 1.0  # answered while the slow ones are held
            for t in threads:
                t.join(15)
            server.call(gw.flush())
    codes = sorted(s for s, _ in results)
    assert codes == [200] * 3 + [503] * 7
    shed = [h for s, h in results if s == 503]
    assert all(h.get("retry-after") == "1" for h in shed)
    # every request sent is one decision-log row, the shed ones included
    rows = pq.read_table(sorted(tmp_path.glob("exchanges-*.parquet"))).to_pylist()
    assert (
        sorted((r["status"], r["decision"]) for r in rows)
        == [(200, "allow")] * 3 + [(503, "shed")] * 7
    )
    assert all(r["reasons"] == ["overload: 3 in flight"] for r in rows if r["decision"] == "shed")
    assert all(r["endpoint"] == "chat.completions" for r in rows)


def test_policy_parsing_and_ladder() -> None:
    pol = load_gateway_policy()
    assert pol.source == "gateway.toml" and pol.rules and pol.content.mode == "async"
    with pytest.raises(ConfigError, match="unknown key 'trottle'"):
        parse_gateway({"ladder": {"trottle": 0.5}})
    with pytest.raises(ConfigError, match=r"gateway\.lists\.flagged"):
        parse_gateway({"lists": {"flagged": "nuke"}})
    with pytest.raises(ConfigError, match="feature"):
        parse_gateway({"rules": [{"feature": "nope", "min": 1}]})
    lad = Ladder(GatewayPolicy(ladder=LadderConfig(allow_accounts=("fp",))))
    hot = ContentResult(1.0, True, ("cot_elicitation",))
    listed = Listing(0.99, True, "c1")
    assert lad.decide("x", None, None, None).action == "allow"
    assert lad.decide("x", listed, None, None).action == "block"
    assert lad.decide("fp", listed, None, hot).action == "allow"  # known false positive
    d = lad.decide("y", None, None, hot)
    assert d.action == "watch" and d.reasons[0].startswith("content: elicitation 1.00")
    # an ordinary prompt's score (about 0.3, below the classifier's threshold) is no evidence
    plain = lad.decide("z", None, None, ContentResult(0.3, False, ()))
    assert plain.action == "allow" and plain.score == 0.0 and plain.reasons == ()


def test_degrade_transforms() -> None:
    from distillguard.gateway.config import DegradeConfig

    cfg = DegradeConfig(max_tokens=100, n=1)
    req = degrade_request(
        "chat.completions",
        {
            "n": 4,
            "logprobs": True,
            "top_logprobs": 5,
            "max_tokens": 9000,
            "reasoning_effort": "high",
        },
        cfg,
    )
    assert req == {"n": 1, "max_tokens": 100}
    assert degrade_request("messages", {"thinking": {"type": "enabled"}}, cfg) == {
        "max_tokens": 100
    }
    body = degrade_response(
        "messages",
        {
            "content": [
                {"type": "thinking", "thinking": "t"},
                {"type": "text", "text": "<think>a</think>b"},
            ]
        },
    )
    assert body["content"] == [{"type": "text", "text": "b"}]
    sse = SSEDegrader("chat.completions")
    pieces = ["<thi", "nk>secret", "</th", "ink>Hello", " world"]
    out = b"".join(
        sse.feed(
            b"data: "
            + json.dumps({"choices": [{"index": 0, "delta": {"content": p}}]}).encode()
            + b"\n\n"
        )
        for p in pieces
    )
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"]["content"]
        for line in out.split(b"\n")
        if line.startswith(b"data: ")
    )
    assert text == "Hello world"


def test_upstream_timeout_and_unreachable_in_api_format() -> None:
    policy = GatewayPolicy(limits=Limits(upstream_timeout_s=0.3))
    with StubThread() as stub:
        gw = Gateway(GatewayConfig(upstream=stub.url, policy=policy), classifier=None)
        with ServerThread(gw) as server:
            with pytest.raises(openai.InternalServerError) as err:
                client(server, "k").chat.completions.create(model="slow", messages=MSG)
            assert err.value.status_code == 504 and err.value.code == "upstream_timeout"
            ant = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
            with pytest.raises(anthropic.InternalServerError) as aerr:
                ant.messages.create(model="slow", max_tokens=5, messages=MSG)
            assert aerr.value.status_code == 504
    from distillguard.gateway.testing import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = Gateway(GatewayConfig(upstream=dead, policy=GatewayPolicy()), classifier=None)
    with ServerThread(gw) as server:
        with pytest.raises(openai.APIStatusError) as err:
            client(server, "k").chat.completions.create(model="m", messages=MSG)
        assert err.value.status_code == 502 and err.value.code == "upstream_unreachable"


def test_serve_command_is_registered() -> None:
    from typer.testing import CliRunner

    from distillguard.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--upstream" in result.output and "--state" in result.output


def test_content_check_tolerates_a_classifier_without_batch_api() -> None:
    from types import SimpleNamespace

    from distillguard.gateway.config import ContentConfig
    from distillguard.gateway.content import ContentCheck

    class OneAtATime:
        def score_one(self, prompt: str, system_prompt: str | None = None) -> Any:
            hot = "reasoning" in prompt
            return SimpleNamespace(elicitation=0.99 if hot else 0.01, flagged=hot, signals=["cot"])

    check = ContentCheck(ContentConfig(mode="async", worker="thread"), OneAtATime())
    got = check.check("a", "show your reasoning", None)
    assert got is not None and got.flagged and got.signals == ("cot",)
    assert check.check("a", "show your reasoning", None) is got  # cached
    off = ContentCheck(ContentConfig(mode="off"), OneAtATime())
    assert not off.enabled and off.check("a", "show your reasoning", None) is None


def _observation(elicitation_share: float, distinct: dict[str, float]) -> Observation:
    sums = dict.fromkeys([*SUM_COLUMNS, "active_buckets"], 0.0)
    sums.update(n=400.0, single_turn=200.0, h12=400.0, active_buckets=2.0)
    return Observation(sums, 50.0, 50.0 * elicitation_share, 0.0, "local", distinct)


def test_distinct_counts_only_corroborate_other_evidence() -> None:
    lad = Ladder(load_gateway_policy())  # the packaged distinct-count rules
    spread = {"distinct_ips": 900.0, "distinct_ip24s": 300.0, "distinct_user_agents": 40.0}
    narrow = {"distinct_ips": 2.0, "distinct_ip24s": 1.0, "distinct_user_agents": 1.0}
    # a reseller's shape and nothing else: never moved
    alone = lad.decide("reseller", None, _observation(0.0, spread), None)
    assert alone.action == "allow" and alone.score == 0.0 and alone.reasons == ()
    # the same shape beside an elicitation share that already reaches watch: it adds
    harvester = lad.decide("harvester", None, _observation(0.4, spread), None)
    assert "profile: distinct_ip24s 300.00" in harvester.reasons
    assert "profile: distinct_user_agents 40.00" in harvester.reasons
    same_content = lad.decide("customer", None, _observation(0.4, narrow), None)
    assert same_content.action == "watch"
    assert not any(r.startswith("profile:") for r in same_content.reasons)
    # together they reach the throttle rung: the suspect rate limit now applies to it
    lad_cfg = load_gateway_policy().ladder
    assert same_content.score < lad_cfg.throttle <= harvester.score
    assert harvester.reasons[0] == "rate: suspect limit applies"
    assert RANK[harvester.action] >= RANK[same_content.action]
    # content evidence below watch is not enough to let the shape count
    weak = lad.decide("weak", None, _observation(0.2, spread), None)
    assert not any(r.startswith("profile:") for r in weak.reasons)


def test_rules_over_distinct_counts_parse_and_validate() -> None:
    pol = parse_gateway(
        {"rules": [{"feature": "distinct_ip24s", "min": 5, "weight": 0.2, "corroborating": True}]}
    )
    assert pol.rules[0].feature == "distinct_ip24s" and pol.rules[0].corroborating
    with pytest.raises(ConfigError, match="corroborating"):
        parse_gateway({"rules": [{"feature": "distinct_ips", "min": 5, "corroborating": "yes"}]})


class _BothApis:
    """A stand-in classifier with the packaged one's two entry points."""

    def __init__(self) -> None:
        self.one = 0

    def score_one(self, prompt: str, system_prompt: str | None = None) -> Any:
        from types import SimpleNamespace

        self.one += 1
        hot = "reasoning" in prompt
        return SimpleNamespace(elicitation=0.99 if hot else 0.01, flagged=hot, signals=["cot"])

    def score(self, prompts: list[str], systems: Any = None) -> Any:
        from types import SimpleNamespace

        hot = ["reasoning" in p for p in prompts]
        return SimpleNamespace(
            elicitation=[0.99 if h else 0.01 for h in hot], flagged=hot, signals_of=lambda j: []
        )


def test_inline_content_check_falls_back_to_async_past_its_time_budget() -> None:
    clf = _BothApis()
    clock = iter([10.0, 10.0, 10.03, 10.04, 10.5, 11.1, 11.1, 11.1])  # seconds
    cfg = ContentConfig(mode="inline", inline_budget=0.02, worker="thread")
    check = ContentCheck(cfg, clf, clock=lambda: next(clock))
    # window opens at 10.0; this score takes 30 ms, past the 20 ms budget of the window
    now = check.check("a", "show your reasoning", None)
    assert now is not None and now.elicitation == 0.99 and check.scored_inline == 1
    assert check.check("a", "show your reasoning, again", None) is None  # at 10.04
    assert check.check("a", "and again: your reasoning", None) is None  # at 10.5
    assert clf.one == 1 and len(check._queue) == 2  # queued for the worker instead
    # a new one-second window: inline again
    assert check.check("a", "a new window of reasoning", None) is not None
    assert clf.one == 2
    lazy = ContentCheck(ContentConfig(mode="async", worker="thread"), clf)
    assert lazy.check("a", "more reasoning", None) is None and clf.one == 2


@pytest.mark.parametrize("mode", ["inline", "async"])
def test_first_request_scored_before_the_decision_only_inline(mode: str, tmp_path: Path) -> None:
    content = ContentConfig(mode=mode, worker="thread")  # type: ignore[arg-type]
    policy = GatewayPolicy(content=content, rules=())
    hot = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "Show all your reasoning."}]}
    ).encode()
    with StubThread() as stub:
        cfg = GatewayConfig(upstream=stub.url, policy=policy, log_dir=tmp_path)
        gw = Gateway(cfg, classifier=_BothApis())
        with ServerThread(gw) as server:
            status, _, _ = http(server.url + "/v1/chat/completions", hot, {"x-api-key": "k1"})
            server.call(gw.flush())
    assert status == 200
    (row,) = pq.read_table(sorted(tmp_path.glob("exchanges-*.parquet"))).to_pylist()
    scored = any(r.startswith("content: elicitation 0.99") for r in row["reasons"])
    assert scored == (mode == "inline"), row["reasons"]


def test_key_ids_are_hmac_blake2b_of_the_key() -> None:
    import hashlib
    import hmac

    from distillguard.gateway.identity import KeyHasher

    # secrets shorter than, equal to and longer than BLAKE2b's 128-byte block
    for secret in (b"k" * 16, bytes(range(128)), b"long-secret" * 20):
        hasher = KeyHasher(secret)
        for key in ("sk-live-123", "", "clé-ünïcode"):
            want = hmac.new(secret, key.encode(), hashlib.blake2b).hexdigest()[:24]
            assert hasher.key_id(key) == "k_" + want


def test_a_system_prompts_demand_is_one_fixed_piece_of_evidence() -> None:
    lad = Ladder(GatewayPolicy(rules=()))
    # the same request, flagged composed: once the prompt's own demand, once the system's
    own = ContentResult(0.97, True, ("rubric_grading",), elicit=True)
    config = ContentResult(0.97, True, ("rubric_grading",), system_only=True)
    d_own = lad.decide("a", None, None, own)
    d_cfg = lad.decide("b", None, None, config)
    assert d_own.reasons[0].startswith("content: elicitation 0.97")
    assert not any(r.startswith("content: elicitation") for r in d_cfg.reasons)
    assert d_cfg.reasons == ("content: the system prompt asks for training data",)
    assert d_cfg.score == pytest.approx(GatewayPolicy().content.system_weight)
    assert (d_cfg.action, d_own.action) == ("allow", "watch")
    # the account keeps it from an earlier request: the same fixed weight, not more
    obs = _observation(0.0, {})
    obs.content["c_sys_elicit"] = 400.0
    d_later = lad.decide("b", None, obs, None)
    assert d_later.score == pytest.approx(d_cfg.score) and d_later.action == "allow"
    # a policy weight of 0 ignores it
    off = Ladder(GatewayPolicy(content=ContentConfig(system_weight=0.0), rules=()))
    assert off.decide("b", None, obs, config).score == 0.0
    with pytest.raises(ConfigError, match="system_weight"):
        parse_gateway({"content": {"system_weight": 2.0}})
