"""Grouping in batches: GroupByKey and CoGroupByKey semantics with a few large shuffled elements
instead of one small element per record.

Beam's runners pay a fixed cost per shuffled element: encoding and decoding it with its coder, and
on the local runner holding it in the runner process's grouping table (about 65% of a dedup run's
time went there before this module, docs/benchmarks.md, issue 14). Here the producing DoFn buffers
its (key, value) records by ``partition_of(key)`` and, at the end of the bundle (or every
``FLUSH_ITEMS`` records), emits one pickled list per partition. The runner groups those lists by
partition number; ``UnpackGroups`` regroups each partition's records by key in a plain dict and
hands every key's values to the consumer, in the same process and without a Beam element per key.

The number of shuffled elements becomes (bundles x partitions) instead of (records), so it is
small on the local runners (partitions ~ 8 per worker) and the work per partition stays bounded on
Dataflow (``shuffle_partitions``: 2,048 by default on remote runners; one partition holds about
1/2,048 of one grouping's records in a worker's memory). The result never depends on the number of
partitions: each key's values are the same, only which worker handles the key changes.

Every packed and unpacked record is counted in Beam Metrics (``shuffle/<packer>/packed`` and
``shuffle/<packer>/unpacked/<grouping>``); a run whose counts differ fails
(``check_shuffle_counts``): a lost batch cannot turn into silently kept duplicates.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Tuple

import apache_beam as beam
import numpy as np
import xxhash
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

NAMESPACE = "thresher"
FLUSH_ITEMS = 200_000  # records buffered by one packer before it emits its batches
LOCAL_PARTITIONS_PER_WORKER = 8
REMOTE_PARTITIONS = 2048


def key_bytes(key: Any) -> bytes:
    """A deterministic byte form of a grouping key (the same in every process)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8", "surrogatepass")
    if isinstance(key, int) and not isinstance(key, bool):
        return b"i" + str(key).encode()
    if isinstance(key, tuple):
        return b"t" + b"\x00".join(key_bytes(k) for k in key)
    raise TypeError(f"cannot group by a key of type {type(key).__name__}")


def partition_of(key: Any, partitions: int) -> int:
    return xxhash.xxh64_intdigest(key_bytes(key)) % partitions


def shuffle_counter(label: str, what: str):
    return Metrics.counter(NAMESPACE, f"shuffle/{label}/{what}")


def _end_of_bundle(item) -> WindowedValue:
    return WindowedValue(item, GlobalWindow().max_timestamp(), [GlobalWindow()])


class Packer:
    """Buffers one bundle's (key, value) records by partition. ``batches()`` returns
    ``(partition, blob)`` pairs and empties the buffer; DoFns that produce many records call
    ``add`` directly, so the records never become Beam elements."""

    def __init__(self, label: str, partitions: int, tag: int = 0):
        self.label = label
        self.partitions = partitions
        self.tag = tag
        self.parts: dict[int, list] = defaultdict(list)
        self.count = 0
        self.packed = shuffle_counter(label, "packed")

    def add(self, key: Any, value: Any) -> None:
        self.parts[partition_of(key, self.partitions)].append((key, value))
        self.count += 1

    def add_to(self, partition: int, key: Any, value: Any) -> None:
        """For callers that already know the key's partition (``partition_of``)."""
        self.parts[partition].append((key, value))
        self.count += 1

    def full(self) -> bool:
        return self.count >= FLUSH_ITEMS

    def batches(self) -> list[tuple[int, bytes]]:
        out = [(p, pickle.dumps((self.label, self.tag, items), protocol=pickle.HIGHEST_PROTOCOL))
               for p, items in sorted(self.parts.items())]
        self.packed.inc(self.count)
        self.parts = defaultdict(list)
        self.count = 0
        return out


class ArrayPacker:
    """A ``Packer`` for records whose keys are uint64 numbers (hashes), added a batch at a time
    as an array of keys and a list of values; the partition of a key is ``key % partitions``.
    ``GroupArrays`` hands a partition's keys and values to its reduce as whole arrays, so keys
    that occur once (most LSH buckets) never cost a Python operation."""

    def __init__(self, label: str, partitions: int):
        self.label = label
        self.partitions = partitions
        self.keys: list[np.ndarray] = []
        self.values: list = []
        self.count = 0
        self.packed = shuffle_counter(label, "packed")

    def add(self, keys: np.ndarray, values: list) -> None:
        self.keys.append(np.asarray(keys, dtype=np.uint64))
        self.values.extend(values)
        self.count += len(values)

    def full(self) -> bool:
        return self.count >= FLUSH_ITEMS

    def batches(self) -> list[tuple[int, bytes]]:
        if not self.count:
            return []
        keys = np.concatenate(self.keys)
        values = np.empty(len(self.values), dtype=object)
        values[:] = self.values
        parts = keys % np.uint64(self.partitions)
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(self.partitions + 1, dtype=np.uint64))
        out = []
        for p in range(self.partitions):
            index = order[bounds[p]:bounds[p + 1]]
            if len(index):
                out.append((p, pickle.dumps((self.label, 0, (keys[index], values[index].tolist())),
                                            protocol=pickle.HIGHEST_PROTOCOL)))
        self.packed.inc(self.count)
        self.keys, self.values, self.count = [], [], 0
        return out


