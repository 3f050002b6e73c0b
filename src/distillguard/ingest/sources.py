"""Turn command-line inputs (files, folders, globs, in any mix) into a list of readable files."""

from __future__ import annotations

import glob
import gzip
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from distillguard.errors import InputError

Format = Literal["parquet", "jsonl"]
Compression = Literal["none", "gzip", "zstd"]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_COMPRESSION_SUFFIXES: dict[str, Compression] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC: tuple[tuple[bytes, Format, Compression], ...] = (
    (b"PAR1", "parquet", "none"),
    (b"\x1f\x8b", "jsonl", "gzip"),
    (b"\x28\xb5\x2f\xfd", "jsonl", "zstd"),
)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    format: Format
    compression: Compression = "none"

    def __str__(self) -> str:
        return str(self.path)

    @contextmanager
    def open_binary(self) -> Iterator[tuple[BinaryIO, BinaryIO]]:
        """Open a JSONL source: (decompressed stream, raw file for progress positions)."""
        try:
            raw = self.path.open("rb")
        except OSError as err:
            raise InputError(f"cannot open: {err.strerror}", source=str(self.path)) from None
        try:
            if self.compression == "gzip":
                yield cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")), raw
            elif self.compression == "zstd":
                import zstandard

                reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
                yield cast(BinaryIO, io.BufferedReader(reader, buffer_size=1 << 20)), raw
            else:
                yield raw, raw
        finally:
            raw.close()


def _sniff(path: Path) -> SourceFile:
    name = path.name.lower()
    compression: Compression = "none"
    for suffix, comp in _COMPRESSION_SUFFIXES.items():
        if name.endswith(suffix):
            compression = comp
            name = name[: -len(suffix)]
    if name.endswith(".parquet") or name.endswith(".pq"):
        if compression != "none":
            raise InputError("compressed Parquet files are not supported", source=str(path))
        return SourceFile(path, "parquet")
    if name.endswith(_JSONL_SUFFIXES):
        return SourceFile(path, "jsonl", compression)
    # No telling suffix: trust the first bytes, as a user's "logs-2026-11-01" often has none.
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise InputError(f"cannot open: {err.strerror}", source=str(path)) from None
    for magic, fmt, comp in _MAGIC:
        if head.startswith(magic):
            return SourceFile(path, fmt, comp)
    return SourceFile(path, "jsonl", compression)


def _is_data_file(path: Path) -> bool:
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.endswith((".parquet", ".pq", *_JSONL_SUFFIXES))


def expand_inputs(inputs: Sequence[str | Path]) -> list[SourceFile]:
    """Expand files, folders (recursively, data files only) and globs; keep the given order.

    A path that matches nothing is an error naming it: a typo must never scan zero rows.
    """
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_data_file(p))
            if not found:
                raise InputError(
                    "folder holds no .parquet/.jsonl/.jsonl.gz/.jsonl.zst files", source=text
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(text):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matched:
                raise InputError("glob matches no file", source=text)
            files.extend(matched)
        else:
            raise InputError("no such file or folder", source=text)
    seen: set[Path] = set()
    unique: list[Path] = []
    for p in files:
        key = p.resolve()
        if key not in seen:  # the same file named twice is read once, not reported as duplicates
            seen.add(key)
            unique.append(p)
    return [_sniff(p) for p in unique]
