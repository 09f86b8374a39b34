"""Upscale-A-Video: scheduler math, windows and tiles, the pipeline on tiny configs, the stage."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch

from core.clip import Clip
from core.errors import Cancelled, CheckpointError, ConfigError, InputError, Unavailable, WeightsMissing
from core.models.clip.text import TextTransformerParams
from core.models.upscale_a_video.loader import ReleaseFiles, build_with_rule, load_pipeline
from core.models.upscale_a_video.pipeline import (UpscaleSettings, build_prompt, color_fix, plan_tiles)
from core.models.upscale_a_video.scheduler import (LOW_RES_SCHEDULE, SAMPLING_SCHEDULE, DDIMSampler, NoiseSchedule,
                                                   add_noise, blend_windows, ddim_timesteps, sample_ddim,
                                                   temporal_windows)
from core.models.upscale_a_video.vae import VideoVAEParams
from core.postprocess.upscale_a_video import UpscaleAVideoStage, parse_steps
from core.progress import Progress
from core.registry import Registry

TINY_VAE = VideoVAEParams(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=8)
TINY_TEXT = TextTransformerParams(width=32, heads=2, layers=1, qkv_layout="separate", skip_last_layers=0,
                                  projection_dim=None)

# The entry proposed for models.json (see the report); the stage and registry must accept it.
ENTRY = {
    "kind": "upscaler",
    "variant": "upscale-a-video",
    "label": "Upscale-A-Video (x4)",
    "license": "NTU S-Lab License 1.0 (non-commercial)",
    "needs_gpu": True,
    "options": {"vae": "vae_3d", "precision": "fp16", "unet_preset": "upscale-a-video"},
    "files": [
        {"role": "unet", "path": "pretrained_models/upscale_a_video/unet/unet_video.bin", "manual": "Drive unet/"},
        {"role": "vae_3d", "path": "pretrained_models/upscale_a_video/vae/vae_3d.bin", "manual": "Drive vae/"},
        {"role": "vae_video", "path": "pretrained_models/upscale_a_video/vae/vae_video.bin", "optional": True,
         "manual": "Drive vae/"},
        {"role": "raft", "path": "pretrained_models/upscale_a_video/propagator/raft-things.pth", "optional": True,
         "manual": "Drive propagator/"},
        {"role": "text_encoder", "path": "pretrained_models/upscale_a_video/text_encoder/model.safetensors",
         "repo": "stabilityai/stable-diffusion-x4-upscaler", "filename": "text_encoder/model.safetensors"},
        {"role": "scheduler_config", "path": "pretrained_models/upscale_a_video/scheduler/scheduler_config.json",
         "optional": True, "repo": "stabilityai/stable-diffusion-x4-upscaler",
         "filename": "scheduler/scheduler_config.json"},
    ],
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_pipe():
    return build_with_rule(unet_params="tiny", vae_params=TINY_VAE, text_params=TINY_TEXT)


def _video(t=6, h=20, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, h, w, generator=g) * 2 - 1


FAST = UpscaleSettings(steps=2, window=4, window_stride=3, force_tiling=True, tile_size=16, tile_overlap=4,
                       prompt="a bright living room")


# -- schedules and the sampler ----------------------------------------------------------------------

def test_schedules_are_the_x4_upscalers():
    acp = SAMPLING_SCHEDULE.alphas_cumprod().double()
    betas = [(math.sqrt(1e-4) + i * (math.sqrt(0.02) - math.sqrt(1e-4)) / 999) ** 2 for i in range(1000)]
    ref = np.cumprod([1 - b for b in betas])
    np.testing.assert_allclose(acp.numpy(), ref, rtol=2e-5)
    assert SAMPLING_SCHEDULE.prediction_type == "v_prediction" and LOW_RES_SCHEDULE.prediction_type == "epsilon"
    steps = ddim_timesteps(SAMPLING_SCHEDULE, 30)
    assert len(steps) == 30 and steps[0] == 958 and steps[-1] == 1 and steps[0] - steps[1] == 33
    sampler = DDIMSampler(SAMPLING_SCHEDULE, 30)
    assert sampler.alpha_bar(sampler.previous(1)) == pytest.approx(float(acp[0]))  # set_alpha_to_one False


def test_schedule_reads_a_diffusers_config(tmp_path):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": "DDIMScheduler", "beta_schedule": "linear", "prediction_type": "epsilon",
                                "steps_offset": 0, "skip_prk_steps": True, "trained_betas": None}))
    s = NoiseSchedule.from_config_file(path)
    assert (s.beta_schedule, s.prediction_type, s.steps_offset) == ("linear", "epsilon", 0)
    path.write_text(json.dumps({"prediction_type": "flow"}))
    with pytest.raises(ConfigError, match="prediction_type"):
        NoiseSchedule.from_config_file(path)


@pytest.mark.parametrize("kind", ["v_prediction", "epsilon", "sample"])
def test_split_step_inverts_the_forward_process(kind):
    schedule = NoiseSchedule(prediction_type=kind)
    sampler = DDIMSampler(schedule, 10)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 4, 3, 5, 5, generator=g)
    t = 601
    a = float(schedule.alphas_cumprod()[t])
    x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
    out = {"v_prediction": a ** 0.5 * eps - (1 - a) ** 0.5 * x0, "epsilon": eps, "sample": x0}[kind]
    got_x0, got_eps = sampler.split(out, x_t, t)
    torch.testing.assert_close(got_x0, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_eps, eps, rtol=1e-4, atol=1e-4)
    prev = sampler.previous(t)
    a_prev = float(schedule.alphas_cumprod()[prev])
    torch.testing.assert_close(sampler.renoise(x0, eps, t), a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps)


def test_ddim_with_an_oracle_denoiser_lands_on_x0_and_calls_the_hook():
    sampler = DDIMSampler(SAMPLING_SCHEDULE, 30)
    g = torch.Generator().manual_seed(3)
    target = torch.randn(1, 4, 2, 6, 6, generator=g)

    def oracle(x, t):  # the v that makes x0 == target
        a = sampler.alpha_bar(t)
        eps = (x - a ** 0.5 * target) / (1 - a) ** 0.5
        return a ** 0.5 * eps - (1 - a) ** 0.5 * target

    hooked, stepped = [], []
    out = sample_ddim(oracle, torch.randn(1, 4, 2, 6, 6, generator=g), sampler,
                      x0_hook=lambda i, x0: hooked.append(i) or x0, callback=lambda i, n: stepped.append((i, n)))
    assert hooked == list(range(30)) and stepped[-1] == (29, 30)
    # the last step re-noises to alpha_bar[0] = 0.9999, so x is x0 up to 1% of the noise
    assert (out - target).abs().max() < 0.05


def test_low_res_noise_augmentation():
    x = torch.full((1, 3, 1, 2, 2), 0.5)
    noise = torch.ones_like(x)
    a = float(LOW_RES_SCHEDULE.alphas_cumprod()[120])
    torch.testing.assert_close(add_noise(LOW_RES_SCHEDULE, x, noise, 120), a ** 0.5 * x + (1 - a) ** 0.5 * noise)
    betas = [(math.sqrt(1e-4) + i * (math.sqrt(0.02) - math.sqrt(1e-4)) / 999) ** 2 for i in range(121)]
    assert a == pytest.approx(float(np.prod([1 - b for b in betas])), rel=1e-5)  # ~0.96 signal at level 120


# -- windows and tiles ---------------------------------------------------------------------------

def test_temporal_windows_follow_upstream():
    assert temporal_windows(16, 8, 6) == [(0, 8), (6, 14), (8, 16)]
    assert temporal_windows(14, 8, 6) == [(0, 8), (6, 14), (6, 14)]  # upstream repeats the last window
    assert temporal_windows(8, 8, 6) == [(0, 8)] and temporal_windows(5, 8, 6) == [(0, 5)]
    assert temporal_windows(25, 8, 6) == [(0, 8), (6, 14), (12, 20), (17, 25), (17, 25)]


def test_blend_windows_running_average():
    calls = []

    def predict(s, e):
        calls.append((s, e))
        return torch.full((1, 1, e - s, 1, 1), float(len(calls)))

    out = blend_windows(16, temporal_windows(16, 8, 6), predict).flatten().tolist()
    assert out == [1] * 6 + [1.5] * 2 + [2.5] * 6 + [3] * 2
    calls.clear()
    out = blend_windows(14, temporal_windows(14, 8, 6), predict).flatten().tolist()
    assert calls == [(0, 8), (6, 14)]  # the repeated window is not recomputed ...
    assert out == [1] * 6 + [1.75] * 2 + [2] * 6  # ... but weighs in twice, as upstream (0.25 / 0.75)


@pytest.mark.parametrize("h,w,tile,overlap", [(320, 512, 256, 64), (20, 28, 16, 4), (300, 300, 256, 64),
                                              (37, 610, 128, 64), (50, 40, 256, 64), (513, 257, 128, 0)])
def test_tiles_cover_every_pixel_once(h, w, tile, overlap):
    cover = np.zeros((h, w), dtype=int)
    for t in plan_tiles(h, w, tile, overlap):
        cy0, cy1, cx0, cx1 = t.crop
        ky0, ky1, kx0, kx1 = t.keep
        dy0, dy1, dx0, dx1 = t.dest
        assert 0 <= cy0 <= dy0 < dy1 <= cy1 <= h and 0 <= cx0 <= dx0 < dx1 <= cx1 <= w
        assert (ky1 - ky0, kx1 - kx0) == (dy1 - dy0, dx1 - dx0) and (ky0, kx0) == (dy0 - cy0, dx0 - cx0)
        cover[dy0:dy1, dx0:dx1] += 1
    assert (cover == 1).all()


def test_512x320_is_two_320px_tiles():
    tiles = plan_tiles(320, 512, 256, 64)
    assert [t.crop for t in tiles] == [(0, 320, 0, 320), (0, 320, 192, 512)]
    assert [t.dest for t in tiles] == [(0, 320, 0, 256), (0, 320, 256, 512)]


# -- colour correction and prompts ------------------------------------------------------------------

def test_color_fix():
    g = torch.Generator().manual_seed(4)
    lr = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(color_fix(up, lr, "wavelet"), up, rtol=1e-5, atol=1e-5)  # high + low = image
    out = torch.rand(2, 3, 32, 32, generator=g) * 0.2
    fixed = color_fix(out, lr, "adain")
    torch.testing.assert_close(fixed.mean(dim=(2, 3)), up.mean(dim=(2, 3)), rtol=1e-4, atol=1e-4)
    assert torch.equal(color_fix(out, lr, "none"), out)


def test_prompt_is_caption_plus_quality_phrase():
    assert build_prompt("A sunny kitchen.") == "A sunny kitchen. best quality, extremely detailed"
    assert build_prompt("  ") == "best quality, extremely detailed"


def test_settings_are_validated():
    with pytest.raises(InputError, match="Noise level"):
        UpscaleSettings(noise_level=351).validate(350)
    with pytest.raises(InputError, match="Propagation steps"):
        UpscaleSettings(steps=30, propagation_steps=(30,)).validate(350)
    assert parse_steps("24, 26,28,24", 30) == (24, 26, 28) and parse_steps("", 30) == ()
    with pytest.raises(InputError):
        parse_steps("24,x", 30)
    with pytest.raises(InputError):
        parse_steps("31", 30)


# -- the whole pipeline on tiny configs -------------------------------------------------------------

class _Recorder:
    """Wraps the UNet / VAE / prompt encoder to record what the pipeline feeds them."""

    def __init__(self, pipe):
        self.unet_frames, self.decode_frames, self.prompts = [], [], []
        self.pipe = pipe

    def __enter__(self):
        unet, vae, enc = self.pipe.unet, self.pipe.vae, self.pipe.encode_prompts
        rec = self

        class UNet:
            params, dtype = unet.params, unet.dtype

            def __call__(self, x, t, lr, ctx, level):
                rec.unet_frames.append(x.shape[2])
                return unet(x, t, lr, ctx, level)

        class VAE:
            def decode(self, z, lr=None, w_lr=1.0):
                rec.decode_frames.append(z.shape[2])
                return vae.decode(z, lr, w_lr)

        self._saved = (unet, vae, enc)
        self.pipe.unet, self.pipe.vae = UNet(), VAE()
        self.pipe.encode_prompts = lambda texts: rec.prompts.append(list(texts)) or enc(texts)
        return self

    def __exit__(self, *exc):
        self.pipe.unet, self.pipe.vae, self.pipe.encode_prompts = self._saved


def test_tiny_pipeline_windows_tiles_shape_and_seed(tiny_pipe):
    video = _video()
    messages = []
    with _Recorder(tiny_pipe) as rec:
        out = tiny_pipe(video, FAST, torch.Generator().manual_seed(1), Progress(lambda f, m: messages.append((f, m))))
    assert out.shape == (1, 3, 6, 80, 112) and out.device.type == "cpu" and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0  # NaN would mark a pixel no tile wrote
    # 2 tiles x 2 steps x 2 windows of 4 frames (0-4, 2-6); decode in chunks of 3
    assert rec.unet_frames == [4] * 8 and rec.decode_frames == [3, 3, 3, 3]
    assert rec.prompts == [["blur, worst quality", "a bright living room best quality, extremely detailed"]]
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("tile 2/2" in m and "step 2/2" in m and "window 2/2" in m for _, m in messages)

    again = tiny_pipe(video, FAST, torch.Generator().manual_seed(1))
    other = tiny_pipe(video, FAST, torch.Generator().manual_seed(2))
    assert torch.equal(out, again)
    assert (out - other).abs().max() > 1e-3


def test_tiny_pipeline_without_guidance_or_tiles(tiny_pipe):
    settings = UpscaleSettings(steps=1, guidance_scale=1.0, prompt="x")
    with _Recorder(tiny_pipe) as rec:
        out = tiny_pipe(_video(t=3, h=8, w=12), settings, torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 3, 32, 48) and torch.isfinite(out).all()
    assert rec.prompts == [["x best quality, extremely detailed"]] and rec.unet_frames == [3]


def test_tiny_pipeline_in_bfloat16_keeps_the_vae_and_sampler_in_float32():
    pipe = build_with_rule(dtype=torch.bfloat16, unet_params="tiny", vae_params=TINY_VAE, text_params=TINY_TEXT)
    assert pipe.unet.dtype == torch.bfloat16 and next(pipe.vae.parameters()).dtype == torch.float32
    settings = UpscaleSettings(steps=2, prompt="a room")
    out = pipe(_video(t=3, h=8, w=12), settings, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 3, 32, 48) and torch.isfinite(out).all()


def test_tiny_pipeline_propagation_wiring(tiny_pipe):
    """Stub flows (the real RAFT is tested against its golden by the components' tests) through the
    real propagation module at the chosen steps only, cropped per tile."""
    from core.models.upscale_a_video.propagation import propagate_latents

    seen_flow_inputs, prop_calls = [], []

    def flows(frames):
        seen_flow_inputs.append(tuple(frames.shape))
        t, h, w = frames.shape[2:]
        fwd = torch.zeros(1, 2, t - 1, h, w)
        fwd[:, 0] = 1.0  # everything moves one pixel right
        return fwd, -fwd

    def propagate(x0, ff, fb):
        prop_calls.append((tuple(x0.shape), tuple(ff.shape)))
        return propagate_latents(x0, ff, fb)

    video = _video()
    base = tiny_pipe(video, FAST, torch.Generator().manual_seed(1))
    tiny_pipe.flow_estimator, tiny_pipe.propagator = flows, propagate
    try:
        settings = UpscaleSettings(**{**FAST.__dict__, "propagation_steps": (1,)})
        out = tiny_pipe(video, settings, torch.Generator().manual_seed(1))
    finally:
        tiny_pipe.flow_estimator = tiny_pipe.propagator = None
    assert seen_flow_inputs == [(1, 3, 6, 20, 28)]  # flows once, on the whole clip
    assert prop_calls == [((1, 4, 6, 20, 20), (1, 2, 5, 20, 20)), ((1, 4, 6, 20, 16), (1, 2, 5, 20, 16))]
    assert (out - base).abs().max() > 1e-4


def test_propagation_requires_flow_parts(tiny_pipe):
    settings = UpscaleSettings(**{**FAST.__dict__, "propagation_steps": (0,)})
    with pytest.raises(ConfigError, match="RAFT"):
        tiny_pipe(_video(), settings)


def test_pipeline_stops_when_cancelled(tiny_pipe):
    progress = Progress()
    calls = []

    def fn(f, m):
        calls.append(m)
        if "step 1/2" in m:
            progress.cancel()

    progress = Progress(fn)
    with pytest.raises(Cancelled):
        tiny_pipe(_video(), FAST, progress=progress)
    assert not any("step 2/2" in m for m in calls)


# -- the stage --------------------------------------------------------------------------------------

def test_stage_upscales_a_clip_by_four(tiny_pipe):
    stage = UpscaleAVideoStage(pipeline=tiny_pipe, allow_cpu=True)
    assert (stage.name, stage.role) == ("upscale-a-video", "upscale") and "non-commercial" in stage.license
    frames = (np.random.default_rng(0).random((3, 10, 14, 3)) * 255).astype(np.uint8)
    clip = Clip(frames, fps=8.0)
    params = {"steps": 2, "noise_level": 50, "prompt": "a room", "seed": 3}
    out = stage.process(clip, params, Progress())
    assert out.frames.shape == (3, 40, 56, 3) and out.frames.dtype == np.uint8 and out.fps == 8.0
    assert np.array_equal(stage.process(clip, params, Progress()).frames, out.frames)
    assert not np.array_equal(stage.process(clip, {**params, "seed": 4}, Progress()).frames, out.frames)
    with pytest.raises(InputError):
        stage.process(clip, {"noise_level": 400}, Progress())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_stage_refuses_the_cpu_unless_allowed(tiny_pipe):
    stage = UpscaleAVideoStage(pipeline=tiny_pipe)
    clip = Clip(np.zeros((2, 8, 8, 3), np.uint8), fps=8.0)
    with pytest.raises(Unavailable, match="CUDA"):
        stage.process(clip, {}, Progress())


def test_registry_entry_lists_the_stage_unavailable_without_gpu_and_names_missing_files(tmp_path):
    registry = Registry.from_dict({"schema": 1, "models": {"upscale-a-video": ENTRY}}, root=tmp_path)
    reason = registry.availability("upscale-a-video", has_gpu=False).reason
    assert "CUDA GPU" in reason
    assert "weights missing" in registry.availability("upscale-a-video", has_gpu=True).reason
    stage = UpscaleAVideoStage(registry, allow_cpu=True)
    with pytest.raises(WeightsMissing, match="unet_video.bin"):
        stage.process(Clip(np.zeros((2, 8, 8, 3), np.uint8), fps=8.0), {}, Progress())


def test_models_json_entry_if_present(repo_root):
    path = repo_root / "models.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if "upscale-a-video" not in data.get("models", {}):
        pytest.skip("models.json has no upscale-a-video entry yet")
    entry = Registry.load(path).get("upscale-a-video")
    assert entry.kind == "upscaler" and entry.needs_gpu and "non-commercial" in entry.license
    for role in ("unet", "vae_3d", "text_encoder"):
        assert entry.has_file(role) and not entry.file(role).optional


def _write_tiny_release(root, pipe):
    """The tiny pipeline's weights saved in the release's layout and formats."""
    from safetensors.torch import save_file

    from core.models.upscale_a_video.text_encoder import text_key_to_upstream
    from core.models.upscale_a_video.unet import to_upstream_key
    from core.models.upscale_a_video.vae import vae_key_to_upstream

    (root / "unet").mkdir(parents=True)
    (root / "vae").mkdir()
    (root / "text_encoder").mkdir()
    torch.save({to_upstream_key(k): v.contiguous() for k, v in pipe.unet.state_dict().items()},
               root / "unet" / "unet_video.bin")
    torch.save({vae_key_to_upstream(k): v for k, v in pipe.vae.state_dict().items()}, root / "vae" / "vae_3d.bin")
    text = pipe.encode_prompts.__self__
    save_file({text_key_to_upstream(k): v.contiguous() for k, v in text.state_dict().items()},
              str(root / "text_encoder" / "model.safetensors"))


def test_stage_loads_the_release_files_through_the_registry(tmp_path, tiny_pipe):
    """registry -> files -> strict loaders -> pipeline -> stage, with tiny architectures."""
    root = tmp_path / "pretrained_models" / "upscale_a_video"
    _write_tiny_release(root, tiny_pipe)
    entry = {**ENTRY, "options": {**ENTRY["options"], "unet_preset": "tiny"}}
    registry = Registry.from_dict({"schema": 1, "models": {"upscale-a-video": entry}}, root=tmp_path)
    loader = functools.partial(load_pipeline, vae_params=TINY_VAE, text_params=TINY_TEXT)
    stage = UpscaleAVideoStage(registry, pipeline_loader=loader, allow_cpu=True)
    clip = Clip((np.random.default_rng(1).random((2, 8, 12, 3)) * 255).astype(np.uint8), fps=5.0)
    params = {"steps": 1, "seed": 5, "prompt": "a hall"}
    out = stage.process(clip, params, Progress())
    ref = UpscaleAVideoStage(pipeline=tiny_pipe, allow_cpu=True).process(clip, params, Progress())
    assert out.frames.shape == (2, 32, 48, 3)
    assert np.abs(out.frames.astype(int) - ref.frames.astype(int)).max() <= 1  # same weights, same result
    assert stage.pipeline(torch.device("cpu")) is stage.pipeline(torch.device("cpu"))  # stays resident
    with pytest.raises(WeightsMissing, match="raft-things.pth"):
        stage.process(clip, {**params, "propagation_steps": "0"}, Progress())

    # a corrupted UNet file is refused with the key names
    stage.unload()
    state = torch.load(root / "unet" / "unet_video.bin")
    state.pop("conv_in.weight")
    torch.save(state, root / "unet" / "unet_video.bin")
    with pytest.raises(CheckpointError, match="conv_in.weight"):
        stage.process(clip, params, Progress())


def test_release_folder_layout(tmp_path):
    files = ReleaseFiles.from_folder(tmp_path, "vae_video")
    assert files.unet == tmp_path / "unet" / "unet_video.bin" and files.vae == tmp_path / "vae" / "vae_video.bin"
    assert files.raft is None and files.scheduler_config is None
    with pytest.raises(ConfigError, match="VAE"):
        ReleaseFiles.from_folder(tmp_path, "vae_9d")
    with pytest.raises(ConfigError, match="VAE"):
        load_pipeline(ReleaseFiles(files.unet, files.vae, files.text_encoder, vae_variant="vae_9d"), device="cpu")