class _UnpackArrays(beam.DoFn):
    def __init__(self, label: str, reduce: Callable):
        self.label, self.reduce = label, reduce

    def setup(self):
        self.counters: dict[str, Any] = {}

    def process(self, element):
        _, blobs = element
        keys, values = [], []
        for blob in blobs:
            source, _, (k, v) = pickle.loads(blob)
            if source not in self.counters:
                self.counters[source] = shuffle_counter(source, f"unpacked/{self.label}")
            self.counters[source].inc(len(v))
            keys.append(k)
            values.extend(v)
        out = self.reduce(np.concatenate(keys) if keys else np.zeros(0, np.uint64), values)
        if out is not None:
            yield from out


class GroupArrays(beam.PTransform):
    """Batches of an ``ArrayPacker`` -> ``reduce(keys, values)`` once per partition (keys a
    uint64 array, values the list aligned with it)."""

    def __init__(self, label: str, reduce: Callable):
        super().__init__()
        self.label, self.reduce = label, reduce

    def expand(self, batches):
        return ((batches,)
                | "TypeBatches" >> beam.Flatten().with_output_types(Tuple[int, bytes])
                | "GroupPartitions" >> beam.GroupByKey()
                | "Unpack" >> beam.ParDo(_UnpackArrays(self.label, self.reduce)))


class PackDoFn(beam.DoFn):
    """(key, value) elements -> (partition, blob) batches, one per partition per bundle."""

    def __init__(self, label: str, partitions: int, tag: int = 0):
        self.label, self.partitions, self.tag = label, partitions, tag

    def start_bundle(self):
        self.packer = Packer(self.label, self.partitions, self.tag)

    def process(self, element):
        key, value = element
        self.packer.add(key, value)
        if self.packer.full():
            yield from self.packer.batches()

    def finish_bundle(self):
        for item in self.packer.batches():
            yield _end_of_bundle(item)


def flush_packers(packers: Iterable[tuple[str | None, Packer]], final: bool = False) -> Iterator:
    """Emit the batches of several packers of one DoFn (tag None: the main output)."""
    for output, packer in packers:
        for item in packer.batches():
            item = _end_of_bundle(item) if final else item
            yield item if output is None else beam.pvalue.TaggedOutput(output, item)


def _grouped(lists: list[list[tuple[Any, Any]]]) -> dict[Any, list]:
    grouped: dict[Any, list] = defaultdict(list)
    for items in lists:
        for key, value in items:
            grouped[key].append(value)
    return grouped


def unpack(blobs: Iterable[bytes], tags: int, counts: dict[str, int] | None = None,
           unique: tuple[int, ...] = (), drive: tuple[int, ...] | None = None) -> Iterator[tuple[Any, list[list]]]:
    """A partition's batches merged: (key, one list of values per tag) for every key. ``counts``
    receives the number of records per packer label.

    ``unique``: tags whose keys are expected once each (node records, say): they are built with a
    C-speed ``dict(items)``, and a key that does occur several times is still handed to the reduce
    with all its values. ``drive``: only keys present in these tags are visited (the others have
    nothing to do), plus any repeated key of a ``unique`` tag."""
    items_by_tag: list[list] = [[] for _ in range(tags)]
    for blob in blobs:
        label, tag, items = pickle.loads(blob)
        if counts is not None:
            counts[label] = counts.get(label, 0) + len(items)
        items_by_tag[tag].append(items)
    by_tag: list[dict] = []
    repeated: dict[int, dict[Any, list]] = {}
    for tag, lists in enumerate(items_by_tag):
        if tag in unique:
            single = dict(item for items in lists for item in items)
            if len(single) < sum(len(items) for items in lists):  # rare: collect the repeats
                repeated[tag] = {k: v for k, v in _grouped(lists).items() if len(v) > 1}
            by_tag.append(single)
        else:
            by_tag.append(_grouped(lists))
    if tags == 1 and not unique:
        for key, values in by_tag[0].items():
            yield key, [values]
        return
    visit = set().union(*(by_tag[t] for t in (range(tags) if drive is None else drive)))
    for more in repeated.values():
        visit.update(more)
    empty: list = []
    for key in visit:
        values = []
        for tag, d in enumerate(by_tag):
            if tag in unique:
                if tag in repeated and key in repeated[tag]:
                    values.append(repeated[tag][key])
                else:
                    values.append([d[key]] if key in d else empty)
            else:
                values.append(d.get(key, empty))
        yield key, values


