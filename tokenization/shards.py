"""Arrow shards: the columns, building one shard, opening one with errors that name the file.

A shard is an Arrow IPC *stream* file (what HF ``datasets`` writes and ``Dataset.from_file`` reads)
with one row per document:

    input_ids  list<uint16> (uint32 when the vocabulary has more than 65536 pieces), EOS included
    id         string
    source     string
    length     int32, tokens in input_ids
    <score>    float64, one column per numeric ``meta`` field of the corpus (nested dicts flattened
               with "."; booleans as 0/1), null where a document lacks it. A field named like one of
               the columns above is stored as ``meta.<name>``.

Every shard of a run has the same columns, so the shards load as one dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

RESERVED_COLUMNS = ("input_ids", "id", "source", "length")
#: The bytes an Arrow IPC stream ends with (continuation marker, zero length). A file cut at a
#: record-batch boundary still parses, so this is how truncation shows.
END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


class ShardError(ValueError):
    """A shard that cannot be read as written: corrupt, truncated, or with the wrong columns."""


def shard_name(group: int, part: int) -> str:
    return f"shard-{group:05d}-{part:05d}.arrow"


def numeric_meta(meta: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """The numeric fields of ``meta`` as {column name: float}, nested dicts flattened with "."."""
    out: dict[str, float] = {}
    for key, value in (meta or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(numeric_meta(value, prefix=f"{name}."))
    if not prefix:
        out = {(f"meta.{k}" if k in RESERVED_COLUMNS else k): v for k, v in out.items()}
    return out


def shard_schema(dtype: np.dtype, score_columns: Sequence[str]) -> pa.Schema:
    token_type = pa.uint16() if np.dtype(dtype) == np.uint16 else pa.uint32()
    fields = [
        pa.field("input_ids", pa.list_(token_type)),
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("length", pa.int32()),
    ]
    fields += [pa.field(name, pa.float64()) for name in sorted(score_columns)]
    return pa.schema(fields)


@dataclass(frozen=True)
class ShardRecord:
    """One encoded document on its way into a shard."""

    id: str
    source: str
    tokens: np.ndarray
    scores: dict[str, float]


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest says about one shard."""

    file: str
    sha256: str
    tokens: int
    documents: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "tokens": self.tokens,
                "documents": self.documents, "bytes": self.bytes}


def build_table(records: Sequence[ShardRecord], schema: pa.Schema) -> pa.Table:
    token_type = schema.field("input_ids").type.value_type
    np_dtype = np.uint16 if token_type == pa.uint16() else np.uint32
    lengths = np.fromiter((len(r.tokens) for r in records), dtype=np.int64, count=len(records))
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(f"a shard of {offsets[-1]} tokens does not fit 32-bit list offsets")
    values = (np.concatenate([r.tokens for r in records]).astype(np_dtype, copy=False)
              if records else np.zeros(0, dtype=np_dtype))
    columns: dict[str, pa.Array] = {
        "input_ids": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values)),
        "id": pa.array([r.id for r in records], pa.string()),
        "source": pa.array([r.source for r in records], pa.string()),
        "length": pa.array(lengths.astype(np.int32)),
    }
    for name in schema.names[len(RESERVED_COLUMNS):]:
        columns[name] = pa.array([r.scores.get(name) for r in records], pa.float64())
    return pa.Table.from_pydict(columns, schema=schema)


def table_to_stream_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        # one record batch per shard: readers get one contiguous token buffer
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))
    return sink.getvalue().to_pybytes()


def cut_points(lengths: np.ndarray, target_tokens: int) -> list[int]:
    """Row indices that cut consecutive documents into parts of about equal size near ``target_tokens``
    (the number of parts is the group total over the target, rounded), e.g. [0, 120, 250, 371]."""
    n = len(lengths)
    if n == 0:
        return [0, 0]
    cum = np.cumsum(lengths, dtype=np.int64)
    total = int(cum[-1])
    parts = max(1, min(n, int(round(total / target_tokens))))
    cuts = [0]
    for i in range(1, parts):
        idx = int(np.searchsorted(cum, total * i / parts, side="left")) + 1
        if cuts[-1] < idx < n:
            cuts.append(idx)
    cuts.append(n)
    return cuts


def read_stream(source: pa.NativeFile | pa.Buffer | bytes, name: str) -> pa.Table:
    """Read a whole Arrow IPC stream; ``name`` goes into every error."""
    try:
        if isinstance(source, (bytes, pa.Buffer)):
            buf = pa.py_buffer(source) if isinstance(source, bytes) else source
            tail = buf[max(0, buf.size - len(END_OF_STREAM)):].to_pybytes()
            reader = pa.ipc.open_stream(buf)
        else:
            size = source.size()
            source.seek(max(0, size - len(END_OF_STREAM)))
            tail = source.read(len(END_OF_STREAM))
            source.seek(0)
            reader = pa.ipc.open_stream(source)
        table = reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, ValueError) as exc:
        raise ShardError(f"{name}: corrupt or truncated Arrow stream ({exc})") from exc
    if tail != END_OF_STREAM:
        raise ShardError(f"{name}: truncated Arrow stream (no end-of-stream marker)")
    return table


def open_local_shard(path: str | os.PathLike) -> pa.Table:
    """Memory-map a local shard and read it zero-copy."""
    path = os.fspath(path)
    try:
        source = pa.memory_map(path, "r")
    except (OSError, pa.ArrowIOError) as exc:
        raise ShardError(f"{path}: cannot open ({exc})") from exc
    return read_stream(source, path)


def check_columns(table: pa.Table, name: str) -> None:
    missing = [c for c in ("input_ids", "id") if c not in table.column_names]
    if missing:
        raise ShardError(f"{name}: missing column(s) {', '.join(missing)}")
    t = table.schema.field("input_ids").type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_integer(t.value_type):
        raise ShardError(f"{name}: input_ids has type {t}, expected a list of integers")


def in_shard_order(records: Iterable[ShardRecord]) -> list[ShardRecord]:
    """Records in shard order: by id, then by tokens, so duplicates of an id still sort the same."""
    return sorted(records, key=lambda r: (r.id, r.tokens.tobytes()))
