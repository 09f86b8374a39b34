"""CamI2V through the service object: registry entry -> model manager -> generator -> run folder,
with a tiny model standing in for the released checkpoint (nothing can be downloaded here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.generators import cami2v as cami2v_gen
from core.models.cami2v import keymap
from core.models.cami2v.config import tiny_params
from core.models.cami2v.model import LatentVideoDiffusion
from core.models.weight_rule import fill_with_rule
from core.service import CameraSpec, JobRequest, Studio, StudioSettings


def tiny_model(camera: str = "cami2v") -> LatentVideoDiffusion:
    with torch.device("meta"):
        model = LatentVideoDiffusion(tiny_params(camera), component_presets="tiny")
    fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")
    return model.eval()


@pytest.fixture()
def studio(tmp_path, monkeypatch):
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "512_cami2v_100k.pt").write_bytes(b"stand-in")
    (tmp_path / "models.json").write_text(json.dumps({"models": {
        "cami2v-512": {"kind": "generator", "variant": "cami2v", "label": "CamI2V 512x320",
                       "files": [{"role": "checkpoint", "path": "ckpts/512_cami2v_100k.pt",
                                  "repo": "MuteApo/CamI2V", "filename": "512_cami2v_100k.pt"}]}}}))
    loads = []

    def fake_load(registry, entry, *, device, dtype):
        loads.append((entry.name, str(device), dtype))
        return tiny_model()

    monkeypatch.setattr(cami2v_gen, "load_model", fake_load)
    s = Studio(StudioSettings(root=tmp_path, models=tmp_path / "models.json", outputs=tmp_path / "out",
                              device="cpu", min_free_bytes=0))
    s.loads = loads
    return s


def test_cami2v_is_the_default_when_its_weights_are_present(studio):
    assert studio.default_generator() == "cami2v-512"
    info = next(i for i in studio.model_infos("generator") if i.name == "cami2v-512")
    assert info.available and info.is_ai and info.camera_control and (info.width, info.height) == (512, 320)
    assert {"steps", "cfg_scale", "frame_stride", "camera_cfg", "negative_prompt"} <= {p.name for p in info.params}


def test_job_with_cami2v_keeps_the_model_resident(studio):
    rng = np.random.default_rng(0)
    photo = (rng.random((90, 140, 3)) * 255).astype(np.uint8)
    steps = []
    req = JobRequest(photo, CameraSpec(preset="orbit-left"), model="cami2v-512", prompt="a bright living room",
                     seed=3, params={"steps": 2}, chains=("none", "upscale"), stage_params={"lanczos": {"scale": 2}})
    events = [e for e in studio.run_job(req, lambda f, m: steps.append(m)) if e.chain]
    assert [e.chain for e in events] == ["none", "upscale"]
    assert events[0].metrics["num_frames"] == tiny_params("cami2v").num_frames  # the model decides
    assert any("step 2/2" in m for m in steps)
    run = studio.open_run(events[0].run_id)
    assert run.data["models"]["cami2v-512"]["variant"] == "cami2v"
    assert run.data["generator_info"]["params"]["steps"] == 2
    # a second job reuses the resident model: loaded once
    list(studio.run_job(req))
    assert studio.loads == [("cami2v-512", "cpu", "fp32")]
    assert [r["name"] for r in studio.model_status() if r["state"] == "resident"] == ["cami2v-512"]


def test_missing_checkpoint_names_file_command_and_path(studio, tmp_path):
    (tmp_path / "ckpts" / "512_cami2v_100k.pt").unlink()
    with pytest.raises(Exception) as err:
        list(studio.run_job(JobRequest(np.zeros((64, 96, 3), np.uint8), model="cami2v-512")))
    msg = str(err.value)
    assert "512_cami2v_100k.pt" in msg and "python -m core.weights fetch cami2v-512" in msg
    assert str(tmp_path / "ckpts") in msg


def test_fidelity_reference_is_the_photo_region_the_clip_shows(studio, monkeypatch):
    """A photo wider than the model's 1:1 frame: the clip shows its centre square, so fidelity must
    be measured against that square in photo pixels (not the whole photo, nor a box in the resized
    photo's pixels)."""
    import core.metrics

    seen = []
    real = core.metrics.measure
    monkeypatch.setattr(core.metrics, "measure",
                        lambda clip, reference_image=None, **kw: seen.append(reference_image) or real(
                            clip, reference_image=reference_image, **kw))
    rng = np.random.default_rng(1)
    photo = (rng.random((90, 140, 3)) * 255).astype(np.uint8)
    events = list(studio.run_job(JobRequest(photo, CameraSpec(preset="orbit-left"), model="cami2v-512",
                                            params={"steps": 1}, chains=("none",))))
    assert events[-1].kind == "done" and len(seen) == 1
    h, w = seen[0].shape[:2]
    assert h == 90 and abs(w - 90) <= 1, f"fidelity reference is {w}x{h}, the clip shows a 90x90 region"
    gen_info = studio.open_run(events[0].run_id).data["generator_info"]
    box = gen_info["crop_box"]
    assert {"sampling", "decode", "total"} <= set(gen_info["timings"])
    assert gen_info["peak_memory"]["device"] == "cpu" and gen_info["peak_memory"]["bytes"] > 0
    # the centre 90x90 square of the 140-wide photo is x 25..115, within a pixel of rounding
    assert box[1] == 0 and box[3] == 90 and abs(box[0] - 25) <= 1 and abs(box[2] - 115) <= 1
    np.testing.assert_array_equal(seen[0], photo[box[1]:box[3], box[0]:box[2]])