class UnpackGroups(beam.DoFn):
    """(partition, blobs) -> ``reduce(key, values_per_tag)`` for every key of the partition.

    ``reduce`` returns an iterable of outputs (TaggedOutput allowed) or None. Without ``reduce``
    the DoFn emits (key, values) for one tag, (key, [values of tag 0, values of tag 1, ...]) for
    several. As with GroupByKey, the order of a key's values is not defined: reducers must not
    depend on it.

    ``pack_as=(label, partitions)``: the main outputs, (key, value) pairs, go straight into a
    ``Packer`` for the next grouping, which then takes this DoFn's output as a packed input: two
    groupings in a row with no Beam element per record between them."""

    def __init__(self, label: str, tags: int = 1, reduce: Callable | None = None,
                 pack_as: tuple[str, int] | None = None, unique: tuple[int, ...] = (),
                 drive: tuple[int, ...] | None = None):
        self.label, self.tags, self.reduce, self.pack_as = label, tags, reduce, pack_as
        self.unique, self.drive = unique, drive

    def setup(self):
        self.counters: dict[str, Any] = {}

    def start_bundle(self):
        self.packer = Packer(*self.pack_as) if self.pack_as else None

    def finish_bundle(self):
        if self.packer is not None:
            for item in self.packer.batches():
                yield _end_of_bundle(item)

    def process(self, element):
        if self.packer is None:
            yield from self._outputs(element)
            return
        packer = self.packer
        for out in self._outputs(element):
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield out
            else:
                packer.add(*out)
        if packer.full():
            yield from packer.batches()

    def _outputs(self, element):
        _, blobs = element
        counts: dict[str, int] = {}
        for key, values in unpack(blobs, self.tags, counts, self.unique, self.drive):
            if self.reduce is not None:
                out = self.reduce(key, values)
                if out is not None:
                    yield from out
            else:
                yield (key, values[0] if self.tags == 1 else values)
        for source, n in counts.items():
            if source not in self.counters:
                self.counters[source] = shuffle_counter(source, f"unpacked/{self.label}")
            self.counters[source].inc(n)


class GroupInBatches(beam.PTransform):
    """GroupByKey (one PCollection of (key, value)) or CoGroupByKey (a list of them: tag i is
    the i-th) in batches. With ``reduce`` the grouped keys are consumed in place (see
    ``UnpackGroups``) and its outputs returned; ``with_outputs`` names tagged outputs of reduce.

    ``packed`` lists the inputs that are already (partition, blob) batches, made by a ``Packer``
    whose tag is the input's position and whose partition count is ``partitions``. ``pack_as``
    packs the main outputs for a following grouping; ``unique`` and ``drive`` say which keys
    the reduce needs to see (see ``unpack``)."""

    def __init__(self, label: str, partitions: int, reduce: Callable | None = None,
                 with_outputs: tuple[str, ...] = (), main: str = "main", packed: tuple[int, ...] = (),
                 pack_as: str | None = None, unique: tuple[int, ...] = (), drive: tuple[int, ...] | None = None):
        super().__init__()
        self.label, self.partitions, self.reduce = label, partitions, reduce
        self.with_outputs, self.main, self.packed = with_outputs, main, packed
        self.pack_as = (pack_as, partitions) if pack_as else None
        self.unique, self.drive = unique, drive

    def expand(self, inputs):
        many = isinstance(inputs, (list, tuple))
        pcolls = list(inputs) if many else [inputs]
        batches = [pcoll if i in self.packed
                   else pcoll | f"Pack{i}" >> beam.ParDo(PackDoFn(f"{self.label}/in{i}", self.partitions, i))
                   for i, pcoll in enumerate(pcolls)]
        # the element type is stated: Beam's inference sees a DoFn's tagged outputs as its main one
        batches = batches | "FlattenBatches" >> beam.Flatten().with_output_types(Tuple[int, bytes])
        grouped = batches | "GroupPartitions" >> beam.GroupByKey()
        unpack_fn = beam.ParDo(UnpackGroups(self.label, len(pcolls) if many else 1, self.reduce, self.pack_as,
                                             self.unique, self.drive))
        if self.with_outputs:
            return grouped | "Unpack" >> unpack_fn.with_outputs(*self.with_outputs, main=self.main)
        return grouped | "Unpack" >> unpack_fn


def check_shuffle_counts(counters: dict[str, int]) -> list[str]:
    """Problems found in a finished run's counters: a grouping that unpacked a different number
    of records than their packer packed."""
    problems = []
    prefix = "shuffle/"
    for name, packed in sorted(counters.items()):
        if not (name.startswith(prefix) and name.endswith("/packed")):
            continue
        source = name[len(prefix):-len("/packed")]
        for other, unpacked in sorted(counters.items()):
            if other.startswith(f"{prefix}{source}/unpacked/") and unpacked != packed:
                grouping = other[len(f"{prefix}{source}/unpacked/"):]
                problems.append(f"grouping {grouping!r} received {unpacked} of the {packed} records {source!r} "
                                f"packed: data was lost between pipeline steps")
    return problems
