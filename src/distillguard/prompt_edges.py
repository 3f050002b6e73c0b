"""A prompt's length and its first and last characters, computed once at ingest.

Templates and wrappers show at a prompt's edges (linking's template keys, the exchange
scores' repeated wrappers), and several stages look at them. Read from the prompt each
time, every one of those stages would decompress every prompt of the log again, the
biggest column by far. So staging stores them beside each row (``_prompt_chars``,
``_prompt_head``, ``_prompt_tail``), and the stages read these small columns when the
table has them, or cut them from the prompt when it does not (a table built in memory).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

EDGE_CHARS = 40
CHARS, HEAD, TAIL = "_prompt_chars", "_prompt_head", "_prompt_tail"
STAGED_FIELDS = (
    pa.field(CHARS, pa.int32()),
    pa.field(HEAD, pa.string()),
    pa.field(TAIL, pa.string()),
)


def arrow_columns(prompt: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The staged columns for a column of prompts (characters, as the engines count them)."""
    return {
        CHARS: pc.utf8_length(prompt).cast(pa.int32()),
        HEAD: pc.utf8_slice_codeunits(prompt, 0, EDGE_CHARS),
        TAIL: pc.utf8_slice_codeunits(prompt, -EDGE_CHARS, 2**31 - 1),
    }


def chars(t: Any) -> Any:
    """The prompt's length in characters, as an Ibis expression on ``t``."""
    return t[CHARS] if CHARS in t.columns else t.prompt.length()


def head(t: Any) -> Any:
    """The prompt's first ``EDGE_CHARS`` characters."""
    return t[HEAD] if HEAD in t.columns else t.prompt.left(EDGE_CHARS)


def tail(t: Any) -> Any:
    """The prompt's last ``EDGE_CHARS`` characters."""
    return t[TAIL] if TAIL in t.columns else t.prompt.right(EDGE_CHARS)
