"""Read a byte stream as lines in bounded memory, whatever the longest line is.

A line longer than ``max_line_bytes`` is never held whole: its head is kept for the
quarantine record and the rest is skipped as it streams past. Clean stretches of the file
stay as one bytes object (with newline offsets) so the JSON parser can take them whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

RAW_HEAD_BYTES = 4096  # how much of an oversize line the quarantine keeps


@dataclass
class LineBlock:
    """Lines ``first_line, first_line+1, ...`` as one buffer, or as separate lines.

    Fast form: ``data`` holds complete lines joined by ``\\n`` and ``ends`` the offset of
    each line's end; line ``i`` is ``first_line + i``. List form (when the stretch had
    blank or oversize lines): ``lines``/``numbers``, and ``oversize`` for lines over the limit.
    """

    data: bytes = b""
    ends: np.ndarray[Any, np.dtype[np.int64]] | None = None
    first_line: int = 0
    lines: list[bytes] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    oversize: list[tuple[int, bytes, int]] = field(default_factory=list)  # (line, head, size)

    @property
    def fast(self) -> bool:
        return self.ends is not None

    def __len__(self) -> int:
        n = len(self.ends) if self.ends is not None else len(self.lines)
        return n + len(self.oversize)

    def line_list(self) -> tuple[list[bytes], list[int]]:
        """Every non-oversize line and its number (splits a fast block on demand)."""
        if self.ends is None:
            return self.lines, self.numbers
        lines = self.data.split(b"\n")
        return lines, list(range(self.first_line, self.first_line + len(lines)))

    def line(self, i: int) -> bytes:
        if self.ends is None:
            return self.lines[i]
        start = 0 if i == 0 else int(self.ends[i - 1]) + 1
        return self.data[start : int(self.ends[i])]


def iter_line_blocks(
    stream: BinaryIO, *, max_line_bytes: int, chunk_bytes: int = 8 << 20
) -> Iterator[LineBlock]:
    """Yield blocks of lines (``\\n`` endings; a trailing ``\\r`` is JSON whitespace)."""
    carry = b""
    line_no = 0
    skipping = False  # inside an oversize line, discarding until its newline
    skip_head = b""
    skip_len = 0
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        pending: list[tuple[int, bytes, int]] = []
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                skip_len += len(chunk)
                continue
            line_no += 1
            pending.append((line_no, skip_head, skip_len + nl))
            skipping = False
            chunk = chunk[nl + 1 :]
        data = carry + chunk if carry else chunk
        last = data.rfind(b"\n")
        if last < 0:
            carry = data
            complete = b""
        else:
            complete, carry = data[:last], data[last + 1 :]
        if complete or last >= 0:
            block, line_no = _block(complete, line_no, max_line_bytes)
            block.oversize[:0] = pending
            yield block
        elif pending:
            yield LineBlock(oversize=pending)
        if len(carry) > max_line_bytes:
            skipping, skip_head, skip_len, carry = True, carry[:RAW_HEAD_BYTES], len(carry), b""
    if skipping:
        yield LineBlock(oversize=[(line_no + 1, skip_head, skip_len)])
    elif carry:
        block, _ = _block(carry, line_no, max_line_bytes)
        yield block


def _block(data: bytes, line_no: int, max_line_bytes: int) -> tuple[LineBlock, int]:
    """Lines of ``data`` (complete, no final newline) numbered after ``line_no``."""
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    ends = np.append(nl, len(data)).astype(np.int64)
    lengths = np.diff(ends, prepend=-1) - 1
    n = len(ends)
    if int(lengths.max()) <= max_line_bytes and int(lengths.min()) > 0:
        return LineBlock(data=data, ends=ends, first_line=line_no + 1), line_no + n
    block = LineBlock()
    for i, line in enumerate(data.split(b"\n")):
        number = line_no + 1 + i
        if len(line) > max_line_bytes:
            block.oversize.append((number, line[:RAW_HEAD_BYTES], len(line)))
        elif line.strip():
            block.lines.append(line)
            block.numbers.append(number)
    return block, line_no + n
