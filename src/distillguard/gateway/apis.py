"""What the gateway knows about the OpenAI and Anthropic wire formats.

Routes, each API's own error body (so an SDK raises the error class its user expects),
the request fields the decision log records, and token usage in responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

Flavor = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Route:
    endpoint: str  # the CONTRACT §1 `endpoint` value
    flavor: Flavor


ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route("chat.completions", "openai"),
    "/v1/completions": Route("completions", "openai"),
    "/v1/responses": Route("responses", "openai"),
    "/v1/messages": Route("messages", "anthropic"),
}
# Read-only or token-counting calls: forwarded as they are, no decision, no log row.
PASSTHROUGH = ("/v1/models", "/v1/messages/count_tokens")

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    431: "invalid_request_error",
}


def flavor_of(path: str, headers: dict[str, str]) -> Flavor:
    """Which API's error format a request expects, even for paths we do not serve."""
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return "anthropic"
    return "openai"


def error_body(flavor: Flavor, status: int, code: str, message: str) -> bytes:
    if flavor == "anthropic":
        etype = _ANTHROPIC_TYPES.get(status, "api_error")
        # `code` is not part of Anthropic's schema; SDKs ignore unknown keys, machines read it.
        return orjson.dumps(
            {"type": "error", "error": {"type": etype, "message": message, "code": code}}
        )
    etype = _OPENAI_TYPES.get(status, "server_error")
    return orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})


def stream_error_event(flavor: Flavor, message: str) -> bytes:
    """An error inside an SSE stream, as each API sends one (the SDKs raise on it)."""
    if flavor == "anthropic":
        data = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + data + b"\n\n"
    data = orjson.dumps({"error": {"message": message, "type": "server_error", "code": None}})
    return b"data: " + data + b"\n\n"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    parts.append(t)
        return "\n".join(parts)
    return ""


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _float(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return None


def request_fields(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """The CONTRACT §1 request columns of one request body (unknown means None)."""
    prompt = ""
    system: str | None = None
    turn = 0
    count: int | None = None
    logprobs: bool | None = None
    top_logprobs = _int(body.get("top_logprobs"))
    if endpoint in ("chat.completions", "messages", "responses"):
        if endpoint == "responses":
            items = body.get("input")
            msgs = [{"role": "user", "content": items}] if isinstance(items, str) else items
            instructions = body.get("instructions")
            system = instructions if isinstance(instructions, str) else None
        else:
            msgs = body.get("messages")
        if not isinstance(msgs, list):
            msgs = []
        users = [m for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            prompt = _text(users[-1].get("content"))
        turn = max(len(users) - 1, 0)
        count = len(msgs)
        if endpoint == "messages":
            sys_field = body.get("system")
            system = _text(sys_field) if sys_field is not None else None
        elif endpoint == "chat.completions":
            for m in msgs:
                if isinstance(m, dict) and m.get("role") in ("system", "developer"):
                    system = _text(m.get("content"))
                    break
            lp = body.get("logprobs")
            logprobs = lp if isinstance(lp, bool) else None
    else:  # legacy completions
        p = body.get("prompt")
        prompt = p if isinstance(p, str) else _text(p)
        lp_count = _int(body.get("logprobs"))
        logprobs = lp_count is not None and lp_count > 0 if "logprobs" in body else None
        top_logprobs = lp_count
    max_tokens = _int(
        body.get("max_completion_tokens") or body.get("max_output_tokens") or body.get("max_tokens")
    )
    tools = body.get("tools")
    return {
        "model": str(body.get("model") or "unknown"),
        "prompt": prompt,
        "system_prompt": system or None,
        "turn_index": turn,
        "messages_count": count,
        "max_tokens": max_tokens,
        "temperature": _float(body.get("temperature")),
        "top_p": _float(body.get("top_p")),
        "n": _int(body.get("n")),
        "logprobs": logprobs,
        "top_logprobs": top_logprobs,
        "tools_count": len(tools) if isinstance(tools, list) else None,
        "stream": bool(body.get("stream")),
    }


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int | None = None

    def merge(self, usage: Any) -> None:
        """Fold one usage object (either API, whole or partial as in a stream) in."""
        if not isinstance(usage, dict):
            return
        inp = _int(usage.get("prompt_tokens"))
        if inp is None:
            inp = _int(usage.get("input_tokens"))
            if inp is not None:
                for extra in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                    inp += _int(usage.get(extra)) or 0
        if inp:
            self.input_tokens = inp
        out = _int(usage.get("completion_tokens"))
        if out is None:
            out = _int(usage.get("output_tokens"))
        if out:
            self.output_tokens = out
        details = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
        if isinstance(details, dict):
            r = _int(details.get("reasoning_tokens"))
            if r is not None:
                self.reasoning_tokens = r


def response_text(endpoint: str, body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if endpoint == "messages":
        blocks = body.get("content")
        if isinstance(blocks, list):
            return _text([b for b in blocks if isinstance(b, dict) and b.get("type") == "text"])
        return None
    if endpoint == "responses":
        out = []
        for item in body.get("output") or []:
            if isinstance(item, dict) and item.get("type") == "message":
                out.append(_text(item.get("content")))
        return "\n".join(out)
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        c = choices[0]
        if endpoint == "completions":
            t = c.get("text")
            return t if isinstance(t, str) else None
        msg = c.get("message")
        if isinstance(msg, dict):
            return _text(msg.get("content"))
    return None


def usage_of(body: Any) -> Usage:
    u = Usage()
    if isinstance(body, dict):
        u.merge(body.get("usage"))
    return u


class StreamUsage:
    """Picks token usage out of SSE bytes as they pass, without holding the stream.

    Only lines that mention ``"usage"`` are parsed: one or two per stream.
    """

    def __init__(self) -> None:
        self.usage = Usage()
        self._carry = b""

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk if self._carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._carry = data[-65536:]
            return
        self._carry = data[cut + 1 :][-65536:]
        if b'"usage"' not in data:
            return
        for line in data[:cut].split(b"\n"):
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    event = orjson.loads(line[5:].strip())
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(event, dict):
                    continue
                self.usage.merge(event.get("usage"))
                for nested in ("message", "response"):  # Anthropic start, Responses completed
                    inner = event.get(nested)
                    if isinstance(inner, dict):
                        self.usage.merge(inner.get("usage"))
