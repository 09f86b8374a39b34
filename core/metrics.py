"""Temporal-consistency, fidelity and frame statistics for clips.

Every number the dashboard shows is defined here; the UI displays these docstrings.

Temporal metrics compare **consecutive frames of one clip** (pair i = frame i vs frame i+1).
They measure steadiness, not quality: blur and magnification raise them and camera motion lowers
them (labelled "includes camera motion"). There is no ground truth involved. The
motion-compensated measures (warped error/PSNR/SSIM, flicker) and the no-reference sharpness and
noise measures are defined in `core.consistency` and added to every block of `measure()`.

Definitions (short names in brackets are the keys used in `measure()` output):

* ``tpsnr`` temporal PSNR: for each consecutive pair, PSNR on the RGB uint8 frames with peak 255,
  ``10 log10(255^2 / MSE)``, MSE over all pixels and the three channels. Identical frames have
  MSE 0 (infinite PSNR); every value is **capped at 100 dB** (`PSNR_CAP_DB`) so results stay
  finite and JSON-valid. Uncapped values above 100 dB need MSE < 6.5e-6, i.e. frames that differ
  in at most a handful of pixel steps, so the cap only hides "practically identical".
* ``tssim`` temporal SSIM: for each pair, SSIM with an 11-tap Gaussian window (sigma 1.5,
  truncated at 3.5 sigma), K1 0.01, K2 0.03, data range 255, population covariance, computed per
  RGB channel and averaged; the mean is over the region where the window lies fully inside the
  image (5-pixel border excluded). Equals ``skimage.metrics.structural_similarity(a, b,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``
  to float32 accuracy (< 1e-5). Frames must be at least 11x11.
* ``tmse`` temporal MSE: the MSE of the pair on the 0-255 scale (RGB, all channels).
* ``sharpness``: per frame, variance of the 3x3 Laplacian (OpenCV ``Laplacian``, ksize 1,
  reflect-101 border) of the grey frame (OpenCV RGB2GRAY, BT.601 weights, uint8), 0-255 scale.
* ``brightness``: per frame, mean of the grey frame (same conversion), 0-255 scale.
* ``fidelity`` (``psnr``, ``ssim``): frame 0 against the input photo resized to the frame size
  (INTER_AREA when shrinking, INTER_CUBIC when enlarging); same PSNR (capped) and SSIM
  definitions as ``tpsnr`` / ``tssim``. Pass the exact image the generator was conditioned on
  (after any crop) for a meaningful score; only the size is adapted here.
* Common resolution (``common``): the same temporal metrics after every frame is resized with
  ``cv2.INTER_AREA`` to a given native size, e.g. the generator's 512x320. This lets chains with
  and without x4 upscaling be compared on one pixel grid.
* Study mode (``study``): reproduces the UvA CV2 2025 post-processing study's script. ``tpsnr``
  is identical to ours (skimage PSNR on RGB uint8, peak 255; capped as above where skimage
  would return inf). ``tssim`` is skimage's default SSIM on grey frames (OpenCV RGB2GRAY,
  uint8): 7x7 uniform window, sample covariance (N/(N-1), N=49), K1 0.01, K2 0.03, 3-pixel
  border excluded, and ``data_range = max - min`` of the grey **first** frame of the pair (not
  255). A flat first frame (range 0) makes that SSIM undefined; it is stored as null and left
  out of mean/std. Per video the study reported the mean over pairs; study scores are at the
  clip's own resolution (no alignment), which is why they reward upscaling.

Summaries: every series is ``{"per_pair" | "per_frame": [...], "mean": m, "std": s}`` with the
population standard deviation (ddof 0); mean/std are null when there are no values (one-frame
clip).

Speed: each frame's windowed statistics are filtered once (OpenCV separable filters, float32,
on uint8 data centred at 128) and shared by the two pairs it belongs to; all pairs of a clip are
scored in one streaming pass with buffers reused across pairs, so memory stays at a few frames
even for 2048x1280 clips. About 10x faster than scikit-image at 512x320 (bench/metrics.py).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from .clip import Clip
from .errors import InputError

PSNR_CAP_DB = 100.0
GAUSS_SIGMA = 1.5
GAUSS_TRUNCATE = 3.5
K1 = 0.01
K2 = 0.03
STUDY_WINDOW = 7

DEFINITIONS: dict[str, str] = {
    "tpsnr": "temporal PSNR (includes camera motion): consecutive frames, RGB uint8, peak 255, capped at 100 dB",
    "tssim": "temporal SSIM (includes camera motion): consecutive frames, RGB mean, Gaussian 11/1.5, "
             "K 0.01/0.03, range 255",
    "tmse": "temporal MSE (includes camera motion): consecutive frames, RGB, 0-255 scale",
    "sharpness": "variance of the 3x3 Laplacian of the grey frame (0-255 scale)",
    "brightness": "mean of the grey frame (BT.601, 0-255)",
    "fidelity": "frame 0 vs the input photo resized to the frame size: PSNR (capped) and SSIM as above",
    "common": "temporal metrics after INTER_AREA resize of every frame to the common size",
    "study": "UvA study: tPSNR RGB peak 255; tSSIM grey, 7x7 uniform, sample cov., range of 1st frame",
}
# the motion-compensated and no-reference measures (core.consistency; no heavy imports there)
from .consistency import DEFINITIONS as _CONSISTENCY_DEFINITIONS  # noqa: E402

DEFINITIONS.update(_CONSISTENCY_DEFINITIONS)


# --------------------------------------------------------------------------- small helpers


def _frames_of(clip: Clip | np.ndarray) -> np.ndarray:
    frames = clip.frames if isinstance(clip, Clip) else np.asarray(clip)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"Expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}.")
    return frames


def _summary(values: Iterable[float | None], key: str) -> dict[str, Any]:
    vals = [None if v is None or not math.isfinite(v) else float(v) for v in values]
    finite = np.array([v for v in vals if v is not None], dtype=np.float64)
    return {
        key: vals,
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
    }


def to_grey(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 grey, OpenCV RGB2GRAY (BT.601, rounded)."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def resize_frames(frames: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize (T, H, W, C) uint8 frames to size = (width, height); returns the input unchanged
    when it already has that size."""
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise InputError(f"Resize target must be positive, got {w}x{h}.")
    if frames.shape[2] == w and frames.shape[1] == h:
        return frames
    return np.stack([cv2.resize(f, (w, h), interpolation=interpolation) for f in frames])


