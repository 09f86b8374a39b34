"""Several sessions at once on the one GPU queue (`concurrency_id="gpu"`, limit 1): every job
runs, one at a time, in the order it joined; each session sees its place in the line and gets
its own results; Cancel stops a running job between steps. All traffic stays on 127.0.0.1 and
every wait has a timeout, so the tests end by themselves."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLIENTS, JOBS = 4, 5
PRESETS = ("push-in", "pan-left", "slide-left", "orbit-left")
SMALL = {"width": 96, "height": 64, "num_frames": 8}
JOB_TIMEOUT_S = 120
TEST_TIMEOUT_S = 300


def session(url: str, c: int, folder: Path, deadline: float) -> list[dict]:
    """One client sending its jobs one after another (like a person in one browser tab)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    done = []
    for j in range(JOBS):
        rng = np.random.default_rng(100 * c + j)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64 + 8 * c, 96 + 8 * j, 3), dtype=np.uint8)).save(buf, "PNG")
        f = folder / f"client{c}-job{j}.png"
        f.write_bytes(buf.getvalue())
        seed = 1000 * c + j
        job = client.submit(handle_file(str(f)), "kenburns", PRESETS[c], ["none"], seed, "", SMALL,
                            api_name="/walkthrough")
        ranks = []
        while not job.done():
            assert time.time() < deadline, f"client {c} job {j} did not finish in time"
            st = job.status()
            if st.code.name == "IN_QUEUE" and st.rank is not None:
                ranks.append(st.rank)
            time.sleep(0.02)
        out = job.result(timeout=max(1.0, min(JOB_TIMEOUT_S, deadline - time.time())))
        done.append({"client": c, "job": j, "seed": seed, "preset": PRESETS[c], "out": out, "ranks": ranks,
                     "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
    return done


def test_sessions_queue_fairly_on_the_one_gpu_queue(live_server, tmp_path):
    url = live_server["url"]
    assert url.startswith("http://127.0.0.1:")
    deadline = time.time() + TEST_TIMEOUT_S
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(session, url, c, tmp_path, deadline) for c in range(CLIENTS)]
        finished, pending = wait(futures, timeout=TEST_TIMEOUT_S + 10)
        assert not pending, "sessions did not finish in time"
    results = [r for f in futures for r in f.result()]
    assert len(results) == CLIENTS * JOBS

    # every job has its own run, holding exactly what its client sent
    run_ids = [r["out"]["run_id"] for r in results]
    assert len(set(run_ids)) == CLIENTS * JOBS
    runs = {}
    for r in results:
        rid = r["out"]["run_id"]
        data = json.loads((live_server["outputs"] / rid / "run.json").read_text())
        runs[rid] = data
        assert data["status"] == "complete"
        assert r["out"]["seed"] == r["seed"] == data["seeds"]["generator"]
        assert data["input"]["sha256"] == r["sha256"]
        assert data["params"]["camera"]["preset"] == r["preset"]
        video = Path(r["out"]["chains"]["none"]["video"])
        assert video.is_file() and video.parent.name == rid and video.stat().st_size > 0

    # one job on the device at a time: no two of these runs overlap
    ordered = sorted((runs[rid]["created"], runs[rid]["updated"], rid) for rid in run_ids)
    for (_, end, a), (start, _, b) in zip(ordered, ordered[1:]):
        assert end <= start, f"runs {a} and {b} overlapped"

    # first come, first served: with one job outstanding per session, a session's next job
    # never waits behind more than one job of each other session
    owner = {r["out"]["run_id"]: r["client"] for r in results}
    order = [owner[rid] for _, _, rid in ordered]
    for c in range(CLIENTS):
        pos = [i for i, o in enumerate(order) if o == c]
        assert pos[0] < CLIENTS and all(b - a <= CLIENTS for a, b in zip(pos, pos[1:])), order
    # (the place in the line is the server job queue's now, shown to a page that follows its job:
    # test_two_tabs_queue_position_and_cancel below)


# -- in a real browser: two tabs, queue position, Cancel -----------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_two_tabs_queue_position_and_cancel(live_server, tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    outputs = live_server["outputs"]
    before = {p.name for p in outputs.iterdir()} if outputs.exists() else set()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            a, b = (browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(2))
            errors: list[str] = []
            for page in (a, b):
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(live_server["url"], wait_until="load", timeout=120_000)
                page.wait_for_selector("#generate-btn", timeout=120_000)
                # an example room: its file comes through gradio's cache, like an upload
                page.locator(".gallery-item, [data-testid=examples] button, table.examples-table td").first.click()
                page.wait_for_selector("#framing img", timeout=60_000)

            # tab A: a long job (three chains at the full 512x320); tab B joins the line behind it
            a.click("#generate-btn")
            a.wait_for_function("document.querySelector('#status').innerText.includes('started')", timeout=60_000)
            b.get_by_label("denoise — denoise only", exact=True).uncheck()
            b.get_by_label("upscale — upscale only", exact=True).uncheck()
            b.click("#generate-btn")
            b.wait_for_function("/Queued: *1 job/.test(document.querySelector('#status').innerText)", timeout=30_000)

            # Cancel in tab A stops its job at the next step; what it finished is kept
            a.wait_for_function("document.querySelector('#status').innerText.includes('chain(s) ready')",
                                timeout=120_000)
            a.click("#cancel-btn")
            a.wait_for_function("document.querySelector('#status').innerText.includes('Cancelled')", timeout=60_000)
            status_a = a.inner_text("#status")
            assert "kept in run" in status_a

            # tab B then runs to completion
            b.wait_for_function("document.querySelector('#status').innerText.includes('complete')", timeout=120_000)
            assert not errors, errors
        finally:
            browser.close()

    new = sorted(p.name for p in outputs.iterdir() if p.name not in before and p.name[:8].isdigit())
    assert len(new) == 2
    statuses = {json.loads((outputs / r / "run.json").read_text())["status"] for r in new}
    assert statuses == {"cancelled", "complete"}
    cancelled = next(r for r in new if json.loads((outputs / r / "run.json").read_text())["status"] == "cancelled")
    data = json.loads((outputs / cancelled / "run.json").read_text())
    # downloads/: the dashboard's named links to the chain files (chain__model.mp4), not new data
    on_disk = {p.name for p in (outputs / cancelled).iterdir()} - {"run.json", "downloads"}
    assert on_disk == set(data["files"]) and "chain-00.mp4" in on_disk
    assert not [n for n in on_disk if n.startswith(".") or ".part" in n]
