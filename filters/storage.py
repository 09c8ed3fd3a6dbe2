"""The files a stage reads (models, reference and eval sets, templates, prompts, checkpoints) and
the caches it writes, wherever they are: a local path, or a URL of any file system fsspec knows
(``gs://``, ``s3://``, ``memory://``, ...). When fsspec has no implementation installed for a URL's
scheme (``gs://`` without gcsfs), Beam's FileSystems reads it instead: ``apache-beam[gcp]`` is on
every Dataflow worker. Beam is imported only then, so this module stays Beam-free.

Stages run on workers that share no disk with the machine that launched the run. A worker reads a
remote file or directory through ``local_copy``: the first call on a machine copies it into
``$THRESHER_CACHE/remote`` (default ``~/.cache/thresher/remote``) under a hash of the URL and of
the files' sizes and modification stamps, into a temporary name renamed into place, so concurrent
workers on one machine never see a partial copy, a changed remote file gets a fresh copy, and later
calls (every other DoFn instance, every retry) reuse it. A local path is returned as it is.

Every file thresher writes (outputs, shards, manifests, stats, caches, heartbeats, the report)
goes through ``atomic_writer`` / ``atomic_write``: readers see the old file or the new one, never
a part.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class StorageError(OSError):
    """A location that no installed file system can read."""


def is_remote(location: str | os.PathLike) -> bool:
    """Whether ``location`` is a URL of a file system other than the local one (``file://``)."""
    match = _SCHEME.match(os.fspath(location))
    return bool(match) and match.group(1).lower() != "file"


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(os.path.expanduser(base), *parts)


def cache_root() -> Path:
    env = os.environ.get("THRESHER_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "thresher") / "remote"


class _Fsspec:
    def __init__(self, fs):
        self.fs = fs

    def _path(self, location: str) -> str:
        import fsspec

        return fsspec.core.url_to_fs(location)[1]

    def exists(self, location: str) -> bool:
        return self.fs.exists(self._path(location))

    def isfile(self, location: str) -> bool:
        return self.fs.isfile(self._path(location))

    def isdir(self, location: str) -> bool:
        return self.fs.isdir(self._path(location))

    def open(self, location: str, mode: str) -> IO[bytes]:
        return self.fs.open(self._path(location), mode)

    def version(self, location: str) -> str:
        return str(self.fs.ukey(self._path(location)))

    def files_under(self, location: str) -> list[tuple[str, str]]:
        root = self._path(location).rstrip("/")
        return sorted((posixpath.relpath(path, root), str(self.fs.ukey(path)))
                      for path in self.fs.find(root) if path.rstrip("/") != root)


class _Beam:
    """Beam's FileSystems, for schemes fsspec cannot serve here (gs:// with apache-beam[gcp])."""

    def __init__(self):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        self.fs, self.raw = FileSystems, CompressionTypes.UNCOMPRESSED

    def exists(self, location: str) -> bool:
        return self.fs.exists(location) or self.isdir(location)

    def isfile(self, location: str) -> bool:
        return self.fs.exists(location) and not self.isdir(location)

    def isdir(self, location: str) -> bool:
        return bool(self._match(location.rstrip("/") + "/**"))

    def open(self, location: str, mode: str) -> IO[bytes]:
        if mode == "wb":
            return self.fs.create(location, compression_type=self.raw)
        return self.fs.open(location, compression_type=self.raw)

    def _match(self, pattern: str) -> list:
        return [m for result in self.fs.match([pattern]) for m in result.metadata_list]

    def version(self, location: str) -> str:
        found = self._match(location)
        return f"{found[0].size_in_bytes}-{found[0].last_updated_in_seconds}" if found else ""

    def files_under(self, location: str) -> list[tuple[str, str]]:
        root = location.rstrip("/")
        return sorted((posixpath.relpath(m.path, root), f"{m.size_in_bytes}-{m.last_updated_in_seconds}")
                      for m in self._match(root + "/**"))


def _backend(location: str) -> Any:
    import fsspec

    try:
        return _Fsspec(fsspec.core.url_to_fs(location)[0])
    except (ImportError, ValueError) as fsspec_error:
        try:
            from apache_beam.io.filesystems import FileSystems

            FileSystems.get_filesystem(location)
            return _Beam()
        except (ImportError, ValueError):
            raise StorageError(f"{location}: no file system installed for this URL ({fsspec_error}; Beam's "
                               "FileSystems neither: for gs:// install gcsfs or apache-beam[gcp], for s3:// "
                               "s3fs or apache-beam[aws])") from None


def exists(location: str | os.PathLike) -> bool:
    location = os.fspath(location)
    return _backend(location).exists(location) if is_remote(location) else os.path.exists(os.path.expanduser(location))


def isfile(location: str | os.PathLike) -> bool:
    location = os.fspath(location)
    return _backend(location).isfile(location) if is_remote(location) else os.path.isfile(os.path.expanduser(location))


def isdir(location: str | os.PathLike) -> bool:
    location = os.fspath(location)
    return _backend(location).isdir(location) if is_remote(location) else os.path.isdir(os.path.expanduser(location))


def read_bytes(location: str | os.PathLike) -> bytes:
    location = os.fspath(location)
    if not is_remote(location):
        return Path(location).expanduser().read_bytes()
    with _backend(location).open(location, "rb") as handle:
        return handle.read()


@contextlib.contextmanager
def atomic_writer(location: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file object whose content appears at ``location`` all at once when the block ends,
    with no moment where ``location`` is missing or partial. On a local disk: a temporary name
    beside it, ``.tmp-NAME-<uuid4>``, unique to this attempt (two attempts of a retried bundle never
    share one), then ``os.replace``. On object stores (gs://, s3://, ...) the object is written in
    place: an upload becomes visible only when it completes, and a rename there would be a copy and
    a delete. Equal content from a retried attempt simply replaces the first copy."""
    location = os.fspath(location)
    if is_remote(location):
        with _backend(location).open(location, "wb") as handle:
            yield handle
        return
    local = location[len("file://"):] if location.startswith("file://") else location
    os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(local), f".tmp-{os.path.basename(local)}-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            yield handle
        os.replace(tmp, local)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(location: str | os.PathLike, data: bytes) -> None:
    """``data`` at ``location`` through ``atomic_writer``."""
    with atomic_writer(location) as handle:
        handle.write(data)


def files_under(location: str) -> list[str]:
    """The paths, relative to ``location``, of the files below a remote directory, sorted."""
    return [relative for relative, _ in _backend(location).files_under(location)]


def local_copy(location: str | os.PathLike) -> Path:
    """A local path holding ``location`` (a file or a directory tree): the path itself when it is
    local, else the machine's cached copy, made on first use (see the module docstring).
    FileNotFoundError when a remote location does not exist."""
    location = os.fspath(location)
    if not is_remote(location):
        return Path(location).expanduser()
    backend = _backend(location)
    single = backend.isfile(location)
    entries = [("", backend.version(location))] if single else backend.files_under(location)
    if not entries:
        raise FileNotFoundError(f"{location} does not exist (or is an empty directory)")
    key = hashlib.sha256(json.dumps([location, entries]).encode()).hexdigest()[:32]
    name = posixpath.basename(location.rstrip("/")) or "root"
    final = cache_root() / key / name
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        for relative, _ in entries:
            target = tmp / relative if relative else tmp
            target.parent.mkdir(parents=True, exist_ok=True)
            source = posixpath.join(location.rstrip("/"), relative) if relative else location
            with backend.open(source, "rb") as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():  # not another worker's finished copy: a real failure
                raise
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return final
