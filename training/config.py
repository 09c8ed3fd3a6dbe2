"""The training YAML, validated into typed objects before anything runs (unknown keys are errors).

```yaml
shards: out/shards            # a directory of *.arrow shards (with manifest.json) or a manifest file
val_shards: null              # held-out shards; default: the last shard of `shards` is held out
out: runs/tiny
model: tiny                   # a preset, or {preset: tiny, ...} / explicit dims: {preset: null, n_layer: 4, n_head: 4, d_model: 256}
attention: sdpa               # a name, or {name: sliding_window, window: 256} with the variant's parameters
sampler: uniform              # a name, or curriculum / active with their parameters: {name: curriculum, ...}
steps: 200
batch_size: 8
seq_len: 256
seed: 0
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from thresher.filters.base import Strict

from .model import ModelConfig


class AttentionConfig(BaseModel):
    """``name`` picks the variant; every other key is passed to it (checked when the model is built)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["sdpa", "sliding_window", "performer", "linformer", "reformer"] = "sdpa"

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class UniformSamplerConfig(Strict):
    name: Literal["uniform"] = "uniform"
    #: read documents from the shards as needed (training/data.py ShardDataset, with DataLoader
    #: workers) instead of loading them all into memory; for large shard sets and GPU runs
    stream: bool = False
    num_workers: int = Field(0, ge=0)
    shuffle_buffer: int = Field(8192, ge=1)


class CurriculumSamplerConfig(Strict):
    name: Literal["curriculum"]
    #: a per-document score column of the shards ("length" is always there; "ref_loss" is written
    #: by `thresher score`); documents with a low value come first unless `descending`
    difficulty: str = "length"
    descending: bool = False
    pacing: Literal["linear", "root", "step", "exponential"] = "root"
    #: fraction of the (sorted) data available at step 0, the competence c0 of Platanios et al.
    start_competence: float = Field(0.1, gt=0, le=1)
    #: steps until the whole data set is available
    pacing_steps: int | None = Field(None, ge=1, description="default: half the training steps")
    #: for pacing "step": how many equal increments of competence
    step_count: int = Field(4, ge=1)
    #: sequence-length warmup: start at this length and grow linearly to `seq_len` (0 = off)
    seq_len_start: int = Field(0, ge=0)
    seq_len_warmup_steps: int | None = Field(None, ge=1, description="default: pacing_steps")


class ActiveSamplerConfig(Strict):
    name: Literal["active"]
    #: "loss": priority = recent training loss; "rho": reducible loss = training loss - reference loss
    priority: Literal["loss", "rho"] = "loss"
    #: score column holding the reference-model loss (for priority "rho"; written by `thresher score`)
    reference_column: str = "ref_loss"
    #: floor: this share of draws is uniform, so every document keeps a chance
    epsilon: float = Field(0.2, ge=0, le=1)
    #: sharpness of prioritisation: p ~ priority ** alpha
    alpha: float = Field(1.0, ge=0)
    #: importance-weight correction exponent (1 = unbiased, 0 = none)
    beta: float = Field(1.0, ge=0, le=1)
    #: weight of the newest observation in each document's loss average
    ema: float = Field(0.5, gt=0, le=1)


SamplerConfig = Annotated[
    Union[UniformSamplerConfig, CurriculumSamplerConfig, ActiveSamplerConfig], Field(discriminator="name")
]


class OptimConfig(Strict):
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr / peak lr of the cosine")
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, ge=0, description="0 = no clipping")


#: keys that also take a name alone: ``model: tiny`` is ``model: {preset: tiny}``
SHORT_FORMS = {"model": "preset", "attention": "name", "sampler": "name"}


class TrainConfig(Strict):
    shards: str
    val_shards: str | None = None
    out: str
    model: ModelConfig = ModelConfig()
    attention: AttentionConfig = AttentionConfig()
    sampler: SamplerConfig = UniformSamplerConfig()
    optim: OptimConfig = OptimConfig()
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="sequences per optimizer step, across all ranks")
    grad_accum: int = Field(1, ge=1)
    seq_len: int = Field(ge=8)
    seed: int = 0
    eval_every: int = Field(50, ge=1)
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="0 = only at the end")
    resume: bool = Field(True, description="continue from the newest checkpoint in OUT if there is one")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    gradient_checkpointing: bool = False
    parallel: Literal["none", "ddp", "fsdp"] = "none"
    #: peak FLOP/s per device for the MFU estimate; default: known GPUs' bf16 dense peak, none on CPU
    peak_tflops: float | None = Field(None, gt=0)
    progress: bool = True
    tensorboard: bool = True
    #: stop after this many steps of this invocation (to test resume); None = run to `steps`
    stop_after: int | None = Field(None, ge=1)
    #: stop (and checkpoint) after the first step that ends this many wall-clock seconds into this
    #: invocation: a time-budgeted run such as bench/gpu_suite.py's; None = no limit
    stop_after_seconds: float | None = Field(None, gt=0)

    @field_validator(*SHORT_FORMS, mode="before")
    @classmethod
    def _long_form(cls, value: Any, info: ValidationInfo) -> Any:
        return {SHORT_FORMS[info.field_name]: value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        if isinstance(self.sampler, CurriculumSamplerConfig) and self.sampler.seq_len_start > self.seq_len:
            raise ValueError("sampler.seq_len_start is larger than seq_len")
        return self


class TrainConfigError(Exception):
    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{p}: {m}" if p else m for p, m in problems))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("uniform", "curriculum", "active") or not out.endswith("sampler"):
            out += f".{part}" if out else str(part)
    return out


def parse_train_config(data: Any, base_dir: Path | None = None) -> TrainConfig:
    """Validate a loaded YAML mapping; relative paths are taken relative to ``base_dir``."""
    if not isinstance(data, dict):
        raise TrainConfigError([("", "a training config must be a YAML mapping")])
    if base_dir is not None:
        data = dict(data)
        for key in ("shards", "val_shards", "out"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str(base_dir / data[key])
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError([(_path(e["loc"]), e["msg"]) for e in exc.errors()]) from None


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read, apply dotted overrides (``{"optim.lr": 1e-3}``) and validate a training YAML. Relative
    paths inside it are relative to the current directory (like the pipeline's)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TrainConfigError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    except yaml.YAMLError as exc:
        raise TrainConfigError([("", f"{path}: not valid YAML ({exc})")]) from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if node is data and isinstance(node.get(key), str) and key in SHORT_FORMS:
                node[key] = {SHORT_FORMS[key]: node[key]}  # `model: tiny` with --set model.vocab_size=...
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_train_config(data)
