"""Readers turn input files into documents or quarantine records; writers put kept, rejected and
quarantined records into deterministic, atomically renamed JSON-lines files.

Readers never raise on bad data: a record that cannot be parsed becomes a quarantine record with
the file, the line (or byte offset), the error and the raw bytes, so that
records read = kept + rejected + quarantined holds whatever the input looks like. They do raise
on a failure to open or read the file itself (InputReadError): that is not the data's fault, and
the runner retries the bundle rather than record half a file.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import heapq
import io
import json
import lzma
import os
import pickle
import posixpath
import uuid
import zlib
from typing import Any, Iterator

import apache_beam as beam
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from thresher.filters.storage import atomic_writer
from thresher.pipeline.config import InputConfig
from thresher.pipeline.progress import Heartbeat

QUARANTINE = "quarantine"
RAW_LIMIT = 1 << 20  # raw bytes kept in a quarantine record; the rest is marked truncated
#: deeper ``meta`` is quarantined: pickling a document between workers recurses once per level and
#: fails (RecursionError) near 900 levels, which would stop the run in a dedup stage
MAX_META_DEPTH = 64
GLOB_CHARS = "*?["


# ---------------------------------------------------------------------------------------------
# Finding input files


def glob_root(pattern: str) -> str:
    """The directory part of a pattern before its first glob character: ids and sources are
    made relative to it, so they don't depend on where the data was mounted."""
    cut = min((pattern.find(c) for c in GLOB_CHARS if c in pattern), default=-1)
    head = pattern if cut < 0 else pattern[:cut]
    if cut < 0:
        return posixpath.dirname(pattern.rstrip("/"))
    return head.rsplit("/", 1)[0] if "/" in head else ""


def match_inputs(cfg: InputConfig) -> list[tuple[str, str]]:
    """(absolute path, path relative to its glob root) for every input file, sorted.

    For ``hf_dataset`` each pattern names a ``save_to_disk`` directory; its Arrow files are listed.
    Raises ValueError naming each pattern that matched nothing."""
    files: list[tuple[str, str]] = []
    empty: list[str] = []
    for pattern in cfg.paths:
        if cfg.format == "hf_dataset":
            found = _hf_dataset_files(pattern)
        else:
            result = FileSystems.match([pattern])[0]
            found = [m.path for m in result.metadata_list if not _is_dir(m.path)]
        if not found:
            empty.append(pattern)
            continue
        root = glob_root(pattern) if cfg.format != "hf_dataset" else pattern.rstrip("/")
        for path in sorted(found):
            rel = path[len(root):].lstrip("/") if root and path.startswith(root) else path
            if cfg.format == "hf_dataset":
                rel = posixpath.join(posixpath.basename(root), rel)
            files.append((path, rel or posixpath.basename(path)))
    if empty:
        raise ValueError("; ".join(f"input.paths: no files match {p!r}" for p in empty))
    return sorted(set(files))


def _is_dir(path: str) -> bool:
    return "://" not in path and os.path.isdir(path)


