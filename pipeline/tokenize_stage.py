"""The ``tokenize`` corpus stage: SentencePiece model, batch encoding, Arrow shards, manifest.

Graph (every step is parallel except the one training call):

    docs -> (xxh64(seed, id), id, text) -> bottom-k sample (mergeable CombineFn) -> train -> model bytes
    docs -> batches -> encode (model as side input) -> records
    records -> total tokens, numeric-meta column set            (two global side inputs)
    records -> group = xxh64(id) % G -> GroupByKey -> sort by id -> cut into ~shard_tokens -> shards
    shard infos -> one list -> manifest.json (written last)

G = total tokens / (shard_tokens * SHARDS_PER_GROUP), so a group holds a few shards and is cut into
parts of nearly equal size; group membership, order and cuts depend only on ids and token counts, so
shard names and bytes are the same whatever the number of workers. Files go to a hidden temporary
name and are renamed, so a reader never sees a partial shard.
"""

from __future__ import annotations

import posixpath
from typing import Any, ClassVar

import apache_beam as beam
import numpy as np
import xxhash
from apache_beam.io.filesystems import FileSystems
from pydantic import Field, model_validator

from thresher.filters.storage import atomic_write
from thresher.pipeline.stage_api import CorpusResult, CorpusStage, StageContext
from thresher.tokenization.manifest import MANIFEST_NAME, TOKENIZER_NAME, build_manifest, manifest_bytes
from thresher.tokenization.sample import BottomK, sample_key
from thresher.tokenization.shards import (
    ShardInfo,
    ShardRecord,
    build_table,
    cut_points,
    in_shard_order,
    numeric_meta,
    shard_name,
    shard_schema,
    table_to_stream_bytes,
)
from thresher.tokenization.spm import Encoder, TrainerConfig, sha256_hex, train_model

#: Shards per hash group: a group is held in one worker's memory while it is cut into shards.
SHARDS_PER_GROUP = 4


class TokenizeStage(CorpusStage, TrainerConfig):
    """Train (or load) a SentencePiece model, encode every document, write Arrow shards.

    Kept documents pass through unchanged; the shards and ``manifest.json`` go to ``OUT/shards/``.
    The SentencePiece training keys are those of ``thresher.tokenization.spm.TrainerConfig``.
    """

    name: ClassVar[str] = "tokenize"

    model_path: str | None = None
    sample_docs: int = Field(100_000, ge=1)
    seed: int | None = None
    shard_tokens: int = Field(16_777_216, ge=1, lt=2**31)
    add_eos: bool = True
    batch_size: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _model_path_or_training(self) -> "TokenizeStage":
        training = set(TrainerConfig.model_fields) | {"sample_docs"}
        clash = sorted(training & self.model_fields_set)
        if self.model_path is not None and clash:
            raise ValueError(f"model_path loads an existing tokenizer; training parameters {clash} would be ignored")
        return self

    def check(self) -> list[tuple[str, str]]:
        if self.model_path is None:
            return []
        if not FileSystems.exists(self.model_path):
            return [("model_path", f"tokenizer model {self.model_path} does not exist")]
        try:
            Encoder(_read_bytes(self.model_path), add_eos=self.add_eos)
        except (RuntimeError, ValueError) as exc:
            return [("model_path", f"{self.model_path} is not a usable SentencePiece model: {exc}")]
        return []

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(**self.model_dump(include=set(TrainerConfig.model_fields)))

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        label = ctx.label
        seed = ctx.seed if self.seed is None else self.seed
        shards_dir = posixpath.join(ctx.output_dir, "shards")  # at graph time: no file system needed

        if self.model_path is not None:
            model = docs.pipeline | f"{label}/LoadModel" >> beam.Create([_read_bytes(self.model_path)])
        else:
            model = (docs
                     | f"{label}/SampleKey" >> beam.Map(lambda d: (sample_key(d["id"], seed), d["id"], d["text"]))
                     | f"{label}/Sample" >> beam.CombineGlobally(BottomKCombineFn(self.sample_docs))
                     | f"{label}/Train" >> beam.Map(_train, self.trainer_config()))
        model_info = model | f"{label}/WriteModel" >> beam.Map(
            _write_model, shards_dir, self.add_eos, self.model_path or "trained")

        records = (docs
                   | f"{label}/Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.batch_size)
                   | f"{label}/Encode" >> beam.ParDo(EncodeBatchFn(self.add_eos), beam.pvalue.AsSingleton(model)))
        total_tokens = (records
                        | f"{label}/Lengths" >> beam.Map(lambda r: len(r.tokens))
                        | f"{label}/TotalTokens" >> beam.CombineGlobally(sum))
        columns = records | f"{label}/ScoreColumns" >> beam.CombineGlobally(ColumnUnionFn())
        shard_infos = (records
                       | f"{label}/AssignGroup" >> beam.Map(_assign_group, beam.pvalue.AsSingleton(total_tokens),
                                                            self.shard_tokens)
                       | f"{label}/GroupDocs" >> beam.GroupByKey()
                       | f"{label}/WriteShards" >> beam.ParDo(WriteGroupFn(shards_dir, self.shard_tokens),
                                                              beam.pvalue.AsSingleton(columns),
                                                              beam.pvalue.AsSingleton(model_info)))
        _ = (shard_infos
             | f"{label}/AllShards" >> beam.combiners.ToList()
             | f"{label}/WriteManifest" >> beam.Map(_write_manifest, shards_dir,
                                                    beam.pvalue.AsSingleton(model_info),
                                                    beam.pvalue.AsSingleton(columns), ctx.config_hash))
        stats = shard_infos | f"{label}/Stats" >> beam.Map(
            lambda s: {"documents": s.documents, "tokens": s.tokens, "shards": 1})
        return CorpusResult(kept=docs, rejected=None, stats=stats)


