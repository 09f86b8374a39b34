"""Motion-compensated temporal consistency and no-reference quality of a clip.

Consecutive-frame PSNR/SSIM (``core.metrics``) drop whenever the camera moves and rise when a
stage blurs, so they cannot tell flicker from motion. The measures here first follow the motion:

For each consecutive pair (t, t+1), one dense flow field per direction is estimated with
`core.flow.flow_pair` (OpenCV DIS with its "fast" preset by default, "dis-fast"; "dis" for the
medium preset; RAFT when registered, see `register_raft`) and reused by every measure of that
pair. Frames larger than 512x320 get their flow from copies shrunk to that pixel count, scaled
back up (`scaled_flow_pair`): an upscaled clip moves exactly as its source.

* ``warped`` = frame t+1 warped back onto frame t along the forward flow (bilinear, float32,
  replicate border; `core.flow.warp`);
* ``valid`` = the forward-backward consistency mask (occlusions, unreliable flow, targets
  outside frame t+1 are excluded; `core.flow.consistency_mask`);
* ``warp_mae`` / ``warp_mse``: mean |warped - frame t| and mean (warped - frame t)^2 over the
  valid pixels and the three RGB channels, 0-255 scale;
* ``warp_psnr``: ``10 log10(255^2 / warp_mse)``, capped at 100 dB like ``tpsnr``;
* ``warp_ssim``: the SSIM map of (frame t, warped) with ``tssim``'s definition (Gaussian 11/1.5,
  K 0.01/0.03, range 255, RGB mean), averaged over the valid pixels at least 5 px from the edge;
* ``valid_fraction``: share of frame t's pixels in the mask (0-1); low values mean the
  warped measures rest on little of the image (fast motion, large occlusions);
* ``flicker``: |mean over the valid pixels of the grey residual (warped - frame t)| in grey
  levels (0-255): the residual's lowest-frequency (per-frame brightness) component. Camera
  motion is compensated, so a steady clip scores near 0 whatever its motion, and a global
  brightness step of a grey levels between the two frames scores about a.

Per frame, no reference needed:

* ``lap_var``: variance of the 3x3 Laplacian, and ``grad_energy``: mean squared Sobel gradient
  (3x3, divided by 8, so a ramp of one grey level per pixel has gradient 1), both of the grey
  frame on the **reference grid**: a frame with more pixels than 512x320 is first shrunk
  (INTER_AREA, aspect kept) to that pixel count. Raw derivative statistics fall with the
  magnification (a x4 Lanczos upscale divides the raw Laplacian variance by ~30 and adds
  rounding noise that the second derivative amplifies), so unnormalised values would call every
  upscaled clip blurry; on the reference grid a plain magnification keeps about the original's
  value and clips of different sizes compare on the generator's pixel grid. The old
  ``sharpness`` key stays unnormalised.
* ``noise_sigma``: the robust wavelet-MAD (Donoho) estimate of additive white noise std in
  0-255 units, the estimator the FastDVDnet stage uses to pick its sigma
  (`core.postprocess.fastdvdnet.estimate_noise_sigma`), applied to each frame.
* ``nr_score``: an optional learned no-reference score from a scorer registered with
  `register_nr_scorer`; none is bundled (no well-kept package on the registries ships its
  weights with the package, and nothing is downloaded at run time here).

Every series is summarised like ``core.metrics``: ``{"per_pair" | "per_frame": [...], "mean",
"std"}`` (population std, null when empty).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from . import flow as flowlib
from .errors import InputError, Unavailable

REFERENCE_PIXELS = 512 * 320  # the generator's grid the sharpness values are normalised to
PSNR_CAP_DB = 100.0
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2
_SSIM_RADIUS = 5  # Gaussian 11-tap window
# DIS's "fast" preset: the whole metric set stays under a second for a 16-frame 512x320 clip on two
# CPU cores (bench/metrics.py); "dis" (medium) is about twice the flow cost for finer motion.
DEFAULT_FLOW = "dis-fast"
FLOW_MAX_PIXELS = REFERENCE_PIXELS  # larger frames: flow on a shrunk copy, scaled back up

DEFINITIONS: dict[str, str] = {
    "warp_mae": "motion-compensated error: frame t+1 warped onto t along dense flow (DIS), mean |diff| "
                "over flow-reliable pixels (forward-backward check), RGB, 0-255; lower = steadier",
    "warp_mse": "as warp_mae, mean squared difference (0-255 scale)",
    "warp_psnr": "PSNR of the warped pair on reliable pixels (dB, capped at 100); higher = steadier; "
                 "camera motion is compensated",
    "warp_ssim": "SSIM (Gaussian 11/1.5, RGB) of the warped pair averaged over reliable pixels",
    "valid_fraction": "share of pixels whose flow passed the forward-backward check (0-1)",
    "flicker": "|mean grey residual| after motion compensation (grey levels): per-frame brightness "
               "change that camera motion does not explain; lower = less flicker",
    "lap_var": "sharpness: Laplacian variance of the grey frame on the 512x320 reference grid "
               "(larger frames shrunk first, so sizes compare); higher = sharper",
    "grad_energy": "sharpness: mean squared Sobel gradient (grey levels/pixel)^2 on the 512x320 "
                   "reference grid; higher = sharper",
    "noise_sigma": "residual noise std (wavelet-MAD / Donoho estimate, 0-255 scale)",
    "nr_score": "optional learned no-reference quality score (none bundled)",
}
PAIR_KEYS = ("warp_mae", "warp_mse", "warp_psnr", "warp_ssim", "valid_fraction", "flicker")
FRAME_KEYS = ("lap_var", "grad_energy", "noise_sigma")

# --------------------------------------------------------------------------- per pair


@dataclass(frozen=True)
class PairConsistency:
    """Motion-compensated measures of one pair (frame t, frame t+1); see the module docstring.
    Values are NaN when no pixel is valid."""

    warp_mae: float
    warp_mse: float
    warp_psnr: float
    warp_ssim: float
    valid_fraction: float
    flicker: float


class _Buffers:
    """Float32 work buffers for one frame size, allocated once per clip and reused by every pair:
    at 512x320 allocating the temporaries costs more than the arithmetic."""

    def __init__(self, shape: tuple[int, ...]):
        from .similarity import gaussian_taps

        self.shape = shape
        self.taps = gaussian_taps().astype(np.float32)
        self.af, self.bf, self.warped, self.resid, self.tmp = (np.empty(shape, np.float32) for _ in range(5))
        self.mu_a, self.mu_b, self.sa, self.sb, self.sab, self.num, self.den = (
            np.empty(shape, np.float32) for _ in range(7))

    def blur(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(src, cv2.CV_32F, self.taps, self.taps, dst=dst, borderType=cv2.BORDER_REFLECT)


_LOCAL = threading.local()


def _buffers(shape: tuple[int, ...]) -> _Buffers:
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.shape != shape:
        buf = _LOCAL.buf = _Buffers(shape)
    return buf


def _ssim_map(bf: _Buffers, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 on 0-255 -> (H, W, 3) float32 SSIM map per channel, Gaussian 11/1.5,
    population covariance, K 0.01/0.03, range 255; values < 5 px from the edge use reflected
    borders and are left out by the caller. Overwrites a and b (centred in place)."""
    c = np.float32(128.0)  # centred: smaller float32 cancellation in E[x^2] - E[x]^2
    a -= c
    b -= c
    mu_a, mu_b, sa, sb, sab, num, den, tmp = bf.mu_a, bf.mu_b, bf.sa, bf.sb, bf.sab, bf.num, bf.den, bf.tmp
    bf.blur(a, mu_a)
    bf.blur(b, mu_b)
    bf.blur(np.multiply(a, a, out=tmp), sa)
    bf.blur(np.multiply(b, b, out=tmp), sb)
    bf.blur(np.multiply(a, b, out=tmp), sab)
    np.multiply(mu_a, mu_b, out=tmp)
    np.subtract(sab, tmp, out=sab)  # covariance
    np.add(sa, sb, out=sa)
    np.multiply(mu_a, mu_a, out=sb)
    np.subtract(sa, sb, out=sa)
    np.multiply(mu_b, mu_b, out=sb)
    np.subtract(sa, sb, out=sa)  # var_a + var_b
    mu_a += c
    mu_b += c
    np.multiply(mu_a, mu_b, out=num)
    num *= np.float32(2.0)
    num += np.float32(_C1)
    sab *= np.float32(2.0)
    sab += np.float32(_C2)
    num *= sab
    np.multiply(mu_a, mu_a, out=den)
    np.multiply(mu_b, mu_b, out=tmp)
    den += tmp
    den += np.float32(_C1)
    sa += np.float32(_C2)
    den *= sa
    np.divide(num, den, out=num)
    return num


