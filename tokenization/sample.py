"""A bounded, seeded sample of documents that does not depend on how the corpus is split.

Bottom-k sampling: every document gets the key ``xxh64(id, seed)`` and the sample is the ``k``
documents with the smallest keys. Partial samples merge by keeping the ``k`` smallest of their union,
so any partition of the corpus over any number of workers gives the same sample, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

SampleItem = tuple[int, str, str]  # (key, id, text)


def sample_key(doc_id: str, seed: int) -> int:
    return xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=seed & 0xFFFFFFFFFFFFFFFF)


class BottomK:
    """The k items with the smallest (key, id, text); ties broken by id then text, so deterministic."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"sample size must be at least 1, got {k}")
        self.k = k

    def trim(self, items: list[SampleItem]) -> list[SampleItem]:
        if len(items) <= self.k:
            return items
        items.sort()
        del items[self.k:]
        return items

    def add(self, items: list[SampleItem], item: SampleItem) -> list[SampleItem]:
        items.append(item)
        # trimming at 2k keeps memory bounded with an amortised O(log k) cost per item
        return self.trim(items) if len(items) >= 2 * self.k else items

    def merge(self, parts: Iterable[list[SampleItem]]) -> list[SampleItem]:
        merged: list[SampleItem] = []
        for part in parts:
            merged.extend(part)
            if len(merged) >= 2 * self.k:
                self.trim(merged)
        return self.trim(merged)

    def result(self, items: list[SampleItem]) -> list[SampleItem]:
        return sorted(self.trim(list(items)))
