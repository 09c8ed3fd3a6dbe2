"""What thresher owns in an output directory, and the rules that keep a run from destroying its input.

A run replaces the parts of OUT that it writes (``kept/``, ``rejected/``, ``shards/``, ...) and
nothing else: ``OUT/input/`` or any other folder of the user's is never touched. Within its own
parts it deletes only files whose names it writes (``part-00000-of-00004.jsonl.gz``, ...); a
foreign file there stops the run before anything is deleted. Validation refuses an input glob (or a
stage's path) that can reach into those parts, because the run would delete it before reading it.

No Beam import at module level: ``thresher validate`` uses the path checks.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from typing import Any, Iterator

GLOB_CHARS = "*?["
#: folders of OUT that a run writes, and the names of the files it writes there (a run deletes
#: only these). The scratch folders' names mirror io.SPILL_DIR, graph.STATS_DIR,
#: poisoning.REVIEW_DIR (tests/test_output_dir.py checks that they agree).
OWNED_DIRS: dict[str, tuple[str, ...]] = {
    "kept": ("part-*-of-*.jsonl.gz",),
    "rejected": ("part-*-of-*.jsonl.gz",),
    "quarantine": ("part-*-of-*.jsonl.gz",),
    "shards": ("shard-*.arrow", "manifest.json", "tokenizer.model"),
    "poisoning_review": ("review-*-of-*.jsonl",),
    "_spill": ("*.pkl",),
    "_stage_stats": ("*.json",),
    "_progress": ("*.json",),
}
#: files at the top of OUT that a run writes
OWNED_FILES = ("stats.json", "report.html")
#: what an atomic write cut short (a killed run) leaves beside its target: storage.atomic_writer's
#: ".tmp-NAME-UUID"; the other two are the names earlier versions' writers left (".NAME.tmp-X", "NAME.tmp")
TEMPORARY = (".tmp-*", ".*.tmp-*", "*.tmp")
#: folders a run creates empty before it starts
CREATED_DIRS = ("kept", "rejected", "quarantine")


def is_remote(path: str) -> bool:
    return "://" in path


def normalise(path: str) -> str:
    """An absolute, symlink-free local path, or a URL with duplicate slashes and trailing slash removed."""
    if is_remote(path):
        scheme, rest = path.split("://", 1)
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return f"{scheme}://" + "/".join(parts)
    return os.path.realpath(path)


def _segments(path: str) -> list[str]:
    if is_remote(path):
        scheme, rest = path.split("://", 1)
        return [f"{scheme}://"] + rest.split("/")
    return [p for p in path.split(os.sep) if p]


def _pattern_segments(pattern: str) -> list[str]:
    """The pattern with its literal head (the folders before the first glob character) normalised."""
    parts = pattern.split("/")
    first = next((i for i, p in enumerate(parts) if any(c in p for c in GLOB_CHARS)), len(parts))
    head = "/".join(parts[:first]) or ("/" if pattern.startswith("/") else ".")
    return _segments(normalise(head)) + [p for p in parts[first:] if p]


def _reaches(pattern: list[str], target: list[str], folder: bool) -> bool:
    """Whether some path the glob ``pattern`` matches lies below the folder ``target`` (is the
    file ``target``)."""
    for index, part in enumerate(target):
        if index >= len(pattern):
            return False  # the pattern ends above the target
        if pattern[index] == "**":
            return True
        if not fnmatch.fnmatchcase(part, pattern[index]):
            return False
    return len(pattern) > len(target) if folder else True


def owned_paths(output_dir: str) -> list[tuple[str, str]]:
    """(name shown to the user, normalised path) of every part of OUT that a run writes."""
    root = normalise(output_dir)
    join = posixpath.join if is_remote(root) else os.path.join
    return [(f"{name}/" if name in OWNED_DIRS else name, join(root, name))
            for name in (*OWNED_DIRS, *OWNED_FILES)]


def owned_part_reached(pattern: str, output_dir: str) -> str | None:
    """The part of OUT (``kept/``, ``stats.json``, ...) that ``pattern`` (a path or glob) can match
    inside, or None. Remote and local paths never overlap."""
    if is_remote(pattern) != is_remote(output_dir):
        return None
    segments = _pattern_segments(pattern)
    for name, path in owned_paths(output_dir):
        if _reaches(segments, _segments(path), folder=name.endswith("/")):
            return name
    return None


def overlap_problems(input_paths: list[str], stage_values: list[tuple[tuple[Any, ...], Any]],
                     output_dir: str) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) for every input glob and every path-like stage value (a string with a
    ``/``) that can reach into a part of OUT the run replaces, and for an OUT that is a file."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    if not is_remote(output_dir) and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        problems.append((("output",), f"{output_dir!r} is a file, not a directory"))
        return problems
    for index, pattern in enumerate(input_paths):
        part = owned_part_reached(pattern, output_dir)
        if part:
            problems.append((("input", "paths", index),
                             f"{pattern!r} can match files in {part} of the output directory {output_dir!r}, "
                             f"which this run deletes and rewrites before reading its input; to chain runs, "
                             f"give this run another output directory"))
    for loc, value in stage_values:
        if isinstance(value, str) and "/" in value:
            part = owned_part_reached(value, output_dir)
            if part:
                problems.append((loc, f"{value!r} is in {part} of the output directory {output_dir!r}, which "
                                      f"this run deletes and rewrites before it reads this file; copy it elsewhere "
                                      f"or give this run another output directory"))
    return problems


def walk_values(value: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(location, leaf value) of every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk_values(item, loc + (key,))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from walk_values(item, loc + (index,))
    else:
        yield loc, value


# ---------------------------------------------------------------------------------------------
# Removing what an earlier run wrote


class ForeignFiles(Exception):
    """Files in a part of OUT that thresher owns whose names thresher never writes."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        shown = ", ".join(repr(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        super().__init__(f"{shown}: not {'a file' if len(paths) == 1 else 'files'} thresher writes, in a folder a "
                         f"run replaces; thresher deletes only its own files there: move "
                         f"{'it' if len(paths) == 1 else 'them'} away or give the run another output directory")