def pair_consistency(a: np.ndarray, b: np.ndarray, fp: flowlib.FlowPair) -> PairConsistency:
    """Measures of the pair (a, b) given its flows.

    a, b: (H, W, 3) uint8 RGB frames t and t+1. fp: `core.flow.flow_pair(a, b)` (forward a -> b,
    its valid mask on a's grid). Returns a `PairConsistency`.
    """
    bf = _buffers(a.shape)
    af, warped, resid = bf.af, bf.warped, bf.resid
    np.copyto(af, a)
    np.copyto(bf.bf, b)
    mx, my = flowlib.sample_coords(fp.forward)
    cv2.remap(bf.bf, mx, my, cv2.INTER_LINEAR, dst=warped, borderMode=cv2.BORDER_REPLICATE)  # = flow.warp
    np.subtract(warped, af, out=resid)  # (H, W, 3), -255..255
    valid = fp.valid
    n = int(np.count_nonzero(valid))
    frac = n / valid.size
    if n == 0:
        nan = float("nan")
        return PairConsistency(nan, nan, nan, nan, frac, nan)
    m8 = valid.view(np.uint8)
    np.abs(resid, out=bf.tmp)
    mae = sum(cv2.mean(bf.tmp, mask=m8)[:3]) / 3.0
    np.multiply(resid, resid, out=bf.tmp)
    mse = sum(cv2.mean(bf.tmp, mask=m8)[:3]) / 3.0
    psnr = PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10.0 * np.log10(255.0 ** 2 / mse))
    d = cv2.mean(resid, mask=m8)
    flicker = abs(0.299 * d[0] + 0.587 * d[1] + 0.114 * d[2])  # mean grey residual (BT.601 is linear)
    inner = np.zeros_like(m8)
    r = _SSIM_RADIUS
    inner[r:-r, r:-r] = m8[r:-r, r:-r]
    if inner.any():
        ssim = sum(cv2.mean(_ssim_map(bf, af, warped), mask=inner)[:3]) / 3.0
    else:
        ssim = float("nan")
    return PairConsistency(float(mae), float(mse), float(psnr), float(ssim), float(frac), float(flicker))


