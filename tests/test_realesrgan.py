"""Real-ESRGAN stage: the same output as spandrel's network called directly (random weights in the
released file layouts), the denoise-strength blend of the two general-x4v3 files, tiling, x2,
the shipped entries, and spandrel importing without torchvision."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.clip import Clip
from core.errors import Cancelled, CheckpointError, WeightsMissing
from core.postprocess.realesrgan import RealESRGANStage, load_model, tiled_upscale
from core.progress import Progress
from core.registry import Registry

REPO = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("spandrel") is None:  # pragma: no cover - the README's install adds it
    pytest.skip("spandrel is not installed (pip install --no-deps spandrel==0.4.2)", allow_module_level=True)

from core.postprocess.spandrel_import import import_spandrel  # noqa: E402

spandrel = import_spandrel()


# -- random weights in the released layouts ------------------------------------------------------

def compact_state(seed: int) -> dict[str, torch.Tensor]:
    """realesr-general-x4v3's layout (SRVGGNetCompact: 64 features, 32 convs, PReLU, x4): the keys
    body.0 ... body.66 as in the released file, random values."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
    return {k: v.clone() for k, v in net.state_dict().items()}


def rrdb_state(seed: int, blocks: int = 2) -> dict[str, torch.Tensor]:
    """RealESRGAN_x4plus's layout (BasicSR RRDBNet: conv_first, body.N.rdbK.convJ, conv_body,
    conv_up1/2, conv_hr, conv_last; 64 features, growth 32), random values scaled like its
    initialisation (residual convs x0.1) so activations stay in range. The released file has 23
    blocks; fewer keep the test fast (spandrel reads the block count from the keys)."""
    g = torch.Generator().manual_seed(seed)

    def conv(out_c, in_c, scale=1.0):
        w = torch.randn(out_c, in_c, 3, 3, generator=g) * (scale * (2.0 / (in_c * 9)) ** 0.5)
        return w, torch.randn(out_c, generator=g) * 0.01

    sd: dict[str, torch.Tensor] = {}

    def put(name, wb):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = wb

    put("conv_first", conv(64, 3))
    for i in range(blocks):
        for r in (1, 2, 3):
            for j in range(1, 6):
                put(f"body.{i}.rdb{r}.conv{j}", conv(64 if j == 5 else 32, 64 + 32 * (j - 1), 0.1))
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        put(name, conv(64, 64))
    put("conv_last", conv(3, 64))
    return sd


def _entries(tmp_path: Path, **files) -> Registry:
    """The shipped realesrgan entries with their files in tmp_path (no checksums: random weights)."""
    shipped = json.loads((REPO / "models.json").read_text())["models"]
    models = {}
    for name in ("realesrgan", "realesrgan-x4plus"):
        e = dict(shipped[name])
        e["files"] = [{k: v for k, v in f.items() if k not in ("sha256", "size")} for f in e["files"]]
        models[name] = e
    for rel, obj in files.items():
        p = tmp_path / shipped_path(shipped, rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, p)
    return Registry.from_dict({"models": models}, root=tmp_path)


def shipped_path(shipped, key: str) -> str:
    name, role = {"general": ("realesrgan", "checkpoint"), "wdn": ("realesrgan", "checkpoint_wdn"),
                  "x4plus": ("realesrgan-x4plus", "checkpoint")}[key]
    return next(f["path"] for f in shipped[name]["files"] if f["role"] == role)


