"""Sampling text from a local causal LM: a thresher checkpoint (``thresher train``) or a Hugging
Face ``transformers`` model directory, each a path or a gs:// / s3:// URL. torch (and
transformers) are imported only when a model is loaded, so ``detect_model_kind`` serves
validation without them."""

from __future__ import annotations

import os
from pathlib import Path

from thresher.filters import storage


def detect_model_kind(path: str | Path) -> str:
    """"thresher" for a thresher checkpoint (or a training OUT with checkpoints/), "hf" for a
    directory with a Hugging Face config.json; a path or a URL."""
    location = os.fspath(path)
    if storage.isfile(storage.join(location, "model.safetensors")) and \
            storage.isfile(storage.join(location, "trainer.pt")):
        return "thresher"
    if storage.isdir(storage.join(location, "checkpoints")):
        return "thresher"
    if storage.isfile(storage.join(location, "config.json")):
        return "hf"
    raise ValueError(f"{location}: neither a thresher checkpoint (model.safetensors + trainer.pt) "
                     "nor a Hugging Face model directory (config.json)")


def sample_next(logits, temperature: float, top_p: float, generator):
    """Next token ids (batch,) from last-position logits (batch, vocab): greedy at temperature 0,
    else nucleus sampling."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(dim=-1)
        drop = cumulative - sorted_probs > top_p  # keeps the token that crosses top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class LMSampler:
    """Continuations of a prompt from one model, loaded on the first ``sample`` call."""

    def __init__(self, model: str, kind: str = "auto", tokenizer: str | None = None, temperature: float = 0.8,
                 top_p: float = 0.95, max_tokens: int = 128, device: str = "auto"):
        self.model_path = model
        self.kind = detect_model_kind(model) if kind == "auto" else kind
        self.tokenizer_path = tokenizer
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.device_name = device
        self._loaded = False

    def _load(self) -> None:
        import torch

        self.device = torch.device("cuda" if self.device_name == "auto" and torch.cuda.is_available()
                                   else ("cpu" if self.device_name == "auto" else self.device_name))
        if self.kind == "thresher":
            self._load_thresher()
        elif self.kind == "hf":
            self._load_hf()
        else:
            raise ValueError(f"unknown model kind {self.kind!r} (auto, thresher, hf)")
        self._loaded = True

    def _load_thresher(self) -> None:
        import sentencepiece as spm

        from thresher.training.checkpoint import load_model_weights, local_checkpoint, saved_config
        from thresher.training.config import parse_train_config
        from thresher.training.model import GPT

        ckpt = local_checkpoint(self.model_path)
        if ckpt is None or not (ckpt / "model.safetensors").is_file():
            raise ValueError(f"{self.model_path}: no complete checkpoint (model.safetensors) found")
        cfg = parse_train_config(saved_config(ckpt))
        tokenizer = self.tokenizer_path or storage.join(cfg.shards, "tokenizer.model")
        if not storage.isfile(tokenizer):
            raise ValueError(f"tokenizer {tokenizer} not found: give lm.tokenizer (the tokenizer.model of the shards)")
        self.sp = spm.SentencePieceProcessor(model_proto=storage.read_bytes(tokenizer))
        if self.sp.get_piece_size() > cfg.model.vocab_size:
            raise ValueError(f"tokenizer has {self.sp.get_piece_size()} pieces, the model only {cfg.model.vocab_size}")
        self.model = GPT(cfg.model, cfg.attention.name, cfg.attention.params()).to(self.device)
        load_model_weights(ckpt, self.model)
        self.model.eval()
        self.context = cfg.seq_len

    def _load_hf(self) -> None:
        try:
            import transformers
        except ImportError:
            raise ValueError("lm generator: the model is a Hugging Face directory but `transformers` is not "
                             "installed (pip install transformers)") from None
        local = str(storage.local_copy(self.model_path))
        self.hf_tokenizer = transformers.AutoTokenizer.from_pretrained(local, local_files_only=True)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(local, local_files_only=True)
        self.model.to(self.device).eval()

    def sample(self, prompt: str, n: int, seed: int) -> list[str]:
        """``n`` continuations of ``prompt`` (without it), drawn with a CPU generator seeded ``seed``."""
        import torch

        if not self._loaded:
            self._load()
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            sample = self._sample_thresher if self.kind == "thresher" else self._sample_hf
            return sample(prompt, n, generator)

    def _sample_thresher(self, prompt: str, n: int, generator) -> list[str]:
        import torch

        eos = self.sp.eos_id()
        # documents follow EOS in the shards the model was trained on
        start = ([eos] if eos >= 0 else []) + self.sp.encode(prompt)
        if not start:
            raise ValueError("empty prompt and a tokenizer without EOS: nothing to condition on")
        ids = torch.tensor([start] * n, dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        new: list[list[int]] = [[] for _ in range(n)]
        for _ in range(self.max_tokens):
            logits, _ = self.model(ids[:, -self.context:])
            last = logits[:, -1, :].float().cpu()
            last[:, self.sp.get_piece_size():] = float("-inf")  # a vocabulary padded past the tokenizer's
            step = sample_next(last, self.temperature, self.top_p, generator).to(self.device)
            for row in range(n):
                if not done[row]:
                    if int(step[row]) == eos:
                        done[row] = True
                    else:
                        new[row].append(int(step[row]))
            if bool(done.all()):
                break
            ids = torch.cat([ids, step[:, None]], dim=1)
        return [self.sp.decode(tokens) for tokens in new]

    def _sample_hf(self, prompt: str, n: int, generator) -> list[str]:
        import torch

        # transformers samples with the global torch RNG; seed it from this batch's generator
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        encoded = self.hf_tokenizer([prompt] * n, return_tensors="pt").to(self.device)
        kwargs = {"max_new_tokens": self.max_tokens, "pad_token_id": self.hf_tokenizer.eos_token_id}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False)
        output = self.model.generate(**encoded, **kwargs)
        start = encoded["input_ids"].shape[1]
        return [self.hf_tokenizer.decode(row[start:], skip_special_tokens=True) for row in output]