def scaled_flow_pair(a: np.ndarray, b: np.ndarray, method: str = DEFAULT_FLOW,
                     max_pixels: int = FLOW_MAX_PIXELS) -> flowlib.FlowPair:
    """`core.flow.flow_pair` of (a, b), estimated on copies shrunk (INTER_AREA) to at most
    `max_pixels` when the frames are larger, then brought back to the frames' grid (flow
    resized bilinearly and multiplied by the scale, mask by nearest neighbour).

    An x4-upscaled clip moves exactly as its source: its motion is found on the generator's
    grid at a sixteenth of the cost, and the warped measures are still computed at full size.
    """
    h, w = a.shape[:2]
    if h * w <= max_pixels:
        return flowlib.flow_pair(a, b, method)
    k = float(np.sqrt(max_pixels / (h * w)))
    sw, sh = max(8, round(w * k)), max(8, round(h * k))
    small = flowlib.flow_pair(cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA),
                              cv2.resize(b, (sw, sh), interpolation=cv2.INTER_AREA), method)

    def up(flow: np.ndarray) -> np.ndarray:
        f = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        f[..., 0] *= w / sw
        f[..., 1] *= h / sh
        return f

    valid = cv2.resize(small.valid.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return flowlib.FlowPair(up(small.forward), up(small.backward), valid)


def clip_consistency(frames: np.ndarray, method: str = DEFAULT_FLOW) -> list[PairConsistency]:
    """(T, H, W, 3) uint8 -> T-1 `PairConsistency` (one flow pair per consecutive pair, estimated
    at most at `FLOW_MAX_PIXELS`, see `scaled_flow_pair`)."""
    out = []
    for t in range(frames.shape[0] - 1):
        a, b = frames[t], frames[t + 1]
        out.append(pair_consistency(a, b, scaled_flow_pair(a, b, method)))
    return out


# --------------------------------------------------------------------------- per frame


def reference_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w) uint8 grey frame on the reference grid: frames with more pixels
    than 512x320 are shrunk (INTER_AREA, aspect kept) to about that many pixels; smaller frames
    are used as they are (never enlarged: that would invent smoothness)."""
    g = flowlib.to_grey(frame)
    h, w = g.shape
    if h * w <= REFERENCE_PIXELS:
        return g
    k = float(np.sqrt(REFERENCE_PIXELS / (h * w)))
    return cv2.resize(g, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def laplacian_variance(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) variance of the 3x3 Laplacian of `reference_grey` (0-255)."""
    return np.array([cv2.Laplacian(reference_grey(f), cv2.CV_64F).var() for f in frames])