# --------------------------------------------------------------------------- PSNR / MSE


def mse_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-item MSE of two (N, H, W[, C]) uint8 stacks on the 0-255 scale -> (N,) float64.

    OpenCV's L2SQR norm sums squared integer differences exactly (well below 2^53), so the
    value is exact up to the final division.
    """
    if a.shape != b.shape:
        raise InputError(f"MSE needs equal shapes, got {a.shape} and {b.shape}.")
    n = a.shape[0]
    size = a[0].size if n else 1
    return np.array(
        [cv2.norm(np.ascontiguousarray(a[i]), np.ascontiguousarray(b[i]), cv2.NORM_L2SQR) / size for i in range(n)],
        dtype=np.float64,
    )


def psnr_from_mse(mse: np.ndarray | float, peak: float = 255.0) -> np.ndarray:
    """PSNR in dB, capped at `PSNR_CAP_DB` (MSE 0 -> the cap)."""
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(peak * peak / mse)
    return np.minimum(psnr, PSNR_CAP_DB)


# --------------------------------------------------------------------------- SSIM core


def gaussian_taps(sigma: float = GAUSS_SIGMA, truncate: float = GAUSS_TRUNCATE) -> np.ndarray:
    """Normalised 1-D Gaussian taps with radius int(truncate * sigma + 0.5) (11 taps for 1.5)."""
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


# uint8 data is centred on this value before filtering: variances and covariances do not change,
# and the float32 cancellation in E[x^2] - E[x]^2 shrinks with the magnitude of x.
_CENTRE = np.float32(128.0)


class _FrameStats:
    """Windowed statistics of one centred frame, cropped to the valid region.

    Every image enters the pair loop once, so a frame shared by pairs (i-1, i) and (i, i+1)
    is filtered only once.
    """

    def __init__(self, shape: tuple[int, ...], r: int):
        h, w = shape[:2]
        inner = (h - 2 * r, w - 2 * r) + tuple(shape[2:])
        self.x = np.empty(shape, np.float32)  # frame - centre, full size
        self.mu = np.empty(inner, np.float32)  # local mean - centre
        self.var = np.empty(inner, np.float32)  # local variance (times the covariance norm)
        self.mu_sq = np.empty(inner, np.float32)  # local mean squared (absolute scale)


class _SsimStream:
    """Mean SSIM of consecutive images, computed with OpenCV separable filters.

    The filtering is 'valid': the mean over the SSIM map ignores a border as wide as the
    window radius, so border values (and with them the padding convention) never matter.
    Buffers are allocated once per clip and reused, which keeps the working set in cache.
    """

    def __init__(self, shape: tuple[int, ...], taps: np.ndarray, cov_norm: float):
        self.taps = taps.astype(np.float32)
        self.r = r = (taps.size - 1) // 2
        self.h, self.w = shape[:2]
        self.cov_norm = np.float32(cov_norm)
        self.full = np.empty(shape, np.float32)
        self.sq = np.empty(shape, np.float32)
        inner = (self.h - 2 * r, self.w - 2 * r) + tuple(shape[2:])
        self.num = np.empty(inner, np.float32)
        self.den = np.empty(inner, np.float32)
        self.tmp = np.empty(inner, np.float32)

    def _filter_inner(self, src: np.ndarray) -> np.ndarray:
        cv2.sepFilter2D(src, cv2.CV_32F, self.taps, self.taps, dst=self.full, borderType=cv2.BORDER_REFLECT)
        r = self.r
        return self.full[r : self.h - r, r : self.w - r]

    def load(self, img: np.ndarray, st: _FrameStats) -> None:
        np.subtract(img, _CENTRE, out=st.x, dtype=np.float32)
        st.mu[...] = self._filter_inner(st.x)
        np.multiply(st.x, st.x, out=self.sq)
        ex2 = self._filter_inner(self.sq)
        np.multiply(st.mu, st.mu, out=st.var)
        np.subtract(ex2, st.var, out=st.var)
        st.var *= self.cov_norm
        np.add(st.mu, _CENTRE, out=st.mu_sq)
        np.multiply(st.mu_sq, st.mu_sq, out=st.mu_sq)

    def pair(self, a: _FrameStats, b: _FrameStats, data_range: float) -> float:
        c1 = np.float32((K1 * data_range) ** 2)
        c2 = np.float32((K2 * data_range) ** 2)
        num, den, tmp = self.num, self.den, self.tmp
        np.multiply(a.x, b.x, out=self.sq)
        exy = self._filter_inner(self.sq)
        np.multiply(a.mu, b.mu, out=tmp)  # (mu_a - c)(mu_b - c)
        np.subtract(exy, tmp, out=den)  # covariance
        den *= np.float32(2.0) * self.cov_norm
        den += c2  # 2 cov + C2
        # mu_a mu_b = (mu_a - c)(mu_b - c) + c (mu_a - c + mu_b - c) + c^2
        np.add(a.mu, b.mu, out=num)
        num *= _CENTRE
        num += tmp
        num += _CENTRE * _CENTRE
        num *= np.float32(2.0)
        num += c1
        num *= den
        np.add(a.mu_sq, b.mu_sq, out=den)
        den += c1
        np.add(a.var, b.var, out=tmp)
        tmp += c2
        den *= tmp
        num /= den
        return float(sum(cv2.sumElems(num))) / num.size


def _ssim_consecutive(
    images: Sequence[np.ndarray], window: str, data_ranges: np.ndarray, sample_covariance: bool
) -> np.ndarray:
    """SSIM of images[i] vs images[i+1] for every i; images (H, W) or (H, W, C) uint8, all one
    shape. Returns (len-1,) float64, NaN where the data range is 0 (0/0 in the reference)."""
    n = len(images) - 1
    if n < 1:
        return np.empty(0)
    if window == "gaussian":
        taps = gaussian_taps()
    elif window == "uniform":
        taps = np.full(STUDY_WINDOW, 1.0 / STUDY_WINDOW)
    else:
        raise ValueError(f"unknown SSIM window {window!r}")
    shape = images[0].shape
    win = taps.size
    if shape[0] < win or shape[1] < win:
        raise InputError(f"SSIM needs frames of at least {win}x{win} pixels, got {shape[1]}x{shape[0]}.")
    if len(shape) == 3 and shape[2] > 4:
        raise InputError(f"SSIM supports at most 4 channels, got {shape[2]}.")
    np_ = win * win
    stream = _SsimStream(shape, taps, np_ / (np_ - 1) if sample_covariance else 1.0)
    prev, cur = _FrameStats(shape, stream.r), _FrameStats(shape, stream.r)
    stream.load(images[0], prev)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        stream.load(images[i + 1], cur)
        out[i] = np.nan if data_ranges[i] == 0 else stream.pair(prev, cur, float(data_ranges[i]))
        prev, cur = cur, prev
    return out


def ssim_pairs(
    a: np.ndarray,
    b: np.ndarray,
    *,
    window: str = "gaussian",
    data_range: float | np.ndarray = 255.0,
    sample_covariance: bool = False,
) -> np.ndarray:
    """Mean SSIM of a[i] vs b[i] for two (N, H, W[, C]) uint8 stacks -> (N,) float64.

    window "gaussian" (11 taps, sigma 1.5) or "uniform" (7x7); data_range scalar or (N,);
    channels are averaged. NaN where data_range is 0.
    """
    if a.shape != b.shape:
        raise InputError(f"SSIM needs equal shapes, got {a.shape} and {b.shape}.")
    ranges = np.broadcast_to(np.asarray(data_range, dtype=np.float64), (a.shape[0],))
    return np.array(
        [_ssim_consecutive([a[i], b[i]], window, ranges[i : i + 1], sample_covariance)[0] for i in range(a.shape[0])]
    )


# --------------------------------------------------------------------------- public metrics


def temporal_psnr(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T-1,) tPSNR in dB (capped at 100)."""
    frames = _frames_of(frames)
    return psnr_from_mse(mse_pairs(frames[:-1], frames[1:]))


