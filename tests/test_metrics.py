"""core.metrics against scikit-image (the reference definitions) and on known clips."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core import metrics as M
from core.clip import Clip
from core.errors import InputError

skm = pytest.importorskip("skimage.metrics")


def _structured(t: int, h: int, w: int, seed: int = 0, noise: float = 8.0) -> np.ndarray:
    """Moving sinusoids plus noise: smooth structure, motion and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for i in range(t):
        base = 128 + 60 * np.sin((xx + 3 * i) / 9.0)[..., None] * np.array([1.0, 0.7, 0.4])
        base = base + 40 * np.cos((yy - 2 * i) / 7.0)[..., None]
        out.append(np.clip(base + rng.normal(0, noise, (h, w, 3)), 0, 255))
    return np.stack(out).astype(np.uint8)


def _random(t: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _ref_tssim(f: np.ndarray) -> np.ndarray:
    return np.array([
        skm.structural_similarity(f[i], f[i + 1], gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=255, channel_axis=-1)
        for i in range(len(f) - 1)
    ])


def _ref_tpsnr(f: np.ndarray) -> np.ndarray:
    return np.array([skm.peak_signal_noise_ratio(f[i], f[i + 1]) for i in range(len(f) - 1)])


def _ref_study_ssim(f: np.ndarray) -> np.ndarray:
    out = []
    for i in range(len(f) - 1):
        a = cv2.cvtColor(f[i], cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(f[i + 1], cv2.COLOR_RGB2GRAY)
        out.append(skm.structural_similarity(a, b, data_range=float(a.max()) - float(a.min())))
    return np.array(out)


SHAPES = [(4, 23, 37), (3, 11, 11), (5, 64, 48), (4, 41, 96)]  # odd, minimal, portrait, landscape


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_temporal_metrics_match_skimage(shape, kind):
    f = _random(*shape) if kind == "random" else _structured(*shape)
    np.testing.assert_allclose(M.temporal_ssim(f), _ref_tssim(f), atol=1e-4, rtol=0)
    np.testing.assert_allclose(M.temporal_psnr(f), _ref_tpsnr(f), atol=1e-4, rtol=0)
    np.testing.assert_allclose(M.study_ssim(f), _ref_study_ssim(f), atol=1e-4, rtol=0)
    mse = np.array([skm.mean_squared_error(f[i], f[i + 1]) for i in range(len(f) - 1)])
    np.testing.assert_allclose(M.temporal_mse(f), mse, rtol=1e-12)


def test_ssim_is_far_tighter_than_the_tolerance_on_a_native_size_clip():
    f = _structured(3, 320, 512, seed=3)
    assert np.abs(M.temporal_ssim(f) - _ref_tssim(f)).max() < 1e-6


def test_measure_blocks_match_skimage_and_are_strict_json():
    f = _structured(5, 40, 72)
    res = M.measure(Clip(f, 8.0), study=True)
    json.dumps(res, allow_nan=False)
    nat = res["native"]
    assert nat["size"] == [72, 40] and res["num_frames"] == 5 and res["fps"] == 8.0
    ref = _ref_tssim(f)
    assert nat["tssim"]["per_pair"] == pytest.approx(list(ref), abs=1e-4)
    assert nat["tssim"]["mean"] == pytest.approx(ref.mean(), abs=1e-4)
    assert nat["tssim"]["std"] == pytest.approx(ref.std(), abs=1e-4)
    assert nat["tpsnr"]["mean"] == pytest.approx(_ref_tpsnr(f).mean(), abs=1e-6)
    assert len(nat["sharpness"]["per_frame"]) == 5 and len(nat["tmse"]["per_pair"]) == 4
    assert res["study"]["tssim"]["mean"] == pytest.approx(_ref_study_ssim(f).mean(), abs=1e-4)
    assert res["study"]["tpsnr"]["per_pair"] == pytest.approx(list(_ref_tpsnr(f)), abs=1e-6)
    assert res["common"] is None and res["fidelity"] is None
    assert set(res["definitions"]) >= {"tpsnr", "tssim", "study", "common", "fidelity"}


def test_common_resolution_block_scores_area_downscaled_frames():
    small = _structured(4, 32, 48, seed=5)
    big = np.stack([cv2.resize(fr, (192, 128), interpolation=cv2.INTER_LANCZOS4) for fr in small])
    res = M.measure(big, common_size=(48, 32))
    down = np.stack([cv2.resize(fr, (48, 32), interpolation=cv2.INTER_AREA) for fr in big])
    assert res["common"]["size"] == [48, 32] and res["native"]["size"] == [192, 128]
    assert res["common"]["tssim"]["per_pair"] == pytest.approx(list(_ref_tssim(down)), abs=1e-4)
    assert res["common"]["tpsnr"]["per_pair"] == pytest.approx(list(_ref_tpsnr(down)), abs=1e-6)
    # The point of the common grid: the x4 clip scores differently at its own size.
    assert abs(res["native"]["tssim"]["mean"] - res["common"]["tssim"]["mean"]) > 1e-3


def test_fidelity_against_resized_reference():
    f = _structured(3, 40, 64, seed=7)
    photo = cv2.resize(f[0], (128, 80), interpolation=cv2.INTER_CUBIC)  # a larger "input photo"
    res = M.measure(f, reference_image=photo, common_size=(32, 20))
    ref_small = cv2.resize(photo, (64, 40), interpolation=cv2.INTER_AREA)
    fid = res["fidelity"]["native"]
    assert fid["psnr"] == pytest.approx(skm.peak_signal_noise_ratio(ref_small, f[0]), abs=1e-6)
    assert fid["ssim"] == pytest.approx(
        skm.structural_similarity(f[0], ref_small, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=255, channel_axis=-1), abs=1e-4)
    assert res["fidelity"]["common"]["psnr"] > 0
    same = M.fidelity(f[0], f[0])
    assert same == {"psnr": M.PSNR_CAP_DB, "ssim": pytest.approx(1.0, abs=1e-6)}


def test_identical_frames_cap_psnr_and_give_ssim_one():
    f = np.repeat(_structured(1, 24, 30), 4, axis=0)
    res = M.measure(f, study=True)
    text = json.dumps(res, allow_nan=False)
    assert res["native"]["tpsnr"]["per_pair"] == [100.0, 100.0, 100.0]
    assert res["native"]["tpsnr"]["std"] == 0.0
    assert res["native"]["tmse"]["mean"] == 0.0
    assert res["native"]["tssim"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert res["study"]["tpsnr"]["mean"] == 100.0
    assert "Infinity" not in text and "NaN" not in text


def test_psnr_cap_only_applies_above_100_db():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 1  # MSE 1/48 -> 64.6 dB, well under the cap
    assert M.psnr_from_mse(M.mse_pairs(a, b))[0] == pytest.approx(10 * np.log10(255**2 * 48))


def test_study_ssim_flat_first_frame_is_null_and_skipped():
    f = _structured(3, 20, 20)
    f[0] = 90  # flat grey first frame: data range 0 -> undefined in the study's formula
    res = M.measure(f, study=True)
    per = res["study"]["tssim"]["per_pair"]
    assert per[0] is None and per[1] is not None
    assert res["study"]["tssim"]["mean"] == pytest.approx(per[1])
    json.dumps(res, allow_nan=False)


def test_sharpness_and_brightness_respond_to_content():
    f = _structured(2, 48, 64, noise=20)
    blurred = np.stack([cv2.GaussianBlur(x, (7, 7), 2.0) for x in f])
    assert (M.sharpness(blurred) < 0.5 * M.sharpness(f)).all()
    flat = np.full((2, 16, 16, 3), 77, np.uint8)
    assert M.brightness(flat).tolist() == [77.0, 77.0]
    assert M.sharpness(flat).tolist() == [0.0, 0.0]
    grey = cv2.cvtColor(f[0], cv2.COLOR_RGB2GRAY)
    assert M.sharpness(f)[0] == pytest.approx(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_single_frame_and_tiny_frames():
    one = M.measure(_structured(1, 16, 16))
    assert one["native"]["tpsnr"] == {"per_pair": [], "mean": None, "std": None}
    assert len(one["native"]["brightness"]["per_frame"]) == 1
    with pytest.raises(InputError, match="at least 11x11"):
        M.temporal_ssim(_random(2, 10, 30))
    with pytest.raises(InputError):
        M.measure(np.zeros((2, 16, 16, 3), np.float32))


def test_summary_table_format_and_markdown():
    a = M.measure(_structured(4, 24, 32, seed=1), study=True)
    b = M.measure(_structured(4, 24, 32, seed=2, noise=2), study=True)
    rows = M.summary_table({"none": [a, b], "denoise": b}, variant="study")
    assert [r["label"] for r in rows] == ["PSNR (↑)", "SSIM (↑)"]
    psnr = rows[0]["cells"]
    means = [a["study"]["tpsnr"]["mean"], b["study"]["tpsnr"]["mean"]]
    assert psnr["none"]["mean"] == pytest.approx(np.mean(means))
    assert psnr["none"]["std"] == pytest.approx(np.std(means))
    assert psnr["none"]["n"] == 2
    assert psnr["denoise"]["text"] == f"{b['study']['tpsnr']['mean']:.3f} (±{b['study']['tpsnr']['std']:.3f})"
    md = M.render_markdown(rows, {"none": "CamI2V", "denoise": "CamI2V + Denoising"})
    lines = md.strip().splitlines()
    assert lines[0] == "| | CamI2V | CamI2V + Denoising |"
    assert lines[2].startswith("| PSNR (↑) | ") and lines[2].count("(±") == 2
    # Less noise -> steadier frames: the denoise column is the best and is bold.
    assert "| **" in lines[2] and lines[2].rstrip(" |").endswith("**")
    with pytest.raises(InputError, match="common"):
        M.summary_table({"none": a}, variant="common")
