"""OpenVINO CPU backend: the same samplers over OpenVINO-compiled networks reproduce PyTorch.

Tiny configs only (the converted IR is shared by the tests of this module through one cache
folder, so each network is converted once). Skipped where the optional openvino is absent,
except the missing-package message, which is simulated.
"""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import torch

from core.errors import Unavailable
from core.models.cami2v import keymap
from core.models.cami2v.config import tiny_params
from core.models.cami2v.model import LatentVideoDiffusion
from core.models.cami2v.pipeline import CamI2VPipeline, CamI2VRequest, SamplingOptions
from core.models.weight_rule import fill_with_rule


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _tiny_cami2v() -> LatentVideoDiffusion:
    with torch.device("meta"):
        model = LatentVideoDiffusion(tiny_params("cami2v"), component_presets="tiny")
    fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")
    return model.eval()


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    pytest.importorskip("openvino")
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def photo():
    return (np.random.default_rng(0).random((60, 90, 3)) * 255).astype(np.uint8)


def test_missing_openvino_is_one_clear_line(monkeypatch, tmp_path):
    from core.models import openvino_backend
    from core.service import Studio, StudioSettings

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert not openvino_backend.openvino_available()
    with pytest.raises(Unavailable) as err:
        Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", device="cpu", backend="openvino",
                              min_free_bytes=0))
    msg = str(err.value)
    assert msg == openvino_backend.MISSING_MESSAGE and "\n" not in msg
    assert "pip install openvino" in msg and "--backend torch" in msg
    # the torch backend does not need it
    Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", device="cpu", min_free_bytes=0))


def test_backend_names_are_checked(tmp_path):
    from core.errors import InputError
    from core.service import Studio, StudioSettings, offered_backends

    with pytest.raises(InputError, match="Unknown backend 'tensorrt'"):
        Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", device="cpu", backend="tensorrt"))
    assert offered_backends("cpu") == ("torch", "openvino", "openvino-int8")
    assert offered_backends("cuda:0") == ("torch",)


def test_conversion_short_of_memory_is_one_line(tmp_path, monkeypatch):
    """Converting checks the free memory first: too little gives OutOfMemory with the figures and
    what to do, and leaves nothing half-written in the cache (the server keeps serving)."""
    from core import model_memory
    from core.errors import OutOfMemory
    from core.models.openvino_backend import CONVERT_MEMORY_FACTOR, OpenVINOOptions, OpenVINOUNet

    pytest.importorskip("openvino")
    model = _tiny_cami2v()
    unet = OpenVINOUNet(model.unet, OpenVINOOptions(cache_dir=tmp_path / "short"))
    need = CONVERT_MEMORY_FACTOR * model_memory.module_bytes(model.unet)
    monkeypatch.setattr(model_memory, "available_ram", lambda: int(need) - 1)
    p = model.params
    lh, lw = p.latent_size
    x = torch.zeros(1, 8, p.num_frames, lh, lw)
    ctx = torch.zeros(1, p.unet.text_tokens + 16 * p.num_frames, p.unet.context_dim)
    with pytest.raises(OutOfMemory) as err:
        unet(x, torch.tensor([700]), ctx, torch.tensor([2]), None)
    msg = str(err.value)
    assert "\n" not in msg and "free memory" in msg and "--backend torch" in msg
    assert not (tmp_path / "short").exists() or not any((tmp_path / "short").iterdir())
    monkeypatch.setattr(model_memory, "available_ram", lambda: int(need) + 1)
    assert unet(x, torch.tensor([700]), ctx, torch.tensor([2]), None).shape == (1, 4, p.num_frames, lh, lw)