def _read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


class BottomKCombineFn(beam.CombineFn):
    def __init__(self, k: int):
        self.sampler = BottomK(k)

    def create_accumulator(self) -> list:
        return []

    def add_input(self, acc: list, item) -> list:
        return self.sampler.add(acc, item)

    def merge_accumulators(self, accs) -> list:
        return self.sampler.merge(accs)

    def extract_output(self, acc: list) -> list:
        return self.sampler.result(acc)


class ColumnUnionFn(beam.CombineFn):
    """The sorted set of numeric meta columns over the corpus."""

    def create_accumulator(self) -> set:
        return set()

    def add_input(self, acc: set, record: ShardRecord) -> set:
        acc.update(record.scores)
        return acc

    def merge_accumulators(self, accs) -> set:
        out: set = set()
        for acc in accs:
            out |= acc
        return out

    def extract_output(self, acc: set) -> list[str]:
        return sorted(acc)


def _train(sample: list, config: TrainerConfig) -> bytes:
    return train_model([text for _, _, text in sample], config)


def _write_model(model_bytes: bytes, shards_dir: str, add_eos: bool, source: str) -> dict[str, Any]:
    encoder = Encoder(model_bytes, add_eos=add_eos)
    atomic_write(FileSystems.join(shards_dir, TOKENIZER_NAME), model_bytes)
    return {"sha256": sha256_hex(model_bytes), "vocab_size": encoder.vocab_size, "eos_id": encoder.eos_id,
            "dtype": encoder.dtype.name, "source": source, "add_eos": add_eos}


class EncodeBatchFn(beam.DoFn):
    """Encodes a batch of documents with SentencePiece's batch API; the encoder is built once per
    worker from the model side input."""

    def __init__(self, add_eos: bool):
        self.add_eos = add_eos
        self._encoder: Encoder | None = None
        self._model_id: int | None = None

    def process(self, batch: list[dict], model_bytes: bytes):
        if self._encoder is None or self._model_id != id(model_bytes):
            self._encoder = Encoder(model_bytes, add_eos=self.add_eos)
            self._model_id = id(model_bytes)
        tokens = self._encoder.encode_batch([d["text"] for d in batch])
        for doc, ids in zip(batch, tokens):
            yield ShardRecord(id=str(doc["id"]), source=str(doc.get("source") or ""), tokens=ids,
                              scores=numeric_meta(doc.get("meta")))


def group_count(total_tokens: int, shard_tokens: int) -> int:
    return max(1, total_tokens // (shard_tokens * SHARDS_PER_GROUP))


def _assign_group(record: ShardRecord, total_tokens: int, shard_tokens: int) -> tuple[int, ShardRecord]:
    groups = group_count(total_tokens, shard_tokens)
    return xxhash.xxh64_intdigest(record.id.encode("utf-8")) % groups, record


class WriteGroupFn(beam.DoFn):
    """Sorts one group's documents by id, cuts them into parts of ~shard_tokens, writes each part."""

    def __init__(self, shards_dir: str, shard_tokens: int):
        self.shards_dir = shards_dir
        self.shard_tokens = shard_tokens

    def process(self, element, columns: list[str], model_info: dict[str, Any]):
        group, records = element
        records = in_shard_order(records)
        schema = shard_schema(np.dtype(model_info["dtype"]), columns)
        lengths = np.fromiter((len(r.tokens) for r in records), dtype=np.int64, count=len(records))
        cuts = cut_points(lengths, self.shard_tokens)
        for part, (start, end) in enumerate(zip(cuts[:-1], cuts[1:])):
            data = table_to_stream_bytes(build_table(records[start:end], schema))
            name = shard_name(group, part)
            atomic_write(FileSystems.join(self.shards_dir, name), data)
            yield ShardInfo(name, sha256_hex(data), int(lengths[start:end].sum()), end - start, len(data))


def _write_manifest(shards: list[ShardInfo], shards_dir: str, model_info: dict[str, Any], columns: list[str],
                    config_hash: str) -> str:
    manifest = build_manifest(shards, tokenizer_sha256=model_info["sha256"], vocab_size=model_info["vocab_size"],
                              eos_id=model_info["eos_id"], dtype=np.dtype(model_info["dtype"]), add_eos=model_info["add_eos"],
                              score_columns=columns, config_hash=config_hash, complete=True,
                              tokenizer_source=model_info["source"])
    # shards left by an earlier run into the same directory would otherwise be read by globs
    current = {s.file for s in shards}
    stale = [m.path for r in FileSystems.match([FileSystems.join(shards_dir, "shard-*.arrow")])
             for m in r.metadata_list if m.path.rsplit("/", 1)[-1] not in current]
    if stale:
        FileSystems.delete(stale)
    path = FileSystems.join(shards_dir, MANIFEST_NAME)
    atomic_write(path, manifest_bytes(manifest))
    return path
