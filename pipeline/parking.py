"""Parking documents in temporary files while a corpus stage decides their fate.

A corpus stage (dedup, line dedup, poisoning) needs a global view before it can say which
documents to drop or change, but it never needs the documents themselves in its groupings. So the
first step writes each bundle's documents to ``<directory>/<token>.pkl`` (one pickled list per
file, about ``PARK_BYTES`` of text) and emits small records that point at them as (token, row).
The stage's decisions are then routed to the file that holds each document, and one pass per file
(``ApplyToParked``) emits the kept documents and the rejection records. On the local runners every
shuffled byte passes through one process; on Dataflow this is the file pattern Beam's own sinks
use. Parked files are left for the run to delete (``OUT/_spill``): a retried bundle must find them.
"""

from __future__ import annotations

import pickle
import posixpath
import uuid
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from thresher.filters.base import Document
from thresher.pipeline.io import SPILL_DIR
from thresher.pipeline.shuffle import GroupInBatches, Packer, flush_packers

#: text a parking DoFn buffers before it writes a file: small enough that the stage reading the
#: files back has several per worker to share out evenly (the files are its unit of work), large
#: enough to keep objects few (8,000 per 32 GB of text)
PARK_BYTES = 4 << 20


def spill_directory(output_dir: str, label: str) -> str:
    return posixpath.join(output_dir, SPILL_DIR, label)


def park_path(directory: str, token: str) -> str:
    return posixpath.join(directory, f"{token}.pkl")


def read_parked(directory: str, token: str) -> list[Document]:
    with FileSystems.open(park_path(directory, token), compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        return pickle.loads(fh.read())


def origin_of(doc: Document) -> str:
    """Where a document was read ("file:line", set by the reader), for error messages."""
    return str(doc.get("origin", doc["id"]))


def repeated_id_error(stage_name: str, doc_id: str, origins: list[str]) -> ValueError:
    """The error of a corpus stage that identifies documents by id and finds one id several times
    (its grouping by id hands it every copy's ``origin_of``)."""
    where = ", ".join(sorted(str(o) for o in origins)[:5])
    return ValueError(f"{stage_name}: document id {doc_id!r} occurs {len(origins)} times (read at {where}); ids must "
                      f"be unique. Fix the input's ids, or set input.make_ids_unique: true to append each "
                      f"document's file and line to its id.")


class DocumentParking:
    """Buffers documents and writes them to ``<directory>/<token>.pkl``. ``add`` returns where
    the document will be, (token, row), so the caller can emit small records that point at it."""

    def __init__(self, directory: str):
        self.directory = directory
        self.docs: list[Document] = []
        self.bytes = 0
        self.token = uuid.uuid4().hex

    def add(self, doc: Document) -> tuple[str, int]:
        self.docs.append(doc)
        self.bytes += len(doc["text"])
        return self.token, len(self.docs) - 1

    def full(self) -> bool:
        return self.bytes >= PARK_BYTES

    def flush(self) -> str | None:
        """Writes the buffered documents; returns the written file's token (None if empty)."""
        if not self.docs:
            return None
        token = self.token
        with FileSystems.create(park_path(self.directory, token),
                                compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            fh.write(pickle.dumps(self.docs, protocol=pickle.HIGHEST_PROTOCOL))
        self.docs, self.bytes, self.token = [], 0, uuid.uuid4().hex
        return token


class ParkingDoFn(beam.DoFn):
    """A DoFn that parks the documents it sees and emits the written files' tokens on "files".
    Subclasses call ``self.parking.add(doc)`` in ``process`` and end it with
    ``yield from self.flush_if_full()``; ``finish_bundle`` writes the rest."""

    FILES = "files"

    def __init__(self, directory: str):
        self.directory = directory

    def start_bundle(self):
        self.parking = DocumentParking(self.directory)

    def flush_if_full(self):
        if self.parking.full():
            yield beam.pvalue.TaggedOutput(self.FILES, self.parking.flush())

    def finish_bundle(self):
        token = self.parking.flush()
        if token:
            yield beam.pvalue.TaggedOutput(
                self.FILES, WindowedValue(token, GlobalWindow().max_timestamp(), [GlobalWindow()]))


class ParkAndPack(ParkingDoFn):
    """Parks each document and packs the small records ``records(doc, token, row)`` returns,
    (key, value) pairs, for one ``GroupInBatches`` (the batches are the main output)."""

    def __init__(self, directory: str, label: str, partitions: int):
        super().__init__(directory)
        self.label, self.partitions = label, partitions

    def records(self, doc: Document, token: str, row: int) -> Iterable[tuple[Any, Any]]:
        """The (key, value) records of one parked document; each subclass says what it groups by."""
        raise NotImplementedError(f"{type(self).__name__} must implement records")

    def start_bundle(self):
        super().start_bundle()
        self.packer = Packer(self.label, self.partitions)

    def process(self, doc: Document):
        token, row = self.parking.add(doc)
        for key, value in self.records(doc, token, row):
            self.packer.add(key, value)
        yield from self.flush_if_full()
        if self.packer.full():
            yield from self.packer.batches()

    def finish_bundle(self):
        yield from super().finish_bundle()
        yield from flush_packers([(None, self.packer)], final=True)


class _ApplyToFile:
    """The reduce of ``ApplyToParked``: reads one parked file and hands its documents, with the
    decisions routed to them (row -> list of payloads), to the stage's ``apply``."""

    def __init__(self, directory: str, stage_name: str, apply: Callable):
        self.directory, self.stage_name, self.apply = directory, stage_name, apply

    def __call__(self, token: str, values: list[list]) -> Iterable[Any]:
        decisions, written = values
        if not written:
            raise RuntimeError(f"{self.stage_name}: decisions routed to parked file {token!r}, which no bundle wrote "
                               f"(data was lost between pipeline steps)")
        docs = read_parked(self.directory, token)
        by_row: dict[int, list] = {}
        for row, payload in decisions:
            if not 0 <= row < len(docs):
                raise RuntimeError(f"{self.stage_name}: a decision for row {row} of parked file {token!r}, "
                                   f"which holds {len(docs)} documents")
            by_row.setdefault(row, []).append(payload)
        return self.apply(docs, by_row)


class ApplyToParked(beam.PTransform):
    """(decisions, files) -> the stage's outputs, every parked file read once.

    decisions: (token, (row, payload)) elements; files: the tokens the parking DoFns emitted.
    ``apply(docs, payloads_by_row)`` yields the outputs for one file's documents (kept documents
    on the main output, ``TaggedOutput("rejected", record)`` for rejections, any other tags named
    in ``outputs``). Files without decisions are read and passed to ``apply`` too."""

    def __init__(self, label: str, directory: str, stage_name: str, partitions: int, apply: Callable,
                 outputs: tuple[str, ...] = ("rejected",)):
        super().__init__()
        self.label, self.directory, self.stage_name = label, directory, stage_name
        self.partitions, self.apply, self.outputs = partitions, apply, outputs

    def expand(self, pcolls):
        decisions, files = pcolls
        keyed_files = files | "FileKeys" >> beam.Map(lambda token: (token, None))
        return ((decisions, keyed_files)
                | "ByFile" >> GroupInBatches(self.label, self.partitions,
                                             reduce=_ApplyToFile(self.directory, self.stage_name, self.apply),
                                             with_outputs=self.outputs, main="kept"))
