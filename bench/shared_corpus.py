"""Benchmark corpora: the real shared documents (WikiText articles, Common Crawl pages) topped up
with the project's own generated web-like documents, with the real and generated parts counted."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ARTICLE_TITLE = re.compile(r"^ = [^=].* = $")


def wikitext_articles(data: Path = SHARED_DATA) -> list[dict]:
    docs = []
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        path = data / "wiki" / name
        if not path.exists():
            continue
        current: list[str] = []
        title = None

        def flush() -> None:
            if title and current:  # titles repeat ("<unk> <unk>"): the article's position keeps ids unique
                docs.append({"id": f"{name}:{len(docs)}:{title}", "text": "\n".join(current).strip(),
                             "source": "wikitext"})

        for line in path.read_text(encoding="utf-8").splitlines():
            if ARTICLE_TITLE.match(line):
                flush()
                title, current = line.strip(" ="), []
            elif line.strip():
                current.append(line.strip())
        flush()
    return docs


def web_documents(data: Path = SHARED_DATA) -> list[dict]:
    docs = []
    for path in sorted((data / "web").glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                record = json.loads(line)
                docs.append({"id": f"{path.name}:{record.get('id', i)}", "text": record["text"], "source": "web"})
    return docs


def real_documents() -> list[dict]:
    return wikitext_articles() + web_documents()


def mixed_corpus(n_docs: int, seed: int = 0) -> tuple[list[dict], int]:
    """``n_docs`` documents: all real ones first, then generated ones; returns (docs, real count)."""
    from thresher.pipeline.demo.corpus import generate_demo_corpus

    real = real_documents()[:n_docs]
    generated = generate_demo_corpus(max(n_docs - len(real), 0), seed=seed) if n_docs > len(real) else []
    docs = real + [{"id": f"gen-{d['id']}", "text": d["text"], "source": "generated"} for d in generated]
    return docs, len(real)


def write_jsonl(docs: list[dict], path: Path) -> int:
    with open(path, "w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return sum(len(d["text"].encode()) for d in docs)
