"""The Tour tab in a real headless Chromium: three photos, Preview, the player filling in shot by
shot, and a 12-second 30 fps tour (16:9 and 9:16) that the browser plays and that reads back
from disk with the right duration, fps and size."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, choose, page  # noqa: F401  (page is a fixture)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "assets" / "examples").glob("*.jpg"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def test_tour_tab_previews_a_three_room_tour(live_server, page):  # noqa: F811
    from core.video import read_video

    page.goto(live_server["url"], wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.get_by_role("tab", name="Tour").click()
    page.wait_for_selector("#tour-preview", timeout=30_000)

    page.set_input_files("#tour-photos input[type=file]", [str(p) for p in EXAMPLES[:3]])
    for p in EXAMPLES[:3]:
        page.wait_for_function(f"document.querySelector('#tour-shots').innerText.includes('{p.name}')",
                               timeout=60_000)
    shots_text = page.inner_text("#tour-shots")
    assert "push-in" in shots_text and "pan-right" in shots_text
    choose(page, "tour-size", "640x360 (quick look)")

    page.click("#tour-preview")
    page.wait_for_function("document.querySelector('#tour-status').innerText.includes('complete')",
                           timeout=240_000)
    assert page.evaluate("document.querySelectorAll('#tour-player video.shot').length") == 3
    page.wait_for_selector("#tour-player video.tour", timeout=30_000)
    page.wait_for_function("document.querySelector('#tour-player video.tour').readyState >= 1", timeout=60_000)
    meta = page.evaluate("(() => { const v = document.querySelector('#tour-player video.tour'); "
                         "return [v.duration, v.videoWidth, v.videoHeight]; })()")
    assert meta[0] == pytest.approx(12.0, abs=0.05) and meta[1:] == [640, 360]
    files = page.inner_text("#tour-files").replace("\n", "")
    assert "tour.mp4" in files and "tour-vertical.mp4" in files
    assert "12.00 s" in page.inner_text("#tour-status")

    runs = sorted(p for p in Path(live_server["outputs"]).glob("*/tour.mp4"))
    assert runs, "no tour.mp4 in the outputs"
    clip = read_video(runs[-1], max_pixels=None)
    assert (clip.num_frames, clip.width, clip.height) == (360, 640, 360) and clip.fps == pytest.approx(30.0)
    vert = read_video(runs[-1].with_name("tour-vertical.mp4"), max_pixels=None)
    assert (vert.num_frames, vert.width, vert.height) == (360, 202, 360)
    assert not page.errors, page.errors
