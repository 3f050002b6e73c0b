"""The official OpenAI and Anthropic SDKs, unmodified, through the gateway to a stub upstream."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pyarrow.parquet as pq
import pytest

from distillguard.gateway import Gateway, GatewayConfig, GatewayPolicy
from distillguard.gateway.testing import ServerThread, StubThread
from distillguard.schema import EXCHANGE_COLUMN_NAMES

KEY = "sk-test-very-secret-key-123"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, ServerThread]]:
    log_dir = tmp_path_factory.mktemp("gwlog")
    with StubThread() as stub:
        # "/v1" on the upstream URL on purpose: both spellings must work
        cfg = GatewayConfig(upstream=stub.url + "/v1", policy=GatewayPolicy(), log_dir=log_dir)
        gw = Gateway(cfg, classifier=None)
        with ServerThread(gw) as server:
            yield gw, server


@pytest.fixture
def oai(stack: tuple[Gateway, ServerThread]) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack[1].url + "/v1", api_key=KEY, max_retries=0, timeout=10)


@pytest.fixture
def ant(stack: tuple[Gateway, ServerThread]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack[1].url, api_key=KEY, max_retries=0, timeout=10)


def post(url: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


MSG: Any = [{"role": "user", "content": "What is six times seven?"}]


def test_openai_chat_json(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content == "The answer is forty-two."
    assert r.usage is not None and r.usage.prompt_tokens == 9


def test_openai_chat_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="m", messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    parts = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(parts) == "The answer is forty-two."


def test_openai_tool_calls(oai: openai.OpenAI) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    r = oai.chat.completions.create(model="m", messages=MSG, tools=tools)
    call = r.choices[0].message.tool_calls
    assert call and call[0].function.name == "weather"  # type: ignore[union-attr]


def test_openai_responses_and_completions_and_models(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="m", input="hello")
    assert r.output_text == "The answer is forty-two."
    with oai.responses.stream(model="m", input="hello") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    assert text == "The answer is forty-two."
    c = oai.completions.create(model="m", prompt="Say it")
    assert c.choices[0].text == "The answer is forty-two."
    assert [m.id for m in oai.models.list()] == ["stub-model"]


def test_openai_upstream_errors_pass_through(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(model="error-429", messages=MSG)
    assert err.value.code == "stub_429"
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="error-500", messages=MSG)


def test_openai_cut_stream_raises(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError, match="upstream stream ended"):
        for _ in oai.chat.completions.create(model="cut", messages=MSG, stream=True):
            pass


def test_anthropic_json_stream_tools(ant: anthropic.Anthropic) -> None:
    r = ant.messages.create(model="m", max_tokens=50, messages=MSG)
    assert r.content[0].text == "The answer is forty-two."  # type: ignore[union-attr]
    with ant.messages.stream(model="m", max_tokens=50, messages=MSG) as s:
        assert "".join(s.text_stream) == "The answer is forty-two."
    tools: Any = [{"name": "weather", "input_schema": {"type": "object"}}]
    r = ant.messages.create(model="m", max_tokens=50, messages=MSG, tools=tools)
    assert r.stop_reason == "tool_use" and r.content[0].type == "tool_use"


def test_anthropic_upstream_errors(ant: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError):
        ant.messages.create(model="error-429", max_tokens=5, messages=MSG)
    with (
        pytest.raises(anthropic.APIError, match="upstream stream ended"),
        ant.messages.stream(model="cut", max_tokens=5, messages=MSG) as s,
    ):
        for _ in s:
            pass


def test_malformed_json_gets_400_in_each_format(stack: tuple[Gateway, ServerThread]) -> None:
    url = stack[1].url
    status, body = post(url + "/v1/chat/completions", b"{nope")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = post(url + "/v1/messages", b"[1,2")
    assert status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    status, body = post(url + "/v1/messages", b"[1, 2]")  # valid JSON, not an object
    assert status == 400 and body["error"]["code"] == "invalid_json"


def test_decision_log_has_contract_schema_and_no_raw_key(
    stack: tuple[Gateway, ServerThread], oai: openai.OpenAI
) -> None:
    gw, server = stack
    oai.chat.completions.create(model="m", messages=MSG)
    server.call(gw.flush())
    assert gw.config.log_dir is not None
    files = sorted(Path(gw.config.log_dir).glob("exchanges-*.parquet"))
    assert files
    table = pq.read_table(files)
    assert set(EXCHANGE_COLUMN_NAMES) <= set(table.column_names)
    assert {"decision", "reasons"} <= set(table.column_names)
    rows = table.to_pylist()
    assert len(rows) == gw.log.rows_logged
    # requests refused by the input limits are logged too, under whoever sent them (the
    # malformed-JSON test above sends no key: "anonymous")
    refused = [r for r in rows if r["decision"] == "rejected"]
    assert all(r["status"] == 400 and r["reasons"][0].startswith("limits: ") for r in refused)
    assert all(r["account_id"] == "anonymous" and r["model"] == "unknown" for r in refused)
    keyed = [r for r in rows if r["decision"] != "rejected"]
    assert keyed and all(r["api_key_id"] and r["api_key_id"].startswith("k_") for r in keyed)
    assert all(r["decision"] == "allow" for r in rows if r["status"] == 200)
    for f in Path(gw.config.log_dir).iterdir():
        assert KEY.encode() not in f.read_bytes()
    chat = [r for r in rows if r["endpoint"] == "chat.completions" and r["status"] == 200]
    assert chat[0]["prompt"] == "What is six times seven?"
    assert chat[0]["input_tokens"] == 9 and chat[0]["output_tokens"] == 6
