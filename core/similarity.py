"""Pairwise frame similarity: PSNR / MSE and the streaming SSIM every temporal and fidelity
metric is built on, plus the small frame helpers they share (definitions: `core.metrics`).

Kept apart from `core.metrics` so that `core.consistency` can use the same Gaussian window and
summaries without importing the metrics module that imports it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

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
