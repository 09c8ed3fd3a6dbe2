"""Reading the small JSON-lines side files that stages and commands take (labelled training data,
eval sets, manifests, corpora for embeddings): one opener and one parser with errors that name the
file and line. (Pipeline input goes through ``thresher.pipeline.io``, which quarantines instead.)"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def open_text(path: str | Path) -> IO[str]:
    """A text handle on ``path``, gunzipped when it ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def json_objects(lines: Iterable[str], name: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object raises
    ValueError naming the file and the line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
        yield number, record
