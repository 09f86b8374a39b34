"""The dashboard in a real headless Chromium (Debian's chromium, driven by Playwright):
upload a photo, caption it with the tiny Qwen2-VL, pick a preset, generate two chains, and see
both videos playing in step and both metric plots."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@contextmanager
def chromium(tmp_path: Path):
    """Debian's chromium, headless, driven by Playwright (its profile and caches under tmp_path)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(tmp_path):
    with chromium(tmp_path) as browser:
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        yield pg


def choose(page, elem_id: str, text: str) -> None:
    """Pick an option of a gradio Dropdown by its visible text."""
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=text, exact=True).click()


def test_generate_two_chains_and_caption(live_server, page, tmp_path):
    page.goto(live_server["url"], wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    # The blank metric panels arrive with the page load (not built at server start): titled axes
    # and the "Generate to see" hint, before anything ran.
    for plot in ("#psnr-plot", "#ssim-plot", "#quality-plot"):
        page.wait_for_selector(f"{plot} .js-plotly-plot", timeout=60_000)
        hint = page.evaluate(f"document.querySelector('{plot} .js-plotly-plot').layout.annotations"
                             ".map(a => a.text).join(' ')")
        assert "Generate to see" in hint, (plot, hint)

    page.set_input_files("#photo input[type=file]", str(REPO / "assets" / "examples" / "living_room.jpg"))
    page.wait_for_selector("#framing img", timeout=60_000)

    # Caption with the tiny random Qwen2-VL: the real captioning path, the text is random bytes.
    page.click("#caption-btn")
    page.wait_for_function("document.querySelector('#prompt textarea').value.length > 0", timeout=120_000)

    choose(page, "preset", "Pan left")
    page.get_by_label("denoise — denoise only", exact=True).uncheck()
    assert page.get_by_label("none — the generator's clip as it is", exact=True).is_checked()
    assert page.get_by_label("upscale — upscale only", exact=True).is_checked()

    page.click("#generate-btn")
    page.wait_for_function("document.querySelectorAll('#players video').length === 2", timeout=240_000)
    page.wait_for_function("document.querySelector('#status').innerText.includes('complete')", timeout=240_000)

    # Both players load their mp4 from the server and play in step.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#players video')).every(v => v.readyState >= 2)", timeout=60_000)
    page.click("#players [data-action=playpause]")
    page.wait_for_timeout(600)
    playing = page.evaluate("Array.from(document.querySelectorAll('#players video')).map(v => !v.paused)")
    assert playing == [True, True]
    page.click("#players [data-action=playpause]")
    page.evaluate("document.querySelector('#players video').currentTime = 0.8")
    page.wait_for_timeout(800)
    times = page.evaluate("Array.from(document.querySelectorAll('#players video')).map(v => v.currentTime)")
    assert abs(times[0] - times[1]) < 0.05 and times[0] > 0.5

    # Both live plots have one line per chain.
    for plot in ("#psnr-plot", "#ssim-plot"):
        page.wait_for_selector(f"{plot} .js-plotly-plot", timeout=30_000)
        n = page.evaluate(f"document.querySelector('{plot} .js-plotly-plot').data.length")
        assert n == 2
    table = page.inner_text("#table")
    assert "PSNR" in table and "upscale" in table and "±" in table
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert not page.errors, page.errors
