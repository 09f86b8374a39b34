"""Frame interpolation: new frames between the frames of a clip (x2/x3/x4, or a target fps).

Two things live here:

* `retime(clip, fps, method)`: the plain function every caller uses to change a clip's frame
  rate (the Create tab's "Output fps", tours at 24/30 fps). It places output frame k at time
  k / fps and synthesises it from the two source frames around that time. The output spans the
  same time as the input, first frame to last: a clip of N frames at r fps becomes
  ``floor((N - 1) * fps / r + 1e-6) + 1`` frames at `fps` (x3 of 16 frames: 46). No frame is
  invented beyond the last source frame. Output frames that fall on a source frame's time are
  that source frame, untouched.
* `InterpolateStage` ("dis-interp", role "interpolate"): the chain stage over `retime`, with a factor
  (2/3/4) or a target fps.

The classical method ("dis") is weights-free and runs on any CPU (Super SloMo's intermediate-flow
approximation over OpenCV DIS flow, with occlusion-aware blending):

1. Dense flow both ways between source frames a (time 0) and b (time 1): ``f_ab``, ``f_ba``
   (`core.flow`), and the forward-backward consistency mask of each frame (True where its flow is
   trusted; pixels that disappear behind something, or leave the frame, fail it).
2. For an in-between time t the backward flows from the new frame to a and b are approximated
   from the two (Jiang et al., "Super SloMo", CVPR 2018, eq. 4):
   ``f_ta = -(1 - t) t f_ab + t^2 f_ba``, ``f_tb = (1 - t)^2 f_ab - t (1 - t) f_ba``.
   For motion that is locally constant between the frames this is exact (a translation by d gives
   ``f_ta = -t d``, ``f_tb = (1 - t) d``).
3. a and b are backward-warped onto the new frame and blended with weights ``(1 - t) v_a`` and
   ``t v_b``, where v is the warped consistency mask: a pixel occluded in one frame is taken from
   the other. Where neither is trusted, the plain time weights are used.

"blend" is plain frame blending (``(1 - t) a + t b``), the baseline that ghosts moving edges;
the learned method (RIFE) provides its own pair function through `core.postprocess.rife`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import flow as flowlib
from ..clip import Clip
from ..errors import InputError
from ..params import ParamSpec
from ..progress import Progress, as_progress
from .base import Stage

FACTORS = (2, 3, 4)
MAX_FPS = 120.0
_TIME_EPS = 1e-6  # output times closer than this (in source-frame units) to a source frame copy it

# pair function: (a, b, times) -> one (H, W, 3) uint8 frame per time in (0, 1);
# a, b: (H, W, 3) uint8 RGB, the source frames at times 0 and 1.
PairFn = Callable[[np.ndarray, np.ndarray, Sequence[float]], list]


@dataclass(frozen=True)
class RetimePlan:
    """Where each output frame comes from.

    source: (M,) int, the source frame at or before each output frame; t: (M,) float in [0, 1),
    the position between that frame and the next (0 = the source frame itself).
    """

    source: np.ndarray
    t: np.ndarray
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.source.shape[0])


def output_count(num_frames: int, src_fps: float, fps: float) -> int:
    """Frames of a retimed clip: the same span, first to last source frame, at `fps`."""
    return int(math.floor((num_frames - 1) * fps / src_fps + _TIME_EPS)) + 1


def plan_retime(num_frames: int, src_fps: float, fps: float) -> RetimePlan:
    """The source frame and in-between position of every output frame (see `retime`)."""
    if not (fps > 0) or not math.isfinite(fps):
        raise InputError(f"Target frame rate must be a positive number, got {fps!r}.")
    if fps > MAX_FPS:
        raise InputError(f"Target frame rate must be at most {MAX_FPS:g} fps, got {fps:g}.")
    m = output_count(num_frames, src_fps, fps)
    pos = np.arange(m, dtype=np.float64) * (src_fps / fps)  # in source-frame units
    src = np.floor(pos + _TIME_EPS).astype(np.int64)
    t = pos - src
    t[np.abs(t) < _TIME_EPS] = 0.0
    src = np.minimum(src, num_frames - 1)
    t[src == num_frames - 1] = 0.0
    return RetimePlan(src, t, float(fps))


def blend_pair(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
    """Plain cross-fade between a and b at each time (the baseline). (H, W, 3) uint8 each."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    return [_to_uint8((1.0 - t) * fa + t * fb) for t in times]