def temporal_mse(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T-1,) MSE of consecutive frames, 0-255 scale."""
    frames = _frames_of(frames)
    return mse_pairs(frames[:-1], frames[1:])


def temporal_ssim(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T-1,) tSSIM (RGB mean, Gaussian window, range 255)."""
    frames = _frames_of(frames)
    return _ssim_consecutive(frames, "gaussian", np.full(max(frames.shape[0] - 1, 0), 255.0), False)


def study_ssim(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T-1,) the study's tSSIM (grey, 7x7 uniform, sample covariance,
    data range = max - min of the first grey frame of each pair; NaN where that is 0)."""
    grey = to_grey(_frames_of(frames))
    ranges = np.array([float(g.max()) - float(g.min()) for g in grey[:-1]])
    return _ssim_consecutive(grey, "uniform", ranges, True)


def sharpness(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) variance of the Laplacian of the grey frame."""
    grey = to_grey(_frames_of(frames))
    return np.array([cv2.Laplacian(g, cv2.CV_64F).var() for g in grey], dtype=np.float64)


def brightness(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) mean grey level, 0-255."""
    grey = to_grey(_frames_of(frames))
    return grey.reshape(grey.shape[0], -1).mean(axis=1, dtype=np.float64)


def fit_reference(reference_image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 photo to size = (width, height): INTER_AREA when the target
    has no more pixels than the photo, INTER_CUBIC otherwise. The aspect ratio is not kept:
    pass the image the generator was conditioned on (already cropped) for a fair score."""
    ref = np.asarray(reference_image)
    if ref.dtype != np.uint8 or ref.ndim != 3 or ref.shape[-1] != 3:
        raise InputError(f"Reference image must be (H, W, 3) uint8 RGB, got {ref.dtype} {ref.shape}.")
    w, h = size
    if ref.shape[1] == w and ref.shape[0] == h:
        return ref
    interp = cv2.INTER_AREA if w * h <= ref.shape[0] * ref.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(ref, (w, h), interpolation=interp)


