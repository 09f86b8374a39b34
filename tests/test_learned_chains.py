"""Chains of the learned stages: FastDVDnet (golden synthetic weights) and Upscale-A-Video (tiny
configs on the CPU), in both orders, through the chain runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.clip import Clip
from core.models.clip.text import TextTransformerParams
from core.models.upscale_a_video.loader import build_with_rule
from core.models.upscale_a_video.vae import VideoVAEParams
from core.postprocess import chains as C
from core.postprocess.fastdvdnet import FastDVDnetStage
from core.postprocess.upscale_a_video import UpscaleAVideoStage
from core.progress import Progress
from core.registry import Registry

UAV_PARAMS = {"steps": 2, "noise_level": 80, "prompt": "a kitchen", "seed": 7}
FDV_PARAMS = {"sigma": 20.0}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def stages(golden_dir):
    weights = golden_dir / "fastdvdnet" / "synthetic_weights_module_prefixed.pth"
    if not weights.exists():
        pytest.skip(f"FastDVDnet golden weights not found at {weights}")
    registry = Registry.from_dict({"models": {"fastdvdnet": {
        "kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
        "files": [{"role": "checkpoint", "path": str(weights)}],
    }}}, root=weights.parent)
    pipe = build_with_rule(
        unet_params="tiny",
        vae_params=VideoVAEParams(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=8),
        text_params=TextTransformerParams(width=32, heads=2, layers=1, qkv_layout="separate", skip_last_layers=0,
                                          projection_dim=None))
    return {"fastdvdnet": FastDVDnetStage(registry), "upscale-a-video": UpscaleAVideoStage(pipeline=pipe, allow_cpu=True)}


@pytest.fixture()
def registered(stages, monkeypatch):
    monkeypatch.setattr(C, "STAGES", dict(C.STAGES))
    for name, stage in stages.items():
        C.register_stage(name, lambda s=stage: s)
    return stages


def _clip() -> Clip:
    t, h, w = 3, 16, 24
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = np.stack([np.stack([100 + 60 * np.sin((xx + 2 * i) / 4), 120 + 50 * np.cos(yy / 3),
                                 np.full_like(xx, 90.0)], -1) for i in range(t)])
    noisy = frames + np.random.default_rng(0).normal(0, 20, frames.shape)
    return Clip(np.clip(noisy, 0, 255).astype(np.uint8), fps=8.0)


def test_denoise_then_upscale_and_upscale_then_denoise(registered):
    clip = _clip()
    roles = {"denoise": "fastdvdnet", "upscale": "upscale-a-video"}
    params = {"fastdvdnet": FDV_PARAMS, "upscale-a-video": UAV_PARAMS}
    messages = []
    results = C.run_chains(clip, ["denoise", "upscale", "denoise+upscale", "upscale+denoise"], params,
                           Progress(lambda f, m: messages.append(m)), roles=roles)

    fdv, uav = registered["fastdvdnet"], registered["upscale-a-video"]
    denoised = fdv.process(clip, FDV_PARAMS, Progress())
    upscaled = uav.process(clip, UAV_PARAMS, Progress())
    expected = {
        "denoise": denoised,
        "upscale": upscaled,
        "denoise+upscale": uav.process(denoised, UAV_PARAMS, Progress()),
        "upscale+denoise": fdv.process(upscaled, FDV_PARAMS, Progress()),
    }
    for name, want in expected.items():
        got = results[name]
        assert got.clip.frames.shape == want.frames.shape and got.clip.fps == 8.0, name
        assert np.array_equal(got.clip.frames, want.frames), name

    assert results["denoise"].clip.frames.shape == (3, 16, 24, 3)
    for name in ("upscale", "denoise+upscale", "upscale+denoise"):
        assert results[name].clip.frames.shape == (3, 64, 96, 3)
    # the order matters
    diff = np.abs(results["denoise+upscale"].clip.frames.astype(int) - results["upscale+denoise"].clip.frames.astype(int))
    assert diff.mean() > 1.0
    # shared prefixes ran once: the two-stage chains reuse the single-stage results
    rec = results["denoise+upscale"].records
    assert [r.stage for r in rec] == ["fastdvdnet", "upscale-a-video"] and rec[0].reused and not rec[1].reused
    assert rec[1].input_size == (24, 16) and rec[1].output_size == (96, 64)
    rec = results["upscale+denoise"].records
    assert [r.stage for r in rec] == ["upscale-a-video", "fastdvdnet"] and rec[0].reused
    assert rec[1].input_size == (96, 64) and rec[1].output_size == (96, 64)
    assert any("Upscale-A-Video" in m for m in messages) and any("FastDVDnet" in m for m in messages)


def test_learned_chains_through_the_service(stages, golden_dir, tmp_path, monkeypatch):
    """Studio.run_job with both learned stages resident in the model manager (UAV: a tiny
    pipeline standing in for the released weights; the loader is the service's)."""
    import json

    from core.postprocess import upscale_a_video as uav
    from core.service import CameraSpec, JobRequest, Studio, StudioSettings

    weights = golden_dir / "fastdvdnet" / "synthetic_weights_module_prefixed.pth"
    for name in ("unet.bin", "vae.bin", "te.safetensors"):
        (tmp_path / name).write_bytes(b"placeholder")
    (tmp_path / "models.json").write_text(json.dumps({"models": {
        "fastdvdnet": {"kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
                       "files": [{"role": "checkpoint", "path": str(weights)}]},
        "upscale-a-video": {"kind": "upscaler", "variant": "upscale-a-video", "label": "UAV (tiny)",
                            "files": [{"role": "unet", "path": "unet.bin"}, {"role": "vae_3d", "path": "vae.bin"},
                                      {"role": "text_encoder", "path": "te.safetensors"}]}}}))
    tiny = stages["upscale-a-video"].pipeline()
    loads = []
    monkeypatch.setattr(uav, "load_model", lambda registry, entry, device, dtype: loads.append(entry.name)
                        or uav.ResidentPipeline(tiny, torch.float32))
    studio = Studio(StudioSettings(root=tmp_path, models=tmp_path / "models.json", outputs=tmp_path / "out",
                                   device="cpu", min_free_bytes=0))
    image = np.asarray(_clip().frames[0]).repeat(4, 0).repeat(4, 1)
    request = JobRequest(image, CameraSpec(preset="push-in"), params={"width": 24, "height": 16, "num_frames": 3},
                         chains=("denoise+upscale", "upscale+denoise"),
                         roles={"denoise": "fastdvdnet", "upscale": "upscale-a-video"},
                         stage_params={"fastdvdnet": FDV_PARAMS, "upscale-a-video": UAV_PARAMS})
    events = [e for e in studio.run_job(request) if e.chain]
    assert [e.chain for e in events] == ["denoise+upscale", "upscale+denoise"]
    assert all(e.metrics["size"] == [96, 64] for e in events)
    assert loads == ["upscale-a-video"]  # loaded once, resident for both chains
    resident = {row["name"]: row for row in studio.model_status()}
    assert resident["fastdvdnet"]["state"] == "resident" and resident["upscale-a-video"]["bytes"] > 0
