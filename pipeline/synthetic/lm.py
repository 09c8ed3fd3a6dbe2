"""The ``lm`` generator: continuations of prompts sampled from a local causal LM
(``thresher.training.sampling``). Example ``n`` uses prompt ``n mod len(prompts)``; each batch's
sampler is seeded from (seed, first index of the batch), and batches are fixed by the index
ranges, so an example's text does not depend on the worker."""

from __future__ import annotations

from typing import Sequence

from thresher.filters.augment_ops import stable_seed
from thresher.pipeline.synthetic.base import Generated
from thresher.training.sampling import LMSampler


def _batches_by_prompt(indices: Sequence[int], n_prompts: int, batch_size: int) -> list[tuple[int, list[int]]]:
    """Indices grouped by their prompt (n mod prompts) and cut into batches: a batch shares one
    prompt, so no padding is needed and a batch's content depends only on the index range."""
    groups: dict[int, list[int]] = {}
    for n in indices:
        groups.setdefault(n % n_prompts, []).append(n)
    out = []
    for prompt_index in sorted(groups):
        members = groups[prompt_index]
        out += [(prompt_index, members[i:i + batch_size]) for i in range(0, len(members), batch_size)]
    return out


class LocalLMGenerator:
    """Samples continuations of ``prompts`` from a local causal LM (see the module docstring)."""

    name = "lm"

    def __init__(self, model: str, prompts: Sequence[str], seed: int, kind: str = "auto",
                 tokenizer: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                 max_tokens: int = 128, batch_size: int = 8, device: str = "auto",
                 include_prompt: bool = True):
        self.sampler = LMSampler(model, kind=kind, tokenizer=tokenizer, temperature=temperature, top_p=top_p,
                                 max_tokens=max_tokens, device=device)
        self.prompts = list(prompts)
        self.seed = seed
        self.batch_size, self.include_prompt = batch_size, include_prompt

    def generate(self, indices: Sequence[int]) -> list[Generated]:
        found: dict[int, Generated] = {}
        for prompt_index, batch in _batches_by_prompt(indices, len(self.prompts), self.batch_size):
            prompt = self.prompts[prompt_index]
            completions = self.sampler.sample(prompt, len(batch), stable_seed(self.seed, "lm", batch[0]) % 2**63)
            for n, completion in zip(batch, completions):
                text = (prompt + completion) if self.include_prompt else completion
                found[n] = Generated(text.strip(), {"prompt": prompt, "prompt_index": prompt_index,
                                                    "model": str(self.sampler.model_path)})
        return [found[n] for n in indices]
