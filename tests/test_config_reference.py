from pathlib import Path

from thresher.pipeline.reference import render_reference
from thresher.pipeline.registry import STAGES

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"


def test_reference_covers_every_stage_and_is_current():
    text = render_reference()
    for name in STAGES:
        assert f"### `{name}`" in text
    assert REFERENCE.read_text() == text, "regenerate: python -m thresher.pipeline.reference > docs/config-reference.md"
