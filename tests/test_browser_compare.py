"""Looking closely in a real headless Chromium: the new measures for every chain, the
synchronised zoom and the wipe (checked on screenshots), and players that loop together."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.test_browser import CHROMIUM, REPO, choose, page  # noqa: F401  (page is a fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def _shot(page, selector: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")).astype(np.float32)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[1] > w else cv2.INTER_LINEAR)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - _resize(b, a.shape[1], a.shape[0])).mean())


def _paused_at(page, t: float) -> None:
    page.evaluate(f"(() => {{ const vs = Array.from(document.querySelectorAll('#players video.sync'))"
                  f".filter(v => v.getAttribute('src')); vs.forEach(v => {{ v.pause(); v.currentTime = {t}; }}); }})()")
    page.wait_for_function("Array.from(document.querySelectorAll('#players video.sync')).filter(v => v.getAttribute('src'))"
                           ".every(v => !v.seeking && v.readyState >= 2)", timeout=30_000)
    page.wait_for_timeout(300)


@pytest.fixture()
def two_chains(live_server, page):  # noqa: F811
    page.goto(live_server["url"], wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.set_input_files("#photo input[type=file]", str(REPO / "assets" / "examples" / "living_room.jpg"))
    page.wait_for_selector("#framing img", timeout=60_000)
    choose(page, "preset", "Push in")  # stays inside the photo: the preview needs no zoom or fill
    page.get_by_label("denoise — denoise only", exact=True).uncheck()
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('complete')", timeout=300_000)
    page.wait_for_function("Array.from(document.querySelectorAll('#players video.sync'))"
                           ".filter(v => v.getAttribute('src')).every(v => v.readyState >= 2)", timeout=60_000)
    return page


def test_new_measures_zoom_wipe_and_loop(two_chains):
    page = two_chains
    # the new measures appear for every chain: table rows and one curve per chain in each panel
    table = page.inner_text("#table")
    for label in ("warped PSNR", "flicker", "sharpness", "noise sigma", "includes camera motion"):
        assert label in table, label
    warp_row = next(line for line in table.splitlines() if "warped PSNR" in line)
    assert "n/a" not in warp_row and warp_row.count("±") == 2
    page.wait_for_selector("#quality-plot .js-plotly-plot", timeout=30_000)
    names = page.evaluate("document.querySelector('#quality-plot .js-plotly-plot').data.map(t => t.name)")
    assert sorted(names) == sorted(["none", "upscale"] * 4)
    ytitles = page.evaluate("(() => { const l = document.querySelector('#psnr-plot .js-plotly-plot').layout;"
                            " return l.yaxis.title.text; })()")
    assert ytitles == "tPSNR (dB)"
    # a 512x320 clip is not shown wider than twice its size
    widths = page.evaluate("Array.from(document.querySelectorAll('#players figure.player:not(.wipe)'))"
                           ".map(f => f.getBoundingClientRect().width)")
    assert max(widths) <= 2 * 512 + 1

    # ---- synchronised zoom: drag a box over the top-left quarter of the first player
    _paused_at(page, 0.5)
    before = [_shot(page, f"#players figure.player:nth-child({k}) .vwrap") for k in (1, 2)]
    box = page.locator("#players figure.player:nth-child(1) .vwrap").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 4, box["y"] + box["height"] / 4, steps=4)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    zoom = page.evaluate("document.querySelector('#players .players').dataset.zoom").split(",")
    x, y, s = (float(v) for v in zoom)
    assert x < 0.02 and y < 0.02 and 1.8 < s < 2.1
    page.wait_for_timeout(400)
    after = [_shot(page, f"#players figure.player:nth-child({k}) .vwrap") for k in (1, 2)]
    for b, a in zip(before, after):
        h, w = b.shape[:2]
        expect = b[: int(h / s), : int(w / s)]  # the region dragged over, enlarged to the whole player
        assert _mae(a, expect) < 10, _mae(a, expect)
        assert _mae(a, b) > 2 * _mae(a, expect)  # and really different from the unzoomed view
    # both players show the same region of the scene (the upscaled one at its own resolution)
    assert _mae(after[0], after[1]) < 12
    page.click("#players [data-action=unzoom]")
    assert page.evaluate("document.querySelector('#players .players').dataset.zoom").endswith(",1.0000")

    # ---- wipe: none on the left of the border, upscale on the right
    page.click("#players [data-action=wipe]")
    page.wait_for_function("Array.from(document.querySelectorAll('#players figure.wipe video'))"
                           ".every(v => v.readyState >= 2)", timeout=30_000)
    # mark the right-hand chain (invert it) so the screenshot shows where each chain is drawn
    page.evaluate("document.querySelector('#players .wipe-b').style.filter = 'invert(1)'")
    page.fill("#players input.wipe-pos", "30")
    page.dispatch_event("#players input.wipe-pos", "input")
    _paused_at(page, 0.5)
    a_only = _shot(page, "#players figure.player:nth-child(1) .vwrap")
    wipe = _shot(page, "#players figure.wipe .vwrap")
    a_only = _resize(a_only, wipe.shape[1], wipe.shape[0])
    w = wipe.shape[1]
    left, right = slice(2, int(0.3 * w) - 4), slice(int(0.3 * w) + 4, w - 2)
    assert np.abs(wipe[:, left] - a_only[:, left]).mean() < 10
    assert np.abs(wipe[:, right] - (255 - a_only[:, right])).mean() < 12
    assert np.abs(wipe[:, right] - a_only[:, right]).mean() > 40
    page.click("#players [data-action=wipe]")

    # ---- difference heat map between the two chains (computed on the server)
    page.click("#diff-panel button, #diff-panel .label-wrap")
    page.click("#diff-btn")
    page.wait_for_function("document.querySelector('#diff-info').innerText.includes('Mean |A − B| per frame')",
                           timeout=120_000)
    assert "512x320" in page.inner_text("#diff-info")
    page.wait_for_selector("#diff-video video", timeout=30_000)

    # ---- loop: two players, three passes, never more than one frame apart
    fps = float(page.evaluate("document.querySelector('#players .players').dataset.fps"))
    duration = page.evaluate("document.querySelector('#players video.sync').duration")
    page.evaluate("""(() => { window.__diffs = []; window.__loops = 0; const vs = Array.from(
        document.querySelectorAll('#players video.sync')).filter(v => v.getAttribute('src'));
      let last = 0; const tick = () => { const t = vs.map(v => v.currentTime);
        if (t[0] + 0.5 < last) window.__loops++; last = t[0];
        if (!vs.some(v => v.seeking)) window.__diffs.push(Math.abs(t[0] - t[1]));
        if (window.__loops < 3) requestAnimationFrame(tick); }; requestAnimationFrame(tick); })()""")
    page.click("#players [data-action=playpause]")
    page.wait_for_function("window.__loops >= 3", timeout=int((duration * 3 + 20) * 1000))
    diffs = page.evaluate("window.__diffs")
    page.click("#players [data-action=playpause]")
    assert len(diffs) > 30
    assert max(diffs) <= 1.0 / fps + 1e-3, (max(diffs), fps)
    assert not page.errors, page.errors
