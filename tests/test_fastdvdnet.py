"""FastDVDnet: network + key map against the golden fixture, the cached sequence procedure against
the plain one, the strict loader, the noise estimator and the post-processing stage."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.clip import Clip
from core.errors import Cancelled, CheckpointError, ConfigError, InputError, WeightsMissing
from core.models.fastdvdnet import (
    PRESETS,
    FastDVDnet,
    checkpoint_key_map,
    count_block_evaluations,
    denoise_sequence,
    denoise_sequence_reference,
    iter_denoise_sequence,
    mirror_index,
    optimize_for_inference,
    window_indices,
)
from core.models.fastdvdnet.loader import inspect_entries, load_fastdvdnet, load_state, read_checkpoint, verify_file
from core.params import resolve_params
from core.postprocess.fastdvdnet import FastDVDnetStage, estimate_noise_sigma, load_model
from core.progress import Progress
from core.registry import Registry

SIGMA = 25 / 255


# -- helpers ---------------------------------------------------------------------------------

def _randomised(params=PRESETS["tiny"], seed: int = 0) -> FastDVDnet:
    """A network with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = FastDVDnet(params)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.05, 0.05)
                m.running_mean.uniform_(-0.05, 0.05)
                m.running_var.uniform_(0.8, 1.5)
        # keep the predicted noise small so outputs stay mostly off the clamp
        for blk in (model.stage1, model.stage2):
            blk.output.project.weight.mul_(0.05)
    return model.eval().requires_grad_(False)


def _release_layout(model: FastDVDnet, prefix: str = "module.") -> dict[str, torch.Tensor]:
    kmap = checkpoint_key_map()
    return {prefix + kmap[k]: v.clone() for k, v in model.state_dict().items()}


def _noisy_clip(t: int, h: int, w: int, sigma255: float = 0.0, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: smooth moving content, values in about [40, 215], plus AWGN."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for i in range(t):
        img = np.empty((h, w, 3))
        for c in range(3):
            img[..., c] = 60 + 90 * (xx / w) * (c + 1) / 3 + 40 * (yy / h) + 8 * np.sin(xx / 7 + 0.3 * i + c)
        disc = (yy - h * 0.3 - 2 * i) ** 2 + (xx - w * 0.3 - 3 * i) ** 2 < (min(h, w) * 0.15) ** 2
        img[disc] = (200, 80, 60)
        frames.append(img)
    x = np.stack(frames)
    if sigma255:
        x = x + np.random.default_rng(seed).standard_normal(x.shape) * sigma255
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _thwc_to_tchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def fixture_dir(golden_dir: Path) -> Path:
    d = golden_dir / "fastdvdnet"
    if not d.exists():
        pytest.skip(f"FastDVDnet golden fixture not found at {d}")
    return d


@pytest.fixture(scope="module")
def golden_model(fixture_dir: Path) -> FastDVDnet:
    return load_fastdvdnet(fixture_dir / "synthetic_weights_module_prefixed.pth")


# -- key map and golden ----------------------------------------------------------------------

def test_key_map_covers_release_layout(fixture_dir: Path):
    meta = json.loads((fixture_dir / "fixture_meta.json").read_text())
    release = {k: tuple(s) for k, s in meta["state_keys"]}
    kmap = checkpoint_key_map()
    assert len(kmap) == len(release) == 162
    own = FastDVDnet().state_dict()
    assert set(own) == set(kmap)
    for ours, up in kmap.items():
        assert release["module." + up] == tuple(own[ours].shape), ours
    # `python -m core.models inspect fastdvdnet` lists the released keys in the released order
    assert [(k, s) for k, s, _ in inspect_entries("fastdvdnet")] == [(k, tuple(s)) for k, s in meta["state_keys"]]
    # the fixture counts every state-dict value except the BatchNorm counters
    n_values = sum(v.numel() for k, v in own.items() if not k.endswith("num_batches_tracked"))
    assert n_values == meta["n_params_excl_counters"] == 2_483_552


@pytest.mark.parametrize("case", ["main", "crop"])
def test_golden_output(fixture_dir: Path, golden_model: FastDVDnet, case: str):
    noisy = np.load(fixture_dir / "noisy_f32_THWC.npy")
    if case == "main":
        expected = np.load(fixture_dir / "denoised_f32_THWC.npy")
    else:  # pads 2 rows and 3 columns to reach a multiple of 4
        noisy = noisy[:, :94, :157]
        expected = np.load(fixture_dir / "denoised_crop94x157_f32_THWC.npy")
    got = denoise_sequence(golden_model, _thwc_to_tchw(noisy), SIGMA).permute(0, 2, 3, 1).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_golden_output_optimised_network(fixture_dir: Path):
    model = load_fastdvdnet(fixture_dir / "synthetic_weights_module_prefixed.pth", optimize=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    noisy = np.load(fixture_dir / "noisy_f32_THWC.npy")[:, :94, :157]
    expected = np.load(fixture_dir / "denoised_crop94x157_f32_THWC.npy")
    got = denoise_sequence(model, _thwc_to_tchw(noisy), SIGMA, batch_size=3).permute(0, 2, 3, 1).numpy()
    assert np.abs(got - expected).max() < 1e-5


def test_golden_sigma_matters(fixture_dir: Path, golden_model: FastDVDnet):
    """Guards the units: sigma 25 must be passed as 25/255 (the fixture differs hugely otherwise)."""
    noisy = _thwc_to_tchw(np.load(fixture_dir / "noisy_f32_THWC.npy")[:3, :32, :48])
    a = denoise_sequence(golden_model, noisy, SIGMA)
    b = denoise_sequence(golden_model, noisy, 25.0)
    assert (a - b).abs().max() > 0.05


# -- window procedure ------------------------------------------------------------------------

def test_window_indices_mirror_without_repeating_the_edge():
    n = 7
    assert window_indices(0, n) == (2, 1, 0, 1, 2)
    assert window_indices(1, n) == (1, 0, 1, 2, 3)
    assert window_indices(3, n) == (1, 2, 3, 4, 5)
    assert window_indices(5, n) == (3, 4, 5, 6, 5)
    assert window_indices(6, n) == (4, 5, 6, 5, 4)
    assert window_indices(0, 2) == (0, 1, 0, 1, 0)
    assert window_indices(1, 2) == (1, 0, 1, 0, 1)
    assert window_indices(0, 1) == (0, 0, 0, 0, 0)
    assert [mirror_index(i, 3) for i in range(-4, 7)] == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9])
