"""Per-document filter stages, one at a time, on real text: WikiText-2 articles and the Common
Crawl documents of ../shared/data/web. thresher's stages and, in the same run, datatrove's
GopherQualityFilter / GopherRepetitionFilter / C4QualityFilter on the same documents (through
bench/peers_datatrove.py in the datatrove venv), with the share of documents on which the two
decide the same. Prints one markdown table. Usage:

    python bench/heuristic_filters.py [--wiki-docs 60] [--repeat 3] [--datatrove-python /work/dt-venv/bin/python]

Throughput is single-process (one core) in CPU seconds of the measuring process (steadier than
wall-clock on a shared, oversubscribed machine; these stages are single-threaded): the best of
``--repeat`` timed passes after a warm-up pass (numba kernels and models loaded outside the timing).
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

_spec = importlib.util.spec_from_file_location("shared_corpus", BENCH / "shared_corpus.py")
shared_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shared_corpus)
web_documents, wikitext_articles = shared_corpus.web_documents, shared_corpus.wikitext_articles

from thresher.filters.model_store import default_model_path  # noqa: E402
from thresher.pipeline.registry import stage_class  # noqa: E402

STAGES = [
    ("normalize", {}),
    ("language", {"backend": "cld3"}),
    ("language", {"backend": "fasttext"}),
    ("gopher_quality", {}),
    ("gopher_repetition", {}),
    ("c4_quality", {}),
]


def time_stage(name: str, params: dict, docs: list[dict], repeat: int) -> tuple[float, list[bool]]:
    stage = stage_class(name)(**params)
    stage.setup()
    stage.process_batch(docs[:5])
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        decisions = stage.process_batch(docs)
        best = min(best, time.process_time() - start)
    return best, [d.keep for d in decisions]


def datatrove(python: str, docs: list[dict], repeat: int) -> dict | None:
    script = BENCH / "peers_datatrove.py"
    if not Path(python).exists():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as fh:
        for doc in docs:
            fh.write(json.dumps({"id": doc["id"], "text": doc["text"]}) + "\n")
    proc = subprocess.run([python, str(script), "--docs", fh.name, "--repeat", str(repeat), "--each"],
                          capture_output=True, text=True)
    Path(fh.name).unlink()
    if proc.returncode != 0:
        print(f"datatrove failed: {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["each"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wiki-docs", type=int, default=60, help="WikiText articles to use (datatrove is slow)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--datatrove-python", default="/work/dt-venv/bin/python")
    args = parser.parse_args()
    corpora = {"WikiText-2 articles": wikitext_articles()[: args.wiki_docs], "Common Crawl web docs": web_documents()}
    corpora = {k: v for k, v in corpora.items() if v}
    if not corpora:
        sys.exit("../shared/data is absent: nothing to measure")
    rows = []
    for corpus, docs in corpora.items():
        mb = sum(len(d["text"].encode("utf-8")) for d in docs) / 1e6
        peer = datatrove(args.datatrove_python, docs, max(1, args.repeat // 2))
        for name, params in STAGES:
            if params.get("backend") == "fasttext" and not default_model_path("lid176").is_file():
                continue
            seconds, kept = time_stage(name, params, docs, args.repeat)
            label = name + (f" ({params['backend']})" if "backend" in params else "")
            row = [corpus, f"{len(docs)} docs, {mb:.2f} MB", label, f"{len(docs) / seconds:,.0f}",
                   f"{mb / seconds:.2f}", f"{sum(kept)}"]
            if peer and name in peer:
                theirs = peer[name]
                agree = sum(a == b for a, b in zip(kept, theirs["decisions"])) / len(docs)
                their_seconds = theirs["cpu_seconds"]
                row += [f"{len(docs) / their_seconds:,.1f}", f"{mb / their_seconds:.3f}",
                        f"{theirs['kept']}", f"{their_seconds / seconds:,.0f}x", f"{agree:.0%}"]
            else:
                row += ["", "", "", "", ""]
            rows.append(row)
    print("| corpus | size | stage | thresher docs/s | thresher MB/s | kept | datatrove docs/s | "
          "datatrove MB/s | datatrove kept | speed-up | same decision |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
