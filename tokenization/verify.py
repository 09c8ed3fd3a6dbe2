"""``thresher shards verify DIR``: check a shard directory against its manifest.

Recomputes every shard's sha256, document and token counts, checks the ``length`` column, the token
dtype, that every id is below the vocabulary size and (with ``add_eos``) that every document ends in
EOS, decodes a sample of documents with the tokenizer, checks the tokenizer's checksum and the totals,
and lists ``*.arrow`` files the manifest does not name. Every problem names its file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from thresher.tokenization.manifest import MANIFEST_NAME, ManifestError, parse_manifest
from thresher.tokenization.shards import ShardError, check_columns, open_local_shard, read_stream
from thresher.tokenization.spm import Encoder


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    documents: int = 0
    tokens: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class ShardVerifier:
    def __init__(self, directory: str, sample_docs: int = 16):
        self.fs, self.root = fsspec.core.url_to_fs(directory)
        self.directory = directory
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.sample_docs = sample_docs

    def _path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _read(self, name: str) -> bytes:
        with self.fs.open(self._path(name), "rb") as f:
            return f.read()

    def run(self) -> VerifyReport:
        report = VerifyReport()
        try:
            manifest = parse_manifest(self._read(MANIFEST_NAME), name=self._path(MANIFEST_NAME))
        except FileNotFoundError:
            report.problems.append(f"{self._path(MANIFEST_NAME)}: missing")
            return report
        except ManifestError as exc:
            report.problems.append(str(exc))
            return report
        if not manifest.get("complete", False):
            report.problems.append(f"{MANIFEST_NAME}: complete is false (the writer has not finished)")
        encoder = self._check_tokenizer(manifest, report)
        for entry in manifest["shards"]:
            self._check_shard(entry, manifest, encoder, report)
        totals = manifest.get("totals", {})
        for key, seen in (("shards", report.shards), ("documents", report.documents), ("tokens", report.tokens)):
            # an unreadable shard is already reported; totals are only comparable when all were read
            if report.shards == len(manifest["shards"]) and key in totals and totals[key] != seen:
                report.problems.append(f"{MANIFEST_NAME}: totals.{key} is {totals[key]}, shards hold {seen}")
        listed = {e["file"] for e in manifest["shards"]}
        for path in sorted(self.fs.glob(self._path("*.arrow"))):
            name = path.rsplit("/", 1)[-1]
            if name not in listed:
                report.problems.append(f"{name}: not listed in {MANIFEST_NAME}")
        return report

    def _check_tokenizer(self, manifest: dict[str, Any], report: VerifyReport) -> Encoder | None:
        info = manifest.get("tokenizer") or {}
        name = info.get("path", "tokenizer.model")
        try:
            data = self._read(name)
        except FileNotFoundError:
            report.problems.append(f"{name}: tokenizer model missing")
            return None
        if info.get("sha256") and hashlib.sha256(data).hexdigest() != info["sha256"]:
            report.problems.append(f"{name}: sha256 differs from the manifest")
        try:
            encoder = Encoder(data, add_eos=False)
        except (RuntimeError, ValueError) as exc:
            report.problems.append(f"{name}: not a loadable SentencePiece model ({exc})")
            return None
        if manifest.get("vocab_size") not in (None, encoder.vocab_size):
            report.problems.append(f"{name}: vocabulary has {encoder.vocab_size} pieces, manifest says "
                                   f"{manifest['vocab_size']}")
        return encoder

    def _check_shard(self, entry: dict[str, Any], manifest: dict[str, Any], encoder: Encoder | None,
                     report: VerifyReport) -> None:
        name = entry["file"]
        problems = report.problems
        try:
            data = self._read(name)
        except FileNotFoundError:
            problems.append(f"{name}: listed in the manifest but missing")
            return
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
        if "bytes" in entry and entry["bytes"] != len(data):
            problems.append(f"{name}: {len(data)} bytes, manifest says {entry['bytes']}")
        try:
            table = open_local_shard(self._path(name)) if self.local else read_stream(data, name)
            check_columns(table, name)
        except ShardError as exc:
            problems.append(str(exc))
            return
        ids = table.column("input_ids").combine_chunks()
        offsets = ids.offsets.to_numpy().astype(np.int64)
        values = ids.values.to_numpy()
        lengths = np.diff(offsets)
        report.shards += 1
        report.documents += table.num_rows
        report.tokens += int(lengths.sum())
        if table.num_rows != entry["documents"]:
            problems.append(f"{name}: {table.num_rows} documents, manifest says {entry['documents']}")
        if int(lengths.sum()) != entry["tokens"]:
            problems.append(f"{name}: {int(lengths.sum())} tokens, manifest says {entry['tokens']}")
        if "length" in table.column_names and not np.array_equal(table.column("length").to_numpy(), lengths):
            problems.append(f"{name}: length column does not match input_ids")
        if manifest.get("dtype") and values.dtype.name != manifest["dtype"]:
            problems.append(f"{name}: tokens are {values.dtype.name}, manifest says {manifest['dtype']}")
        vocab = manifest.get("vocab_size")
        if vocab and len(values) and int(values.max()) >= vocab:
            problems.append(f"{name}: token id {int(values.max())} is outside the vocabulary of {vocab}")
        eos = (manifest.get("tokenizer") or {}).get("eos_id")
        if manifest.get("add_eos") and eos is not None and len(lengths):
            ends = values[offsets[1:][lengths > 0] - 1]
            bad = int((ends != eos).sum()) + int((lengths == 0).sum())
            if bad:
                problems.append(f"{name}: {bad} documents do not end in EOS ({eos})")
        if encoder is not None and table.num_rows:
            rows = np.unique(np.linspace(0, table.num_rows - 1, min(self.sample_docs, table.num_rows)).astype(int))
            for row in rows:
                try:
                    encoder.decode(values[offsets[row]:offsets[row + 1]])
                except (RuntimeError, IndexError, ValueError) as exc:
                    problems.append(f"{name}: document {row} does not decode ({exc})")
                    break


def verify_shards(directory: str, sample_docs: int = 16) -> VerifyReport:
    return ShardVerifier(directory, sample_docs).run()


def shards_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher shards", description="Work with Arrow token shards.")
    sub = parser.add_subparsers(dest="action", required=True)
    verify = sub.add_parser("verify", help="check checksums, counts and tokens against manifest.json")
    verify.add_argument("directory", help="the shards directory (OUT/shards), local or a URL such as gs://...")
    verify.add_argument("--sample", type=int, default=16, help="documents per shard to decode (default 16)")
    args = parser.parse_args(argv)
    report = verify_shards(args.directory, args.sample)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problems)"
    print(f"{status}: {report.shards} shards, {report.documents} documents, {report.tokens} tokens checked")
    return 0 if report.ok else 1
