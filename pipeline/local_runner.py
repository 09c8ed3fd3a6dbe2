"""The local DirectRunner: which mode a run gets, and the fix of a data-loss race in Beam's
multi-process mode that thresher applies before it uses that mode.

The race (Beam 2.77, ``apache_beam/runners/worker/data_plane.py``; the report for Beam is
docs/beam-race.md): the runner-side data stream that feeds
each bundle's input to a worker process is a ``TimeBasedBufferingClosableOutputStream``. A timer
thread flushes it every second with ``callback(self.get()); self._clear()`` under a lock, while
``write()`` takes no lock, so bytes written between ``get()`` and ``_clear()`` are dropped without
an error. ``BundleManager._send_input_to_worker`` writes whole bundles into that stream from one
thread per worker; inputs of a few hundred MB straddle a timer tick. thresher makes every write of
that class take the lock the flush already holds (``close_data_stream_race``), which closes the
window and keeps the timer (it only matters for streaming latency). ``stream_loses_writes``
reproduces the race on any stream class, so a test fails if a Beam upgrade makes the fix stop
applying.

Mode choice (the default): ``in_memory`` (one process, one core) below ``multi_process_min_bytes``
of input, where starting worker processes and coordinating them per stage costs more than the
second core saves; from there ``multi_processing`` with one worker process per core. Measured on 2
cores (docs/benchmarks.md, issue 14): one process wins at 41-47 MB, a worker per core at 149 MB
(0.84x the wall time) and 1.9 GB (0.65x); the fixed cost grows slowly with the core count while the
gain grows with it, so the threshold (64 MB on 2 cores) falls as 128 MB / cores, to 8 MB at 16.
The multi-process mode holds every grouping's input in the runner process as well: its peak was
5.3x the input size at 1,000,000 documents against 2.7x in one process, so a worker per core is
only chosen when ``MULTI_PROCESS_MEMORY_X`` times the input fits in the memory available now.
Either mode can be forced with ``runner.options.direct_running_mode`` / ``direct_num_workers`` or
the same flags after ``--``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

#: input bytes per core from which a local run starts one worker process per core (see above)
MULTI_PROCESS_BYTES_X_CORES = 128 << 20
MULTI_PROCESS_FLOOR_BYTES = 8 << 20


#: peak memory of a multi-process run as a multiple of its input size (measured: 5.3x at 1M documents)
MULTI_PROCESS_MEMORY_X = 6


def available_memory() -> int:
    """Bytes of memory available to new processes now (Linux MemAvailable; 0 if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def multi_process_min_bytes(cores: int) -> int:
    return max(MULTI_PROCESS_FLOOR_BYTES, MULTI_PROCESS_BYTES_X_CORES // max(cores, 1))

_WRITE_METHODS = ("write", "write_byte", "write_var_int64", "write_var_int32", "write_bigendian_int64",
                  "write_bigendian_uint64", "write_bigendian_int32", "write_bigendian_int16",
                  "write_bigendian_double", "write_bigendian_float")
_PATCHED = "_thresher_locked_writes"


def _locked(cls, name: str):
    unlocked = getattr(cls, name)

    def write(self, *args):
        with self._flush_lock:
            return unlocked(self, *args)

    write.__name__ = name
    return write


def _stream_class():
    from apache_beam.runners.worker import data_plane

    return data_plane.TimeBasedBufferingClosableOutputStream


def close_data_stream_race() -> None:
    """Make every write of Beam's time-flushed data stream hold the lock its timer flush holds.
    Idempotent. Raises RuntimeError if the stream no longer has the methods this fix wraps (then
    the multi-process mode must not be used until the fix is revisited)."""
    cls = _stream_class()
    if cls.__dict__.get(_PATCHED):
        return
    missing = [name for name in _WRITE_METHODS + ("flush",) if not hasattr(cls, name)]
    if missing:
        raise RuntimeError(f"apache_beam's TimeBasedBufferingClosableOutputStream lacks {missing}: thresher's fix of "
                           f"its data-loss race no longer applies; use direct_running_mode: in_memory")
    for name in _WRITE_METHODS:
        setattr(cls, name, _locked(cls, name))
    setattr(cls, _PATCHED, True)


def race_closed() -> bool:
    return bool(_stream_class().__dict__.get(_PATCHED))


def stream_loses_writes(writes: int = 2000, chunk: int = 100_000, flush_ms: int = 1) -> int:
    """Bytes lost when one thread writes ``writes`` chunks into a runner-side data channel stream
    that a timer flushes every ``flush_ms`` (the shape of ../shared/beam-race/race2.py, with a
    short timer so that a few seconds hit the window many times). 0 when the stream is safe."""
    from apache_beam.runners.worker import data_plane

    channel = data_plane._GrpcDataChannel(data_buffer_time_limit_ms=flush_ms)
    received = {"bytes": 0}
    done = threading.Event()

    def consume() -> None:
        for elements in channel._write_outputs():
            for data in elements.data:
                received["bytes"] += len(data.data)
                if data.is_last:
                    done.set()

    threading.Thread(target=consume, daemon=True).start()
    stream = channel.output_stream("bundle", "transform")
    payload = b"x" * chunk
    for _ in range(writes):
        stream.write(payload)
    stream.close()
    if not done.wait(timeout=60):
        raise RuntimeError("the data channel never delivered its last chunk")
    time.sleep(0.01)
    return writes * chunk - received["bytes"]


def input_bytes(files: list[tuple[str, str]]) -> int:
    """Total size of the input files (0 where a file system cannot tell)."""
    from apache_beam.io.filesystems import FileSystems

    total = 0
    for path, _ in files:
        try:
            total += FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        except Exception:  # noqa: BLE001 - a size is only a hint for choosing the mode
            continue
    return total


def direct_options(options: dict[str, Any], size: int, cores: int | None = None,
                   memory: int | None = None) -> dict[str, Any]:
    """Fill in the DirectRunner's mode and worker count (the user's choices win)."""
    cores = cores or os.cpu_count() or 1
    memory = available_memory() if memory is None else memory
    out = dict(options)
    if "direct_running_mode" not in out:
        worth_it = cores > 1 and size >= multi_process_min_bytes(cores)
        fits = not memory or size * MULTI_PROCESS_MEMORY_X <= memory
        if worth_it and not fits:
            logging.getLogger("thresher").info(
                "one process: a worker per core would need about %.1f GB for %.1f GB of input; %.1f GB is available",
                size * MULTI_PROCESS_MEMORY_X / 1e9, size / 1e9, memory / 1e9)
        out["direct_running_mode"] = "multi_processing" if worth_it and fits else "in_memory"
    if out["direct_running_mode"] == "in_memory":
        out.setdefault("direct_num_workers", 1)
    else:
        out.setdefault("direct_num_workers", cores)
    if out["direct_running_mode"] == "multi_processing":
        close_data_stream_race()
    return out