def test_backend_precisions():
    """openvino computes in float32 (it reproduces PyTorch); openvino-int8 in bf16 exactly where
    the CPU reports BF16 support."""
    openvino = pytest.importorskip("openvino")
    from core.models.openvino_backend import OpenVINOOptions

    exact = OpenVINOOptions.for_backend("openvino")
    assert (exact.weights, exact.precision, exact.compute_precision()) == ("fp32", "f32", "f32")
    fast = OpenVINOOptions.for_backend("openvino-int8")
    assert (fast.weights, fast.precision) == ("int8", "auto")
    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert fast.compute_precision() == ("bf16" if has_bf16 else "f32")
    assert fast.compile_config()["INFERENCE_PRECISION_HINT"] == fast.compute_precision()
    assert OpenVINOOptions.for_backend("openvino-int8", precision="f32").compute_precision() == "f32"
    with pytest.raises(ValueError, match="precision"):
        OpenVINOOptions(precision="fp8")


def test_cami2v_generation_reproduces_pytorch(ov_cache, photo):
    """2-step DDIM with batched CFG and the epipolar camera condition, then the VAE decode: the
    frames through OpenVINO match PyTorch's (float32 compute)."""
    from core.camera import preset_path
    from core.models.openvino_backend import OpenVINOCamI2V, OpenVINOOptions

    model = _tiny_cami2v()
    p = model.params
    req = CamI2VRequest(photo, preset_path("orbit-left", num_frames=p.num_frames), prompt="a room", seed=5,
                        options=SamplingOptions(steps=2))
    ref = CamI2VPipeline(model).generate(req)
    ov = OpenVINOCamI2V(model, OpenVINOOptions(cache_dir=ov_cache))
    seen = []
    out = CamI2VPipeline(model, unet=ov.unet, decode_video=ov.decode_video).generate(
        req, on_unet=lambda x, t, ctx, fs, cam, o: seen.append((x.shape[0], cam is not None)))
    assert seen == [(2, True), (2, True)]  # both CFG branches in one call, camera condition present
    assert ov.unet.network.conversions == 1 and ov.decode_video.network.conversions == 1
    assert sorted(f.suffix for f in ov_cache.iterdir()) == [".bin", ".bin", ".xml", ".xml"]
    assert out.frames.shape == ref.frames.shape
    psnr = _psnr(out.frames, ref.frames)
    assert psnr >= 40.0, psnr
    torch.testing.assert_close(out.latents, ref.latents, rtol=1e-3, atol=1e-3)

    # the IR is cached by weight hash and shapes: a new wrapper reads it instead of converting
    again = OpenVINOCamI2V(model, OpenVINOOptions(cache_dir=ov_cache))
    out2 = CamI2VPipeline(model, unet=again.unet, decode_video=again.decode_video).generate(req)
    assert again.unet.network.conversions == 0 and again.decode_video.network.conversions == 0
    np.testing.assert_array_equal(out2.frames, out.frames)
    # release() frees the compiled models only: the next call compiles from the cache again
    again.unet.network.release()
    assert not again.unet.network._compiled
    out3 = CamI2VPipeline(model, unet=again.unet, decode_video=again.decode_video).generate(req)
    assert again.unet.network.conversions == 0 and len(again.unet.network._compiled) == 1
    np.testing.assert_array_equal(out3.frames, out.frames)
    # other weights get another key
    other = _tiny_cami2v()
    with torch.no_grad():
        next(other.unet.parameters()).add_(1.0)
    assert OpenVINOCamI2V(other, OpenVINOOptions(cache_dir=ov_cache)).unet.network.weights_id != \
        again.unet.network.weights_id