def test_cached_procedure_equals_plain_per_window(n: int):
    model = _randomised(seed=n)
    frames = torch.rand(n, 3, 22, 37) * 1.1 - 0.05  # odd size, values a little outside [0, 1]
    plain = denoise_sequence_reference(model, frames, 0.1)
    # batch 1 runs the identical kernels, so the result is bit-identical
    assert torch.equal(denoise_sequence(model, frames, 0.1, batch_size=1), plain)
    for bs in (2, 3, 8):
        assert (denoise_sequence(model, frames, 0.1, batch_size=bs) - plain).abs().max() <= 1e-6


def test_cached_procedure_equals_plain_with_optimised_network():
    model = optimize_for_inference(_randomised(seed=3))
    frames = torch.rand(6, 3, 20, 28)
    plain = denoise_sequence_reference(model, frames, 0.2)
    assert torch.equal(denoise_sequence(model, frames, 0.2, batch_size=1), plain)


def test_uint8_input_matches_float_input():
    model = _randomised(seed=4)
    u8 = torch.from_numpy(_noisy_clip(4, 12, 17, 10.0)).permute(0, 3, 1, 2)
    a = denoise_sequence(model, u8, 0.1, batch_size=2)
    b = denoise_sequence(model, u8.float() / 255.0, 0.1, batch_size=2)
    assert torch.equal(a, b)


@pytest.mark.parametrize("n, batch", [(16, 1), (16, 4), (7, 3), (2, 1), (1, 1)])
def test_each_triplet_is_computed_once(n: int, batch: int):
    model = _randomised()
    seen = {"stage1": 0, "stage2": 0}

    def counter(name):
        def hook(_module, args):
            seen[name] += args[0].shape[0]
        return hook

    model.stage1.register_forward_pre_hook(counter("stage1"))
    model.stage2.register_forward_pre_hook(counter("stage2"))
    list(iter_denoise_sequence(model, torch.rand(n, 3, 8, 8), 0.1, batch_size=batch))
    plain, cached = count_block_evaluations(n)
    assert seen["stage1"] + seen["stage2"] == cached
    assert seen["stage2"] == n
    assert plain == 4 * n
    if n >= 3:
        assert seen["stage1"] == n + 2  # one triplet per window centre, plus the two mirrored end ones


def test_iteration_does_not_leak_inference_mode():
    model = _randomised()
    for _t, y in iter_denoise_sequence(model, torch.rand(3, 3, 8, 8), 0.1):
        assert not torch.is_inference_mode_enabled()
        assert y.shape == (3, 8, 8) and 0.0 <= y.min() and y.max() <= 1.0


