"""Licences: the registry fields (validated, unknown keys refused), the shipped facts, run.json and
export.json records, and "commercial use only" refusing Upscale-A-Video with its reason in the
service, the dashboard's switch, the CLI and the study runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import licences
from core import study as studylib
from core.errors import ConfigError, InputError
from core.exports import export_run
from core.registry import Registry
from core.service import JobRequest, Studio, StudioSettings

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 64, "height": 48, "num_frames": 4}


def reg(models):
    return Registry.from_dict({"models": models}, root=Path("/nonexistent"), source="models.json")


@pytest.mark.parametrize("extra, where", [
    ({"commercial_use": "maybe"}, "field 'commercial_use': must be one of yes, conditions, unknown, no"),
    ({"commercial_use": True}, "field 'commercial_use': must be a string"),
    ({"license_url": "http://example.com/terms"}, "field 'license_url': must be an https:// URL"),
    ({"licence": "MIT"}, "field 'licence': is not a known field"),
])
def test_licence_fields_are_validated_in_one_line(extra, where):
    with pytest.raises(ConfigError) as err:
        reg({"x": {"kind": "generator", "variant": "v", **extra}})
    assert where in str(err.value) and "entry 'x'" in str(err.value) and "\n" not in str(err.value)


def test_shipped_licence_facts():
    r = Registry.load(REPO / "models.json")
    for e in r:
        assert e.commercial_use in licences.COMMERCIAL_USE and e.license, e.name
        assert e.license_url or e.name == "kenburns", e.name
    use = {e.name: e.commercial_use for e in r}
    assert use["upscale-a-video"] == "no" and "S-Lab" in r.get("upscale-a-video").license
    assert use["cami2v-512"] == use["cameractrl-256"] == "unknown"
    assert use["svd"] == use["svd-xt"] == "conditions" and "Community" in r.get("svd").license
    assert use["fastdvdnet"] == use["rife"] == use["realesrgan"] == use["qwen2-vl-7b"] == "yes"
    assert r.get("rife").license == r.get("fastdvdnet").license == "MIT"
    assert r.get("qwen2-vl-2b").license == "Apache-2.0"


def test_least_and_refusal_reason():
    assert licences.least(["yes", "conditions", "unknown"]) == "unknown"
    assert licences.least(["yes", "no", "unknown"]) == "no" and licences.least([]) == "yes"
    r = Registry.load(REPO / "models.json")
    assert licences.refusal(r.get("lanczos")) == "" and licences.refusal(r.get("svd")) == ""
    why = licences.refusal(r.get("cami2v-512"))
    assert "states no licence" in why and "huggingface.co/MuteApo/CamI2V" in why


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("lic")
    return Studio(StudioSettings(root=root, outputs=root / "out", models=REPO / "models.json",
                                 min_free_bytes=0, device="cpu"))


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.open(REPO / "assets" / "examples" / "kitchen.jpg").convert("RGB").resize((120, 80)))


def test_service_refuses_upscale_a_video_with_the_reason_before_anything_runs(studio, photo):
    for chains, roles in ((("none", "upscale-a-video"), {}), (("upscale",), {"upscale": "upscale-a-video"})):
        with pytest.raises(InputError) as err:
            next(studio.run_job(JobRequest(image=photo, chains=chains, roles=roles, params=SMALL,
                                           commercial_only=True)))
        msg = str(err.value)
        assert "Upscale-A-Video" in msg and "S-Lab License 1.0" in msg and "does not allow commercial use" in msg
    with pytest.raises(InputError, match="CamI2V 512x320 is excluded.*states no licence"):
        next(studio.run_job(JobRequest(image=photo, model="cami2v-512", commercial_only=True)))
    assert not list((studio.settings.outputs).glob("*/run.json"))  # no run folder was started
    # without the switch the same job is refused for another reason (no GPU here), not the licence
    with pytest.raises(Exception) as err:
        next(studio.run_job(JobRequest(image=photo, chains=("upscale-a-video",), params=SMALL)))
    assert "commercial" not in str(err.value)


def test_run_json_and_exports_record_every_models_licence(studio, photo, tmp_path):
    events = list(studio.run_job(JobRequest(image=photo, chains=("none", "upscale", "denoise+upscale"),
                                            params=SMALL, stage_params={"lanczos": {"scale": 2}},
                                            commercial_only=True)))
    run = studio.open_run(events[-1].run_id)
    rec = run.data["licences"]
    assert set(rec["models"]) == {"kenburns", "nlmeans", "lanczos"} and rec["commercial_use"] == "yes"
    assert rec["models"]["lanczos"]["license"] == "Apache-2.0 (OpenCV)"
    manifest = export_run(run, tmp_path / "exp", formats=["mp4"]).manifest
    lic = manifest["licences"]
    assert {k: lic[k] for k in rec} == json.loads(json.dumps(rec))
    assert lic["chains"]["none"]["models"] == ["kenburns"]
    assert lic["chains"]["denoise+upscale"]["models"] == ["kenburns", "nlmeans", "lanczos"]
    on_disk = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert on_disk["licences"]["chains"]["upscale"] == {"models": ["kenburns", "lanczos"], "commercial_use": "yes"}


def test_dashboard_switch_hides_upscale_a_video_and_says_why(studio):
    from ui.app import build_ui

    demo, _ = build_ui(studio)
    fn = next(f for f in demo.fns.values() if getattr(f, "name", None) == "commercial_changed").fn
    gen, den, up, interp, note = fn(True, "kenburns", "nlmeans", "upscale-a-video", "dis-interp")
    assert "upscale-a-video" not in [n for _, n in up["choices"]] and up["value"] != "upscale-a-video"
    assert "realesrgan" in [n for _, n in up["choices"]]
    assert "cami2v-512" not in [n for _, n in gen["choices"]] and gen["value"] == "kenburns"
    assert "Upscale-A-Video" in note and "S-Lab License 1.0" in note and "does not allow commercial use" in note
    _, _, up_off, _, note_off = fn(False, "kenburns", "nlmeans", "upscale-a-video", "dis-interp")
    assert up_off["value"] == "upscale-a-video" and note_off == ""


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_commercial_only_refuses_with_the_reason(tmp_path):
    img = tmp_path / "room.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(img)
    r = _cli("generate", "--image", str(img), "--out", str(tmp_path / "o"), "--chains", "none,upscale",
             "--upscaler", "upscale-a-video", "--commercial-only", "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: Upscale-A-Video (x4) is excluded by \"commercial use only\"")
    assert "S-Lab License 1.0" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("study", "--images", str(img), "--out", str(tmp_path / "s"), "--chains", "upscale-a-video",
             "--commercial-only", "--device", "cpu")
    assert r.returncode == 2 and "S-Lab License 1.0" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s" / "study.json").exists()


def test_study_runner_refuses_before_any_cell(studio, tmp_path):
    photo = tmp_path / "room.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    spec = studylib.StudySpec((photo,), ("push-in",), ("none", "upscale-a-video"), "kenburns", params=SMALL,
                              commercial_only=True)
    with pytest.raises(InputError, match="Upscale-A-Video.*does not allow commercial use"):
        next(studylib.iter_study(studio, spec, tmp_path / "study"))
    assert "--commercial-only" in studylib.task_command(spec, tmp_path, python="python")
    assert spec.settings()["commercial_only"] is True
    assert "commercial_only" not in studylib.StudySpec((photo,), ("push-in",), ("none",), "kenburns").settings()
