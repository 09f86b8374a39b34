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

from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from .clip import Clip
from .errors import InputError
# The pairwise measures live in core.similarity (so core.consistency can share them without a
# cycle); every name stays importable from here.
from .similarity import (GAUSS_SIGMA, GAUSS_TRUNCATE, K1, K2, PSNR_CAP_DB, STUDY_WINDOW, _frames_of,  # noqa: F401
                         _ssim_consecutive, _summary, gaussian_taps, mse_pairs, psnr_from_mse, resize_frames,
                         ssim_pairs, to_grey)


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
