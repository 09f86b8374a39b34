"""A job belongs to the server, not to the browser tab (headless Debian chromium via Playwright):
start a job, close the page, open a new one: the job is listed running, the page re-attaches to
it, and the job finishes with every file, metrics.json and a complete run.json. Also: a cancel
from gradio_client cancels the /walkthrough call's own server job."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.test_browser import CHROMIUM, REPO, chromium


@pytest.fixture()
def browser(tmp_path):
    with chromium(tmp_path) as b:
        yield b


def new_page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    return pg


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_closing_the_page_does_not_stop_the_job_and_a_new_page_reattaches(live_server, browser):
    page = new_page(browser)
    page.goto(live_server["url"], wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.set_input_files("#photo input[type=file]", str(REPO / "assets" / "examples" / "living_room.jpg"))
    page.wait_for_selector("#framing img", timeout=60_000)
    # four chains: NL-means twice and two x4 clips to write keep the job busy for several seconds
    page.get_by_label("denoise+upscale — denoise, then upscale", exact=True).check()
    page.click("#generate-btn")
    page.wait_for_function("/Run [0-9]{8}-[0-9a-f-]+/.test(document.querySelector('#status').innerText)",
                           timeout=120_000)
    run_id = re.search(r"Run (\d{8}-[0-9a-f-]+)", page.inner_text("#status")).group(1)
    assert not page.errors, page.errors
    page.close()  # the tab goes away mid-job (a dropped SSH tunnel, a reload)

    run_json = live_server["outputs"] / run_id / "run.json"
    assert json.loads(run_json.read_text())["status"] == "running"

    page = new_page(browser)
    page.goto(live_server["url"], wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    # listed as running in the Runs tab
    page.get_by_role("tab", name="Runs").click()
    page.wait_for_function(f"document.querySelector('#jobs').innerText.includes('{run_id}')", timeout=60_000)
    assert "running" in page.inner_text("#jobs")
    page.get_by_role("tab", name="Create").click()
    # re-attached on load: the same run fills in and completes in this page
    page.wait_for_function(f"document.querySelector('#status').innerText.includes('{run_id}')", timeout=60_000)
    page.wait_for_function("document.querySelector('#status').innerText.includes('complete')", timeout=300_000)
    page.wait_for_function("document.querySelectorAll('#players video').length === 4", timeout=60_000)

    data = json.loads(run_json.read_text())
    assert data["status"] == "complete" and data["error"] is None
    assert set(data["chains"]) == {"none", "denoise", "upscale", "denoise+upscale"}
    for entry in data["chains"].values():
        assert (run_json.parent / entry["files"]["mp4"]).is_file() and entry["metrics"]
    metrics = json.loads((run_json.parent / "metrics.json").read_text())
    assert set(metrics["chains"]) == set(data["chains"])
    assert not page.errors, page.errors


def test_cancelling_a_walkthrough_call_cancels_its_job(live_server, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    img = tmp_path / "room.png"
    Image.open(REPO / "assets" / "examples" / "bedroom.jpg").resize((320, 200)).save(img)
    before = set(p.name for p in live_server["outputs"].iterdir()) if live_server["outputs"].is_dir() else set()
    client = Client(live_server["url"], verbose=False)
    # a job long enough to be cancelled mid-way: 48 frames through NL-means
    job = client.submit(handle_file(str(img)), "kenburns", "push-in", ["none", "denoise", "denoise+upscale"], 3, "",
                        {"num_frames": 48}, api_name="/walkthrough")
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline and run_dir is None:
        new = [p for p in live_server["outputs"].iterdir() if p.name not in before and (p / "run.json").is_file()] \
            if live_server["outputs"].is_dir() else []
        run_dir = new[0] if new else None
        time.sleep(0.2)
    assert run_dir is not None, "the job never started"
    job.cancel()
    deadline = time.time() + 120
    while time.time() < deadline:
        status = json.loads((run_dir / "run.json").read_text())["status"]
        if status != "running":
            break
        time.sleep(0.3)
    assert status == "cancelled"
