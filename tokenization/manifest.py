"""``manifest.json``: the list of shards with checksums and counts, the tokenizer, the totals.

The tokenize stage writes it last, atomically, with ``complete: true``; a writer that publishes
shards while still running (``LocalShardWriter``) rewrites it after every shard with
``complete: false``. Readers that follow a growing directory stop once they see ``complete: true``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.filters.storage import atomic_write
from thresher.tokenization.shards import ShardInfo, shard_schema, table_to_stream_bytes
from thresher.tokenization.spm import sha256_hex

MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.model"
FORMAT = "thresher-shards/1"


class ManifestError(ValueError):
    pass


def build_manifest(shards: Sequence[ShardInfo], *, tokenizer_sha256: str, vocab_size: int, eos_id: int,
                   dtype: np.dtype, add_eos: bool, score_columns: Sequence[str], config_hash: str,
                   complete: bool = True, tokenizer_source: str | None = None) -> dict[str, Any]:
    shards = sorted(shards, key=lambda s: s.file)
    return {
        "format": FORMAT,
        "complete": complete,
        "tokenizer": {"path": TOKENIZER_NAME, "sha256": tokenizer_sha256, "source": tokenizer_source,
                      "eos_id": eos_id},
        "vocab_size": vocab_size,
        "dtype": np.dtype(dtype).name,
        "add_eos": add_eos,
        "score_columns": sorted(score_columns),
        "config_hash": config_hash,
        "shards": [s.to_json() for s in shards],
        "totals": {
            "shards": len(shards),
            "documents": sum(s.documents for s in shards),
            "tokens": sum(s.tokens for s in shards),
            "bytes": sum(s.bytes for s in shards),
        },
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def parse_manifest(data: bytes | str, name: str = MANIFEST_NAME) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{name}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ManifestError(f"{name}: not a shard manifest (no 'shards' list)")
    for i, entry in enumerate(manifest["shards"]):
        if not isinstance(entry, dict) or not {"file", "sha256", "tokens", "documents"} <= entry.keys():
            raise ManifestError(f"{name}: shards[{i}] lacks file, sha256, tokens or documents")
    return manifest


class LocalShardWriter:
    """Writes shards and a growing manifest to a local directory outside Beam (streaming producers,
    benchmarks, tests). Each shard appears atomically and the manifest is rewritten after it."""

    def __init__(self, directory: str | os.PathLike, model_bytes: bytes, *, score_columns: Sequence[str] = (),
                 add_eos: bool = True, config_hash: str = ""):
        from thresher.tokenization.spm import Encoder

        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        encoder = Encoder(model_bytes, add_eos=add_eos)
        self.vocab_size, self.eos_id, self.dtype = encoder.vocab_size, encoder.eos_id, encoder.dtype
        self.add_eos = add_eos
        self.score_columns = tuple(sorted(score_columns))
        self.schema = shard_schema(self.dtype, self.score_columns)
        self.config_hash = config_hash
        self.tokenizer_sha256 = sha256_hex(model_bytes)
        self.shards: list[ShardInfo] = []
        atomic_write(os.path.join(self.directory, TOKENIZER_NAME), model_bytes)

    def write(self, name: str, table: pa.Table) -> ShardInfo:
        data = table_to_stream_bytes(table.cast(self.schema))
        atomic_write(os.path.join(self.directory, name), data)
        tokens = int(table.column("length").to_numpy().sum())
        info = ShardInfo(name, sha256_hex(data), tokens, table.num_rows, len(data))
        self.shards.append(info)
        self.write_manifest(complete=False)
        return info

    def write_manifest(self, complete: bool) -> dict[str, Any]:
        manifest = build_manifest(self.shards, tokenizer_sha256=self.tokenizer_sha256, vocab_size=self.vocab_size,
                                  eos_id=self.eos_id, dtype=self.dtype, add_eos=self.add_eos,
                                  score_columns=self.score_columns, config_hash=self.config_hash,
                                  complete=complete)
        atomic_write(os.path.join(self.directory, MANIFEST_NAME), manifest_bytes(manifest))
        return manifest

    def close(self) -> dict[str, Any]:
        return self.write_manifest(complete=True)
