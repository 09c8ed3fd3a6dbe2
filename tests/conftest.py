import gzip
import json
import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
SHARED_DATA = TESTS_DIR.parents[1] / "shared" / "data"

# Beam's multi_processing workers are fresh interpreters: let them import test-only stage modules.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: intra-op threads only add contention on a 2-core machine (10x slower seen)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def write_jsonl(path: Path, records: list, compress: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def read_output(out: Path, kind: str) -> list[dict]:
    records = []
    for file in sorted((out / kind).glob("*.jsonl.gz")):
        with gzip.open(file, "rt", encoding="utf-8") as fh:
            records += [json.loads(line) for line in fh]
    return records


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every output file except stats.json (which holds timings), by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "stats.json"}
