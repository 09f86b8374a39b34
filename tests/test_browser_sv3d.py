"""SV3D-P in the dashboard (headless Chromium): pick it with an orbit preset, generate with the
tiny model (random weights under the released key names, loaded strictly from a file), and get
the 21-frame orbit back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, choose, page  # noqa: F401  (the page fixture)

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "living_room.jpg"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


@pytest.fixture(scope="module")
def sv3d_server(tmp_path_factory):
    pytest.importorskip("diffusers")
    from safetensors.torch import save_file

    from core.models.sv3d.loader import released_state_dict, rule_model
    from tests.dashboard import running_dashboard

    root = tmp_path_factory.mktemp("sv3d-server")
    weights = root / "sv3d_p.safetensors"
    save_file({k: v.contiguous() for k, v in released_state_dict(rule_model("tiny-p")).items()}, str(weights))
    registry = {"schema": 1, "models": {
        "kenburns": {"kind": "generator", "variant": "kenburns", "label": "Ken Burns preview (no AI)"},
        "nlmeans": {"kind": "denoiser", "variant": "nlmeans", "label": "NL-means (OpenCV)"},
        "lanczos": {"kind": "upscaler", "variant": "lanczos", "label": "Lanczos (OpenCV)"},
        "sv3d-p": {"kind": "generator", "variant": "sv3d", "label": "SV3D-P (tiny test)",
                   "license": "Stability AI Community License", "requires": ["diffusers"],
                   "options": {"variant": "sv3d-p", "preset": "tiny-p"}, "defaults": {"size": 64, "steps": 2},
                   "files": [{"role": "model", "path": str(weights), "repo": "stabilityai/sv3d",
                              "filename": "sv3d_p.safetensors"}]},
    }}
    (root / "models.json").write_text(json.dumps(registry))
    with running_dashboard(root, "--models", str(root / "models.json")) as server:
        yield server


def test_sv3d_p_with_an_orbit_preset_makes_21_frames(sv3d_server, page):
    page.goto(sv3d_server["url"], wait_until="load", timeout=120_000)
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.set_input_files("#photo input[type=file]", str(PHOTO))
    page.wait_for_selector("#framing img", timeout=60_000)
    choose(page, "model", "SV3D-P (tiny test)")
    page.wait_for_function("document.body.innerText.includes('follows the path as an orbit')", timeout=60_000)
    choose(page, "preset", "Orbit right")
    page.get_by_label("denoise — denoise only", exact=True).uncheck()
    page.get_by_label("upscale — upscale only", exact=True).uncheck()
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#status').innerText.includes('complete')", timeout=240_000)
    page.wait_for_function("document.querySelectorAll('#players video').length === 1", timeout=60_000)
    page.wait_for_function("document.querySelector('#players video').readyState >= 1", timeout=60_000)
    duration = page.evaluate("document.querySelector('#players video').duration")
    assert duration == pytest.approx(21 / 10.0, abs=0.15)  # 21 frames at 10 fps
    runs = list(Path(sv3d_server["outputs"]).rglob("run.json"))
    assert len(runs) == 1
    info = json.loads(runs[0].read_text())["generator_info"]
    assert info["model"] == "sv3d-p" and info["num_frames"] == 21 and info["camera_ignored"] is False
    assert info["orbit"]["azimuths_deg"][0] == 0.0 and info["orbit"]["azimuths_deg"][-1] > 0  # orbiting right
    assert not page.errors, page.errors
