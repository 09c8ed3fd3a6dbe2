"""Live progress for local runs. Beam's local runners report metrics only at the end, so the
DoFns that read and filter documents drop small heartbeat files (cumulative counts, rewritten at
most once a second) into OUT/_progress/, and a thread in the driver sums and shows them."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections import Counter

from thresher.filters.storage import atomic_write

HEARTBEAT_SECONDS = 1.0


class Heartbeat:
    """Cumulative counts of one DoFn instance, written atomically to its own file."""

    def __init__(self, directory: str | None, role: str):
        self.directory = directory
        self.path = os.path.join(directory, f"{role}-{uuid.uuid4().hex}.json") if directory else None
        self.counts: Counter = Counter()
        self._last = 0.0

    def add(self, **counts: int) -> None:
        if self.path is None:
            return
        self.counts.update(counts)
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_SECONDS:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self.path is None or not os.path.isdir(self.directory or ""):
            return
        atomic_write(self.path, json.dumps(dict(self.counts)).encode())


def read_heartbeats(directory: str) -> Counter:
    total: Counter = Counter()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return total
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as fh:
                total.update(json.load(fh))
        except (OSError, ValueError):
            continue  # being replaced right now; next tick
    return total


class Progress:
    """Shows documents read, passed, rejected and quarantined, with the read rate, while the
    pipeline runs; removes its heartbeat directory afterwards."""

    def __init__(self, output_dir: str, enabled: bool):
        self.directory = os.path.join(output_dir, "_progress") if enabled else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Progress":
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
            self._thread = threading.Thread(target=self._show, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
        if self.directory:
            from thresher.pipeline.outdir import remove_owned

            remove_owned(os.path.dirname(self.directory), ("_progress",), strict=False)

    def _show(self) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        start = time.monotonic()
        interactive = console.is_terminal
        last_print = 0.0
        with console.status("starting workers...") as status:
            while not self._stop.wait(0.5):
                counts = read_heartbeats(self.directory or "")
                elapsed = time.monotonic() - start
                read = counts.get("read", 0)
                line = (f"read {read:,} documents ({read / max(elapsed, 1e-9):,.0f}/s) · "
                        f"passed filters {counts.get('passed', 0):,} · rejected {counts.get('rejected', 0):,} · "
                        f"quarantined {counts.get('quarantined', 0):,} · {elapsed:,.0f}s")
                if interactive:
                    status.update(line)
                elif elapsed - last_print >= 30:  # logs, CI: one line every 30 s
                    print(line, file=sys.stderr, flush=True)
                    last_print = elapsed
