"""Stable Video Diffusion generator: diffusers' real SVD pipeline code on tiny random components.

The components follow diffusers' own SVD fast tests (tiny UNetSpatioTemporalConditionModel,
AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection, Karras Euler scheduler), except that
the VAE has four blocks so that it downsamples by 8 like the real one, and the CLIP tower takes
224x224 inputs (the pipeline always resizes the photo to that).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from core.camera import preset_path  # noqa: E402
from core.errors import Cancelled, CheckpointError, InputError, WeightsMissing  # noqa: E402
from core.generators.base import GenerateRequest, Generator  # noqa: E402
from core.generators.svd import (SVDGenerator, SVDModel, build_pipeline, cover_crop, load_model,  # noqa: E402
                                 param_specs)
from core.progress import Progress  # noqa: E402
from core.registry import Registry  # noqa: E402

SIZE = 128  # the smallest size the generator offers; latents are 16x16
FAST = {"width": SIZE, "height": SIZE, "num_frames": 3, "steps": 3, "decode_chunk_size": 2}


def tiny_svd_pipeline():
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=4, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32, num_frames=14)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 32, 32, 32], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D"] * 4, latent_channels=4,
                                       layers_per_block=1)
    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32))
    processor = CLIPImageProcessorPil(crop_size=224, size=224)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=processor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_model():
    return SVDModel(tiny_svd_pipeline(), "fp32")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A saved tiny pipeline laid out like the hub snapshot (fp32 and fp16 weight files)."""
    root = tmp_path_factory.mktemp("svd") / "pretrained_models" / "stable-video-diffusion-img2vid"
    pipe = tiny_svd_pipeline()
    pipe.save_pretrained(root)
    pipe.to(torch.float16).save_pretrained(root, variant="fp16")
    # The hub's files name the torchvision-backed class; the loader must not depend on it.
    cfg = root / "feature_extractor" / "preprocessor_config.json"
    data = json.loads(cfg.read_text())
    data["image_processor_type"] = "CLIPImageProcessor"
    cfg.write_text(json.dumps(data))
    index = root / "model_index.json"
    data = json.loads(index.read_text())
    data["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    index.write_text(json.dumps(data))
    return root


def photo(h: int = 300, w: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def request(params=None, seed=0, image=None):
    return GenerateRequest(photo() if image is None else image, preset_path("push-in", 14), seed=seed,
                           params={**FAST, **(params or {})})


def registry_for(root, tmp_path, name="svd", frames=14):
    return Registry.from_dict({"models": {name: {
        "kind": "generator", "variant": "svd", "label": "SVD (test)", "requires": ["diffusers"],
        "defaults": {"num_frames": frames},
        "files": [{"role": "model", "path": str(root), "repo": "stabilityai/stable-video-diffusion-img2vid",
                   "snapshot": True}]}}}, root=tmp_path)


# ---------------------------------------------------------------------------------------------


def test_contract_and_entry_defaults(tmp_path):
    reg = registry_for(tmp_path / "absent", tmp_path, name="svd-xt", frames=25)
    gen = SVDGenerator.from_entry(reg.get("svd-xt"), load_model=lambda: None)
    assert isinstance(gen, Generator)
    assert gen.camera_control is False and gen.is_ai is True
    assert (gen.width, gen.height, gen.num_frames) == (1024, 576, 25)
    specs = {s.name: s for s in gen.param_specs()}
    assert specs["num_frames"].default == 25
    assert specs["motion_bucket_id"].default == 127 and specs["fps_id"].default == 6
    assert specs["noise_aug_strength"].default == 0.02 and specs["steps"].default == 25
    assert (specs["min_guidance"].default, specs["max_guidance"].default) == (1.0, 3.0)
    assert SVDGenerator.from_entry(registry_for(tmp_path, tmp_path).get("svd"), lambda: None).num_frames == 14
    assert {s.name for s in param_specs()} >= {"decode_chunk_size", "width", "height", "fps"}


def test_cover_crop_box_and_aspect():
    img = photo(300, 500)
    out, box = cover_crop(img, 128, 128)
    assert out.shape == (128, 128, 3)
    assert box == [100, 0, 400, 300]  # centred square of the 500x300 photo
    out, box = cover_crop(photo(600, 400), 1024, 576)
    assert out.shape == (576, 1024, 3)
    x0, y0, x1, y1 = box
    assert (x0, x1) == (0, 400) and abs((x1 - x0) / (y1 - y0) - 1024 / 576) < 0.01


def test_generate_shapes_progress_and_info(tiny_model):
    gen = SVDGenerator("svd", lambda: tiny_model)
    seen = []
    res = gen.generate(request(), Progress(lambda f, m: seen.append((f, m))))
    assert res.clip.frames.shape == (3, SIZE, SIZE, 3) and res.clip.frames.dtype == np.uint8
    assert res.clip.fps == 7.0
    assert res.clip.frames.std() > 1.0  # random weights still make a non-constant picture
    steps = [m for _, m in seen if m.startswith("step ")]
    assert steps == ["step 1/3", "step 2/3", "step 3/3"]
    assert [m for _, m in seen if m.startswith("decoded")] == ["decoded 2/3 frames", "decoded 3/3 frames"]
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    info = res.info
    assert info["crop_box"] == [100, 0, 400, 300]
    assert info["camera_ignored"] is True and info["warnings"]
    assert info["params"]["motion_bucket_id"] == 127 and info["num_frames"] == 3
    json.dumps(info)


def test_seed_determinism(tiny_model):
    gen = SVDGenerator("svd", lambda: tiny_model)
    a = gen.generate(request(seed=7), Progress()).clip.frames
    b = gen.generate(request(seed=7), Progress()).clip.frames
    c = gen.generate(request(seed=8), Progress()).clip.frames
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 0.5


def test_chunked_decode_matches_diffusers(tiny_model):
    """Our chunk-by-chunk decode gives the frames diffusers' own decode gives for that chunk size."""
    pipe = tiny_model.pipeline
    kw = dict(height=SIZE, width=SIZE, num_frames=3, num_inference_steps=2, min_guidance_scale=1.0,
              max_guidance_scale=3.0, fps=7, motion_bucket_id=127, noise_aug_strength=0.02,
              decode_chunk_size=2)
    import PIL.Image

    image = PIL.Image.fromarray(cover_crop(photo(), SIZE, SIZE)[0])
    with torch.inference_mode():
        ref = pipe(image, generator=torch.Generator().manual_seed(3), output_type="np", **kw).frames[0]
        latents = pipe(image, generator=torch.Generator().manual_seed(3), output_type="latent", return_dict=False, **kw)
        ours = SVDGenerator._decode(pipe, latents, 2, Progress())
    assert np.abs(ours.astype(int) - np.clip(np.round(ref * 255), 0, 255).astype(int)).max() <= 1


def test_cancel_mid_run_stops_between_steps(tiny_model):
    gen = SVDGenerator("svd", lambda: tiny_model)
    cancel = threading.Event()
    steps = []

    def fn(frac, msg):
        if msg.startswith("step "):
            steps.append(msg)
            if len(steps) == 2:
                cancel.set()

    with pytest.raises(Cancelled):
        gen.generate(request({"steps": 6}), Progress(fn, cancel))
    assert steps == ["step 1/6", "step 2/6"]
    # The pipeline is still usable after a cancelled run.
    assert gen.generate(request(), Progress()).clip.num_frames == 3


def test_bad_parameters_are_input_errors(tiny_model):
    gen = SVDGenerator("svd", lambda: tiny_model)
    with pytest.raises(InputError, match="multiple of 64"):
        gen.generate(request({"width": 300}), Progress())
    with pytest.raises(InputError, match="must not exceed"):
        gen.generate(request({"min_guidance": 3.0, "max_guidance": 2.0}), Progress())
    with pytest.raises(InputError, match="Motion amount"):
        gen.generate(request({"motion_bucket_id": 300}), Progress())


def test_load_model_from_snapshot_through_registry(snapshot, tmp_path, tiny_model):
    reg = registry_for(snapshot, tmp_path)
    model = load_model(reg, reg.get("svd"), device="cpu", dtype="fp32")
    assert isinstance(model, SVDModel)
    assert model.dtype == torch.float32 and str(model.device) == "cpu"
    assert model.nbytes == tiny_model.nbytes > 0
    assert model.to("cpu") is model
    gen = SVDGenerator.from_entry(reg.get("svd"), load_model=lambda: model)
    a = gen.generate(request(seed=5), Progress()).clip.frames
    b = SVDGenerator("svd", lambda: tiny_model).generate(request(seed=5), Progress()).clip.frames
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, np.abs(a.astype(int) - b.astype(int)).max()  # same model


def test_load_model_picks_fp16_files_for_half_precision(snapshot, tmp_path):
    reg = registry_for(snapshot, tmp_path)
    model = load_model(reg, reg.get("svd"), device="cpu", dtype="bf16")
    assert model.dtype == torch.bfloat16
    assert model.pipeline.vae.dtype == torch.bfloat16 and model.pipeline.image_encoder.dtype == torch.bfloat16


def test_missing_and_broken_snapshots(snapshot, tmp_path):
    reg = registry_for(tmp_path / "nowhere", tmp_path)
    with pytest.raises(WeightsMissing, match="core.weights fetch svd"):
        load_model(reg, reg.get("svd"), device="cpu", dtype="fp32")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="unet"):
        build_pipeline(broken)
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(snapshot, partial)
    for f in (partial / "unet").glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot load unet"):
        build_pipeline(partial)


def test_studio_runs_svd_end_to_end(snapshot, tmp_path, monkeypatch):
    """The service builds the generator from its entry, loads the snapshot through the model
    manager (resident afterwards), records the generator's crop box and warnings, and measures
    fidelity against the photo region the clip shows (the centre 300x300 of the 500x300 photo)."""
    import core.metrics
    from core.service import JobRequest, Studio, StudioSettings

    seen = []
    real = core.metrics.measure
    monkeypatch.setattr(core.metrics, "measure",
                        lambda clip, reference_image=None, **kw: seen.append(reference_image) or real(
                            clip, reference_image=reference_image, **kw))

    reg = tmp_path / "models.json"
    reg.write_text(json.dumps({"models": {"svd": {
        "kind": "generator", "variant": "svd", "label": "SVD (tiny test)", "requires": ["diffusers"],
        "defaults": {"num_frames": 3},
        "files": [{"role": "model", "path": str(snapshot), "repo": "stabilityai/stable-video-diffusion-img2vid",
                   "snapshot": True}]}}}))
    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=reg, device="cpu",
                                   min_free_bytes=0))
    info = next(i for i in studio.model_infos("generator") if i.name == "svd")
    assert info.available and info.camera_control is False and info.num_frames == 3
    img = photo()
    events = list(studio.run_job(JobRequest(img, model="svd", seed=1,
                                            params={"width": SIZE, "height": SIZE, "steps": 2})))
    generated = next(e for e in events if e.kind == "generated")
    assert generated.video.is_file() and events[-1].kind == "done"
    assert studio.manager.is_resident("svd")
    data = json.loads((studio.open_run(events[0].run_id).dir / "run.json").read_text())
    assert data["generator_info"]["crop_box"] == [100, 0, 400, 300]
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], img[0:300, 100:400])
    assert data["generator_info"]["camera_ignored"] is True


def test_weight_file_choice(tmp_path):
    from core.generators.svd import _weights_variant

    both = tmp_path / "both"
    both.mkdir()
    (both / "model.safetensors").write_bytes(b"x")
    (both / "model.fp16.safetensors").write_bytes(b"x")
    assert _weights_variant(both, "model", "fp32") is None
    assert _weights_variant(both, "model", "bf16") == "fp16"
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.fp16.safetensors").write_bytes(b"x")
    assert _weights_variant(half, "model", "fp32") == "fp16"  # upcast the only file there is
    full = tmp_path / "full"
    full.mkdir()
    (full / "model.safetensors").write_bytes(b"x")
    assert _weights_variant(full, "model", "fp16") is None
