"""A pair report opened in a real browser: headless Chromium takes a screenshot of it."""

import shutil
import subprocess

import numpy as np
import pytest

from brainlossnet.reports import figures
from brainlossnet.reports.pair_report import render_pair_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package 'chromium')")
def test_chromium_renders_the_report_with_its_figures(tmp_path, record, pair_images, decode_png):
    report = tmp_path / "report.html"
    report.write_text(render_pair_report(record, pair_images))
    shot = tmp_path / "shot.png"
    completed = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1700",
         f"--screenshot={shot}", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file(), completed.stderr[-2000:]
    pixels = decode_png(shot.read_bytes())
    assert pixels.shape[:2] == (1700, 1200)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    # the embedded anatomy figure was decoded and drawn: its TIV contour colour is on screen
    tiv = np.array([int(figures.INTRACRANIAL_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
    assert np.sum(np.all(np.abs(pixels.astype(int) - tiv) < 40, axis=-1)) > 200