def intermediate_flows(flow_ab: np.ndarray, flow_ba: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Super SloMo's approximation of the flows from the frame at time t to a and to b.

    flow_ab, flow_ba: (H, W, 2) float32 pixels. Returns (f_ta, f_tb), each (H, W, 2) float32.
    """
    f_ta = (-(1.0 - t) * t) * flow_ab + (t * t) * flow_ba
    f_tb = ((1.0 - t) * (1.0 - t)) * flow_ab + (-t * (1.0 - t)) * flow_ba
    return f_ta.astype(np.float32, copy=False), f_tb.astype(np.float32, copy=False)


def flow_pair_fn(method: str = "dis") -> PairFn:
    """The occlusion-aware flow interpolation of this module, with a `core.flow` estimator."""
    if method not in flowlib.estimators():
        raise InputError(f"Unknown optical-flow method {method!r}; available: {', '.join(flowlib.estimators())}.")

    def pair(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        fp = flowlib.flow_pair(a, b, method)
        valid_b = flowlib.consistency_mask(fp.backward, fp.forward)
        # each frame with its consistency mask as a 4th channel: one remap warps both
        fa = np.dstack((a.astype(np.float32), fp.valid.astype(np.float32)))
        fb = np.dstack((b.astype(np.float32), valid_b.astype(np.float32)))
        out = []
        for t in times:
            f_ta, f_tb = intermediate_flows(fp.forward, fp.backward, float(t))
            wa4 = flowlib.warp(fa, f_ta)
            wb4 = flowlib.warp(fb, f_tb)
            wa, wb = wa4[..., :3], wb4[..., :3]
            # visibility of each source at the new frame's pixels: its consistency mask carried along
            va = wa4[..., 3:] * (1.0 - t)
            vb = wb4[..., 3:] * t
            total = va + vb
            trusted = total > 1e-3
            wa_w = np.where(trusted, va / np.maximum(total, 1e-3), 1.0 - t)
            out.append(_to_uint8(wa_w * wa + (1.0 - wa_w) * wb))
        return out

    return pair


def pair_function(method: str) -> PairFn:
    """"blend", or a `core.flow` estimator name ("dis", "dis-fast", ...)."""
    if method == "blend":
        return blend_pair
    return flow_pair_fn(method)


def apply_plan(frames: np.ndarray, plan: RetimePlan, pair: PairFn,
               progress: Progress | None = None) -> np.ndarray:
    """Build the output frames of `plan` from `frames` ((T, H, W, 3) uint8) with `pair`.

    Each source pair is processed once for all the output frames between its two frames (the flow
    of a pair is computed once however many in-betweens it gets). Returns (M, H, W, 3) uint8.
    """
    prog = as_progress(progress)
    out = np.empty((plan.num_frames,) + frames.shape[1:], dtype=np.uint8)
    whole = plan.t == 0.0
    out[whole] = frames[plan.source[whole]]
    pairs = np.unique(plan.source[~whole])
    for k, i in enumerate(pairs):
        prog.check()  # cancellation is honoured between pairs
        idx = np.nonzero((plan.source == i) & ~whole)[0]
        made = pair(frames[i], frames[i + 1], [float(x) for x in plan.t[idx]])
        for j, f in zip(idx, made):
            out[j] = f
        prog((k + 1) / len(pairs), f"interpolating pair {k + 1}/{len(pairs)}")
    return out


def retime(clip: Clip, fps: float, method: str = "dis", *, pair: PairFn | None = None,
           progress: Progress | None = None) -> Clip:
    """The clip resampled to `fps` frames per second by interpolation (see the module docstring).

    clip: (T, H, W, 3) uint8 at clip.fps. method: "dis" (default, occlusion-aware optical flow),
    "dis-fast", any other `core.flow` estimator, or "blend". pair: a pair function to use instead
    (e.g. a loaded RIFE). Returns a Clip at `fps` with ``output_count(T, clip.fps, fps)`` frames;
    a 1-frame clip is returned as it is, at the new rate.
    """
    plan = plan_retime(clip.num_frames, clip.fps, float(fps))
    if clip.num_frames == 1:
        return Clip(clip.frames, float(fps))
    fn = pair if pair is not None else pair_function(method)
    return Clip(apply_plan(clip.frames, plan, fn, progress), float(fps))


def interpolate(clip: Clip, factor: int, method: str = "dis", *, pair: PairFn | None = None,
                progress: Progress | None = None) -> Clip:
    """x`factor` frame rate: factor - 1 new frames between each pair ((T - 1) * factor + 1 frames)."""
    if int(factor) != factor or factor < 1:
        raise InputError(f"Interpolation factor must be a whole number >= 1, got {factor!r}.")
    return retime(clip, clip.fps * int(factor), method, pair=pair, progress=progress)


def subsample_to_rate(clip: Clip, fps: float, num_frames: int | None = None) -> tuple[Clip, float]:
    """The frames of `clip` nearest to the times of a clip at `fps` (the generator's rate).

    Used to report temporal metrics of an interpolated clip at the generator's frame rate, so that
    chains with and without interpolation compare consecutive frames the same time apart.
    num_frames: how many frames the original had (default: as many as fit in `clip`'s span).
    Returns (clip at `fps`, worst time offset in seconds between a picked frame and its target;
    0 when the rates divide evenly, as for x2/x3/x4; a retimed clip whose span ends before the
    original's last frame time repeats its last frame, and the offset says by how much).
    """
    span = (clip.num_frames - 1) / clip.fps
    n = num_frames if num_frames is not None else int(math.floor(span * fps + _TIME_EPS)) + 1
    times = np.arange(n, dtype=np.float64) / fps
    idx = np.clip(np.rint(times * clip.fps).astype(np.int64), 0, clip.num_frames - 1)
    worst = float(np.max(np.abs(idx / clip.fps - times))) if n else 0.0
    return Clip(clip.frames[idx], float(fps)), worst


def generator_rate_block(clip: Clip, gen_fps: float, gen_frames: int, measured: Mapping[str, Any],
                         measure: Callable[..., dict[str, Any]], **measure_kwargs: Any) -> dict[str, Any]:
    """A chain's temporal metrics at the generator's frame rate (the "generator_rate" block).

    clip: the chain's output; gen_fps, gen_frames: the generator clip's rate and frame count;
    measured: `measure(clip, ...)` already computed for the chain (reused when the rate did not
    change); measure: `core.metrics.measure`, called on the frames nearest to the generator's frame
    times with `measure_kwargs`. Returns ``{"fps", "num_frames", "max_time_offset_s",
    "resampled", "native", "common", "study"}`` (the last three as `measure` defines them), so a
    chain with interpolation compares consecutive frames 1/gen_fps apart like one without.
    """
    keys = ("native", "common", "study")
    if abs(clip.fps - gen_fps) < 1e-9 * max(1.0, gen_fps):
        block = {k: measured.get(k) for k in keys}
        return {"fps": float(gen_fps), "num_frames": clip.num_frames, "max_time_offset_s": 0.0,
                "resampled": False, **block}
    sub, worst = subsample_to_rate(clip, gen_fps, gen_frames)
    m = measure(sub, **measure_kwargs)
    return {"fps": float(gen_fps), "num_frames": sub.num_frames, "max_time_offset_s": worst,
            "resampled": True, **{k: m.get(k) for k in keys}}


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class InterpolateStage(Stage):
    """Classical frame interpolation (role "interpolate"): DIS optical flow, both directions,
    occlusion-aware blending. (T, H, W, 3) uint8 at r fps -> (M, H, W, 3) uint8 at factor * r
    (or the target fps); M = (T - 1) * factor + 1 for a factor. No weights, CPU only."""

    name = "dis-interp"
    label = "Optical flow (OpenCV DIS, occlusion-aware)"
    role = "interpolate"
    method = "dis"

    def param_specs(self) -> Sequence[ParamSpec]:
        return interpolation_param_specs()

    def pair_function(self) -> PairFn:
        return flow_pair_fn(self.method)

    def output_frames(self, num_frames: int, fps: float, params: Mapping[str, Any]) -> tuple[int, float]:
        return retimed_frames(num_frames, fps, params)

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        fps = target_fps(clip.fps, params)
        return retime(clip, fps, pair=self.pair_function(), progress=progress)


def interpolation_param_specs() -> tuple[ParamSpec, ...]:
    """The parameters every interpolation stage takes: a factor, or a target fps that wins over it."""
    return (
        ParamSpec("factor", "choice", 2, "Frame-rate factor", choices=FACTORS,
                  help="x2 puts one new frame between each pair, x3 two, x4 three."),
        ParamSpec("fps", "float", 0.0, "Target fps (0: use the factor)", 0.0, MAX_FPS, 1.0,
                  help="Resample to this frame rate instead (e.g. 30 from the generators' 10); "
                       "frames that fall on an original frame's time keep it."),
    )


def target_fps(src_fps: float, params: Mapping[str, Any]) -> float:
    """The output rate an interpolation stage's parameters ask for."""
    fps = float(params.get("fps") or 0.0)
    return fps if fps > 0 else src_fps * int(params.get("factor", 2))


def retimed_frames(num_frames: int, src_fps: float, params: Mapping[str, Any]) -> tuple[int, float]:
    """(frame count, fps) an interpolation stage with these parameters makes of `num_frames`
    frames at `src_fps` (every interpolation stage's `output_frames`)."""
    fps = target_fps(src_fps, params)
    return output_count(num_frames, src_fps, fps), fps


__all__ = [
    "FACTORS", "InterpolateStage", "generator_rate_block", "PairFn", "RetimePlan", "apply_plan", "blend_pair", "flow_pair_fn",
    "interpolate", "intermediate_flows", "interpolation_param_specs", "output_count", "pair_function",
    "plan_retime", "retime", "retimed_frames", "subsample_to_rate", "target_fps",
]
