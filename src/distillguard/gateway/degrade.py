"""Answers made less useful for training, for suspects only.

Requests lose logprobs and reasoning options and get ``n`` and the token limit capped;
answers lose reasoning fields, ``<think>`` blocks and reasoning summaries. Streams are
rewritten event by event (block indices renumbered so SDK accumulators stay consistent).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from distillguard.gateway.config import DegradeConfig

_THINK = re.compile(r"<think>.*?(?:</think>\s*|$)", re.S)
_REASONING_KEYS = ("reasoning_content", "reasoning", "reasoning_details", "thinking")


def degrade_request(endpoint: str, body: dict[str, Any], cfg: DegradeConfig) -> dict[str, Any]:
    out = dict(body)
    for key in ("logprobs", "top_logprobs", "reasoning", "thinking", "reasoning_effort"):
        out.pop(key, None)
    if "n" in out and isinstance(out["n"], int):
        out["n"] = min(out["n"], cfg.n)
    if endpoint == "responses":
        include = out.get("include")
        if isinstance(include, list):
            out["include"] = [
                i for i in include if "logprobs" not in str(i) and "reasoning" not in str(i)
            ]
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if isinstance(out.get(key), int):
            out[key] = min(out[key], cfg.max_tokens)
    if not any(k in out for k in ("max_tokens", "max_completion_tokens", "max_output_tokens")):
        key = "max_output_tokens" if endpoint == "responses" else "max_tokens"
        out[key] = cfg.max_tokens
    return out


def strip_think(text: str) -> str:
    return _THINK.sub("", text) if "<think>" in text else text


def _clean_message(msg: Any) -> None:
    if not isinstance(msg, dict):
        return
    for key in _REASONING_KEYS:
        msg.pop(key, None)
    content = msg.get("content")
    if isinstance(content, str):
        msg["content"] = strip_think(content)


def degrade_response(endpoint: str, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if endpoint == "messages":
        blocks = body.get("content")
        if isinstance(blocks, list):
            kept = [
                b
                for b in blocks
                if not (isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking"))
            ]
            for b in kept:
                if isinstance(b, dict) and isinstance(b.get("text"), str):
                    b["text"] = strip_think(b["text"])
            body["content"] = kept
        return body
    if endpoint == "responses":
        output = body.get("output")
        if isinstance(output, list):
            kept = [o for o in output if not (isinstance(o, dict) and o.get("type") == "reasoning")]
            for item in kept:
                for part in item.get("content") or [] if isinstance(item, dict) else []:
                    if isinstance(part, dict):
                        part.pop("logprobs", None)
                        if isinstance(part.get("text"), str):
                            part["text"] = strip_think(part["text"])
            body["output"] = kept
        body.pop("reasoning", None)
        return body
    for choice in body.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if "logprobs" in choice:
            choice["logprobs"] = None
        _clean_message(choice.get("message"))
        _clean_message(choice.get("delta"))
        if isinstance(choice.get("text"), str):
            choice["text"] = strip_think(choice["text"])
    return body


class _ThinkFilter:
    """Removes ``<think>...</think>`` from text that arrives in pieces."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""

    def feed(self, text: str) -> str:
        data = self.pending + text
        self.pending = ""
        out = []
        while data:
            tag = self.CLOSE if self.inside else self.OPEN
            i = data.find(tag)
            if i >= 0:
                if not self.inside:
                    out.append(data[:i])
                data = data[i + len(tag) :]
                self.inside = not self.inside
                continue
            # keep a possible partial tag at the end for the next piece
            keep = 0
            for k in range(min(len(tag) - 1, len(data)), 0, -1):
                if tag.startswith(data[-k:]):
                    keep = k
                    break
            if not self.inside:
                out.append(data[: len(data) - keep])
            self.pending = data[len(data) - keep :]
            break
        return "".join(out)


