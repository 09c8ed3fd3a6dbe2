"""Augmentation throughput on one core: thresher's operations vs nlpaug's closest equivalents.

Text: the demo corpus (``generate_demo_corpus``: real-looking generated web documents, ~1.5 KB
each). Each row runs the same documents through one operation in this process (one core);
documents/s and MB/s of input text. nlpaug (``pip install nlpaug``) rows use the model-free
augmenters (its sentence shuffle needs nltk and its punkt data, not installed here, so that
row has no peer); their parameters are the nearest match, not identical semantics (nlpaug's char
augmenters pick words, then characters within them; thresher's pick characters).

    python bench/augment.py [--docs 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import time

from thresher.filters import augment_ops as ops
from thresher.pipeline.augment import Augment
from thresher.pipeline.demo.corpus import generate_demo_corpus


def measure(fn, texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for i, text in enumerate(texts):
            fn(text, i)
        best = min(best, time.perf_counter() - start)
    return best


def thresher_rows(texts: list[str]) -> dict[str, callable]:
    synonyms = {"the": ["this"], "and": ["plus"], "is": ["was"], "of": ["from"]}
    stage = Augment()
    augmenter = stage.build_augmenter({})
    return {
        "random_swap (rate 0.05)": lambda t, i: ops.random_swap(t, random.Random(i), 0.05),
        "random_delete (rate 0.05)": lambda t, i: ops.random_delete(t, random.Random(i), 0.05),
        "random_insert (rate 0.05)": lambda t, i: ops.random_insert(t, random.Random(i), 0.05, synonyms),
        "synonym_replace (rate 0.1)": lambda t, i: ops.synonym_replace(t, random.Random(i), 0.1, synonyms),
        "char_noise keyboard (2% of chars)": lambda t, i: ops.char_noise(t, random.Random(i), 0.02, ["keyboard"]),
        "char_noise ocr (2% of chars)": lambda t, i: ops.char_noise(t, random.Random(i), 0.02, ["ocr"]),
        "char_noise all kinds (2%)": lambda t, i: ops.char_noise(t, random.Random(i), 0.02),
        "sentence_shuffle": lambda t, i: ops.sentence_shuffle(t, random.Random(i)),
        "span_mask (15%)": lambda t, i: ops.span_mask(t, random.Random(i), 0.15),
        "stage defaults (Augmenter)": lambda t, i: augmenter.apply(t, random.Random(i)),
    }


def nlpaug_rows() -> dict[str, callable]:
    try:
        import nlpaug.augmenter.char as nac
        import nlpaug.augmenter.word as naw
    except ImportError:
        return {}
    big = 10**9  # nlpaug caps the number of changes per text at aug_max (default 10): lift the cap
    swap = naw.RandomWordAug(action="swap", aug_p=0.05, aug_max=big)
    delete = naw.RandomWordAug(action="delete", aug_p=0.05, aug_max=big)
    keyboard = nac.KeyboardAug(aug_char_p=0.3, aug_word_p=0.1, aug_char_max=big, aug_word_max=big)
    ocr = nac.OcrAug(aug_char_p=0.3, aug_word_p=0.1, aug_char_max=big, aug_word_max=big)
    return {
        "random_swap (rate 0.05)": lambda t, i: swap.augment(t),
        "random_delete (rate 0.05)": lambda t, i: delete.augment(t),
        "char_noise keyboard (2% of chars)": lambda t, i: keyboard.augment(t),
        "char_noise ocr (2% of chars)": lambda t, i: ocr.augment(t),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    texts = [d["text"] for d in generate_demo_corpus(args.docs, seed=1)]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    ours = thresher_rows(texts)
    theirs = nlpaug_rows()
    print(f"{len(texts)} demo documents, {megabytes:.2f} MB, best of {args.repeat}, one core\n")
    print("| operation | thresher docs/s | thresher MB/s | nlpaug docs/s | nlpaug MB/s | thresher / nlpaug |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, fn in ours.items():
        seconds = measure(fn, texts, args.repeat)
        row = f"| {name} | {len(texts) / seconds:,.0f} | {megabytes / seconds:.2f} |"
        if name in theirs:
            peer = measure(theirs[name], texts, args.repeat)
            row += f" {len(texts) / peer:,.0f} | {megabytes / peer:.2f} | {peer / seconds:.1f}x |"
        else:
            row += " - | - | - |"
        print(row)
    if not theirs:
        print("\n(nlpaug not installed: pip install nlpaug)")


if __name__ == "__main__":
    main()
