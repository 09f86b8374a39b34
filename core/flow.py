"""Dense optical flow, warping and occlusion masks: the one flow toolbox of the studio.

Motion-compensated metrics, frame interpolation and the seam score of chained segments all need
the same three things: a dense flow field between two frames, a backward warp along it, and a
mask of the pixels where the flow can be trusted. They live here so every caller measures with
the same definitions (and one flow field per pair can be reused by every measure).

Conventions (OpenCV's):

* A flow field is ``(H, W, 2)`` float32 in pixels, ``(dx, dy)``. ``flow_ab`` maps each pixel
  ``x`` of frame ``a`` to its position in frame ``b``: ``a(x) ~= b(x + flow_ab(x))``.
* ``warp(b, flow_ab)`` samples ``b`` at ``x + flow_ab(x)`` and so brings ``b`` onto ``a``'s grid
  (a backward warp; no holes).
* ``consistency_mask(flow_ab, flow_ba)`` is True where the flow is reliable: the forward-backward
  check of Sundaram et al. (ECCV 2010), as used by UnFlow (Meister et al., AAAI 2018):
  ``|f_ab(x) + f_ba(x + f_ab(x))|^2 < alpha (|f_ab|^2 + |f_ba(x + f_ab)|^2) + beta``, and the
  target ``x + f_ab(x)`` inside frame ``b``. Occluded pixels fail it.

The default estimator is OpenCV's DIS (Kroeger et al., ECCV 2016): weights-free, fast on a CPU
(about 15 ms a pair at 512x320 with the "medium" preset). Other estimators plug in through
`register_estimator` (e.g. RAFT when its weights are present).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .errors import InputError

# Forward-backward thresholds (UnFlow's occlusion check).
FB_ALPHA = 0.01
FB_BETA = 0.5

# name -> estimator(a, b) -> (H, W, 2) float32 flow from a to b; a, b are (H, W, 3) uint8 RGB
FlowEstimator = Callable[[np.ndarray, np.ndarray], np.ndarray]
_ESTIMATORS: dict[str, FlowEstimator] = {}
_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
_local = threading.local()  # one DIS object per thread and preset (they are not thread-safe)


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma (BT.601, OpenCV's RGB2GRAY); grey passes through."""
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _dis(preset: str) -> "cv2.DISOpticalFlow":
    cache = getattr(_local, "dis", None)
    if cache is None:
        cache = _local.dis = {}
    if preset not in cache:
        cache[preset] = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    return cache[preset]


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense flow from frame `a` to frame `b` with OpenCV DIS.

    a, b: (H, W, 3) uint8 RGB or (H, W) uint8 grey, same size. Returns (H, W, 2) float32 pixels.
    """
    if preset not in _DIS_PRESETS:
        raise InputError(f"Unknown DIS preset {preset!r}; use {', '.join(_DIS_PRESETS)}.")
    ga, gb = to_grey(a), to_grey(b)
    if ga.shape != gb.shape:
        raise InputError(f"Flow needs two frames of one size, got {ga.shape[::-1]} and {gb.shape[::-1]}.")
    return _dis(preset).calc(ga, gb, None)


def register_estimator(name: str, fn: FlowEstimator, *, replace: bool = False) -> None:
    """Make a flow estimator available by name to every caller (metrics, interpolation, seams)."""
    if name in _ESTIMATORS and not replace:
        raise ValueError(f"flow estimator {name!r} is already registered")
    _ESTIMATORS[name] = fn


def estimators() -> tuple[str, ...]:
    return tuple(_ESTIMATORS)


def estimate_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow from `a` to `b` ((H, W, 2) float32 pixels) with the named estimator."""
    fn = _ESTIMATORS.get(method)
    if fn is None:
        raise InputError(f"Unknown optical-flow method {method!r}; available: {', '.join(_ESTIMATORS)}.")
    flow = fn(a, b)
    return np.ascontiguousarray(flow, dtype=np.float32)


register_estimator("dis", dis_flow)
register_estimator("dis-fast", lambda a, b: dis_flow(a, b, "fast"))


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    key = (h, w)
    cache = getattr(_local, "grid", None)
    if cache is None or cache[0] != key:
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        cache = _local.grid = (key, gx, gy)
    return cache[1], cache[2]


def sample_coords(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The absolute sampling positions x + flow(x): two (H, W) float32 maps for cv2.remap."""
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    return gx + flow[..., 0], gy + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR,
         border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Backward warp: sample `image` at x + flow(x).

    image: (H, W, C) or (H, W), any dtype cv2.remap takes (uint8, float32). flow: (H, W, 2).
    `warp(b, flow_ab)` is frame b brought onto frame a's pixel grid. Same dtype as `image`.
    """
    mx, my = sample_coords(flow)
    return cv2.remap(image, mx, my, interpolation, borderMode=border)


def consistency_mask(flow_ab: np.ndarray, flow_ba: np.ndarray, *, alpha: float = FB_ALPHA,
                     beta: float = FB_BETA) -> np.ndarray:
    """(H, W) bool: True where the forward-backward check passes and x + f_ab(x) lies in frame b."""
    h, w = flow_ab.shape[:2]
    mx, my = sample_coords(flow_ab)
    back = cv2.remap(flow_ba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = flow_ab + back
    lhs = (diff * diff).sum(-1)
    rhs = alpha * ((flow_ab * flow_ab).sum(-1) + (back * back).sum(-1)) + beta
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return (lhs < rhs) & inside


@dataclass(frozen=True)
class FlowPair:
    """Both flows between frames a and b and the mask of a's pixels whose flow is reliable.

    forward: (H, W, 2) a -> b; backward: (H, W, 2) b -> a; valid: (H, W) bool on a's grid.
    """

    forward: np.ndarray
    backward: np.ndarray
    valid: np.ndarray

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean())


def flow_pair(a: np.ndarray, b: np.ndarray, method: str = "dis") -> FlowPair:
    """Forward and backward flow between `a` and `b` plus the occlusion/consistency mask."""
    fwd = estimate_flow(a, b, method)
    bwd = estimate_flow(b, a, method)
    return FlowPair(fwd, bwd, consistency_mask(fwd, bwd))
