"""A stand-in upstream that speaks enough OpenAI and Anthropic for tests and benchmarks.

``python -m distillguard.gateway.stub --port 8001`` serves it. The request's ``model``
selects behaviour: ``error-429`` / ``error-500`` answer that error in the API's format,
``slow`` sleeps 2 s, ``cut`` breaks a stream half-way, ``think`` adds reasoning
(``reasoning_content``, ``<think>`` blocks, Anthropic thinking blocks, Responses reasoning
items). Requests with ``tools`` get a tool call back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from typing import Any

import orjson
from aiohttp import web

_ids = itertools.count()
WORDS = ("The", " answer", " is", " forty", "-two", ".")


def _openai_error(status: int) -> web.Response:
    body = {
        "error": {
            "message": f"stub error {status}",
            "type": "stub",
            "param": None,
            "code": f"stub_{status}",
        }
    }
    return web.json_response(body, status=status, headers={"retry-after": "0"})


def _anthropic_error(status: int) -> web.Response:
    etype = "rate_limit_error" if status == 429 else "api_error"
    body = {"type": "error", "error": {"type": etype, "message": f"stub error {status}"}}
    return web.json_response(body, status=status, headers={"retry-after": "0"})


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


async def _stream(request: web.Request, events: list[bytes], cut: bool) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i, ev in enumerate(events):
        if cut and i == len(events) // 2:
            assert request.transport is not None
            request.transport.close()  # no terminating chunk: the client sees a cut stream
            return resp
        await resp.write(ev)
    await resp.write_eof()
    return resp


async def _pre(request: web.Request, anthropic: bool) -> tuple[dict[str, Any], web.Response | None]:
    body = orjson.loads(await request.read())
    model = str(body.get("model", ""))
    err = _anthropic_error if anthropic else _openai_error
    if model.startswith("error-"):
        return body, err(int(model[6:]))
    if model == "slow":
        await asyncio.sleep(2.0)
    return body, None


async def chat(request: web.Request) -> web.StreamResponse:
    body, err = await _pre(request, False)
    if err is not None:
        return err
    model = body["model"]
    think = model == "think"
    rid = f"chatcmpl-{next(_ids)}"
    text = "".join(WORDS)
    n = int(body.get("n") or 1)
    if body.get("stream"):
        events = []
        for piece in (["<think>plan</think>"] if think else []) + list(WORDS):
            delta: dict[str, Any] = {"content": piece}
            if think:
                delta["reasoning_content"] = "hmm"
            events.append(
                _sse(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                    }
                )
            )
        events.append(
            _sse(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(
                _sse(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        return await _stream(request, events, model == "cut")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish = "stop"
    if body.get("tools"):
        tool = body["tools"][0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": tool, "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    elif think:
        message["content"] = "<think>secret plan</think>" + text
        message["reasoning_content"] = "step 1, step 2"
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish,
        "logprobs": None,
    }
    if body.get("logprobs"):
        choice["logprobs"] = {
            "content": [{"token": "The", "logprob": -0.1, "bytes": None, "top_logprobs": []}]
        }
    return web.json_response(
        {
            "id": rid,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{**choice, "index": i} for i in range(n)],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": 6 * n,
                "total_tokens": 9 + 6 * n,
                "completion_tokens_details": {"reasoning_tokens": 3 if think else 0},
            },
        }
    )


async def completions(request: web.Request) -> web.StreamResponse:
    body, err = await _pre(request, False)
    if err is not None:
        return err
    return web.json_response(
        {
            "id": f"cmpl-{next(_ids)}",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "text": "".join(WORDS), "finish_reason": "stop", "logprobs": None}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
        }
    )


def _response_obj(model: str, think: bool, status: str = "completed") -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if think:
        output.append(
            {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "I thought"}],
            }
        )
    output.append(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "".join(WORDS), "annotations": []}],
        }
    )
    return {
        "id": f"resp_{next(_ids)}",
        "object": "response",
        "created_at": 0,
        "model": model,
        "status": status,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 7,
            "output_tokens": 6,
            "total_tokens": 13,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 2 if think else 0},
        },
    }


async def responses(request: web.Request) -> web.StreamResponse:
    body, err = await _pre(request, False)
    if err is not None:
        return err
    model = body["model"]
    obj = _response_obj(model, model == "think")
    if not body.get("stream"):
        return web.json_response(obj)
    seq = itertools.count()
    events = [
        _sse(
            {
                "type": "response.created",
                "sequence_number": next(seq),
                "response": {**obj, "status": "in_progress", "output": []},
            },
            "response.created",
        )
    ]
    for i, item in enumerate(obj["output"]):
        events.append(
            _sse(
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": i,
                    "item": {**item, "content": [], "summary": []}
                    if item["type"] == "reasoning"
                    else {**item, "content": []},
                },
                "response.output_item.added",
            )
        )
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                _sse(
                    {
                        "type": "response.content_part.added",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": i,
                        "content_index": 0,
                        "part": part,
                    },
                    "response.content_part.added",
                )
            )
            for w in WORDS:
                events.append(
                    _sse(
                        {
                            "type": "response.output_text.delta",
                            "sequence_number": next(seq),
                            "item_id": item["id"],
                            "output_index": i,
                            "content_index": 0,
                            "delta": w,
                            "logprobs": [],
                        },
                        "response.output_text.delta",
                    )
                )
        events.append(
            _sse(
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": i,
                    "item": item,
                },
                "response.output_item.done",
            )
        )
    events.append(
        _sse(
            {"type": "response.completed", "sequence_number": next(seq), "response": obj},
            "response.completed",
        )
    )
    return await _stream(request, events, model == "cut")


async def messages(request: web.Request) -> web.StreamResponse:
    body, err = await _pre(request, True)
    if err is not None:
        return err
    model = body["model"]
    think = model == "think"
    mid = f"msg_{next(_ids)}"
    blocks: list[dict[str, Any]] = []
    if think:
        blocks.append({"type": "thinking", "thinking": "let me think", "signature": "sig"})
    stop = "end_turn"
    if body.get("tools"):
        blocks.append(
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": body["tools"][0]["name"],
                "input": {"city": "Paris"},
            }
        )
        stop = "tool_use"
    else:
        blocks.append({"type": "text", "text": "".join(WORDS)})
    usage = {"input_tokens": 8, "output_tokens": 6}
    msg = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return web.json_response(msg)
    events = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    **msg,
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 8, "output_tokens": 1},
                },
            },
            "message_start",
        )
    ]
    for i, b in enumerate(blocks):
        if b["type"] == "thinking":
            events.append(
                _sse(
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                    "content_block_start",
                )
            )
            events.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "thinking_delta", "thinking": "let me think"},
                    },
                    "content_block_delta",
                )
            )
            events.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "signature_delta", "signature": "sig"},
                    },
                    "content_block_delta",
                )
            )
        elif b["type"] == "tool_use":
            events.append(
                _sse(
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {**b, "input": {}},
                    },
                    "content_block_start",
                )
            )
            events.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
                    },
                    "content_block_delta",
                )
            )
        else:
            events.append(
                _sse(
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                    "content_block_start",
                )
            )
            for w in (["<think>x</think>"] if think else []) + list(WORDS):
                events.append(
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": w},
                        },
                        "content_block_delta",
                    )
                )
        events.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 6},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return await _stream(request, events, model == "cut")


async def models(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "object": "list",
            "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}],
        }
    )


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