def textured(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for k in range(t):
        base = 128 + 60 * np.sin(xx / 3.1 + k) * np.cos(yy / 4.3) + 30 * np.sin((xx + yy) / 1.7)
        img = base[..., None] + rng.normal(0, 12, (h, w, 3)) + np.array([10, -5, 0])
        frames.append(np.clip(img, 0, 255).round().astype(np.uint8))
    return np.stack(frames)


def direct(desc, frames: np.ndarray) -> np.ndarray:
    """spandrel's network called directly on each frame, rounded like the stage."""
    out = []
    with torch.inference_mode():
        for f in frames:
            x = torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0
            y = desc(x)
            out.append(y[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return np.stack(out)


# -- tests -----------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads spin against other processes
    and run these small convolutions ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def general_files():
    return {"general": {"params": compact_state(1)}, "wdn": {"params": compact_state(2)}}


@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_general_x4v3_equals_spandrel_on_the_blended_weights(tmp_path, general_files, strength):
    reg = _entries(tmp_path, **general_files)
    frames = textured(2, 12, 16)
    stage = RealESRGANStage(reg, "realesrgan", device="cpu")
    out = stage.process(Clip(frames, 8.0), {"denoise_strength": strength, "tile": 0})
    a, b = general_files["general"]["params"], general_files["wdn"]["params"]
    blended = {k: strength * a[k] + (1 - strength) * b[k] for k in a}  # upstream's dni
    desc = spandrel.ModelLoader().load_from_state_dict(blended)
    assert desc.architecture.id == "Compact" and desc.scale == 4
    expected = direct(desc, frames)
    assert out.frames.shape == (2, 48, 64, 3) and out.fps == 8.0
    np.testing.assert_array_equal(out.frames, expected)
    if strength == 1.0:  # strength 1 is the general file alone, as spandrel loads it from disk
        from_file = spandrel.ModelLoader().load_from_file(tmp_path / shipped_path(json.loads(
            (REPO / "models.json").read_text())["models"], "general"))
        np.testing.assert_array_equal(out.frames, direct(from_file, frames))


def test_changing_the_strength_reblends_the_resident_network(tmp_path, general_files):
    reg = _entries(tmp_path, **general_files)
    stage = RealESRGANStage(reg, "realesrgan", device="cpu")
    clip = Clip(textured(1, 12, 12), 8.0)
    first = stage.process(clip, {"denoise_strength": 0.0, "tile": 0}).frames
    stage.process(clip, {"denoise_strength": 1.0, "tile": 0})
    again = stage.process(clip, {"denoise_strength": 0.0, "tile": 0}).frames
    np.testing.assert_array_equal(first, again)
    wdn_only = spandrel.ModelLoader().load_from_state_dict(general_files["wdn"]["params"])
    np.testing.assert_array_equal(first, direct(wdn_only, clip.frames))


def test_x4plus_equals_spandrel_loading_the_released_file(tmp_path):
    reg = _entries(tmp_path, x4plus={"params_ema": rrdb_state(3), "params": rrdb_state(4)})
    frames = textured(2, 12, 16, seed=1)
    stage = RealESRGANStage(reg, "realesrgan-x4plus", device="cpu")
    assert [p.name for p in stage.param_specs()] == ["scale", "tile"]  # no blend: one file
    out = stage.process(Clip(frames, 8.0), {"tile": 0})
    path = tmp_path / shipped_path(json.loads((REPO / "models.json").read_text())["models"], "x4plus")
    desc = spandrel.ModelLoader().load_from_file(path)  # prefers params_ema, as upstream
    assert desc.architecture.id == "ESRGAN" and desc.scale == 4
    np.testing.assert_array_equal(out.frames, direct(desc, frames))
    half = stage.process(Clip(frames, 8.0), {"tile": 0, "scale": 2}).frames
    x4 = torch.from_numpy(direct(desc, frames)).float()  # rounded x4; x2 box-averages unrounded values
    assert half.shape == (2, 24, 32, 3)
    box = x4.permute(0, 3, 1, 2).reshape(2, 3, 24, 2, 32, 2).mean((3, 5)).permute(0, 2, 3, 1).numpy()
    assert np.abs(half.astype(float) - box).max() <= 1.0


@pytest.mark.parametrize("key", ["general", "x4plus"])
def test_tiled_equals_untiled_within_one_grey_level(tmp_path, general_files, key):
    files = general_files if key == "general" else {"x4plus": {"params_ema": rrdb_state(5)}}
    reg = _entries(tmp_path, **files)
    name = "realesrgan" if key == "general" else "realesrgan-x4plus"
    stage = RealESRGANStage(reg, name, device="cpu")
    clip = Clip(textured(1, 56, 64, seed=2), 8.0)
    whole = stage.process(clip, {"tile": 0}).frames.astype(int)
    tiled = stage.process(clip, {"tile": 24}).frames.astype(int)  # 3 x 3 tiles, 16 px of context
    assert np.abs(whole - tiled).max() <= 1


def test_tiles_cover_the_frame_exactly():
    calls = []

    def net(x):
        calls.append(tuple(x.shape[-2:]))
        return x.repeat_interleave(2, -2).repeat_interleave(2, -1)

    x = torch.arange(2 * 3 * 37 * 50, dtype=torch.float32).reshape(2, 3, 37, 50)
    y = tiled_upscale(net, x, 2, tile=16, overlap=5)
    assert torch.equal(y, net(x)) and len(calls) == 3 * 4 + 1


def test_missing_or_foreign_weights_are_one_line(tmp_path, general_files):
    reg = _entries(tmp_path)
    with pytest.raises(WeightsMissing) as err:
        RealESRGANStage(reg, "realesrgan", device="cpu").process(Clip(textured(1, 8, 8), 8.0), {})
    assert "core.weights fetch realesrgan" in str(err.value) and "\n" not in str(err.value)
    # x4plus's file holding the compact network: refused, naming the file and both architectures
    reg = _entries(tmp_path, x4plus={"params": compact_state(1)})
    with pytest.raises(CheckpointError) as err:
        load_model(reg, "realesrgan-x4plus")
    assert "RealESRGAN_x4plus.pth" in str(err.value) and "Compact" in str(err.value) and "ESRGAN x4" in str(err.value)


def test_cancel_between_frames(tmp_path, general_files):
    reg = _entries(tmp_path, **general_files)
    stage = RealESRGANStage(reg, "realesrgan", device="cpu")
    prog = Progress(lambda f, m: None)
    prog.cancel()
    with pytest.raises(Cancelled):
        stage.process(Clip(textured(2, 8, 8), 8.0), {}, prog)


def test_shipped_entries_name_the_released_files():
    reg = Registry.load(REPO / "models.json")
    g, p = reg.get("realesrgan"), reg.get("realesrgan-x4plus")
    assert [f.url.rsplit("/", 1)[1] for f in g.files] == ["realesr-general-x4v3.pth", "realesr-general-wdn-x4v3.pth"]
    assert p.file("checkpoint").url.endswith("/v0.1.0/RealESRGAN_x4plus.pth")
    for f in g.files + p.files:
        assert f.sha256 and f.size
    assert g.license == p.license == "BSD-3-Clause" and g.commercial_use == "yes"


def test_spandrel_imports_without_torchvision_and_leaves_it_absent():
    code = ("import importlib.util, sys\n"
            "from core.postprocess.spandrel_import import import_spandrel\n"
            "sp = import_spandrel()\n"
            "from spandrel.architectures.Compact import CompactArch\n"
            "from spandrel.architectures.ESRGAN import ESRGANArch\n"
            "assert 'torchvision' not in sys.modules\n"
            "assert importlib.util.find_spec('torchvision') is None or print('torchvision installed')\n"
            "try:\n    import torchvision\nexcept ImportError:\n    print('absent')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in ("absent", "torchvision installed")


def test_chains_through_the_service_and_model_manager(tmp_path, general_files):
    """realesrgan inside chains (e.g. before a temporal denoiser), its network held by the model
    manager, parameters addressed by the registry name, licences recorded in run.json."""
    from core.service import JobRequest, Studio, StudioSettings

    _entries(tmp_path, **general_files, x4plus={"params_ema": rrdb_state(6)})
    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=REPO / "models.json",
                                   min_free_bytes=0, device="cpu"))
    assert {"realesrgan", "realesrgan-x4plus"} <= {i.name for i in studio.model_infos("upscaler") if i.available}
    photo = textured(1, 80, 120)[0]
    events = list(studio.run_job(JobRequest(
        image=photo, params={"width": 32, "height": 24, "num_frames": 3},
        chains=("none", "realesrgan+nlmeans", "upscale"), roles={"upscale": "realesrgan-x4plus"},
        stage_params={"realesrgan": {"scale": 2, "denoise_strength": 0.7}, "realesrgan-x4plus": {"tile": 16}},
        commercial_only=True)))
    assert events[-1].kind == "done", events[-1].error
    run = studio.open_run(events[-1].run_id)
    stages = {name: c["stages"] for name, c in run.data["chains"].items()}
    assert [s["stage"] for s in stages["realesrgan+nlmeans"]] == ["realesrgan", "nlmeans"]
    assert stages["realesrgan+nlmeans"][0]["output_size"] == [64, 48]
    assert stages["realesrgan+nlmeans"][0]["params"]["denoise_strength"] == 0.7
    assert stages["upscale"][0]["stage"] == "realesrgan-x4plus" and stages["upscale"][0]["output_size"] == [128, 96]
    assert {"realesrgan", "realesrgan-x4plus", "nlmeans"} <= set(run.data["licences"]["models"])
    assert studio.manager.is_resident("realesrgan") and studio.manager.is_resident("realesrgan-x4plus")
    # the resident network was blended for this job
    assert studio.manager.get("realesrgan").denoise == 0.7


def test_cuda_precision_follows_the_entry_options():
    from core.errors import ConfigError
    from core.postprocess.realesrgan import _cuda_dtype

    r = Registry.load(REPO / "models.json")
    e = r.get("realesrgan")
    assert _cuda_dtype(r, e, "auto") == torch.float16  # models.json: fp16 on CUDA
    bf16 = Registry.from_dict({"models": {"x": {**json.loads((REPO / "models.json").read_text())["models"]["realesrgan"],
                                                "options": {"architecture": "Compact", "precision": "bf16"}}}},
                              root=REPO)
    assert _cuda_dtype(bf16, bf16.get("x"), "fp16") == torch.bfloat16
    bad = Registry.from_dict({"models": {"x": {"kind": "upscaler", "variant": "realesrgan",
                                               "options": {"precision": "int8"}}}}, root=REPO)
    with pytest.raises(ConfigError, match="options.precision"):
        _cuda_dtype(bad, bad.get("x"), "auto")