def gradient_energy(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) mean of gx^2 + gy^2 (3x3 Sobel / 8: a ramp of 1 grey level per
    pixel has gradient 1) of `reference_grey`."""
    out = []
    for f in frames:
        g = reference_grey(f)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        out.append(float(cv2.mean(gx * gx)[0] + cv2.mean(gy * gy)[0]))
    return np.array(out)


def noise_sigma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) wavelet-MAD noise std per frame (0-255 scale)."""
    from .postprocess.fastdvdnet import estimate_noise_sigma

    return np.array([estimate_noise_sigma(f[None]) for f in frames])


# --------------------------------------------------------------------------- optional hooks

# name -> scorer((H, W, 3) uint8 RGB) -> float
NRScorer = Callable[[np.ndarray], float]
_NR_SCORERS: dict[str, NRScorer] = {}


def register_nr_scorer(name: str, fn: NRScorer, *, replace: bool = False) -> None:
    """Make a learned no-reference scorer available to `measure(..., nr_model=name)`."""
    if name in _NR_SCORERS and not replace:
        raise ValueError(f"no-reference scorer {name!r} is already registered")
    _NR_SCORERS[name] = fn


def nr_scores(frames: np.ndarray, name: str) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) scores of the named scorer; Unavailable (one line) when absent."""
    fn = _NR_SCORERS.get(name)
    if fn is None:
        have = ", ".join(_NR_SCORERS) or "none is registered"
        raise Unavailable(f"No learned no-reference scorer {name!r} here ({have}); none ships with the "
                          "studio because every candidate downloads weights at run time. Register one "
                          "with core.consistency.register_nr_scorer.")
    return np.array([float(fn(f)) for f in frames])


RAFT_WEIGHTS = Path("pretrained_models/upscale_a_video/propagator/raft-things.pth")
_raft_lock = threading.Lock()


def register_raft(path: str | Path | None = None, device: str = "cpu", iters: int = 20) -> bool:
    """Register flow method "raft" (Upscale-A-Video's RAFT-large) when its weights exist.

    Nothing is imported (torch, the model) until the first "raft" flow is asked for. Returns
    False, registering nothing, when the weights file is absent.
    """
    p = Path(path) if path is not None else Path(__file__).resolve().parents[1] / RAFT_WEIGHTS
    if not p.is_file():
        return False
    state: dict[str, Any] = {}

    def raft_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import torch

        from .models.upscale_a_video.raft import MIN_FLOW_SIZE, load_raft

        with _raft_lock:
            if "model" not in state:
                state["model"] = load_raft(p, device)
        h, w = a.shape[:2]
        if min(h, w) < MIN_FLOW_SIZE:
            raise InputError(f"RAFT needs frames of at least {MIN_FLOW_SIZE} px a side, got {w}x{h}.")
        h8, w8 = -(-h // 8) * 8, -(-w // 8) * 8

        def prep(x: np.ndarray) -> torch.Tensor:
            x = cv2.resize(x, (w8, h8), interpolation=cv2.INTER_LINEAR) if (h8, w8) != (h, w) else x
            return torch.from_numpy(x).permute(2, 0, 1)[None].float().div(127.5).sub(1.0).to(device)

        with torch.no_grad():
            f = state["model"](prep(a), prep(b), iters=iters)[0].permute(1, 2, 0).cpu().numpy()
        if (h8, w8) != (h, w):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            f[..., 0] *= w / w8
            f[..., 1] *= h / h8
        return f

    flowlib.register_estimator("raft", raft_flow, replace=True)
    return True


# --------------------------------------------------------------------------- block for measure()


def _summary(values, key: str) -> dict[str, Any]:
    from .similarity import _summary as summary

    return summary(values, key)


def consistency_block(frames: np.ndarray, method: str = DEFAULT_FLOW, nr_model: str | None = None) -> dict[str, Any]:
    """Every measure of this module for (T, H, W, 3) uint8 frames, as `measure()` block keys:
    PAIR_KEYS as ``{"per_pair", "mean", "std"}``, FRAME_KEYS (and ``nr_score`` when asked) as
    ``{"per_frame", "mean", "std"}``, and ``flow_method``."""
    pairs = clip_consistency(frames, method)
    out: dict[str, Any] = {"flow_method": method}
    for key in PAIR_KEYS:
        out[key] = _summary([getattr(p, key) for p in pairs], "per_pair")
    out["lap_var"] = _summary(laplacian_variance(frames), "per_frame")
    out["grad_energy"] = _summary(gradient_energy(frames), "per_frame")
    out["noise_sigma"] = _summary(noise_sigma(frames), "per_frame")
    if nr_model:
        out["nr_score"] = _summary(nr_scores(frames, nr_model), "per_frame")
    return out
