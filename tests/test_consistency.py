"""Motion-compensated consistency and no-reference quality on synthetic clips with a known answer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core import consistency as C
from core import flow as F
from core import metrics as M
from core.errors import Unavailable

T, H, W = 6, 96, 128
PAN = 3  # pixels per frame
FLICKER = 10.0  # grey levels, alternating sign
SIGMA = 8.0


def _scene(seed: int = 0) -> np.ndarray:
    """A textured mid-grey scene wide enough to pan across (blurred noise: trackable, no clipping)."""
    rng = np.random.default_rng(seed)
    big = rng.normal(0, 1, (H + 8, W + PAN * T + 8, 3)).astype(np.float32)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    big = 128 + big * (45 / big.std())
    return np.clip(big, 20, 235)


def _pan(scene: np.ndarray) -> np.ndarray:
    return np.stack([scene[4 : 4 + H, 4 + PAN * i : 4 + PAN * i + W] for i in range(T)])


def _flicker(frames: np.ndarray) -> np.ndarray:
    amp = np.array([FLICKER if i % 2 else -FLICKER for i in range(len(frames))], np.float32)
    return frames + amp[:, None, None, None]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    scene = _scene()
    pan = _pan(scene)
    static = np.repeat(scene[None, 4 : 4 + H, 4 : 4 + W], T, axis=0)
    rng = np.random.default_rng(7)
    return {
        "a": _u8(pan),
        "b": _u8(_flicker(static)),
        "c": _u8(_flicker(pan)),
        "d": _u8(np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in pan])),
        "e": _u8(pan + rng.normal(0, SIGMA, pan.shape)),
    }


@pytest.fixture(scope="module")
def measured(clips) -> dict[str, dict]:
    return {k: M.measure(v)["native"] for k, v in clips.items()}


def test_motion_compensated_measures_separate_flicker_from_motion(measured):
    a, b, c = measured["a"], measured["b"], measured["c"]
    # the old measure is fooled: the static flickering clip looks steadier than the clean pan
    assert b["tpsnr"]["mean"] > a["tpsnr"]["mean"] + 3
    # after motion compensation the clean pan is the steadiest by every measure
    for other in (b, c):
        assert a["warp_mae"]["mean"] < other["warp_mae"]["mean"] / 3
        assert a["warp_mse"]["mean"] < other["warp_mse"]["mean"] / 5
        assert a["warp_psnr"]["mean"] > other["warp_psnr"]["mean"] + 6
        assert a["warp_ssim"]["mean"] > other["warp_ssim"]["mean"]
        # frames alternate -10 / +10 grey levels: a 20-level step at every pair
        assert a["flicker"]["mean"] < 1.0 < 2 * FLICKER * 0.85 < other["flicker"]["mean"] < 2 * FLICKER * 1.15
    assert a["valid_fraction"]["mean"] > 0.9


def test_sharpness_and_noise(measured):
    for key in ("lap_var", "grad_energy", "sharpness"):
        assert measured["a"][key]["mean"] > 2 * measured["d"][key]["mean"]
    est = measured["e"]["noise_sigma"]["mean"]
    assert abs(est - SIGMA) / SIGMA < 0.15, est
    assert measured["a"]["noise_sigma"]["mean"] < 0.4 * SIGMA  # texture alone reads as a little noise


def test_sharpness_is_normalised_per_resolution():
    rng = np.random.default_rng(5)
    small = _u8(np.stack([cv2.GaussianBlur(rng.normal(128, 60, (320, 512, 3)).astype(np.float32), (0, 0), 1.5)
                          for _ in range(2)]))
    big = np.stack([cv2.resize(f, (2048, 1280), interpolation=cv2.INTER_LANCZOS4) for f in small])
    for fn in (C.laplacian_variance, C.gradient_energy):
        ratio = fn(big).mean() / fn(small).mean()
        assert 0.7 < ratio < 1.3, (fn.__name__, ratio)
    raw = M.sharpness(big).mean() / M.sharpness(small).mean()
    assert raw < 0.2  # what the unnormalised measure says about the same picture


def test_warped_error_equals_plain_remap(clips):
    a, b = clips["c"][1], clips["c"][2]
    fp = F.flow_pair(a, b)
    ours = C.pair_consistency(a, b, fp)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    ref = cv2.remap(b.astype(np.float32), gx + fp.forward[..., 0], gy + fp.forward[..., 1],
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = (ref.astype(np.float64) - a)[fp.valid]
    assert ours.warp_mae == pytest.approx(np.abs(diff).mean(), rel=1e-5)
    assert ours.warp_mse == pytest.approx((diff ** 2).mean(), rel=1e-5)
    grey = diff @ np.array([0.299, 0.587, 0.114])
    assert ours.flicker == pytest.approx(abs(grey.mean()), rel=1e-4, abs=1e-4)
    assert ours.valid_fraction == pytest.approx(fp.valid.mean())


def test_warped_ssim_matches_skimage_on_identical_motion():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    zero = np.zeros((40, 48, 2), np.float32)
    fp = F.FlowPair(zero, zero, np.ones((40, 48), bool))
    ours = C.pair_consistency(a, b, fp)
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=-1)
    assert ours.warp_ssim == pytest.approx(ref, abs=1e-4)
    assert ours.warp_psnr == pytest.approx(skm.peak_signal_noise_ratio(a, b), abs=1e-4)


def test_measure_keeps_old_keys_and_common_block(clips):
    res = M.measure(clips["a"], common_size=(64, 48))
    for block in (res["native"], res["common"]):
        for key in ("tpsnr", "tssim", "tmse", "sharpness", "brightness") + C.PAIR_KEYS + C.FRAME_KEYS:
            assert block[key]["mean"] is not None, key
        assert block["flow_method"] == "dis-fast"
    assert res["common"]["size"] == [64, 48]
    assert "includes camera motion" in res["definitions"]["tpsnr"]
    assert "warp_mae" in res["definitions"]
    assert "warp_mae" not in M.measure(clips["a"], flow=None)["native"]


def test_learned_scorer_hook():
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(Unavailable, match="register_nr_scorer"):
        M.measure(frames, nr_model="nope")
    C.register_nr_scorer("mean-test", lambda f: float(f.mean()) + 1, replace=True)
    assert M.measure(frames, nr_model="mean-test")["native"]["nr_score"]["mean"] == 1.0


def test_raft_registration_needs_weights(tmp_path):
    before = F.estimators()
    assert C.register_raft(tmp_path / "missing.pth") is False
    assert F.estimators() == before  # a missing file registers nothing
    import sys

    fake = tmp_path / "raft-things.pth"
    fake.write_bytes(b"not loaded until asked")
    loaded = "core.models.upscale_a_video.raft" in sys.modules
    try:
        assert C.register_raft(fake) is True
        assert "raft" in F.estimators()
        assert ("core.models.upscale_a_video.raft" in sys.modules) == loaded  # lazy: nothing imported yet
    finally:
        F._ESTIMATORS.pop("raft", None)


def test_large_frames_get_their_flow_on_a_shrunk_copy(clips):
    a, b = clips["a"][1], clips["a"][2]
    fp = C.scaled_flow_pair(a, b, max_pixels=(H // 2) * (W // 2))
    assert fp.forward.shape == (H, W, 2) and fp.valid.shape == (H, W)
    inner = fp.forward[16:-16, 16:-16]
    # the pan is PAN px to the left per frame: a(x) = b(x - PAN), in full-size pixels
    assert np.median(inner[..., 0]) == pytest.approx(-PAN, abs=0.3) and abs(np.median(inner[..., 1])) < 0.3
    assert C.pair_consistency(a, b, fp).warp_mae < 0.3 * C.pair_consistency(
        clips["c"][1], clips["c"][2], fp).warp_mae


def test_table_labels_are_honest(measured):
    res = {k: {"native": v} for k, v in measured.items() if k in "ab"}
    rows = M.summary_table(res, metrics=("tpsnr", "warp_psnr", "flicker"))
    assert rows[0]["label"] == "tPSNR dB (includes camera motion)" and rows[0]["better"] is None
    lines = M.render_markdown(rows).splitlines()
    assert "**" not in lines[2]  # the steadier tPSNR (b, flicker without motion) is not called best
    assert lines[3].split("|")[2].strip().startswith("**")  # warped PSNR: the clean pan (a) is bold
    assert lines[4].split("|")[2].strip().startswith("**")  # flicker: lower is better, a again