def test_svd_generation_reproduces_pytorch(ov_cache):
    """diffusers' own SVD loop (Euler, CFG over the frames) with the UNet through OpenVINO."""
    pytest.importorskip("diffusers")
    from core.generators.base import GenerateRequest
    from core.generators.svd import SVDGenerator, SVDModel
    from core.models.openvino_backend import OpenVINOOptions, OpenVINOSVDUNet, with_backend
    from core.camera import preset_path
    from tests.test_svd import tiny_svd_pipeline

    torch_model = SVDModel(tiny_svd_pipeline(), "fp32")
    ov_model = with_backend(torch_model, "svd", OpenVINOOptions(cache_dir=ov_cache))
    assert isinstance(ov_model.pipeline.unet, OpenVINOSVDUNet)
    img = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    req = GenerateRequest(img, preset_path("push-in", 3), seed=2,
                          params={"width": 128, "height": 128, "num_frames": 3, "steps": 2, "decode_chunk_size": 3})
    ref = SVDGenerator("svd", lambda: torch_model).generate(req, lambda f, m: None)
    out = SVDGenerator("svd", lambda: ov_model).generate(req, lambda f, m: None)
    assert ov_model.pipeline.unet.network.conversions == 1
    psnr = _psnr(out.clip.frames, ref.clip.frames)
    assert psnr >= 40.0, psnr


def test_int8_weights_stay_close(ov_cache):
    """int8 weight compression (nncf) of the tiny UNet: a real but small output change."""
    pytest.importorskip("nncf")
    from core.models.openvino_backend import OpenVINOOptions, OpenVINOUNet

    model = _tiny_cami2v()
    p = model.params
    g = torch.Generator().manual_seed(0)
    lh, lw = p.latent_size
    x = torch.randn(1, 8, p.num_frames, lh, lw, generator=g)
    ctx = torch.randn(1, p.unet.text_tokens + 16 * p.num_frames, p.unet.context_dim, generator=g)
    t, fs = torch.tensor([700]), torch.tensor([2])
    with torch.no_grad():
        ref = model.unet(x, t, ctx, fs, None)
    out = OpenVINOUNet(model.unet, OpenVINOOptions(weights="int8", cache_dir=ov_cache))(x, t, ctx, fs, None)
    rel = float((out - ref).norm() / ref.norm())
    assert 0.0 < rel < 0.1, rel
    assert any(f.name.startswith("cami2v-unet-int8-") for f in ov_cache.iterdir())


def test_dashboard_service_generates_with_openvino(ov_cache, tmp_path, monkeypatch, photo):
    """Registry entry -> manager -> OpenVINO-wrapped model -> generator -> run folder."""
    from core.generators import cami2v as cami2v_gen
    from core.models.openvino_backend import OpenVINOCamI2V
    from core.service import CameraSpec, JobRequest, Studio, StudioSettings

    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "256_cami2v.pt").write_bytes(b"stand-in")
    (tmp_path / "models.json").write_text(json.dumps({"models": {
        "cami2v-256": {"kind": "generator", "variant": "cami2v", "label": "CamI2V 256x256",
                       "files": [{"role": "checkpoint", "path": "ckpts/256_cami2v.pt",
                                  "repo": "MuteApo/CamI2V", "filename": "256_cami2v.pt"}]}}}))
    loads = []

    def fake_load(registry, entry, *, device, dtype):
        loads.append((str(device), dtype))
        return _tiny_cami2v()

    monkeypatch.setattr(cami2v_gen, "load_model", fake_load)
    studio = Studio(StudioSettings(root=tmp_path, models=tmp_path / "models.json", outputs=tmp_path / "out",
                                   device="cpu", backend="openvino", openvino_cache=ov_cache, min_free_bytes=0))
    assert studio.backend == "openvino" and studio.dtype_name == "fp32"
    req = JobRequest(photo, CameraSpec(preset="orbit-left"), model="cami2v-256", seed=3, params={"steps": 2})
    events = list(studio.run_job(req))
    generated = next(e for e in events if e.kind == "generated")
    assert generated.video.is_file() and events[-1].kind == "done"
    assert loads == [("cpu", "fp32")]
    assert isinstance(studio.manager.get("cami2v-256"), OpenVINOCamI2V)
    data = json.loads((studio.open_run(events[0].run_id).dir / "run.json").read_text())
    assert data["params"]["backend"] == "openvino"
    assert any(f.name.startswith("cami2v-unet-fp32-") for f in ov_cache.iterdir())