def _hf_dataset_files(directory: str) -> list[str]:
    """Arrow files of a dataset saved with ``Dataset.save_to_disk`` (or a DatasetDict)."""
    directory = directory.rstrip("/")
    state = posixpath.join(directory, "state.json")
    if FileSystems.exists(state):
        with FileSystems.open(state, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            meta = json.loads(fh.read())
        return [posixpath.join(directory, f["filename"]) for f in meta.get("_data_files", [])]
    splits_file = posixpath.join(directory, "dataset_dict.json")
    if FileSystems.exists(splits_file):
        with FileSystems.open(splits_file, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            splits = json.loads(fh.read()).get("splits", [])
        return [f for split in splits for f in _hf_dataset_files(posixpath.join(directory, split))]
    return []


# ---------------------------------------------------------------------------------------------
# Decompression that survives truncated files


class InputReadError(Exception):
    """Opening or reading an input file failed (a network fault, a file that vanished after it was
    listed, a permission): the bundle fails and the runner retries it, discarding the documents it
    had emitted, instead of quarantining the rest of the file as if it were bad data. Deliberately
    not an OSError: decoders report bad content as OSError too, and the readers quarantine those."""


class _GuardedInput(io.RawIOBase):
    """An input file whose own I/O errors raise InputReadError (decoders above it keep their own
    errors, which are about content)."""

    def __init__(self, raw, path: str):
        self._raw = raw
        self._path = path

    def _io(self, call, *args):
        try:
            return call(*args)
        except OSError as exc:
            raise InputReadError(f"reading {self._path} failed: {exc}") from exc

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._io(self._raw.seekable) if hasattr(self._raw, "seekable") else False

    def read(self, size: int = -1) -> bytes:
        return self._io(self._raw.read, size)

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._io(self._raw.seek, offset, whence)

    def tell(self) -> int:
        return self._io(self._raw.tell)

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            except OSError:
                pass  # everything was read; a failing close loses nothing
        super().close()


def open_input(path: str) -> _GuardedInput:
    """An input file's raw bytes, with I/O failures as InputReadError."""
    try:
        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except OSError as exc:  # BeamIOError is an IOError
        raise InputReadError(f"cannot open {path}: {exc}") from exc
    return _GuardedInput(raw, path)


class TruncatedInput(Exception):
    """A compressed stream ended early or is corrupt. ``partial`` holds the bytes of the incomplete
    last line, ``line`` and ``offset`` where it starts (when reading line by line)."""

    def __init__(self, message: str, partial: bytes = b"", line: int | None = None, offset: int | None = None):
        super().__init__(message)
        self.partial = partial
        self.line = line
        self.offset = offset


def _decompressed_chunks(raw: io.BufferedIOBase, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield decompressed bytes; raise TruncatedInput (after yielding what was readable) when a
    compressed stream ends early or is corrupt."""
    lower = path.lower()
    if lower.endswith(".gz"):
        yield from _members(raw, chunk_size, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), zlib.error,
                            "gzip", allow_empty=False)
        return
    if lower.endswith(".zst") or lower.endswith(".zstd"):
        import zstandard

        factory = zstandard.ZstdDecompressor()
        yield from _members(raw, chunk_size, factory.decompressobj, zstandard.ZstdError, "zstd", allow_empty=True)
        return
    if lower.endswith(".bz2") or lower.endswith(".xz"):
        opener = bz2.BZ2File if lower.endswith(".bz2") else lzma.LZMAFile
        try:
            with opener(raw) as fh:
                while True:
                    block = fh.read(chunk_size)
                    if not block:
                        break
                    yield block
        except (EOFError, OSError, lzma.LZMAError) as exc:
            raise TruncatedInput(f"corrupt or truncated {lower.rsplit('.', 1)[1]} data: {exc}") from None
        return
    while True:
        block = raw.read(chunk_size)
        if not block:
            return
        yield block


def _members(raw: io.BufferedIOBase, chunk_size: int, new_decompressor, errors, kind: str,
             allow_empty: bool) -> Iterator[bytes]:
    """Decompress a stream of one or more concatenated members (gzip members, zstd frames),
    raising TruncatedInput when the data is corrupt or the last member never ends."""
    decomp = new_decompressor()
    fed = False  # whether the current member has received any input
    while block := raw.read(chunk_size):
        while block:
            if decomp.eof:  # more input after a complete member: the next member
                decomp, fed = new_decompressor(), False
            try:
                out = decomp.decompress(block)
            except errors as exc:
                raise TruncatedInput(f"corrupt {kind} data: {exc}") from None
            fed = True
            if out:
                yield out
            block = decomp.unused_data if decomp.eof else b""
    if not decomp.eof and (fed or not allow_empty):
        raise TruncatedInput(f"truncated {kind} stream (unexpected end of file)")


def _lines(raw: io.BufferedIOBase, path: str) -> Iterator[tuple[int, int, bytes]]:
    """(line number from 1, byte offset in the decompressed stream, line bytes without newline).
    A TruncatedInput error propagates after the complete lines before it."""
    pending = b""
    offset = 0
    number = 0
    chunks = _decompressed_chunks(raw, path)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except TruncatedInput as exc:
            raise TruncatedInput(str(exc), pending, number + 1, offset) from None
        pending += chunk
        parts = pending.split(b"\n")
        pending = parts.pop()
        for part in parts:
            number += 1
            yield number, offset, part
            offset += len(part) + 1
    if pending:
        number += 1
        yield number, offset, pending


# ---------------------------------------------------------------------------------------------
# Records -> documents


class QuarantineRecord(dict):
    """An input record that could not be parsed (a dict, so it is written like any record)."""


def quarantine_record(file: str, error: str, raw: bytes = b"", line: int | None = None,
                      offset: int | None = None) -> QuarantineRecord:
    kept = raw[:RAW_LIMIT]
    return QuarantineRecord({
        "file": file,
        "line": line,
        "offset": offset,
        "error": error,
        "raw_base64": base64.b64encode(kept).decode("ascii"),
        "raw_preview": kept[:500].decode("utf-8", errors="backslashreplace"),
        "raw_bytes": len(raw),
        "raw_truncated": len(raw) > RAW_LIMIT,
    })


class RecordParser:
    """Turns one parsed record (a dict) into a document, or says why it can't."""

    def __init__(self, cfg: InputConfig):
        self.cfg = cfg

    def to_document(self, record: Any, rel_path: str, position: int) -> tuple[dict | None, str | None]:
        cfg = self.cfg
        if not isinstance(record, dict):
            return None, f"record is a JSON {type(record).__name__}, not an object"
        text = record.get(cfg.text_field)
        if cfg.text_field not in record:
            return None, f"missing text field {cfg.text_field!r}"
        if not isinstance(text, str):
            return None, f"text field {cfg.text_field!r} is {type(text).__name__}, not a string"
        if not text.strip():
            return None, "empty document (no non-whitespace text)"
        if len(text) > cfg.max_document_bytes or len(text.encode("utf-8", "surrogatepass")) > cfg.max_document_bytes:
            return None, f"document larger than input.max_document_bytes ({cfg.max_document_bytes})"
        origin = f"{rel_path}:{position}"
        doc_id: Any = record.get(cfg.id_field) if cfg.id_field else None
        if doc_id is None:
            doc_id = origin
        elif isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
            return None, f"id field {cfg.id_field!r} is {type(doc_id).__name__}, not a string or integer"
        elif cfg.make_ids_unique:
            doc_id = f"{doc_id}@{origin}"
        source: Any = record.get(cfg.source_field) if cfg.source_field else None
        if source is not None and not isinstance(source, str):
            return None, f"source field {cfg.source_field!r} is {type(source).__name__}, not a string"
        meta = dict(record["meta"]) if isinstance(record.get("meta"), dict) else {}
        for name in cfg.meta_fields:
            if name in record:
                meta[name] = record[name]
        if _deeper_than(meta, MAX_META_DEPTH):
            return None, f"meta is nested more than {MAX_META_DEPTH} levels deep"
        return {
            "id": str(doc_id),
            "text": _clean_surrogates(text),
            "source": source or cfg.source or rel_path,
            "meta": meta,
            "origin": origin,  # where it was read (file:line or file:row); not written out
        }, None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` levels in ``value`` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _clean_surrogates(text: str) -> str:
    # JSON can carry lone surrogates ("\ud800"); they cannot be written back as UTF-8
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


class ReadDocuments(beam.DoFn):
    """Reads one input file; emits documents on the main output and bad records on ``quarantine``."""

    def __init__(self, cfg: InputConfig, progress_dir: str | None = None):
        self.cfg = cfg
        self.progress_dir = progress_dir
        self.read = Metrics.counter("thresher", "records_read")
        self.quarantined = Metrics.counter("thresher", "records_quarantined")

    def setup(self) -> None:
        self.parser = RecordParser(self.cfg)
        self.heartbeat = Heartbeat(self.progress_dir, "read")

    def process(self, element: tuple[str, str]):
        path, rel = element
        for item in self._records(path, rel):
            self.read.inc()
            if isinstance(item, QuarantineRecord):
                self.quarantined.inc()
                self.heartbeat.add(read=1, quarantined=1)
                yield beam.pvalue.TaggedOutput(QUARANTINE, item)
            else:
                self.heartbeat.add(read=1)
                yield item

    def teardown(self) -> None:
        self.heartbeat.flush()

    def _records(self, path: str, rel: str) -> Iterator[dict]:
        fmt = self.cfg.format
        try:
            if fmt in ("jsonl", "text_lines"):
                yield from self._line_records(path, rel, fmt)
            elif fmt == "text":
                yield from self._whole_file(path, rel)
            elif fmt in ("parquet", "arrow", "hf_dataset"):
                yield from self._table_records(path, rel, fmt)
            elif fmt == "warc":
                yield from self._warc_records(path, rel)
            else:  # guarded by the config schema
                raise ValueError(f"unsupported input format {fmt!r}")
        except OSError as exc:  # from a decoder: the content (I/O failures are InputReadError)
            yield quarantine_record(rel, f"cannot decode file: {exc}")

    def _line_records(self, path: str, rel: str, fmt: str) -> Iterator[dict]:
        parser = self.parser
        with open_input(path) as raw:
            lines = _lines(raw, path)
            while True:
                try:
                    number, offset, line = next(lines)
                except StopIteration:
                    return
                except TruncatedInput as exc:
                    yield quarantine_record(rel, f"{exc}; the {exc.line - 1} complete lines before it were read",
                                            exc.partial, exc.line, exc.offset)
                    return
                if line.endswith(b"\r"):
                    line = line[:-1]
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield quarantine_record(rel, f"invalid UTF-8 at byte {exc.start} of the line", line, number, offset)
                    continue
                if fmt == "text_lines":
                    if not text.strip():
                        continue  # blank lines separate documents here; they are not records
                    record: Any = {self.cfg.text_field: text}
                else:
                    if not text.strip():
                        yield quarantine_record(rel, "blank line (no JSON record)", line, number, offset)
                        continue
                    try:
                        record = json.loads(text)
                    except json.JSONDecodeError as exc:
                        yield quarantine_record(rel, f"invalid JSON: {exc.msg} at column {exc.colno}", line, number, offset)
                        continue
                    except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits, nesting 10,000 deep
                        yield quarantine_record(rel, f"unreadable JSON: {exc}", line, number, offset)
                        continue
                doc, error = parser.to_document(record, rel, number)
                if error:
                    yield quarantine_record(rel, error, line, number, offset)
                else:
                    yield doc

    def _whole_file(self, path: str, rel: str) -> Iterator[dict]:
        with open_input(path) as raw:
            chunks: list[bytes] = []
            try:
                for chunk in _decompressed_chunks(raw, path):
                    chunks.append(chunk)
            except TruncatedInput as exc:
                yield quarantine_record(rel, str(exc), b"".join(chunks), offset=0)
                return
        data = b"".join(chunks)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield quarantine_record(rel, f"invalid UTF-8 at byte {exc.start}", data, offset=exc.start)
            return
        doc, error = self.parser.to_document({self.cfg.text_field: text}, rel, 0)
        if error:
            yield quarantine_record(rel, error, data, offset=0)
        else:
            doc["id"] = rel  # one document per file: the file is its identity
            yield doc

    def _table_records(self, path: str, rel: str, fmt: str) -> Iterator[dict]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with open_input(path) as fh:
            data = fh.read()
        row = 0
        try:
            if fmt == "parquet":
                batches = pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=1024)
            else:
                batches = _arrow_batches(data)
            for batch in batches:
                for record, error in _batch_rows(batch):
                    row += 1
                    if record is None:
                        yield quarantine_record(rel, f"corrupt row: {error}", line=row)
                        continue
                    doc, error = self.parser.to_document(record, rel, row)
                    if error:
                        raw = json.dumps(record, ensure_ascii=False, default=str).encode()
                        yield quarantine_record(rel, error, raw, line=row)
                    else:
                        yield doc
        except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: e.g. a column name that is not UTF-8
            read = f"; the {row} rows before it were read" if row else ""
            yield quarantine_record(rel, f"cannot read {fmt} file: {exc}{read}", data[:4096], offset=0)


    def _warc_records(self, path: str, rel: str) -> Iterator[dict]:
        """HTTP responses (WARC) and text conversions (WET) as documents. HTML goes through
        resiliparse's main-content extraction; the record id is the WARC-Record-ID and the URL
        and crawl date go into meta. Records that are not a successful HTML or text page are
        quarantined with the reason (status, content type, nothing extracted)."""
        from fastwarc.warc import ArchiveIterator, WarcRecordType
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.encoding import bytes_to_str, detect_encoding

        wanted = WarcRecordType.response | WarcRecordType.conversion
        with open_input(path) as raw:
            stream = _ChunkStream(_decompressed_chunks(raw, path))
            records = iter(ArchiveIterator(stream, record_types=wanted, auto_decode="all", stream_detect=False))
            index = 0
            while True:
                try:
                    record = next(records)
                    body = record.reader.read()
                except StopIteration:
                    return
                except (TruncatedInput, OSError) as exc:
                    yield quarantine_record(rel, f"{exc}; the {index} records before it were read", line=index + 1)
                    return
                index += 1
                url = (record.headers.get("WARC-Target-URI") or "").strip("<>")
                record_id = (record.headers.get("WARC-Record-ID") or f"{rel}:{index}").strip("<>")
                where = {"line": index, "offset": record.stream_pos}
                if record.record_type == WarcRecordType.response:
                    http = record.http_headers
                    status = http.status_code if http is not None else None
                    content_type = (http.get("Content-Type") or "") if http is not None else ""
                    if status != 200:
                        yield quarantine_record(rel, f"HTTP status {status} for {url}", body[:4096], **where)
                        continue
                    if "html" not in content_type.lower() and "text/plain" not in content_type.lower():
                        yield quarantine_record(rel, f"unsupported content type {content_type!r} for {url}",
                                                body[:4096], **where)
                        continue
                    html = bytes_to_str(body, detect_encoding(body))
                    text = extract_plain_text(html, main_content=True) if "html" in content_type.lower() else html
                else:
                    text = body.decode("utf-8", errors="replace")
                doc, error = self.parser.to_document({self.cfg.text_field: text}, rel, index)
                if error:
                    yield quarantine_record(rel, f"{error} (extracted from {url})", body[:RAW_LIMIT], **where)
                    continue
                doc["id"] = record_id
                doc["meta"] = {"url": url, "warc_date": record.headers.get("WARC-Date") or ""}
                yield doc


class _ChunkStream(io.RawIOBase):
    """A readable stream over decompressed chunks, so that a truncated file raises while a WARC
    parser reads it instead of ending quietly."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # forward only, which is all a WARC parser asks for

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._position + offset if whence == io.SEEK_CUR else None
        if target is None or target < self._position:
            raise io.UnsupportedOperation("this stream only seeks forward")
        while self._position < target and self.read(min(target - self._position, 1 << 20)):
            pass
        return self._position

    def readinto(self, target) -> int:
        while not self._buffer:
            self._buffer = next(self._chunks, b"")
            if not self._buffer:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        self._position += size
        return size


def _batch_rows(batch) -> Iterator[tuple[dict | None, str | None]]:
    """The rows of a record batch as dicts. Arrow does not check what it reads: a batch whose
    structure is broken raises (the caller quarantines the rest of the file), and one whose values
    are (invalid UTF-8, offsets out of range) gives (None, error) for each bad row."""
    import pyarrow as pa

    batch.validate()  # lengths and buffer sizes agree, so num_rows can be trusted
    try:
        batch.validate(full=True)
        rows = batch.to_pylist()
    except (pa.ArrowException, UnicodeDecodeError):
        rows = None
    if rows is not None:
        yield from ((record, None) for record in rows)
        return
    for index in range(batch.num_rows):
        one = batch.slice(index, 1)
        try:
            one.validate(full=True)
            record = one.to_pylist()[0]
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            yield None, str(exc)
            continue
        yield record, None


def _arrow_batches(data: bytes):
    import pyarrow as pa

    try:
        reader = pa.ipc.open_file(pa.BufferReader(data))
        return (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        return iter(pa.ipc.open_stream(pa.BufferReader(data)))


# ---------------------------------------------------------------------------------------------
# Writers


def shard_of(key: str, shards: int) -> int:
    return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass")) % shards


def record_key(record: dict) -> str:
    return str(record.get("id") or f"{record.get('file')}:{record.get('line')}:{record.get('offset')}")


def encode_record(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def deterministic_gzip(data: bytes, level: int = 6) -> bytes:
    """gzip with no timestamp or file name in the header, so equal content gives equal bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=level) as gz:
        gz.write(data)
    return buf.getvalue()


SPILL_DIR = "_spill"
SPILL_BYTES = 64 << 20  # flush a bundle's buffered output records past this many bytes
SPILL_CHUNK = 2048  # records per pickle in a spilled segment, so a shard merges in bounded memory


class SpillRecords(beam.DoFn):
    """Buffers a bundle's records by output shard and writes them, each shard's part sorted, to
    one temporary file per bundle (one per ``SPILL_BYTES``); emits (shard, (path, offset, length))
    for each shard's segment of that file. Only these small tuples go through the shuffle, not the
    records, and the number of spill objects is the number of bundles, whatever the shard count.
    A bundle that fails and is retried leaves an orphan file nobody references; the run deletes
    ``_spill`` when it ends (and nothing deletes a part earlier: a retried bundle of the writer must
    find every part it was given)."""

    def __init__(self, output_dir: str, kind: str, shards: int):
        self.output_dir = output_dir
        self.kind = kind
        self.shards = shards

    def start_bundle(self) -> None:
        self._buffers: dict[int, list[tuple[str, str]]] = {}
        self._bytes = 0

    def process(self, record: dict):
        key = record_key(record)
        line = encode_record(record)
        self._buffers.setdefault(shard_of(key, self.shards), []).append((key, line))
        self._bytes += len(line)
        if self._bytes >= SPILL_BYTES:
            yield from self._flush()

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for item in self._flush():
            yield WindowedValue(item, GlobalWindow().max_timestamp(), [GlobalWindow()])

    def _flush(self) -> list[tuple[int, tuple[str, int, int]]]:
        if not self._buffers:
            return []
        path = posixpath.join(self.output_dir, SPILL_DIR, self.kind, f"{uuid.uuid4().hex}.pkl")
        written = []
        offset = 0
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            for shard, items in sorted(self._buffers.items()):
                items.sort()
                start = offset
                for i in range(0, len(items), SPILL_CHUNK):
                    chunk = pickle.dumps(items[i:i + SPILL_CHUNK], protocol=pickle.HIGHEST_PROTOCOL)
                    fh.write(chunk)
                    offset += len(chunk)
                written.append((shard, (path, start, offset - start)))
        self._buffers = {}
        self._bytes = 0
        return written


def _segment(path: str, offset: int, length: int) -> Iterator[tuple[str, str]]:
    """The sorted (key, line) records of one spilled segment, read a chunk at a time."""
    end = offset + length
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.seek(offset)
        while fh.tell() < end:
            yield from pickle.load(fh)


class WriteShard(beam.DoFn):
    """Merges the spilled segments of one shard into ``{kind}/part-NNNNN-of-MMMMM.jsonl.gz``,
    sorted by id, so the file is the same whatever the worker count or bundle boundaries. Running
    it twice (a retried bundle) writes the same bytes again; it deletes nothing."""

    def __init__(self, output_dir: str, kind: str, shards: int, compression_level: int):
        self.output_dir = output_dir
        self.kind = kind
        self.shards = shards
        self.compression_level = compression_level
        self.written = Metrics.counter("thresher", f"written_{kind}")

    def process(self, element: tuple[int, Any]):
        shard, segments = element
        name = f"part-{shard:05d}-of-{self.shards:05d}.jsonl.gz"
        count = 0
        with atomic_writer(posixpath.join(self.output_dir, self.kind, name)) as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=self.compression_level) as gz:
                for _, line in heapq.merge(*(_segment(*ref) for ref in sorted(segments))):
                    gz.write(line.encode("utf-8") + b"\n")
                    count += 1
        self.written.inc(count)
        yield name


class WriteRecords(beam.PTransform):
    """Deterministic sharded output: records go to a fixed shard by a hash of their id, each shard
    is sorted, so the files are identical whatever the worker count or bundle order. Given several
    PCollections, each is spilled where it is produced and only the segment references are
    flattened, so the records are never moved to be merged."""

    def __init__(self, output_dir: str, kind: str, shards: int, compression_level: int = 6):
        super().__init__()
        self.output_dir = output_dir
        self.kind = kind
        self.shards = shards
        self.compression_level = compression_level

    def expand(self, records):
        sources = list(records) if isinstance(records, (list, tuple)) else [records]
        spill = SpillRecords(self.output_dir, self.kind, self.shards)
        segments = [pcoll | f"Spill{i if i else ''}" >> beam.ParDo(spill) for i, pcoll in enumerate(sources)]
        if len(segments) > 1:
            segments = segments | "FlattenSegments" >> beam.Flatten()
        else:
            segments = segments[0]
        return (
            segments
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(WriteShard(self.output_dir, self.kind, self.shards, self.compression_level))
        )
