"""What the generators share: the example they return, and reading prompts and YAML files (a path
or a gs:// / s3:// URL)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from thresher.filters import storage


@dataclass
class Generated:
    """One synthetic example: its text and what goes into ``meta``."""

    text: str
    meta: dict


def read_yaml(path: str | Path, name: str, error: type[Exception]) -> Any:
    """``yaml.safe_load`` of a file (a path or a URL); an unreadable or invalid file raises
    ``error`` naming it."""
    try:
        return yaml.safe_load(storage.read_bytes(path).decode("utf-8"))
    except OSError as exc:
        raise error(f"{name}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not UTF-8 ({exc})") from None
    except yaml.YAMLError as exc:
        raise error(f"{name}: not valid YAML ({exc})") from None


def load_prompts(spec: str | Sequence[str]) -> list[str]:
    """Prompts inline (a list) or from a YAML file: a list of strings or ``{prompts: [...]}``."""
    if not isinstance(spec, str):
        prompts = list(spec)
    else:
        data = read_yaml(spec, f"prompts file {spec}", ValueError)
        prompts = data.get("prompts") if isinstance(data, dict) else data
        if not isinstance(prompts, list):
            raise ValueError(f"prompts file {spec}: expected a list of strings or {{prompts: [...]}}")
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts: need a non-empty list of strings")
    return prompts