def fidelity(frame: np.ndarray, reference_image: np.ndarray) -> dict[str, float]:
    """PSNR (capped) and SSIM (Gaussian, RGB, range 255) of one (H, W, 3) uint8 frame against
    the reference photo resized to the frame size."""
    ref = fit_reference(reference_image, (frame.shape[1], frame.shape[0]))
    psnr = float(psnr_from_mse(mse_pairs(frame[None], ref[None]))[0])
    ssim = float(ssim_pairs(frame[None], ref[None])[0])
    return {"psnr": psnr, "ssim": ssim}


def _temporal_block(frames: np.ndarray, flow: str | None = "dis-fast", nr_model: str | None = None) -> dict[str, Any]:
    h, w = frames.shape[1:3]
    mse = temporal_mse(frames)
    block = {
        "size": [int(w), int(h)],
        "tpsnr": _summary(psnr_from_mse(mse), "per_pair"),
        "tssim": _summary(temporal_ssim(frames), "per_pair"),
        "tmse": _summary(mse, "per_pair"),
        "sharpness": _summary(sharpness(frames), "per_frame"),
        "brightness": _summary(brightness(frames), "per_frame"),
    }
    if flow:
        # motion-compensated consistency and no-reference quality (core.consistency)
        from .consistency import consistency_block

        block.update(consistency_block(frames, flow, nr_model))
    return block


