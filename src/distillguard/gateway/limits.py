"""Input limits: what a hostile or broken client cannot make the gateway hold or walk."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from distillguard.errors import DistillGuardError


class RequestRejected(DistillGuardError):
    """A request refused before it reaches policy: carries the HTTP status and a code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def header_bytes(headers: Iterable[tuple[bytes, bytes]]) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers)


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def parse_body(raw: bytes, max_depth: int) -> dict[str, Any]:
    """The request body as a JSON object, or ``RequestRejected`` (400) saying why."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        # orjson also refuses nesting past its own recursion limit here
        raise RequestRejected(
            400, "invalid_json", f"request body is not valid JSON: {err}"
        ) from None
    if not isinstance(body, dict):
        raise RequestRejected(400, "invalid_json", "request body must be a JSON object")
    if json_depth_exceeds(body, max_depth):
        raise RequestRejected(
            400, "json_too_deep", f"request body nests deeper than {max_depth} levels"
        )
    return body