# -- loader ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["module.", ""])
def test_loader_accepts_prefixed_and_bare_keys(tmp_path: Path, prefix: str):
    src = _randomised(PRESETS["fastdvdnet"], seed=1)
    path = tmp_path / "w.pth"
    torch.save(_release_layout(src, prefix), path)
    model = load_fastdvdnet(path)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_loader_tolerates_missing_batch_counters(tmp_path: Path):
    src = _randomised(PRESETS["tiny"], seed=2)
    state = {k: v for k, v in _release_layout(src).items() if not k.endswith("num_batches_tracked")}
    assert len(state) == 162 - 26  # 13 BatchNorms per block
    model = FastDVDnet(PRESETS["tiny"])
    load_state(model, state)
    model.eval()
    x = torch.rand(5, 3, 8, 12)
    assert torch.equal(denoise_sequence(model, x, 0.1), denoise_sequence(src, x, 0.1))


def test_loader_lists_missing_keys(tmp_path: Path):
    state = _release_layout(_randomised(PRESETS["fastdvdnet"]))
    del state["module.temp2.upc1.convblock.1.weight"]
    del state["module.temp1.inc.convblock.4.running_var"]
    with pytest.raises(CheckpointError) as err:
        load_state(FastDVDnet(), state, source="w.pth")
    msg = str(err.value)
    assert "missing 2 key(s)" in msg
    assert "temp2.upc1.convblock.1.weight" in msg and "temp1.inc.convblock.4.running_var" in msg
    assert "unexpected" not in msg and "\n" not in msg