def measure(
    clip: Clip | np.ndarray,
    *,
    reference_image: np.ndarray | None = None,
    common_size: tuple[int, int] | None = None,
    study: bool = False,
    flow: str | None = "dis-fast",
    nr_model: str | None = None,
) -> dict[str, Any]:
    """All metrics of one clip as a JSON-serialisable dict.

    clip: a Clip or (T, H, W, 3) uint8 RGB frames. reference_image: (H, W, 3) uint8 input photo
    for fidelity (optional). common_size: (width, height) for the resolution-aligned block
    (optional). study: also compute the UvA study's definitions. flow: the `core.flow` estimator
    for the motion-compensated measures of `core.consistency` ("dis-fast" default, "dis" for
    DIS's medium preset, "raft" when
    registered; None skips them and the no-reference measures). nr_model: a learned
    no-reference scorer registered with `core.consistency.register_nr_scorer` (optional).

    Returns ``{"num_frames", "fps", "size": [w, h], "definitions", "native", "common",
    "fidelity", "study"}``; ``native``/``common`` hold tpsnr, tssim, tmse (per pair) and
    sharpness, brightness (per frame) as ``{"per_pair"|"per_frame": [...], "mean", "std"}``,
    plus (with flow) warp_mae, warp_mse, warp_psnr, warp_ssim, valid_fraction, flicker (per
    pair), lap_var, grad_energy, noise_sigma[, nr_score] (per frame) and flow_method;
    absent parts are null. Floats are finite or null. When the clip already has the common
    size, the common block is the native one (computed once).
    """
    frames = _frames_of(clip)
    t, h, w = frames.shape[:3]
    result: dict[str, Any] = {
        "num_frames": int(t),
        "fps": float(clip.fps) if isinstance(clip, Clip) else None,
        "size": [int(w), int(h)],
        "definitions": dict(DEFINITIONS),
        "native": _temporal_block(frames, flow, nr_model),
        "common": None,
        "fidelity": None,
        "study": None,
    }
    small = None
    if common_size is not None:
        small = resize_frames(frames, common_size)
        same = small is frames  # already at the common size: the same numbers, computed once
        result["common"] = dict(result["native"]) if same else _temporal_block(small, flow, nr_model)
    if reference_image is not None:
        result["fidelity"] = {
            "native": fidelity(frames[0], reference_image),
            "common": fidelity(small[0], reference_image) if small is not None else None,
        }
    if study:
        result["study"] = {
            "tpsnr": _summary(temporal_psnr(frames), "per_pair"),
            "tssim": _summary(study_ssim(frames), "per_pair"),
        }
    return result


# --------------------------------------------------------------------------- study-style table

_TABLE_METRICS = {"tpsnr": "PSNR (↑)", "tssim": "SSIM (↑)"}  # the UvA study's labels (study variant)
# metric -> (label, the direction that is steadier/sharper/cleaner or None where neither is better)
TABLE_LABELS: dict[str, tuple[str, str | None]] = {
    "tpsnr": ("tPSNR dB (includes camera motion)", None),
    "tssim": ("tSSIM (includes camera motion)", None),
    "tmse": ("tMSE (includes camera motion)", None),
    "warp_psnr": ("warped PSNR dB (↑ steadier)", "higher"),
    "warp_ssim": ("warped SSIM (↑ steadier)", "higher"),
    "warp_mae": ("warped MAE 0-255 (↓ steadier)", "lower"),
    "warp_mse": ("warped MSE 0-255 (↓ steadier)", "lower"),
    "flicker": ("flicker, grey levels (↓ less)", "lower"),
    "valid_fraction": ("flow-valid fraction", None),
    "lap_var": ("sharpness, Laplacian var. (↑ sharper)", "higher"),
    "grad_energy": ("sharpness, gradient energy (↑ sharper)", "higher"),
    "noise_sigma": ("noise sigma 0-255 (↓ cleaner)", "lower"),
    "sharpness": ("Laplacian var., raw (own size)", None),
    "brightness": ("brightness 0-255", None),
}
DASHBOARD_METRICS = ("warp_psnr", "warp_ssim", "flicker", "lap_var", "noise_sigma", "valid_fraction", "tpsnr", "tssim")