def _is_owned_name(part: str, name: str) -> bool:
    patterns = OWNED_DIRS[part] + TEMPORARY
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _files_below(directory: str) -> list[str]:
    if is_remote(directory):  # object stores have no folders to test for: list the prefix
        from apache_beam.io.filesystems import FileSystems

        return sorted(m.path for m in FileSystems.match([posixpath.join(directory, "**")])[0].metadata_list)
    found = []
    for root, _, names in os.walk(directory):
        found += [os.path.join(root, n) for n in names]
    return sorted(found)


def _exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.lexists(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def _delete(paths: list[str]) -> None:
    if not paths:
        return
    from apache_beam.io.filesystems import FileSystems

    FileSystems.delete(paths)


def _remove_empty_dirs(directory: str) -> None:
    if is_remote(directory) or not os.path.isdir(directory):
        return
    for root, _, _ in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(root)
        except OSError:
            pass  # not empty: a foreign file, left in place


def remove_owned(output_dir: str, parts: tuple[str, ...], strict: bool = True) -> None:
    """Delete the files a run writes in ``parts`` of OUT (folders of OWNED_DIRS or files of
    OWNED_FILES). ``strict``: a foreign file in one of those folders raises ForeignFiles before
    anything is deleted; otherwise foreign files are left where they are."""
    join = posixpath.join if is_remote(output_dir) else os.path.join
    doomed: list[str] = []
    foreign: list[str] = []
    for part in parts:
        path = join(output_dir, part)
        if part in OWNED_FILES:
            if not is_remote(path) and os.path.isdir(path):
                foreign.append(path)
            elif _exists(path):
                doomed.append(path)
            continue
        for file in _files_below(path):
            (doomed if _is_owned_name(part, posixpath.basename(file.replace(os.sep, "/"))) else foreign).append(file)
    if not is_remote(output_dir) and os.path.isdir(output_dir):
        doomed += [os.path.join(output_dir, n) for n in sorted(os.listdir(output_dir))
                   if any(fnmatch.fnmatchcase(n, p) for f in OWNED_FILES for p in (f".tmp-{f}-*", f".{f}.tmp-*"))]
    if foreign and strict:
        raise ForeignFiles(foreign)
    _delete(doomed)
    for part in parts:
        if part in OWNED_DIRS:
            _remove_empty_dirs(join(output_dir, part))


def prepare_output(output_dir: str) -> None:
    """Remove what an earlier run wrote in the parts of OUT that a run replaces (only files thresher
    writes there; ForeignFiles if anything else is there) and create the empty record folders."""
    if not is_remote(output_dir):
        os.makedirs(output_dir, exist_ok=True)
    remove_owned(output_dir, (*OWNED_DIRS, *OWNED_FILES))
    if not is_remote(output_dir):
        for part in CREATED_DIRS:
            os.makedirs(os.path.join(output_dir, part), exist_ok=True)
