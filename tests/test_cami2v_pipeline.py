"""CamI2V pipeline and generator: tiny-config end-to-end runs of every variant, preprocessing,
guidance wiring, determinism, progress/cancel, and (slow) the recorded 2-step 512x320 run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from core.camera import CameraPath, preset_path
from core.errors import Cancelled, InputError
from core.generators.base import GenerateRequest
from core.generators.cami2v import VARIANTS, CamI2VGenerator
from core.models.cami2v import keymap
from core.models.cami2v.config import get_preset, tiny_params
from core.models.cami2v.model import LatentVideoDiffusion
from core.models.cami2v.pipeline import (DEFAULT_NEGATIVE_PROMPT, UPSTREAM_NEGATIVE_PROMPT, UPSTREAM_PROMPT_SUFFIX, CamI2VPipeline,
                                         CamI2VRequest, SamplingOptions, cover_crop, fs_value, to_uint8_frames)
from core.models.weight_rule import fill_with_rule
from core.progress import Progress
from core.sampling import RecordedNoise

CAMERAS = ("none", "cami2v", "cameractrl", "motionctrl")
FAST = SamplingOptions(steps=2)


def _tiny_model(camera: str) -> LatentVideoDiffusion:
    with torch.device("meta"):
        model = LatentVideoDiffusion(tiny_params(camera), component_presets="tiny")
    fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")
    return model.eval()


@pytest.fixture(scope="module")
def pipelines():
    return {cam: CamI2VPipeline(_tiny_model(cam)) for cam in CAMERAS}


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    return (rng.random((60, 90, 3)) * 255).astype(np.uint8)


def _count_calls():
    calls = []

    def on_unet(x, t, context, fs, camera, out):
        calls.append({"batch": x.shape[0], "t": t.tolist(), "camera": camera, "fs": fs.tolist()})

    return calls, on_unet


# -- preprocessing ---------------------------------------------------------------------------


def test_cover_crop_landscape_wide_and_portrait():
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 200:] = 255
    x, info = cover_crop(wide, 64, 40)
    assert x.shape == (1, 3, 40, 64) and x.dtype == torch.float32
    assert info["resized_size"] == [160, 40] and info["crop_box"] == [48, 0, 112, 40]
    assert x.min() == -1.0 and x.max() == 1.0
    torch.testing.assert_close(x[..., :30], torch.full_like(x[..., :30], -1.0))
    # portrait: a centred band with the model's (landscape) aspect, not upstream's swapped size
    tall = np.zeros((300, 100, 3), np.uint8)
    tall[150:] = 255
    x, info = cover_crop(tall, 64, 40)
    assert info["portrait"] and info["resized_size"] == [64, 192] and info["crop_box"] == [0, 76, 64, 116]
    assert x[0, :, 0].mean() < 0 and x[0, :, -1].mean() > 0  # the band straddles the middle
    # exact size: no resampling, exact pixel values
    same = (np.arange(40 * 64 * 3) % 256).astype(np.uint8).reshape(40, 64, 3)
    x, _ = cover_crop(same, 64, 40)
    torch.testing.assert_close(x[0].permute(1, 2, 0), torch.from_numpy(same).float() / 127.5 - 1.0)
    with pytest.raises(InputError):
        cover_crop(np.zeros((40, 64), np.uint8), 64, 40)


def test_fs_and_uint8_conversion():
    assert [fs_value("fps", s) for s in (1, 2, 3, 4, 5, 6, 8, 10)] == [29, 14, 9, 7, 5, 4, 3, 2]
    assert fs_value("fs", 3) == 3
    v = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]).view(1, 1, 6, 1, 1).expand(1, 3, 6, 1, 1)
    frames = to_uint8_frames(v)
    assert frames.shape == (6, 1, 1, 3) and frames.dtype == np.uint8
    assert frames[:, 0, 0, 0].tolist() == [0, 0, 127, 254, 255, 255]  # truncation, as upstream


# -- end to end on tiny models -----------------------------------------------------------------


@pytest.mark.parametrize("camera", CAMERAS)
def test_every_variant_runs_end_to_end_deterministically(pipelines, photo, camera):
    pipe = pipelines[camera]
    path = preset_path("orbit-left", num_frames=4)
    calls, on_unet = _count_calls()
    req = CamI2VRequest(photo, path, "a bright living room", seed=7, options=FAST)
    a = pipe.generate(req, on_unet=on_unet)
    b = pipe.generate(req)
    assert a.frames.shape == (4, 64, 64, 3) and a.frames.dtype == np.uint8
    assert a.latents.shape == (1, 4, 4, 8, 8)
    np.testing.assert_array_equal(a.frames, b.frames)
    # one batched UNet call (cond + uncond) per step, the camera shared by both branches
    assert [c["batch"] for c in calls] == [2, 2] and [c["t"][0] for c in calls] == [999, 499]
    assert all((c["camera"] is None) == (camera == "none") for c in calls)
    assert a.info["camera_conditioned"] == (camera != "none")
    assert a.info["prompt"].startswith("a bright living room") and a.info["timesteps"] == [499, 999]
    assert a.info["fs"] == 2 and set(a.info["timings_s"]) == {"conditioning", "sampling", "decode", "total"}
    c = pipe.generate(CamI2VRequest(photo, path, "a bright living room", seed=8, options=FAST))
    assert np.abs(c.latents - a.latents).max() > 1e-3


def test_batched_cfg_equals_unbatched(pipelines, photo):
    pipe = pipelines["cami2v"]
    path = preset_path("push-in", num_frames=4)
    a = pipe.generate(CamI2VRequest(photo, path, "hall", seed=3, options=FAST))
    calls, on_unet = _count_calls()
    b = pipe.generate(CamI2VRequest(photo, path, "hall", seed=3, options=SamplingOptions(steps=2, batched_cfg=False)),
                      on_unet=on_unet)
    assert [c["batch"] for c in calls] == [1, 1, 1, 1]
    torch.testing.assert_close(a.latents, b.latents, rtol=1e-3, atol=1e-3)


def test_cfg_off_camera_cfg_and_camera_off(pipelines, photo):
    pipe = pipelines["cameractrl"]
    path = preset_path("slide-left", num_frames=4)
    calls, on_unet = _count_calls()
    plain = pipe.generate(CamI2VRequest(photo, path, "kitchen", seed=1, options=SamplingOptions(steps=2, cfg_scale=1.0)),
                          on_unet=on_unet)
    assert [c["batch"] for c in calls] == [1, 1] and plain.info["negative_prompt"] is None
    calls, on_unet = _count_calls()
    pipe.generate(CamI2VRequest(photo, path, "kitchen", seed=1,
                                options=SamplingOptions(steps=2, camera_cfg=2.0, camera_cfg_schedule="cosine")),
                  on_unet=on_unet)
    assert [(c["batch"], c["camera"] is None) for c in calls] == [(2, False), (1, True)] * 2
    calls, on_unet = _count_calls()
    off = pipe.generate(CamI2VRequest(photo, path, "kitchen", seed=1, options=SamplingOptions(steps=2, enable_camera=False)),
                        on_unet=on_unet)
    on = pipe.generate(CamI2VRequest(photo, path, "kitchen", seed=1, options=FAST))
    assert all(c["camera"] is None for c in calls) and not off.info["camera_conditioned"]
    assert np.abs(off.latents - on.latents).max() > 1e-4
    # a camera model needs a path unless the camera condition is off
    with pytest.raises(InputError):
        pipe.generate(CamI2VRequest(photo, None, "kitchen", options=FAST))


def test_prompt_suffix_negative_prompt_and_path_resampling(pipelines, photo):
    pipe = pipelines["motionctrl"]
    path = preset_path("pan-left", num_frames=9)
    r = pipe.generate(CamI2VRequest(photo, path, "a fox", prompt_suffix=UPSTREAM_PROMPT_SUFFIX,
                                    negative_prompt=UPSTREAM_NEGATIVE_PROMPT, seed=2, options=FAST))
    assert r.info["prompt"] == "a fox" + UPSTREAM_PROMPT_SUFFIX
    assert r.info["negative_prompt"] == UPSTREAM_NEGATIVE_PROMPT
    assert r.info["camera_frames_in"] == 9 and r.info["camera_resampled_to"] == 4
    r2 = pipe.generate(CamI2VRequest(photo, path, "a fox", prompt_suffix="", seed=2, options=FAST))
    assert r2.info["prompt"] == "a fox" and r2.info["negative_prompt"] == DEFAULT_NEGATIVE_PROMPT


def test_recorded_noise_is_consumed_in_upstream_order(pipelines, photo):
    """VAE posterior (one draw per frame), epipolar perturbation, x_T, one draw per step."""
    pipe = pipelines["cami2v"]
    path = preset_path("static", num_frames=4)
    shapes = [(1, 4, 8, 8)] * 4 + [(1, 4, 4, 3, 1), (1, 4, 4, 8, 8), (1, 4, 4, 8, 8), (1, 4, 4, 8, 8)]
    noise = RecordedNoise([torch.randn(s) for s in shapes])
    pipe.generate(CamI2VRequest(photo, path, "room", options=FAST), noise=noise)
    assert noise.remaining == 0


def test_progress_per_step_and_cancel(pipelines, photo):
    pipe = pipelines["none"]
    seen = []
    pipe.generate(CamI2VRequest(photo, None, "room", options=SamplingOptions(steps=3)),
                  progress=lambda f, msg: seen.append((f, msg)))
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    assert sum("denoising step" in m for _, m in seen) == 4  # 0/3 .. 3/3
    cancel = threading.Event()
    prog = Progress(lambda f, msg: cancel.set() if "step 1/" in msg else None, cancel)
    with pytest.raises(Cancelled):
        pipe.generate(CamI2VRequest(photo, None, "room", options=SamplingOptions(steps=3)), progress=prog)


def test_options_are_validated(pipelines, photo):
    for bad in (SamplingOptions(steps=0), SamplingOptions(cfg_scale=0.5), SamplingOptions(eta=2.0),
                SamplingOptions(frame_stride=0), SamplingOptions(camera_cfg_schedule="linear")):
        with pytest.raises(InputError):
            pipelines["none"].generate(CamI2VRequest(photo, None, "room", options=bad))


def test_generator_adapter(pipelines, photo):
    model = pipelines["cami2v"].model
    loads = []
    gen = CamI2VGenerator("cami2v-256", lambda: loads.append(1) or model)
    assert (gen.name, gen.width, gen.height, gen.num_frames) == ("cami2v-256", 256, 256, 16)
    specs = {s.name: s for s in gen.param_specs()}
    assert specs["cfg_scale"].default == 5.5 and specs["steps"].default == 25 and specs["frame_stride"].default == 2
    assert specs["camera_cfg"].maximum == 4.0 and specs["eta"].default == 1.0 and specs["guidance_rescale"].default == 0.7
    seen = []
    req = GenerateRequest(photo, preset_path("push-in", num_frames=4), prompt="room", seed=5,
                          params={"steps": 2, "negative_prompt": "blurry"})
    res = gen.generate(req, Progress(lambda f, m: seen.append(m)))
    assert res.clip.frames.shape == (4, 64, 64, 3) and res.clip.fps == 10.0
    assert res.info["negative_prompt"] == "blurry" and res.info["params"]["steps"] == 2
    assert any("denoising step 2/2" in m for m in seen) and loads == [1]
    with pytest.raises(ValueError):
        CamI2VGenerator("motionctrl-256", lambda: model).generate(req, Progress())
    assert set(VARIANTS) == {"cami2v-512", "cami2v-256", "cameractrl-256", "motionctrl-256"}


# -- slow: the recorded 512x320 run with the full 2.9 B model ----------------------------------


@pytest.mark.slow
@pytest.mark.heavy
def test_reproduces_recorded_two_step_sampling(golden_dir):
    """Upstream's log_images (2 DDIM steps, demo settings) with every random draw injected:
    final latent and decoded video match the recording."""
    g = golden_dir / "cami2v512"
    inputs = torch.load(g / "sampling_inputs.pt", weights_only=False)
    inter = torch.load(g / "sampling_intermediates.pt", weights_only=False)
    draws = [d for _, d in torch.load(g / "sampling_random_draws.pt", weights_only=False)["random_draws_in_order"]]
    video_ref = torch.load(g / "sampling_output_video_stride4.pt", weights_only=False)["samples_raw_stride4"]

    params = get_preset("cami2v-512")
    with torch.device("meta"):
        model = LatentVideoDiffusion(params)
    fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")
    pipe = CamI2VPipeline(model.eval())

    K = inputs["batch"]["camera_intrinsics"][0, 0].double()
    intr = np.array([K[0, 0] / 512, K[1, 1] / 320, K[0, 2] / 512, K[1, 2] / 320])
    path = CameraPath.from_c2w(inputs["c2w"].numpy(), intr, "golden")
    caption = inputs["caption_full"]
    suffix = UPSTREAM_PROMPT_SUFFIX
    assert caption.endswith(suffix)
    req = CamI2VRequest(inputs["image_uint8_hwc"].numpy(), path, caption[: -len(suffix)], prompt_suffix=suffix,
                        negative_prompt=inputs["negative_prompt"], seed=0,
                        options=SamplingOptions(steps=2, cfg_scale=5.5, eta=1.0, guidance_rescale=0.7,
                                                frame_stride=2, decode_chunk=1))
    steps = []
    noise = RecordedNoise(draws)
    t0 = time.perf_counter()
    result = pipe.generate(req, noise=noise, callback=lambda i, n, x, x0: steps.append((x.clone(), x0.clone())))
    elapsed = time.perf_counter() - t0
    print(f"\n2-step 512x320 reproduction: {elapsed:.0f} s, info timings {result.info['timings_s']}, "
          f"peak RSS {result.info.get('peak_rss_gib', float('nan')):.1f} GiB")
    assert noise.remaining == 0
    for i, ((x, x0), ref) in enumerate(zip(steps, inter["ddim_steps"])):
        print(f"step {i}: max |x - ref| {(x - ref['x_prev']).abs().max():.2e}, "
              f"max |x0 - ref| {(x0 - ref['pred_x0']).abs().max():.2e}")
    for (x, x0), ref in zip(steps, inter["ddim_steps"]):
        torch.testing.assert_close(x0, ref["pred_x0"], rtol=1e-3, atol=2e-3)
        torch.testing.assert_close(x, ref["x_prev"], rtol=1e-3, atol=2e-3)
    expected = ((video_ref.clamp(-1, 1) + 1) / 2 * 255)[0].permute(1, 2, 3, 0).numpy()
    got = result.frames[:, ::4, ::4].astype(np.float64)
    assert np.abs(got - expected).max() <= 2.0