def _series(result: Mapping[str, Any], variant: str, metric: str) -> Mapping[str, Any]:
    block = result.get(variant)
    if block is None:
        raise InputError(f"These results have no {variant!r} metrics; measure them with that option first.")
    # results measured before a measure existed (older runs) show it as n/a
    return block.get(metric) or {"mean": None, "std": None}


def summary_table(
    results_by_chain: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]],
    *,
    variant: str = "native",
    metrics: Sequence[str] = ("tpsnr", "tssim"),
    decimals: int = 3,
) -> list[dict[str, Any]]:
    """The study's table: one row per metric, one column per chain, cells "mean (±std)".

    results_by_chain: chain name -> one `measure()` result, or a list of them (several videos
    of that chain). variant: "native", "common" or "study". For one video a cell is the mean
    and std over its pairs; for several videos it is the mean of the per-video means and the
    population std (ddof 0) of those means, as in the study's per-chain averages.

    Returns ``[{"metric": key, "label": "PSNR (↑)", "better": "higher" | "lower" | None,
    "cells": {chain: {"mean", "std", "n", "text"}}}, ...]`` in the given metric order, chains
    in the mapping's order. The study variant keeps the UvA study's labels and "higher is best"
    for PSNR/SSIM (it reproduces that table); elsewhere consecutive-frame PSNR/SSIM/MSE are
    labelled "includes camera motion" with no best (steadier is not better), and the
    motion-compensated and no-reference measures of `core.consistency` carry their direction.
    """
    if variant not in ("native", "common", "study"):
        raise InputError(f"Unknown metrics variant {variant!r}; use native, common or study.")
    rows = []
    for metric in metrics:
        if metric not in TABLE_LABELS:
            raise InputError(f"Unknown table metric {metric!r}; use one of {', '.join(TABLE_LABELS)}.")
        cells = {}
        for chain, res in results_by_chain.items():
            if isinstance(res, Mapping):
                s = _series(res, variant, metric)
                mean, std, n = s["mean"], s["std"], 1
            else:
                means = [_series(r, variant, metric)["mean"] for r in res]
                vals = np.array([m for m in means if m is not None], dtype=np.float64)
                mean = float(vals.mean()) if vals.size else None
                std = float(vals.std()) if vals.size else None
                n = int(vals.size)
            text = "n/a" if mean is None else f"{mean:.{decimals}f} (±{std:.{decimals}f})"
            cells[chain] = {"mean": mean, "std": std, "n": n, "text": text}
        if variant == "study" and metric in ("tpsnr", "tssim", "tmse"):
            label = _TABLE_METRICS.get(metric, "MSE (↓)")
            better = "lower" if metric == "tmse" else "higher"
        else:
            label, better = TABLE_LABELS[metric]
        rows.append({"metric": metric, "label": label, "better": better, "cells": cells})
    return rows


def render_markdown(
    rows: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    *,
    bold_best: bool = True,
) -> str:
    """Render `summary_table` rows as a markdown table; the best cell per row is bold in the
    row's "better" direction (none for measures without one, e.g. consecutive-frame PSNR, which
    includes camera motion). labels: optional chain -> column title."""
    if not rows:
        return ""
    chains = list(rows[0]["cells"])
    labels = labels or {}
    head = "| | " + " | ".join(labels.get(c, c) for c in chains) + " |"
    sep = "|---|" + "---|" * len(chains)
    lines = [head, sep]
    for row in rows:
        cells = row["cells"]
        scored = {c: v["mean"] for c, v in cells.items() if v["mean"] is not None}
        best = None
        better = row.get("better", "lower" if row["metric"] == "tmse" else "higher")
        if bold_best and len(scored) > 1 and better is not None:
            pick = min if better == "lower" else max
            best = pick(scored, key=scored.__getitem__)
        texts = [f"**{cells[c]['text']}**" if c == best else cells[c]["text"] for c in chains]
        lines.append(f"| {row['label']} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"
