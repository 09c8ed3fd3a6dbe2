"""The report renders in headless Chromium (Debian's `chromium` package): a screenshot that is not
blank and shows the charts' colours. Skipped where /usr/bin/chromium is absent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_report import build_out_dir
from thresher.pipeline.report import KEPT_COLOR, REJECTED_COLOR, ReportBuilder

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")


def _screenshot(page: Path, png: Path, profile: Path, width: int = 1400, height: int = 3000) -> None:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
    try:
        subprocess.run(command, capture_output=True, timeout=90, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish the screenshot in 90 s")


def _pixels_near(image: np.ndarray, hex_color: str, tolerance: int = 40) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[:, :, :3].astype(int) - rgb).sum(axis=2) < tolerance).sum())


def test_report_screenshot_is_not_blank(tmp_path):
    report = ReportBuilder().write(build_out_dir(tmp_path))
    png = tmp_path / "report.png"
    _screenshot(report, png, tmp_path / "chromium-profile")
    assert png.is_file() and png.stat().st_size > 10_000, "chromium wrote no screenshot"
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape[:2] == (3000, 1400)
    assert image.std() > 20, "the screenshot is (nearly) one colour"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    # the SVG charts were drawn: bars in the kept and rejected colours cover real area
    assert _pixels_near(image, KEPT_COLOR) > 2_000
    assert _pixels_near(image, REJECTED_COLOR) > 500
