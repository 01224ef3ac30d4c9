"""The drift report's HTML renders in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sproxxo.adapters.evidently import drift_report
from tests.monitoring.logs import current_frame

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_drift_html_renders_in_headless_chromium(reference: pd.DataFrame, tmp_path: Path) -> None:
    """A headless screenshot of the report is a large, non-blank PNG."""
    html = tmp_path / "drift_report.html"
    drift_report(reference, current_frame(1_000, seed=6, shifted=True)).save_html(html)
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2000",
            "--virtual-time-budget=15000",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 50_000  # a blank 1280x2000 page compresses to a few kB
