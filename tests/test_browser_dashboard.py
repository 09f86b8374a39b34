"""The dashboard's everyday edges in a real headless Chromium: the camera path download is the
current path at the first click, a waypoint turn beyond the preview's limit is flagged before
Generate (with the move amount at hand), a non-image upload gives the CLI's one line, a failed run is
one status line, and results name their model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, choose, page  # noqa: F401  (the page fixture)

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "living_room.jpg"
CLI_LINE = "notimage.png is not an image (or a format this app cannot read)."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def open_dashboard(page, url):
    page.goto(url, wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.wait_for_function("document.querySelector('#camera-msg') && "
                           "document.querySelector('#camera-msg').innerText.includes('frames')", timeout=60_000)


def download_text(page) -> tuple[str, str]:
    with page.expect_download(timeout=30_000) as info:
        page.get_by_role("button", name="Download camera path (.txt)").click()
    d = info.value
    return d.suggested_filename, Path(d.path()).read_text()


def test_camera_download_is_the_current_path_at_the_first_click(live_server, page):
    open_dashboard(page, live_server["url"])
    name, text = download_text(page)
    assert name == "camera-push-in.txt" and len(text.strip().splitlines()) == 17
    choose(page, "preset", "Pan left")
    page.wait_for_function("document.querySelector('#camera-msg').innerText.includes('rotation deg 27')", timeout=30_000)
    page.wait_for_timeout(1500)
    name2, text2 = download_text(page)
    assert name2 == "camera-pan-left.txt" and text2 != text


def test_a_too_wide_waypoint_turn_is_flagged_before_generate(live_server, page):
    open_dashboard(page, live_server["url"])
    page.set_input_files("#photo input[type=file]", str(PHOTO))
    page.wait_for_selector("#framing img", timeout=60_000)
    page.wait_for_timeout(1000)
    box = page.locator("#framing img").bounding_box()
    # clicks inside the model's crop, sweeping far to the left (paced: see the report on 300 ms)
    for k, fx in enumerate((0.45, 0.3, 0.15)):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * (0.5 + 0.05 * k))
        page.wait_for_function(f"document.querySelector('#camera-msg').innerText.includes('{k + 1} point(s)') || "
                               "document.querySelector('#camera-msg').innerText.includes('refuse')", timeout=30_000)
        page.wait_for_timeout(800)
    assert page.locator("#cam-mode input[value=Waypoints]").is_checked()
    assert page.locator("#wp-amount").is_visible()
    assert "Generate will refuse this path" in page.inner_text("#camera-msg")
    assert "Move amount is next to the points" in page.inner_text("#camera-msg")
    amount = page.locator("#wp-amount input[type=number]")
    amount.fill("0.2")
    amount.press("Enter")
    page.wait_for_function("document.querySelector('#camera-msg').innerText.includes('3 point(s)')", timeout=30_000)


def test_non_image_upload_gives_one_clear_line(live_server, page, tmp_path):
    open_dashboard(page, live_server["url"])
    bad = tmp_path / "notimage.png"
    bad.write_bytes(b"definitely not a picture " * 40)
    page.set_input_files("#photo input[type=file]", str(bad))
    page.get_by_text(CLI_LINE).first.wait_for(timeout=30_000)
    body = page.inner_text("body")
    assert "preprocess" not in body and "UnidentifiedImageError" not in body
    assert str(tmp_path) not in body and "/gradio" not in body
    assert page.locator("#framing").get_by_text("Error", exact=True).count() == 0


def test_failed_run_is_one_status_line_and_results_name_their_model(live_server, page):
    open_dashboard(page, live_server["url"])
    page.set_input_files("#photo input[type=file]", str(PHOTO))
    page.wait_for_selector("#framing img", timeout=60_000)
    # an unknown chain: one status line, nothing else turns into an error badge
    page.get_by_label("Custom chains (comma-separated)").fill("blur")
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Error')", timeout=120_000)
    assert "blur" in page.inner_text("#status")
    assert page.get_by_text("Error", exact=True).count() == 1  # the status badge only
    assert "Generating" not in page.inner_text("#players")
    # a good run: captions, the table and the downloads name the generator
    page.get_by_label("Custom chains (comma-separated)").fill("")
    page.get_by_label("denoise — denoise only", exact=True).uncheck()
    page.get_by_label("upscale — upscale only", exact=True).uncheck()
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('complete')", timeout=180_000)
    assert "Ken Burns · no-AI preview" in page.inner_text("#players")
    assert "no-AI preview" in page.inner_text("#table")
    assert "none__kenburns-no-AI-preview.mp4" in page.content()  # the download link