class SSEDegrader:
    """Rewrites a stream event by event; events that only carry reasoning are dropped."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._buf = b""
        self._think: dict[int, _ThinkFilter] = {}
        self._dropped_blocks: set[int] = set()
        self._index_map: dict[int, int] = {}

    def feed(self, chunk: bytes) -> bytes:
        data = self._buf + chunk
        events = data.replace(b"\r\n", b"\n").split(b"\n\n")
        self._buf = events.pop()
        out = [self._event(e) for e in events]
        return b"".join(e + b"\n\n" for e in out if e is not None)

    def close(self) -> bytes:
        rest, self._buf = self._buf, b""
        if not rest.strip():
            return b""
        event = self._event(rest)
        return event + b"\n\n" if event is not None else b""

    def _event(self, raw: bytes) -> bytes | None:
        lines = raw.split(b"\n")
        data_idx = [i for i, ln in enumerate(lines) if ln.startswith(b"data:")]
        if len(data_idx) != 1:
            return raw
        i = data_idx[0]
        payload = lines[i][5:].strip()
        if payload == b"[DONE]":
            return raw
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(obj, dict):
            return raw
        new = self._transform(obj)
        if new is None:
            return None
        lines[i] = b"data: " + orjson.dumps(new)
        return b"\n".join(lines)

    def _renumber(self, index: Any, drop: bool) -> int | None:
        if not isinstance(index, int):
            return None
        if drop:
            self._dropped_blocks.add(index)
            return None
        if index in self._dropped_blocks:
            return None
        if index not in self._index_map:
            self._index_map[index] = len(self._index_map)
        return self._index_map[index]

    def _transform(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        etype = obj.get("type")
        if self.endpoint == "messages":
            return self._anthropic(obj, etype)
        if self.endpoint == "responses":
            return self._responses(obj, etype)
        for choice in obj.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if "logprobs" in choice:
                choice["logprobs"] = None
            idx = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            f = self._think.setdefault(idx, _ThinkFilter())
            for holder in (choice.get("delta"), choice.get("message")):
                if isinstance(holder, dict):
                    for key in _REASONING_KEYS:
                        holder.pop(key, None)
                    if isinstance(holder.get("content"), str):
                        holder["content"] = f.feed(holder["content"])
            if isinstance(choice.get("text"), str):
                choice["text"] = f.feed(choice["text"])
        return obj

    def _anthropic(self, obj: dict[str, Any], etype: Any) -> dict[str, Any] | None:
        if etype == "message_start" and isinstance(obj.get("message"), dict):
            degrade_response("messages", obj["message"])
            return obj
        if etype in ("content_block_start", "content_block_delta", "content_block_stop"):
            block = obj.get("content_block")
            drop = isinstance(block, dict) and block.get("type") in (
                "thinking",
                "redacted_thinking",
            )
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("type") in (
                "thinking_delta",
                "signature_delta",
            ):
                drop = True
            new_index = self._renumber(obj.get("index"), drop and etype == "content_block_start")
            if new_index is None or drop:
                return None
            obj["index"] = new_index
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                f = self._think.setdefault(new_index, _ThinkFilter())
                delta["text"] = f.feed(delta["text"])
            return obj
        return obj

    def _responses(self, obj: dict[str, Any], etype: Any) -> dict[str, Any] | None:
        if isinstance(etype, str) and etype.startswith("response.reasoning"):
            return None
        item = obj.get("item")
        is_reasoning = isinstance(item, dict) and item.get("type") == "reasoning"
        if "output_index" in obj:
            new_index = self._renumber(
                obj["output_index"], is_reasoning and etype == "response.output_item.added"
            )
            if new_index is None:
                return None
            obj["output_index"] = new_index
        obj.pop("logprobs", None)
        if etype == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            idx = obj.get("output_index", 0)
            f = self._think.setdefault(idx if isinstance(idx, int) else 0, _ThinkFilter())
            obj["delta"] = f.feed(obj["delta"])
        resp = obj.get("response")
        if isinstance(resp, dict):
            degrade_response("responses", resp)
        if isinstance(item, dict):
            for part in item.get("content") or []:
                if isinstance(part, dict):
                    part.pop("logprobs", None)
                    if isinstance(part.get("text"), str):
                        part["text"] = strip_think(part["text"])
        return obj