def test_loader_lists_unexpected_keys(tmp_path: Path):
    state = _release_layout(_randomised(PRESETS["fastdvdnet"]))
    state["module.temp3.inc.convblock.0.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"unexpected 1 key\(s\): temp3\.inc\.convblock\.0\.weight"):
        load_fastdvdnet(path)


def test_loader_rejects_wrong_shapes():
    state = _release_layout(_randomised(PRESETS["tiny"]))
    with pytest.raises(CheckpointError, match="has shape"):
        load_state(FastDVDnet(PRESETS["fastdvdnet"]), state)


def test_loader_reports_truncated_and_corrupt_files(tmp_path: Path):
    full = tmp_path / "full.pth"
    torch.save(_release_layout(_randomised(PRESETS["tiny"])), full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        read_checkpoint(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_fastdvdnet(junk)
    not_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_dict)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_fastdvdnet(not_dict)


# -- noise estimate --------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [10, 20, 30, 40, 50])
def test_noise_estimate_recovers_awgn_sigma(sigma: float):
    clip = _noisy_clip(6, 96, 160, sigma, seed=sigma)
    est = estimate_noise_sigma(clip)
    assert abs(est - sigma) <= 0.05 * sigma, est


def test_noise_estimate_of_clean_clip_is_small():
    assert estimate_noise_sigma(_noisy_clip(4, 64, 96, 0.0)) < 1.0
    assert estimate_noise_sigma(np.zeros((1, 1, 1, 3), np.uint8)) == 0.0


# -- stage -----------------------------------------------------------------------------------

@pytest.fixture()
def tiny_registry(tmp_path: Path) -> tuple[Registry, FastDVDnet]:
    model = _randomised(PRESETS["tiny"], seed=7)
    (tmp_path / "ckpts").mkdir()
    torch.save(_release_layout(model), tmp_path / "ckpts" / "model.pth")
    reg = Registry.from_dict({"models": {"fastdvdnet": {
        "kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
        "options": {"preset": "tiny"},
        "files": [{"role": "checkpoint", "path": "ckpts/model.pth",
                   "url": "https://raw.githubusercontent.com/m-tassano/fastdvdnet/master/model.pth"}],
    }}}, root=tmp_path)
    return reg, model


def _expected_u8(model: FastDVDnet, frames: np.ndarray, sigma255: float) -> np.ndarray:
    ref = denoise_sequence_reference(model, _thwc_to_tchw(frames), sigma255 / 255.0)
    return (ref * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("t, h, w", [(1, 13, 22), (2, 9, 7), (5, 17, 30), (3, 1, 1)])
def test_stage_any_length_and_size(tiny_registry, t: int, h: int, w: int):
    reg, model = tiny_registry
    stage = FastDVDnetStage(reg)
    frames = _noisy_clip(t, h, w, 15.0)
    frames.flags.writeable = False  # e.g. a decoded video held read-only
    before = frames.copy()
    out = stage.process(Clip(frames, fps=8.0), {"sigma": 15}, Progress())
    assert out.frames.shape == frames.shape and out.frames.dtype == np.uint8 and out.fps == 8.0
    np.testing.assert_array_equal(frames, before)  # input untouched
    # the stage's optimised network may differ from the plain one by float rounding
    diff = np.abs(out.frames.astype(int) - _expected_u8(model, frames, 15.0).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_stage_reports_each_frame_and_never_draws_random_numbers(tiny_registry):
    reg, _ = tiny_registry
    stage = FastDVDnetStage(reg)
    clip = Clip(_noisy_clip(4, 16, 24, 20.0), fps=10.0)
    seen: list[tuple[float, str]] = []
    torch_rng, np_rng = torch.get_rng_state(), np.random.get_state()
    a = stage.process(clip, {"sigma": 20}, Progress(lambda f, m: seen.append((f, m))))
    b = stage.process(clip, {"sigma": 20}, Progress())
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert np.random.get_state()[1].tolist() == np_rng[1].tolist()
    np.testing.assert_array_equal(a.frames, b.frames)
    assert [f for f, _ in seen] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert seen[-1][1] == "FastDVDnet: frame 4/4"
    # the network is loaded once and kept
    assert stage.network() is stage.network()


def test_stage_cancels_between_frames(tiny_registry):
    reg, _ = tiny_registry
    stage = FastDVDnetStage(reg)
    cancel = threading.Event()
    frames_done = []

    def on_progress(frac: float, msg: str) -> None:
        if msg.startswith("FastDVDnet: frame"):
            frames_done.append(frac)
            cancel.set()

    with pytest.raises(Cancelled):
        stage.process(Clip(_noisy_clip(6, 8, 8), fps=10.0), {}, Progress(on_progress, cancel))
    assert len(frames_done) == 1


def test_stage_params_and_sigma_resolution(tiny_registry):
    reg, _ = tiny_registry
    stage = FastDVDnetStage(reg)
    assert (stage.name, stage.role) == ("fastdvdnet", "denoise")
    specs = {s.name: s for s in stage.param_specs()}
    assert (specs["sigma"].default, specs["sigma"].minimum, specs["sigma"].maximum) == (25.0, 5, 55)
    assert "no noise is added" in specs["sigma"].help
    assert set(specs) == {"sigma", "auto_sigma"}
    with pytest.raises(InputError):
        resolve_params(stage.param_specs(), {"sigma": 60})
    noisy = Clip(_noisy_clip(4, 64, 96, 30.0), fps=10.0)
    sigma, note = stage.resolve_sigma(noisy, {"auto_sigma": True, "sigma": 10})
    assert abs(sigma - 30.0) < 2.0 and "estimated" in note
    clean = Clip(_noisy_clip(4, 64, 96, 0.0), fps=10.0)
    sigma, note = stage.resolve_sigma(clean, {"auto_sigma": True})
    assert sigma == 5.0 and "trained range" in note
    assert stage.resolve_sigma(clean, {"sigma": 12})[0] == 12.0


def test_stage_uses_a_provided_network(tiny_registry):
    """The service's path: the model manager owns the network and hands it over on each call."""
    reg, model = tiny_registry
    calls = []
    provided = optimize_for_inference(_randomised(PRESETS["tiny"], seed=7))

    def get():
        calls.append(1)
        return provided

    stage = FastDVDnetStage.from_entry(reg.get("fastdvdnet"), load_model=get)
    frames = _noisy_clip(3, 12, 20, 10.0)
    out = stage.process(Clip(frames, fps=10.0), {"sigma": 10}, Progress())
    assert calls == [1]
    standalone = FastDVDnetStage(reg).process(Clip(frames, fps=10.0), {"sigma": 10}, Progress())
    np.testing.assert_array_equal(out.frames, standalone.frames)


def test_load_model_dtype_and_options(tiny_registry, tmp_path: Path):
    reg, _ = tiny_registry
    m = load_model(reg, "fastdvdnet", device="cpu", dtype="fp16")
    assert next(m.parameters()).dtype == torch.float32  # half precision only on CUDA
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # inference-optimised
    raw = {"kind": "denoiser", "variant": "fastdvdnet", "files": [{"role": "checkpoint", "path": "ckpts/model.pth"}]}
    bad = Registry.from_dict({"models": {"fastdvdnet": {**raw, "options": {"preset": "huge"}}}}, root=reg.root)
    with pytest.raises(ConfigError, match="options.preset"):
        load_model(bad, "fastdvdnet")
    bad = Registry.from_dict({"models": {"fastdvdnet": {**raw, "options": {"preset": "tiny", "batch_size": -2}}}},
                             root=reg.root)
    with pytest.raises(ConfigError, match="options.batch_size"):
        FastDVDnetStage(bad).process(Clip(_noisy_clip(1, 8, 8), fps=10.0), {}, Progress())
    batched = Registry.from_dict({"models": {"fastdvdnet": {**raw, "options": {"preset": "tiny", "batch_size": 3}}}},
                                 root=reg.root)
    clip = Clip(_noisy_clip(5, 8, 12, 10.0), fps=10.0)
    a = FastDVDnetStage(batched).process(clip, {}, Progress())
    b = FastDVDnetStage(reg).process(clip, {}, Progress())
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1


def test_verify_file_reports_layout_and_identity(tmp_path: Path):
    good = tmp_path / "good.pth"
    torch.save(_release_layout(_randomised(PRESETS["fastdvdnet"])), good)
    v = verify_file("fastdvdnet", good)
    assert v.ok and v.kind == "full" and "not a released file" in v.identified
    wrong = tmp_path / "tiny.pth"
    torch.save(_release_layout(_randomised(PRESETS["tiny"])), wrong)
    v = verify_file("fastdvdnet", wrong)
    assert not v.ok and v.kind == "mismatch" and len(v.wrong_shape) == 162 - 26
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:1000])
    v = verify_file("fastdvdnet", cut)
    assert not v.ok and v.kind == "unreadable" and "truncated" in v.message


def test_stage_missing_weights_names_fetch_command(tmp_path: Path):
    reg = Registry.from_dict({"models": {"fastdvdnet": {
        "kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
        "files": [{"role": "checkpoint", "path": "ckpts/fastdvdnet/model.pth",
                   "url": "https://raw.githubusercontent.com/m-tassano/fastdvdnet/master/model.pth"}],
    }}}, root=tmp_path)
    with pytest.raises(WeightsMissing) as err:
        FastDVDnetStage(reg).process(Clip(_noisy_clip(2, 8, 8), fps=10.0), {}, Progress())
    msg = str(err.value)
    assert "model.pth" in msg and "python -m core.weights fetch fastdvdnet" in msg
    assert str(tmp_path / "ckpts" / "fastdvdnet" / "model.pth") in msg


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_network_path(dtype: torch.dtype):
    """The dtype plumbing of the fast path (noise map, padding, clamp, float32 output), run on the
    CPU with the tiny preset; the GPU run of the real sizes is the CUDA test below."""
    model = _randomised(seed=5)
    half = optimize_for_inference(_randomised(seed=5)).to(dtype)
    frames = torch.from_numpy(_noisy_clip(4, 10, 14, 20.0)).permute(0, 3, 1, 2)
    ref = denoise_sequence(model, frames, 20 / 255)
    got = denoise_sequence(half, frames, 20 / 255, batch_size=2)
    assert got.dtype == torch.float32
    assert (got - ref).abs().max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda(fixture_dir: Path, precision: str):
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    noisy = np.load(fixture_dir / "noisy_f32_THWC.npy")
    expected = np.load(fixture_dir / "denoised_f32_THWC.npy")
    model = load_fastdvdnet(fixture_dir / "synthetic_weights_module_prefixed.pth", device="cuda", dtype=dtype,
                            optimize=True)
    got = denoise_sequence(model, _thwc_to_tchw(noisy), SIGMA).permute(0, 2, 3, 1).numpy()
    err = np.abs(got - expected)
    assert err.mean() < (2e-3 if precision == "fp16" else 1e-2) and err.max() < 0.1


def test_stage_network_is_held_by_the_model_manager(tiny_registry):
    """One loading path: a registry stage registers its loader with a model manager (its own or
    a shared one), which loads the network once and can release it."""
    from core.manager import ModelManager

    reg, _ = tiny_registry
    manager = ModelManager("cpu", budget_bytes=1 << 30)
    stage = FastDVDnetStage(reg, manager=manager)
    assert not manager.is_resident("fastdvdnet")
    net = stage.network()
    assert manager.is_resident("fastdvdnet") and manager.get("fastdvdnet") is net
    assert FastDVDnetStage(reg, manager=manager).network() is net  # a second stage shares it
    assert manager.unload("fastdvdnet") and stage.network() is not net and manager.stats.loads["fastdvdnet"] == 2
